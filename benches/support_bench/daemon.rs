//! The daemon under the bench as a process of its own: this build or a
//! baseline, its catch-up with the whole process's CPU, and its freshness on
//! a live stream.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use projectionist::cache::redis::{RedisCache, connect as connect_redis};
use projectionist::cache::{Cache as _, Partition, Ttl, checkpoint_scope};

use super::support::daemon::{Setup, wait_for};
use super::support::kafka::Broker;
use super::{cpu, freshness};

/// `config` fetching as the daemon does by default: the same fetch wait,
/// fetch size and queue backoff. The references the daemon is measured
/// against (the do-nothing consumer, the broker's floor) use these, so what
/// the bench shows is the daemon's own cost, not a difference in how the
/// broker was asked.
pub fn fetching_as_the_daemon(mut config: rdkafka::ClientConfig) -> rdkafka::ClientConfig {
    use projectionist::source::kafka::{
        FETCH_MAX_BYTES, FETCH_QUEUE_BACKOFF_MS, FETCH_WAIT_MAX_MS,
    };
    for (name, value) in [FETCH_WAIT_MAX_MS, FETCH_MAX_BYTES, FETCH_QUEUE_BACKOFF_MS] {
        config.set(name, value);
    }
    config
}

/// The daemon binary this bench was built with.
pub fn this_build() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_projectionist"))
}

/// Another build to run beside it, from `BENCH_BASELINE_BIN`.
pub fn baseline_build() -> Option<PathBuf> {
    std::env::var_os("BENCH_BASELINE_BIN").map(PathBuf::from)
}

/// `binary` running with `config`.
fn daemon_process(binary: &Path, config: &Path) -> std::process::Child {
    std::process::Command::new(binary)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("the projectionist binary runs")
}

/// The setup's config under a group of its own, into Redis `database`.
pub fn baseline_config(setup: &Setup, database: u8) -> (PathBuf, String, String) {
    let group = super::support::kafka::unique("baseline");
    let (server, _) = setup
        .redis_url
        .rsplit_once('/')
        .expect("a Redis URL ends with its database");
    let redis_url = format!("{server}/{database}");
    let config = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace(&setup.group, &group)
        .replace(&setup.redis_url, &redis_url);
    let path = setup.dir.path().join("baseline.toml");
    std::fs::write(&path, config).unwrap();
    (path, group, redis_url)
}

/// One catch-up of the daemon binary: how long it took and the CPU it spent.
pub struct CatchUp {
    /// Until the daemon's checkpoint in Redis, which each batch advances in
    /// the same atomic step as its writes, covered the backlog: when the
    /// last event was visible to readers.
    pub seconds: f64,
    /// Until the group's offsets in Kafka did: a copy the daemon ships on
    /// librdkafka's commit interval (1 s), so up to that much later.
    committed_seconds: f64,
    /// The whole process, start-up and shutdown included (`wait4`).
    cpu_seconds: f64,
    /// Per thread name, read just before it was asked to stop.
    threads: BTreeMap<String, f64>,
    /// The share of the orders backlog applied when the bench first saw
    /// half of it applied, and the least and most advanced of its
    /// partitions then, as fractions of theirs.
    halfway: Option<(f64, f64, f64)>,
    /// The daemon's own time in chunks (its batch duration's sum): the rest
    /// of `seconds` it waited for records, or had not started.
    busy_seconds: Option<f64>,
}

impl CatchUp {
    /// Whole-process CPU per event, in µs.
    pub fn cpu_us(&self, events: usize) -> f64 {
        self.cpu_seconds * 1e6 / events as f64
    }

    pub fn print(&self, what: &str, events: usize, reference_us: f64) {
        let per_event = |seconds: f64| seconds * 1e6 / events as f64;
        println!(
            "projectionist ({what}): {:.2} µs CPU per event, whole process (target <= 2.0; the do-nothing consumer: {reference_us:.2})",
            per_event(self.cpu_seconds)
        );
        let split: Vec<String> = self
            .threads
            .iter()
            .filter(|(_, seconds)| per_event(**seconds) >= 0.01)
            .map(|(name, seconds)| format!("{name} {:.2}", per_event(*seconds)))
            .collect();
        println!("  by thread (µs per event): {}", split.join(", "));
        println!(
            "  all applied (its checkpoint in Redis) after {:.2} s; offsets committed to Kafka after {:.2} s",
            self.seconds, self.committed_seconds
        );
        if let Some(busy) = self.busy_seconds {
            println!(
                "  pipeline busy {busy:.2} s of the {:.2} s catch-up ({:.0}%); the rest it waited for records, started, or was not yet seen done",
                self.seconds,
                busy * 100.0 / self.seconds
            );
        }
        if let Some((applied, least, most)) = self.halfway {
            println!(
                "  fairness: with {:.0}% of the orders backlog applied (first seen past half), its partitions stood at {:.0}%-{:.0}% of theirs",
                applied * 100.0,
                least * 100.0,
                most * 100.0
            );
        }
    }
}

