//! Kafka harness for integration tests: a real Kafka-protocol broker (tansu,
//! librdkafka's mock cluster, or whatever `KAFKA_BROKERS` names) and the
//! client calls tests make around the daemon. Tests take fresh topic and
//! group names from [`unique`], so one broker can serve a whole test binary.
//!
//! The `*_SETTINGS` constants are the client settings known to work against
//! tansu 0.6.0; the daemon under test should be configured with them too.

mod mock;
mod tansu;

use std::collections::{BTreeMap, VecDeque};
use std::env;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, ToBytes};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use self::mock::MockHandle;
use self::tansu::TansuProcess;

/// Settings every client needs against tansu 0.6.0 (see `tests/kafka_broker.rs`
/// for the quirks behind each one).
pub const CLIENT_SETTINGS: &[(&str, &str)] = &[
    // tansu listens on 127.0.0.1 only; "localhost" may resolve to ::1 first.
    ("broker.address.family", "v4"),
    // Fail fast instead of librdkafka's 5-minute default when the broker is gone.
    ("socket.timeout.ms", "10000"),
];

/// Consumer settings the daemon uses: offsets are committed explicitly, only
/// after the writes they cover, and a new group starts at the beginning.
pub const CONSUMER_SETTINGS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("auto.offset.reset", "earliest"),
    ("enable.partition.eof", "false"),
    ("session.timeout.ms", "6000"),
];

/// Producer settings for test fixtures.
pub const PRODUCER_SETTINGS: &[(&str, &str)] =
    &[("message.timeout.ms", "30000"), ("linger.ms", "5")];

/// How long a broker may take to answer its first metadata request.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for one admin, metadata or offset request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a fresh port is tried when tansu loses the race for one.
const START_ATTEMPTS: usize = 3;

/// A Kafka-protocol broker for one test or one test binary.
pub struct Broker {
    bootstrap: String,
    backend: Backend,
    producer: OnceLock<FutureProducer>,
}

enum Backend {
    /// `KAFKA_BROKERS` named a broker someone else runs.
    External,
    Tansu(TansuProcess),
    Mock(MockHandle),
}

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

/// A name no other test (in this or a concurrent test process) uses, valid
/// as a topic or group name: `prefix` plus process id, time and a counter.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos:09}-{count}", std::process::id())
}

impl Broker {
    /// `KAFKA_BROKERS` if set, else a fresh tansu on a free port.
    pub fn start() -> Broker {
        match env::var("KAFKA_BROKERS") {
            Ok(bootstrap) if !bootstrap.trim().is_empty() => Broker::external(bootstrap),
            _ => Broker::tansu(),
        }
    }

