//! The rig the pipeline tests share: the shipped definitions over a real
//! memory cache behind a wrapper that can refuse writes (or land one and
//! report a timeout), and a source and dead-letter sink that log each call.

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
use projectionist::event::{Envelope, RawRecord};
use projectionist::fixtures::read_jsonl;
use projectionist::health::Health;
use projectionist::metrics::Metrics;
use projectionist::pipeline::{Pipeline, Positioning, Retry, Router, Wiring};
use projectionist::projection::load_dir;
use projectionist::projector::Registry;
use projectionist::source::{
    DeadLetter, DeadLetters, Delivery, Offsets, SourceControl, SourceError,
};

pub type Batch = Vec<RawRecord>;

pub type Log = Arc<Mutex<Vec<String>>>;

/// The memory cache, refusing the next `failures` writes as if Redis were down,
/// and logging every write that lands.
#[derive(Debug)]
pub struct Flaky {
    /// Swapped for an empty cache by [`Flaky::roll_back_to_empty`].
    inner: Mutex<Arc<MemoryCache>>,
    pub failures: Mutex<u32>,
    /// A write "another replica" makes between our load and our write, once.
    pub interference: Mutex<Option<WriteOp>>,
    /// A key whose stored value reads back as not JSON (someone else wrote it).
    pub corrupt: Mutex<Option<String>>,
    /// A key that turns corrupt along with the interfering write.
    pub corrupted_by_interference: Mutex<Option<String>>,
    /// Commits that land and are then reported as timed out (Redis stalled
    /// past the client's timeout, then carried on).
    pub landed_but_timed_out: Mutex<u32>,
    pub log: Log,
}

#[async_trait]
impl Cache for Flaky {
    async fn ping(&self) -> bool {
        *self.failures.lock().unwrap() == 0
    }
    fn get_connection(&self) -> Connection {
        self.inner().get_connection()
    }
    fn default_ttl(&self) -> Ttl {
        self.inner().default_ttl()
    }
    async fn add(&self, projection: &Projection, ttl: Option<Ttl>) -> CacheResult<()> {
        self.inner().add(projection, ttl).await
    }
    async fn get(&self, key: &str) -> CacheResult<Option<Projection>> {
        self.inner().get(key).await
    }
    async fn get_all(
        &self,
        pattern: &str,
        from: usize,
        size: usize,
    ) -> CacheResult<Vec<Projection>> {
        self.inner().get_all(pattern, from, size).await
    }
    async fn count(&self, pattern: &str) -> CacheResult<usize> {
        self.inner().count(pattern).await
    }
    async fn remove_by_key(&self, key: &str) -> CacheResult<()> {
        self.inner().remove_by_key(key).await
    }
    async fn remove_by_key_pattern(&self, pattern: &str) -> CacheResult<usize> {
        self.inner().remove_by_key_pattern(pattern).await
    }
    async fn flush_all(&self) -> CacheResult<()> {
        self.inner().flush_all().await
    }
    async fn set_ttl(&self, key: &str, ttl: Ttl) -> CacheResult<bool> {
        self.inner().set_ttl(key, ttl).await
    }
    async fn get_ttl(&self, key: &str) -> CacheResult<Option<RemainingTtl>> {
        self.inner().get_ttl(key).await
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
        self.inner().get_many_versioned(keys).await
    }
    async fn apply_if_unchanged(
        &self,
        batch: &[WriteOp],
        expected: &[(String, Version)],
    ) -> CacheResult<bool> {
        self.inner().apply_if_unchanged(batch, expected).await
    }
    async fn claim(&self, scope: &str, partitions: &[Partition]) -> CacheResult<Vec<Claim>> {
        self.inner().claim(scope, partitions).await
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
            self.inner().apply(&[write]).await?;
            let corrupted = self.corrupted_by_interference.lock().unwrap().take();
            if corrupted.is_some() {
                *self.corrupt.lock().unwrap() = corrupted;
            }
        }
        let outcome = self.inner().commit(commit).await?;
        {
            let mut timeouts = self.landed_but_timed_out.lock().unwrap();
            if *timeouts > 0 && outcome == CommitOutcome::Applied {
                *timeouts -= 1;
                self.log
                    .lock()
                    .unwrap()
                    .push("write landed, reply lost".into());
                return Err(CacheError::Unavailable("response timed out".into()));
            }
        }
        let entry = match &outcome {
            CommitOutcome::Applied => format!("write {}", commit.writes.len()),
            CommitOutcome::Conflict => "write conflicted".to_owned(),
            other => format!("write refused: {other:?}"),
        };
        self.log.lock().unwrap().push(entry);
        Ok(outcome)
    }
    async fn apply(&self, batch: &[WriteOp]) -> CacheResult<()> {
        self.inner().apply(batch).await
    }
    async fn applied(&self, scope: &str, partition: &Partition) -> CacheResult<Option<i64>> {
        self.inner().applied(scope, partition).await
    }
    async fn paused(&self, group: &str) -> CacheResult<std::collections::BTreeSet<String>> {
        self.inner().paused(group).await
    }
    async fn set_paused(&self, group: &str, projection: &str, paused: bool) -> CacheResult<()> {
        self.inner().set_paused(group, projection, paused).await
    }
    async fn note(&self, key: &str) -> CacheResult<Option<String>> {
        self.inner().note(key).await
    }
    async fn set_note(&self, key: &str, text: Option<&str>) -> CacheResult<()> {
        self.inner().set_note(key, text).await
    }
    async fn advance_generation(&self, scope: &str) -> CacheResult<u64> {
        self.inner().advance_generation(scope).await
    }
}

