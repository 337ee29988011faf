//! The pipeline: batches in, projections out. Per batch: decode -> route ->
//! load the touched keys (one round trip per cache) -> fold -> write (one
//! round trip per cache) -> dead-letter the failures -> store the offsets.
//!
//! Batches are processed one at a time, each mixing records of every assigned
//! partition in their partition order. Running partitions' batches side by side
//! would race: a projection keyed differently from the partition key
//! (`customer_orders`) is read-modified-written from several partitions, and two
//! concurrent folds of one key lose an update.

mod fold;
mod retry;
mod router;
mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::cache::{CacheError, KEY_SEPARATOR};
use crate::event::{Envelope, Event, decode};
use crate::metrics::{Metrics, NO_PROJECTION};
use crate::source::{Assignment, Batch, Checkpoint, DeadLetter, DeadLetters, Offsets, SourceError};

pub use fold::{Folded, Work, Write, fold};
pub use retry::{Classified, Retry};
pub use router::{Route, Router};

/// Everything a batch needs; cheap to share.
pub struct Pipeline {
    pub router: Router,
    pub envelope: Envelope,
    pub metrics: Metrics,
    pub retry: Retry,
    pub assignment: Arc<Assignment>,
    pub checkpoint: Arc<dyn Checkpoint>,
    pub dead_letters: Option<Arc<dyn DeadLetters>>,
}

/// Why a batch could not be finished: only a permanent failure of the sink
/// itself (the cache refusing a write), which stops the pipeline rather than
/// skipping writes.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cache {cache:?} refused a batch: {error}")]
    Cache { cache: String, error: CacheError },
    #[error("dead-letter topic refused a batch: {0}")]
    DeadLetter(SourceError),
    #[error("offsets could not be stored: {0}")]
    Checkpoint(SourceError),
}

impl Pipeline {
    /// Process batches until the channel closes (the consumer stopped).
    pub async fn run(&self, mut batches: mpsc::Receiver<Batch>) -> Result<(), PipelineError> {
        while let Some(batch) = batches.recv().await {
            self.process(batch).await?;
        }
        Ok(())
    }

    /// Process one batch to the end: when this returns `Ok`, every write is
    /// acknowledged and the offsets are stored.
    pub async fn process(&self, batch: Batch) -> Result<(), PipelineError> {
        let started = Instant::now();
        let _in_flight = self.assignment.in_flight.lock().await;
        let records: Vec<_> = batch
            .into_iter()
            .filter(|fetched| self.assignment.owns(fetched))
            .map(|fetched| fetched.record)
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        let mut letters = Vec::new();
        let mut events: Vec<Event> = Vec::with_capacity(records.len());
        let mut sources: Vec<usize> = Vec::with_capacity(records.len());
        let mut work = Vec::new();
        // Counted per topic once a batch: a labelled counter is a locked lookup.
        let mut consumed: BTreeMap<&str, u64> = BTreeMap::new();
        for record in &records {
            *consumed.entry(record.position.topic.as_str()).or_default() += 1;
        }
        for (topic, count) in consumed {
            self.metrics
                .events_consumed
                .with_label_values(&[topic])
                .inc_by(count);
        }
        for (index, record) in records.iter().enumerate() {
            let event = match decode(record, &self.envelope) {
                Ok(event) => event,
                Err(error) => {
                    letters.push(self.failure(record, None, error.reason(), error.to_string()));
                    continue;
                }
            };
            let routes = self
                .router
                .routes_for(&record.position.topic, &event.event_type);
            if routes.is_empty() {
                self.metrics
                    .events_skipped
                    .with_label_values(&[NO_PROJECTION, "unrouted_type"])
                    .inc();
                continue;
            }
            for &route in routes {
                let definition = &self.router.route(route).definition;
                match definition.identifier.render(&event) {
                    Ok(identifier) => work.push(Work {
                        event: events.len(),
                        route,
                        key: format!("{}{KEY_SEPARATOR}{identifier}", definition.name),
                    }),
                    Err(error) => letters.push(self.failure(
                        record,
                        Some(&definition.name),
                        "missing_identifier",
                        error,
                    )),
                }
            }
            events.push(event);
            sources.push(index);
        }
        // Write every cache only if the keys it writes still hold what was
        // loaded; a cache that lost a race (another replica wrote a shared key)
        // is loaded and folded again, the others are done. A key's fold depends
        // on that key alone, so re-folding only the pending caches is exact.
        let mut pending: BTreeSet<&str> = work
            .iter()
            .map(|item| self.router.route(item.route).definition.cache.as_str())
            .collect();
        let mut conflicts: u32 = 0;
        while !pending.is_empty() {
            let mut attempt: Vec<Work> = work
                .iter()
                .filter(|item| {
                    pending.contains(self.router.route(item.route).definition.cache.as_str())
                })
                .cloned()
                .collect();
            let (states, versions, corrupt) = self.load(&attempt).await?;
            // A key whose stored value is not JSON cannot be folded: its events
            // fail (and are dead-lettered) while the rest of the batch goes on.
            // They leave `work` too, so a conflict retry neither letters them
            // again nor misses a key that turned corrupt since the last attempt.
            if !corrupt.is_empty() {
                work.retain(|item| match corrupt.get(&item.key) {
                    Some(error) => {
                        let record = &records[sources[item.event]];
                        let name = &self.router.route(item.route).definition.name;
                        letters.push(self.failure(
                            record,
                            Some(name),
                            "corrupt_state",
                            error.clone(),
                        ));
                        false
                    }
                    None => true,
                });
                attempt.retain(|item| !corrupt.contains_key(&item.key));
            }
            let folded = fold(&self.router, &events, &attempt, states);
            let applied = self.write(&folded, &versions, &pending).await?;
            let done =
                |route: usize| applied.contains(self.router.route(route).definition.cache.as_str());
            for refusal in folded.refusals.iter().filter(|refusal| done(refusal.route)) {
                let record = &records[sources[refusal.event]];
                let name = &self.router.route(refusal.route).definition.name;
                letters.push(self.failure(
                    record,
                    Some(name),
                    refusal.reason,
                    refusal.error.clone(),
                ));
            }
            self.count_outcomes(&folded, &done);
            self.observe_freshness(&folded, &done);
            pending.retain(|cache| !applied.contains(*cache));
            if !pending.is_empty() {
                conflicts += 1;
                self.metrics.retries.with_label_values(&["conflict"]).inc();
                debug!(conflicts, caches = ?pending, "a shared key changed since it was loaded; folding again");
                let pause = Duration::from_millis(u64::from(conflicts.min(20)) * 5);
                tokio::time::sleep(pause).await;
            }
        }
        self.dead_letter(&letters).await?;
        self.store_offsets(&records)?;
        self.metrics.batch_size.observe(records.len() as f64);
        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        self.retry.health.beat();
        debug!(records = records.len(), conflicts, "batch done");
        Ok(())
    }

