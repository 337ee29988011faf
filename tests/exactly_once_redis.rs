//! Exactly-once trials, Redis faults: the real binary folds non-idempotent
//! counters (`n += 1`, `sum += amount` per account, 3,000 accounts, 4
//! partitions) from tansu into a Redis that stalls longer than the adapter's
//! 5 s response timeout, is killed and restarted from its append-only file,
//! or is rolled back to an older snapshot. Afterwards every counter must
//! equal the fold of every event produced: 0 lost, 0 doubled.
//!
//! Every record is produced as a record batch of its own: tansu 0.6 skips the
//! rest of a multi-record batch for a consumer that resumes inside it (see
//! `tests/support/trials`). Trials run one at a time; each prints its seed,
//! and `TRIAL_SEED=<seed>` replays its workload and its moments of harm.

mod support;

use std::time::Duration;

use support::redis::RedisServer;
use support::trials::{Trial, chaos, signal};

const ASSIGNMENT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(180);
/// How soon after a fault the daemon must be writing again.
const WRITES: Duration = Duration::from_secs(20);

/// The daemon is catching up and writing when Redis freezes (SIGSTOP) for
/// 6 to 7 s, longer than the adapter's response timeout, three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_frozen_past_the_response_timeout_neither_loses_nor_doubles() {
    const STALLS: usize = 3;
    let _one = chaos::one_at_a_time().await;
    let mut trial = Trial::start("redis-frozen", RedisServer::start(), "batch_size = 500").await;
    trial.produce(60_000).await;
    let feeder = trial.feed(2_000);
    let mut daemon = trial.spawn_daemon();
    daemon.wait_assigned(ASSIGNMENT).await.unwrap();
    let pid = trial.redis().pid().expect("redis-server runs");
    for stall in 1..=STALLS {
        let before = trial
            .rng
            .between(Duration::from_millis(500), Duration::from_secs(2));
        tokio::time::sleep(before).await;
        let written = trial.totals().await;
        let frozen = trial
            .rng
            .between(Duration::from_secs(6), Duration::from_secs(7));
        assert!(signal(pid, "STOP"), "redis-server is gone");
        trial.say(&format!("stall {stall}: Redis frozen for {frozen:?}"));
        tokio::time::sleep(frozen).await;
        assert!(signal(pid, "CONT"), "redis-server is gone");
        let moment = format!("stall {stall}");
        trial.expect_writes_after(written, &moment, WRITES).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    feeder.stop().await;
    let settled = trial.settle(SETTLE).await;
    assert!(daemon.exited().is_none(), "the daemon crashed");
    trial.check(settled).await;
}

/// Redis is killed (SIGKILL) three times in the middle of the run and restarted on
/// the same port from its append-only file (fsync on every write, so every
/// acknowledged write survives).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_from_its_aof_neither_loses_nor_doubles() {
    const RESTARTS: usize = 3;
    let _one = chaos::one_at_a_time().await;
    let redis = RedisServer::start_persistent();
    let mut trial = Trial::start("redis-aof", redis, "batch_size = 500").await;
    trial.produce(60_000).await;
    let feeder = trial.feed(2_000);
    let mut daemon = trial.spawn_daemon();
    daemon.wait_assigned(ASSIGNMENT).await.unwrap();
    for restart in 1..=RESTARTS {
        let before = trial
            .rng
            .between(Duration::from_millis(500), Duration::from_secs(2));
        tokio::time::sleep(before).await;
        let written = trial.totals().await;
        trial.redis().restart();
        trial.say(&format!(
            "restart {restart}: Redis killed and restarted from its AOF"
        ));
        let moment = format!("restart {restart}");
        trial.expect_writes_after(written, &moment, WRITES).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    feeder.stop().await;
    let settled = trial.settle(SETTLE).await;
    assert!(daemon.exited().is_none(), "the daemon crashed");
    trial.check(settled).await;
}

/// A snapshot (`SAVE`) is taken once the group has committed something on
/// every partition, and copied; the daemon goes on writing, for 1 to 3 s
/// after its first write since; then Redis is killed and started from that
/// older snapshot, as a restore from backup: what was applied since is gone
/// from Redis and must be applied again, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_rolled_back_to_an_older_snapshot_neither_loses_nor_doubles() {
    rolled_back("redis-rollback", Snapshot::EveryPartitionStarted).await;
}

/// The same, with the snapshot taken early, before the daemon wrote anything
/// for some partitions: the restored Redis has never heard of them, though
/// the group's offsets in Kafka have moved on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_rolled_back_to_before_some_partitions_were_written_neither_loses_nor_doubles() {
    rolled_back("redis-rollback-early", Snapshot::Early).await;
}

/// When the snapshot that Redis is rolled back to is taken.
enum Snapshot {
    /// Within a second of the daemon getting its partitions.
    Early,
    /// Once the group has committed offsets on every partition.
    EveryPartitionStarted,
}

async fn rolled_back(name: &'static str, moment: Snapshot) {
    let _one = chaos::one_at_a_time().await;
    let redis = RedisServer::start_persistent();
    let mut trial = Trial::start(name, redis, "batch_size = 500").await;
    trial.produce(60_000).await;
    let feeder = trial.feed(2_000);
    let mut daemon = trial.spawn_daemon();
    daemon.wait_assigned(ASSIGNMENT).await.unwrap();
    if let Snapshot::EveryPartitionStarted = moment {
        trial.wait_committed_on_every_partition(WRITES).await;
    }
    let before = trial.rng.between(Duration::ZERO, Duration::from_secs(1));
    tokio::time::sleep(before).await;
    let snapshot = tempfile::NamedTempFile::new().expect("a file for the snapshot");
    trial.redis().save_snapshot(snapshot.path());
    let saved = trial.totals().await;
    trial.say(&format!("snapshot taken ({} applications)", saved.n));
    trial
        .expect_writes_after(saved, "the snapshot", WRITES)
        .await;
    let after = trial
        .rng
        .between(Duration::from_secs(1), Duration::from_secs(3));
    tokio::time::sleep(after).await;
    let written = trial.totals().await;
    trial.redis().restart_from_snapshot(snapshot.path());
    let restored = trial.totals().await;
    trial.say(&format!(
        "rolled back from {} to {} applications",
        written.n, restored.n
    ));
    assert!(
        restored.n < written.n,
        "the rollback lost nothing: no writes between the snapshot and the restore"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    feeder.stop().await;
    let settled = trial.settle(SETTLE).await;
    assert!(daemon.exited().is_none(), "the daemon crashed");
    trial.check(settled).await;
}
