//! `projectionist dev`: the whole pipeline with nothing to install. librdkafka's
//! in-process mock cluster stands in for Kafka, seeded with the example events
//! shipped in `projections/fixtures/`; the caches are in memory.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::fixtures::{CLOUDEVENTS_JSON, FixtureRecord, read_jsonl};
use crate::projector::Registry;

/// Partitions of each topic in the mock cluster.
const PARTITIONS: i32 = 4;

/// Run the daemon against an in-process mock Kafka seeded with the examples.
pub async fn run(
    registry: &Registry,
    listen: SocketAddr,
    projections_dir: &Path,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let cluster = MockCluster::new(1).context("starting the mock Kafka cluster")?;
    let mut settings = Settings::defaults();
    settings.kafka.brokers = cluster.bootstrap_servers();
    settings.kafka.group_id = "projectionist-dev".to_owned();
    settings.server.listen = listen;
    // The admin API on the same port; mutations stay refused (no token in dev).
    settings.admin.listen = Some(listen);
    settings.projections_dir = projections_dir.to_path_buf();
    let definitions = crate::projection::load_dir(&settings, registry)?;
    let mut topics: Vec<&String> = definitions.iter().flat_map(|d| &d.topics).collect();
    topics.sort();
    topics.dedup();
    for topic in &topics {
        cluster
            .create_topic(topic, PARTITIONS, 1)
            .with_context(|| format!("creating topic {topic} in the mock cluster"))?;
    }
    let records = example_records(&projections_dir.join("fixtures"))?;
    produce(&settings.kafka.brokers, &records).await?;
    let names: Vec<&str> = definitions.iter().map(|d| d.name.as_str()).collect();
    println!(
        "projectionist dev: mock Kafka at {} seeded with {} example events",
        settings.kafka.brokers,
        records.len()
    );
    println!("  projections: {}", names.join(", "));
    println!("  metrics:     http://{listen}/metrics");
    println!("  readiness:   http://{listen}/readyz");
    println!(
        "  a projection: http://{listen}/projections/order_summary/<order id> (ids in projections/fixtures/*/events.jsonl)"
    );
    println!(
        "  status:      http://{listen}/admin/status (projectionist status --admin http://{listen})"
    );
    println!("  stop with Ctrl-C");
    let outcome = crate::app::run(settings, registry, shutdown).await;
    drop(cluster);
    outcome
}

/// Every example event, each CloudEvent id once (the fixtures may share events).
fn example_records(dir: &Path) -> anyhow::Result<Vec<FixtureRecord>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the example events", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("events.jsonl")))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut seen = HashSet::new();
    let mut records = Vec::new();
    for file in files {
        for record in read_jsonl(&file).map_err(anyhow::Error::msg)? {
            let id = record.event.get("id").map(ToString::to_string);
            if id.is_none_or(|id| seen.insert(id)) {
                records.push(record);
            }
        }
    }
    Ok(records)
}

async fn produce(brokers: &str, records: &[FixtureRecord]) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating the example producer")?;
    for record in records {
        let payload = record.payload();
        let headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some(CLOUDEVENTS_JSON),
        });
        let mut message: FutureRecord<'_, str, [u8]> = FutureRecord::to(&record.topic)
            .payload(payload.as_slice())
            .headers(headers);
        if let Some(key) = &record.key {
            message = message.key(key.as_str());
        }
        if let Some(partition) = record.partition {
            message = message.partition(partition);
        }
        producer
            .send(message, Duration::from_secs(10))
            .await
            .map_err(|(error, _)| anyhow::anyhow!("producing an example event: {error}"))?;
    }
    Ok(())
}
