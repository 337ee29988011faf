//! Rebuilds end to end, with the real broker and Redis: a projection's new
//! version is built beside the live one while events keep flowing and a
//! reader polls keys the whole time; it is promoted without a read ever
//! missing a key both versions have, every projection then equals the fold
//! of all events under the new definition, and a rollback restores the old
//! one exactly.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use support::daemon::{
    ADMIN_TOKEN, assert_same_projections, http_request, redis_projections, setup, wait_for,
};
use support::kafka::Broker;
use support::rebuild::{
    CATCH_UP, Reader, Target, assert_never_missing, cli, fold_version_two, produce, rebuild_state,
    rebuild_state_soon, settle, write_version_two,
};
use support::redis::RedisServer;
use support::shop::{ShopRecord, reference_fold, story};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_version_is_rebuilt_promoted_without_a_missing_read_and_rolled_back() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("projectionist=info")
        .with_test_writer()
        .try_init();
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let setup = setup(broker, &redis.url(0), "").await;
    let records = story(&setup.orders, &setup.inventory, 120, 12);
    let split = records.len() / 3;
    let (early, rest) = records.split_at(split);
    let (during, after) = rest.split_at(rest.len() / 2);

    // Version 1 live, with a third of the story.
    produce(broker, early).await;
    let (shutdown, daemon) = setup.spawn();
    setup.wait_caught_up(broker, CATCH_UP).await;
    assert_same_projections(
        &redis_projections(&setup.redis_url).await,
        &reference_fold(early, &setup.orders),
    );

    // Version 2 in the files: after a restart it is built beside version 1,
    // which stays live and keeps being updated.
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
    write_version_two(&setup);
    let (shutdown, daemon) = setup.spawn();
    let present: Vec<String> = redis_projections(&setup.redis_url)
        .await
        .into_keys()
        .filter(|key| key.starts_with("order_summary:::"))
        .collect();
    assert!(!present.is_empty());
    let reader = Reader::start(Target::Redis(setup.redis_url.clone()), present.clone());
    let feeding = tokio::spawn({
        let during = during.to_vec();
        async move { produce(Broker::shared(), &during).await }
    });
    wait_for("the shadow build to start", CATCH_UP, || async {
        rebuild_state_soon(&setup)["shadow"]["role"] == "candidate"
    })
    .await;
    let (status, body) = setup.admin(
        "POST",
        "/admin/projections/order_summary/rebuild/promote",
        None,
    );
    assert_eq!(status, 401, "a promotion without the token: {body}");
    // Live keeps folding version 1 while the shadow builds.
    feeding.await.unwrap();
    setup.wait_caught_up(broker, CATCH_UP).await;
    let so_far: Vec<ShopRecord> = [early, during].concat();
    assert_same_projections(
        &redis_projections(&setup.redis_url).await,
        &reference_fold(&so_far, &setup.orders),
    );
    let (_, status) = {
        let output = cli(&setup, &["status"]);
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    assert!(
        status.contains("version 1 live, version 2 rebuilding"),
        "{status}"
    );
    wait_for("the rebuild gauges", Duration::from_secs(20), || async {
        let metrics = setup.http("/metrics").1;
        metrics.contains(
            "projectionist_rebuild_version{projection=\"order_summary\",role=\"shadow\"} 2",
        ) && metrics
            .contains("projectionist_rebuild_remaining_records{projection=\"order_summary\"}")
    })
    .await;
    let watched = cli(&setup, &["rebuild", "order_summary", "watch"]);
    let shown = String::from_utf8_lossy(&watched.stdout);
    assert!(
        watched.status.success(),
        "{shown} {}",
        String::from_utf8_lossy(&watched.stderr)
    );
    assert!(shown.contains("caught up with the live version"), "{shown}");

    // Promoted while events flow.
    let feeding = tokio::spawn({
        let after = after.to_vec();
        async move { produce(Broker::shared(), &after).await }
    });
    let promoted = cli(&setup, &["rebuild", "order_summary", "promote"]);
    assert!(
        promoted.status.success(),
        "{} {}",
        String::from_utf8_lossy(&promoted.stdout),
        String::from_utf8_lossy(&promoted.stderr)
    );
    feeding.await.unwrap();
    setup.wait_caught_up(broker, CATCH_UP).await;
    let everything: Vec<ShopRecord> = records.clone();
    let new_version = fold_version_two(&everything, &setup.orders);
    settle(|| redis_projections(&setup.redis_url), &new_version).await;
    assert_same_projections(&redis_projections(&setup.redis_url).await, &new_version);
    assert_never_missing(reader, &present, &new_version, 100).await;
    let state = rebuild_state(&setup);
    assert_eq!(state["live_version"], 2, "{state}");
    assert_eq!(state["shadow"]["role"], "previous", "{state}");

    // Roll back: version 1 kept folding beside the new one, so it is exact.
    let more = story(&setup.orders, &setup.inventory, 20, 4);
    produce(broker, &more).await;
    let rolled = cli(&setup, &["rebuild", "order_summary", "rollback"]);
    assert!(
        rolled.status.success(),
        "{} {}",
        String::from_utf8_lossy(&rolled.stdout),
        String::from_utf8_lossy(&rolled.stderr)
    );
    setup.wait_caught_up(broker, CATCH_UP).await;
    let all: Vec<ShopRecord> = [everything.as_slice(), more.as_slice()].concat();
    let old_version = reference_fold(&all, &setup.orders);
    settle(|| redis_projections(&setup.redis_url), &old_version).await;
    assert_same_projections(&redis_projections(&setup.redis_url).await, &old_version);
    assert_eq!(rebuild_state(&setup)["live_version"], 1);

    // Collected: no rollback any more, and no shadow key left.
    let before = rebuild_state(&setup);
    let collected = cli(&setup, &["rebuild", "order_summary", "collect"]);
    assert!(
        collected.status.success(),
        "{}",
        String::from_utf8_lossy(&collected.stderr)
    );
    eprintln!(
        "before collect {before}\ncollect said {}",
        String::from_utf8_lossy(&collected.stdout)
    );
    let (status, _) = http_request(
        setup.admin_port,
        "POST",
        "/admin/projections/order_summary/rebuild/rollback",
        Some(ADMIN_TOKEN),
    );
    assert_eq!(status, 409, "nothing to roll back to after collecting");
    let client = redis::Client::open(setup.redis_url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let shadows: Vec<String> = redis::cmd("KEYS")
        .arg("@projectionist/shadow/*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(shadows.is_empty(), "{shadows:?}");
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
}

/// Rebuilding the live version from a time keeps only what the records
/// since then make: the projections only older records made are retired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_from_a_time_keeps_only_what_later_records_make() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let setup = setup(broker, &redis.url(0), "").await;
    let older = story(&setup.orders, &setup.inventory, 30, 6);
    produce(broker, &older).await;
    let (shutdown, daemon) = setup.spawn();
    setup.wait_caught_up(broker, CATCH_UP).await;
    // Record timestamps are the produce times: a second apart on each side.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let from = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let newer: Vec<ShopRecord> = story(&setup.orders, &setup.inventory, 60, 6)
        .into_iter()
        .filter(|record| {
            let order = record.event["data"]["order_id"].as_str().unwrap_or("");
            order
                .strip_prefix("ord-")
                .and_then(|number| number.parse::<usize>().ok())
                .is_some_and(|number| number >= 30)
        })
        .collect();
    assert!(!newer.is_empty());
    produce(broker, &newer).await;
    setup.wait_caught_up(broker, CATCH_UP).await;

    let time = from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let started = cli(
        &setup,
        &["rebuild", "order_summary", "start", "--from", &time],
    );
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let watched = cli(&setup, &["rebuild", "order_summary", "watch"]);
    assert!(
        watched.status.success(),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    let promoted = cli(&setup, &["rebuild", "order_summary", "promote"]);
    assert!(
        promoted.status.success(),
        "{}",
        String::from_utf8_lossy(&promoted.stderr)
    );

    let all: Vec<ShopRecord> = [older.as_slice(), newer.as_slice()].concat();
    let since = reference_fold(&newer, &setup.orders);
    let mut expected: BTreeMap<String, Value> = reference_fold(&all, &setup.orders)
        .into_iter()
        .filter(|(key, _)| !key.starts_with("order_summary:::"))
        .collect();
    expected.extend(
        since
            .into_iter()
            .filter(|(key, _)| key.starts_with("order_summary:::")),
    );
    settle(|| redis_projections(&setup.redis_url), &expected).await;
    assert_same_projections(&redis_projections(&setup.redis_url).await, &expected);
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
}