impl Flaky {
    fn inner(&self) -> Arc<MemoryCache> {
        Arc::clone(&self.inner.lock().unwrap())
    }

    /// The cache comes back from a snapshot taken before anything was
    /// written: no data, no checkpoint.
    pub fn roll_back_to_empty(&self) {
        *self.inner.lock().unwrap() = Arc::new(MemoryCache::new(Ttl::from_secs(300).unwrap()));
    }

    /// A memory cache that lands every write, logging into `log`.
    pub fn new(log: &Log) -> Flaky {
        Flaky {
            inner: Mutex::new(Arc::new(MemoryCache::new(Ttl::from_secs(300).unwrap()))),
            failures: Mutex::new(0),
            interference: Mutex::new(None),
            corrupt: Mutex::new(None),
            corrupted_by_interference: Mutex::new(None),
            landed_but_timed_out: Mutex::new(0),
            log: Arc::clone(log),
        }
    }
}

pub struct LoggingSource(pub Log);

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

pub struct LoggingDeadLetters {
    pub log: Log,
    pub failures: Mutex<u32>,
    pub letters: Mutex<Vec<DeadLetter>>,
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

pub struct Rig {
    pub pipeline: Pipeline,
    pub metrics: Metrics,
    pub cache: Arc<Flaky>,
    pub dead_letters: Arc<LoggingDeadLetters>,
    pub log: Log,
    /// The pipeline's health, whose progress board `status` reads.
    pub health: Health,
}

/// A pipeline over the shipped definitions and a memory cache, reading as
/// from a file (every record once, in order), with partitions 0-3 of both
/// topics assigned.
pub async fn rig(write_failures: u32, dead_letter_failures: u32) -> Rig {
    rig_reading(write_failures, dead_letter_failures, Positioning::InOrder).await
}

pub async fn rig_reading(
    write_failures: u32,
    dead_letter_failures: u32,
    positioning: Positioning,
) -> Rig {
    let log: Log = Arc::default();
    let cache = Arc::new(Flaky::new(&log));
    *cache.failures.lock().unwrap() = write_failures;
    let dead_letters = Arc::new(LoggingDeadLetters {
        log: Arc::clone(&log),
        failures: Mutex::new(dead_letter_failures),
        letters: Mutex::default(),
    });
    let metrics = Metrics::new();
    let health = Health::new();
    let pipeline = pipeline_over(
        &cache,
        &log,
        Some(Arc::clone(&dead_letters) as Arc<dyn DeadLetters>),
        &metrics,
        positioning,
        health.clone(),
    )
    .await;
    log.lock().unwrap().clear();
    Rig {
        pipeline,
        metrics,
        cache,
        dead_letters,
        log,
        health,
    }
}

/// A pipeline of group "test" over `cache` and the shipped definitions, with
/// partitions 0-3 of both topics assigned (so claimed in the cache),
/// reporting to `health`.
pub async fn pipeline_over(
    cache: &Arc<Flaky>,
    log: &Log,
    dead_letters: Option<Arc<dyn DeadLetters>>,
    metrics: &Metrics,
    positioning: Positioning,
    health: Health,
) -> Pipeline {
    let mut settings = Settings::defaults();
    settings.projections_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("projections");
    let definitions = load_dir(&settings, &Registry::with_builtins()).unwrap();
    let caches: BTreeMap<String, Arc<dyn Cache>> =
        BTreeMap::from([("default".to_owned(), Arc::clone(cache) as Arc<dyn Cache>)]);
    let mut pipeline = Pipeline::new(Wiring {
        router: Router::new(definitions, &caches),
        envelope: Envelope::CloudEvents,
        metrics: metrics.clone(),
        retry: Retry {
            max_backoff: Duration::from_millis(20),
            metrics: metrics.clone(),
            health,
        },
        source: Arc::new(LoggingSource(Arc::clone(log))),
        dead_letters,
        group: "test".to_owned(),
        positioning,
        catalog: None,
        bound: None,
    });
    pipeline
        .deliver(Delivery::Assigned(assigned_partitions()))
        .await
        .unwrap();
    pipeline
}

/// Partitions 0-3 of both topics of the shipped definitions.
pub fn assigned_partitions() -> Vec<Partition> {
    (0..4)
        .flat_map(|p| {
            [
                Partition::new("shop.orders", p),
                Partition::new("shop.inventory", p),
            ]
        })
        .collect()
}

/// `shop.stock.received` of one unit of `sku-x` at each of `offsets` of
/// `shop.inventory/0`: `product_stock:::sku-x` counts how often they applied.
pub fn stock(offsets: impl IntoIterator<Item = i64>) -> Batch {
    offsets
        .into_iter()
        .map(|offset| {
            let event = json!({"specversion": "1.0", "type": "shop.stock.received",
                "id": format!("s{offset}"), "source": "/t", "data": {"sku": "sku-x", "quantity": 1}});
            record("shop.inventory", offset, &event)
        })
        .collect()
}

/// A structured-mode CloudEvents record at `offset` of partition 0 of `topic`.
pub fn record(topic: &str, offset: i64, event: &Value) -> RawRecord {
    RawRecord {
        position: projectionist::event::Position {
            topic: topic.into(),
            partition: 0,
            offset,
        },
        key: None,
        payload: Some(event.to_string().into_bytes()),
        headers: vec![],
        timestamp_ms: None,
    }
}

/// How many units of `sku-x` the cache holds: how many stock events applied.
pub async fn units(cache: &dyn Cache) -> i64 {
    let stored = cache.get("product_stock:::sku-x").await.unwrap();
    stored.map_or(0, |projection| {
        projection.value()["available"].as_i64().unwrap()
    })
}

/// The shipped example story, each record on partition 0 of its topic, at
/// its line number as offset.
pub fn story_batches(size: usize) -> Vec<Batch> {
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

pub fn expected() -> BTreeMap<String, Value> {
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

pub async fn contents(cache: &dyn Cache) -> BTreeMap<String, Value> {
    cache
        .get_all("*", 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|projection| (projection.key(), projection.into_value()))
        .collect()
}

pub fn bad_records() -> Batch {
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
