//! Reading back what the broker holds: committed offsets, end offsets (with
//! a workaround for tansu's ListOffsets) and whole topics.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{Broker, CONSUMER_SETTINGS, REQUEST_TIMEOUT, blocking, partition_ids, unique};

/// One record as read back from a topic, owned and comparable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// In order, duplicates kept; `None` is a header with a null value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    pub fn from_message<M: Message>(message: &M) -> Record {
        let headers = message
            .headers()
            .map(|headers| {
                (0..headers.count())
                    .map(|index| {
                        let header = headers.get(index);
                        (header.key.to_owned(), header.value.map(<[u8]>::to_vec))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// The value of the first header called `name`; a null value reads as empty.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_deref().unwrap_or_default())
    }
}

impl Broker {
    /// The offsets `group` committed on `topic`, by partition; partitions the
    /// group never committed are absent.
    pub async fn committed_offsets(&self, group: &str, topic: &str) -> BTreeMap<i32, i64> {
        // A consumer that never subscribes does not join the group, so this
        // read does not trigger a rebalance of the consumers under test.
        let config = self.consumer_config(group);
        let topic = topic.to_owned();
        blocking(move || {
            let consumer: BaseConsumer = config.create().expect("a consumer from a valid config");
            let mut wanted = TopicPartitionList::new();
            for partition in partition_ids(&consumer, &topic) {
                wanted.add_partition(&topic, partition);
            }
            let committed = consumer
                .committed_offsets(wanted, REQUEST_TIMEOUT)
                .unwrap_or_else(|error| panic!("OffsetFetch {topic}: {error}"));
            let mut offsets = BTreeMap::new();
            for element in committed.elements_for_topic(&topic) {
                if let Err(error) = element.error() {
                    panic!("OffsetFetch {topic}/{}: {error}", element.partition());
                }
                if let Offset::Offset(offset) = element.offset() {
                    offsets.insert(element.partition(), offset);
                }
            }
            offsets
        })
        .await
    }

    /// The high watermark (offset of the next record) of every partition,
    /// correct on tansu too (see [`end_offsets_of`]).
    pub async fn end_offsets(&self, topic: &str) -> BTreeMap<i32, i64> {
        let config = self.client_config();
        let topic = topic.to_owned();
        blocking(move || end_offsets_of(&config, &topic)).await
    }

    /// Every record in `topic` up to its end offsets at the time of the
    /// call, sorted by (partition, offset). Reads with a throwaway group that
    /// commits nothing. Panics if they are not all read within `timeout`.
    pub async fn consume_all(&self, topic: &str, timeout: Duration) -> Vec<Record> {
        let ends = self.end_offsets(topic).await;
        let mut assignment = TopicPartitionList::new();
        for (&partition, _) in ends.iter().filter(|(_, end)| **end > 0) {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("Beginning is a valid offset");
        }
        if assignment.count() == 0 {
            return Vec::new();
        }
        let consumer: StreamConsumer = self
            .consumer_config(&unique("consume-all"))
            .create()
            .expect("a consumer from a valid config");
        consumer
            .assign(&assignment)
            .unwrap_or_else(|error| panic!("assigning {topic}: {error}"));
        let mut next: BTreeMap<i32, i64> = ends.keys().map(|&partition| (partition, 0)).collect();
        let mut records = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while next
            .iter()
            .any(|(partition, offset)| *offset < ends[partition])
        {
            let message = tokio::time::timeout_at(deadline, consumer.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("reading {topic}: reached {next:?} of {ends:?} in {timeout:?}")
                })
                .unwrap_or_else(|error| panic!("reading {topic}: {error}"));
            if message.offset() >= ends[&message.partition()] {
                continue;
            }
            next.insert(message.partition(), message.offset() + 1);
            records.push(Record::from_message(&message));
        }
        records.sort_by_key(|record| (record.partition, record.offset));
        records
    }
}

/// End offsets that hold on tansu too. tansu 0.6.0 answers ListOffsets
/// (latest) with the base offset of the newest record batch plus one, too low
/// whenever that batch holds several records. That answer is still a batch
/// start at or below the true end, and tansu's Fetch reports the true high
/// watermark, so the tail from there is read until librdkafka signals the
/// partition's end. Against a correct broker the tail is a single record.
fn end_offsets_of(config: &ClientConfig, topic: &str) -> BTreeMap<i32, i64> {
    let client: BaseConsumer = config.create().expect("a client from a valid config");
    let mut ends = BTreeMap::new();
    let mut tail = TopicPartitionList::new();
    for partition in partition_ids(&client, topic) {
        let (_low, listed) = client
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .unwrap_or_else(|error| panic!("ListOffsets {topic}/{partition}: {error}"));
        ends.insert(partition, listed);
        if listed > 0 {
            tail.add_partition_offset(topic, partition, Offset::Offset(listed - 1))
                .expect("a concrete offset is valid");
        }
    }
    if tail.count() == 0 {
        return ends;
    }
    let mut reader_config = config.clone();
    for (key, value) in CONSUMER_SETTINGS {
        reader_config.set(*key, *value);
    }
    let reader: BaseConsumer = reader_config
        .set("group.id", unique("end-offsets"))
        .set("enable.partition.eof", "true")
        .create()
        .expect("a consumer from a valid config");
    reader
        .assign(&tail)
        .unwrap_or_else(|error| panic!("assigning {topic}: {error}"));
    let mut unfinished: BTreeSet<i32> = tail.elements().iter().map(|e| e.partition()).collect();
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    while !unfinished.is_empty() {
        assert!(
            Instant::now() < deadline,
            "reading the tail of {topic}: no end seen for partitions {unfinished:?}"
        );
        match reader.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                let end = ends.entry(message.partition()).or_default();
                *end = (*end).max(message.offset() + 1);
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                unfinished.remove(&partition);
            }
            Some(Err(error)) => panic!("reading the tail of {topic}: {error}"),
        }
    }
    ends
}

