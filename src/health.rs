//! What `/healthz` and `/readyz` report: liveness is the consume loop making
//! progress; readiness is the caches answering and the consumer holding its
//! assignment, with no component stuck in retries.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A loop that has not beaten for this long is stuck: liveness fails, and every
/// projection reports `stalled`.
pub const STALL_AFTER: Duration = Duration::from_secs(60);

/// A projection is catching up while the events it writes are older than this.
pub const LIVE_WITHIN_SECS: f64 = 60.0;

/// A component failing for longer than this makes its projections stalled.
pub const STALLED_AFTER_MS: u64 = 30_000;

#[derive(Debug, Default)]
struct Inner {
    assigned: AtomicBool,
    /// Per projection: when it was last written (unix ms) and how old the newest
    /// event of that write was (seconds).
    writes: Mutex<std::collections::HashMap<String, (u64, f64)>>,
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

    /// A projection was written with events `age_secs` old.
    pub fn record_write(&self, projection: &str, age_secs: f64) {
        self.inner
            .writes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(projection.to_owned(), (now_ms(), age_secs));
    }

    /// `stalled` while a component has been failing for a while (or the loop is
    /// silent), `catching_up` while recent writes carry old events, else `live`.
    pub fn projection_state(&self, projection: &str) -> &'static str {
        let since = self.inner.degraded_since_ms.load(Ordering::Relaxed);
        let now = now_ms();
        if (since != 0 && now.saturating_sub(since) > STALLED_AFTER_MS)
            || self.since_heartbeat_ms() > STALL_AFTER.as_millis() as u64
        {
            return "stalled";
        }
        let writes = self
            .inner
            .writes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match writes.get(projection) {
            Some((written_ms, age))
                if *age > LIVE_WITHIN_SECS
                    && now.saturating_sub(*written_ms) < (LIVE_WITHIN_SECS * 1000.0) as u64 =>
            {
                "catching_up"
            }
            _ => "live",
        }
    }
}
