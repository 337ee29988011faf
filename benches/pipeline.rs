//! The daemon's catch-up rate against the broker's own ceiling.
//!
//! `cargo bench --bench pipeline` produces 1,000,000 shop events (4 partitions,
//! 100,000 orders) to a real broker (tansu, or `KAFKA_BROKERS`), then in the same
//! run times (1) a do-nothing consumer reading the backlog and (2) the daemon
//! catching up into a real Redis, and prints both rates and their ratio.
//! Under `cargo test` (no `--bench` argument) it runs a small smoke version, so
//! the benchmark cannot rot unnoticed.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

use support::daemon::setup;
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
    runtime.block_on(run(scale, full));
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

    let raw_secs = raw_consume(&broker, &[&setup.orders, &setup.inventory], events);
    let raw_rate = events as f64 / raw_secs;
    println!("do-nothing consumer: {events} events in {raw_secs:.2} s = {raw_rate:.0} events/s");

    let started = Instant::now();
    let (shutdown, daemon) = setup.spawn();
    setup
        .wait_caught_up(&broker, Duration::from_secs(if full { 1800 } else { 120 }))
        .await;
    let daemon_secs = started.elapsed().as_secs_f64();
    shutdown.cancel();
    daemon
        .await
        .expect("the daemon task")
        .expect("the daemon ran");
    let daemon_rate = events as f64 / daemon_secs;
    let ratio = daemon_rate / raw_rate;
    println!(
        "projectionist -> redis: {events} events in {daemon_secs:.2} s = {daemon_rate:.0} events/s (includes start-up and group join)"
    );
    println!(
        "ratio daemon / raw consume: {ratio:.2} (target >= 0.50: {})",
        if ratio >= 0.5 { "met" } else { "NOT met" }
    );
}

/// Read `events` records from the start with a fresh group, doing nothing with
/// them; returns the seconds from subscription to the last record.
fn raw_consume(broker: &Broker, topics: &[&str], events: usize) -> f64 {
    let consumer: BaseConsumer = broker
        .consumer_config(&support::kafka::unique("raw"))
        .create()
        .expect("a consumer");
    consumer.subscribe(topics).expect("subscribe");
    let started = Instant::now();
    let mut seen = 0usize;
    let mut bytes = 0usize;
    while seen < events {
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "raw consumer stalled at {seen}"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("a record");
            bytes += message.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    std::hint::black_box(bytes);
    started.elapsed().as_secs_f64()
}
