//! Smoke tests for the Kafka-protocol brokers the integration tests run on:
//! they prove each broker does what the daemon needs (topics created on
//! demand, keyed records with headers, consumer groups with explicit commits,
//! resuming from committed offsets), pin the tansu quirks the harness works
//! around, and check that the harness cleans up after itself.

mod support;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use support::kafka::{Broker, Record, unique};

const PARTITIONS: i32 = 4;
/// Long enough for a group join plus a fetch on a loaded two-core machine.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// A record as the test produced it, to compare with what comes back.
struct Sent {
    key: String,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

/// Produces `count` keyed records with headers; the first four go to
/// partitions 0..4 explicitly so every partition has data. Returns them by
/// the (partition, offset) the broker acknowledged.
async fn produce_batch(
    broker: &Broker,
    topic: &str,
    batch: &str,
    count: usize,
) -> BTreeMap<(i32, i64), Sent> {
    let mut sent = BTreeMap::new();
    for index in 0..count {
        let key = format!("order-{}", index % 7);
        let payload = format!(r#"{{"batch":"{batch}","index":{index}}}"#).into_bytes();
        // Binary, non-UTF-8 header values must survive as well as text ones.
        let trace = vec![0, 255, index as u8, 0x80];
        let event_type = format!("OrderPlaced.{batch}").into_bytes();
        let headers: [(&str, &[u8]); 2] = [("event-type", &event_type), ("trace", &trace)];
        let explicit = (index < PARTITIONS as usize).then_some(index as i32);
        let (partition, offset) = broker
            .produce(topic, key.as_str(), payload.as_slice(), &headers, explicit)
            .await;
        if let Some(wanted) = explicit {
            assert_eq!(partition, wanted, "explicit partition ignored");
        }
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_vec()));
        let record = Sent {
            key,
            payload,
            headers: headers.collect(),
        };
        assert!(
            sent.insert((partition, offset), record).is_none(),
            "offset reused"
        );
    }
    sent
}

/// Receives exactly `count` records from a subscribed consumer.
async fn receive(consumer: &StreamConsumer, count: usize) -> Vec<Record> {
    let deadline = tokio::time::Instant::now() + RECEIVE_TIMEOUT;
    let mut records = Vec::with_capacity(count);
    while records.len() < count {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("received {} of {count} records", records.len()))
            .expect("consuming succeeds");
        records.push(Record::from_message(&message));
    }
    records
}

/// Per partition, the offset after the last of `positions` (partition, offset).
fn next_offsets(positions: impl IntoIterator<Item = (i32, i64)>) -> BTreeMap<i32, i64> {
    let mut next = BTreeMap::new();
    for (partition, offset) in positions {
        let entry = next.entry(partition).or_insert(0);
        *entry = (*entry).max(offset + 1);
    }
    next
}

/// Commits, per partition, the offset after the last record received.
fn commit_received(consumer: &StreamConsumer, topic: &str, records: &[Record]) {
    let received = records
        .iter()
        .map(|record| (record.partition, record.offset));
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in next_offsets(received) {
        offsets
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("a concrete offset is valid");
    }
    consumer
        .commit(&offsets, CommitMode::Sync)
        .expect("OffsetCommit succeeds");
}

fn assert_same(received: &[Record], sent: &BTreeMap<(i32, i64), Sent>) {
    assert_eq!(received.len(), sent.len(), "record count");
    for record in received {
        let Some(expected) = sent.get(&(record.partition, record.offset)) else {
            panic!(
                "unexpected record at {}/{}",
                record.partition, record.offset
            );
        };
        assert_eq!(record.key.as_deref(), Some(expected.key.as_bytes()));
        assert_eq!(record.payload.as_deref(), Some(expected.payload.as_slice()));
        let headers: Vec<(String, Vec<u8>)> = record
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().expect("no null headers were sent")))
            .collect();
        assert_eq!(
            headers, expected.headers,
            "headers of {}/{}",
            record.partition, record.offset
        );
    }
}

