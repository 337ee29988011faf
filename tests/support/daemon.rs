//! Running the daemon under test against a real broker and Redis: a config and
//! projection folder of its own (fresh topics and group), in-process or as the
//! real binary, and the probes tests make (committed offsets, Redis contents).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::kafka::{Broker, CLIENT_SETTINGS, unique};
use super::shop::normalize;

/// A daemon's configuration in a folder of its own.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub orders: String,
    pub inventory: String,
    pub group: String,
    pub dead_letters: String,
    pub http_port: u16,
    /// The admin API's port; its mutations take [`ADMIN_TOKEN`].
    pub admin_port: u16,
    pub redis_url: String,
}

/// The bearer token of every test daemon's admin API.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Write a config pointing at `broker` and `redis_url`, with the shipped
/// projection definitions retargeted at fresh topics, and create the topics.
pub async fn setup(broker: &Broker, redis_url: &str, pipeline: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let orders = unique("orders");
    let inventory = unique("inventory");
    let group = unique("group");
    let dead_letters = unique("dead-letters");
    for topic in [&orders, &inventory, &dead_letters] {
        broker.create_topic(topic, 4).await;
    }
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("projections");
    let projections = dir.path().join("projections");
    std::fs::create_dir(&projections).unwrap();
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace("\"shop.orders\"", &format!("{orders:?}"))
                .replace("\"shop.inventory\"", &format!("{inventory:?}"));
            std::fs::write(projections.join(path.file_name().unwrap()), text).unwrap();
        }
    }
    let http_port = super::redis::free_port();
    let admin_port = super::redis::free_port();
    let properties: String = CLIENT_SETTINGS
        .iter()
        .map(|(name, value)| format!("{name:?} = {value:?}\n"))
        .collect();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
dead_letter_topic = "{dead_letters}"

[kafka.properties]
{properties}"session.timeout.ms" = "6000"

[caches.default]
provider = "redis"
URI = "{redis_url}"
TTL = 300

[server]
listen = "127.0.0.1:{http_port}"

[admin]
listen = "127.0.0.1:{admin_port}"
token = "{ADMIN_TOKEN}"

[pipeline]
batch_timeout_ms = 20
max_backoff_ms = 500
{pipeline}
"#,
            brokers = broker.bootstrap(),
        ),
    )
    .unwrap();
    Setup {
        dir,
        config,
        orders,
        inventory,
        group,
        dead_letters,
        http_port,
        admin_port,
        redis_url: redis_url.to_owned(),
    }
}

