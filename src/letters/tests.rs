//! Replays and purges against a dead-letter topic in memory and the memory
//! cache, with non-idempotent counters: a letter applied twice, or to a
//! projection that had applied its record already, shows in the sums.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::cache::memory::MemoryCache;
use crate::config::Settings;
use crate::event::{Envelope, Position, RawRecord};
use crate::pipeline::Router;
use crate::projector::Registry;
use crate::source::DeadLetter;
use crate::source::headers::TRUNCATED;

mod memory_log;

use memory_log::{MemoryLog, TOPIC};

/// `counters` (a count and a sum per account) and `tally` (a count per
/// account), both over deposits on topic `bank`.
fn router(cache: &Arc<dyn Cache>) -> Router {
    let dir = tempfile::tempdir().unwrap();
    let handler = |steps: &str| {
        format!(
            "ttl = \"never\"\ntopics = [\"bank\"]\nidentifier = \"{{data.account}}\"\n\
             [[handler]]\non = \"bank.deposited\"\ndo = [{steps}]\n"
        )
    };
    let counters =
        handler(r#"{ increment = "n", by_value = 1 }, { increment = "sum", by = ".data.amount" }"#);
    let tally = handler(r#"{ increment = "n", by_value = 1 }"#);
    std::fs::write(
        dir.path().join("counters.toml"),
        format!("name = \"counters\"\n{counters}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tally.toml"),
        format!("name = \"tally\"\n{tally}"),
    )
    .unwrap();
    let mut settings = Settings::defaults();
    settings.projections_dir = dir.path().to_owned();
    let definitions = crate::projection::load_dir(&settings, &Registry::with_builtins()).unwrap();
    Router::new(
        definitions,
        &[("default".to_owned(), Arc::clone(cache))].into(),
    )
}

fn memory() -> Arc<dyn Cache> {
    Arc::new(MemoryCache::new(
        crate::cache::Ttl::from_secs_f64(600.0).unwrap(),
    ))
}

/// A letter about the deposit at `offset` of `bank`, failed for `projection`.
fn deposit(offset: i64, account: &str, amount: i64, projection: Option<&str>) -> DeadLetter {
    let event = json!({"specversion": "1.0", "type": "bank.deposited", "id": format!("d-{offset}"),
        "source": "/bank", "data": {"account": account, "amount": amount}});
    letter(offset, event.to_string().into_bytes(), projection)
}

fn letter(offset: i64, payload: Vec<u8>, projection: Option<&str>) -> DeadLetter {
    DeadLetter {
        record: RawRecord {
            position: Position {
                topic: "bank".into(),
                partition: 0,
                offset,
            },
            key: Some(b"account".to_vec()),
            payload: Some(payload),
            headers: Vec::new(),
            timestamp_ms: None,
        },
        projection: projection.map(str::to_owned),
        reason: "projector_error",
        error: "broken".to_owned(),
    }
}

fn replay_over(log: MemoryLog, router: &Router, batch_size: usize) -> Replay {
    let sink = log.sink();
    Replay {
        router: router.clone(),
        envelope: Envelope::CloudEvents,
        group: "g".to_owned(),
        topic: TOPIC.to_owned(),
        log: Arc::new(log),
        sink: Arc::new(sink),
        batch_size,
        max_backoff: Duration::from_millis(10),
        idle: Duration::from_secs(2),
        stop: tokio_util::sync::CancellationToken::new(),
    }
}

/// The projection under `key`, `Value::Null` when there is none.
async fn stored(cache: &Arc<dyn Cache>, key: &str) -> Value {
    let found = cache.get(key).await.unwrap();
    found.map_or(Value::Null, |projection| projection.into_value())
}

fn everything() -> Target {
    Target::default()
}

#[tokio::test]
async fn a_letter_goes_once_to_the_projection_it_failed_for_only() {
    let cache = memory();
    let router = router(&cache);
    let log = MemoryLog::new(2);
    // Failed for counters only: tally applied it when it came.
    log.append(0, &deposit(10, "a", 5, Some("counters")));
    // Undecodable then (the envelope was fixed since): every projection missed it.
    log.append(1, &deposit(11, "a", 7, None));
    // Sent twice (a crash between the letter and the commit).
    log.append(1, &deposit(10, "a", 5, Some("counters")));
    // Still not an event (and sent twice too: a duplicate is passed over
    // before it is decoded).
    log.append(0, &letter(12, b"{not json".to_vec(), None));
    log.append(1, &letter(12, b"{not json".to_vec(), None));
    let report = replay(replay_over(log.reader(), &router, 10), everything())
        .await
        .unwrap();
    assert!(report.finished, "{report:?}");
    assert_eq!(
        (report.replayed, report.failed_again, report.duplicates),
        (2, 1, 2)
    );
    assert_eq!(
        stored(&cache, "counters:::a").await,
        json!({"n": 2, "sum": 12})
    );
    assert_eq!(stored(&cache, "tally:::a").await, json!({"n": 1}));
    // The letter that failed again went back to the topic, about its record.
    assert_eq!(log.len(0), 3);
    let failure = &report.failures[0];
    assert_eq!((failure.partition, failure.offset), (0, 1));
    assert_eq!(failure.source, "bank/0@12");
    assert_eq!(failure.reason, "invalid_json");

    // Again: nothing applied twice; only the new letter is pending, and fails.
    let again = replay(replay_over(log.reader(), &router, 10), everything())
        .await
        .unwrap();
    assert_eq!((again.replayed, again.failed_again), (0, 1), "{again:?}");
    assert_eq!(
        stored(&cache, "counters:::a").await,
        json!({"n": 2, "sum": 12})
    );
    assert_eq!(stored(&cache, "tally:::a").await, json!({"n": 1}));
}

#[tokio::test]
async fn a_replay_cut_short_is_finished_by_the_next_one_without_applying_anything_twice() {
    let cache = memory();
    let router = router(&cache);
    let log = MemoryLog::new(1);
    for offset in 0..40 {
        log.append(0, &deposit(offset, "a", offset + 1, Some("counters")));
    }
    let cut = replay_over(log.reader().failing_after(17), &router, 4);
    let error = replay(cut, everything()).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    let partial = stored(&cache, "counters:::a").await;
    let applied = partial["n"].as_i64().unwrap();
    assert!(
        (1..40).contains(&applied),
        "the premise: cut midway ({partial})"
    );
    let pending = handled(&router_caches(&router), "g", TOPIC, [0]).await;
    assert_eq!(
        pending.unwrap()[&0],
        Some(applied),
        "the checkpoint moved with the writes"
    );

    let report = replay(replay_over(log.reader(), &router, 4), everything())
        .await
        .unwrap();
    assert!(report.finished);
    assert_eq!(report.replayed, 40 - applied as u64);
    assert_eq!(
        stored(&cache, "counters:::a").await,
        json!({"n": 40, "sum": 820})
    );
}

#[tokio::test]
async fn two_replays_at_once_apply_each_letter_once() {
    let cache = memory();
    let router = router(&cache);
    let log = MemoryLog::new(2);
    for offset in 0..60 {
        let account = if offset % 2 == 0 { "a" } else { "b" };
        log.append(
            (offset % 2) as i32,
            &deposit(offset, account, 1, Some("counters")),
        );
    }
    let first = replay(replay_over(log.reader(), &router, 3), everything());
    let second = replay(replay_over(log.reader(), &router, 5), everything());
    let (first, second) = tokio::join!(first, second);
    let (first, second) = (first.unwrap(), second.unwrap());
    for account in ["a", "b"] {
        assert_eq!(
            stored(&cache, &format!("counters:::{account}")).await,
            json!({"n": 30, "sum": 30}),
            "{first:?}\n{second:?}"
        );
    }
    assert!(first.finished || second.finished);
    let pending = handled(&router_caches(&router), "g", TOPIC, [0, 1]).await;
    assert_eq!(
        pending.unwrap(),
        BTreeMap::from([(0, Some(30)), (1, Some(30))])
    );
}

#[tokio::test]
async fn a_replay_to_an_offset_stops_there_and_a_purge_passes_letters_over() {
    let cache = memory();
    let router = router(&cache);
    let log = MemoryLog::new(1);
    for offset in 0..10 {
        log.append(0, &deposit(offset, "a", 1 << offset, Some("counters")));
    }
    let up_to_2 = Target {
        partition: Some(0),
        to: Some(2),
    };
    let report = replay(replay_over(log.reader(), &router, 10), up_to_2)
        .await
        .unwrap();
    assert!(report.finished);
    assert_eq!(report.replayed, 3);
    assert_eq!(stored(&cache, "counters:::a").await["sum"], 0b111);

    let caches = router_caches(&router);
    let up_to_5 = Target {
        partition: Some(0),
        to: Some(5),
    };
    let purged = purge(&caches, "g", TOPIC, &log.reader(), up_to_5)
        .await
        .unwrap();
    assert_eq!(purged.purged, 3);
    assert_eq!(
        handled(&caches, "g", TOPIC, [0]).await.unwrap()[&0],
        Some(6)
    );
    // Purging behind the checkpoint moves nothing back.
    purge(&caches, "g", TOPIC, &log.reader(), up_to_2)
        .await
        .unwrap();
    assert_eq!(
        handled(&caches, "g", TOPIC, [0]).await.unwrap()[&0],
        Some(6)
    );

    let rest = replay(replay_over(log.reader(), &router, 10), everything())
        .await
        .unwrap();
    assert_eq!(rest.replayed, 4);
    assert_eq!(
        stored(&cache, "counters:::a").await["sum"],
        0b11_1100_0111,
        "3, 4 and 5 purged, never applied"
    );
    let beyond = Target {
        partition: Some(0),
        to: Some(10),
    };
    let error = replay(replay_over(log.reader(), &router, 10), beyond)
        .await
        .unwrap_err();
    assert!(error.is_bad_request(), "{error}");
}

#[tokio::test]
async fn a_cut_letter_or_an_unknown_projection_fails_again_instead_of_being_applied() {
    let cache = memory();
    let router = router(&cache);
    let log = MemoryLog::new(1);
    let mut cut = deposit(0, "a", 5, Some("counters"));
    cut.record
        .headers
        .push((TRUNCATED.to_owned(), Some(b"true".to_vec())));
    log.append(0, &cut);
    log.append(0, &deposit(1, "a", 5, Some("renamed_since")));
    let report = replay(replay_over(log.reader(), &router, 10), everything())
        .await
        .unwrap();
    assert_eq!((report.replayed, report.failed_again), (0, 2), "{report:?}");
    let reasons: Vec<&str> = report.failures.iter().map(|f| f.reason).collect();
    assert_eq!(reasons, ["truncated_letter", "unknown_projection"]);
    assert_eq!(stored(&cache, "counters:::a").await, Value::Null);
}

#[tokio::test]
async fn a_replay_stopped_by_a_shutdown_is_unfinished_and_says_so() {
    let cache = memory();
    let router = router(&cache);
    let log = MemoryLog::new(1);
    log.append(0, &deposit(0, "a", 5, Some("counters")));
    let stopping = replay_over(log.reader(), &router, 10);
    stopping.stop.cancel();
    let report = replay(stopping, everything()).await.unwrap();
    assert!(!report.finished);
    assert!(report.note.unwrap().contains("shutting down"));
    assert_eq!(stored(&cache, "counters:::a").await, Value::Null);
}
