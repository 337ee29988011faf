//! The daemon's catch-up rate against the broker's own ceiling.
//!
//! `cargo bench --bench pipeline` produces 1,000,000 shop events (4 partitions,
//! 100,000 orders) to a real broker (tansu, or `KAFKA_BROKERS`), then in the same
//! run times (1) a do-nothing consumer reading the backlog and (2) the daemon
//! catching up into a real Redis, and prints both rates and their ratio.
//! Under `cargo test` (no `--bench` argument) it runs a small smoke version, so
//! the benchmark cannot rot unnoticed. With `BENCH_OFFLINE_ONLY=1` it runs only
//! the last figure, the offline fold (no broker, no Redis): a quick loop for
//! work on the projectors themselves. `BENCH_FRESHNESS_ONLY=1` runs only the
//! freshness figures, with the daemon's default settings.
//!
//! The daemon runs as its own process (the release binary), so its CPU per
//! event is the whole process's, every thread, from the kernel's accounting
//! (`wait4`), printed beside the do-nothing consumer's and split by thread.
//! `BENCH_BASELINE_BIN=path` runs another build beside it on the same backlog
//! and stream (the version before exactly-once, say), and prints the two side
//! by side: catch-up rate, CPU per event and freshness.

#[path = "support_bench/cpu.rs"]
mod cpu;
#[path = "support_bench/daemon.rs"]
mod daemon;
#[path = "support_bench/freshness.rs"]
mod freshness;
#[path = "support_bench/invoices.rs"]
mod invoices;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use projectionist::cache::Cache;
use projectionist::cache::memory::MemoryCache;
use projectionist::config::Settings;
use projectionist::fixtures::FixtureRecord;
use projectionist::offline::fold_records;
use projectionist::projector::Registry;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

use daemon::{
    Build, baseline_build, baseline_config, catch_up, freshness_rates, live_freshness, this_build,
};
use support::daemon::{Setup, setup};
use support::kafka::Broker;
use support::redis::RedisServer;
use support::shop::story_with_items;

