//! Running projections without Kafka: the real pipeline fed from an event file
//! (JSON lines of records, see [`crate::fixtures`]). Used by `projectionist test`
//! (golden fixtures) and `projectionist replay` (backfill from an export).

pub mod golden;
pub mod replay;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::cache::Cache;
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
