//! The pipeline's delivery rules, in process and with time under control: a real
//! memory cache behind a wrapper that can refuse writes, and checkpoint and
//! dead-letter sinks that log when they are called.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use projectionist::cache::memory::MemoryCache;
use projectionist::cache::{
    Cache, CacheError, CacheResult, Claim, Commit, CommitOutcome, Connection, Partition,
    Projection, RemainingTtl, Ttl, Version, WriteOp,
};
use projectionist::config::Settings;
use projectionist::event::Envelope;
use projectionist::event::RawRecord;
use projectionist::fixtures::read_jsonl;
use projectionist::health::Health;
use projectionist::metrics::Metrics;
use projectionist::pipeline::{Pipeline, Positioning, Retry, Router, Wiring};
use projectionist::projection::load_dir;
use projectionist::projector::Registry;
use projectionist::source::{
    DeadLetter, DeadLetters, Delivery, Offsets, SourceControl, SourceError,
};

type Batch = Vec<RawRecord>;

type Log = Arc<Mutex<Vec<String>>>;

/// The memory cache, refusing the next `failures` writes as if Redis were down,
/// and logging every write that lands.
#[derive(Debug)]
struct Flaky {
    inner: MemoryCache,
    failures: Mutex<u32>,
    /// A write "another replica" makes between our load and our write, once.
    interference: Mutex<Option<WriteOp>>,
    /// A key whose stored value reads back as not JSON (someone else wrote it).
    corrupt: Mutex<Option<String>>,
    /// A key that turns corrupt along with the interfering write.
    corrupted_by_interference: Mutex<Option<String>>,
    log: Log,
}

#[async_trait]
impl Cache for Flaky {
    async fn ping(&self) -> bool {
        *self.failures.lock().unwrap() == 0
    }
    fn get_connection(&self) -> Connection {
        self.inner.get_connection()
    }
    fn default_ttl(&self) -> Ttl {
        self.inner.default_ttl()
    }
    async fn add(&self, projection: &Projection, ttl: Option<Ttl>) -> CacheResult<()> {
        self.inner.add(projection, ttl).await
    }
    async fn get(&self, key: &str) -> CacheResult<Option<Projection>> {
        self.inner.get(key).await
    }
    async fn get_all(
        &self,
        pattern: &str,
        from: usize,
        size: usize,
    ) -> CacheResult<Vec<Projection>> {
        self.inner.get_all(pattern, from, size).await
    }
    async fn count(&self, pattern: &str) -> CacheResult<usize> {
        self.inner.count(pattern).await
    }
    async fn remove_by_key(&self, key: &str) -> CacheResult<()> {
        self.inner.remove_by_key(key).await
    }
    async fn remove_by_key_pattern(&self, pattern: &str) -> CacheResult<usize> {
        self.inner.remove_by_key_pattern(pattern).await
    }
    async fn flush_all(&self) -> CacheResult<()> {
        self.inner.flush_all().await
    }
    async fn set_ttl(&self, key: &str, ttl: Ttl) -> CacheResult<bool> {
        self.inner.set_ttl(key, ttl).await
    }
    async fn get_ttl(&self, key: &str) -> CacheResult<Option<RemainingTtl>> {
        self.inner.get_ttl(key).await
    }
    async fn get_many_versioned(
        &self,
        keys: &[String],
    ) -> CacheResult<Vec<(Option<Projection>, Version)>> {
        let corrupt = self.corrupt.lock().unwrap().clone();
        if let Some(key) = corrupt
            && keys.contains(&key)
        {
            // As the adapters answer: one bad value spoils the whole multi-get.
            return Err(CacheError::CorruptValue {
                key,
                reason: "expected value at line 1 column 1".into(),
            });
        }
        self.inner.get_many_versioned(keys).await
    }
    async fn apply_if_unchanged(
        &self,
        batch: &[WriteOp],
        expected: &[(String, Version)],
    ) -> CacheResult<bool> {
        self.inner.apply_if_unchanged(batch, expected).await
    }
    async fn claim(&self, scope: &str, partitions: &[Partition]) -> CacheResult<Vec<Claim>> {
        self.inner.claim(scope, partitions).await
    }
    async fn commit(&self, commit: Commit<'_>) -> CacheResult<CommitOutcome> {
        {
            let mut failures = self.failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                self.log.lock().unwrap().push("write refused".into());
                return Err(CacheError::Unavailable("connection refused".into()));
            }
        }
        let interference = self.interference.lock().unwrap().take();
        if let Some(write) = interference {
            self.inner.apply(&[write]).await?;
            let corrupted = self.corrupted_by_interference.lock().unwrap().take();
            if corrupted.is_some() {
                *self.corrupt.lock().unwrap() = corrupted;
            }
        }
        let outcome = self.inner.commit(commit).await?;
        let entry = match &outcome {
            CommitOutcome::Applied => format!("write {}", commit.writes.len()),
            CommitOutcome::Conflict => "write conflicted".to_owned(),
            other => format!("write refused: {other:?}"),
        };
        self.log.lock().unwrap().push(entry);
        Ok(outcome)
    }
    async fn apply(&self, batch: &[WriteOp]) -> CacheResult<()> {
        self.inner.apply(batch).await
    }
}

