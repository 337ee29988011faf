//! Throughput of every cache adapter, in entries per second, next to what
//! `redis-benchmark -t set -P 64` reaches on the same `redis-server`: memory,
//! one Redis, and a local Redis Cluster (three primaries with a replica each,
//! all on this machine, so it shows the cost of splitting by slot, not the
//! gain of more servers).
//!
//! Run with `cargo bench --bench cache`. It starts its own server and cluster
//! on free ports, so nothing else is touched. `BENCH_ENTRIES` sets how many projections each
//! measurement writes or reads (default 100 000; single Redis writes and reads
//! use a fifth of that, one round trip each). The target: batched Redis writes,
//! the daemon's exactly-once commit included, reach at least 0.8 of what
//! `redis-benchmark` reaches on the same workload: `SET ... PX` over as many
//! keys, with values of the same size and the same TTL, pipelined as deep as
//! a batch. (`-t set -P 64`, one key with 3-byte values, is printed as well:
//! it keeps the server in its CPU cache, so it is not a read model's work.)
//!
//! Batched writes are measured three ways: documents built just before they
//! are written (as the daemon's fold does), one batch or several in flight;
//! the conditional write the daemon used before exactly-once
//! (`apply_if_unchanged`, at least once); the daemon's exactly-once `commit`
//! (the same check plus epochs and a checkpoint advanced in the same script);
//! and documents built long before (cold: serializing them mostly waits on
//! memory). The exactly-once target: `commit` at most 15% slower than
//! `apply_if_unchanged`, measured in the same run. The exactly-once row is
//! the daemon's whole write step: the floors read (a cluster's slot marks;
//! nothing elsewhere) and the commit over them.

#[path = "support_bench/orders.rs"]
mod orders;
#[path = "../tests/support/mod.rs"]
mod support;

// The daemon's allocator (see `src/main.rs`), so the figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orders::order;
use projectionist::cache::memory::MemoryCache;
use projectionist::cache::{
    Advance, Cache, Commit, CommitOutcome, Expiry, Partition, Projection, Ttl, Version, WriteOp,
    cluster as cluster_cache, redis as redis_cache,
};
use support::cluster::RedisCluster;
use support::redis::RedisServer;

const BATCH: usize = 500;
/// Batches in flight at once for the concurrent variant: what the daemon does
/// when several partitions flush together.
const CONCURRENT_BATCHES: usize = 4;
/// Of `redis-benchmark` on the same workload (see the module docs).
const TARGET_RATIO: f64 = 0.8;

/// Run `work`, which handles `entries` entries, and return entries per second.
async fn rate<F: Future<Output = ()>>(entries: usize, work: F) -> f64 {
    let started = Instant::now();
    work.await;
    entries as f64 / started.elapsed().as_secs_f64()
}

fn upserts(projections: &[Projection]) -> Vec<WriteOp> {
    projections
        .iter()
        .map(|projection| WriteOp::Upsert {
            projection: projection.clone(),
            expiry: Expiry::CacheDefault,
        })
        .collect()
}

/// Batch writes measured on every adapter, plus single writes and reads.
struct Figures {
    single_add: f64,
    batched_apply: f64,
    concurrent_apply: f64,
    cold_apply: f64,
    conditional_apply: f64,
    checkpointed_commit: f64,
    single_get: f64,
    get_many: f64,
}

/// Batches built just before they are written, this many at a time.
const GROUP: usize = 8;

/// How a batch is written in [`write_fresh`].
#[derive(Clone, Copy)]
enum Write {
    /// `apply`, `lanes` batches in flight at once.
    Apply { lanes: usize },
    /// `apply_if_unchanged` over versions read just before (untimed), one at a time.
    Conditional,
    /// `commit` over versions read just before (untimed), one at a time, each
    /// batch advancing [`PARTITIONS`] partitions' checkpoints.
    Checkpointed,
}

/// Partitions a checkpointed batch advances, as a daemon owning 4 would.
const PARTITIONS: i32 = 4;

