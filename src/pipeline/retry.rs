//! Retrying transient failures with capped exponential backoff.
//!
//! A transient failure (a cache or broker that does not answer) is retried until
//! it succeeds: the batch it belongs to is never skipped and its offsets do not
//! move. Shutdown ends the wait by dropping the future at the drain deadline.

use std::future::Future;
use std::time::Duration;

use tracing::warn;

use crate::health::Health;
use crate::metrics::Metrics;

const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Errors that know whether trying again may help.
pub trait Classified: std::fmt::Display {
    fn is_transient(&self) -> bool;
}

impl Classified for crate::cache::CacheError {
    fn is_transient(&self) -> bool {
        crate::cache::CacheError::is_transient(self)
    }
}

impl Classified for crate::rebuild::catalog::CatalogError {
    fn is_transient(&self) -> bool {
        crate::rebuild::catalog::CatalogError::is_transient(self)
    }
}

impl Classified for crate::source::SourceError {
    fn is_transient(&self) -> bool {
        crate::source::SourceError::is_transient(self)
    }
}

/// Backoff policy and the places a retry is reported to.
#[derive(Clone)]
pub struct Retry {
    pub max_backoff: Duration,
    pub metrics: Metrics,
    pub health: Health,
}

impl Retry {
    /// Run `operation` until it succeeds or fails permanently. While it keeps
    /// failing transiently the process reports itself not ready.
    pub async fn run<T, E, F, Fut>(&self, component: &str, mut operation: F) -> Result<T, E>
    where
        E: Classified,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt: u32 = 0;
        loop {
            match operation().await {
                Ok(value) => {
                    if attempt > 0 {
                        self.health.set_degraded(component, false);
                        tracing::info!(
                            component,
                            attempts = attempt + 1,
                            "recovered after retries"
                        );
                    }
                    return Ok(value);
                }
                Err(error) if error.is_transient() => {
                    attempt += 1;
                    // Retrying is progress as far as liveness goes: a restart would not
                    // bring the cache back, and readiness already reports the outage.
                    self.health.beat();
                    self.health.set_degraded(component, true);
                    self.metrics.retries.with_label_values(&[component]).inc();
                    warn!(%error, component, attempt, backoff_ms = backoff.as_millis() as u64, "transient failure, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
                Err(error) => return Err(error),
            }
        }
    }
}
