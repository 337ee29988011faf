//! The pipeline's delivery rules, in process and with time under control, on
//! the rig in `pipeline/rig.rs`; the exactly-once rules (positions, claims,
//! commits) are in `pipeline/exactly_once.rs`.

#[path = "pipeline/exactly_once.rs"]
mod exactly_once;
#[path = "pipeline/rig.rs"]
mod harness;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use projectionist::cache::{Partition, Projection, WriteOp};
use projectionist::pipeline::Positioning;
use projectionist::source::Delivery;

use harness::*;

#[tokio::test]
async fn batches_fold_the_story_into_the_expected_projections() {
    let mut rig = rig(0, 0).await;
    for batch in story_batches(5) {
        rig.pipeline.process(batch).await.unwrap();
    }
    assert_eq!(contents(rig.cache.as_ref()).await, expected());
}

#[tokio::test]
async fn offsets_are_stored_only_after_the_writes_they_cover_land() {
    let mut rig = rig(3, 0).await;
    let batches = story_batches(8);
    let batch_count = batches.len();
    for batch in batches {
        rig.pipeline.process(batch).await.unwrap();
    }
    let log = rig.log.lock().unwrap().clone();
    assert_eq!(
        &log[..3],
        ["write refused", "write refused", "write refused"],
        "{log:#?}"
    );
    // Every store follows a landed write made since the previous store.
    let mut written_since_store = false;
    for entry in &log {
        if entry.starts_with("write ") && entry != "write refused" {
            written_since_store = true;
        } else if entry.starts_with("store ") {
            assert!(
                written_since_store,
                "offsets stored before their writes: {log:#?}"
            );
            written_since_store = false;
        }
    }
    assert_eq!(
        log.iter().filter(|e| e.starts_with("store ")).count(),
        batch_count
    );
    assert_eq!(
        contents(rig.cache.as_ref()).await,
        expected(),
        "retries lost nothing"
    );
}

#[tokio::test]
async fn several_events_for_one_key_in_a_batch_become_one_write() {
    let mut rig = rig(0, 0).await;
    let all: Batch = story_batches(1000).concat();
    let events = all.len();
    rig.pipeline.process(all).await.unwrap();
    let log = rig.log.lock().unwrap().clone();
    let writes: usize = log[0].strip_prefix("write ").unwrap().parse().unwrap();
    assert_eq!(
        writes,
        expected().len() + 1,
        "one write per touched key (+1 deleted order) for {events} events: {log:?}"
    );
    assert_eq!(
        log[1], "store shop.inventory/0=20,shop.orders/0=23",
        "offsets: last record of each partition + 1"
    );
}