/// Write `count` batches of new documents, in groups of [`GROUP`] batches built
/// just before they are written; only the writes are timed. Entries per second.
///
/// The daemon writes documents its fold has just built, which are still in the
/// CPU's cache. Serializing 100 000 documents built up front (the cold row)
/// mostly waits on memory, and measures that rather than the write path.
async fn write_fresh(cache: &Arc<dyn Cache>, count: usize, write: Write) -> f64 {
    let mut writing = Duration::ZERO;
    let scope = "bench/default";
    let partitions: Vec<Partition> = (0..PARTITIONS)
        .map(|number| Partition::new("orders", number))
        .collect();
    let claims = cache.claim(scope, &partitions).await.expect("claim");
    let mut next: Vec<Option<i64>> = claims.iter().map(|claim| claim.next).collect();
    for first in (0..count).step_by(GROUP) {
        let batches: Vec<Vec<WriteOp>> = (first..(first + GROUP).min(count))
            .map(|batch| {
                let documents: Vec<Projection> =
                    (batch * BATCH..(batch + 1) * BATCH).map(order).collect();
                upserts(&documents)
            })
            .collect();
        let batches = Arc::new(batches);
        match write {
            Write::Apply { lanes } => {
                let started = Instant::now();
                let mut tasks = Vec::new();
                for lane in 0..lanes {
                    let cache = Arc::clone(cache);
                    let batches = Arc::clone(&batches);
                    tasks.push(tokio::spawn(async move {
                        for batch in batches.iter().skip(lane).step_by(lanes) {
                            cache.apply(batch).await.expect("apply");
                        }
                    }));
                }
                for task in tasks {
                    task.await.expect("a lane finishes");
                }
                writing += started.elapsed();
            }
            Write::Conditional => {
                for batch in batches.iter() {
                    let expected = versions_of(cache.as_ref(), batch).await;
                    let started = Instant::now();
                    let applied = cache
                        .apply_if_unchanged(batch, &expected)
                        .await
                        .expect("apply");
                    writing += started.elapsed();
                    assert!(applied, "nothing else writes these keys");
                }
            }
            Write::Checkpointed => {
                for batch in batches.iter() {
                    let expected = versions_of(cache.as_ref(), batch).await;
                    let step = (BATCH as i64) / i64::from(PARTITIONS);
                    let advances: Vec<Advance> = partitions
                        .iter()
                        .zip(&claims)
                        .zip(&next)
                        .map(|((partition, claim), from)| Advance {
                            partition: partition.clone(),
                            epoch: claim.epoch,
                            from: *from,
                            to: from.unwrap_or(0) + step,
                        })
                        .collect();
                    let commit = Commit {
                        scope,
                        advances: &advances,
                        expected: &expected,
                        writes: batch,
                        generation: 0,
                    };
                    let keys: Vec<String> = expected.iter().map(|(key, _)| key.clone()).collect();
                    let started = Instant::now();
                    let floors = cache
                        .floors(scope, &keys, &partitions)
                        .await
                        .expect("floors");
                    let outcome = cache
                        .commit_over(commit, floors.as_ref())
                        .await
                        .expect("commit");
                    writing += started.elapsed();
                    assert_eq!(outcome, CommitOutcome::Applied, "nobody else writes here");
                    next = advances.iter().map(|advance| Some(advance.to)).collect();
                }
            }
        }
    }
    (count * BATCH) as f64 / writing.as_secs_f64()
}

/// What each key of `batch` holds now, as a checked write expects it.
async fn versions_of(cache: &dyn Cache, batch: &[WriteOp]) -> Vec<(String, Version)> {
    let keys: Vec<String> = batch.iter().map(WriteOp::key).collect();
    let versions = cache.get_many_versioned(&keys).await.expect("get_many");
    keys.into_iter()
        .zip(versions.into_iter().map(|(_, version)| version))
        .collect()
}

