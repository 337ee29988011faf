//! The cache port: where projections land, keyed `{projection_name}:::{identifier}`.
//!
//! The [`Cache`] trait is the whole interface of the seed (`ping`, `add`, `get`, ...)
//! plus the batched paths the pipeline needs ([`Cache::get_many`], [`Cache::apply`]).
//! Every adapter follows `shared/spec/cache-port.md` exactly, so the memory, the
//! Redis and the Redis Cluster adapters are interchangeable; one contract suite
//! (`tests/cache_contract.rs`) runs against all three. A cluster commits slot by
//! slot, and adds [`Cache::floors`] so the fold skips what a slot already holds.
//!
//! Invariants every adapter keeps:
//! - a TTL is validated ([`Ttl`]) before anything is written;
//! - an expired entry is absent for every method;
//! - pattern methods only see projection keys (those containing `:::`), so
//!   `flush_all` never touches anything this cache did not write.

pub mod checkpoint;
pub mod cluster;
pub mod glob;
mod key;
pub mod memory;
pub mod redis;
mod rotation;
mod ttl;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

pub use checkpoint::{
    Advance, BOOKKEEPING_PREFIX, Claim, Commit, CommitOutcome, Epoch, Floors, Generation,
    Partition, checkpoint_key, checkpoint_scope, pauses_key,
};
pub use key::{KEY_SEPARATOR, Projection, is_entry_key, split_key};
pub use rotation::{RotateWhen, Rotation, check_note_key};
pub use ttl::{Expiry, RemainingTtl, Ttl, TtlError};

/// What went wrong in a cache operation, classified once, where it is born.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The backend could not be reached or did not answer: retry, never skip.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// A stored value is not a JSON object (somebody else wrote it).
    #[error("value under key {key:?} is not a JSON object: {reason}")]
    CorruptValue { key: String, reason: String },
    /// The caller asked for something the contract forbids.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Ttl(#[from] TtlError),
}

impl CacheError {
    /// Transient errors are retried with backoff and never advance an offset;
    /// everything else is permanent for the operation that caused it.
    pub fn is_transient(&self) -> bool {
        matches!(self, CacheError::Unavailable(_))
    }
}

pub type CacheResult<T> = Result<T, CacheError>;

/// What a key held when it was read: its stored text, `None` when absent. A
/// conditional write ([`Cache::apply_if_unchanged`]) lands only if every key it
/// writes still holds what was read, so two writers that folded the same key
/// from the same state cannot both win (no lost update).
pub type Version = Option<Vec<u8>>;

/// One write of a batch: the pipeline turns a batch of events into these.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    Upsert {
        projection: Projection,
        expiry: Expiry,
    },
    Delete {
        key: String,
    },
}

impl WriteOp {
    pub fn key(&self) -> String {
        match self {
            WriteOp::Upsert { projection, .. } => projection.key(),
            WriteOp::Delete { key } => key.clone(),
        }
    }
}

/// The raw handle behind a cache, for callers who need what the port does not offer.
#[derive(Clone)]
pub enum Connection {
    Memory(Arc<memory::Store>),
    Redis(::redis::aio::ConnectionManager),
    Cluster(::redis::cluster_async::ClusterConnection),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connection::Memory(_) => f.write_str("Connection::Memory"),
            Connection::Redis(_) => f.write_str("Connection::Redis"),
            Connection::Cluster(_) => f.write_str("Connection::Cluster"),
        }
    }
}

/// The cache port (see the module docs and `shared/spec/cache-port.md`).
#[async_trait]
pub trait Cache: Send + Sync + fmt::Debug {
    /// `true` when the backend answers; `false` within about a second otherwise.
    async fn ping(&self) -> bool;

    /// The underlying handle (memory: the shared store; Redis: the connection).
    fn get_connection(&self) -> Connection;

    /// The TTL used when a write does not name one.
    fn default_ttl(&self) -> Ttl;

    /// Upsert `projection` under its key; `None` uses [`Cache::default_ttl`].
    /// Replaces the whole value and restarts the TTL.
    async fn add(&self, projection: &Projection, ttl: Option<Ttl>) -> CacheResult<()>;

    /// The live projection under `key`, or `None`.
    async fn get(&self, key: &str) -> CacheResult<Option<Projection>>;

    /// Live entries matching `key_pattern`, sorted bytewise by key, from the 0-based
    /// offset `last_position`, at most `size` (which must be positive).
    async fn get_all(
        &self,
        key_pattern: &str,
        last_position: usize,
        size: usize,
    ) -> CacheResult<Vec<Projection>>;

