//! `projectionist replay` streams its file: memory is bounded by a batch, not
//! by the file. Two files, one four times the other (100 MB), are replayed
//! into a real Redis; the process's peak resident memory (the kernel's own
//! accounting of each child, from `wait4`) must barely grow between them,
//! where reading the whole file first grew with it.

mod support;

use std::io::Write as _;
use std::path::Path;

use serde_json::json;

/// Events of about 2.5 KB each: a note the projection ignores pads them.
const EVENTS: usize = 40_000;

fn write_events(path: &Path, events: usize) -> u64 {
    let note = "x".repeat(2_400);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for n in 0..events {
        let line = json!({"topic": "shop.inventory", "key": format!("sku-{n}"), "event": {
            "specversion": "1.0", "type": "shop.stock.received", "id": format!("evt-{n}"),
            "source": "/shop", "time": "2024-05-01T09:00:00Z",
            "data": {"sku": format!("sku-{n}"), "quantity": 1, "note": note}}});
        writeln!(file, "{line}").unwrap();
    }
    file.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

#[tokio::test]
async fn a_replay_holds_a_batch_in_memory_not_the_file() {
    let redis = support::redis::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.jsonl");
    let large = dir.path().join("large.jsonl");
    let small_bytes = write_events(&small, EVENTS / 4);
    let large_bytes = write_events(&large, EVENTS);
    let config = dir.path().join("config.toml");
    let projections = Path::new(env!("CARGO_MANIFEST_DIR")).join("projections");
    std::fs::write(
        &config,
        format!(
            "[caches.default]\nprovider = \"redis\"\nURI = {:?}\n[projections]\ndir = {projections:?}\n",
            redis.url(0)
        ),
    )
    .unwrap();
    let small_peak = support::replay::replay_peak(&config, &small);
    let large_peak = support::replay::replay_peak(&config, &large);
    let mb = |bytes: u64| bytes as f64 / 1e6;
    println!(
        "replay: {:.1} MB file -> peak {:.1} MB resident; {:.1} MB file -> peak {:.1} MB",
        mb(small_bytes),
        mb(small_peak),
        mb(large_bytes),
        mb(large_peak)
    );
    let grown = large_peak.saturating_sub(small_peak);
    assert!(
        // Reading the whole file first grows by more than the file itself;
        // the allocator's own variation stays well under a third of it.
        grown < (large_bytes - small_bytes) / 3,
        "peak grew by {grown} bytes for {} more bytes of file",
        large_bytes - small_bytes
    );
    let stored = support::daemon::redis_projections(&redis.url(0)).await;
    assert_eq!(stored.len(), EVENTS, "every event applied");
}
