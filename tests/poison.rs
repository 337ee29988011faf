//! Poison never stops the line: over ten thousand bad records of every kind
//! (not JSON, truncated, invalid UTF-8, 1 MiB, nested 10,000 deep, wrong
//! types, missing type or identifier, CloudEvents binary-mode headers with
//! garbage, unknown types) among ten thousand good deposits, through the real
//! daemon binary, tansu and Redis. Every bad record is accounted for exactly
//! once (one dead letter, found by its source topic/partition/offset headers,
//! or a counted `unrouted_type` skip), and every good deposit is applied
//! exactly once to a projection of non-idempotent counters.
//!
//! Records are produced one per record batch (`batch.num.messages=1`):
//! tansu 0.6.0 skips the rest of a multi-record batch when a consumer resumes
//! inside it, which would blur "exactly once" with a broker bug.

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use support::daemon::{BinaryDaemon, http_get, redis_projections, wait_for};
use support::kafka::{Broker, Record as Letter, unique};
use support::poison::{self, HUGE_BYTES, KINDS, Record};
use support::redis::{RedisServer, free_port};

const GOOD: usize = 10_000;
/// 720 of each kind.
const BAD: usize = 720 * KINDS.len();
/// 1 MiB records, half garbage, half JSON the projector refuses.
const HUGE: usize = 12;
const ACCOUNTS: usize = 50;
const PARTITIONS: i32 = 4;

/// What a produced record must become.
#[derive(Debug, Clone)]
enum Expect {
    Applied { account: String, amount: i64 },
    DeadLettered,
    Skipped,
}

/// Good and bad records interleaved, the huge ones spread among them, and a
/// good deposit for every account after the last bad record.
fn plan() -> Vec<(Record, Expect)> {
    let mut plan = Vec::new();
    let mut seed: u64 = 0x5eed;
    let mut good = |index: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let account = format!("acct-{}", (seed >> 33) as usize % ACCOUNTS);
        let amount = ((seed >> 40) % 1000) as i64 - 100;
        let record = poison::deposit(index, &account, amount);
        (record, Expect::Applied { account, amount })
    };
    let interleaved = GOOD - ACCOUNTS;
    for index in 0..interleaved.max(BAD) {
        if index < interleaved {
            plan.push(good(index));
        }
        if index < BAD {
            let kind = KINDS[index % KINDS.len()];
            let expect = if poison::is_skipped(kind) {
                Expect::Skipped
            } else {
                Expect::DeadLettered
            };
            plan.push((poison::poison(kind, index), expect));
        }
        if index % (BAD / HUGE) == 0 && index / (BAD / HUGE) < HUGE {
            let as_json = (index / (BAD / HUGE)).is_multiple_of(2);
            plan.push((poison::huge(index, as_json), Expect::DeadLettered));
        }
    }
    for account in 0..ACCOUNTS {
        let name = format!("acct-{account}");
        let record = poison::deposit(GOOD + account, &name, 1);
        plan.push((
            record,
            Expect::Applied {
                account: name,
                amount: 1,
            },
        ));
    }
    plan
}

/// Produces every record, one per record batch, many in flight; returns each
/// record's (partition, offset).
async fn produce(broker: &Broker, topic: &str, plan: &[(Record, Expect)]) -> Vec<(i32, i64)> {
    let producer: FutureProducer = broker
        .client_config()
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .set("message.max.bytes", (4 * HUGE_BYTES).to_string())
        .set("message.timeout.ms", "60000")
        .create()
        .expect("a producer from a valid config");
    let mut positions = vec![(0, 0); plan.len()];
    let mut in_flight: VecDeque<(usize, DeliveryFuture)> = VecDeque::new();
    for (index, (record, _)) in plan.iter().enumerate() {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut future_record = FutureRecord::to(topic)
            .key(&record.key)
            .payload(&record.payload)
            .headers(headers);
        loop {
            match producer.send_result(future_record) {
                Ok(delivery) => break in_flight.push_back((index, delivery)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    future_record = back;
                    let (oldest, delivery) = in_flight.pop_front().expect("a full queue");
                    positions[oldest] = delivered(delivery).await;
                }
                Err((error, _)) => panic!("producing to {topic}: {error}"),
            }
        }
        if in_flight.len() >= 1000 {
            let (oldest, delivery) = in_flight.pop_front().expect("just checked");
            positions[oldest] = delivered(delivery).await;
        }
    }
    for (index, delivery) in in_flight {
        positions[index] = delivered(delivery).await;
    }
    positions
}

async fn delivered(delivery: DeliveryFuture) -> (i32, i64) {
    match delivery.await {
        Ok(Ok(done)) => (done.partition, done.offset),
        Ok(Err((error, _))) => panic!("a record was not delivered: {error}"),
        Err(_) => panic!("the producer dropped a delivery report"),
    }
}