    /// How many distinct live keys match `key_pattern`.
    async fn count(&self, key_pattern: &str) -> CacheResult<usize>;

    /// Delete the projection's key; silent when absent.
    async fn remove(&self, projection: &Projection) -> CacheResult<()> {
        self.remove_by_key(&projection.key()).await
    }

    /// Delete one key; silent when absent.
    async fn remove_by_key(&self, key: &str) -> CacheResult<()>;

    /// Delete every key matching `key_pattern`; returns how many went.
    async fn remove_by_key_pattern(&self, key_pattern: &str) -> CacheResult<usize>;

    /// Remove every entry of this cache and nothing else.
    async fn flush_all(&self) -> CacheResult<()>;

    /// Set the remaining life of a live key; returns whether the key existed.
    /// A missing or expired key is never created.
    async fn set_ttl(&self, key: &str, ttl: Ttl) -> CacheResult<bool>;

    /// The remaining life of `key`, [`RemainingTtl::Never`] for a key without
    /// expiry, `None` for a missing or expired key.
    async fn get_ttl(&self, key: &str) -> CacheResult<Option<RemainingTtl>>;

    /// The live projections under `keys`, in the same order, in one round trip.
    async fn get_many(&self, keys: &[String]) -> CacheResult<Vec<Option<Projection>>> {
        let found = self.get_many_versioned(keys).await?;
        Ok(found
            .into_iter()
            .map(|(projection, _)| projection)
            .collect())
    }

    /// [`Cache::get_many`], with each key's [`Version`] for a conditional write.
    async fn get_many_versioned(
        &self,
        keys: &[String],
    ) -> CacheResult<Vec<(Option<Projection>, Version)>>;

    /// Apply the batch, atomically and in one round trip, only if every key in
    /// `expected` still holds its version; `Ok(false)` (nothing written) when one
    /// changed since it was read.
    async fn apply_if_unchanged(
        &self,
        batch: &[WriteOp],
        expected: &[(String, Version)],
    ) -> CacheResult<bool>;

    /// Apply every write of the batch, in order, in one round trip. On Redis the
    /// batch is a `MULTI`/`EXEC` transaction: all of it lands or none of it.
    async fn apply(&self, batch: &[WriteOp]) -> CacheResult<()>;

    /// Take `partitions` over for a new owner in `scope`: each gets an epoch
    /// larger than any it had, atomically; returns each one's claim, in order.
    async fn claim(&self, scope: &str, partitions: &[Partition]) -> CacheResult<Vec<Claim>>;

    /// Apply a batch and advance its partitions, atomically and in one round
    /// trip, if every epoch, position and read key is as the commit expects
    /// (see [`checkpoint`]); otherwise write nothing and say why.
    async fn commit(&self, commit: Commit<'_>) -> CacheResult<CommitOutcome>;

    /// The next offset `scope` has to apply of `partition` (its checkpoint),
    /// `None` when it never applied any: what a reader waiting for its own
    /// write compares the write's offset with.
    async fn applied(&self, scope: &str, partition: &Partition) -> CacheResult<Option<i64>>;

    /// The projections paused in consumer group `group` (see [`pauses_key`]).
    async fn paused(&self, group: &str) -> CacheResult<BTreeSet<String>>;

    /// Pause (or resume) `projection` in `group`; idempotent.
    async fn set_paused(&self, group: &str, projection: &str, paused: bool) -> CacheResult<()>;

    /// How many offsets below its checkpoint a newly claimed partition is
    /// folded again: writes the store may have lost below the checkpoint (a
    /// primary that failed over before replicating them) are applied again,
    /// and what it still holds is skipped by its [`Cache::floors`]. 0 (the
    /// default) where a commit lands or is lost as a whole.
    fn replay_window(&self) -> u64 {
        0
    }

    /// Per key of `keys`, how far its own writes stand in each of `partitions`
    /// ([`Floors`]), for a store that commits slot by slot; `None` (the
    /// default, no IO) where a commit is atomic as a whole, so the checkpoint
    /// is every key's floor.
    async fn floors(
        &self,
        _scope: &str,
        _keys: &[String],
        _partitions: &[Partition],
    ) -> CacheResult<Option<Floors>> {
        Ok(None)
    }

    /// The note under `key` (a [`BOOKKEEPING_PREFIX`] key without `:::`).
    async fn note(&self, key: &str) -> CacheResult<Option<String>>;

    /// Write (or, with `None`, remove) the note under `key`.
    async fn set_note(&self, key: &str, text: Option<&str>) -> CacheResult<()>;

    /// Advance `scope`'s [`Generation`] by one and return it: every commit
    /// folded under an earlier one is refused from now on.
    async fn advance_generation(&self, scope: &str) -> CacheResult<Generation>;

    /// Keys starting with `prefix` (one of ours), a page at a time from
    /// `cursor` (`None` to begin); the next cursor is `None` at the end. Keys
    /// written while listing may be missed and a key may come twice.
    async fn keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<String>,
    ) -> CacheResult<(Vec<String>, Option<String>)> {
        let _ = cursor;
        Err(unsupported("listing keys by prefix", prefix))
    }

