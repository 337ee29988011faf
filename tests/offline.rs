//! `projectionist test` and `projectionist replay`, run as a user would.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn projectionist(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_projectionist"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("projections")
}

/// A copy of the shipped projections folder, to break on purpose.
fn copy_of_projections() -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(shipped())
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

#[test]
fn the_shipped_fixtures_pass() {
    let output = projectionist(&["test", shipped().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ok   order_summary"), "{stdout}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

#[test]
fn a_wrong_expectation_fails_with_a_readable_diff() {
    let copy = copy_of_projections();
    let dir = copy.path().join("projections");
    let expected = dir.join("fixtures/product_stock/expected.json");
    let mut projections: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(&expected).unwrap()).unwrap();
    projections["product_stock:::sku-mug"]["available"] = Value::from(999);
    projections.insert(
        "product_stock:::sku-ghost".into(),
        serde_json::json!({"sku": "sku-ghost"}),
    );
    std::fs::write(&expected, serde_json::to_string(&projections).unwrap()).unwrap();

    let output = projectionist(&["test", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("FAIL product_stock"), "{stdout}");
    assert!(
        stdout.contains("product_stock:::sku-mug: differs"),
        "{stdout}"
    );
    assert!(stdout.contains("-  \"available\": 999"), "{stdout}");
    assert!(
        stdout.contains("product_stock:::sku-ghost: expected but absent"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok   order_summary"),
        "other fixtures still run: {stdout}"
    );
}

#[test]
fn a_broken_definition_stops_the_run_with_its_error() {
    let copy = copy_of_projections();
    let dir = copy.path().join("projections");
    let file = dir.join("product_stock.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("{data.sku}", "{data.sku")).unwrap();
    let output = projectionist(&["test", dir.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("product_stock.toml") && stderr.contains("unclosed"),
        "{stderr}"
    );
}

fn all_expected() -> serde_json::Map<String, Value> {
    let mut all = serde_json::Map::new();
    for entry in std::fs::read_dir(shipped().join("fixtures")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path().join("expected.json")).unwrap();
        let expected: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        all.extend(expected);
    }
    all
}

fn config_with_cache(dir: &Path, cache: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[caches.default]\n{cache}\n[projections]\ndir = {:?}\n",
            shipped()
        ),
    )
    .unwrap();
    path
}

/// A Redis of the test's own and a config whose default cache is its db 3.
fn on_redis() -> (support::redis::RedisServer, tempfile::TempDir, PathBuf) {
    let redis = support::redis::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_cache(
        dir.path(),
        &format!("provider = \"redis\"\nURI = {:?}", redis.url(3)),
    );
    (redis, dir, config)
}

/// `projectionist replay` of `events` under `config`.
fn replay(config: &Path, events: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "replay",
        "--config",
        config.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    projectionist(&args)
}

/// The `order_summary` story, whose events every replay test starts from.
fn story() -> PathBuf {
    shipped().join("fixtures/order_summary/events.jsonl")
}

/// `projectionist replay` of the story under `config`, which must succeed.
fn replay_story(config: &Path, extra: &[&str]) -> Output {
    let output = replay(config, &story(), extra);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn replay_dry_run_prints_the_projections_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_cache(dir.path(), "provider = \"memory\"");
    let output = replay_story(&config, &["--dry-run"]);
    let printed: serde_json::Map<String, Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            (
                line["key"].as_str().unwrap().to_owned(),
                line["projection"].clone(),
            )
        })
        .collect();
    assert_eq!(printed, all_expected());
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing written"));
}

#[tokio::test]
async fn replay_writes_the_projections_to_redis() {
    let (redis, _dir, config) = on_redis();
    let output = replay_story(&config, &[]);
    assert!(
        output.stdout.is_empty(),
        "a real replay prints no projections"
    );
    let stored = support::daemon::redis_projections(&redis.url(3)).await;
    let expected: std::collections::BTreeMap<String, Value> = all_expected()
        .into_iter()
        .map(|(key, value)| (key, support::shop::normalize(value)))
        .collect();
    assert_eq!(stored, expected);
}

/// The story with its 5th line changed to `broken`.
fn story_with_line_five(dir: &Path, broken: &str) -> PathBuf {
    let story = std::fs::read_to_string(story()).unwrap();
    let mut lines: Vec<&str> = story.lines().collect();
    lines[4] = broken;
    let path = dir.join("events.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// A line that is not a record stops the replay before it writes anything,
/// naming the line; an event the decoder refuses fails alone, named by its
/// line number (its offset), and the rest is applied.
#[tokio::test]
async fn a_bad_line_stops_a_replay_and_a_bad_event_fails_alone() {
    let (redis, dir, config) = on_redis();
    let not_a_record = story_with_line_five(dir.path(), r#"{"topic": "shop.orders", "evnt": {}}"#);
    let output = replay(&config, &not_a_record, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("events.jsonl:5:"), "{stderr}");
    assert!(
        support::daemon::redis_projections(&redis.url(3))
            .await
            .is_empty(),
        "nothing is written before the file is known good"
    );

    let refused = r#"{"topic": "shop.orders", "key": "x", "event": {"specversion": "1.0", "type": "shop.order.paid", "data": {"order_id": "x", "amount_cents": 1e400}}}"#;
    let output = replay(&config, &story_with_line_five(dir.path(), refused), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("failed record 5: invalid_json"), "{stderr}");
    assert!(stderr.contains("(1 failures)"), "{stderr}");
    let stored = support::daemon::redis_projections(&redis.url(3)).await;
    assert!(stored.len() > 1, "the other lines are applied: {stored:?}");
}

/// A file's offsets are its line numbers, not a log's: a replay keeps no
/// checkpoint, so a second replay of the same file applies it again, as asked
/// (a checkpoint would have skipped every line).
#[tokio::test]
async fn a_replay_keeps_no_checkpoint_so_a_second_one_applies_again() {
    let (redis, _dir, config) = on_redis();
    replay_story(&config, &[]);
    let once = support::daemon::redis_projections(&redis.url(3)).await;
    replay_story(&config, &[]);
    let twice = support::daemon::redis_projections(&redis.url(3)).await;
    let paid = |stored: &std::collections::BTreeMap<String, Value>| -> i64 {
        stored
            .iter()
            .filter(|(key, _)| key.starts_with("daily_sales:::"))
            .map(|(_, value)| value["paid_orders"].as_i64().unwrap())
            .sum()
    };
    assert!(paid(&once) > 0);
    assert_eq!(paid(&twice), 2 * paid(&once), "counters applied twice");
    let client = redis::Client::open(redis.url(3)).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let bookkeeping: Vec<String> = redis::cmd("KEYS")
        .arg("@projectionist*")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(bookkeeping.is_empty(), "{bookkeeping:?}");
}

/// A decimal total summed line by line: folded in one batch (the state
/// stays in memory between events), or one event per batch (read back from
/// its JSON text before every event), the projection comes out the same to
/// the last bit. serde_json's default float parser
/// can be one unit in the last place off, which made the stored decimals
/// depend on where batches happened to end.
#[test]
fn a_decimal_folded_in_memory_or_read_back_between_events_is_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let projections = dir.path().join("projections");
    std::fs::create_dir(&projections).unwrap();
    std::fs::write(
        projections.join("invoice_summary.toml"),
        r#"name = "invoice_summary"
topics = ["billing.invoices"]
identifier = "{data.invoice_id}"

[[handler]]
on = "billing.line.added"
do = [{ set = "total", from = "$state.total + .data.quantity * .data.unit_price" }]
"#,
    )
    .unwrap();
    // The lines of the invoice whose total came out 181.65 one way and
    // 181.64999999999998 the other.
    let lines: String = (1..=8)
        .map(|line| {
            let event = serde_json::json!({"specversion": "1.0", "type": "billing.line.added",
                "id": format!("l{line}"), "source": "/billing",
                "data": {"invoice_id": "inv-0", "quantity": 1 + line % 3,
                    "unit_price": 4.95 + f64::from(line) * 1.25}});
            format!(
                "{}\n",
                serde_json::json!({"topic": "billing.invoices", "event": event})
            )
        })
        .collect();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, lines).unwrap();
    let folded = |name: &str, pipeline: &str| {
        let config = dir.path().join(name);
        std::fs::write(
            &config,
            format!("[projections]\ndir = {projections:?}\n[pipeline]\n{pipeline}"),
        )
        .unwrap();
        let output = projectionist(&[
            "replay",
            "--config",
            config.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            "--dry-run",
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let in_memory = folded("one-batch.toml", "batch_size = 100\n");
    let read_back = folded("read-back.toml", "batch_size = 1\n");
    assert!(in_memory.contains("\"total\""), "{in_memory}");
    assert_eq!(in_memory, read_back);
}