/// The whole flow the daemon relies on, against any broker.
async fn consumer_group_round_trip(broker: &Broker) {
    let topic = unique("smoke");
    let group = unique("smoke-group");
    broker.create_topic(&topic, PARTITIONS).await;

    let first = produce_batch(broker, &topic, "first", 24).await;
    let ends = broker.end_offsets(&topic).await;
    assert_eq!(
        ends.len(),
        PARTITIONS as usize,
        "end offsets for every partition"
    );
    assert_eq!(
        ends,
        next_offsets(first.keys().copied()),
        "end offsets = records produced"
    );
    assert!(
        broker.committed_offsets(&group, &topic).await.is_empty(),
        "new group"
    );

    let joined = Instant::now();
    let consumer: StreamConsumer = broker.consumer_config(&group).create().expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let received = receive(&consumer, first.len()).await;
    eprintln!(
        "first consumer got {} records in {:?}",
        received.len(),
        joined.elapsed()
    );
    assert_same(&received, &first);
    commit_received(&consumer, &topic, &received);
    assert_eq!(broker.committed_offsets(&group, &topic).await, ends);
    drop(consumer);

    let second = produce_batch(broker, &topic, "second", 12).await;
    let rejoined = Instant::now();
    let consumer: StreamConsumer = broker.consumer_config(&group).create().expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    // Resuming from the commit means the second batch comes first and alone.
    let resumed = receive(&consumer, second.len()).await;
    eprintln!(
        "second consumer got {} records in {:?}",
        resumed.len(),
        rejoined.elapsed()
    );
    assert_same(&resumed, &second);
    commit_received(&consumer, &topic, &resumed);
    let ends = broker.end_offsets(&topic).await;
    assert_eq!(broker.committed_offsets(&group, &topic).await, ends);
    drop(consumer);

    let everything = broker.consume_all(&topic, RECEIVE_TIMEOUT).await;
    let all: BTreeMap<_, _> = first.into_iter().chain(second).collect();
    assert_same(&everything, &all);
    assert!(everything.is_sorted_by_key(|r| (r.partition, r.offset)));
    assert_eq!(
        everything[0].header("event-type"),
        Some(&b"OrderPlaced.first"[..])
    );
}

#[tokio::test]
async fn tansu_serves_a_consumer_group_with_explicit_commits() {
    consumer_group_round_trip(Broker::shared()).await;
}

#[tokio::test]
async fn mock_cluster_serves_a_consumer_group_with_explicit_commits() {
    consumer_group_round_trip(&Broker::mock()).await;
}

#[tokio::test]
async fn produce_many_delivers_every_record() {
    let broker = Broker::shared();
    let topic = unique("bulk");
    broker.create_topic(&topic, PARTITIONS).await;
    let records = (0..5_000).map(|i| (format!("key-{}", i % 100), format!("payload-{i}")));
    let started = Instant::now();
    assert_eq!(broker.produce_many(&topic, records).await, 5_000);
    eprintln!("produce_many: 5000 records in {:?}", started.elapsed());
    let ends = broker.end_offsets(&topic).await;
    assert_eq!(ends.values().sum::<i64>(), 5_000);
    assert!(
        ends.values().all(|&end| end > 0),
        "keys spread over partitions: {ends:?}"
    );
}

#[tokio::test]
async fn consume_all_of_an_empty_topic_is_empty() {
    let broker = Broker::shared();
    let topic = unique("empty");
    broker.create_topic(&topic, 2).await;
    assert!(broker.consume_all(&topic, RECEIVE_TIMEOUT).await.is_empty());
}