/// The sum of `name{labels}` series in a Prometheus text exposition.
fn metric(text: &str, name: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with(name) && line.contains(labels))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn text<'r>(letter: &'r Letter, name: &str) -> &'r str {
    let value = letter
        .header(name)
        .unwrap_or_else(|| panic!("no {name} header"));
    std::str::from_utf8(value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_never_stops_the_line_and_every_record_is_accounted_for_once() {
    let started = Instant::now();
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let (topic, dead_letters, group) = (unique("bank"), unique("dead-letters"), unique("group"));
    broker.create_topic(&topic, PARTITIONS).await;
    broker.create_topic(&dead_letters, PARTITIONS).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("projections")).unwrap();
    std::fs::write(
        dir.path().join("projections/counters.toml"),
        poison::counters_definition(&topic),
    )
    .unwrap();
    let http_port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"[kafka]
brokers = "{brokers}"
group_id = "{group}"
dead_letter_topic = "{dead_letters}"

[kafka.properties]
"socket.timeout.ms" = "10000"
"session.timeout.ms" = "6000"

[caches.default]
provider = "redis"
URI = "{redis}"

[server]
listen = "127.0.0.1:{http_port}"

[pipeline]
batch_timeout_ms = 20
max_backoff_ms = 500
"#,
            brokers = broker.bootstrap(),
            redis = redis.url(0),
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let daemon = std::sync::Mutex::new(BinaryDaemon(
        std::process::Command::new(env!("CARGO_BIN_EXE_projectionist"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn,rdkafka=warn")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("the projectionist binary runs"),
    ));
    let running = || matches!(daemon.lock().unwrap().try_wait(), Ok(None));

    let plan = plan();
    let positions = produce(broker, &topic, &plan).await;
    let produced = started.elapsed();
    let end: i64 = broker.end_offsets(&topic).await.values().sum();
    assert_eq!(end as usize, plan.len());
    wait_for(
        "the group to commit every record",
        Duration::from_secs(150),
        || async {
            let committed = broker.committed_offsets(&group, &topic).await;
            assert!(running(), "the daemon exited; its log: {}", log.display());
            committed.values().sum::<i64>() == end
        },
    )
    .await;
    let consumed = started.elapsed();
    assert!(running(), "the daemon crashed; its log: {}", log.display());

    // Every good deposit applied exactly once.
    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (_, expect) in &plan {
        if let Expect::Applied { account, amount } = expect {
            let (n, sum) = expected.entry(format!("counters:::{account}")).or_default();
            *n += 1;
            *sum += amount;
        }
    }
    let stored: BTreeMap<String, (i64, i64)> = redis_projections(&redis.url(0))
        .await
        .into_iter()
        .map(|(key, value)| {
            (
                key,
                (value["n"].as_i64().unwrap(), value["sum"].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        stored, expected,
        "counters differ from the fold of the good deposits"
    );

    // Every dead-lettered record has exactly one letter, and nothing else has one.
    let letters = broker
        .consume_all(&dead_letters, Duration::from_secs(60))
        .await;
    let mut per_source: BTreeMap<(String, i32, i64), usize> = BTreeMap::new();
    for letter in &letters {
        let source = (
            text(letter, "projectionist.source.topic").to_owned(),
            text(letter, "projectionist.source.partition")
                .parse()
                .unwrap(),
            text(letter, "projectionist.source.offset").parse().unwrap(),
        );
        *per_source.entry(source).or_default() += 1;
    }
    let wanted: BTreeMap<(String, i32, i64), usize> = plan
        .iter()
        .zip(&positions)
        .filter(|((_, expect), _)| matches!(expect, Expect::DeadLettered))
        .map(|(_, &(partition, offset))| ((topic.clone(), partition, offset), 1))
        .collect();
    let duplicated = per_source.values().filter(|count| **count > 1).count();
    assert_eq!(duplicated, 0, "letters sent more than once");
    assert_eq!(
        per_source.len(),
        wanted.len(),
        "letters for the wrong records"
    );
    assert_eq!(per_source, wanted);

    // The 1 MiB records went cut, identifiable by size and digest.
    let huge: Vec<_> = plan
        .iter()
        .zip(&positions)
        .filter(|((record, _), _)| record.payload.len() == HUGE_BYTES)
        .collect();
    assert_eq!(huge.len(), HUGE);
    for ((record, _), (partition, offset)) in huge {
        let letter = letters
            .iter()
            .find(|letter| {
                text(letter, "projectionist.source.partition") == partition.to_string()
                    && text(letter, "projectionist.source.offset") == offset.to_string()
            })
            .expect("a letter for the huge record");
        assert_eq!(text(letter, "projectionist.truncated"), "true");
        assert_eq!(
            text(letter, "projectionist.original.size"),
            HUGE_BYTES.to_string()
        );
        let digest = ring::digest::digest(&ring::digest::SHA256, &record.payload);
        let hex: String = digest
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(text(letter, "projectionist.original.sha256"), hex);
        let kept = letter.payload.as_ref().map_or(0, Vec::len);
        assert!(kept > 0 && kept < HUGE_BYTES, "{kept} bytes kept");
        assert_eq!(
            &letter.payload.as_ref().unwrap()[..],
            &record.payload[..kept]
        );
    }

    // The skips were counted, the letters too, and nothing was retried.
    let (status, metrics) = http_get(http_port, "/metrics");
    assert_eq!(status, 200);
    let skipped = plan
        .iter()
        .filter(|(_, e)| matches!(e, Expect::Skipped))
        .count() as u64;
    let unrouted = r#"projection="none",reason="unrouted_type""#;
    assert_eq!(
        metric(&metrics, "projectionist_events_skipped_total", unrouted),
        skipped
    );
    let lettered = metric(&metrics, "projectionist_events_dead_lettered_total", "");
    assert_eq!(lettered as usize, wanted.len());
    let projected = metric(&metrics, "projectionist_events_projected_total", "counters");
    assert_eq!(projected as usize, GOOD);
    assert_eq!(
        metric(&metrics, "projectionist_dead_letters_truncated_total", ""),
        HUGE as u64
    );
    let retried = r#"component="dead_letter""#;
    assert_eq!(metric(&metrics, "projectionist_retries_total", retried), 0);
    eprintln!(
        "poison: {} records ({BAD} bad + {HUGE} of 1 MiB, {GOOD} good), {} letters, {skipped} \
         skips; produced after {produced:?}, all committed after {consumed:?}, checked after {:?}",
        plan.len(),
        letters.len(),
        started.elapsed()
    );
}