    /// Make the `rotations` that `when` selects, each atomically; returns how
    /// many moved.
    async fn rotate(&self, rotations: &[Rotation], when: RotateWhen) -> CacheResult<usize> {
        let _ = (rotations, when);
        Err(unsupported("rotating keys", "a promotion"))
    }

    /// Raise `scope`'s generation to `generation` wherever the store keeps a
    /// copy of it beside the data (a cluster: every slot), and say whether
    /// every such place stands at or before `live` (the checkpoint, per
    /// partition). `true` (the default, no IO) where a commit is atomic as a
    /// whole: the checkpoint's generation fences it alone.
    async fn fence_slots(
        &self,
        _scope: &str,
        _generation: Generation,
        _live: &[(Partition, Option<i64>)],
    ) -> CacheResult<bool> {
        Ok(true)
    }

    /// Record that every key of `scope` stands at `positions` (per
    /// partition), where the store keeps such marks beside the data (a
    /// cluster: per slot; see [`Cache::floors`]). After a promotion every
    /// key, old or rotated in, is exactly the fold up to the checkpoint, and
    /// a replay below it must skip what they hold. No-op elsewhere.
    async fn mark_slots(
        &self,
        _scope: &str,
        _positions: &[(Partition, Option<i64>)],
    ) -> CacheResult<()> {
        Ok(())
    }

    /// [`Cache::commit`] of a batch folded past `floors` (from
    /// [`Cache::floors`]): each slot lands only while its floors still hold.
    async fn commit_over(
        &self,
        commit: Commit<'_>,
        _floors: Option<&Floors>,
    ) -> CacheResult<CommitOutcome> {
        self.commit(commit).await
    }
}

/// What an adapter refuses to do (yet), said plainly.
fn unsupported(what: &str, subject: &str) -> CacheError {
    CacheError::InvalidArgument(format!(
        "{what} ({subject}) is not supported by this cache provider"
    ))
}

/// Parse stored JSON text into a projection, naming the key when it is not an object.
pub(crate) fn decode_value(key: &str, text: &[u8]) -> CacheResult<Projection> {
    let value: Value = crate::json::from_bytes(text).map_err(|error| CacheError::CorruptValue {
        key: key.to_owned(),
        reason: error.to_string(),
    })?;
    Projection::from_key(key, value).map_err(|reason| CacheError::CorruptValue {
        key: key.to_owned(),
        reason,
    })
}

/// Reject a page size of zero (the spec's "negative or zero size is an error").
pub(crate) fn check_page_size(size: usize) -> CacheResult<()> {
    if size == 0 {
        return Err(CacheError::InvalidArgument(
            "get_all size must be a positive number of entries".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_decodes_into_its_projection() {
        let projection = decode_value("order:::1", br#"{"total":"12.50","lines":[1,2]}"#).unwrap();
        assert_eq!((projection.name(), projection.id()), ("order", "1"));
        assert_eq!(projection.value()["total"], "12.50");
    }

    /// Text is checked for UTF-8 once, up front; text that fails it is still
    /// refused with serde_json's exact place, naming the key.
    #[test]
    fn stored_text_that_is_not_utf8_is_corrupt_and_says_where() {
        let error = decode_value("order:::1", b"{\"note\":\"\xff\"}").unwrap_err();
        let CacheError::CorruptValue { key, reason } = error else {
            panic!("not a corrupt value: {error:?}");
        };
        assert_eq!(key, "order:::1");
        assert_eq!(reason, "invalid unicode code point at line 1 column 10");
    }

    #[test]
    fn stored_text_that_is_not_an_object_is_corrupt() {
        let error = decode_value("order:::1", b"[1]").unwrap_err();
        assert!(
            matches!(error, CacheError::CorruptValue { .. }),
            "{error:?}"
        );
    }
}
