//! Replaying dead letters: read the dead-letter topic from its letters
//! checkpoint to where it ended when the replay began (or to an offset), and
//! hand the letters to a pipeline that replays them
//! ([`Pipeline::replaying_letters`]); the pipeline commits each chunk's
//! writes with the checkpoint's advance. This side only reads, answers the
//! pipeline's seeks, and reports what the checkpoints say in the end.
//!
//! A record sent twice to the dead-letter topic (a crash between the letter
//! and the commit that passed its record) is two letters with one origin:
//! the later one is marked [`DUPLICATE_OF`] the first and passed over, so the
//! event is applied once. Only within one replay: one that stops between
//! the two letters (`--to`) applies the later one when it comes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::reletter::{Reletter, Relettered};
use super::{Caches, LetterLog, LettersError, Polled, Target, handled, letters_group, ranges};
use crate::cache::Partition;
use crate::event::{Envelope, Position, RawRecord};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::pipeline::{DUPLICATE_OF, Pipeline, Positioning, Retry, Router, Wiring};
use crate::source::headers::Origin;
use crate::source::{DeadLetters, Delivery, Offsets, SourceControl, SourceError};

/// How long one read waits for a letter before a partial batch goes.
const POLL: Duration = Duration::from_millis(100);

/// What a replay needs.
pub struct Replay {
    /// The projections as they are defined now (fixed), with their caches.
    pub router: Router,
    pub envelope: Envelope,
    /// The daemon's consumer group: the letters checkpoint is its
    /// [`letters_group`]'s.
    pub group: String,
    pub topic: String,
    pub log: Arc<dyn LetterLog>,
    /// Where letters that fail again go (the dead-letter topic).
    pub sink: Arc<dyn DeadLetters>,
    pub batch_size: usize,
    pub max_backoff: Duration,
    /// The replay stops, unfinished, when the topic sends nothing for this long...
    pub idle: Duration,
    /// ...or between two batches once this is cancelled (the daemon stops).
    pub stop: CancellationToken,
}

/// What a replay did, by the checkpoints.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub topic: String,
    /// Every partition asked for was taken up to where it was meant to end.
    pub finished: bool,
    pub partitions: Vec<PartitionReport>,
    /// Letters applied to the projections they failed for.
    pub replayed: u64,
    /// Letters that failed again, sent to the dead-letter topic anew.
    pub failed_again: usize,
    /// The first of them (see [`super::reletter::LISTED`]).
    pub failures: Vec<Relettered>,
    /// Letters passed over as a second letter about one record's failure.
    pub duplicates: u64,
    /// Why the replay is unfinished, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One partition of the dead-letter topic: pending from `from` (`None`: from
/// its first letter) before the replay, from `to` after it; `end` is where
/// the replay meant to stop (exclusive).
#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub partition: i32,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub end: i64,
    pub finished: bool,
}

impl ReplayReport {
    /// Letters the replay took up, however they ended.
    pub fn handled(&self) -> u64 {
        self.replayed + self.failed_again as u64 + self.duplicates
    }
}