/// Produces ten records as one batch at offsets 0..10 of partition 0, has a
/// group commit offset 6 (inside the batch), produces one more record at 10,
/// and returns the offset a member of that group receives first.
async fn first_offset_after_a_commit_inside_a_batch(broker: &Broker) -> i64 {
    let topic = unique("mid-batch");
    let group = unique("mid-batch-group");
    broker.create_topic(&topic, 1).await;
    // The batch fills at ten records, long before the linger runs out.
    let batching: FutureProducer = broker
        .client_config()
        .set("linger.ms", "5000")
        .set("batch.num.messages", "10")
        .create()
        .expect("producer");
    let mut deliveries = Vec::new();
    for index in 0..10 {
        let payload = format!("batched-{index}");
        let record = FutureRecord::to(&topic)
            .key("k")
            .payload(&payload)
            .partition(0);
        deliveries.push(batching.send_result(record).expect("queued"));
    }
    for (index, delivery) in deliveries.into_iter().enumerate() {
        let delivered = delivery.await.expect("reported").expect("delivered");
        assert_eq!(delivered.offset, index as i64);
    }

    let committer: StreamConsumer = broker.consumer_config(&group).create().expect("consumer");
    let mut inside = TopicPartitionList::new();
    inside
        .add_partition_offset(&topic, 0, Offset::Offset(6))
        .expect("a concrete offset is valid");
    committer
        .commit(&inside, CommitMode::Sync)
        .expect("OffsetCommit succeeds");
    drop(committer);
    assert_eq!(
        broker.committed_offsets(&group, &topic).await,
        BTreeMap::from([(0, 6)])
    );
    assert_eq!(
        broker.produce(&topic, "k", "after", &[], Some(0)).await,
        (0, 10)
    );

    let consumer: StreamConsumer = broker.consumer_config(&group).create().expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let first = tokio::time::timeout(RECEIVE_TIMEOUT, consumer.recv())
        .await
        .expect("a record arrives")
        .expect("consuming succeeds");
    first.offset()
}

/// Pins tansu 0.6.0's Fetch quirk (see `tests/support/kafka.rs`): when this
/// fails after an upgrade, the quirk is gone and the harness notes can go.
#[tokio::test]
async fn tansu_skips_the_rest_of_a_batch_when_a_group_resumes_inside_it() {
    let tansu = Broker::tansu();
    assert_eq!(first_offset_after_a_commit_inside_a_batch(&tansu).await, 10);
}

#[tokio::test]
async fn mock_cluster_resumes_inside_a_batch() {
    assert_eq!(
        first_offset_after_a_commit_inside_a_batch(&Broker::mock()).await,
        6
    );
}

#[test]
fn unique_names_differ() {
    let names: std::collections::BTreeSet<String> = (0..1000).map(|_| unique("t")).collect();
    assert_eq!(names.len(), 1000);
    assert!(
        names
            .iter()
            .all(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    );
}

#[test]
fn dropping_a_tansu_broker_stops_it() {
    let broker = Broker::tansu();
    let address = broker.bootstrap();
    assert!(
        TcpStream::connect(&address).is_ok(),
        "broker listens on {address}"
    );
    drop(broker);
    assert!(
        TcpStream::connect(&address).is_err(),
        "nothing listens on {address} after drop"
    );
}

/// Set only for the child process of `tansu_dies_with_a_test_process_that_aborts`.
const ABORT_HELPER: &str = "PROJECTIONIST_ABORT_WITH_TANSU";

#[test]
#[ignore = "helper run in a child process by tansu_dies_with_a_test_process_that_aborts"]
fn abort_while_holding_a_tansu_broker() {
    if std::env::var_os(ABORT_HELPER).is_none() {
        return;
    }
    let broker = Broker::tansu();
    println!("BOOTSTRAP={}", broker.bootstrap());
    // Dies without unwinding: no Drop runs, only the watchdog can stop tansu.
    std::process::abort();
}

#[test]
fn tansu_dies_with_a_test_process_that_aborts() {
    let test_binary = std::env::current_exe().expect("the test binary has a path");
    let child = Command::new(test_binary)
        .args(["--exact", "abort_while_holding_a_tansu_broker"])
        .args(["--ignored", "--nocapture", "--test-threads=1"])
        .env(ABORT_HELPER, "1")
        .output()
        .expect("the test binary runs");
    assert!(!child.status.success(), "the helper aborted");
    let stdout = String::from_utf8_lossy(&child.stdout);
    let address = stdout
        .lines()
        // The harness prints "test <name> ... " on the same line first.
        .find_map(|line| line.split_once("BOOTSTRAP=").map(|(_, address)| address))
        .unwrap_or_else(|| panic!("the helper printed its broker: {stdout}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(address).is_ok() {
        assert!(
            Instant::now() < deadline,
            "tansu on {address} outlived its test process"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
