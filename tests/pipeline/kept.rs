//! Written states kept between chunks: a key written by one chunk is folded
//! on by the next without being read back, and the commit's compare still
//! catches every change made behind the pipeline's back.

use serde_json::json;

use projectionist::cache::{Expiry, Projection, WriteOp};
use projectionist::source::Delivery;

use super::harness::*;

const SKU_X: &str = "product_stock:::sku-x";

fn theirs(available: i64) -> WriteOp {
    WriteOp::Upsert {
        projection: Projection::new(
            "product_stock",
            "sku-x",
            json!({"sku": "sku-x", "available": available}),
        )
        .unwrap(),
        expiry: Expiry::Never,
    }
}

#[tokio::test]
async fn a_written_state_is_folded_on_without_reading_it_back() {
    let mut rig = rig(0, 0).await;
    rig.pipeline.process(stock(0..3)).await.unwrap();
    assert_eq!(rig.cache.took_reads(), [SKU_X]);
    rig.pipeline.process(stock(3..5)).await.unwrap();
    rig.pipeline.process(stock(5..6)).await.unwrap();
    assert_eq!(rig.cache.took_reads(), Vec::<String>::new());
    assert_eq!(units(rig.cache.as_ref()).await, 6);
}

#[tokio::test]
async fn a_kept_state_changed_behind_our_back_is_read_again_and_no_update_is_lost() {
    let mut rig = rig(0, 0).await;
    rig.pipeline.process(stock(0..2)).await.unwrap();
    rig.cache.write_directly(theirs(100)).await;
    rig.cache.took_reads();
    rig.log.lock().unwrap().clear();
    rig.pipeline.process(stock(2..3)).await.unwrap();
    // Folded from the kept state (2 units), refused, read again, folded.
    assert_eq!(units(rig.cache.as_ref()).await, 101);
    let log = rig.log.lock().unwrap().clone();
    let writes: Vec<&String> = log.iter().filter(|e| e.starts_with("write")).collect();
    assert_eq!(writes, ["write conflicted", "write 1"], "{log:?}");
    assert_eq!(rig.cache.took_reads(), [SKU_X]);
    // Not a race between writers: retried at once, not counted as one.
    let metrics = rig.metrics.render();
    assert!(!metrics.contains("component=\"conflict\""), "{metrics}");
    // Written elsewhere too: read every time for a while, so another
    // writer's change costs no refused commit.
    rig.cache.write_directly(theirs(200)).await;
    rig.log.lock().unwrap().clear();
    rig.pipeline.process(stock(3..4)).await.unwrap();
    assert_eq!(units(rig.cache.as_ref()).await, 201);
    assert_eq!(rig.cache.took_reads(), [SKU_X]);
    let log = rig.log.lock().unwrap().clone();
    assert!(!log.iter().any(|e| e == "write conflicted"), "{log:?}");
}

#[tokio::test]
async fn a_rebalance_drops_what_was_kept() {
    let mut rig = rig(0, 0).await;
    rig.pipeline.process(stock(0..1)).await.unwrap();
    rig.cache.took_reads();
    let (done, _) = std::sync::mpsc::sync_channel(1);
    let partitions = assigned_partitions();
    rig.pipeline
        .deliver(Delivery::Revoked {
            partitions: partitions.clone(),
            done,
        })
        .await
        .unwrap();
    rig.pipeline
        .deliver(Delivery::Assigned(partitions))
        .await
        .unwrap();
    rig.pipeline.process(stock(1..2)).await.unwrap();
    assert_eq!(rig.cache.took_reads(), [SKU_X]);
    assert_eq!(units(rig.cache.as_ref()).await, 2);
}