struct Scale {
    orders: usize,
    events: usize,
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let scale = if full {
        Scale {
            orders: 100_000,
            events: 1_000_000,
        }
    } else {
        Scale {
            orders: 300,
            events: 3_000,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if std::env::var_os("BENCH_OFFLINE_ONLY").is_some() {
        runtime.block_on(offline_only(scale));
    } else if std::env::var_os("BENCH_FRESHNESS_ONLY").is_some() {
        runtime.block_on(freshness_only(full));
    } else {
        runtime.block_on(run(scale, full));
    }
}

/// Only the freshness figures (no backlog, no catch-up): a quick loop for work
/// on latency and on the fetch settings.
async fn freshness_only(full: bool) {
    let broker = Broker::start();
    let redis = RedisServer::start();
    let setup = setup(&broker, &redis.url(0), "").await;
    let baseline = baseline_build().map(|binary| {
        let (config, group, redis_url) = baseline_config(&setup, 2);
        (binary, config, group, redis_url)
    });
    freshness_figures(&broker, &setup, full, baseline.as_ref()).await;
}

/// Freshness of this build, and of the baseline's when one is given
/// (binary, config, Redis URL), rate by rate: both builds measure a rate
/// on the same broker before the next, higher one leaves it busy.
async fn freshness_figures(
    broker: &Broker,
    setup: &Setup,
    full: bool,
    baseline: Option<&(PathBuf, PathBuf, String, String)>,
) {
    let binary = this_build();
    let this = Build {
        binary: &binary,
        config: &setup.config,
        group: &setup.group,
        redis_url: &setup.redis_url,
    };
    let other = baseline.map(|(binary, config, group, redis_url)| Build {
        binary,
        config,
        group,
        redis_url,
    });
    let (seconds, rates) = freshness_rates(full);
    for &rate in rates {
        live_freshness(&this, broker, setup, rate, seconds).await;
        if let Some(other) = &other {
            println!("the same with BENCH_BASELINE_BIN:");
            live_freshness(other, broker, setup, rate, seconds).await;
        }
    }
}

/// Only the offline comparison, over the shipped definition and its twin.
async fn offline_only(scale: Scale) {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("projections");
    let declarative = dir.path().join("projections");
    let twin = dir.path().join("twin-projections");
    for made in [&declarative, &twin] {
        std::fs::create_dir(made).unwrap();
    }
    std::fs::copy(
        shipped.join("order_summary.toml"),
        declarative.join("order_summary.toml"),
    )
    .unwrap();
    std::fs::write(
        twin.join("order_summary.toml"),
        twin_definition("shop.orders"),
    )
    .unwrap();
    offline_comparison(&declarative, &twin, "shop.orders", "shop.inventory", &scale).await;
}

/// Fold `order_summary` alone offline (no Kafka, no Redis, where the projector's
/// own cost shows), declarative and Rust, over the same story; prints both rates.
async fn offline_comparison(
    declarative_dir: &Path,
    twin_dir: &Path,
    orders: &str,
    inventory: &str,
    scale: &Scale,
) {
    let sample: Vec<FixtureRecord> =
        story_with_items(orders, inventory, scale.orders / 5, 2_000, 7)
            .into_iter()
            .take(scale.events / 5)
            .map(|record| record.to_fixture())
            .collect();
    let declarative = offline_rate(declarative_dir, &sample).await;
    let rust = offline_rate(twin_dir, &sample).await;
    let offline = declarative / rust;
    println!(
        "offline order_summary fold ({} events, memory cache): declarative {declarative:.0} events/s, Rust {rust:.0} events/s, ratio {offline:.2} (target >= 0.80: {})",
        sample.len(),
        verdict(offline, 0.8)
    );
}

async fn run(scale: Scale, full: bool) {
    let broker = Broker::start();
    let redis = RedisServer::start();
    let setup = setup(
        &broker,
        &redis.url(0),
        "batch_size = 2000\nqueue_batches = 8",
    )
    .await;
    // 7 item events per order: about 10.25 events per order, cut at `events`.
    let mut records = story_with_items(
        &setup.orders,
        &setup.inventory,
        scale.orders,
        10_000.min(scale.orders),
        7,
    );
    records.truncate(scale.events);
    let events = records.len();
    let produced = Instant::now();
    let mut by_topic: std::collections::BTreeMap<String, Vec<(String, Vec<u8>)>> =
        Default::default();
    for record in &records {
        by_topic
            .entry(record.topic.clone())
            .or_default()
            .push((record.key.clone(), record.payload()));
    }
    drop(records);
    for (topic, batch) in by_topic {
        broker.produce_many(&topic, batch).await;
    }
    let produce_secs = produced.elapsed().as_secs_f64();
    println!(
        "produced {events} events in {produce_secs:.1} s ({:.0} events/s)",
        events as f64 / produce_secs
    );

    // The bench process is otherwise idle meanwhile: its CPU is the consumer's.
    let cpu_before = cpu::own_seconds();
    let (raw_secs, raw_halfway) = raw_consume(&broker, &[&setup.orders, &setup.inventory], events);
    let raw_cpu_us = (cpu::own_seconds() - cpu_before) * 1e6 / events as f64;
    let raw_rate = events as f64 / raw_secs;
    println!(
        "do-nothing consumer: {events} events in {raw_secs:.2} s = {raw_rate:.0} events/s, {raw_cpu_us:.2} µs CPU per event (whole process)"
    );
    print_fairness(raw_halfway);

    let timeout = Duration::from_secs(if full { 1800 } else { 120 });
    let daemon = catch_up(
        &this_build(),
        &setup.config,
        &setup.redis_url,
        &broker,
        &setup,
        &setup.group,
        timeout,
    )
    .await;
    daemon.print("declarative order_summary", events, raw_cpu_us);
    let baseline = baseline_build().map(|binary| {
        let (config, group, redis_url) = baseline_config(&setup, 2);
        (binary, config, group, redis_url)
    });
    if let Some((binary, config, group, redis_url)) = &baseline {
        let other = catch_up(binary, config, redis_url, &broker, &setup, group, timeout).await;
        other.print(
            "BENCH_BASELINE_BIN, declarative order_summary",
            events,
            raw_cpu_us,
        );
        println!(
            "this build vs the baseline, same backlog: {:.0} vs {:.0} events/s ({:.2}x), CPU per event {:.2} vs {:.2} µs ({:.2}x)",
            events as f64 / daemon.seconds,
            events as f64 / other.seconds,
            other.seconds / daemon.seconds,
            daemon.cpu_us(events),
            other.cpu_us(events),
            daemon.cpu_us(events) / other.cpu_us(events),
        );
    }
    let daemon_secs = daemon.seconds;
    let daemon_rate = events as f64 / daemon_secs;
    let ratio = daemon_rate / raw_rate;
    println!(
        "projectionist -> redis (declarative order_summary): {events} events in {daemon_secs:.2} s = {daemon_rate:.0} events/s (includes start-up and group join)"
    );
    println!(
        "ratio daemon / raw consume: {ratio:.2} (target >= 0.90: {})",
        verdict(ratio, 0.9)
    );

    // The same backlog again, with order_summary folded by its Rust twin, into
    // another Redis database under another group.
    let (twin_config, twin_group, twin_redis) = rust_twin(&setup);
    let twin = catch_up(
        &this_build(),
        &twin_config,
        &twin_redis,
        &broker,
        &setup,
        &twin_group,
        timeout,
    )
    .await;
    twin.print("Rust order_summary", events, raw_cpu_us);
    let twin_secs = twin.seconds;
    let twin_rate = events as f64 / twin_secs;
    println!(
        "projectionist -> redis (Rust order_summary): {events} events in {twin_secs:.2} s = {twin_rate:.0} events/s"
    );
    let through_daemon = daemon_rate / twin_rate;
    println!(
        "ratio declarative / Rust through the daemon: {through_daemon:.2} (target >= 0.80: {})",
        verdict(through_daemon, 0.8)
    );

    second_stream(&broker, &redis, &scale, timeout).await;

    freshness_figures(&broker, &setup, full, baseline.as_ref()).await;

    // The daemon is bound by the broker above; offline, without Kafka or Redis,
    // the projector's own cost shows.
    offline_comparison(
        &setup.dir.path().join("projections"),
        &setup.dir.path().join("twin-projections"),
        &setup.orders,
        &setup.inventory,
        &scale,
    )
    .await;
}

/// The invoice stream (decimal prices, `when` conditions) on topics of its
/// own: the do-nothing consumer's CPU and rate, then the daemon's.
async fn second_stream(broker: &Broker, redis: &RedisServer, scale: &Scale, timeout: Duration) {
    let invoices = setup(
        broker,
        &redis.url(3),
        "batch_size = 2000\nqueue_batches = 8",
    )
    .await;
    let projections = invoices.dir.path().join("projections");
    for entry in std::fs::read_dir(&projections).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    std::fs::write(
        projections.join("invoice_summary.toml"),
        invoices::definition(&invoices.orders),
    )
    .unwrap();
    let records = invoices::stream(scale.events);
    let events = records.len();
    broker.produce_many(&invoices.orders, records).await;
    let cpu_before = cpu::own_seconds();
    let (raw_secs, raw_halfway) = raw_consume(broker, &[&invoices.orders], events);
    let raw_cpu_us = (cpu::own_seconds() - cpu_before) * 1e6 / events as f64;
    println!(
        "second stream (invoices: decimal prices, `when` conditions): do-nothing consumer {:.0} events/s, {raw_cpu_us:.2} µs CPU per event",
        events as f64 / raw_secs
    );
    print_fairness(raw_halfway);
    let daemon = catch_up(
        &this_build(),
        &invoices.config,
        &invoices.redis_url,
        broker,
        &invoices,
        &invoices.group,
        timeout,
    )
    .await;
    daemon.print("declarative invoice_summary", events, raw_cpu_us);
    // The figures count only if the stream folded as meant: every invoice
    // stored, and a whole one paid with its eight lines.
    let stored = support::daemon::redis_projections(&redis.url(3)).await;
    assert_eq!(
        stored.len(),
        events.div_ceil(10),
        "one projection per invoice"
    );
    let first = &stored["invoice_summary:::inv-0000000"];
    assert_eq!(first["status"], "paid", "{first}");
    assert_eq!(first["line_count"], 8, "{first}");
    let rate = events as f64 / daemon.seconds;
    let ratio = rate * raw_secs / events as f64;
    println!(
        "projectionist -> redis (invoice_summary): {events} events in {:.2} s = {rate:.0} events/s, {ratio:.2} of the do-nothing consumer (target >= 0.90: {})",
        daemon.seconds,
        verdict(ratio, 0.9)
    );
    if let Some(binary) = baseline_build() {
        let (config, group, redis_url) = baseline_config(&invoices, 4);
        let other = catch_up(
            &binary, &config, &redis_url, broker, &invoices, &group, timeout,
        )
        .await;
        other.print(
            "BENCH_BASELINE_BIN, declarative invoice_summary",
            events,
            raw_cpu_us,
        );
        println!(
            "this build vs the baseline, invoices: {:.0} vs {:.0} events/s ({:.2}x), CPU per event {:.2} vs {:.2} µs ({:.2}x)",
            rate,
            events as f64 / other.seconds,
            other.seconds / daemon.seconds,
            daemon.cpu_us(events),
            other.cpu_us(events),
            daemon.cpu_us(events) / other.cpu_us(events),
        );
    }
}

/// The do-nothing consumer's fairness, the reference for the daemon's: the
/// broker decides which partition fills a fetch, and tansu fills each from
/// one partition (it ignores `max.partition.fetch.bytes`).
fn print_fairness(halfway: Option<(f64, f64)>) {
    if let Some((least, most)) = halfway {
        println!(
            "  fairness: with half the backlog delivered, the do-nothing consumer's partitions stood at {:.0}%-{:.0}% of theirs",
            least * 100.0,
            most * 100.0
        );
    }
}

fn verdict(ratio: f64, target: f64) -> &'static str {
    if ratio >= target { "met" } else { "NOT met" }
}

/// A config like `setup`'s, but another group, Redis database 1, and the Rust
/// `order_summary` projector in place of the declarative one; with that
/// database's URL.
fn rust_twin(setup: &Setup) -> (PathBuf, String, String) {
    let group = support::kafka::unique("twin");
    let dir = setup.dir.path().join("twin-projections");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(setup.dir.path().join("projections")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.join("order_summary.toml"),
        twin_definition(&setup.orders),
    )
    .unwrap();
    let twin_redis = setup.redis_url.replace("/0", "/1");
    let config = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace(&setup.group, &group)
        .replace(&setup.redis_url, &twin_redis)
        .replace(
            "[pipeline]",
            "[projections]\ndir = \"twin-projections\"\n\n[pipeline]",
        );
    let path = setup.dir.path().join("twin.toml");
    std::fs::write(&path, config).unwrap();
    (path, group, twin_redis)
}

/// `order_summary` on `orders_topic`, folded by the Rust projector.
fn twin_definition(orders_topic: &str) -> String {
    let event_types = [
        "shop.order.placed",
        "shop.order.item_added",
        "shop.order.item_removed",
        "shop.order.paid",
        "shop.order.shipped",
        "shop.order.cancelled",
    ];
    format!(
        "name = \"order_summary\"\nttl = 86400\ntopics = [{orders_topic:?}]\nevent_types = {event_types:?}\nidentifier = \"{{data.order_id}}\"\nprojector = \"order_summary\"\n"
    )
}

/// Events per second through the real pipeline offline (memory cache), with only
/// the `order_summary` definition found in `dir`.
async fn offline_rate(dir: &Path, records: &[FixtureRecord]) -> f64 {
    let only = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.join("order_summary.toml"),
        only.path().join("order_summary.toml"),
    )
    .unwrap();
    let mut settings = Settings::defaults();
    settings.projections_dir = only.path().to_path_buf();
    settings.pipeline.batch_size = 2000;
    let definitions =
        projectionist::projection::load_dir(&settings, &Registry::with_builtins()).unwrap();
    let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(settings.caches["default"].ttl));
    let caches = BTreeMap::from([("default".to_owned(), cache)]);
    let started = Instant::now();
    let failures = fold_records(&settings, definitions, &caches, records)
        .await
        .unwrap();
    assert!(failures.is_empty(), "{:?}", failures.first());
    records.len() as f64 / started.elapsed().as_secs_f64()
}