struct LoggingSource(Log);

impl SourceControl for LoggingSource {
    fn seek(&self, partition: &Partition, offset: i64) {
        self.0
            .lock()
            .unwrap()
            .push(format!("seek {partition}={offset}"));
    }
    fn store_offsets(&self, offsets: &Offsets) -> Result<(), SourceError> {
        let shown: Vec<String> = offsets
            .iter()
            .map(|(t, p, o)| format!("{t}/{p}={o}"))
            .collect();
        self.0
            .lock()
            .unwrap()
            .push(format!("store {}", shown.join(",")));
        Ok(())
    }
}

struct LoggingDeadLetters {
    log: Log,
    failures: Mutex<u32>,
    letters: Mutex<Vec<DeadLetter>>,
}

#[async_trait]
impl DeadLetters for LoggingDeadLetters {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), SourceError> {
        let mut failures = self.failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            self.log.lock().unwrap().push("dead letters refused".into());
            return Err(SourceError::Unavailable("broker down".into()));
        }
        self.letters.lock().unwrap().extend_from_slice(letters);
        self.log
            .lock()
            .unwrap()
            .push(format!("dead letters {}", letters.len()));
        Ok(())
    }
}

struct Rig {
    pipeline: Pipeline,
    metrics: Metrics,
    cache: Arc<Flaky>,
    dead_letters: Arc<LoggingDeadLetters>,
    log: Log,
}

/// A pipeline over the shipped definitions and a memory cache, reading as
/// from a file (every record once, in order), with partitions 0-3 of both
/// topics assigned.
async fn rig(write_failures: u32, dead_letter_failures: u32) -> Rig {
    rig_reading(write_failures, dead_letter_failures, Positioning::InOrder).await
}

async fn rig_reading(
    write_failures: u32,
    dead_letter_failures: u32,
    positioning: Positioning,
) -> Rig {
    let log: Log = Arc::default();
    let cache = Arc::new(Flaky {
        inner: MemoryCache::new(Ttl::from_secs(300).unwrap()),
        failures: Mutex::new(write_failures),
        interference: Mutex::new(None),
        corrupt: Mutex::new(None),
        corrupted_by_interference: Mutex::new(None),
        log: Arc::clone(&log),
    });
    let mut settings = Settings::defaults();
    settings.projections_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("projections");
    let definitions = load_dir(&settings, &Registry::with_builtins()).unwrap();
    let caches: BTreeMap<String, Arc<dyn Cache>> =
        BTreeMap::from([("default".to_owned(), Arc::clone(&cache) as Arc<dyn Cache>)]);
    let dead_letters = Arc::new(LoggingDeadLetters {
        log: Arc::clone(&log),
        failures: Mutex::new(dead_letter_failures),
        letters: Mutex::default(),
    });
    let metrics = Metrics::new();
    let mut pipeline = Pipeline::new(Wiring {
        router: Router::new(definitions, &caches),
        envelope: Envelope::CloudEvents,
        metrics: metrics.clone(),
        retry: Retry {
            max_backoff: Duration::from_millis(20),
            metrics: metrics.clone(),
            health: Health::new(),
        },
        source: Arc::new(LoggingSource(Arc::clone(&log))),
        dead_letters: Some(Arc::clone(&dead_letters) as Arc<dyn DeadLetters>),
        group: "test".to_owned(),
        positioning,
    });
    let partitions = (0..4)
        .flat_map(|p| {
            [
                Partition::new("shop.orders", p),
                Partition::new("shop.inventory", p),
            ]
        })
        .collect();
    pipeline
        .deliver(Delivery::Assigned(partitions))
        .await
        .unwrap();
    log.lock().unwrap().clear();
    Rig {
        pipeline,
        metrics,
        cache,
        dead_letters,
        log,
    }
}