/// Replay the letters `target` names, to the projections they failed for.
pub async fn replay(replay: Replay, target: Target) -> Result<ReplayReport, LettersError> {
    let ends = replay.log.ends().await?;
    let stops = ranges(&replay.topic, &ends, target)?;
    let caches = router_caches(&replay.router);
    let partitions = stops.keys().copied();
    let before = handled(&caches, &replay.group, &replay.topic, partitions).await?;
    let pending: BTreeMap<i32, i64> = stops
        .iter()
        .filter(|&(partition, &stop)| before[partition].unwrap_or(0) < stop)
        .map(|(&partition, &stop)| (partition, stop))
        .collect();
    let sink = Arc::new(Reletter::new(Arc::clone(&replay.sink)));
    let mut reading = Reading::new(pending);
    let mut note = None;
    if !reading.stops.is_empty() {
        info!(topic = %replay.topic, partitions = ?reading.stops, "replaying dead letters");
        note = read_and_apply(&replay, &sink, &mut reading).await?;
    }
    let after = handled(&caches, &replay.group, &replay.topic, stops.keys().copied()).await?;
    let mut partitions = Vec::new();
    let mut taken_up = 0;
    for (&partition, &end) in &stops {
        let (from, to) = (before[&partition], after[&partition]);
        let start = from.or(reading.first.get(&partition).copied());
        if let (Some(start), Some(to)) = (start, to) {
            taken_up += u64::try_from(to - start).unwrap_or(0);
        }
        partitions.push(PartitionReport {
            partition,
            from,
            to,
            end,
            finished: end == 0 || to.is_some_and(|to| to >= end),
        });
    }
    let (failed_again, failures) = sink.sent();
    let duplicates = reading.duplicates.len() as u64;
    let finished = partitions.iter().all(|partition| partition.finished);
    if !finished && note.is_none() {
        note = Some(
            "a partition's checkpoint stopped short: another replica's replay or purge took \
             it over, or the letters were not readable; run the replay again"
                .to_owned(),
        );
    }
    Ok(ReplayReport {
        topic: replay.topic,
        finished,
        partitions,
        replayed: taken_up.saturating_sub(failed_again as u64 + duplicates),
        failed_again,
        failures,
        duplicates,
        note,
    })
}

/// Every cache the projections write to: each keeps a letters checkpoint.
pub fn router_caches(router: &Router) -> Caches {
    let mut caches: Caches = Vec::new();
    for index in 0..router.len() {
        let route = router.route(index);
        if !caches
            .iter()
            .any(|(name, _)| name == &route.definition.cache)
        {
            caches.push((route.definition.cache.clone(), Arc::clone(&route.cache)));
        }
    }
    caches
}

/// The seeks the pipeline asks for, made by the reader between chunks. No
/// offsets go to Kafka: the checkpoints are the only record of a replay.
#[derive(Default)]
struct Seeks(Mutex<BTreeMap<i32, i64>>);

impl Seeks {
    fn take(&self) -> BTreeMap<i32, i64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl SourceControl for Seeks {
    fn store_offsets(&self, _offsets: &Offsets) -> Result<(), SourceError> {
        Ok(())
    }

    fn seek(&self, partition: &Partition, offset: i64) {
        let mut seeks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        seeks.insert(partition.number, offset);
    }
}

/// Where the reading of each partition stands.
struct Reading {
    /// Per partition still to read, where it stops (exclusive).
    stops: BTreeMap<i32, i64>,
    /// Partitions read to their stop (or to the end of what is written).
    reached: BTreeSet<i32>,
    /// The first offset read per partition: where a never-replayed one began.
    first: BTreeMap<i32, i64>,
    /// Each origin's first letter, by position in the dead-letter topic.
    origins: HashMap<Origin, (i32, i64)>,
    duplicates: BTreeSet<(i32, i64)>,
}

impl Reading {
    fn new(stops: BTreeMap<i32, i64>) -> Reading {
        Reading {
            stops,
            reached: BTreeSet::new(),
            first: BTreeMap::new(),
            origins: HashMap::new(),
            duplicates: BTreeSet::new(),
        }
    }

    fn done(&self) -> bool {
        self.reached.len() == self.stops.len()
    }

