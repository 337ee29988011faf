//! Rebuilds end to end, with the real broker and Redis: a projection's new
//! version is built beside the live one while events keep flowing and a
//! reader polls keys the whole time; it is promoted without a read ever
//! missing a key both versions have, every projection then equals the fold
//! of all events under the new definition, and a rollback restores the old
//! one exactly.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use support::daemon::{
    ADMIN_TOKEN, Setup, assert_same_projections, http_request, redis_projections, setup, wait_for,
};
use support::kafka::Broker;
use support::redis::RedisServer;
use support::shop::{ShopRecord, reference_fold, story};

const CATCH_UP: Duration = Duration::from_secs(90);
const STRUCTURED: [(&str, &[u8]); 1] = [("content-type", b"application/cloudevents+json")];

async fn produce(broker: &Broker, records: &[ShopRecord]) {
    for record in records {
        broker
            .produce(
                &record.topic,
                &record.key,
                &record.payload(),
                &STRUCTURED,
                None,
            )
            .await;
    }
}

/// Version 2 of `order_summary`: every order carries `schema = 2`.
fn write_version_two(setup: &Setup) {
    let file = setup.dir.path().join("projections/order_summary.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text
        .replacen(
            "name = \"order_summary\"\n",
            "name = \"order_summary\"\nversion = 2\n",
            1,
        )
        .replace("do = [\n", "do = [\n  { set = \"schema\", value = 2 },\n");
    assert!(text.contains("version = 2") && text.matches("schema").count() >= 5);
    std::fs::write(file, text).unwrap();
}

/// The fold of `records` under version 2: version 1's, with the schema.
fn fold_version_two(records: &[ShopRecord], orders: &str) -> BTreeMap<String, Value> {
    let mut folded = reference_fold(records, orders);
    for (key, value) in &mut folded {
        if key.starts_with("order_summary:::") {
            value["schema"] = Value::from(2);
        }
    }
    folded
}

/// Polls `keys` in Redis until stopped; counts each key found missing.
struct Reader {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<BTreeMap<String, usize>>,
}

impl Reader {
    fn start(url: &str, keys: Vec<String>) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicUsize::new(0));
        let client = redis::Client::open(url).unwrap();
        let task = tokio::spawn({
            let (stop, reads) = (stop.clone(), reads.clone());
            async move {
                let mut connection = client.get_multiplexed_async_connection().await.unwrap();
                let mut missing: BTreeMap<String, usize> = BTreeMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let values: Vec<Option<String>> = redis::cmd("MGET")
                        .arg(&keys)
                        .query_async(&mut connection)
                        .await
                        .unwrap();
                    for (key, value) in keys.iter().zip(values) {
                        if value.is_none() {
                            *missing.entry(key.clone()).or_default() += 1;
                        }
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                missing
            }
        });
        Reader { stop, reads, task }
    }

    async fn stop(self) -> (usize, BTreeMap<String, usize>) {
        self.stop.store(true, Ordering::Relaxed);
        let missing = self.task.await.unwrap();
        (self.reads.load(Ordering::Relaxed), missing)
    }
}

/// Wait (a while) for Redis to hold `expected`; the caller compares, so a
/// difference is named.
async fn settle(setup: &Setup, expected: &BTreeMap<String, Value>) {
    let deadline = std::time::Instant::now() + CATCH_UP;
    while std::time::Instant::now() < deadline {
        if redis_projections(&setup.redis_url).await == *expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn rebuild_state(setup: &Setup) -> Value {
    let (status, body) = setup.admin("GET", "/admin/projections/order_summary/rebuild", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// [`rebuild_state`], or `Null` while the daemon is not answering yet.
fn rebuild_state_soon(setup: &Setup) -> Value {
    let (status, body) = setup.admin("GET", "/admin/projections/order_summary/rebuild", None);
    match status {
        200 => serde_json::from_str(&body).unwrap(),
        _ => Value::Null,
    }
}

fn cli(setup: &Setup, args: &[&str]) -> std::process::Output {
    let admin = format!("http://127.0.0.1:{}", setup.admin_port);
    std::process::Command::new(env!("CARGO_BIN_EXE_projectionist"))
        .args(args)
        .args(["--admin", &admin])
        .env("PROJECTIONIST_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("the projectionist binary runs")
}

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
    let reader = Reader::start(&setup.redis_url, present.clone());
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
    settle(&setup, &new_version).await;
    assert_same_projections(&redis_projections(&setup.redis_url).await, &new_version);
    let (reads, missing) = reader.stop().await;
    // A key both versions have was never missing; a key an event removed
    // (a cancelled order) may be.
    let in_both: BTreeSet<&String> = present
        .iter()
        .filter(|key| new_version.contains_key(*key))
        .collect();
    let missed: Vec<_> = missing
        .iter()
        .filter(|(key, _)| in_both.contains(key))
        .collect();
    assert!(reads > 100, "the reader read {reads} times");
    assert!(
        missed.is_empty(),
        "reads missed keys both versions have: {missed:?}"
    );
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
    settle(&setup, &old_version).await;
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
    settle(&setup, &expected).await;
    assert_same_projections(&redis_projections(&setup.redis_url).await, &expected);
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
}