/// The shipped example story, each record on partition 0 of its topic, at
/// its line number as offset.
fn story_batches(size: usize) -> Vec<Batch> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("projections/fixtures/order_summary/events.jsonl");
    let records = read_jsonl(&path).unwrap();
    let raw: Vec<RawRecord> = records
        .iter()
        .enumerate()
        .map(|(offset, record)| record.to_raw_record(offset as i64))
        .collect();
    raw.chunks(size).map(<[RawRecord]>::to_vec).collect()
}

fn expected() -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    for name in [
        "order_summary",
        "customer_orders",
        "product_stock",
        "daily_sales",
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("projections/fixtures/{name}/expected.json"));
        let expected: BTreeMap<String, Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        all.extend(expected);
    }
    all
}

async fn contents(cache: &dyn Cache) -> BTreeMap<String, Value> {
    cache
        .get_all("*", 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|projection| (projection.key(), projection.into_value()))
        .collect()
}

#[tokio::test]
async fn batches_fold_the_story_into_the_expected_projections() {
    let mut rig = rig(0, 0).await;
    for batch in story_batches(5) {
        rig.pipeline.process(batch).await.unwrap();
    }
    assert_eq!(contents(rig.cache.as_ref()).await, expected());
}

#[tokio::test]
async fn offsets_are_stored_only_after_the_writes_they_cover_land() {
    let mut rig = rig(3, 0).await;
    let batches = story_batches(8);
    let batch_count = batches.len();
    for batch in batches {
        rig.pipeline.process(batch).await.unwrap();
    }
    let log = rig.log.lock().unwrap().clone();
    assert_eq!(
        &log[..3],
        ["write refused", "write refused", "write refused"],
        "{log:#?}"
    );
    // Every store follows a landed write made since the previous store.
    let mut written_since_store = false;
    for entry in &log {
        if entry.starts_with("write ") && entry != "write refused" {
            written_since_store = true;
        } else if entry.starts_with("store ") {
            assert!(
                written_since_store,
                "offsets stored before their writes: {log:#?}"
            );
            written_since_store = false;
        }
    }
    assert_eq!(
        log.iter().filter(|e| e.starts_with("store ")).count(),
        batch_count
    );
    assert_eq!(
        contents(rig.cache.as_ref()).await,
        expected(),
        "retries lost nothing"
    );
}

#[tokio::test]
async fn several_events_for_one_key_in_a_batch_become_one_write() {
    let mut rig = rig(0, 0).await;
    let all: Batch = story_batches(1000).concat();
    let events = all.len();
    rig.pipeline.process(all).await.unwrap();
    let log = rig.log.lock().unwrap().clone();
    let writes: usize = log[0].strip_prefix("write ").unwrap().parse().unwrap();
    assert_eq!(
        writes,
        expected().len() + 1,
        "one write per touched key (+1 deleted order) for {events} events: {log:?}"
    );
    assert_eq!(
        log[1], "store shop.inventory/0=20,shop.orders/0=23",
        "offsets: last record of each partition + 1"
    );
}