    /// The letter to hand the pipeline, if it is within the replay.
    fn take(&mut self, mut record: RawRecord) -> Option<RawRecord> {
        let Position {
            partition, offset, ..
        } = record.position;
        let &stop = self.stops.get(&partition)?;
        if offset >= stop {
            self.reached.insert(partition);
            return None;
        }
        if offset + 1 >= stop {
            self.reached.insert(partition);
        }
        self.first.entry(partition).or_insert(offset);
        if let Some(origin) = Origin::of(&record.headers) {
            let first = *self.origins.entry(origin).or_insert((partition, offset));
            if first != (partition, offset) {
                self.duplicates.insert((partition, offset));
                let value = format!("{}/{}", first.0, first.1).into_bytes();
                record.headers.push((DUPLICATE_OF.to_owned(), Some(value)));
            }
        }
        Some(record)
    }
}

/// Read the letters and hand them to a replaying pipeline until every
/// partition is read to its stop; `Some(why)` when it gave up waiting.
async fn read_and_apply(
    replay: &Replay,
    sink: &Arc<Reletter>,
    reading: &mut Reading,
) -> Result<Option<String>, LettersError> {
    let metrics = Metrics::new();
    let seeks = Arc::new(Seeks::default());
    let mut pipeline = Pipeline::new(Wiring {
        router: replay.router.clone(),
        envelope: replay.envelope.clone(),
        metrics: metrics.clone(),
        // Its own health: a replay's retries say nothing of the daemon's
        // readiness, and the daemon's pauses were checked before it began.
        retry: Retry {
            max_backoff: replay.max_backoff,
            metrics,
            health: Health::new(),
        },
        source: Arc::clone(&seeks) as Arc<dyn SourceControl>,
        dead_letters: Some(Arc::clone(sink) as Arc<dyn DeadLetters>),
        group: letters_group(&replay.group),
        positioning: Positioning::Seek,
        // The live versions were loaded into the router at the start.
        catalog: None,
        bound: None,
    })
    .replaying_letters(&replay.topic);
    let topic = replay.topic.as_str();
    let assigned = reading
        .stops
        .keys()
        .map(|&number| Partition::new(topic, number))
        .collect();
    pipeline.deliver(Delivery::Assigned(assigned)).await?;
    // The claims put each partition at its checkpoint.
    let sought = seeks.take();
    let starts: Vec<(i32, Option<i64>)> = reading
        .stops
        .keys()
        .map(|number| (*number, sought.get(number).copied()))
        .collect();
    replay.log.assign(&starts).await?;
    for (number, offset) in sought {
        let partition = Partition::new(topic, number);
        pipeline
            .deliver(Delivery::Sought { partition, offset })
            .await?;
    }
    let mut batch = Vec::new();
    let mut heard = Instant::now();
    loop {
        if replay.stop.is_cancelled() {
            return Ok(Some(
                "the daemon is shutting down; run the replay again".to_owned(),
            ));
        }
        let polled = if reading.done() {
            None
        } else {
            replay.log.poll(POLL).await?
        };
        match polled {
            Some(Polled::Letter(record)) => {
                heard = Instant::now();
                batch.extend(reading.take(record));
                if batch.len() < replay.batch_size {
                    continue;
                }
            }
            Some(Polled::End(number)) => {
                heard = Instant::now();
                reading.reached.insert(number);
                continue;
            }
            None if batch.is_empty() && reading.done() => return Ok(None),
            None if batch.is_empty() && heard.elapsed() >= replay.idle => {
                let unread: Vec<i32> = reading
                    .stops
                    .keys()
                    .filter(|number| !reading.reached.contains(number))
                    .copied()
                    .collect();
                warn!(partitions = ?unread, "the dead-letter topic sent nothing; replay stops unfinished");
                let idle = replay.idle.as_secs();
                return Ok(Some(format!(
                    "the dead-letter topic sent nothing for {idle} s while partitions \
                     {unread:?} were unread; run the replay again"
                )));
            }
            None if batch.is_empty() => continue,
            None => {}
        }
        let records = std::mem::take(&mut batch);
        pipeline.deliver(Delivery::Records(records)).await?;
        // The pipeline asks for a seek where letters are missing from the
        // stream or its checkpoint moved: read from there again.
        for (number, offset) in seeks.take() {
            replay.log.seek(number, offset).await?;
            reading.reached.remove(&number);
            let partition = Partition::new(topic, number);
            pipeline
                .deliver(Delivery::Sought { partition, offset })
                .await?;
        }
    }
}