async fn measure(cache: Arc<dyn Cache>, projections: &[Projection], singles: usize) -> Figures {
    let keys: Vec<String> = projections.iter().map(Projection::key).collect();
    let single_add = rate(singles, async {
        for projection in &projections[..singles] {
            cache.add(projection, None).await.expect("add");
        }
    })
    .await;
    let count = projections.len() / BATCH;
    // First, so that every row below overwrites keys that exist, as the
    // daemon mostly does.
    let cold: Vec<Vec<WriteOp>> = projections.chunks(BATCH).map(upserts).collect();
    let cold_apply = rate(count * BATCH, async {
        for batch in &cold {
            cache.apply(batch).await.expect("apply");
        }
    })
    .await;
    let batched_apply = write_fresh(&cache, count, Write::Apply { lanes: 1 }).await;
    let concurrent_apply = write_fresh(
        &cache,
        count,
        Write::Apply {
            lanes: CONCURRENT_BATCHES,
        },
    )
    .await;
    let conditional_apply = write_fresh(&cache, count, Write::Conditional).await;
    let checkpointed_commit = write_fresh(&cache, count, Write::Checkpointed).await;
    let single_get = rate(singles, async {
        // Spread over the whole key space, like `get_many`, not just its start.
        for key in keys.iter().step_by(keys.len() / singles).take(singles) {
            assert!(cache.get(key).await.expect("get").is_some());
        }
    })
    .await;
    let get_many = rate(keys.len(), async {
        for chunk in keys.chunks(BATCH) {
            let found = cache.get_many(chunk).await.expect("get_many");
            assert!(found.iter().all(Option::is_some));
        }
    })
    .await;
    Figures {
        single_add,
        batched_apply,
        concurrent_apply,
        cold_apply,
        conditional_apply,
        checkpointed_commit,
        single_get,
        get_many,
    }
}

fn print(adapter: &str, figures: &Figures) {
    let rows = [
        ("add, one at a time".to_owned(), figures.single_add),
        (format!("apply, batches of {BATCH}"), figures.batched_apply),
        (
            format!("apply, batches of {BATCH}, {CONCURRENT_BATCHES} in flight"),
            figures.concurrent_apply,
        ),
        (
            format!("apply, batches of {BATCH}, cold documents"),
            figures.cold_apply,
        ),
        (
            format!("apply_if_unchanged, batches of {BATCH}"),
            figures.conditional_apply,
        ),
        (
            format!("commit (exactly once), batches of {BATCH}"),
            figures.checkpointed_commit,
        ),
        ("get, one at a time".to_owned(), figures.single_get),
        (format!("get_many, {BATCH} keys each"), figures.get_many),
    ];
    for (what, per_second) in rows {
        println!("{adapter:<8} {what:<44} {per_second:>12.0} entries/s");
    }
}