impl Setup {
    /// Run the daemon in this process until the returned token is cancelled.
    pub fn spawn(&self) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
        spawn_in_process(&self.config)
    }

    /// Run the real binary (`projectionist run --config ...`); it is killed when
    /// the handle is dropped, so a failing test leaves no daemon behind.
    pub fn spawn_binary(&self) -> BinaryDaemon {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_projectionist"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info,rdkafka=warn")
            .spawn()
            .expect("the projectionist binary runs");
        BinaryDaemon(child)
    }

    pub fn http(&self, path: &str) -> (u16, String) {
        http_get(self.http_port, path)
    }

    /// A second replica of this daemon: same group, topics and Redis, HTTP
    /// and admin API on ports of its own. Its config, HTTP and admin ports.
    pub fn second_member(&self) -> (PathBuf, u16, u16) {
        let http_port = super::redis::free_port();
        let admin_port = super::redis::free_port();
        let text = std::fs::read_to_string(&self.config)
            .unwrap()
            .replace(
                &format!("127.0.0.1:{}", self.http_port),
                &format!("127.0.0.1:{http_port}"),
            )
            .replace(
                &format!("127.0.0.1:{}", self.admin_port),
                &format!("127.0.0.1:{admin_port}"),
            );
        let config = self.dir.path().join("second.toml");
        std::fs::write(&config, text).unwrap();
        (config, http_port, admin_port)
    }

    /// A request to the admin API, with `token` as its bearer token if any.
    pub fn admin(&self, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        http_request(self.admin_port, method, path, token)
    }

    /// Committed offsets of the group on both topics, summed.
    pub async fn committed(&self, broker: &Broker) -> i64 {
        self.committed_by(broker, &self.group).await
    }

    /// Committed offsets of `group` on both topics, summed (another daemon
    /// reading the same topics under a group of its own).
    pub async fn committed_by(&self, broker: &Broker, group: &str) -> i64 {
        let mut total = 0;
        for topic in [&self.orders, &self.inventory] {
            total += broker
                .committed_offsets(group, topic)
                .await
                .values()
                .map(|o| (*o).max(0))
                .sum::<i64>();
        }
        total
    }

    pub async fn end(&self, broker: &Broker) -> i64 {
        let mut total = 0;
        for topic in [&self.orders, &self.inventory] {
            total += broker.end_offsets(topic).await.values().sum::<i64>();
        }
        total
    }

    /// Wait until the group has committed everything produced so far, and not
    /// one offset more: an overshoot would mean records were skipped.
    pub async fn wait_caught_up(&self, broker: &Broker, timeout: Duration) {
        self.wait_caught_up_by(broker, &self.group, timeout).await;
    }

    /// [`Setup::wait_caught_up`] for `group` (another daemon reading the
    /// same topics under a group of its own).
    pub async fn wait_caught_up_by(&self, broker: &Broker, group: &str, timeout: Duration) {
        let end = self.end(broker).await;
        wait_for(
            &format!("committed offsets of {group} to reach {end}"),
            timeout,
            || async { self.committed_by(broker, group).await >= end },
        )
        .await;
        assert_eq!(
            self.committed_by(broker, group).await,
            end,
            "committed offsets past the end of the topics"
        );
    }
}

/// Run the daemon configured by `config` in this process until the returned
/// token is cancelled.
pub fn spawn_in_process(config: &Path) -> (CancellationToken, JoinHandle<anyhow::Result<()>>) {
    let settings = projectionist::config::load(config).expect("the test config is valid");
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        let registry = projectionist::projector::Registry::with_builtins();
        projectionist::app::run(settings, &registry, token).await
    });
    (shutdown, task)
}

/// Poll `condition` until it holds, or panic naming `what`.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Every projection in the Redis database, normalized for comparison.
pub async fn redis_projections(url: &str) -> BTreeMap<String, Value> {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = {
        let mut iter: redis::AsyncIter<'_, String> = connection.scan_match("*:::*").await.unwrap();
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            let key = key.unwrap();
            // A rebuild's shadow keys hold projection keys; they are not one.
            if !key.starts_with("@projectionist/") {
                keys.push(key);
            }
        }
        keys
    };
    let mut projections = BTreeMap::new();
    for key in keys {
        let text: String = connection.get(&key).await.unwrap();
        projections.insert(key, normalize(serde_json::from_str(&text).unwrap()));
    }
    projections
}

/// Milliseconds to live of `key` (-1: no expiry, -2: missing).
pub async fn redis_pttl(url: &str, key: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    connection.pttl(key).await.unwrap()
}

/// A minimal HTTP/1.1 GET (status, body), to probe the daemon like a kubelet.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http_request(port, "GET", path, None)
}

/// A minimal HTTP/1.1 request (status, body), with a bearer token if given.
pub fn http_request(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Compare projections key by key, naming each difference (a full dump of a
/// few hundred projections hides the one that matters).
pub fn assert_same_projections(
    actual: &BTreeMap<String, Value>,
    expected: &BTreeMap<String, Value>,
) {
    let mut differences = Vec::new();
    for (key, want) in expected {
        match actual.get(key) {
            None => differences.push(format!("{key}: missing, expected {want}")),
            Some(got) if got != want => {
                differences.push(format!("{key}:\n  got      {got}\n  expected {want}"))
            }
            Some(_) => {}
        }
    }
    for (key, got) in actual {
        if !expected.contains_key(key) {
            differences.push(format!("{key}: unexpected {got}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} projection(s) differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// A daemon process owned by a test: killed on drop unless it already exited.
pub struct BinaryDaemon(pub std::process::Child);

impl std::ops::Deref for BinaryDaemon {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for BinaryDaemon {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for BinaryDaemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