fn bad_records() -> Batch {
    let good = json!({"specversion": "1.0", "type": "shop.stock.received", "id": "g", "source": "/t",
        "data": {"sku": "sku-ok", "quantity": 2}});
    let no_sku = json!({"specversion": "1.0", "type": "shop.stock.received", "id": "b", "source": "/t",
        "data": {"quantity": 2}});
    let bad_quantity = json!({"specversion": "1.0", "type": "shop.stock.received", "id": "c", "source": "/t",
        "data": {"sku": "sku-ok", "quantity": "two"}});
    let unknown = json!({"specversion": "1.0", "type": "shop.stock.counted", "id": "d", "source": "/t", "data": {}});
    let payloads = [
        b"not json at all".to_vec(),
        no_sku.to_string().into_bytes(),
        good.to_string().into_bytes(),
        bad_quantity.to_string().into_bytes(),
        unknown.to_string().into_bytes(),
    ];
    payloads
        .into_iter()
        .enumerate()
        .map(|(offset, payload)| RawRecord {
            position: projectionist::event::Position {
                topic: "shop.inventory".into(),
                partition: 1,
                offset: offset as i64,
            },
            key: None,
            payload: Some(payload),
            headers: vec![],
            timestamp_ms: None,
        })
        .collect()
}

#[tokio::test]
async fn permanent_failures_are_dead_lettered_before_the_offsets_move() {
    let mut rig = rig(0, 2).await;
    rig.pipeline.process(bad_records()).await.unwrap();
    let log = rig.log.lock().unwrap().clone();
    // Letters go out before the commit that passes over their records: a
    // crash in between sends them again rather than losing them.
    assert_eq!(
        log,
        [
            "dead letters refused",
            "dead letters refused",
            "dead letters 2",
            "dead letters 1",
            "write 1",
            "store shop.inventory/1=5"
        ]
    );
    let letters = rig.dead_letters.letters.lock().unwrap().clone();
    let reasons: Vec<_> = letters
        .iter()
        .map(|l| (l.record.position.offset, l.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            (0, "invalid_json"),
            (1, "missing_identifier"),
            (3, "projector_error")
        ]
    );
    assert_eq!(letters[1].projection.as_deref(), Some("product_stock"));
    assert_eq!(
        contents(rig.cache.as_ref()).await,
        BTreeMap::from([(
            "product_stock:::sku-ok".to_owned(),
            json!({"sku": "sku-ok", "available": 2})
        )])
    );
    let metrics = rig.metrics.render();
    assert!(
        metrics.contains(
            "projectionist_events_skipped_total{projection=\"none\",reason=\"unrouted_type\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "projectionist_events_failed_total{projection=\"none\",reason=\"invalid_json\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn records_of_a_revoked_partition_are_dropped_unapplied() {
    let mut rig = rig_reading(0, 0, Positioning::Seek).await;
    let partition = Partition::new("shop.inventory", 1);
    let (done, _finished) = std::sync::mpsc::sync_channel(1);
    rig.pipeline
        .deliver(Delivery::Revoked {
            partitions: vec![partition.clone()],
            done,
        })
        .await
        .unwrap();
    rig.pipeline.process(bad_records()).await.unwrap();
    assert!(
        rig.log.lock().unwrap().is_empty(),
        "nothing written, nothing stored"
    );
    // Assigned again: the records fetched before the seek to the checkpoint
    // still do not apply.
    rig.pipeline
        .deliver(Delivery::Assigned(vec![partition]))
        .await
        .unwrap();
    rig.pipeline.process(bad_records()).await.unwrap();
    assert_eq!(*rig.log.lock().unwrap(), ["seek shop.inventory/1=0"]);
    assert!(contents(rig.cache.as_ref()).await.is_empty());
}

/// A writer collecting log output, to read what the pipeline logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_events_log_line_carries_its_traceparent_and_position() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut rig = rig(0, 0).await;
            let mut batch = bad_records();
            batch.truncate(1);
            batch[0]
                .headers
                .push(("traceparent".into(), Some(traceparent.as_bytes().to_vec())));
            rig.pipeline.process(batch).await.unwrap();
        });
    });
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|line| line.contains("event failed permanently"))
        .unwrap_or_else(|| panic!("no failure logged: {logs}"));
    assert!(line.contains(traceparent), "{line}");
    assert!(
        line.contains("topic=shop.inventory") && line.contains("offset=0"),
        "{line}"
    );
    assert!(
        line.contains("reason=\"invalid_json\"") || line.contains("reason=invalid_json"),
        "{line}"
    );
}

