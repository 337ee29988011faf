//! What `/healthz` and `/readyz` report: liveness is the consume loop making
//! progress; readiness is the caches answering, the broker answering the
//! consumer's probe and the consumer holding its assignment, with no component
//! stuck in retries. It also carries the progress board ([`Progress`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::status::Progress;

/// A loop that has not beaten for this long is stuck: liveness fails, and every
/// projection reports `stalled`.
pub const STALL_AFTER: Duration = Duration::from_secs(60);

pub use crate::status::STALLED_AFTER_MS;

#[derive(Debug, Default)]
struct Inner {
    assigned: AtomicBool,
    /// The consumer's last probe of the broker went unanswered.
    broker_unreachable: AtomicBool,
    progress: Progress,
    /// Unix ms since which some component has been failing, 0 when none is.
    degraded_since_ms: AtomicU64,
    /// Unix milliseconds of the consume loop's last sign of life.
    heartbeat_ms: AtomicU64,
    degraded: Mutex<BTreeSet<String>>,
}

/// Shared health state; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

impl Health {
    pub fn new() -> Health {
        let health = Health::default();
        health.beat();
        health
    }

    pub fn set_assigned(&self, assigned: bool) {
        self.inner.assigned.store(assigned, Ordering::Relaxed);
    }

    pub fn is_assigned(&self) -> bool {
        self.inner.assigned.load(Ordering::Relaxed)
    }

    /// The consume loop is alive (called on every poll, even an empty one).
    pub fn beat(&self) {
        self.inner.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Pretend the last heartbeat was `by` ago (tests of liveness use it).
    pub fn backdate_heartbeat(&self, by: Duration) {
        let then = now_ms().saturating_sub(by.as_millis() as u64);
        self.inner.heartbeat_ms.store(then, Ordering::Relaxed);
    }

    /// Milliseconds since the last heartbeat.
    pub fn since_heartbeat_ms(&self) -> u64 {
        now_ms().saturating_sub(self.inner.heartbeat_ms.load(Ordering::Relaxed))
    }

    pub fn set_degraded(&self, component: &str, degraded: bool) {
        let mut set = self
            .inner
            .degraded
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if degraded {
            set.insert(component.to_owned());
        } else {
            set.remove(component);
        }
        let since = &self.inner.degraded_since_ms;
        if set.is_empty() {
            since.store(0, Ordering::Relaxed);
        } else if since.load(Ordering::Relaxed) == 0 {
            since.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// Components currently failing and being retried.
    pub fn degraded(&self) -> Vec<String> {
        self.inner
            .degraded
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Unix seconds of the last heartbeat, for `projectionist_heartbeat_timestamp_seconds`.
    pub fn heartbeat_unix_secs(&self) -> f64 {
        self.inner.heartbeat_ms.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Whether a component has been failing for longer than
    /// [`STALLED_AFTER_MS`], or the loop silent for [`STALL_AFTER`]: every
    /// projection is stalled then.
    pub fn failing(&self) -> bool {
        let since = self.inner.degraded_since_ms.load(Ordering::Relaxed);
        (since != 0 && now_ms().saturating_sub(since) > STALLED_AFTER_MS)
            || self.since_heartbeat_ms() > STALL_AFTER.as_millis() as u64
    }

    /// The broker answered (or did not answer) the consumer's last probe.
    pub fn set_broker_reachable(&self, reachable: bool) {
        self.inner
            .broker_unreachable
            .store(!reachable, Ordering::Relaxed);
    }

    pub fn is_broker_reachable(&self) -> bool {
        !self.inner.broker_unreachable.load(Ordering::Relaxed)
    }

    /// What every partition has applied, and the pauses in force.
    pub fn progress(&self) -> &Progress {
        &self.inner.progress
    }
}
