//! Memory, beside what it holds: the memory cache's resident size per byte of
//! projections, and `projectionist replay`'s peak beside the size of its file.
//!
//! `cargo bench --bench memory` writes 1,000,000 projections of about 300
//! bytes into a memory cache and prints the resident growth beside the payload
//! (keys plus JSON; target: at most 2x). Then it replays a file of 1,000,000
//! events (about 450 MB) with the release binary, into the memory cache and
//! into a real Redis, and prints each peak (the kernel's `wait4` figure) beside
//! the file's size: streaming keeps it bounded by a batch (and, for the memory
//! cache, by what the cache holds), not by the file. Under `cargo test` it
//! runs a small smoke version so it cannot rot.

#[path = "../tests/support/mod.rs"]
mod support;

// The daemon's allocator (see `src/main.rs`), so the figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use projectionist::cache::memory::MemoryCache;
use projectionist::cache::{Cache, Expiry, Projection, Ttl, WriteOp};
use serde_json::json;
use support::redis::RedisServer;

const TARGET_RATIO: f64 = 2.0;
const BATCH: usize = 1_000;

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let count = if full { 1_000_000 } else { 20_000 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // The replays first: a child forked from a large process is charged that
    // process's pages until it execs, which `wait4`'s peak would include.
    replay_peaks(count);
    runtime.block_on(memory_cache_density(count));
}

/// An order summary of about 300 bytes of JSON, as the pipeline bench's.
fn order(n: usize) -> Projection {
    let status = ["placed", "paid", "shipped", "delivered"][n % 4];
    let value = json!({
        "order_id": format!("ord-{n:08}"),
        "customer_id": format!("cus-{:06}", n % 50_000),
        "status": status,
        "currency": "EUR",
        "total_cents": (n % 10_000) * 100 + 999,
        "lines": [
            {"sku": format!("SKU-{:05}", n % 977), "quantity": 1 + n % 3, "unit_price_cents": 1995},
            {"sku": format!("SKU-{:05}", n % 613), "quantity": 1, "unit_price_cents": 450},
        ],
        "item_count": 2 + n % 3,
        "placed_at": "2026-05-01T12:30:00Z",
        "updated_at": "2026-05-01T12:34:56Z",
    });
    Projection::new("order_summary", format!("ord-{n:08}"), value).expect("a valid projection")
}

/// Resident memory of this process, in bytes (`/proc/self/statm`).
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("statm's resident field");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

async fn memory_cache_density(count: usize) {
    let cache = MemoryCache::new(Ttl::from_secs(86_400).expect("a valid TTL"));
    let before = resident();
    let mut payload = 0u64;
    // Built a batch at a time, as the pipeline does, so what stays resident is
    // the cache, not the bench's own copies.
    for start in (0..count).step_by(BATCH) {
        let batch: Vec<WriteOp> = (start..(start + BATCH).min(count))
            .map(|n| {
                let projection = order(n);
                payload += (projection.key().len()
                    + serde_json::to_string(projection.value()).unwrap().len())
                    as u64;
                WriteOp::Upsert {
                    projection,
                    expiry: Expiry::CacheDefault,
                }
            })
            .collect();
        cache.apply(&batch).await.expect("a memory write");
    }
    let grown = resident().saturating_sub(before);
    assert_eq!(cache.count("order_summary:::*").await.unwrap(), count);
    let ratio = grown as f64 / payload as f64;
    println!(
        "memory cache: {count} projections, payload {:.1} MB (keys + JSON, {} bytes each on average), resident growth {:.1} MB = {ratio:.2}x the payload (target <= {TARGET_RATIO}: {})",
        mb(payload),
        payload / count as u64,
        mb(grown),
        if ratio <= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// `placed` events for distinct orders, padded by a note the projection
/// ignores to about 450 bytes a line, as an export of a real stream is.
fn write_events(path: &Path, events: usize) -> u64 {
    let note = "x".repeat(150);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for n in 0..events {
        let line = json!({"topic": "shop.orders", "key": format!("ord-{n:08}"), "event": {
            "specversion": "1.0", "type": "shop.order.placed", "id": format!("evt-{n:08}"),
            "source": "/shop/checkout", "time": "2026-05-01T09:00:00Z",
            "data": {"order_id": format!("ord-{n:08}"), "customer_id": format!("cus-{:06}", n % 50_000),
                     "currency": "EUR", "note": note}}});
        writeln!(file, "{line}").unwrap();
    }
    file.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// Peak resident memory of `projectionist replay` under `config`, in bytes.
fn replay_peak(config: &Path, events: &Path) -> u64 {
    // Reaped by wait4 below, which also reports its peak memory.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_projectionist"))
        .args(["replay", "--config"])
        .arg(config)
        .arg("--events")
        .arg(events)
        .stdout(Stdio::null())
        .spawn()
        .expect("the projectionist binary runs");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 reaps our own child and writes into the structs given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "replay failed: {status}"
    );
    // Linux reports kilobytes.
    usage.ru_maxrss as u64 * 1024
}

fn replay_peaks(count: usize) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let file_bytes = write_events(&events, count);
    let projections = Path::new(env!("CARGO_MANIFEST_DIR")).join("projections");
    let configs = [
        ("memory cache", String::new()),
        (
            "Redis",
            format!(
                "[caches.default]\nprovider = \"redis\"\nURI = {:?}\n",
                redis.url(0)
            ),
        ),
    ];
    for (target, caches) in configs {
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!("{caches}[projections]\ndir = {projections:?}\n"),
        )
        .unwrap();
        let peak = replay_peak(&config, &events);
        println!(
            "replay of {count} events, {:.0} MB file, into the {target}: peak {:.0} MB resident ({:.2}x the file)",
            mb(file_bytes),
            mb(peak),
            peak as f64 / file_bytes as f64
        );
    }
}