/// `redis-benchmark -P <pipeline> -n 1000000 -q` on `port` with `args`:
/// requests per second.
fn redis_benchmark(port: u16, pipeline: usize, args: &[&str]) -> f64 {
    let output = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-P", &pipeline.to_string()])
        .args(["-n", "1000000", "-q"])
        .args(args)
        .output()
        .expect("redis-benchmark is installed");
    let text = String::from_utf8_lossy(&output.stdout);
    // `-q` prints progress lines ending in `\r`, then
    // `<command>: 1234.56 requests per second, ...`.
    text.split(['\r', '\n'])
        .filter_map(|line| line.split_once(" requests per second"))
        .filter_map(|(before, _)| before.rsplit(": ").next())
        .filter_map(|number| number.trim().parse::<f64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no figure in redis-benchmark's output: {text:?}"))
}

fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: a small smoke
    // run then keeps the benchmark working without costing CI a full run.
    let full = std::env::args().any(|arg| arg == "--bench");
    let entries: usize = std::env::var("BENCH_ENTRIES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(if full { 100_000 } else { 2_000 });
    let singles = (entries / 5).max(1);
    let projections: Vec<Projection> = (0..entries).map(order).collect();
    let average_bytes = projections
        .iter()
        .map(|projection| projection.value().to_string().len())
        .sum::<usize>()
        / entries.max(1);
    let ttl = Ttl::from_secs(3600).expect("a valid TTL");
    let server = RedisServer::start();
    let cluster = RedisCluster::start();
    // One thread: the connection's driver task and the caller then share it, which
    // spares a cross-thread wakeup per batch (costly on small virtual machines).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    println!("{entries} projections of {average_bytes} bytes of JSON on average");
    println!(
        "single add/get: {singles} entries; redis-server on port {}",
        server.port()
    );
    println!(
        "redis cluster: 3 primaries with a replica each, seeds {:?}",
        cluster.urls()
    );
    let (memory, redis, on_cluster) = runtime.block_on(async {
        let memory: Arc<dyn Cache> = Arc::new(MemoryCache::new(ttl));
        let memory = measure(memory, &projections, singles).await;
        let redis: Arc<dyn Cache> = Arc::new(
            redis_cache::connect(&server.url(0), ttl)
                .await
                .expect("the bench's own redis-server answers"),
        );
        let redis = measure(redis, &projections, singles).await;
        let on_cluster: Arc<dyn Cache> = Arc::new(
            cluster_cache::connect(&cluster.urls(), ttl)
                .await
                .expect("the bench's own cluster answers"),
        );
        let on_cluster = measure(on_cluster, &projections, singles).await;
        (memory, redis, on_cluster)
    });
    print("memory", &memory);
    print("redis", &redis);
    print("cluster", &on_cluster);

    let one_key = redis_benchmark(server.port(), 64, &["-t", "set"]);
    println!(
        "redis-benchmark -t set -P 64 -n 1000000 (one key, 3-byte values): {one_key:.0} requests/s"
    );
    // The reference: redis-benchmark on the bench's own workload. Without `-r`
    // it sets one key with 3-byte values, which keeps the server in its CPU
    // cache; over as many keys as the bench writes, with values of its size and
    // a TTL, the server alone manages far less.
    let millis = ttl.as_millis().to_string();
    let keys = entries.to_string();
    let bytes = average_bytes.to_string();
    let same_work = redis_benchmark(
        server.port(),
        BATCH,
        &[
            "-r",
            &keys,
            "-d",
            &bytes,
            "SET",
            "order_summary:::__rand_int__",
            "__data__",
        ]
        .into_iter()
        .chain(["PX", millis.as_str()])
        .collect::<Vec<_>>(),
    );
    println!(
        "redis-benchmark on the same workload (SET ... PX {millis} over {entries} keys, {average_bytes}-byte values, -P {BATCH}): {same_work:.0} requests/s"
    );
    for (what, figure) in [
        ("batched", redis.batched_apply),
        ("batched, several in flight", redis.concurrent_apply),
        ("conditional batched", redis.conditional_apply),
        ("exactly-once batched", redis.checkpointed_commit),
    ] {
        let ratio = figure / same_work;
        let verdict = if ratio >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        };
        println!(
            "redis {what} writes / redis-benchmark on the same workload = {ratio:.2} (target >= {TARGET_RATIO:.2}: {verdict}); / one key = {:.2}",
            figure / one_key
        );
    }
    for (what, cluster, single) in [
        (
            "exactly-once commit",
            on_cluster.checkpointed_commit,
            redis.checkpointed_commit,
        ),
        ("apply", on_cluster.batched_apply, redis.batched_apply),
        ("get_many", on_cluster.get_many, redis.get_many),
    ] {
        println!(
            "cluster / one redis, {what}: {:.2} (a script or read per slot, all nodes on this machine)",
            cluster / single
        );
    }
    for (adapter, figures) in [
        ("memory", &memory),
        ("redis", &redis),
        ("cluster", &on_cluster),
    ] {
        let slower = 1.0 - figures.checkpointed_commit / figures.conditional_apply;
        let verdict = if slower <= 0.15 { "met" } else { "NOT met" };
        println!(
            "{adapter} exactly-once commit vs at-least-once apply_if_unchanged: {:.0}% slower (target <= 15%: {verdict})",
            slower * 100.0
        );
    }
}