    /// Log and count a permanent failure, and make its dead letter.
    fn failure(
        &self,
        record: &crate::event::RawRecord,
        projection: Option<&str>,
        reason: &'static str,
        error: String,
    ) -> DeadLetter {
        let position = &record.position;
        // The producer's trace, when it sent one, follows the failure into the logs.
        let traceparent = record
            .headers
            .iter()
            .find(|(name, _)| name == "traceparent")
            .and_then(|(_, value)| value.as_deref())
            .map(String::from_utf8_lossy);
        let span = match &traceparent {
            Some(traceparent) => tracing::warn_span!("event", %traceparent),
            None => tracing::Span::none(),
        };
        let _entered = span.enter();
        warn!(
            topic = %position.topic,
            partition = position.partition,
            offset = position.offset,
            projection = projection.unwrap_or(NO_PROJECTION),
            reason,
            %error,
            "event failed permanently and is passed over"
        );
        self.metrics
            .events_failed
            .with_label_values(&[projection.unwrap_or(NO_PROJECTION), reason])
            .inc();
        DeadLetter {
            record: record.clone(),
            projection: projection.map(str::to_owned),
            reason,
            error,
        }
    }

    fn count_outcomes(&self, folded: &Folded, done: &dyn Fn(usize) -> bool) {
        for (route, count) in folded.applied.iter().filter(|(route, _)| done(**route)) {
            let name = &self.router.route(*route).definition.name;
            self.metrics
                .events_projected
                .with_label_values(&[name])
                .inc_by(*count);
        }
        for (route, count) in folded.skipped.iter().filter(|(route, _)| done(**route)) {
            let name = &self.router.route(*route).definition.name;
            self.metrics
                .events_skipped
                .with_label_values(&[name, "projector_skip"])
                .inc_by(*count);
        }
    }

    async fn dead_letter(&self, letters: &[DeadLetter]) -> Result<(), PipelineError> {
        if letters.is_empty() {
            return Ok(());
        }
        let Some(sink) = &self.dead_letters else {
            return Ok(());
        };
        self.retry
            .run("dead_letter", || sink.send(letters))
            .await
            .map_err(PipelineError::DeadLetter)?;
        for letter in letters {
            self.metrics
                .events_dead_lettered
                .with_label_values(&[
                    letter.projection.as_deref().unwrap_or(NO_PROJECTION),
                    letter.reason,
                ])
                .inc();
        }
        Ok(())
    }

    /// Freshness of every written projection: how old its newest event is now.
    fn observe_freshness(&self, folded: &Folded, done: &dyn Fn(usize) -> bool) {
        let now = chrono::Utc::now();
        let mut newest: HashMap<usize, f64> = HashMap::new();
        for write in folded.writes.iter().filter(|write| done(write.route)) {
            let Some(time) = write.event_time else {
                continue;
            };
            let age = (now - time).num_milliseconds().max(0) as f64 / 1000.0;
            let name = &self.router.route(write.route).definition.name;
            self.metrics
                .projection_freshness
                .with_label_values(&[name])
                .observe(age);
            let best = newest.entry(write.route).or_insert(age);
            *best = best.min(age);
        }
        for (route, age) in newest {
            let name = &self.router.route(route).definition.name;
            self.retry.health.record_write(name, age);
        }
    }

    fn store_offsets(&self, records: &[crate::event::RawRecord]) -> Result<(), PipelineError> {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        let mut newest_ms: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for record in records {
            let position = &record.position;
            let entry = next
                .entry((position.topic.as_str(), position.partition))
                .or_insert(position.offset + 1);
            *entry = (*entry).max(position.offset + 1);
            if let Some(timestamp) = record.timestamp_ms {
                newest_ms.insert((position.topic.as_str(), position.partition), timestamp);
            }
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        for ((topic, partition), timestamp) in newest_ms {
            let age = (now_ms - timestamp).max(0) as f64 / 1000.0;
            self.metrics
                .consumer_lag_seconds
                .with_label_values(&[topic, &partition.to_string()])
                .set(age);
        }
        let offsets: Offsets = next
            .into_iter()
            .map(|((topic, partition), offset)| (topic.to_owned(), partition, offset))
            .collect();
        self.checkpoint
            .store(&offsets)
            .map_err(PipelineError::Checkpoint)
    }

    fn cache_timer(&self, cache: &str, operation: &str) -> prometheus::HistogramTimer {
        self.metrics
            .cache_operation_duration
            .with_label_values(&[cache, operation])
            .start_timer()
    }
}
