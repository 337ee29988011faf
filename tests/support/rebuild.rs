//! Rebuild tests' shared steps: version 2 of `order_summary` and its fold,
//! a reader that polls keys the whole time, and the CLI and admin API.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::daemon::{ADMIN_TOKEN, Setup};
use super::kafka::Broker;
use super::shop::{ShopRecord, reference_fold};

pub const CATCH_UP: Duration = Duration::from_secs(90);

/// Produce `records` (the shop's structured CloudEvents).
pub async fn produce(broker: &Broker, records: &[ShopRecord]) {
    super::shop::produce(broker, records).await;
}

/// Version 2 of `order_summary`: every order carries `schema = 2`.
pub fn write_version_two(setup: &Setup) {
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
pub fn fold_version_two(records: &[ShopRecord], orders: &str) -> BTreeMap<String, Value> {
    let mut folded = reference_fold(records, orders);
    for (key, value) in &mut folded {
        if key.starts_with("order_summary:::") {
            value["schema"] = Value::from(2);
        }
    }
    folded
}

/// Where a reader reads: one Redis, or a cluster through its client.
pub enum Target {
    Redis(String),
    Cluster(Vec<String>),
}

/// Polls `keys` until stopped; counts each key found missing.
pub struct Reader {
    stop: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<BTreeMap<String, usize>>,
}

impl Reader {
    pub fn start(target: Target, keys: Vec<String>) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (stop, reads) = (stop.clone(), reads.clone());
            async move {
                let mut missing: BTreeMap<String, usize> = BTreeMap::new();
                let mut read = Values::open(target).await;
                while !stop.load(Ordering::Relaxed) {
                    let values = read.get(&keys).await;
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

    /// How many rounds it read, and per key how often it found it missing.
    pub async fn stop(self) -> (usize, BTreeMap<String, usize>) {
        self.stop.store(true, Ordering::Relaxed);
        let missing = self.task.await.unwrap();
        (self.reads.load(Ordering::Relaxed), missing)
    }
}

enum Values {
    Redis(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Values {
    async fn open(target: Target) -> Values {
        match target {
            Target::Redis(url) => Values::Redis(
                redis::Client::open(url)
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap(),
            ),
            Target::Cluster(urls) => Values::Cluster(
                redis::cluster::ClusterClient::new(urls)
                    .unwrap()
                    .get_async_connection()
                    .await
                    .unwrap(),
            ),
        }
    }

    async fn get(&mut self, keys: &[String]) -> Vec<Option<String>> {
        match self {
            Values::Redis(connection) => redis::cmd("MGET")
                .arg(keys)
                .query_async(connection)
                .await
                .unwrap(),
            // One slot per key: a multi-key read would cross slots.
            Values::Cluster(connection) => {
                let mut values = Vec::with_capacity(keys.len());
                for key in keys {
                    values.push(
                        redis::cmd("GET")
                            .arg(key)
                            .query_async(connection)
                            .await
                            .unwrap(),
                    );
                }
                values
            }
        }
    }
}

/// Wait (a while) for `read` to give `expected`; the caller compares, so a
/// difference is named.
pub async fn settle<F, Fut>(read: F, expected: &BTreeMap<String, Value>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = BTreeMap<String, Value>>,
{
    let deadline = std::time::Instant::now() + CATCH_UP;
    while std::time::Instant::now() < deadline {
        if read().await == *expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn rebuild_state(setup: &Setup) -> Value {
    let (status, body) = setup.admin("GET", "/admin/projections/order_summary/rebuild", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// [`rebuild_state`], or `Null` while the daemon is not answering yet.
pub fn rebuild_state_soon(setup: &Setup) -> Value {
    let (status, body) = setup.admin("GET", "/admin/projections/order_summary/rebuild", None);
    match status {
        200 => serde_json::from_str(&body).unwrap(),
        _ => Value::Null,
    }
}

/// `projectionist ARGS --admin <this daemon>`, with the token.
pub fn cli(setup: &Setup, args: &[&str]) -> std::process::Output {
    let admin = format!("http://127.0.0.1:{}", setup.admin_port);
    std::process::Command::new(env!("CARGO_BIN_EXE_projectionist"))
        .args(args)
        .args(["--admin", &admin])
        .env("PROJECTIONIST_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("the projectionist binary runs")
}

/// The CLI ran and succeeded, or the test fails with what it said.
pub fn succeed(setup: &Setup, args: &[&str]) -> String {
    let output = cli(setup, args);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "projectionist {args:?}: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A key both versions have was never missing from the reader's view; a key
/// an event removed (a cancelled order) may have been.
pub async fn assert_never_missing(
    reader: Reader,
    present: &[String],
    new_version: &BTreeMap<String, Value>,
    least_reads: usize,
) {
    let (reads, missing) = reader.stop().await;
    let missed: Vec<_> = missing
        .iter()
        .filter(|(key, _)| present.contains(key) && new_version.contains_key(*key))
        .collect();
    assert!(reads > least_reads, "the reader read {reads} times");
    assert!(
        missed.is_empty(),
        "reads missed keys both versions have: {missed:?}"
    );
}