#[tokio::test]
async fn permanent_failures_are_dead_lettered_before_the_offsets_move() {
    let mut rig = rig(0, 2).await;
    rig.pipeline.process(bad_records()).await.unwrap();
    let log = rig.log.lock().unwrap().clone();
    // Letters go out before the commit that passes over their records: a
    // crash in between sends them again rather than losing them.
    assert_eq!(
        log,
        [
            "dead letters refused",
            "dead letters refused",
            "dead letters 2",
            "dead letters 1",
            "write 1",
            "store shop.inventory/1=5"
        ]
    );
    let letters = rig.dead_letters.letters.lock().unwrap().clone();
    let reasons: Vec<_> = letters
        .iter()
        .map(|l| (l.record.position.offset, l.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (0, "invalid_json"),
            (1, "missing_identifier"),
            (3, "projector_error")
        ]
    );
    assert_eq!(letters[1].projection.as_deref(), Some("product_stock"));
    assert_eq!(
        contents(rig.cache.as_ref()).await,
        BTreeMap::from([(
            "product_stock:::sku-ok".to_owned(),
            json!({"sku": "sku-ok", "available": 2})
        )])
    );
    let metrics = rig.metrics.render();
    assert!(
        metrics.contains(
            "projectionist_events_skipped_total{projection=\"none\",reason=\"unrouted_type\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "projectionist_events_failed_total{projection=\"none\",reason=\"invalid_json\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn records_of_a_revoked_partition_are_dropped_unapplied() {
    let mut rig = rig_reading(0, 0, Positioning::Seek).await;
    let partition = Partition::new("shop.inventory", 1);
    let (done, _finished) = std::sync::mpsc::sync_channel(1);
    rig.pipeline
        .deliver(Delivery::Revoked {
            partitions: vec![partition.clone()],
            done,
        })
        .await
        .unwrap();
    rig.pipeline.process(bad_records()).await.unwrap();
    assert!(
        rig.log.lock().unwrap().is_empty(),
        "nothing written, nothing stored"
    );
    // Assigned again: the records fetched before the seek to the checkpoint
    // still do not apply.
    rig.pipeline
        .deliver(Delivery::Assigned(vec![partition]))
        .await
        .unwrap();
    rig.pipeline.process(bad_records()).await.unwrap();
    // Sought to the checkpoint, which Kafka's copy takes at once.
    assert_eq!(
        *rig.log.lock().unwrap(),
        ["seek shop.inventory/1=0", "store shop.inventory/1=0"]
    );
    assert!(contents(rig.cache.as_ref()).await.is_empty());
}

/// A writer collecting log output, to read what the pipeline logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_events_log_line_carries_its_traceparent_and_position() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut rig = rig(0, 0).await;
            let mut batch = bad_records();
            batch.truncate(1);
            batch[0]
                .headers
                .push(("traceparent".into(), Some(traceparent.as_bytes().to_vec())));
            rig.pipeline.process(batch).await.unwrap();
        });
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|line| line.contains("event failed permanently"))
        .unwrap_or_else(|| panic!("no failure logged: {logs}"));
    assert!(line.contains(traceparent), "{line}");
    assert!(
        line.contains("topic=shop.inventory") && line.contains("offset=0"),
        "{line}"
    );
    assert!(
        line.contains("reason=\"invalid_json\"") || line.contains("reason=invalid_json"),
        "{line}"
    );
}

#[tokio::test]
async fn a_key_changed_by_another_writer_meanwhile_is_folded_again_not_overwritten() {
    let mut rig = rig(0, 0).await;
    // Another replica sets sku-mug's stock between our load and our write.
    let theirs = Projection::new(
        "product_stock",
        "sku-mug",
        json!({"sku": "sku-mug", "available": 1000}),
    )
    .unwrap();
    *rig.cache.interference.lock().unwrap() = Some(WriteOp::Upsert {
        projection: theirs,
        expiry: projectionist::cache::Expiry::Never,
    });
    let all: Batch = story_batches(1000).concat();
    rig.pipeline.process(all).await.unwrap();
    let log = rig.log.lock().unwrap().clone();
    assert_eq!(log[0], "write conflicted", "{log:?}");
    assert!(log[1].starts_with("write "), "{log:?}");
    let mut want = expected();
    // The story's net effect on sku-mug, applied on top of the other write.
    let story_mug = want["product_stock:::sku-mug"]["available"]
        .as_i64()
        .unwrap();
    want.insert(
        "product_stock:::sku-mug".into(),
        json!({"sku": "sku-mug", "available": 1000 + story_mug}),
    );
    assert_eq!(contents(rig.cache.as_ref()).await, want);
    let metrics = rig.metrics.render();
    assert!(
        metrics.contains("projectionist_retries_total{component=\"conflict\"} 1"),
        "{metrics}"
    );
}

