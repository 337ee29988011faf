//! Exactly once, in process: a broker's redeliveries, gaps and resets, a
//! write that lands after its reply was lost, a restart, and a zombie, each
//! against the real memory cache's checkpoints. Every record is one unit of
//! `sku-x` on `shop.inventory/0`, so the stored count is how often events
//! applied.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use projectionist::cache::{Cache, Partition};
use projectionist::config::{CacheSettings, Settings};
use projectionist::event::Envelope;
use projectionist::health::Health;
use projectionist::metrics::Metrics;
use projectionist::pipeline::{Pipeline, Positioning, Retry, Router, Wiring};
use projectionist::projection::load_dir;
use projectionist::projector::Registry;
use projectionist::source::Delivery;

use super::harness::*;

fn inventory() -> Partition {
    Partition::new("shop.inventory", 0)
}

/// A rig reading from a broker, every partition sought to its checkpoint (0:
/// the memory cache starts every partition from the beginning).
async fn broker_rig() -> Rig {
    let mut rig = rig_reading(0, 0, Positioning::Seek).await;
    for partition in assigned_partitions() {
        rig.pipeline
            .deliver(Delivery::Sought {
                partition,
                offset: 0,
            })
            .await
            .unwrap();
    }
    rig
}

/// A pipeline that applied `shop.inventory/0` up to 25, then a second one
/// started over the same cache (a restart), with metrics of its own; the
/// log holds only what happened since the restart.
async fn restarted_after_25() -> (Rig, Metrics, Pipeline) {
    let mut rig = broker_rig().await;
    rig.pipeline.process(stock(0..25)).await.unwrap();
    rig.log.lock().unwrap().clear();
    let metrics = Metrics::new();
    let restarted = pipeline_over(
        &rig.cache,
        &rig.log,
        None,
        &metrics,
        Positioning::Seek,
        Health::new(),
    )
    .await;
    (rig, metrics, restarted)
}

/// The consumer made the seek to `offset` of `shop.inventory/0`.
async fn sought(pipeline: &mut Pipeline, offset: i64) {
    let partition = inventory();
    let delivery = Delivery::Sought { partition, offset };
    pipeline.deliver(delivery).await.unwrap();
}

fn log(rig: &Rig) -> Vec<String> {
    rig.log.lock().unwrap().clone()
}

