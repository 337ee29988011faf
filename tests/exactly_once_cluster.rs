//! Exactly-once trials on a Redis Cluster (three primaries, a replica each):
//! the real binary folds non-idempotent counters (`n += 1`, `sum += amount`
//! per account, 3,000 accounts over most of the 16,384 slots, 4 partitions)
//! from tansu into the cluster, where a batch lands as one script per slot.
//! Afterwards every counter must equal the fold of every event produced:
//! 0 lost, 0 doubled — through SIGKILLs (some land between two slots'
//! scripts), a zombie, slots migrated mid-run, and a primary killed mid-run whose
//! replica had fallen behind (its acknowledged writes are lost with it, and
//! the daemon applies them again).
//!
//! Same harness as `exactly_once.rs`: one record per record batch, one trial
//! at a time, `TRIAL_SEED=<seed>` replays one.

mod support;

use std::time::{Duration, Instant};

use support::cluster::RedisCluster;
use support::trials::{Trial, chaos};

const ASSIGNMENT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(180);
const WRITES: Duration = Duration::from_secs(30);

/// A backlog and then a live feed, one daemon: the plain end-to-end fold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_catch_up_and_a_live_feed_fold_exactly_on_a_cluster() {
    let _one = chaos::one_at_a_time().await;
    let mut trial = Trial::start("cluster-fold", RedisCluster::start(), "batch_size = 500").await;
    trial.produce(20_000).await;
    let feeder = trial.feed(1_000);
    let _daemon = trial.spawn_daemon();
    tokio::time::sleep(Duration::from_secs(10)).await;
    feeder.stop().await;
    let settled = trial.settle(SETTLE).await;
    trial.check(settled).await;
}

/// SIGKILLs at random moments of a catch-up. A batch is hundreds of slot
/// scripts in flight, so a kill often lands between two of them: the slots
/// that landed hold marks past the checkpoint and skip the replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_a_catch_up_on_a_cluster_neither_loses_nor_doubles() {
    const KILLS: usize = 5;
    const BACKLOG: usize = 40_000;
    const LIFE: Duration = Duration::from_secs(8);
    let _one = chaos::one_at_a_time().await;
    let mut trial = Trial::start("cluster-kill9", RedisCluster::start(), "batch_size = 500").await;
    trial.produce(BACKLOG).await;
    let end = trial.produced() as i64;
    for kill in 1..=KILLS {
        let mut daemon = trial.spawn_daemon();
        daemon.wait_assigned(ASSIGNMENT).await.unwrap();
        let born = Instant::now();
        let target = trial.rng.below((BACKLOG / KILLS / 2) as u64) as i64;
        let before = trial.totals().await.n;
        let mut applied = 0;
        while applied < target && born.elapsed() < LIFE {
            tokio::time::sleep(Duration::from_millis(20)).await;
            applied = trial.totals().await.n - before;
        }
        daemon.kill();
        let committed = trial.committed().await;
        trial.say(&format!(
            "kill {kill}: SIGKILL after {applied} applications (target {target}); committed {committed} of {end}"
        ));
    }
    let _last = trial.spawn_daemon();
    let settled = trial.settle(SETTLE).await;
    trial.check(settled).await;
}

/// A daemon frozen (SIGSTOP) just as a batch landed, past its session, while
/// a second daemon takes every partition over; then thawed. On a cluster the
/// zombie's batch in flight may land in some slots before its commit sees the
/// newer epoch: harmless, since each slot's marks refuse a write over a fold
/// that another landed meanwhile, and what it lands is the same fold of the
/// same log that the owner then skips.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zombie_thawed_on_a_cluster_neither_loses_nor_doubles() {
    let _one = chaos::one_at_a_time().await;
    let mut trial =
        Trial::start("cluster-zombie", RedisCluster::start(), "batch_size = 2000").await;
    trial.produce(20_000).await;
    let feeder = trial.feed(1_000);
    let mut zombie = trial.spawn_daemon();
    zombie.wait_assigned(ASSIGNMENT).await.unwrap();
    let landed = trial.totals().await;
    trial
        .expect_writes_after(landed, "the zombie's start", WRITES)
        .await;
    zombie.freeze();
    trial.say(&format!("froze daemon {} as a batch landed", zombie.label));
    let mut successor = trial.spawn_daemon();
    let took_over = successor.wait_assigned(ASSIGNMENT).await.unwrap();
    trial.say(&format!(
        "daemon {} took over after {took_over:?}",
        successor.label
    ));
    let before = trial.totals().await;
    trial
        .expect_writes_after(before, "the takeover", WRITES)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    zombie.thaw();
    trial.say(&format!("thawed daemon {}", zombie.label));
    tokio::time::sleep(Duration::from_secs(6)).await;
    feeder.stop().await;
    let settled = trial.settle(SETTLE).await;
    assert!(zombie.exited().is_none(), "the thawed daemon crashed");
    trial.check(settled).await;
}

