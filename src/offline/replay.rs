//! `projectionist replay`: apply a file of events to the configured caches (a
//! backfill from an export), or, with `--dry-run`, fold them into memory from an
//! empty state and print the resulting projections without writing anything.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use super::{describe, fold_stream, memory_caches, stored};
use crate::cache::Cache;
use crate::config::Settings;
use crate::fixtures::jsonl_records;
use crate::pipeline::Retry;
use crate::projection::load_dir;
use crate::projector::Registry;

/// What a replay did.
#[derive(Debug)]
pub struct ReplayReport {
    pub records: usize,
    pub failures: Vec<String>,
    /// With `--dry-run`: every resulting projection, `(key, JSON)`, sorted by key.
    pub projections: Vec<(String, serde_json::Value)>,
}

pub async fn run(
    settings: &Settings,
    registry: &Registry,
    events: &Path,
    dry_run: bool,
) -> anyhow::Result<ReplayReport> {
    let definitions = load_dir(settings, registry)?;
    // Streamed, twice: a backfill's file can be far larger than memory, and a
    // bad line must stop the replay before anything is written (a replay
    // keeps no checkpoint, so running it again would apply the first part
    // twice).
    for record in jsonl_records(events).map_err(anyhow::Error::msg)? {
        record.map_err(anyhow::Error::msg)?;
    }
    let records = jsonl_records(events).map_err(anyhow::Error::msg)?;
    let caches: BTreeMap<String, Arc<dyn Cache>> = if dry_run {
        memory_caches(settings)
    } else {
        let metrics = crate::metrics::Metrics::new();
        let retry = Retry {
            max_backoff: settings.pipeline.max_backoff,
            metrics,
            health: crate::health::Health::new(),
        };
        crate::app::connect_caches(settings, &retry).await?
    };
    // Which cache holds each projection, kept for the listing: the fold
    // takes the definitions.
    let cache_of: Vec<(String, String)> = definitions
        .iter()
        .map(|definition| (definition.name.clone(), definition.cache.clone()))
        .collect();
    let folding = fold_stream(settings, definitions, &caches, records)
        .await
        .context("replaying events")?;
    let mut projections = Vec::new();
    if dry_run {
        for (name, cache) in &cache_of {
            projections.extend(stored(caches[cache].as_ref(), name).await?);
        }
        projections.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok(ReplayReport {
        records: folding.records,
        failures: folding.failures.iter().map(describe).collect(),
        projections,
    })
}
