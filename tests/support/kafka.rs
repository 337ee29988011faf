//! Kafka harness for integration tests: a real Kafka-protocol broker (tansu,
//! librdkafka's mock cluster, or whatever `KAFKA_BROKERS` names) and the
//! client calls tests make around the daemon. Tests take fresh topic and
//! group names from [`unique`], so one broker can serve a whole test binary.
//!
//! The `*_SETTINGS` constants are the client settings known to work against
//! tansu 0.6.0 and the mock cluster; configure the daemon under test with them.
//!
//! # tansu 0.6.0 with rdkafka 0.39 (librdkafka 2.12), as measured here
//! - Works: CreateTopics (admin API), Metadata, Produce with keys, headers
//!   (null and empty values too), null payloads, CreateTime timestamps,
//!   gzip/lz4/snappy, the idempotent producer, consumer groups (subscribe,
//!   rebalance, LeaveGroup), OffsetCommit and OffsetFetch.
//! - Starts in about 0.1 s once built; a first group join takes about 0.5 s,
//!   a rejoin after the group emptied about 0.3 s. A second member joining a
//!   live group waits for the first one's next heartbeat (about 3 s).
//! - No topic auto-creation: producing to a missing topic fails only when
//!   `message.timeout.ms` runs out, so tests must call [`Broker::create_topic`].
//! - ListOffsets (latest) answers the base offset of the newest record batch
//!   plus one: too low when that batch holds several records. librdkafka's
//!   `fetch_watermarks`, consumer lag, `Offset::End` and
//!   `auto.offset.reset=latest` all inherit this. [`Broker::end_offsets`]
//!   works around it; Fetch reports the true high watermark.
//! - Fetch returns only batches whose base offset is at or after the one
//!   asked for: a consumer that starts or resumes (from a committed offset)
//!   inside a multi-record batch silently skips the rest of that batch. Real
//!   Kafka and the mock cluster return it. Records produced one at a time
//!   ([`Broker::produce`]) are one batch each and are not affected.
//! - Needs no `broker.address.family`: the harness advertises 127.0.0.1.
//! - Static membership (`group.instance.id`) works: a member restarted under
//!   its id is assigned about 6 s later (tansu holds a static member's
//!   JoinGroup and SyncGroup 3 s each), without waiting for its old session.
//!   But only a dynamic member's request expires members: while every member
//!   is static, one that stopped keeps its partitions, past
//!   `session.timeout.ms` (measured: none moved within 90 s at 30 s).
//!
//! The mock cluster has no CreateTopics handler ([`Broker::create_topic`] uses
//! its own call), and a group that emptied makes the next member wait
//! `session.timeout.ms` minus 1 s before it is admitted.

mod mock;
mod produce;
mod read;
mod tansu;

use std::env;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::FutureProducer;

use self::mock::MockHandle;
pub use self::read::Record;
use self::tansu::TansuProcess;

/// Settings for every client.
pub const CLIENT_SETTINGS: &[(&str, &str)] = &[
    // A dead broker fails a request in 10 s instead of librdkafka's 60 s.
    ("socket.timeout.ms", "10000"),
];

/// Consumer settings: offsets are committed explicitly, only after the
/// writes they cover, and a new group starts at the beginning.
pub const CONSUMER_SETTINGS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("auto.offset.reset", "earliest"),
    ("enable.partition.eof", "false"),
    // The mock cluster admits a member to a group that emptied only after
    // session.timeout.ms - 1 s: with the default 45 s a restart took 44 s.
    ("session.timeout.ms", "6000"),
];

/// Producer settings for test fixtures.
pub const PRODUCER_SETTINGS: &[(&str, &str)] = &[
    // tansu does not auto-create topics; a forgotten create_topic shows up as
    // MessageTimedOut after this long instead of after 5 minutes.
    ("message.timeout.ms", "10000"),
    ("linger.ms", "5"),
];

/// Producer settings that make every record a record batch of its own, so no
/// consumer ever resumes inside a batch (see the tansu notes above), without
/// waiting for each delivery before sending the next record.
pub const UNBATCHED_SETTINGS: &[(&str, &str)] = &[("batch.num.messages", "1"), ("linger.ms", "0")];
/// Connections [`Broker::produce_unbatched`] sends over at once, at most one
/// per partition.
pub const UNBATCHED_PRODUCERS: usize = 8;

/// How long a broker may take to answer its first metadata request.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for one admin, metadata or offset request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a fresh port is tried when tansu loses the race for one.
const START_ATTEMPTS: usize = 3;

/// A Kafka-protocol broker for one test or one test binary.
pub struct Broker {
    bootstrap: String,
    /// Declared before `backend` so they are dropped while the broker still runs.
    producer: OnceLock<FutureProducer>,
    unbatched_producers: OnceLock<Vec<FutureProducer>>,
    backend: Backend,
}

enum Backend {
    /// `KAFKA_BROKERS` named a broker someone else runs.
    External,
    Tansu(TansuProcess),
    Mock(MockHandle),
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
            // Another process can still take the port before tansu binds it:
            // hence the attempts.
            let port = super::redis::free_port();
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

    /// Freeze (`true`) or thaw a tansu this harness started.
    pub fn freeze(&self, frozen: bool) {
        let Backend::Tansu(process) = &self.backend else {
            panic!("only a tansu started by the harness can be frozen");
        };
        process.signal(if frozen { "STOP" } else { "CONT" });
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
            producer: OnceLock::new(),
            unbatched_producers: OnceLock::new(),
            backend,
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
