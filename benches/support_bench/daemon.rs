//! The daemon under the bench as a process of its own: this build or a
//! baseline, its catch-up with the whole process's CPU, and its freshness on
//! a live stream.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::support::daemon::{Setup, wait_for};
use super::support::kafka::Broker;
use super::{cpu, freshness};

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

/// The setup's config under a group of its own, into Redis database 2.
pub fn baseline_config(setup: &Setup) -> (PathBuf, String, String) {
    let group = super::support::kafka::unique("baseline");
    let redis_url = setup.redis_url.replace("/0", "/2");
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
    pub seconds: f64,
    /// The whole process, start-up and shutdown included (`wait4`).
    cpu_seconds: f64,
    /// Per thread name, read just before it was asked to stop.
    threads: BTreeMap<String, f64>,
}

impl CatchUp {
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
    }
}

/// Run the daemon binary with `config` until `group` has committed the whole
/// backlog.
pub async fn catch_up(
    binary: &Path,
    config: &Path,
    broker: &Broker,
    setup: &Setup,
    group: &str,
    timeout: Duration,
) -> CatchUp {
    let started = Instant::now();
    let child = daemon_process(binary, config);
    let end = setup.end(broker).await;
    wait_for("the daemon to catch up", timeout, || async {
        setup.committed_by(broker, group).await >= end
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let threads = cpu::by_thread(child.id());
    let cpu_seconds = cpu::stop_and_reap(child);
    CatchUp {
        seconds,
        cpu_seconds,
        threads,
    }
}

/// The caught-up daemon (default settings but the group's) on a live stream
/// at 2,000 and 20,000 events/s: produce -> visible in Redis, beside the
/// broker's floor (a plain consumer) on the same events.
pub async fn live_freshness(
    binary: &Path,
    config: &Path,
    redis_url: &str,
    broker: &Broker,
    setup: &Setup,
    full: bool,
) {
    let child = daemon_process(binary, config);
    wait_for(
        "the daemon to be ready",
        Duration::from_secs(60),
        || async { setup.http("/readyz").0 == 200 },
    )
    .await;
    // The smoke run (a debug build under `cargo test`) only exercises it.
    let (seconds, rates): (u32, &[(u32, f64)]) = if full {
        (10, &[(2_000, 5.0), (20_000, 20.0)])
    } else {
        (1, &[(100, 5.0)])
    };
    for &(rate, allowance) in rates {
        let (daemon, floor) =
            freshness::measure(broker, &setup.orders, redis_url, rate, seconds).await;
        println!("freshness at {rate} events/s (produce -> visible):");
        println!("  {}", floor.line("broker floor (plain consumer)"));
        println!("  {}", daemon.line("daemon (Redis, polled)"));
        let excess = daemon.p99() - floor.p99();
        println!(
            "  daemon p99 - floor p99 = {excess:.1} ms (target <= {allowance} ms: {})",
            if excess <= allowance {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    cpu::stop_and_reap(child);
}
