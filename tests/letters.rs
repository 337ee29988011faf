//! Dead letters taken up again, end to end through the real binary, tansu
//! and Redis: a definition refuses some events (they are dead-lettered), the
//! definition is fixed and the daemon restarted, the letters are replayed
//! (on two replicas at once, then again), and the projections equal the fold
//! of every event, each applied once. A letter that fails again goes back to
//! the topic and a purge passes it over; bad requests say what is wrong.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use projectionist::app::connect_caches;
use projectionist::health::Health;
use projectionist::letters::{self, Replay, Target};
use projectionist::metrics::Metrics;
use projectionist::pipeline::{Retry, Router};
use projectionist::projection::load_dir;
use projectionist::projector::Registry;
use projectionist::source::kafka::{KafkaDeadLetters, KafkaLetterLog};

use support::daemon::{
    ADMIN_TOKEN, BinaryDaemon, Setup, assert_same_projections, redis_projections, setup, wait_for,
};
use support::kafka::Broker;
use support::redis::RedisServer;
use support::shop::{produce, reference_fold, story};

const CATCH_UP: Duration = Duration::from_secs(90);
/// The sku whose stock the broken definition cannot count.
const BROKEN_SKU: &str = "sku-pen";

/// `product_stock` with a bug: an item added of [`BROKEN_SKU`] is "broken",
/// not a number, so the projector refuses it; every other projection (and
/// every other sku) applies it.
fn break_product_stock(setup: &Setup) {
    let file = setup.dir.path().join("projections/product_stock.toml");
    let fixed = std::fs::read_to_string(&file).unwrap();
    let line = r#"{ decrement = "available", by = ".data.quantity" },"#;
    assert!(fixed.contains(line), "the shipped product_stock changed");
    let broken = fixed.replace(
        line,
        &format!(
            r#"{{ decrement = "available", by = 'if .data.sku == "{BROKEN_SKU}" then "broken" else .data.quantity end' }},"#
        ),
    );
    std::fs::write(&file, broken).unwrap();
}

fn fix_product_stock(setup: &Setup) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("projections/product_stock.toml");
    let text = std::fs::read_to_string(shipped)
        .unwrap()
        .replace("\"shop.orders\"", &format!("{:?}", setup.orders))
        .replace("\"shop.inventory\"", &format!("{:?}", setup.inventory));
    std::fs::write(
        setup.dir.path().join("projections/product_stock.toml"),
        text,
    )
    .unwrap();
}

fn cli(args: &[&str], token: Option<&str>) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_projectionist"));
    command.args(args).env_remove("PROJECTIONIST_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("PROJECTIONIST_ADMIN_TOKEN", token);
    }
    command.output().expect("the projectionist binary runs")
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {body}"))
}

/// The letters listing, as the admin API answers it.
fn listing(setup: &Setup, query: &str) -> Vec<Value> {
    let (status, body) = setup.admin("GET", &format!("/admin/dead-letters{query}"), None);
    assert_eq!(status, 200, "{body}");
    json(&body)["letters"].as_array().unwrap().clone()
}

fn stop(mut daemon: BinaryDaemon) {
    let pid = daemon.id().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    assert!(daemon.wait().unwrap().success(), "the daemon exits cleanly");
}

