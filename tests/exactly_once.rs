//! Exactly-once trials, daemon faults: the real binary folds non-idempotent
//! counters (`n += 1`, `sum += amount` per account, 3,000 accounts, 4
//! partitions) from tansu into Redis while it is killed with SIGKILL, frozen
//! past its session timeout (a zombie), or joined and left by other members
//! under load. Afterwards every counter must equal the fold of every event
//! produced: 0 lost, 0 doubled. A failure names how many accounts are off and
//! how many applications were doubled or lost.
//!
//! Every record is produced as a record batch of its own: tansu 0.6 skips the
//! rest of a multi-record batch for a consumer that resumes inside it, which
//! would mix the broker's losses into the daemon's figures (see
//! `tests/support/trials`). Trials run one at a time; each prints its seed,
//! and `TRIAL_SEED=<seed>` replays its workload and its moments of harm.

mod support;

use std::time::{Duration, Instant};

use support::redis::RedisServer;
use support::trials::{Trial, chaos};

/// A restarted daemon waits for the killed member's session (6 s) to expire
/// before it gets partitions, then catches up.
const ASSIGNMENT: Duration = Duration::from_secs(60);
const SETTLE: Duration = Duration::from_secs(180);

/// 10 SIGKILLs during a catch-up through a backlog of 120k events, each at
/// a random moment: once the restarted daemon holds its partitions, after
/// it has applied a random number of events (0 to 12k, or `LIFE` at most),
/// so the kills spread over the whole catch-up at any speed. Each is
/// followed by a restart; a last daemon then runs to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_random_moments_of_a_catch_up_neither_loses_nor_doubles() {
    const KILLS: usize = 10;
    const BACKLOG: usize = 120_000;
    const LIFE: Duration = Duration::from_secs(10);
    let _one = chaos::one_at_a_time().await;
    let mut trial = Trial::start("kill9", RedisServer::start(), "batch_size = 500").await;
    trial.produce(BACKLOG).await;
    let end = trial.produced() as i64;
    let mut during_catch_up = 0;
    for kill in 1..=KILLS {
        let mut daemon = trial.spawn_daemon();
        let assigned = daemon.wait_assigned(ASSIGNMENT).await.unwrap();
        let born = Instant::now();
        let target = trial.rng.below((BACKLOG / KILLS) as u64) as i64;
        let before = trial.totals().await.n;
        let mut applied = 0;
        while applied < target && born.elapsed() < LIFE {
            tokio::time::sleep(Duration::from_millis(20)).await;
            applied = trial.totals().await.n - before;
        }
        daemon.kill();
        let committed = trial.committed().await;
        trial.say(&format!(
            "kill {kill}: SIGKILL {:?} after the assignment (which took {assigned:?}), \
             {applied} applications after it (target {target}); committed {committed} of {end}",
            born.elapsed()
        ));
        if committed < end {
            during_catch_up += 1;
        }
    }
    assert_eq!(
        during_catch_up, KILLS,
        "some kills came after the catch-up ended: make the backlog larger"
    );
    let _last = trial.spawn_daemon();
    let settled = trial.settle(SETTLE).await;
    trial.check(settled).await;
}

/// Daemon A is frozen (SIGSTOP) in the middle of a catch-up, just after one
/// of its batches landed, so with the next one being loaded and folded (a
/// batch of 2,000 takes the debug build about 200 ms), until its session has
/// expired and daemon B, of the same group, has taken every partition and
/// moved on; then A is thawed (SIGCONT) and finishes what it was doing. A
/// zombie must write nothing: counters exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zombie_thawed_after_its_partitions_moved_writes_nothing() {
    let _one = chaos::one_at_a_time().await;
    let mut trial = Trial::start("zombie", RedisServer::start(), "batch_size = 2000").await;
    trial.produce(60_000).await;
    let feeder = trial.feed(2_000);
    let mut zombie = trial.spawn_daemon();
    zombie.wait_assigned(ASSIGNMENT).await.unwrap();
    let running = trial
        .rng
        .between(Duration::from_millis(300), Duration::from_millis(1_500));
    tokio::time::sleep(running).await;
    let landed = trial.totals().await;
    trial
        .expect_writes_after(landed, "the zombie's start", Duration::from_secs(20))
        .await;
    zombie.freeze();
    trial.say(&format!(
        "froze daemon {} {running:?} after its assignment, as a batch landed",
        zombie.label
    ));
    let mut successor = trial.spawn_daemon();
    let took_over = successor.wait_assigned(ASSIGNMENT).await.unwrap();
    trial.say(&format!(
        "daemon {} took over after {took_over:?}",
        successor.label
    ));
    let before = trial.totals().await;
    trial
        .expect_writes_after(before, "the takeover", Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    zombie.thaw();
    trial.say(&format!("thawed daemon {}", zombie.label));
    tokio::time::sleep(Duration::from_secs(8)).await;
    feeder.stop().await;
    let settled = trial.settle(SETTLE).await;
    assert!(zombie.exited().is_none(), "the thawed daemon crashed");
    trial.check(settled).await;
}

/// Under a steady flow of events one daemon runs, two more join the group,
/// and the two leave again (SIGTERM: drain, commit, leave): partitions move
/// twice with batches in flight. Several runs, each with its own topic,
/// group and Redis; every one must be exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebalances_1_3_1_under_load_neither_lose_nor_double() {
    const RUNS: usize = 3;
    let _one = chaos::one_at_a_time().await;
    let mut verdicts = Vec::new();
    for run in 1..=RUNS {
        let mut trial = Trial::start("rebalance", RedisServer::start(), "batch_size = 200").await;
        trial.produce(20_000).await;
        let feeder = trial.feed(3_000);
        let mut first = trial.spawn_daemon();
        first.wait_assigned(ASSIGNMENT).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut joiners = [trial.spawn_daemon(), trial.spawn_daemon()];
        for joiner in &mut joiners {
            let took = joiner.wait_assigned(ASSIGNMENT).await.unwrap();
            trial.say(&format!(
                "daemon {} got partitions after {took:?}",
                joiner.label
            ));
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        for joiner in &mut joiners {
            let status = joiner.terminate(Duration::from_secs(30)).await;
            trial.say(&format!("daemon {} left: {status}", joiner.label));
            assert!(status.success(), "daemon {} exited {status}", joiner.label);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        feeder.stop().await;
        let settled = trial.settle(SETTLE).await;
        assert!(first.exited().is_none(), "the first daemon crashed");
        verdicts.push(format!(
            "run {run}: {}",
            match trial.verdict(settled).await {
                Ok(exact) => exact,
                Err(failure) => format!("FAILED {failure}"),
            }
        ));
    }
    assert!(
        verdicts.iter().all(|verdict| !verdict.contains("FAILED")),
        "rebalance trials:\n{}",
        verdicts.join("\n")
    );
}
