//! The consumer against librdkafka's mock cluster: a backlog spread over
//! partitions comes out with the partitions in turn, not one after another.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tokio_util::sync::CancellationToken;

use super::KafkaSource;
use crate::config::{PipelineSettings, Settings, StartFrom};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::source::Delivery;

const PARTITIONS: i32 = 4;
const PER_PARTITION: usize = 5_000;

/// The whole backlog is produced before the consumer starts, each partition's
/// records in one go, so librdkafka's fetches bring whole partitions at once:
/// taken from one consumer queue, the first half of the records would be the
/// first two partitions' backlogs. A second, empty topic is subscribed too,
/// as a daemon's quiet topics are: its partitions' turns must not all fall
/// to one partition of the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_comes_out_with_the_partitions_in_turn() {
    let cluster = MockCluster::new(1).unwrap();
    let topic = "shop.orders";
    let quiet = "shop.inventory";
    cluster.create_topic(topic, PARTITIONS, 1).unwrap();
    cluster.create_topic(quiet, PARTITIONS, 1).unwrap();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("linger.ms", "50")
        .create()
        .unwrap();
    let payload = vec![b'x'; 100];
    for partition in 0..PARTITIONS {
        for offset in 0..PER_PARTITION {
            let key = format!("ord-{partition}-{offset}");
            let record = BaseRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&payload);
            producer.send(record).unwrap();
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let mut kafka = Settings::defaults().kafka;
    kafka.brokers = cluster.bootstrap_servers();
    kafka.group_id = "fairness".to_owned();
    kafka.start_from = StartFrom::Earliest;
    // Small batches and one queued: the fetch thread takes only a few hundred
    // records before the test reads, by when librdkafka holds the backlog.
    let pipeline = PipelineSettings {
        batch_size: 100,
        queue_batches: 1,
        ..PipelineSettings::default()
    };
    let shutdown = CancellationToken::new();
    let (source, mut deliveries) = KafkaSource::start(
        &kafka,
        &pipeline,
        &[topic.to_owned(), quiet.to_owned()],
        Health::new(),
        Metrics::new(),
        shutdown.clone(),
    )
    .unwrap();
    let wanted = PARTITIONS as usize * PER_PARTITION;
    let mut order = Vec::with_capacity(wanted);
    let mut first = true;
    while order.len() < wanted {
        let delivery = tokio::time::timeout(Duration::from_secs(30), deliveries.recv())
            .await
            .expect("the backlog arrives within 30 s")
            .expect("the consumer runs until shut down");
        match delivery {
            Delivery::Records(records) => {
                order.extend(records.iter().map(|record| record.position.partition));
            }
            Delivery::Assigned(_) if first => {
                first = false;
                // Let librdkafka prefetch every partition's backlog.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            other => panic!("only records after the assignment: {other:?}"),
        }
    }
    let mut first_half: BTreeMap<i32, usize> = BTreeMap::new();
    for partition in &order[..wanted / 2] {
        *first_half.entry(*partition).or_default() += 1;
    }
    for partition in 0..PARTITIONS {
        let share = first_half.get(&partition).copied().unwrap_or(0) as f64 / PER_PARTITION as f64;
        assert!(
            (0.4..=0.6).contains(&share),
            "partition {partition} was {:.0}% through its backlog when half of all \
             records had come out; every partition: {first_half:?}",
            share * 100.0
        );
    }
    shutdown.cancel();
    tokio::task::spawn_blocking(move || {
        while deliveries.blocking_recv().is_some() {}
        source.close();
    })
    .await
    .unwrap();
}