/// A do-nothing consumer over `topics`, fetching as the daemon does, until
/// it has seen `events`: its seconds, and how evenly the first topic's
/// partitions came (the least and most advanced one's share of its backlog
/// when half of it had arrived, as the daemon's catch-up prints it).
fn raw_consume(broker: &Broker, topics: &[&str], events: usize) -> (f64, Option<(f64, f64)>) {
    let consumer: BaseConsumer =
        daemon::fetching_as_the_daemon(broker.consumer_config(&support::kafka::unique("raw")))
            .create()
            .expect("a consumer");
    // The backlog's ends are read before the clock starts, as the daemon's
    // catch-up reads them (see `daemon::catch_up`).
    let ends = watermarks(&consumer, topics[0]);
    let first_topic_total: i64 = ends.values().sum();
    consumer.subscribe(topics).expect("subscribe");
    let started = Instant::now();
    let mut seen = 0usize;
    let mut bytes = 0usize;
    let mut per_partition: BTreeMap<i32, usize> = BTreeMap::new();
    let mut halfway = None;
    while seen < events {
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "raw consumer stalled at {seen}"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("a record");
            bytes += message.payload().map_or(0, <[u8]>::len);
            seen += 1;
            if message.topic() == topics[0] {
                let count = per_partition.entry(message.partition()).or_default();
                *count += 1;
                let arrived: usize = per_partition.values().sum();
                if halfway.is_none() && arrived as i64 * 2 >= first_topic_total {
                    halfway = Some(spread(&per_partition, &ends));
                }
            }
        }
    }
    std::hint::black_box(bytes);
    (started.elapsed().as_secs_f64(), halfway)
}

/// Each partition's high watermark.
fn watermarks(consumer: &BaseConsumer, topic: &str) -> BTreeMap<i32, i64> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions();
    partitions
        .iter()
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
                .expect("watermarks");
            (partition.id(), high)
        })
        .collect()
}

/// The least and most advanced partition's share of its backlog.
fn spread(arrived: &BTreeMap<i32, usize>, ends: &BTreeMap<i32, i64>) -> (f64, f64) {
    ends.iter()
        .filter(|(_, end)| **end > 0)
        .map(|(partition, end)| arrived.get(partition).copied().unwrap_or(0) as f64 / *end as f64)
        .fold((f64::MAX, 0.0f64), |(least, most), share| {
            (least.min(share), most.max(share))
        })
}