fn metric(setup: &Setup, line_start: &str) -> f64 {
    let (_, metrics) = setup.http("/metrics");
    metrics
        .lines()
        .find(|line| line.starts_with(line_start))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in the metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn letters_replayed_after_a_fix_are_applied_once_even_when_the_replay_runs_twice() {
    let broker = Broker::shared();
    let redis = RedisServer::start();
    let setup = setup(broker, &redis.url(0), "").await;
    break_product_stock(&setup);
    let records = story(&setup.orders, &setup.inventory, 30, 6);
    let refused = records
        .iter()
        .filter(|record| {
            record.event["type"] == "shop.order.item_added"
                && record.event["data"]["sku"] == BROKEN_SKU
        })
        .count();
    assert!(refused > 0, "the premise: the story adds {BROKEN_SKU}");
    produce(broker, &records).await;
    // Not an event at all: no fix makes it one.
    broker
        .produce(&setup.orders, "ord-x", "{not json", &[], None)
        .await;

    let daemon = setup.spawn_binary();
    setup.wait_caught_up(broker, CATCH_UP).await;
    let listed = listing(&setup, "");
    assert_eq!(listed.len(), refused + 1, "{listed:#?}");
    assert!(listed.iter().all(|letter| letter["state"] == "pending"));
    let stock = listed
        .iter()
        .filter(|letter| letter["projection"] == "product_stock")
        .count();
    assert_eq!(stock, refused);
    let broken_fold = redis_projections(&setup.redis_url).await;
    let expected = reference_fold(&records, &setup.orders);
    assert_ne!(broken_fold, expected, "the premise: the bug shows");
    stop(daemon);

    fix_product_stock(&setup);
    let daemon = setup.spawn_binary();
    wait_for("the fixed daemon's admin API", CATCH_UP, || async {
        setup.admin("GET", "/admin/status", None).0 == 200
    })
    .await;
    let replay = "/admin/dead-letters/replay";

    // Refused, and nothing moved: without a token, with another token, and
    // letters that do not exist.
    assert_eq!(setup.admin("POST", replay, None).0, 401);
    assert_eq!(
        setup
            .admin("POST", replay, Some("another-token-another-token"))
            .0,
        401
    );
    let (status, body) = setup.admin("POST", &format!("{replay}?partition=9"), Some(ADMIN_TOKEN));
    assert_eq!(status, 400, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("has no partition 9")
    );
    let first = &listed[0];
    let past = format!("{replay}?partition={}&to=100000", first["partition"]);
    let (status, body) = setup.admin("POST", &past, Some(ADMIN_TOKEN));
    assert_eq!(status, 400, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("past the end")
    );
    let refused_cli = cli(
        &["dead-letters", "replay", "--admin", &admin_url(&setup)],
        None,
    );
    assert!(!refused_cli.status.success());
    assert!(
        listing(&setup, "")
            .iter()
            .all(|letter| letter["state"] == "pending")
    );

    // Replayed on two replicas at once (the daemon, and a second one in this
    // process): each refused event is applied once, to product_stock alone
    // (the other projections applied it the first time), and the garbage is
    // sent back. The later claim fences the other replay off a partition.
    let port = setup.admin_port;
    let on_the_daemon = tokio::task::spawn_blocking(move || {
        support::daemon::http_request(port, "POST", replay, Some(ADMIN_TOKEN))
    });
    let elsewhere = letters::replay(second_replica(&setup).await, Target::default());
    let (on_the_daemon, elsewhere) = tokio::join!(on_the_daemon, elsewhere);
    let (status, body) = on_the_daemon.unwrap();
    assert_eq!(status, 200, "{body}");
    let report = json(&body);
    let elsewhere = elsewhere.unwrap();
    assert!(
        report["finished"] == true || elsewhere.finished,
        "{report:#}\n{elsewhere:#?}"
    );
    let failures = report["failures"].as_array().unwrap().iter();
    let reasons: Vec<&str> = failures
        .map(|failure| failure["reason"].as_str().unwrap())
        .chain(elsewhere.failures.iter().map(|failure| failure.reason))
        .collect();
    assert!(reasons.contains(&"invalid_json"), "{reasons:?}");
    assert_same_projections(&redis_projections(&setup.redis_url).await, &expected);
    // Each counts what its checkpoints passed while it ran: together, all.
    let replayed = "projectionist_dead_letters_handled_total{outcome=\"replayed\"}";
    let counted = metric(&setup, replayed) as u64 + elsewhere.replayed;
    assert!(counted >= refused as u64, "{counted} of {refused}");

    // Run again, from the command line: nothing is applied twice; only the
    // garbage, sent back as a new letter, is pending, and fails again.
    let again = cli(
        &["dead-letters", "replay", "--admin", &admin_url(&setup)],
        Some(ADMIN_TOKEN),
    );
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(!again.status.success(), "a letter failed again: {again:?}");
    assert!(text.contains("0 replayed, 1 failed again"), "{text}");
    assert_same_projections(&redis_projections(&setup.redis_url).await, &expected);
    // One failure pending: the garbage. Usually as one letter; once in CI
    // (tansu, 2 busy cores) as two letters about it that appeared after the
    // replay read the topic's end. A later replay reads both and passes the
    // second over, so one failure is what the listing must show.
    let pending = listing(&setup, "?pending=true");
    let failures: BTreeSet<String> = pending
        .iter()
        .map(|letter| format!("{} {}", letter["source"], letter["reason"]))
        .collect();
    assert_eq!(failures.len(), 1, "{pending:#?}");
    assert_eq!(pending[0]["reason"], "invalid_json");
    assert_eq!(pending[0]["source"]["topic"].as_str(), Some(&*setup.orders));
    // The garbage and its letters sent back (one by each replica that
    // reached it, a duplicate the second replay passed over) are handled.
    let all = listing(&setup, "");
    let handled = all.iter().filter(|letter| letter["state"] == "handled");
    assert!(handled.count() >= refused + 2, "{all:#?}");

    // Purged, it is no longer pending: a replay finds nothing to do.
    let purged = cli(
        &[
            "dead-letters",
            "purge",
            "--all",
            "--admin",
            &admin_url(&setup),
        ],
        Some(ADMIN_TOKEN),
    );
    assert!(purged.status.success(), "{purged:?}");
    assert!(listing(&setup, "?pending=true").is_empty());
    let listing = cli(&["dead-letters", "--admin", &admin_url(&setup)], None);
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(
        text.contains("handled") && !text.contains("pending"),
        "{text}"
    );
    let started = Instant::now();
    let last = cli(
        &["dead-letters", "replay", "--admin", &admin_url(&setup)],
        Some(ADMIN_TOKEN),
    );
    assert!(last.status.success(), "{last:?}");
    assert!(String::from_utf8_lossy(&last.stdout).contains("0 replayed, 0 failed again"));
    eprintln!("an empty replay took {:?}", started.elapsed());
    assert_same_projections(&redis_projections(&setup.redis_url).await, &expected);
    let purged = "projectionist_dead_letters_handled_total{outcome=\"purged\"}";
    assert_eq!(metric(&setup, purged), 1.0);
    stop(daemon);
}

/// A replay as a second replica of the daemon would run it: the same
/// group, the fixed definitions, the same Redis and dead-letter topic.
async fn second_replica(setup: &Setup) -> Replay {
    let settings = projectionist::config::load(&setup.config).unwrap();
    let definitions = load_dir(&settings, &Registry::with_builtins()).unwrap();
    let retry = Retry {
        max_backoff: Duration::from_millis(500),
        metrics: Metrics::new(),
        health: Health::new(),
    };
    let caches = connect_caches(&settings, &retry).await.unwrap();
    let kafka = settings.kafka.clone();
    let topic = setup.dead_letters.clone();
    let (log, sink) = tokio::task::spawn_blocking(move || {
        let log = KafkaLetterLog::new(&kafka, &topic).unwrap();
        let sink = KafkaDeadLetters::new(&kafka, &topic, Metrics::new()).unwrap();
        (log, sink)
    })
    .await
    .unwrap();
    Replay {
        router: Router::new(definitions, &caches),
        envelope: settings.envelope.clone(),
        group: setup.group.clone(),
        topic: setup.dead_letters.clone(),
        log: Arc::new(log),
        sink: Arc::new(sink),
        batch_size: 7,
        max_backoff: Duration::from_millis(500),
        idle: Duration::from_secs(30),
        stop: CancellationToken::new(),
    }
}

fn admin_url(setup: &Setup) -> String {
    format!("http://127.0.0.1:{}", setup.admin_port)
}