#[tokio::test]
async fn a_key_changed_by_another_writer_meanwhile_is_folded_again_not_overwritten() {
    let mut rig = rig(0, 0).await;
    // Another replica sets sku-mug's stock between our load and our write.
    let theirs = Projection::new(
        "product_stock",
        "sku-mug",
        json!({"sku": "sku-mug", "available": 1000}),
    )
    .unwrap();
    *rig.cache.interference.lock().unwrap() = Some(WriteOp::Upsert {
        projection: theirs,
        expiry: projectionist::cache::Expiry::Never,
    });
    let all: Batch = story_batches(1000).concat();
    rig.pipeline.process(all).await.unwrap();
    let log = rig.log.lock().unwrap().clone();
    assert_eq!(log[0], "write conflicted", "{log:?}");
    assert!(log[1].starts_with("write "), "{log:?}");
    let mut want = expected();
    // The story's net effect on sku-mug, applied on top of the other write.
    let story_mug = want["product_stock:::sku-mug"]["available"]
        .as_i64()
        .unwrap();
    want.insert(
        "product_stock:::sku-mug".into(),
        json!({"sku": "sku-mug", "available": 1000 + story_mug}),
    );
    assert_eq!(contents(rig.cache.as_ref()).await, want);
    let metrics = rig.metrics.render();
    assert!(
        metrics.contains("projectionist_retries_total{component=\"conflict\"} 1"),
        "{metrics}"
    );
}

/// Fold the story while another replica's write makes the first attempt
/// conflict, with `product_stock:::sku-mug` unreadable from the start or only
/// from the retry on; its three events must be dead-lettered, each once.
async fn corrupt_key_across_a_conflict(corrupt_from_the_start: bool) {
    let mut rig = rig(0, 0).await;
    let corrupt = Some("product_stock:::sku-mug".to_owned());
    if corrupt_from_the_start {
        *rig.cache.corrupt.lock().unwrap() = corrupt;
    } else {
        *rig.cache.corrupted_by_interference.lock().unwrap() = corrupt;
    }
    let theirs = Projection::new(
        "product_stock",
        "sku-tee",
        json!({"sku": "sku-tee", "available": 1000}),
    )
    .unwrap();
    *rig.cache.interference.lock().unwrap() = Some(WriteOp::Upsert {
        projection: theirs,
        expiry: projectionist::cache::Expiry::Never,
    });
    let all: Batch = story_batches(1000).concat();
    rig.pipeline.process(all).await.unwrap();
    let log = rig.log.lock().unwrap().clone();
    let writes: Vec<&String> = log.iter().filter(|e| e.starts_with("write")).collect();
    assert_eq!(writes[0], "write conflicted", "{log:?}");
    assert!(writes[1].starts_with("write "), "{log:?}");
    let letters = rig.dead_letters.letters.lock().unwrap().clone();
    let failed: Vec<_> = letters
        .iter()
        .map(|l| (l.record.position.offset, l.projection.as_deref(), l.reason))
        .collect();
    assert_eq!(
        failed,
        [
            (0, Some("product_stock"), "corrupt_state"),
            (4, Some("product_stock"), "corrupt_state"),
            (8, Some("product_stock"), "corrupt_state"),
        ]
    );
}

#[tokio::test]
async fn events_on_a_corrupt_key_are_dead_lettered_once_even_across_a_conflict() {
    corrupt_key_across_a_conflict(true).await;
}

#[tokio::test]
async fn a_key_that_turns_corrupt_before_a_conflict_retry_is_dead_lettered_not_dropped() {
    corrupt_key_across_a_conflict(false).await;
}
