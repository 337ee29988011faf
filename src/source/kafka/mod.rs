//! The Kafka adapter: a consumer-group member on a thread of its own that fetches
//! records, forms batches (up to N records or T milliseconds) and hands them to
//! the pipeline through a bounded queue; plus the dead-letter producer.
//!
//! Offsets: `enable.auto.offset.store=false`, so librdkafka commits only offsets
//! the pipeline stored via [`Checkpoint`], i.e. after their writes were
//! acknowledged. Auto-commit ships them periodically; revocation and shutdown
//! commit synchronously.

mod context;
mod dead_letter;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers as _, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Assignment, Batch, Checkpoint, Fetched, Offsets, SourceError};
use crate::config::{KafkaSettings, PipelineSettings};
use crate::event::{Position, RawRecord};
use crate::health::Health;
use crate::metrics::Metrics;

pub use context::SourceContext;
pub use dead_letter::KafkaDeadLetters;

/// How long one poll may block, so shutdown and batch deadlines are noticed.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

type Consumer_ = BaseConsumer<SourceContext>;

/// The librdkafka settings shared by the consumer and the dead-letter producer:
/// the user's pass-through properties first, then the ones we own.
pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (name, value) in &settings.properties {
        config.set(name, value);
    }
    config.set("bootstrap.servers", &settings.brokers);
    config
}

fn consumer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = client_config(settings);
    let defaults = [
        ("enable.auto.commit", "true"),
        ("auto.commit.interval.ms", "1000"),
        ("statistics.interval.ms", "5000"),
        ("session.timeout.ms", "30000"),
    ];
    for (name, value) in defaults {
        if !settings.properties.contains_key(name) {
            config.set(name, value);
        }
    }
    config
        .set("group.id", &settings.group_id)
        .set("auto.offset.reset", settings.start_from.as_librdkafka())
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    if let Some(id) = &settings.instance_id {
        config.set("group.instance.id", id);
    }
    config
}

/// A running consumer: its thread, and the handle the pipeline stores offsets in.
pub struct KafkaSource {
    consumer: Arc<Consumer_>,
    thread: Option<JoinHandle<()>>,
}

impl KafkaSource {
    /// Create the consumer, subscribe to `topics` and start fetching on a thread.
    /// Batches arrive on the returned queue, which holds at most
    /// `pipeline.queue_batches` of them: when it is full, fetching waits.
    pub fn start(
        kafka: &KafkaSettings,
        pipeline: &PipelineSettings,
        topics: &[String],
        context: SourceContext,
        shutdown: CancellationToken,
    ) -> Result<(KafkaSource, mpsc::Receiver<Batch>), SourceError> {
        let assignment = Arc::clone(&context.assignment);
        let health = context.health.clone();
        let metrics = context.metrics.clone();
        let consumer: Consumer_ = consumer_config(kafka)
            .create_with_context(context)
            .map_err(|error| SourceError::Permanent(format!("kafka consumer: {error}")))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|error| SourceError::Permanent(format!("subscribe to {names:?}: {error}")))?;
        let consumer = Arc::new(consumer);
        let (sender, receiver) = mpsc::channel(pipeline.queue_batches);
        let fetcher = Fetcher {
            consumer: Arc::clone(&consumer),
            assignment,
            health,
            metrics,
            batch_size: pipeline.batch_size,
            batch_timeout: pipeline.batch_timeout,
            shutdown,
            sender,
        };
        let thread = std::thread::Builder::new()
            .name("kafka-fetch".to_owned())
            .spawn(move || fetcher.run())
            .map_err(|error| SourceError::Permanent(format!("fetch thread: {error}")))?;
        info!(topics = ?names, group = %kafka.group_id, "consumer started");
        Ok((
            KafkaSource {
                consumer,
                thread: Some(thread),
            },
            receiver,
        ))
    }

    pub fn checkpoint(&self) -> Arc<dyn Checkpoint> {
        Arc::new(KafkaCheckpoint {
            consumer: Arc::clone(&self.consumer),
        })
    }

    /// After the pipeline finished: wait for the fetch thread, commit what was
    /// stored, and leave the group so partitions move on at once.
    pub fn close(mut self) {
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("fetch thread panicked");
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

struct KafkaCheckpoint {
    consumer: Arc<Consumer_>,
}

impl Checkpoint for KafkaCheckpoint {
    fn store(&self, offsets: &Offsets) -> Result<(), SourceError> {
        // `rd_kafka_offsets_store` takes the next offset to read, as `offsets`
        // holds it (`rd_kafka_offset_store`, by contrast, adds one itself).
        let mut list = TopicPartitionList::with_capacity(offsets.len());
        for (topic, partition, next) in offsets {
            if let Err(error) = list.add_partition_offset(topic, *partition, Offset::Offset(*next))
            {
                warn!(%error, topic, partition, next, "offset not stored");
            }
        }
        if let Err(error) = self.consumer.store_offsets(&list) {
            // A partition was revoked after its batch was fetched (only past the
            // drain timeout); its next owner starts from the last commit.
            warn!(%error, "offsets not stored");
        }
        Ok(())
    }
}

struct Fetcher {
    consumer: Arc<Consumer_>,
    assignment: Arc<Assignment>,
    health: Health,
    metrics: Metrics,
    batch_size: usize,
    batch_timeout: Duration,
    shutdown: CancellationToken,
    sender: mpsc::Sender<Batch>,
}

impl Fetcher {
    fn run(self) {
        let mut batch: Batch = Vec::with_capacity(self.batch_size);
        let mut opened = Instant::now();
        while !self.shutdown.is_cancelled() {
            let wait = if batch.is_empty() {
                POLL_INTERVAL
            } else {
                self.batch_timeout
                    .saturating_sub(opened.elapsed())
                    .min(POLL_INTERVAL)
            };
            match self.consumer.poll(wait) {
                Some(Ok(message)) => {
                    if batch.is_empty() {
                        opened = Instant::now();
                    }
                    let record = to_record(&message);
                    let epoch = self
                        .assignment
                        .epoch(&record.position.topic, record.position.partition)
                        .unwrap_or(0);
                    batch.push(Fetched { record, epoch });
                }
                Some(Err(error)) => self.log_poll_error(&error),
                None => {}
            }
            self.health.beat();
            let full = batch.len() >= self.batch_size;
            let due = !batch.is_empty() && opened.elapsed() >= self.batch_timeout;
            if (full || due) && !self.send(&mut batch) {
                return;
            }
        }
        if !batch.is_empty() {
            self.send(&mut batch);
        }
        info!("fetching stopped");
    }

    /// Hand the batch over, waiting while the queue is full. `false` when the
    /// pipeline is gone.
    fn send(&self, batch: &mut Batch) -> bool {
        let full = std::mem::replace(batch, Vec::with_capacity(self.batch_size));
        self.sender.blocking_send(full).is_ok()
    }

    fn log_poll_error(&self, error: &KafkaError) {
        self.metrics.retries.with_label_values(&["kafka"]).inc();
        warn!(%error, "kafka poll failed; librdkafka retries by itself");
    }
}

fn to_record(message: &BorrowedMessage<'_>) -> RawRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    RawRecord {
        position: Position {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        },
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: message.timestamp().to_millis(),
    }
}
