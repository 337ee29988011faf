//! Pauses an operator asked for, kept in each projection's own cache (under
//! `@projectionist/paused/{group}`) so every replica obeys them and a restart
//! keeps them. Every replica reads them again each [`PAUSE_POLL`].
//!
//! A pause holds the projection's whole cache: a cache has one checkpoint per
//! partition, so letting the cache's other projections move on would carry the
//! checkpoint past events the paused one never applied.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Progress;
use crate::cache::{Cache, CacheResult};

/// How often every replica reads the pauses again.
pub const PAUSE_POLL: Duration = Duration::from_secs(1);

/// Paused projections, each with the cache it holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pauses {
    paused: BTreeMap<String, String>,
}

impl Pauses {
    pub fn held_caches(&self) -> BTreeSet<String> {
        self.paused.values().cloned().collect()
    }

    /// The paused projections that hold `cache`.
    pub fn held_by(&self, cache: &str) -> Vec<String> {
        self.paused
            .iter()
            .filter(|(_, held)| *held == cache)
            .map(|(projection, _)| projection.clone())
            .collect()
    }
}

/// Read the pauses of `group` from every cache; `projections` maps each
/// projection to its cache (a flag in another cache is not the projection's).
pub async fn load_pauses(
    caches: &BTreeMap<String, Arc<dyn Cache>>,
    projections: &BTreeMap<String, String>,
    group: &str,
) -> CacheResult<Pauses> {
    let mut pauses = Pauses::default();
    for (name, cache) in caches {
        for projection in cache.paused(group).await? {
            if projections.get(&projection) == Some(name) {
                pauses.paused.insert(projection, name.clone());
            }
        }
    }
    Ok(pauses)
}

/// Keep `progress`'s pauses current until `stop`; an unreadable cache keeps
/// the pauses last read (a pause is never dropped because Redis blinked).
pub async fn watch_pauses(
    progress: Progress,
    caches: BTreeMap<String, Arc<dyn Cache>>,
    projections: BTreeMap<String, String>,
    group: String,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(PAUSE_POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        match load_pauses(&caches, &projections, &group).await {
            Ok(pauses) => {
                let before = progress.pauses();
                if before != pauses {
                    let paused: Vec<&String> = pauses.paused.keys().collect();
                    info!(?paused, "pauses changed");
                }
                progress.set_pauses(pauses);
            }
            Err(error) => warn!(%error, "pauses could not be read; keeping the last ones"),
        }
    }
}