/// Fold the story while another replica's write makes the first attempt
/// conflict, with `product_stock:::sku-mug` unreadable from the start or only
/// from the retry on; its three events must be dead-lettered, each once.
async fn corrupt_key_across_a_conflict(corrupt_from_the_start: bool) {
    let mut rig = rig(0, 0).await;
    let corrupt = Some("product_stock:::sku-mug".to_owned());
    if corrupt_from_the_start {
        *rig.cache.corrupt.lock().unwrap() = corrupt;
    } else {
        *rig.cache.corrupted_by_interference.lock().unwrap() = corrupt;
    }
    let theirs = Projection::new(
        "product_stock",
        "sku-tee",
        json!({"sku": "sku-tee", "available": 1000}),
    )
    .unwrap();
    *rig.cache.interference.lock().unwrap() = Some(WriteOp::Upsert {
        projection: theirs,
        expiry: projectionist::cache::Expiry::Never,
    });
    let all: Batch = story_batches(1000).concat();
    rig.pipeline.process(all).await.unwrap();
    let log = rig.log.lock().unwrap().clone();
    let writes: Vec<&String> = log.iter().filter(|e| e.starts_with("write")).collect();
    assert_eq!(writes[0], "write conflicted", "{log:?}");
    assert!(writes[1].starts_with("write "), "{log:?}");
    let letters = rig.dead_letters.letters.lock().unwrap().clone();
    let failed: Vec<_> = letters
        .iter()
        .map(|l| (l.record.position.offset, l.projection.as_deref(), l.reason))
        .collect();
    assert_eq!(
        failed,
        [
            (0, Some("product_stock"), "corrupt_state"),
            (4, Some("product_stock"), "corrupt_state"),
            (8, Some("product_stock"), "corrupt_state"),
        ]
    );
}

#[tokio::test]
async fn events_on_a_corrupt_key_are_dead_lettered_once_even_across_a_conflict() {
    corrupt_key_across_a_conflict(true).await;
}

#[tokio::test]
async fn a_key_that_turns_corrupt_before_a_conflict_retry_is_dead_lettered_not_dropped() {
    corrupt_key_across_a_conflict(false).await;
}

#[tokio::test]
async fn each_partitions_lag_is_the_age_of_its_newest_record_with_a_timestamp() {
    let mut rig = rig(0, 0).await;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let hours_ago = |hours: i64| Some(now_ms - hours * 3_600_000);
    let mut records = stock(0..6);
    // Partition 0: offsets 0..3, the newest with a timestamp is offset 1
    // (2 h old), as offset 2 has none. Partition 1: offsets 3..6, newest 5.
    for (record, (partition, timestamp)) in records.iter_mut().zip([
        (0, hours_ago(5)),
        (0, hours_ago(2)),
        (0, None),
        (1, hours_ago(9)),
        (1, hours_ago(7)),
        (1, hours_ago(3)),
    ]) {
        record.position.partition = partition;
        record.timestamp_ms = timestamp;
    }
    for (index, record) in records.iter_mut().enumerate().skip(3) {
        record.position.offset = index as i64 - 3;
    }
    rig.pipeline.process(records).await.unwrap();
    assert_eq!(units(rig.cache.as_ref()).await, 6, "every record applied");
    for (partition, hours) in [("0", 2.0), ("1", 3.0)] {
        let lag = rig
            .metrics
            .consumer_lag_seconds
            .with_label_values(&["shop.inventory", partition])
            .get();
        assert!(
            (lag - hours * 3600.0).abs() < 60.0,
            "partition {partition}: lag {lag} s, expected about {hours} h"
        );
    }
    // The status board ages each partition by the same record.
    let topics = ["shop.inventory".to_owned()];
    let statuses = rig.health.progress().partitions("default", &topics);
    let ages: Vec<(i32, f64)> = statuses
        .iter()
        .filter_map(|status| Some((status.partition, status.lag_seconds? / 3600.0)))
        .collect();
    assert_eq!(ages.len(), 2, "{ages:?}");
    for ((partition, age), hours) in ages.iter().zip([2.0, 3.0]) {
        assert!((age - hours).abs() < 0.1, "partition {partition}: {age} h");
    }
}
