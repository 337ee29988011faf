//! Fault trials: the real `projectionist` binary folds non-idempotent
//! counters (see [`ledger`]) from a fresh 4-partition topic into a Redis of
//! its own, while a test harms it (signals, Redis stalls and restarts); at
//! the end every counter must equal the fold of every event produced.
//!
//! Records are produced one per record batch ([`Broker::produce_unbatched`]):
//! tansu 0.6 skips the rest of a multi-record batch for a consumer that
//! resumes inside it, which would blur every figure here with the broker's
//! losses. [`Trial::check`] verifies that by sampling.

pub mod chaos;
mod daemon;
mod diagnose;
pub mod ledger;
mod store;

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::kafka::{Broker, CLIENT_SETTINGS, unique};
pub use chaos::{Rng, signal};
pub use daemon::Daemon;
use ledger::{Ledger, Tally};
pub use store::Store;

pub const PARTITIONS: i32 = 4;
pub const ACCOUNTS: usize = 3_000;
/// Records per produce call; also the feeder's unit.
const PRODUCE_CHUNK: usize = 10_000;
/// How long Redis's counters must stay still, once the group has committed
/// everything, before a trial is called settled.
const QUIET: Duration = Duration::from_secs(3);
/// How long neither the committed offsets nor Redis may stand still short
/// of the end before a trial is called stuck (a restart waits 6 s for its
/// partitions; a catch-up never pauses this long).
const STUCK: Duration = Duration::from_secs(30);

/// One trial: its topic, group, store (a Redis or a cluster), config folder and daemons' logs, the
/// ledger of what was produced, and its random source.
pub struct Trial {
    pub name: &'static str,
    pub broker: &'static Broker,
    pub store: Store,
    pub topic: String,
    pub group: String,
    pub rng: Rng,
    dir: PathBuf,
    config: PathBuf,
    ledger: Arc<Mutex<Ledger>>,
    started: Instant,
    spawned: usize,
    /// Set by a failed verdict: the folder (config, daemon logs) is kept, as
    /// it is after a panic or with `TRIAL_KEEP_LOGS` set.
    failed: Cell<bool>,
}

impl Trial {
    /// A trial named `name` on the shared broker, writing into `store` (a
    /// `RedisServer` or a `RedisCluster`), with extra `[pipeline]` settings
    /// (lines of TOML).
    pub async fn start(name: &'static str, store: impl Into<Store>, pipeline: &str) -> Trial {
        let store = store.into();
        let broker = Broker::shared();
        let seed = chaos::seed();
        eprintln!("[{name}] seed {seed} (TRIAL_SEED={seed} replays it)");
        let topic = unique(name);
        let group = unique(&format!("{name}-group"));
        broker.create_topic(&topic, PARTITIONS).await;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("trials")
            .join(unique(name));
        let projections = dir.join("projections");
        std::fs::create_dir_all(&projections).expect("a trial folder");
        std::fs::write(
            projections.join("counters.toml"),
            ledger::projection(&topic),
        )
        .expect("the counters projection is written");
        let properties: String = CLIENT_SETTINGS
            .iter()
            .map(|(key, value)| format!("{key:?} = {value:?}\n"))
            .collect();
        let config = dir.join("config.toml");
        let text = format!(
            r#"[kafka]
brokers = "{brokers}"
group_id = "{group}"

[kafka.properties]
{properties}"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[caches.default]
{cache}

[pipeline]
batch_timeout_ms = 20
max_backoff_ms = 500
{pipeline}
"#,
            brokers = broker.bootstrap(),
            cache = store.cache_config(),
        );
        std::fs::write(&config, text).expect("the trial config is written");
        let mut rng = Rng::new(seed);
        let ledger = Ledger::new(ACCOUNTS, PARTITIONS, rng.next_u64());
        Trial {
            name,
            broker,
            store,
            topic,
            group,
            rng,
            dir,
            config,
            ledger: Arc::new(Mutex::new(ledger)),
            started: Instant::now(),
            spawned: 0,
            failed: Cell::new(false),
        }
    }

