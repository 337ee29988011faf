//! How far a shadow stands from the live version, partition by partition,
//! read from the two checkpoints: the same answer on every replica.

use serde::Serialize;

use super::catalog::{Catalog, CatalogError};
use super::state::Shadow;
use crate::cache::{Partition, checkpoint_scope};

/// One partition: the live checkpoint and the shadow's.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Standing {
    pub partition: String,
    pub live: Option<i64>,
    pub shadow: Option<i64>,
}

impl Standing {
    /// Records the shadow has still to apply to reach the live version.
    pub fn behind(&self) -> i64 {
        match (self.live, self.shadow) {
            (Some(live), shadow) => (live - shadow.unwrap_or(0)).max(0),
            (None, _) => 0,
        }
    }
}

/// A shadow's distance from the live version.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Records the live version has applied, over every partition.
    pub live: i64,
    /// Records the shadow has still to apply to reach it.
    pub remaining: i64,
    pub partitions: Vec<Standing>,
}

impl Progress {
    /// The shadow stands exactly where the live version does.
    pub fn level(&self) -> bool {
        self.partitions
            .iter()
            .all(|standing| standing.live == standing.shadow)
    }

    /// Done so far, from 0 to 1.
    pub fn ratio(&self) -> f64 {
        if self.live <= 0 {
            return 1.0;
        }
        1.0 - self.remaining as f64 / self.live as f64
    }
}

/// Where `shadow` of projection `name` stands on `partitions`.
pub async fn measure(
    catalog: &Catalog,
    name: &str,
    shadow: &Shadow,
    partitions: &[Partition],
) -> Result<Progress, CatalogError> {
    let cache = catalog.cache(name)?;
    let cache_name = catalog.cache_name(name).unwrap_or_default();
    let live_scope = checkpoint_scope(&catalog.group, cache_name);
    let shadow_scope = shadow.scope(&catalog.group, name, cache_name);
    let mut standings = Vec::with_capacity(partitions.len());
    for partition in partitions {
        standings.push(Standing {
            partition: partition.to_string(),
            live: cache.applied(&live_scope, partition).await?,
            shadow: cache.applied(&shadow_scope, partition).await?,
        });
    }
    Ok(Progress {
        live: standings.iter().filter_map(|standing| standing.live).sum(),
        remaining: standings.iter().map(Standing::behind).sum(),
        partitions: standings,
    })
}

/// Set the rebuild gauges of every projection `catalog` knows: its live
/// version, its shadow's, and how far the shadow is behind.
pub async fn publish(catalog: &Catalog, metrics: &crate::metrics::Metrics) {
    let names: Vec<String> = catalog.names().map(|(name, _)| name.clone()).collect();
    for name in names {
        let Ok(Some(state)) = catalog.state(&name).await else {
            continue;
        };
        let version = |role: &str, version: u32| {
            metrics
                .rebuild_version
                .with_label_values(&[name.as_str(), role])
                .set(i64::from(version));
        };
        version("live", state.live);
        version(
            "shadow",
            state.shadow.as_ref().map_or(0, |shadow| shadow.version),
        );
        let remaining = metrics
            .rebuild_remaining
            .with_label_values(&[name.as_str()]);
        let Some(shadow) = state.shadow else {
            remaining.set(0);
            continue;
        };
        let Ok(partitions) = catalog.partitions(&name).await else {
            continue;
        };
        if let Ok(progress) = measure(catalog, &name, &shadow, &partitions).await {
            remaining.set(progress.remaining);
        }
    }
}