#[tokio::test]
async fn records_delivered_again_apply_once() {
    let mut rig = broker_rig().await;
    rig.pipeline.process(stock(0..50)).await.unwrap();
    rig.pipeline.process(stock(0..50)).await.unwrap();
    rig.pipeline.process(stock(40..60)).await.unwrap();
    assert_eq!(units(rig.cache.as_ref()).await, 60);
    let metrics = rig.metrics.render();
    assert!(
        metrics.contains("projectionist_records_dropped_total{reason=\"redelivered\"} 60"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_gap_is_read_again_not_skipped() {
    let mut rig = broker_rig().await;
    rig.pipeline.process(stock(0..6)).await.unwrap();
    // The broker skipped 6 and 7.
    rig.pipeline.process(stock(8..12)).await.unwrap();
    assert_eq!(units(rig.cache.as_ref()).await, 6);
    assert!(log(&rig).contains(&"seek shop.inventory/0=6".to_owned()));
    // Fetched before the seek took effect: still stale.
    rig.pipeline.process(stock(12..14)).await.unwrap();
    sought(&mut rig.pipeline, 6).await;
    rig.pipeline.process(stock(6..14)).await.unwrap();
    assert_eq!(units(rig.cache.as_ref()).await, 14);
}

#[tokio::test]
async fn a_hole_right_after_a_seek_is_offsets_the_log_does_not_hold() {
    let mut rig = broker_rig().await;
    rig.pipeline.process(stock(0..3)).await.unwrap();
    rig.pipeline.process(stock(5..6)).await.unwrap();
    sought(&mut rig.pipeline, 3).await;
    // Compaction or transaction markers: the log resumes at 5.
    rig.pipeline.process(stock(5..9)).await.unwrap();
    assert_eq!(units(rig.cache.as_ref()).await, 7);
    let seeks = log(&rig).iter().filter(|e| e.starts_with("seek")).count();
    assert_eq!(seeks, 1, "{:?}", log(&rig));
}

#[tokio::test]
async fn a_write_that_landed_after_its_reply_was_lost_is_not_applied_again() {
    let mut rig = broker_rig().await;
    *rig.cache.landed_but_timed_out.lock().unwrap() = 1;
    rig.pipeline.process(stock(0..10)).await.unwrap();
    assert_eq!(units(rig.cache.as_ref()).await, 10);
    let log = log(&rig);
    assert!(
        log.contains(&"write landed, reply lost".to_owned()),
        "{log:?}"
    );
    rig.pipeline.process(stock(10..12)).await.unwrap();
    assert_eq!(units(rig.cache.as_ref()).await, 12);
}

#[tokio::test]
async fn a_restarted_pipeline_resumes_from_the_checkpoint() {
    // Killed: Kafka's committed offset may lag; the next pipeline seeks to
    // the cache's checkpoint instead.
    let (rig, _, mut restarted) = restarted_after_25().await;
    assert!(log(&rig).contains(&"seek shop.inventory/0=25".to_owned()));
    restarted.process(stock(20..30)).await.unwrap();
    assert_eq!(
        units(rig.cache.as_ref()).await,
        25,
        "fetched before the seek"
    );
    sought(&mut restarted, 25).await;
    restarted.process(stock(25..40)).await.unwrap();
    assert_eq!(units(rig.cache.as_ref()).await, 40);
}

#[tokio::test]
async fn a_zombie_writes_nothing_once_another_owner_claimed() {
    let mut zombie = broker_rig().await;
    zombie.pipeline.process(stock(0..10)).await.unwrap();
    // Frozen past its session; another member is assigned the partition.
    let metrics = Metrics::new();
    let mut owner = pipeline_over(
        &zombie.cache,
        &zombie.log,
        None,
        &metrics,
        Positioning::Seek,
        Health::new(),
    )
    .await;
    sought(&mut owner, 10).await;
    owner.process(stock(10..20)).await.unwrap();
    // Thawed with a batch in flight.
    zombie.pipeline.process(stock(10..30)).await.unwrap();
    assert_eq!(units(zombie.cache.as_ref()).await, 20);
    let refused = log(&zombie)
        .iter()
        .filter(|entry| entry.contains("Fenced"))
        .count();
    assert_eq!(refused, 1, "{:?}", log(&zombie));
    // It stays quiet until Kafka assigns it the partition again.
    zombie.pipeline.process(stock(30..40)).await.unwrap();
    owner.process(stock(20..40)).await.unwrap();
    assert_eq!(units(zombie.cache.as_ref()).await, 40);
}

/// Two caches, each fed by one projection of `deposits/0`: `counters_a` in
/// cache `a`, `counters_b` in cache `b`.
fn two_cache_pipeline(dir: &Path, a: &Arc<Flaky>, b: &Arc<Flaky>, log: &Log) -> Pipeline {
    for name in ["a", "b"] {
        let definition = format!(
            "name = \"counters_{name}\"\ncache = \"{name}\"\ntopics = [\"deposits\"]\n\
             identifier = \"{{data.account}}\"\n\n[[handler]]\non = \"deposited\"\n\
             do = [{{ increment = \"n\", by_value = 1 }}]\n"
        );
        std::fs::write(dir.join(format!("counters_{name}.toml")), definition).unwrap();
    }
    let mut settings = Settings::defaults();
    settings.projections_dir = dir.to_owned();
    settings.caches = ["a", "b"]
        .into_iter()
        .map(|name| (name.to_owned(), CacheSettings::memory_default()))
        .collect();
    let definitions = load_dir(&settings, &Registry::with_builtins()).unwrap();
    let caches = [("a", a), ("b", b)]
        .into_iter()
        .map(|(name, cache)| (name.to_owned(), Arc::clone(cache) as Arc<dyn Cache>))
        .collect();
    let metrics = Metrics::new();
    Pipeline::new(Wiring {
        router: Router::new(definitions, &caches),
        envelope: Envelope::CloudEvents,
        metrics: metrics.clone(),
        retry: Retry {
            max_backoff: Duration::from_millis(20),
            metrics,
            health: Health::new(),
        },
        source: Arc::new(LoggingSource(Arc::clone(log))),
        dead_letters: None,
        group: "test".to_owned(),
        positioning: Positioning::Seek,
        catalog: None,
        bound: None,
    })
}

fn deposits(offsets: std::ops::Range<i64>) -> Batch {
    offsets
        .map(|offset| {
            let event = json!({"specversion": "1.0", "type": "deposited",
                "id": format!("d{offset}"), "source": "/t", "data": {"account": "acc-1"}});
            record("deposits", offset, &event)
        })
        .collect()
}

async fn count(cache: &Flaky, name: &str) -> i64 {
    let stored = cache.get(&format!("{name}:::acc-1")).await.unwrap();
    stored.map_or(0, |projection| projection.value()["n"].as_i64().unwrap())
}

#[tokio::test]
async fn each_cache_skips_what_it_applied_after_a_crash_between_two_commits() {
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::default();
    let a = Arc::new(Flaky::new(&log));
    let b = Arc::new(Flaky::new(&log));
    let deposits_0 = Partition::new("deposits", 0);
    let mut first = two_cache_pipeline(dir.path(), &a, &b, &log);
    first
        .deliver(Delivery::Assigned(vec![deposits_0.clone()]))
        .await
        .unwrap();
    first
        .deliver(Delivery::Sought {
            partition: deposits_0.clone(),
            offset: 0,
        })
        .await
        .unwrap();
    first.process(deposits(0..10)).await.unwrap();
    // Cache b is down while a commits 10..20; the process dies meanwhile.
    *b.failures.lock().unwrap() = 1_000;
    let crashed =
        tokio::time::timeout(Duration::from_millis(300), first.process(deposits(10..20))).await;
    assert!(crashed.is_err(), "still retrying cache b");
    drop(first);
    assert_eq!(
        (count(&a, "counters_a").await, count(&b, "counters_b").await),
        (20, 10)
    );
    *b.failures.lock().unwrap() = 0;

    let mut restarted = two_cache_pipeline(dir.path(), &a, &b, &log);
    log.lock().unwrap().clear();
    restarted
        .deliver(Delivery::Assigned(vec![deposits_0.clone()]))
        .await
        .unwrap();
    assert!(
        log.lock()
            .unwrap()
            .contains(&"seek deposits/0=10".to_owned()),
        "the lower of the two checkpoints: {:?}",
        log.lock().unwrap()
    );
    restarted
        .deliver(Delivery::Sought {
            partition: deposits_0,
            offset: 10,
        })
        .await
        .unwrap();
    restarted.process(deposits(10..25)).await.unwrap();
    assert_eq!(
        (count(&a, "counters_a").await, count(&b, "counters_b").await),
        (25, 25)
    );
}

#[tokio::test]
async fn a_partition_rolled_back_to_before_its_first_write_is_read_again_from_its_start() {
    let mut rig = broker_rig().await;
    rig.pipeline.process(stock(0..20)).await.unwrap();
    // The cache comes back from a snapshot older than the partition's first
    // write: neither its data nor its checkpoint exist.
    rig.cache.roll_back_to_empty();
    rig.log.lock().unwrap().clear();
    rig.pipeline.process(stock(20..25)).await.unwrap();
    assert!(
        log(&rig).contains(&"seek shop.inventory/0=0".to_owned()),
        "{:?}",
        log(&rig)
    );
    sought(&mut rig.pipeline, 0).await;
    rig.pipeline.process(stock(0..25)).await.unwrap();
    assert_eq!(units(rig.cache.as_ref()).await, 25);
}

/// Right after an assignment the consumer's own start (`auto.offset.reset`
/// for a group with no committed offsets) can overtake the seek to the
/// checkpoint: the records from before it are read again from the
/// checkpoint, not taken for a truncated log.
#[tokio::test]
async fn records_before_the_sought_offset_right_after_a_seek_are_sought_again() {
    let (rig, metrics, mut restarted) = restarted_after_25().await;
    sought(&mut restarted, 25).await;
    // The consumer's reset to the earliest offset won the race.
    restarted.process(stock(0..10)).await.unwrap();
    let seeks: Vec<String> = log(&rig)
        .into_iter()
        .filter(|entry| entry == "seek shop.inventory/0=25")
        .collect();
    assert_eq!(seeks.len(), 2, "sought again: {:?}", log(&rig));
    sought(&mut restarted, 25).await;
    restarted.process(stock(25..40)).await.unwrap();
    assert_eq!(units(rig.cache.as_ref()).await, 40);
    assert!(
        !metrics
            .render()
            .contains("projectionist_partition_resets_total{"),
        "not halted: {}",
        metrics.render()
    );
}

/// A log that answers every seek from before the checkpoint has lost it
/// (the topic was deleted and recreated: the broker resets us to its start):
/// after a few seeks the partition halts, nothing skipped or applied twice.
#[tokio::test]
async fn a_log_that_no_longer_holds_the_checkpoint_halts_the_partition() {
    let (rig, metrics, mut restarted) = restarted_after_25().await;
    for _ in 0..4 {
        sought(&mut restarted, 25).await;
        restarted.process(stock(0..10)).await.unwrap();
    }
    restarted.process(stock(25..40)).await.unwrap();
    assert_eq!(units(rig.cache.as_ref()).await, 25);
    assert!(
        metrics
            .render()
            .contains("projectionist_partition_resets_total{topic=\"shop.inventory\"} 1"),
        "{}",
        metrics.render()
    );
}
