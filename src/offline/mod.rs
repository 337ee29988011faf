//! Running projections without Kafka: the real pipeline fed from an event file
//! (JSON lines of records, see [`crate::fixtures`]). Used by `projectionist test`
//! (golden fixtures) and `projectionist replay` (backfill from an export).

pub mod golden;
pub mod replay;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use crate::cache::memory::MemoryCache;
use crate::cache::{Cache, CacheResult, KEY_SEPARATOR};
use crate::config::Settings;
use crate::fixtures::{FileRecord, FixtureRecord};
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

/// Why an offline fold stopped.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A line of the event file could not be read.
    #[error("{0}")]
    Input(String),
}

/// What an offline fold did.
#[derive(Debug)]
pub struct Folding {
    pub records: usize,
    pub failures: Vec<DeadLetter>,
}

/// Fold `records` in order, in batches of the configured size, through the
/// pipeline into `caches`; returns the permanent failures.
pub async fn fold_records(
    settings: &Settings,
    definitions: Vec<Definition>,
    caches: &BTreeMap<String, Arc<dyn Cache>>,
    records: &[FixtureRecord],
) -> Result<Vec<DeadLetter>, FoldError> {
    let records = records.iter().map(|record| Ok(FileRecord::from(record)));
    let folding = fold_stream(settings, definitions, caches, records).await?;
    Ok(folding.failures)
}

/// [`fold_records`] over records as they are read: memory holds one batch,
/// whatever the length of the file.
pub async fn fold_stream(
    settings: &Settings,
    definitions: Vec<Definition>,
    caches: &BTreeMap<String, Arc<dyn Cache>>,
    records: impl Iterator<Item = Result<FileRecord, String>>,
) -> Result<Folding, FoldError> {
    let metrics = Metrics::new();
    let failures = Arc::new(CollectedFailures::default());
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
        catalog: None,
        bound: None,
    });
    let batch_size = settings.pipeline.batch_size;
    let mut assigned: BTreeSet<Partition> = BTreeSet::new();
    let mut batch = Vec::with_capacity(batch_size);
    let mut count = 0;
    let mut records = records.peekable();
    while let Some(record) = records.next() {
        let record = record.map_err(FoldError::Input)?;
        // Offsets are line numbers: they name the line in a failure's report.
        batch.push(record.into_raw_record(count as i64));
        count += 1;
        if batch.len() < batch_size && records.peek().is_some() {
            continue;
        }
        // A partition is assigned when the file first names it.
        let new: Vec<Partition> = batch
            .iter()
            .map(|record| Partition::new(&*record.position.topic, record.position.partition))
            .filter(|partition| !assigned.contains(partition))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !new.is_empty() {
            assigned.extend(new.iter().cloned());
            pipeline.deliver(Delivery::Assigned(new)).await?;
        }
        let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
        pipeline.deliver(Delivery::Records(full)).await?;
    }
    Ok(Folding {
        records: count,
        failures: failures.take(),
    })
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
