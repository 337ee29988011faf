//! Throughput of both cache adapters, in entries per second, next to what
//! `redis-benchmark -t set -P 64` reaches on the same `redis-server`.
//!
//! Run with `cargo bench --bench cache`. It starts its own server on a free port,
//! so nothing else is touched. `BENCH_ENTRIES` sets how many projections each
//! measurement writes or reads (default 100 000; single Redis writes and reads
//! use a fifth of that, one round trip each). The target: batched Redis writes
//! reach at least a third of `redis-benchmark`'s figure.

#[path = "../tests/support/mod.rs"]
mod support;

use std::future::Future;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use projectionist::cache::memory::MemoryCache;
use projectionist::cache::{Cache, Expiry, Projection, Ttl, WriteOp, redis as redis_cache};
use serde_json::json;
use support::redis::RedisServer;

const BATCH: usize = 500;
/// Batches in flight at once for the concurrent variant: what the daemon does
/// when several partitions flush together.
const CONCURRENT_BATCHES: usize = 4;
const TARGET_RATIO: f64 = 1.0 / 3.0;

/// A realistic projection: an order summary of about 300 bytes of JSON.
fn order(n: usize) -> Projection {
    let status = ["placed", "paid", "shipped", "delivered"][n % 4];
    let value = json!({
        "order_id": format!("ord-{n:08}"),
        "customer_id": format!("cus-{:06}", n % 50_000),
        "status": status,
        "currency": "EUR",
        "total": (n % 10_000) as f64 / 100.0 + 9.99,
        "items": [
            {"sku": format!("SKU-{:05}", n % 977), "qty": 1 + n % 3, "price": 19.95},
            {"sku": format!("SKU-{:05}", n % 613), "qty": 1, "price": 4.5},
        ],
        "shipping": {"city": "Lyon", "country": "FR", "postcode": "69001"},
        "updated_at": "2026-05-01T12:34:56Z",
        "version": n % 17,
    });
    Projection::new("order_summary", format!("ord-{n:08}"), value).expect("an object")
}

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

/// The four measurements every adapter gets, plus concurrent batches.
struct Figures {
    single_add: f64,
    batched_apply: f64,
    concurrent_apply: f64,
    single_get: f64,
    get_many: f64,
}

async fn measure(cache: Arc<dyn Cache>, projections: &[Projection], singles: usize) -> Figures {
    let keys: Vec<String> = projections.iter().map(Projection::key).collect();
    let single_add = rate(singles, async {
        for projection in &projections[..singles] {
            cache.add(projection, None).await.expect("add");
        }
    })
    .await;
    let batches: Vec<Vec<WriteOp>> = projections.chunks(BATCH).map(upserts).collect();
    let batched_apply = rate(projections.len(), async {
        for batch in &batches {
            cache.apply(batch).await.expect("apply");
        }
    })
    .await;
    let batches = Arc::new(batches);
    let concurrent_apply = rate(projections.len(), async {
        let mut lanes = Vec::new();
        for lane in 0..CONCURRENT_BATCHES {
            let cache = Arc::clone(&cache);
            let batches = Arc::clone(&batches);
            lanes.push(tokio::spawn(async move {
                for batch in batches.iter().skip(lane).step_by(CONCURRENT_BATCHES) {
                    cache.apply(batch).await.expect("apply");
                }
            }));
        }
        for lane in lanes {
            lane.await.expect("a lane finishes");
        }
    })
    .await;
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
        ("get, one at a time".to_owned(), figures.single_get),
        (format!("get_many, {BATCH} keys each"), figures.get_many),
    ];
    for (what, per_second) in rows {
        println!("{adapter:<7} {what:<38} {per_second:>12.0} entries/s");
    }
}

/// `redis-benchmark -t set -P 64` on `port` (plus `extra` arguments): requests
/// per second.
fn redis_benchmark(port: u16, extra: &[&str]) -> f64 {
    let output = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-t", "set", "-P", "64"])
        .args(["-n", "1000000", "-q"])
        .args(extra)
        .output()
        .expect("redis-benchmark is installed");
    let text = String::from_utf8_lossy(&output.stdout);
    // `-q` prints progress lines ending in `\r`, then `SET: 1234.56 requests per second, ...`.
    text.split(['\r', '\n'])
        .filter_map(|line| line.trim().strip_prefix("SET: "))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|number| number.parse::<f64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no SET figure in redis-benchmark's output: {text:?}"))
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
    let (memory, redis) = runtime.block_on(async {
        let memory: Arc<dyn Cache> = Arc::new(MemoryCache::new(ttl));
        let memory = measure(memory, &projections, singles).await;
        let redis: Arc<dyn Cache> = Arc::new(
            redis_cache::connect(&server.url(0), ttl)
                .await
                .expect("the bench's own redis-server answers"),
        );
        let redis = measure(redis, &projections, singles).await;
        (memory, redis)
    });
    print("memory", &memory);
    print("redis", &redis);

    let reference = redis_benchmark(server.port(), &[]);
    println!("redis-benchmark -t set -P 64 -n 1000000: {reference:.0} requests/s");
    // Context only: the same with values the size of our projections.
    let sized = redis_benchmark(server.port(), &["-d", &average_bytes.to_string()]);
    println!("  (the same with -d {average_bytes}: {sized:.0} requests/s)");
    for (what, figure) in [
        ("batched", redis.batched_apply),
        ("batched, several in flight", redis.concurrent_apply),
    ] {
        let ratio = figure / reference;
        let verdict = if ratio >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        };
        println!(
            "redis {what} writes / redis-benchmark = {ratio:.2} (target >= {TARGET_RATIO:.2}: {verdict})"
        );
    }
}
