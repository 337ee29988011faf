//! The memory adapter: the default cache, in-process, nothing to install.
//!
//! Values are kept as serialized JSON text, so a read can never alter what is
//! stored. TTLs are enforced on every read and a background sweep reclaims
//! expired entries that nobody reads, so a long-running process does not grow
//! with dead keys. All state sits behind one `RwLock` that is never held across
//! an `.await`.

mod checkpoint;
mod keyspace;
mod store;
mod sweep;

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

pub use store::Store;
use store::{Inner, PreparedWrite};

use super::{
    Cache, CacheResult, Claim, Commit, CommitOutcome, Connection, Expiry, Generation, Partition,
    Projection, RemainingTtl, RotateWhen, Rotation, Ttl, Version, WriteOp, check_note_key,
    check_page_size, decode_value,
};

/// The in-process cache (see the module docs).
#[derive(Debug, Clone)]
pub struct MemoryCache {
    store: Arc<Store>,
    default_ttl: Ttl,
}

impl MemoryCache {
    /// A new empty cache. Inside a tokio runtime it starts the background sweep,
    /// which ends by itself when the last handle on the store is dropped.
    pub fn new(default_ttl: Ttl) -> Self {
        let store = Arc::new(Store::default());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sweep::sweep_until_dropped(Arc::downgrade(&store)));
        }
        MemoryCache { store, default_ttl }
    }

    /// Serialize a batch before taking the lock: the lock guards only map updates.
    fn prepare(&self, batch: &[WriteOp], now: Instant) -> Vec<PreparedWrite> {
        let mut scratch = Vec::new();
        batch
            .iter()
            .map(|op| match op {
                WriteOp::Upsert { projection, expiry } => (
                    projection.key(),
                    Some((
                        serialize(projection, &mut scratch),
                        self.expires_at(*expiry, now),
                    )),
                ),
                WriteOp::Delete { key } => (key.clone(), None),
            })
            .collect()
    }

    fn expires_at(&self, expiry: Expiry, now: Instant) -> Option<Instant> {
        expiry
            .ttl(self.default_ttl)
            .map(|ttl| now + ttl.as_duration())
    }
}

/// The projection's JSON text in an allocation of exactly its size.
///
/// Written into `scratch` first, then copied: a `String` grown while writing
/// ends with up to twice the room it needs, and shrinking it in place keeps
/// the allocator's larger block (mimalloc keeps a block that is at most
/// twice the new size), which the entry would hold for its whole life.
fn serialize(projection: &Projection, scratch: &mut Vec<u8>) -> Box<str> {
    scratch.clear();
    // Not `Value::to_string`: that goes through `fmt::Write` and is half as fast.
    serde_json::to_writer(&mut *scratch, projection.value())
        .expect("a JSON value always serializes, and into memory nothing fails");
    std::str::from_utf8(scratch)
        .expect("serde_json writes UTF-8")
        .into()
}

#[async_trait]
impl Cache for MemoryCache {
    async fn ping(&self) -> bool {
        true
    }

    fn get_connection(&self) -> Connection {
        Connection::Memory(Arc::clone(&self.store))
    }

    fn default_ttl(&self) -> Ttl {
        self.default_ttl
    }

    async fn add(&self, projection: &Projection, ttl: Option<Ttl>) -> CacheResult<()> {
        // Not through `apply`: a one-op batch would deep-copy the projection.
        let expiry = ttl.map_or(Expiry::CacheDefault, Expiry::After);
        let json = serialize(projection, &mut Vec::new());
        let expires_at = self.expires_at(expiry, Instant::now());
        let key = projection.key();
        self.store.write().insert(key, json, expires_at);
        Ok(())
    }

    async fn get(&self, key: &str) -> CacheResult<Option<Projection>> {
        let inner = self.store.read();
        match inner.live(key, Instant::now()) {
            Some(entry) => decode_value(key, entry.json.as_bytes()).map(Some),
            None => Ok(None),
        }
    }

    async fn get_all(
        &self,
        key_pattern: &str,
        last_position: usize,
        size: usize,
    ) -> CacheResult<Vec<Projection>> {
        check_page_size(size)?;
        let inner = self.store.read();
        inner
            .matching(key_pattern, Instant::now())
            .skip(last_position)
            .take(size)
            .map(|(key, entry)| decode_value(key, entry.json.as_bytes()))
            .collect()
    }

    async fn count(&self, key_pattern: &str) -> CacheResult<usize> {
        Ok(self
            .store
            .read()
            .matching(key_pattern, Instant::now())
            .count())
    }

    async fn remove_by_key(&self, key: &str) -> CacheResult<()> {
        self.store.write().remove(key);
        Ok(())
    }