impl Broker {
    /// Checks that records of `topic` are one per record batch where it
    /// matters to tansu's resume bug: a fetch from an offset inside a
    /// multi-record batch starts at the next batch on tansu, so its first
    /// record would come after the one asked for. Reads from `samples`
    /// offsets spread over each partition, one consumer per sample at once
    /// (after an assign librdkafka takes up to 1.5 s to deliver).
    pub async fn assert_unbatched(&self, topic: &str, samples: i64) {
        let ends = self.end_offsets(topic).await;
        let mut config = self.consumer_config(&unique("batch-probe"));
        // Fetch a record or so after the assign, not the whole partition.
        config
            .set("max.partition.fetch.bytes", "1024")
            .set("queued.min.messages", "1")
            .set("fetch.wait.max.ms", "10");
        let topic = topic.to_owned();
        blocking(move || {
            std::thread::scope(|scope| {
                let probes: Vec<_> = (1..=samples)
                    .map(|sample| {
                        let wanted: BTreeMap<i32, i64> = ends
                            .iter()
                            .map(|(&partition, &end)| (partition, end * sample / (samples + 1)))
                            .filter(|(_, offset)| *offset > 0)
                            .collect();
                        let (config, topic) = (&config, &topic);
                        scope.spawn(move || first_records_are_asked_for(config, topic, wanted))
                    })
                    .collect();
                for probe in probes {
                    if let Err(panic) = probe.join() {
                        std::panic::resume_unwind(panic);
                    }
                }
            })
        })
        .await
    }
}

/// Assigns `topic`'s partitions at the `wanted` offsets and checks that the
/// first record read from each is the one asked for.
fn first_records_are_asked_for(config: &ClientConfig, topic: &str, mut wanted: BTreeMap<i32, i64>) {
    let reader: BaseConsumer = config.create().expect("a consumer from a valid config");
    let mut assignment = TopicPartitionList::new();
    for (&partition, &offset) in &wanted {
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("a concrete offset is valid");
    }
    reader
        .assign(&assignment)
        .unwrap_or_else(|error| panic!("assigning {topic}: {error}"));
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    while !wanted.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{topic}: no record read at {wanted:?}"
        );
        let Some(polled) = reader.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = polled.unwrap_or_else(|error| panic!("reading {topic}: {error}"));
        let Some(asked) = wanted.remove(&message.partition()) else {
            continue;
        };
        assert_eq!(
            message.offset(),
            asked,
            "{topic}/{}: a fetch from offset {asked} began at {}, so records share record \
             batches and a consumer resuming inside one would skip some (tansu 0.6)",
            message.partition(),
            message.offset()
        );
    }
}
