//! What `/healthz` and `/readyz` report: liveness is the consume loop making
//! progress; readiness is the caches answering and the consumer holding its
//! assignment, with no component stuck in retries.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
struct Inner {
    assigned: AtomicBool,
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
}
