//! The dead-letter topic as a replay reads it ([`LetterLog`]): a consumer of
//! assigned partitions that joins no group and commits nothing (the letters
//! checkpoint in the caches is the replay's only record), and signals each
//! partition's end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::warn;

use super::browse::{METADATA_TIMEOUT, assign, partitions, reader_config};
use crate::config::KafkaSettings;
use crate::letters::{LetterLog, Polled};
use crate::source::SourceError;

/// How long the end of every partition may take to confirm.
const END_TIMEOUT: Duration = Duration::from_secs(10);
const SEEK_TIMEOUT: Duration = Duration::from_secs(1);
const SEEK_ATTEMPTS: usize = 20;

type Reader = BaseConsumer<EndsExpected>;

pub struct KafkaLetterLog {
    kafka: KafkaSettings,
    topic: String,
    consumer: Arc<Reader>,
}

/// librdkafka reports a partition's end as a client error too; here the end
/// is what the reader waits for, not worth an error line.
struct EndsExpected;

impl ClientContext for EndsExpected {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_end(&error) {
            warn!(%error, reason, "dead-letter reader: librdkafka error");
        }
    }
}

/// A partition's end, as a poll says it or as librdkafka's error callback
/// does (a global error).
fn is_end(error: &KafkaError) -> bool {
    matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    )
}

impl ConsumerContext for EndsExpected {}

impl KafkaLetterLog {
    pub fn new(kafka: &KafkaSettings, topic: &str) -> Result<KafkaLetterLog, SourceError> {
        Ok(KafkaLetterLog {
            kafka: kafka.clone(),
            topic: topic.to_owned(),
            consumer: Arc::new(eof_consumer(kafka)?),
        })
    }

    /// Run a blocking librdkafka call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Reader, &str) -> Result<T, SourceError> + Send + 'static,
    ) -> Result<T, SourceError> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || call(&consumer, &topic))
            .await
            .map_err(|error| SourceError::Permanent(format!("dead-letter reader: {error}")))?
    }
}

/// A reader that reports each partition's end.
fn eof_consumer(kafka: &KafkaSettings) -> Result<Reader, SourceError> {
    reader_config(kafka)
        .set("enable.partition.eof", "true")
        .create_with_context(EndsExpected)
        .map_err(|error| SourceError::Permanent(format!("dead-letter reader: {error}")))
}

#[async_trait]
impl LetterLog for KafkaLetterLog {
    async fn ends(&self) -> Result<BTreeMap<i32, i64>, SourceError> {
        let kafka = self.kafka.clone();
        self.blocking(move |consumer, topic| ends(&kafka, consumer, topic))
            .await
    }

    async fn assign(&self, starts: &[(i32, Option<i64>)]) -> Result<(), SourceError> {
        let starts = starts.to_vec();
        self.blocking(move |consumer, topic| {
            let mut assignment = TopicPartitionList::new();
            for (partition, start) in starts {
                let offset = start.map_or(Offset::Beginning, Offset::Offset);
                assignment
                    .add_partition_offset(topic, partition, offset)
                    .map_err(|error| SourceError::Permanent(error.to_string()))?;
            }
            assign(consumer, &assignment)
        })
        .await
    }

    async fn seek(&self, partition: i32, offset: i64) -> Result<(), SourceError> {
        self.blocking(move |consumer, topic| {
            let mut failure = None;
            // librdkafka refuses a seek until the partition fetches: retry.
            for _ in 0..SEEK_ATTEMPTS {
                let sought = consumer.seek(topic, partition, Offset::Offset(offset), SEEK_TIMEOUT);
                match sought {
                    Ok(()) => return Ok(()),
                    Err(error) => failure = Some(error),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(SourceError::Unavailable(format!(
                "seeking {topic}/{partition} to {offset}: {failure:?}"
            )))
        })
        .await
    }

    async fn poll(&self, wait: Duration) -> Result<Option<Polled>, SourceError> {
        self.blocking(move |consumer, _| match consumer.poll(wait) {
            None => Ok(None),
            Some(Ok(message)) => Ok(Some(Polled::Letter(super::super::fetcher::to_own_record(
                &message,
            )))),
            Some(Err(KafkaError::PartitionEOF(partition))) => Ok(Some(Polled::End(partition))),
            Some(Err(error)) => Err(SourceError::Unavailable(format!(
                "reading the dead-letter topic: {error}"
            ))),
        })
        .await
    }
}

/// Each partition's end: the high watermark, confirmed by reading the last
/// record batch to the partition's end. Some brokers (tansu 0.6) answer
/// ListOffsets with the newest batch's first offset plus one, too low when
/// that batch holds several letters; their fetches report the true end.
fn ends(
    kafka: &KafkaSettings,
    client: &Reader,
    topic: &str,
) -> Result<BTreeMap<i32, i64>, SourceError> {
    let mut ends = BTreeMap::new();
    let mut tail = TopicPartitionList::new();
    for partition in partitions(client, topic)? {
        let (low, listed) = client
            .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
            .map_err(|error| {
                SourceError::Unavailable(format!("end of {topic}/{partition}: {error}"))
            })?;
        ends.insert(partition, listed);
        if listed > low {
            tail.add_partition_offset(topic, partition, Offset::Offset(listed - 1))
                .map_err(|error| SourceError::Permanent(error.to_string()))?;
        }
    }
    if tail.count() == 0 {
        return Ok(ends);
    }
    let reader = eof_consumer(kafka)?;
    assign(&reader, &tail)?;
    let mut unconfirmed: BTreeSet<i32> = tail.elements().iter().map(|e| e.partition()).collect();
    let started = Instant::now();
    while !unconfirmed.is_empty() {
        if started.elapsed() > END_TIMEOUT {
            return Err(SourceError::Unavailable(format!(
                "the end of {topic} partitions {unconfirmed:?} could not be read within {END_TIMEOUT:?}"
            )));
        }
        match reader.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                use rdkafka::message::Message as _;
                let end = ends.entry(message.partition()).or_default();
                *end = (*end).max(message.offset() + 1);
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                unconfirmed.remove(&partition);
            }
            Some(Err(error)) => {
                return Err(SourceError::Unavailable(format!(
                    "reading the end of {topic}: {error}"
                )));
            }
        }
    }
    Ok(ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partitions_end_is_no_error_however_librdkafka_says_it() {
        assert!(is_end(&KafkaError::PartitionEOF(3)));
        // The callback's form, which once filled the logs with warnings.
        assert!(is_end(&KafkaError::Global(RDKafkaErrorCode::PartitionEOF)));
        assert!(!is_end(&KafkaError::Global(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
    }
}