    async fn remove_by_key_pattern(&self, key_pattern: &str) -> CacheResult<usize> {
        let mut inner = self.store.write();
        let doomed: Vec<String> = inner
            .matching(key_pattern, Instant::now())
            .map(|(key, _)| key.clone())
            .collect();
        for key in &doomed {
            inner.remove(key);
        }
        Ok(doomed.len())
    }

    async fn flush_all(&self) -> CacheResult<()> {
        let mut inner = self.store.write();
        inner.entries.clear();
        Ok(())
    }

    async fn set_ttl(&self, key: &str, ttl: Ttl) -> CacheResult<bool> {
        let now = Instant::now();
        let mut inner = self.store.write();
        if inner.live(key, now).is_none() {
            return Ok(false);
        }
        inner.set_expiry(key, now + ttl.as_duration());
        Ok(true)
    }

    async fn get_ttl(&self, key: &str) -> CacheResult<Option<RemainingTtl>> {
        let now = Instant::now();
        let inner = self.store.read();
        Ok(inner.live(key, now).map(|entry| match entry.expires_at {
            None => RemainingTtl::Never,
            Some(at) => {
                let left_ms = (at - now).as_millis() as f64;
                RemainingTtl::Seconds(left_ms / 1000.0)
            }
        }))
    }

    async fn get_many_versioned(
        &self,
        keys: &[String],
    ) -> CacheResult<Vec<(Option<Projection>, Version)>> {
        let now = Instant::now();
        let inner = self.store.read();
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            found.push(match inner.live(key, now) {
                Some(entry) => (
                    Some(decode_value(key, entry.json.as_bytes())?),
                    Some(entry.json.as_bytes().to_vec()),
                ),
                None => (None, None),
            });
        }
        Ok(found)
    }

    async fn apply_if_unchanged(
        &self,
        batch: &[WriteOp],
        expected: &[(String, Version)],
    ) -> CacheResult<bool> {
        let now = Instant::now();
        let prepared = self.prepare(batch, now);
        let mut inner = self.store.write();
        let unchanged = expected.iter().all(|(key, version)| {
            let current = inner.live(key, now).map(|entry| entry.json.as_bytes());
            current == version.as_deref()
        });
        if unchanged {
            inner.write_all(prepared);
        }
        Ok(unchanged)
    }

    async fn apply(&self, batch: &[WriteOp]) -> CacheResult<()> {
        let prepared = self.prepare(batch, Instant::now());
        self.store.write().write_all(prepared);
        Ok(())
    }

    async fn claim(&self, scope: &str, partitions: &[Partition]) -> CacheResult<Vec<Claim>> {
        Ok(self.store.write().claim(scope, partitions))
    }

    async fn commit(&self, commit: Commit<'_>) -> CacheResult<CommitOutcome> {
        let now = Instant::now();
        // Serialized before the lock is taken: the lock guards only map updates.
        let prepared = self.prepare(commit.writes, now);
        Ok(self.store.write().commit(&commit, prepared, now))
    }

    async fn applied(&self, scope: &str, partition: &Partition) -> CacheResult<Option<i64>> {
        Ok(self.store.read().applied(scope, partition))
    }

    async fn note(&self, key: &str) -> CacheResult<Option<String>> {
        check_note_key(key)?;
        Ok(self.store.read().notes.get(key).cloned())
    }

    async fn set_note(&self, key: &str, text: Option<&str>) -> CacheResult<()> {
        check_note_key(key)?;
        let mut inner = self.store.write();
        match text {
            Some(text) => inner.notes.insert(key.to_owned(), text.to_owned()),
            None => inner.notes.remove(key),
        };
        Ok(())
    }

    async fn advance_generation(&self, scope: &str) -> CacheResult<Generation> {
        let mut inner = self.store.write();
        let generation = inner.generations.entry(scope.to_owned()).or_default();
        *generation += 1;
        Ok(*generation)
    }

    async fn keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<String>,
    ) -> CacheResult<(Vec<String>, Option<String>)> {
        Ok(self
            .store
            .read()
            .keys_with_prefix(prefix, cursor, Instant::now()))
    }

    async fn rotate(&self, rotations: &[Rotation], when: RotateWhen) -> CacheResult<usize> {
        Ok(self.store.write().rotate(rotations, when, Instant::now()))
    }

    async fn paused(&self, group: &str) -> CacheResult<BTreeSet<String>> {
        Ok(self
            .store
            .read()
            .paused
            .get(group)
            .cloned()
            .unwrap_or_default())
    }

    async fn set_paused(&self, group: &str, projection: &str, paused: bool) -> CacheResult<()> {
        let mut inner = self.store.write();
        let names = inner.paused.entry(group.to_owned()).or_default();
        if paused {
            names.insert(projection.to_owned());
        } else {
            names.remove(projection);
        }
        Ok(())
    }
}
