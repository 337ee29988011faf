//! The memory store's background sweep: it walks the keys in turn, a share of
//! them each second (as Redis samples its keys), and drops the expired ones
//! nobody read. There is no index of expiries to walk instead: it held a
//! second copy of every key in a second tree, and cost two more tree updates
//! per write.

use std::sync::Weak;
use std::time::Duration;

use tokio::time::Instant;

use super::{Inner, Store};

/// How often the sweep looks for expired entries.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// The sweep looks at every entry at least once in this many intervals...
const SWEEP_PASS_INTERVALS: usize = 8;
/// ...and at no fewer than this many entries per interval.
const SWEEP_MIN_ENTRIES: usize = 10_000;
/// Entries looked at under one hold of the read lock, so writers wait for at
/// most one chunk, not a whole step.
const SWEEP_CHUNK: usize = 4_096;

impl Inner {
    /// Up to `limit` keys after `cursor` (from the first key when `None`),
    /// and the expired ones among them.
    fn expired_after(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: Instant,
    ) -> (Vec<String>, Option<String>) {
        let start = match cursor {
            Some(after) => std::ops::Bound::Excluded(after),
            None => std::ops::Bound::Unbounded,
        };
        let mut expired = Vec::new();
        let mut last = None;
        for (key, entry) in self
            .entries
            .range::<str, _>((start, std::ops::Bound::Unbounded))
            .take(limit)
        {
            if !entry.is_live(now) {
                expired.push(key.clone());
            }
            last = Some(key);
        }
        (expired, last.cloned())
    }

    /// Drop those of `keys` that are (still) expired; returns how many went.
    fn drop_expired(&mut self, keys: &[String], now: Instant) -> usize {
        keys.iter()
            .filter(|key| {
                let expired = self
                    .entries
                    .get(key.as_str())
                    .is_some_and(|e| !e.is_live(now));
                expired && self.remove(key)
            })
            .count()
    }
}

impl Store {
    /// Look at up to `budget` entries after `cursor` and drop the expired
    /// ones; `cursor` moves on, back to `None` at the end of the keys.
    /// Returns how many went.
    fn sweep_step(&self, cursor: &mut Option<String>, budget: usize) -> usize {
        let mut swept = 0;
        let mut left = budget;
        while left > 0 {
            let now = Instant::now();
            let chunk = left.min(SWEEP_CHUNK);
            // Found under the read lock, so readers never wait for the walk.
            let (expired, last) = self.read().expired_after(cursor.as_deref(), chunk, now);
            if !expired.is_empty() {
                swept += self.write().drop_expired(&expired, now);
            }
            let Some(last) = last else {
                *cursor = None;
                break;
            };
            *cursor = Some(last);
            left -= chunk;
        }
        swept
    }

    /// How many entries the sweep looks at in one interval.
    fn sweep_budget(&self) -> usize {
        (self.read().entries.len() / SWEEP_PASS_INTERVALS).max(SWEEP_MIN_ENTRIES)
    }
}

/// Sweep `store` every [`SWEEP_INTERVAL`] until the last handle on it is gone.
pub(super) async fn sweep_until_dropped(store: Weak<Store>) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = None;
    loop {
        ticks.tick().await;
        let Some(store) = store.upgrade() else {
            return;
        };
        let budget = store.sweep_budget();
        store.sweep_step(&mut cursor, budget);
    }
}
