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
use crate::pipeline::{Pipeline, PipelineError, Retry, Router};
use crate::projection::Definition;
use crate::source::{
    Assignment, Checkpoint, DeadLetter, DeadLetters, Fetched, Offsets, SourceError,
};

/// Offline there is no group to commit to.
struct NoCheckpoint;

impl Checkpoint for NoCheckpoint {
    fn store(&self, _offsets: &Offsets) -> Result<(), SourceError> {
        Ok(())
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
    let assignment = Arc::new(Assignment::default());
    let mut partitions: Vec<(String, i32)> = records
        .iter()
        .map(|record| (record.topic.clone(), record.partition.unwrap_or(0)))
        .collect();
    partitions.sort();
    partitions.dedup();
    assignment.assign(partitions);
    let pipeline = Pipeline {
        router: Router::new(definitions, caches),
        envelope: settings.envelope.clone(),
        metrics: metrics.clone(),
        retry: Retry {
            max_backoff: settings.pipeline.max_backoff,
            metrics,
            health: Health::new(),
        },
        assignment: Arc::clone(&assignment),
        checkpoint: Arc::new(NoCheckpoint),
        dead_letters: Some(Arc::clone(&failures) as Arc<dyn DeadLetters>),
    };
    let fetched: Vec<Fetched> = records
        .iter()
        .enumerate()
        .map(|(line, record)| {
            let record = record.to_raw_record(line as i64);
            let position = &record.position;
            let epoch = assignment
                .epoch(&position.topic, position.partition)
                .expect("every partition of the file was assigned above");
            Fetched { record, epoch }
        })
        .collect();
    for batch in fetched.chunks(settings.pipeline.batch_size) {
        pipeline.process(batch.to_vec()).await?;
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
