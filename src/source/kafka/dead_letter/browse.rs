//! Reading the dead-letter topic back, for operators: the letters from the
//! start of the topic (what failed, why, where it came from), or one letter
//! whole. A throwaway consumer that joins no group and commits nothing, so
//! reading never moves anything.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Headers as _, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::super::client_config;
use crate::config::KafkaSettings;
use crate::source::{SourceError, headers};

/// A listing ends once no letter arrived for this long (tansu and Kafka hold
/// an empty fetch for `fetch.wait.max.ms`, 500 ms by default)...
const IDLE: Duration = Duration::from_millis(1500);
/// ...or after this long in all.
const READ_LIMIT: Duration = Duration::from_secs(10);
pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a failed record came from.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
}

/// One dead letter: where it sits, and what its headers say.
#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    pub partition: i32,
    pub offset: i64,
    pub reason: Option<String>,
    pub projection: Option<String>,
    pub error: Option<String>,
    pub source: Source,
    /// The original record, for [`read_letter`] only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Original>,
}

/// The failed record as it was produced (or cut, see the truncation headers).
#[derive(Debug, Clone, Serialize)]
pub struct Original {
    pub key: Option<String>,
    /// The payload as text when it is UTF-8...
    pub payload: Option<String>,
    /// ...else base64.
    pub payload_base64: Option<String>,
    /// Every header, the original ones and ours (`projectionist.*`).
    pub headers: Vec<(String, Option<String>)>,
}

/// Up to `limit` letters of `topic`, in partition and offset order: from
/// the offset `from` names for a partition, else from its start.
pub fn list_letters(
    kafka: &KafkaSettings,
    topic: &str,
    limit: usize,
    from: &BTreeMap<i32, i64>,
) -> Result<Vec<Letter>, SourceError> {
    let consumer = consumer(kafka)?;
    let partitions = partitions(&consumer, topic)?;
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let start = from
            .get(&partition)
            .map_or(Offset::Beginning, |&offset| Offset::Offset(offset));
        assignment
            .add_partition_offset(topic, partition, start)
            .map_err(|error| SourceError::Permanent(error.to_string()))?;
    }
    assign(&consumer, &assignment)?;
    let started = Instant::now();
    let mut last_letter = Instant::now();
    let mut letters = Vec::new();
    while letters.len() < limit && last_letter.elapsed() < IDLE && started.elapsed() < READ_LIMIT {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                letters.push(letter(&message, false));
                last_letter = Instant::now();
            }
            Some(Err(error)) => return Err(SourceError::Unavailable(error.to_string())),
            None => {}
        }
    }
    letters.sort_by_key(|letter| (letter.partition, letter.offset));
    Ok(letters)
}

/// The partitions of `topic`.
pub fn letter_partitions(kafka: &KafkaSettings, topic: &str) -> Result<Vec<i32>, SourceError> {
    partitions(&consumer(kafka)?, topic)
}

/// The letter at `partition`/`offset` of `topic`, whole; `None` when there is
/// none there.
pub fn read_letter(
    kafka: &KafkaSettings,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<Letter>, SourceError> {
    let consumer = consumer(kafka)?;
    if !partitions(&consumer, topic)?.contains(&partition) {
        return Ok(None);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .map_err(|error| SourceError::Permanent(error.to_string()))?;
    assign(&consumer, &assignment)?;
    let started = Instant::now();
    while started.elapsed() < IDLE {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) if message.offset() == offset => {
                return Ok(Some(letter(&message, true)));
            }
            // Past it: the log holds no record at that offset.
            Some(Ok(message)) if message.offset() > offset => return Ok(None),
            Some(Ok(_)) | None => {}
            Some(Err(error)) => return Err(SourceError::Unavailable(error.to_string())),
        }
    }
    Ok(None)
}

fn consumer(kafka: &KafkaSettings) -> Result<BaseConsumer, SourceError> {
    reader_config(kafka)
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|error| SourceError::Permanent(format!("dead-letter reader: {error}")))
}

/// A reader of assigned partitions that commits nothing.
pub(super) fn reader_config(kafka: &KafkaSettings) -> rdkafka::ClientConfig {
    let mut config = client_config(kafka);
    // No group is joined (the partitions are assigned), but librdkafka wants one.
    config
        .set("group.id", format!("{}-dead-letter-reader", kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // An offset the topic no longer holds (retention) reads from its
        // first letter, never from its end.
        .set("auto.offset.reset", "earliest");
    config
}

pub(super) fn partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<Vec<i32>, SourceError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|error| SourceError::Unavailable(format!("metadata of {topic}: {error}")))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic)
        .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
        .collect())
}

pub(super) fn assign<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    assignment: &TopicPartitionList,
) -> Result<(), SourceError> {
    consumer.assign(assignment).map_err(|error| {
        SourceError::Unavailable(format!("assigning the dead-letter topic: {error}"))
    })
}

fn letter(message: &BorrowedMessage<'_>, whole: bool) -> Letter {
    let headers: Vec<(String, Option<String>)> = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| {
                    let value = header
                        .value
                        .map(|bytes| String::from_utf8_lossy(bytes).into_owned());
                    (header.key.to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default();
    let ours = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.clone())
            .filter(|value| !value.is_empty())
    };
    let number = |name: &str| ours(name).and_then(|text| text.parse::<i64>().ok());
    let payload = message.payload();
    let record = whole.then(|| Original {
        key: message
            .key()
            .map(|key| String::from_utf8_lossy(key).into_owned()),
        payload: payload.and_then(|bytes| std::str::from_utf8(bytes).ok().map(str::to_owned)),
        payload_base64: payload
            .filter(|bytes| std::str::from_utf8(bytes).is_err())
            .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes)),
        headers: headers.clone(),
    });
    Letter {
        partition: message.partition(),
        offset: message.offset(),
        reason: ours(headers::REASON),
        projection: ours(headers::PROJECTION),
        error: ours(headers::ERROR),
        source: Source {
            topic: ours(headers::SOURCE_TOPIC),
            partition: number(headers::SOURCE_PARTITION).and_then(|n| i32::try_from(n).ok()),
            offset: number(headers::SOURCE_OFFSET),
        },
        record,
    }
}
