//! Running projections without Kafka: the real pipeline fed from an event file
//! (JSON lines of records, see [`crate::fixtures`]). Used by `projectionist test`
//! (golden fixtures) and `projectionist replay` (backfill from an export).

pub mod golden;
pub mod replay;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use crate::cache::memory::MemoryCache;
use crate::cache::{Cache, CacheResult, KEY_SEPARATOR};
use crate::config::Settings;
use crate::fixtures::FixtureRecord;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineError, Positioning, Retry, Router, Wiring};
use crate::projection::Definition;
use crate::source::{
    DeadLetter, DeadLetters, Delivery, Offsets, Partition, SourceControl, SourceError,
};

/// Offline there is no group to commit to, and a file is read once, in order,
/// so nothing is ever sought ([`Positioning::InOrder`]).
struct FileSource;

impl SourceControl for FileSource {
    fn store_offsets(&self, _offsets: &Offsets) -> Result<(), SourceError> {
        Ok(())
    }

    fn seek(&self, partition: &Partition, offset: i64) {
        tracing::warn!(%partition, offset, "a file cannot be read again; seek ignored");
    }
}

/// Offline, failures are collected to be shown, not sent anywhere.
#[derive(Default)]
pub struct CollectedFailures(Mutex<Vec<DeadLetter>>);

#[async_trait]
impl DeadLetters for CollectedFailures {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), SourceError> {
        self.0
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .extend_from_slice(letters);
        Ok(())
    }
}

impl CollectedFailures {
    pub fn take(&self) -> Vec<DeadLetter> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|poison| poison.into_inner()))
    }
}

/// Fold `records` in order, in batches of the configured size, through the
/// pipeline into `caches`; returns the permanent failures.
pub async fn fold_records(
    settings: &Settings,
    definitions: Vec<Definition>,
    caches: &BTreeMap<String, Arc<dyn Cache>>,
    records: &[FixtureRecord],
) -> Result<Vec<DeadLetter>, PipelineError> {
    let metrics = Metrics::new();
    let failures = Arc::new(CollectedFailures::default());
    let mut partitions: Vec<Partition> = records
        .iter()
        .map(|record| Partition::new(record.topic.as_str(), record.partition.unwrap_or(0)))
        .collect();
    partitions.sort();
    partitions.dedup();
    let mut pipeline = Pipeline::new(Wiring {
        router: Router::new(definitions, caches),
        envelope: settings.envelope.clone(),
        metrics: metrics.clone(),
        retry: Retry {
            max_backoff: settings.pipeline.max_backoff,
            metrics,
            health: Health::new(),
        },
        source: Arc::new(FileSource),
        dead_letters: Some(Arc::clone(&failures) as Arc<dyn DeadLetters>),
        group: "offline".to_owned(),
        positioning: Positioning::InOrder,
    });
    pipeline.deliver(Delivery::Assigned(partitions)).await?;
    let raw: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(line, record)| record.to_raw_record(line as i64))
        .collect();
    for batch in raw.chunks(settings.pipeline.batch_size) {
        pipeline.deliver(Delivery::Records(batch.to_vec())).await?;
    }
    Ok(failures.take())
}

/// A fresh memory cache under every configured cache name: nothing offline
/// touches a deployment's cache, and no run sees another's state.
pub fn memory_caches(settings: &Settings) -> BTreeMap<String, Arc<dyn Cache>> {
    settings
        .caches
        .iter()
        .map(|(name, cache)| {
            let memory: Arc<dyn Cache> = Arc::new(MemoryCache::new(cache.ttl));
            (name.clone(), memory)
        })
        .collect()
}

/// Every projection named `projection` in `cache`, as `(key, JSON)` sorted by key.
pub async fn stored(cache: &dyn Cache, projection: &str) -> CacheResult<Vec<(String, Value)>> {
    let pattern = format!("{}{KEY_SEPARATOR}*", crate::cache::glob::escape(projection));
    let found = cache.get_all(&pattern, 0, usize::MAX).await?;
    Ok(found
        .into_iter()
        .map(|projection| (projection.key(), projection.into_value()))
        .collect())
}

/// One line describing a failure: where (file line) and why.
pub fn describe(failure: &DeadLetter) -> String {
    format!(
        "record {}: {}{}: {}",
        failure.record.position.offset + 1,
        failure
            .projection
            .as_deref()
            .map(|name| format!("{name}: "))
            .unwrap_or_default(),
        failure.reason,
        failure.error
    )
}