    /// One broker for every test in this test binary, started on first use.
    /// It is never dropped; the tansu watchdog stops it when the process exits.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(Broker::start)
    }

    /// A broker that someone else runs; nothing is started or stopped.
    pub fn external(bootstrap: String) -> Broker {
        let broker = Broker::new(bootstrap, Backend::External);
        if let Err(error) = broker.wait_until_answering(|| None) {
            panic!(
                "KAFKA_BROKERS={} does not answer: {error}",
                broker.bootstrap
            );
        }
        broker
    }

    /// Always spawns tansu, whatever `KAFKA_BROKERS` says.
    pub fn tansu() -> Broker {
        let binary = tansu::locate_binary();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = tansu::free_port();
            let mut process = TansuProcess::spawn(&binary, port)
                .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary.display()));
            let bootstrap = format!("127.0.0.1:{port}");
            let probe = Broker::new(bootstrap.clone(), Backend::External);
            match probe.wait_until_answering(|| process.exited()) {
                Ok(()) => return Broker::new(bootstrap, Backend::Tansu(process)),
                Err(error) => {
                    process.note(&error);
                    failures.push(format!("port {port}: {error}\n{}", process.log_tail()));
                }
            }
        }
        panic!(
            "tansu ({}) did not start:\n{}",
            binary.display(),
            failures.join("\n---\n")
        );
    }

    /// librdkafka's in-process mock cluster with one broker.
    pub fn mock() -> Broker {
        let (handle, bootstrap) = MockHandle::start();
        let broker = Broker::new(bootstrap, Backend::Mock(handle));
        if let Err(error) = broker.wait_until_answering(|| None) {
            panic!("the mock cluster does not answer: {error}");
        }
        broker
    }

    fn new(bootstrap: String, backend: Backend) -> Broker {
        Broker {
            bootstrap,
            backend,
            producer: OnceLock::new(),
        }
    }

    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// `bootstrap.servers` plus [`CLIENT_SETTINGS`].
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in CLIENT_SETTINGS {
            config.set(*key, *value);
        }
        config
    }

    /// [`Broker::client_config`] plus [`CONSUMER_SETTINGS`] and the group.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.client_config();
        for (key, value) in CONSUMER_SETTINGS {
            config.set(*key, *value);
        }
        config.set("group.id", group);
        config
    }

    /// Polls metadata until the broker answers, `exited` reports that it
    /// died, or [`START_TIMEOUT`] passes.
    fn wait_until_answering(
        &self,
        mut exited: impl FnMut() -> Option<std::process::ExitStatus>,
    ) -> Result<(), String> {
        let mut config = self.client_config();
        // Retry quickly: librdkafka backs off up to 10 s between reconnects.
        config.set("reconnect.backoff.max.ms", "200");
        let client: BaseConsumer = config
            .create()
            .map_err(|error| format!("cannot create a client: {error}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = exited() {
                return Err(format!("the broker exited early ({status})"));
            }
            let error = match client.fetch_metadata(None, Duration::from_millis(500)) {
                Ok(metadata) if !metadata.brokers().is_empty() => return Ok(()),
                Ok(_) => "metadata lists no brokers".to_owned(),
                Err(error) => error.to_string(),
            };
            if Instant::now() > deadline {
                return Err(format!("no metadata after {START_TIMEOUT:?}: {error}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates `name` with `partitions` partitions and waits until metadata
    /// shows every partition with a leader, so producing right after works.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        match &self.backend {
            // The mock cluster has no CreateTopics handler.
            Backend::Mock(handle) => handle.create_topic(name, partitions),
            Backend::External | Backend::Tansu(_) => {
                let admin: AdminClient<DefaultClientContext> = self
                    .client_config()
                    .create()
                    .expect("an admin client from a valid config");
                let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
                let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
                let results = admin
                    .create_topics([&topic], &options)
                    .await
                    .unwrap_or_else(|error| panic!("CreateTopics {name}: {error}"));
                for result in results {
                    if let Err((topic, code)) = result {
                        panic!("CreateTopics {topic}: {code}");
                    }
                }
            }
        }
        let config = self.client_config();
        let name = name.to_owned();
        blocking(move || {
            let client: BaseConsumer = config.create().expect("a client from a valid config");
            let deadline = Instant::now() + REQUEST_TIMEOUT;
            loop {
                let led = partitions_with_leaders(&client, &name);
                if led == Ok(partitions) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "topic {name} never showed {partitions} led partitions: {led:?}"
                );
                thread::sleep(Duration::from_millis(50));
            }
        })
        .await;
    }

    fn producer(&self) -> &FutureProducer {
        self.producer.get_or_init(|| {
            let mut config = self.client_config();
            for (key, value) in PRODUCER_SETTINGS {
                config.set(*key, *value);
            }
            config.create().expect("a producer from a valid config")
        })
    }

    /// Produces one record and waits for its delivery; returns its
    /// (partition, offset). Without `partition` the key picks one.
    pub async fn produce<K, P>(
        &self,
        topic: &str,
        key: &K,
        payload: &P,
        headers: &[(&str, &[u8])],
        partition: Option<i32>,
    ) -> (i32, i64)
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let mut owned_headers = OwnedHeaders::new_with_capacity(headers.len());
        for (name, value) in headers {
            owned_headers = owned_headers.insert(Header {
                key: name,
                value: Some(*value),
            });
        }
        let mut record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(owned_headers);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        match self.producer().send(record, REQUEST_TIMEOUT).await {
            Ok(delivery) => (delivery.partition, delivery.offset),
            Err((error, _)) => panic!("producing to {topic} failed: {error}"),
        }
    }

    /// Produces many keyed records as fast as the client batches them and
    /// waits until every one is delivered; returns how many were sent.
    pub async fn produce_many<I, K, P>(&self, topic: &str, records: I) -> usize
    where
        I: IntoIterator<Item = (K, P)>,
        K: AsRef<[u8]>,
        P: AsRef<[u8]>,
    {
        let producer = self.producer();
        let mut in_flight: VecDeque<DeliveryFuture> = VecDeque::new();
        let mut sent = 0;
        for (key, payload) in records {
            let mut record = FutureRecord::to(topic)
                .key(key.as_ref())
                .payload(payload.as_ref());
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => break in_flight.push_back(delivery),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        // The client's queue is full: let the oldest record land.
                        match in_flight.pop_front() {
                            Some(oldest) => expect_delivered(topic, oldest).await,
                            None => tokio::task::yield_now().await,
                        }
                    }
                    Err((error, _)) => panic!("producing to {topic} failed: {error}"),
                }
            }
            sent += 1;
        }
        for delivery in in_flight {
            expect_delivered(topic, delivery).await;
        }
        sent
    }

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

    /// The high watermark (offset of the next record) of every partition.
    pub async fn end_offsets(&self, topic: &str) -> BTreeMap<i32, i64> {
        let config = self.client_config();
        let topic = topic.to_owned();
        blocking(move || {
            let consumer: BaseConsumer = config.create().expect("a client from a valid config");
            end_offsets_of(&consumer, &topic)
        })
        .await
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

async fn expect_delivered(topic: &str, delivery: DeliveryFuture) {
    match delivery.await {
        Ok(Ok(_)) => {}
        Ok(Err((error, _))) => panic!("producing to {topic} failed: {error}"),
        Err(_) => panic!("producing to {topic}: the producer dropped the delivery report"),
    }
}

/// Runs blocking librdkafka calls off the async test's runtime thread, so a
/// daemon spawned on the same runtime keeps running meanwhile.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

fn partition_ids(client: &BaseConsumer, topic: &str) -> Vec<i32> {
    let metadata = client
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .unwrap_or_else(|error| panic!("metadata for {topic}: {error}"));
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        panic!("metadata does not list topic {topic}");
    };
    if let Some(error) = found.error() {
        panic!("metadata for {topic}: {:?}", RDKafkaErrorCode::from(error));
    }
    found.partitions().iter().map(|p| p.id()).collect()
}

/// How many partitions of `topic` have a leader, or why that is unknown.
fn partitions_with_leaders(client: &BaseConsumer, topic: &str) -> Result<i32, String> {
    let metadata = client
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|error| error.to_string())?;
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or("topic not listed")?;
    if let Some(error) = found.error() {
        return Err(format!("{:?}", RDKafkaErrorCode::from(error)));
    }
    let led = found.partitions().iter().filter(|p| p.leader() >= 0);
    Ok(led.count() as i32)
}

fn end_offsets_of(client: &BaseConsumer, topic: &str) -> BTreeMap<i32, i64> {
    let mut ends = BTreeMap::new();
    for partition in partition_ids(client, topic) {
        let (_low, high) = client
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .unwrap_or_else(|error| panic!("ListOffsets {topic}/{partition}: {error}"));
        ends.insert(partition, high);
    }
    ends
}
