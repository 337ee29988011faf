//! A rebuild on a Redis Cluster: the shadow keys sit in their live keys'
//! slots, the promotion fences every slot and rotates slot by slot while
//! events flow and a reader polls keys, and the folds are exact after the
//! promotion and after the rollback.

mod support;

use std::collections::BTreeMap;

use redis::Commands;
use serde_json::Value;

use support::cluster::RedisCluster;
use support::daemon::{assert_same_projections, setup, wait_for};
use support::kafka::Broker;
use support::rebuild::{
    CATCH_UP, Reader, Target, assert_never_missing, fold_version_two, produce, rebuild_state_soon,
    settle, succeed, write_version_two,
};
use support::shop::{normalize, reference_fold, story};

/// Every projection on every primary (each key lives on exactly one).
async fn cluster_projections(cluster: &RedisCluster) -> BTreeMap<String, Value> {
    tokio::task::block_in_place(|| {
        let mut projections = BTreeMap::new();
        for port in cluster.primaries() {
            let mut node = cluster.node(port);
            let keys: Vec<String> = node
                .scan_match("*:::*")
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for key in keys {
                if key.starts_with("@projectionist/") {
                    continue;
                }
                let text: Option<String> = node.get(&key).unwrap();
                if let Some(text) = text {
                    projections.insert(key, normalize(serde_json::from_str(&text).unwrap()));
                }
            }
        }
        projections
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_version_is_promoted_and_rolled_back_on_a_cluster() {
    let broker = Broker::shared();
    let cluster = RedisCluster::start();
    let setup = setup(broker, "redis://unused", "").await;
    let config = std::fs::read_to_string(&setup.config).unwrap().replace(
        "provider = \"redis\"\nURI = \"redis://unused\"",
        &format!("provider = \"redis_cluster\"\nnodes = {:?}", cluster.urls()),
    );
    assert!(config.contains("redis_cluster"));
    std::fs::write(&setup.config, config).unwrap();
    let records = story(&setup.orders, &setup.inventory, 90, 10);
    let (early, later) = records.split_at(records.len() / 2);

    produce(broker, early).await;
    let (shutdown, daemon) = setup.spawn();
    setup.wait_caught_up(broker, CATCH_UP).await;
    let old = reference_fold(early, &setup.orders);
    settle(|| cluster_projections(&cluster), &old).await;
    assert_same_projections(&cluster_projections(&cluster).await, &old);

    shutdown.cancel();
    daemon.await.unwrap().unwrap();
    write_version_two(&setup);
    let (shutdown, daemon) = setup.spawn();
    let present: Vec<String> = old
        .keys()
        .filter(|key| key.starts_with("order_summary:::"))
        .cloned()
        .collect();
    let reader = Reader::start(Target::Cluster(cluster.urls()), present.clone());
    wait_for("the shadow build to start", CATCH_UP, || async {
        rebuild_state_soon(&setup)["shadow"]["role"] == "candidate"
    })
    .await;
    succeed(&setup, &["rebuild", "order_summary", "watch"]);
    let feeding = tokio::spawn({
        let later = later.to_vec();
        async move { produce(Broker::shared(), &later).await }
    });
    succeed(&setup, &["rebuild", "order_summary", "promote"]);
    feeding.await.unwrap();
    setup.wait_caught_up(broker, CATCH_UP).await;
    let new_version = fold_version_two(&records, &setup.orders);
    settle(|| cluster_projections(&cluster), &new_version).await;
    assert_same_projections(&cluster_projections(&cluster).await, &new_version);
    assert_never_missing(reader, &present, &new_version, 20).await;

    succeed(&setup, &["rebuild", "order_summary", "rollback"]);
    let old = reference_fold(&records, &setup.orders);
    settle(|| cluster_projections(&cluster), &old).await;
    assert_same_projections(&cluster_projections(&cluster).await, &old);
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
}