/// How far `group`'s checkpoint in `cache` has applied each partition of
/// `topics` (by their ends: the next offset to apply), per topic in order.
async fn applied_by(
    cache: &RedisCache,
    group: &str,
    topics: &[(String, BTreeMap<i32, i64>)],
) -> Vec<BTreeMap<i32, i64>> {
    let scope = checkpoint_scope(group, "default");
    let mut applied = Vec::new();
    for (topic, ends) in topics {
        let mut offsets = BTreeMap::new();
        for number in ends.keys() {
            let partition = Partition::new(topic.as_str(), *number);
            let next = cache
                .applied(&scope, &partition)
                .await
                .expect("the checkpoint reads");
            offsets.insert(*number, next.unwrap_or(0));
        }
        applied.push(offsets);
    }
    applied
}

/// Run the daemon binary with `config` until its checkpoint (in the Redis at
/// `redis_url`, the one `config` names) covers the whole backlog, and then
/// until `group` has committed it to Kafka too.
pub async fn catch_up(
    binary: &Path,
    config: &Path,
    redis_url: &str,
    broker: &Broker,
    setup: &Setup,
    group: &str,
    timeout: Duration,
) -> CatchUp {
    let cache = connect_redis(redis_url, Ttl::from_secs(300).unwrap())
        .await
        .expect("the daemon's Redis");
    // The backlog's ends, per topic (orders first), read before the start:
    // asking the broker takes long enough for the daemon to get well past
    // half its backlog meanwhile.
    let mut ends = Vec::new();
    for topic in [&setup.orders, &setup.inventory] {
        ends.push((topic.clone(), broker.end_offsets(topic).await));
    }
    let end: i64 = ends.iter().flat_map(|(_, ends)| ends.values()).sum();
    let started = Instant::now();
    let child = daemon_process(binary, config);
    let mut halfway = None;
    let deadline = Instant::now() + timeout;
    // Polled often, as it is cheap: this is the figure the rate is made of.
    loop {
        let applied = applied_by(&cache, group, &ends).await;
        if halfway.is_none() {
            halfway = fairness(&applied[0], &ends[0].1);
        }
        if applied.iter().flat_map(BTreeMap::values).sum::<i64>() >= end {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not apply the backlog in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    while setup.committed_by(broker, group).await < end {
        assert!(
            Instant::now() < deadline,
            "the daemon did not catch up in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let committed_seconds = started.elapsed().as_secs_f64();
    let (_, metrics) = super::support::daemon::http_get(setup.http_port, "/metrics");
    let busy_seconds = reading(&metrics, "projectionist_batch_duration_seconds_sum ");
    let threads = cpu::by_thread(child.id());
    let cpu_seconds = cpu::stop_and_reap(child);
    CatchUp {
        seconds,
        committed_seconds,
        cpu_seconds,
        threads,
        halfway,
        busy_seconds,
    }
}

/// The rates freshness is measured at, each with its allowance over the
/// broker's floor (ms). The smoke run (a debug build under `cargo test`)
/// only exercises the path.
pub fn freshness_rates(full: bool) -> (u32, &'static [(u32, f64)]) {
    if full {
        (10, &[(2_000, 5.0), (20_000, 20.0)])
    } else {
        (1, &[(100, 5.0)])
    }
}

/// A build of the daemon as freshness runs it: its binary, its config, the
/// group that config names and the Redis it writes.
pub struct Build<'a> {
    pub binary: &'a Path,
    pub config: &'a Path,
    pub group: &'a str,
    pub redis_url: &'a str,
}

/// The caught-up daemon (default settings but the group's) on a live stream
/// at `rate` events/s for `seconds`: produce -> visible in Redis, beside the
/// broker's floor (a plain consumer) on the same events.
pub async fn live_freshness(
    build: &Build<'_>,
    broker: &Broker,
    setup: &Setup,
    (rate, allowance): (u32, f64),
    seconds: u32,
) {
    let child = daemon_process(build.binary, &with_default_batching(build.config));
    wait_for(
        "the daemon to be ready",
        Duration::from_secs(60),
        || async { setup.http("/readyz").0 == 200 },
    )
    .await;
    // Caught up before the clock starts: another build's runs produced to
    // these topics, and a daemon still folding those while the live events
    // arrive measured its backlog, not its freshness (the build measured
    // second lagged by tens of seconds).
    setup
        .wait_caught_up_by(broker, build.group, Duration::from_secs(300))
        .await;
    let redis_url = build.redis_url;
    let before = LiveLoad::read(&child, setup, redis_url);
    let (daemon, floor) = freshness::measure(broker, &setup.orders, redis_url, rate, seconds).await;
    let load = LiveLoad::read(&child, setup, redis_url).since(&before);
    println!("freshness at {rate} events/s (produce -> visible):");
    println!("  {}", floor.line("broker floor (plain consumer)"));
    println!("  {}", daemon.line("daemon (seen written in Redis)"));
    println!("  {}", load.line(rate * seconds));
    let excess = daemon.p99() - floor.p99();
    println!(
        "  daemon p99 - floor p99 = {excess:.1} ms (target <= {allowance} ms: {})",
        if excess <= allowance {
            "met"
        } else {
            "NOT met"
        }
    );
    cpu::stop_and_reap(child);
}

/// What a live daemon has spent so far: its CPU (all threads) and its
/// batches. On a live stream batches are small, so what each batch costs
/// beside its records decides the CPU per event, and whether the daemon
/// keeps up.
struct LiveLoad {
    cpu_seconds: f64,
    redis_cpu_seconds: f64,
    batches: f64,
    records: f64,
}

impl LiveLoad {
    fn read(child: &std::process::Child, setup: &Setup, redis_url: &str) -> LiveLoad {
        let metrics = setup.http("/metrics").1;
        let sample = |name: &str| reading(&metrics, name).unwrap_or(0.0);
        LiveLoad {
            cpu_seconds: cpu::by_thread(child.id()).values().sum(),
            redis_cpu_seconds: redis_cpu_seconds(redis_url),
            batches: sample("projectionist_batch_size_events_count "),
            records: sample("projectionist_batch_size_events_sum "),
        }
    }

    fn since(self, before: &LiveLoad) -> LiveLoad {
        LiveLoad {
            cpu_seconds: self.cpu_seconds - before.cpu_seconds,
            redis_cpu_seconds: self.redis_cpu_seconds - before.redis_cpu_seconds,
            batches: self.batches - before.batches,
            records: self.records - before.records,
        }
    }

    fn line(&self, events: u32) -> String {
        format!(
            "meanwhile, per event produced: daemon {:.2} µs CPU, redis-server {:.2} µs; {} batches of {:.1} records on average",
            self.cpu_seconds * 1e6 / f64::from(events),
            self.redis_cpu_seconds * 1e6 / f64::from(events),
            self.batches,
            self.records / self.batches.max(1.0),
        )
    }
}

/// The CPU seconds `redis-server` has used (`INFO cpu`), 0 when it does not say.
fn redis_cpu_seconds(url: &str) -> f64 {
    let info: String = redis::Client::open(url)
        .and_then(|client| client.get_connection())
        .and_then(|mut connection| redis::cmd("INFO").arg("cpu").query(&mut connection))
        .unwrap_or_default();
    ["used_cpu_sys:", "used_cpu_user:"]
        .iter()
        .filter_map(|name| reading(&info, name))
        .sum()
}

/// The number after `name` on the first line that starts with it: a
/// Prometheus sample (`name value`) or an `INFO` field (`name:value`).
fn reading(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
}

/// `config` without its batching settings: freshness is measured with the
/// defaults a user gets.
fn with_default_batching(config: &Path) -> PathBuf {
    let tuned = ["batch_timeout_ms", "batch_size", "queue_batches"];
    let text: String = std::fs::read_to_string(config)
        .unwrap()
        .lines()
        .filter(|line| !tuned.iter().any(|key| line.trim_start().starts_with(key)))
        .map(|line| format!("{line}\n"))
        .collect();
    let path = config.with_extension("defaults.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Once `applied` covers half of the backlog up to `ends`: the share it
/// covers, and the least and the most advanced partition's share of its own.
fn fairness(applied: &BTreeMap<i32, i64>, ends: &BTreeMap<i32, i64>) -> Option<(f64, f64, f64)> {
    let total: i64 = ends.values().sum();
    let done: i64 = applied.values().map(|offset| (*offset).max(0)).sum();
    if total == 0 || done * 2 < total {
        return None;
    }
    let shares = ends
        .iter()
        .filter(|(_, end)| **end > 0)
        .map(|(partition, end)| {
            applied.get(partition).copied().unwrap_or(0).max(0) as f64 / *end as f64
        });
    let (least, most) = shares.fold((f64::MAX, 0.0f64), |(least, most), share| {
        (least.min(share), most.max(share))
    });
    Some((done as f64 / total as f64, least, most))
}
