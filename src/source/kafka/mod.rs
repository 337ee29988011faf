//! The Kafka adapter: a consumer-group member on a thread of its own that fetches
//! records, takes the partitions in turn ([`Queues`]), forms batches (up to N
//! records or T milliseconds) and hands them to the pipeline through a bounded
//! queue, with the rebalances and seeks between them ([`Delivery`]); plus the
//! dead-letter producer.
//!
//! Offsets: `enable.auto.offset.store=false`, so librdkafka commits only offsets
//! the pipeline stored via [`SourceControl`], i.e. after their writes were
//! acknowledged. Auto-commit ships them periodically; revocation and shutdown
//! commit synchronously. They are Kafka's copy, for lag and tooling: where to
//! resume is decided by the checkpoints in the caches.

mod config;
mod context;
mod dead_letter;
mod fetcher;
mod outbox;
mod queues;
#[cfg(test)]
mod tests;
mod topics;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Delivery, Offsets, Partition, SourceControl, SourceError};
use crate::config::{KafkaSettings, PipelineSettings};
use crate::health::Health;
use crate::metrics::Metrics;

use config::consumer_config;
pub use config::{
    CONSUMER_DEFAULTS, FETCH_MAX_BYTES, FETCH_QUEUE_BACKOFF_MS, FETCH_WAIT_MAX_MS, client_config,
};
pub use context::SourceContext;
pub use dead_letter::{
    KafkaDeadLetters, KafkaLetterLog, Letter, letter_partitions, list_letters, read_letter,
};
use fetcher::Fetcher;
pub use outbox::Outbox;
pub use queues::Queues;
pub use topics::{commit_offsets, offsets_at, partitions_of};

/// How long one poll may block, so shutdown, seeks and batch deadlines are noticed.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often the broker is probed, and how long a probe waits for its answer:
/// librdkafka notices a frozen broker only at the session timeout (30 s), so
/// readiness asks for itself and turns false within these two.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

type Consumer_ = BaseConsumer<SourceContext>;

/// A running consumer: its thread, and the handle the pipeline steers it by.
pub struct KafkaSource {
    consumer: Arc<Consumer_>,
    seeks: Arc<Seeks>,
    thread: Option<JoinHandle<()>>,
    probe: Option<JoinHandle<()>>,
}

impl KafkaSource {
    /// Create the consumer, subscribe to `topics` and start fetching on a thread
    /// (called within a tokio runtime, which wakes the thread at shutdown).
    /// Deliveries arrive on the returned queue, which holds at most
    /// `pipeline.queue_batches` of them: when it is full, fetching waits.
    pub fn start(
        kafka: &KafkaSettings,
        pipeline: &PipelineSettings,
        topics: &[String],
        health: Health,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Result<(KafkaSource, mpsc::Receiver<Delivery>), SourceError> {
        let (sender, receiver) = mpsc::channel(pipeline.queue_batches);
        let outbox = Arc::new(Outbox::new(sender, pipeline.batch_size));
        let queues = Arc::new(Queues::default());
        let context = SourceContext {
            outbox: Arc::clone(&outbox),
            health: health.clone(),
            metrics: metrics.clone(),
            drain_timeout: pipeline.drain_timeout,
            queues: Arc::clone(&queues),
        };
        let mut consumer: Consumer_ = consumer_config(kafka)
            .create_with_context(context)
            .map_err(|error| SourceError::Permanent(format!("kafka consumer: {error}")))?;
        // Rebalances and errors wake the fetch thread as records do.
        consumer.set_nonempty_callback(queues.waker());
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|error| SourceError::Permanent(format!("subscribe to {names:?}: {error}")))?;
        let consumer = Arc::new(consumer);
        queues.bind(&consumer);
        queues.wake_on(shutdown.clone());
        let seeks = Arc::new(Seeks::default());
        let probe = Probe {
            consumer: Arc::clone(&consumer),
            topic: topics.first().cloned(),
            health: health.clone(),
            shutdown: shutdown.clone(),
        };
        let probe = std::thread::Builder::new()
            .name("kafka-probe".to_owned())
            .spawn(move || probe.run())
            .map_err(|error| SourceError::Permanent(format!("probe thread: {error}")))?;
        let fetcher = Fetcher {
            consumer: Arc::clone(&consumer),
            outbox,
            queues,
            seeks: Arc::clone(&seeks),
            health,
            metrics,
            batch_size: pipeline.batch_size,
            batch_timeout: pipeline.batch_timeout,
            shutdown,
        };
        let thread = std::thread::Builder::new()
            .name("kafka-fetch".to_owned())
            .spawn(move || fetcher.run())
            .map_err(|error| SourceError::Permanent(format!("fetch thread: {error}")))?;
        info!(topics = ?names, group = %kafka.group_id, "consumer started");
        Ok((
            KafkaSource {
                consumer,
                seeks,
                thread: Some(thread),
                probe: Some(probe),
            },
            receiver,
        ))
    }