    /// The trial's single Redis; panics on a cluster trial.
    pub fn redis(&mut self) -> &mut super::redis::RedisServer {
        match &mut self.store {
            Store::Redis(redis) => redis,
            Store::Cluster(_) => panic!("{} runs on a cluster, not one Redis", self.name),
        }
    }

    /// The trial's Redis Cluster; panics on a single-Redis trial.
    pub fn cluster(&mut self) -> &mut super::cluster::RedisCluster {
        match &mut self.store {
            Store::Cluster(cluster) => cluster,
            Store::Redis(_) => panic!("{} runs on one Redis, not a cluster", self.name),
        }
    }

    /// Every daemon's log so far, one after another.
    pub fn logs(&self) -> String {
        (1..=self.spawned)
            .map(|number| {
                std::fs::read_to_string(self.dir.join(format!("daemon-{number}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// A line on stderr, stamped with the trial and its elapsed time.
    pub fn say(&self, what: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        eprintln!("[{} +{elapsed:.1}s] {what}", self.name);
    }

    /// Produce `count` more deposits (one record per batch) and wait for them.
    pub async fn produce(&self, count: usize) {
        let started = Instant::now();
        let mut left = count;
        while left > 0 {
            let chunk = left.min(PRODUCE_CHUNK);
            produce_chunk(self.broker, &self.topic, &self.ledger, chunk).await;
            left -= chunk;
        }
        let secs = started.elapsed().as_secs_f64();
        let rate = count as f64 / secs;
        self.say(&format!(
            "produced {count} events in {secs:.1} s ({rate:.0}/s)"
        ));
    }

    /// Keep producing about `per_second` deposits until the feeder is stopped.
    pub fn feed(&self, per_second: usize) -> Feeder {
        let stop = CancellationToken::new();
        let (broker, topic, ledger) = (self.broker, self.topic.clone(), self.ledger.clone());
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let tick = Duration::from_millis(100);
            let per_tick = (per_second / 10).max(1);
            let mut next = tokio::time::Instant::now();
            while !token.is_cancelled() {
                produce_chunk(broker, &topic, &ledger, per_tick).await;
                next += tick;
                tokio::time::sleep_until(next).await;
            }
        });
        Feeder { stop, task }
    }

    pub fn produced(&self) -> u64 {
        self.ledger.lock().expect("the ledger lock").produced()
    }

    /// The group's committed offsets, summed over the partitions.
    pub async fn committed(&self) -> i64 {
        let committed = self
            .broker
            .committed_offsets(&self.group, &self.topic)
            .await;
        committed.values().sum()
    }

    /// The counters in Redis, summed (to see that writes happen).
    pub async fn totals(&self) -> Tally {
        match self.store.totals().await {
            Ok((_, totals)) => totals,
            Err(error) => panic!("reading the counters: {error}"),
        }
    }

    /// Wait until the group has committed an offset on every partition (so
    /// the daemons have written something for each), or panic.
    pub async fn wait_committed_on_every_partition(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let committed = self
                .broker
                .committed_offsets(&self.group, &self.topic)
                .await;
            let started = committed.values().filter(|offset| **offset > 0).count();
            if started == PARTITIONS as usize {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "within {timeout:?} the group committed on {started} partitions only"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until the counters have grown past `since` (the daemons are
    /// writing), or panic naming `moment` after `timeout`.
    pub async fn expect_writes_after(&self, since: Tally, moment: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let applied = || async {
            let totals = self.store.totals().await;
            totals.map_or(0, |(_, totals)| totals.n)
        };
        while applied().await <= since.n {
            assert!(
                Instant::now() < deadline,
                "nothing written within {timeout:?} after {moment}: the harm hit an idle daemon"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Start one more daemon (the real binary) of this trial's group.
    pub fn spawn_daemon(&mut self) -> Daemon {
        self.spawned += 1;
        let daemon = Daemon::spawn(&self.config, &self.dir, self.spawned);
        self.say(&format!(
            "started daemon {} (pid {})",
            daemon.label,
            daemon.pid()
        ));
        daemon
    }

    /// Wait until the group has committed every record and Redis has not
    /// changed for [`QUIET`]. Gives up after `timeout`, or sooner when
    /// neither the committed offsets nor Redis moved for [`STUCK`].
    pub async fn settle(&self, timeout: Duration) -> Result<(), String> {
        let ends = self.broker.end_offsets(&self.topic).await;
        let deadline = Instant::now() + timeout;
        let mut last = None;
        let mut still_since = Instant::now();
        loop {
            let committed = self
                .broker
                .committed_offsets(&self.group, &self.topic)
                .await;
            if let Some((partition, offset)) = committed.iter().find(|(p, o)| *o > &ends[p]) {
                return Err(format!(
                    "committed offset {offset} on partition {partition} is past the end {}",
                    ends[partition]
                ));
            }
            let done = ends.iter().all(|(p, end)| committed.get(p) == Some(end));
            let redis = self.store.totals().await.ok();
            let now = Some((committed, redis));
            if now != last || redis.is_none() {
                (last, still_since) = (now, Instant::now());
            } else if done && still_since.elapsed() >= QUIET {
                self.say("settled: everything committed, Redis still");
                return Ok(());
            }
            let state = || {
                format!(
                    "committed {:?} of {ends:?}, Redis (keys, totals) {redis:?}",
                    last.as_ref().map(|(c, _)| c)
                )
            };
            if still_since.elapsed() >= STUCK {
                return Err(format!(
                    "stuck: nothing moved for {STUCK:?} short of the end \
                     (the group's lag would never clear): {}",
                    state()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("not settled after {timeout:?}: {}", state()));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The verdict: what was produced is what the topic holds (one record
    /// per batch), the daemons settled, and every counter is exact. Panics
    /// on a harness failure (a vacuous trial, a broker that batched).
    pub async fn verdict(&self, settled: Result<(), String>) -> Result<String, String> {
        let produced = self.produced();
        let ends = self.broker.end_offsets(&self.topic).await;
        let in_topic: i64 = ends.values().sum();
        assert_eq!(
            in_topic, produced as i64,
            "the topic holds {in_topic} records but {produced} were produced (producer retries?)"
        );
        self.broker.assert_unbatched(&self.topic, 4).await;
        let stored = self
            .store
            .read_counters()
            .await
            .expect("Redis answers at the end");
        let (comparison, expected) = {
            let ledger = self.ledger.lock().expect("the ledger lock");
            (ledger.compare(&stored), ledger.expected())
        };
        assert!(
            comparison.keys > 0 && produced > 0,
            "a vacuous trial: {comparison}"
        );
        self.say(&format!("counters: {comparison}"));
        let failure = match settled {
            Ok(()) if comparison.is_exact() => return Ok(format!("exact: {comparison}")),
            Ok(()) => format!("counters: {comparison}"),
            Err(why) => format!("{why}\ncounters: {comparison}"),
        };
        self.failed.set(true);
        let logs = format!("(logs in {})", self.dir.display());
        if comparison.is_exact() {
            return Err(format!("{failure}\n{logs}"));
        }
        let explained = diagnose::explain(self.broker, &self.topic, &expected, &stored).await;
        Err(format!("{failure}\ndiagnosis:\n  {explained}\n{logs}"))
    }

    /// [`Trial::verdict`], panicking when it is not exact.
    pub async fn check(&self, settled: Result<(), String>) {
        if let Err(failure) = self.verdict(settled).await {
            panic!("{} trial failed: {failure}", self.name);
        }
    }
}

impl Drop for Trial {
    fn drop(&mut self) {
        let keep = std::env::var_os("TRIAL_KEEP_LOGS").is_some();
        if keep || std::thread::panicking() || self.failed.get() {
            eprintln!("[{}] logs kept in {}", self.name, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A background producer started by [`Trial::feed`].
pub struct Feeder {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Feeder {
    /// Stop producing; every record sent so far has been delivered.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(error) = self.task.await {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

async fn produce_chunk(broker: &Broker, topic: &str, ledger: &Mutex<Ledger>, count: usize) {
    let records = ledger.lock().expect("the ledger lock").deposits(count);
    let sent = broker.produce_unbatched(topic, records).await;
    assert_eq!(sent, count, "every deposit is sent");
}