/// Slots move between primaries while the daemon writes to them: the hot
/// accounts' slots (every batch touches them) and more, each with its keys
/// and its marks. The client follows `ASK` during a move and `MOVED` after.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slots_migrated_mid_run_neither_lose_nor_double() {
    let _one = chaos::one_at_a_time().await;
    let mut trial =
        Trial::start("cluster-migrate", RedisCluster::start(), "batch_size = 500").await;
    trial.produce(20_000).await;
    let feeder = trial.feed(1_000);
    let mut daemon = trial.spawn_daemon();
    daemon.wait_assigned(ASSIGNMENT).await.unwrap();
    // The 16 hot accounts (every batch touches them) and 48 more.
    let moving: Vec<u16> = (0..64)
        .map(|account| {
            let key = format!("counters:::a-{account}");
            projectionist::cache::cluster::slots::slot_of(key.as_bytes())
        })
        .collect();
    let mut written = trial.totals().await;
    while written.n < 5_000 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        written = trial.totals().await;
    }
    let mut moved = 0;
    let started = Instant::now();
    for slot in moving {
        let cluster = trial.cluster();
        let from = cluster.primary_of(slot);
        let to = cluster
            .primaries()
            .into_iter()
            .find(|&primary| primary != from)
            .expect("three primaries");
        moved += tokio::task::block_in_place(|| cluster.migrate_slot(slot, to));
    }
    trial.say(&format!(
        "migrated 64 accounts' slots ({moved} keys) in {:?} while the daemon wrote",
        started.elapsed()
    ));
    assert!(moved > 0, "the hot slots held keys");
    let written = trial.totals().await;
    trial
        .expect_writes_after(written, "the migrations", WRITES)
        .await;
    feeder.stop().await;
    let settled = trial.settle(SETTLE).await;
    assert!(daemon.exited().is_none(), "the daemon crashed");
    trial.check(settled).await;
}

/// A primary dies mid-run after its replica fell a second behind (frozen,
/// then thawed as the primary is killed): the replica is promoted without
/// the writes the primary acknowledged in that second, keys and marks alike.
/// The daemon notices a slot whose mark is below what it wrote, folds the
/// partitions again from there (the slots that kept their writes skip them),
/// and every counter ends exact: nothing the old primary lost stays lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_killed_with_a_lagging_replica_loses_nothing() {
    let _one = chaos::one_at_a_time().await;
    let mut trial = Trial::start(
        "cluster-failover",
        RedisCluster::start(),
        "batch_size = 500",
    )
    .await;
    trial.produce(10_000).await;
    let feeder = trial.feed(1_000);
    let mut daemon = trial.spawn_daemon();
    daemon.wait_assigned(ASSIGNMENT).await.unwrap();
    let mut written = trial.totals().await;
    while written.n < 10_000 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        written = trial.totals().await;
    }
    let hot = projectionist::cache::cluster::slots::slot_of(b"counters:::a-0");
    let lag = Duration::from_secs(1);
    let (old, new) =
        tokio::task::block_in_place(|| trial.cluster().kill_primary_with_lagging_replica(hot, lag));
    trial.say(&format!(
        "primary {old} killed {lag:?} after its replica froze; replica {new} promoted"
    ));
    let written = trial
        .store
        .totals()
        .await
        .map(|(_, totals)| totals)
        .unwrap_or_default();
    trial
        .expect_writes_after(written, "the failover", WRITES)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    feeder.stop().await;
    let settled = trial.settle(SETTLE).await;
    assert!(daemon.exited().is_none(), "the daemon crashed");
    let logs = trial.logs();
    let noticed = logs
        .matches("a slot lost writes that were acknowledged")
        .count();
    trial.say(&format!(
        "slots found to have lost acknowledged writes: {noticed}"
    ));
    trial.check(settled).await;
    assert!(
        noticed > 0,
        "the replica lagged {lag:?} behind a written primary, yet no loss was noticed: the trial proved nothing"
    );
}