    pub fn control(&self) -> Arc<dyn SourceControl> {
        Arc::new(KafkaControl {
            consumer: Arc::clone(&self.consumer),
            seeks: Arc::clone(&self.seeks),
        })
    }

    /// After the pipeline finished: wait for the fetch thread, commit what was
    /// stored, and leave the group so partitions move on at once (a static
    /// member, with `kafka.instance_id`, stays until its session expires).
    pub fn close(mut self) {
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("fetch thread panicked");
        }
        if let Some(probe) = self.probe.take()
            && probe.join().is_err()
        {
            warn!("probe thread panicked");
        }
        match commit_stored(&self.consumer) {
            Ok(true) => info!("offsets committed"),
            Ok(false) => {}
            Err(error) => warn!(%error, "final commit failed"),
        }
        self.consumer.unsubscribe();
    }
}

/// Commit the offsets the pipeline stored, synchronously; `Ok(false)` when
/// nothing was stored since the last commit (librdkafka's `NoOffset`).
fn commit_stored(consumer: &Consumer_) -> Result<bool, KafkaError> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => Ok(true),
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Seeks the pipeline asked for and the fetch thread has yet to make; the
/// latest request per partition wins, so this holds at most one per partition.
#[derive(Default)]
struct Seeks(Mutex<BTreeMap<Partition, i64>>);

impl Seeks {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Partition, i64>> {
        // Each update is one insert or a whole take: a poisoned map is consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct KafkaControl {
    consumer: Arc<Consumer_>,
    seeks: Arc<Seeks>,
}

impl SourceControl for KafkaControl {
    fn store_offsets(&self, offsets: &Offsets) -> Result<(), SourceError> {
        // `rd_kafka_offsets_store` takes the next offset to read, as `offsets`
        // holds it (`rd_kafka_offset_store`, by contrast, adds one itself).
        let mut list = TopicPartitionList::with_capacity(offsets.len());
        for (topic, partition, next) in offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|error| {
                    SourceError::Permanent(format!("offset {topic}/{partition}@{next}: {error}"))
                })?;
        }
        // Refused for a partition revoked meanwhile: its next owner resumes from
        // the cache's checkpoint, so this is worth a warning, never a retry.
        self.consumer
            .store_offsets(&list)
            .map_err(|error| SourceError::Permanent(format!("offsets not stored: {error}")))
    }

    fn seek(&self, partition: &Partition, offset: i64) {
        self.seeks.lock().insert(partition.clone(), offset);
    }
}

/// Asks the broker for a topic's metadata every [`PROBE_INTERVAL`], on the
/// consumer's own connections, and tells readiness whether it answered.
struct Probe {
    consumer: Arc<Consumer_>,
    topic: Option<String>,
    health: Health,
    shutdown: CancellationToken,
}

impl Probe {
    fn run(self) {
        let mut reachable = true;
        while !self.shutdown.is_cancelled() {
            let answered = self
                .consumer
                .fetch_metadata(self.topic.as_deref(), PROBE_TIMEOUT);
            match (&answered, reachable) {
                (Err(error), true) => warn!(%error, "broker does not answer; not ready"),
                (Ok(_), false) => info!("broker answers again"),
                _ => {}
            }
            reachable = answered.is_ok();
            self.health.set_broker_reachable(reachable);
            let next = Instant::now() + PROBE_INTERVAL;
            while !self.shutdown.is_cancelled() && Instant::now() < next {
                std::thread::sleep(POLL_INTERVAL);
            }
        }
    }
}
