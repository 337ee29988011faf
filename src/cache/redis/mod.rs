//! The Redis adapter: projections as JSON text under `{name}:::{id}`, TTLs in ms.
//!
//! One multiplexed [`ConnectionManager`] serves every task; it reconnects by itself
//! after Redis restarts, and a command that fails because the connection dropped
//! is sent once more on the new connection, so a restart costs callers nothing.
//! Connection and response timeouts turn a dead server into errors
//! ([`CacheError::Unavailable`]), never hangs. Pattern operations walk the keyspace
//! with `SCAN` (never `KEYS`) and only ever see keys containing `:::`, so
//! `flush_all` removes this cache's entries and leaves everything else in the
//! database alone (never `FLUSHALL`/`FLUSHDB`).

mod checked;
pub(crate) mod checkpoint;
pub(crate) mod keyspace;
pub(crate) mod operator;
mod uri;
mod wire;

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError};

pub(crate) use checked::{
    check_keys_lua, checked_command, checked_keys, checked_values, write_keys_lua,
};
pub use uri::{masked_uri, validate_uri};
use wire::ScanPages;
pub(crate) use wire::{ArgWriter, decode_page, missing_of};

use super::{
    Cache, CacheError, CacheResult, Claim, Commit, CommitOutcome, Connection, Expiry, Generation,
    Partition, Projection, RemainingTtl, RotateWhen, Rotation, Ttl, Version, WriteOp,
    check_page_size, decode_value,
};

/// `ping` answers `false` after this long without a `PONG`.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// One TCP (and TLS) connection attempt gives up after this long.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// A command without an answer after this long fails instead of hanging; generous,
/// because a large batch or `SCAN` page on a busy server can take a while.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnection attempts per reconnect (100 ms, 200 ms, 400 ms with jitter), so a
/// command against a dead server fails within about a second.
const RECONNECT_RETRIES: usize = 3;
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);
/// Keys per `UNLINK` when deleting by pattern.
const DELETE_BATCH: usize = 500;
/// The pattern of every entry this cache can have written.
const ALL_ENTRIES: &str = "*:::*";

/// Connect to the Redis at `uri`. A malformed URI is [`CacheError::InvalidArgument`];
/// a server that cannot be reached (or refuses our credentials) is
/// [`CacheError::Unavailable`].
pub async fn connect(uri: &str, default_ttl: Ttl) -> CacheResult<RedisCache> {
    validate_uri(uri).map_err(CacheError::InvalidArgument)?;
    let shown = masked_uri(uri);
    let client = redis::Client::open(uri)
        .map_err(|error| CacheError::InvalidArgument(format!("{shown}: {error}")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(RECONNECT_RETRIES)
        .set_max_delay(RECONNECT_MAX_DELAY);
    let connection = client
        .get_connection_manager_with_config(config)
        .await
        .map_err(|error| match error.kind() {
            redis::ErrorKind::InvalidClientConfig => {
                CacheError::InvalidArgument(format!("{shown}: {error}"))
            }
            _ => CacheError::Unavailable(format!("cannot connect to {shown}: {error}")),
        })?;
    Ok(RedisCache {
        connection,
        default_ttl,
        shown_uri: shown,
    })
}

/// The Redis cache (see the module docs). Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisCache {
    connection: ConnectionManager,
    default_ttl: Ttl,
    /// The URI without its password, for `Debug` and error messages.
    shown_uri: String,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: the connection's own `Debug` would print the password.
        f.debug_struct("RedisCache")
            .field("uri", &self.shown_uri)
            .field("default_ttl", &self.default_ttl)
            .finish()
    }
}

/// Every failure the server did not cause on purpose is transient: a dropped or
/// refused connection, a timeout, a server that is loading or read-only.
fn unavailable(error: RedisError) -> CacheError {
    CacheError::Unavailable(error.to_string())
}

/// Like [`unavailable`], except that a key holding another Redis type is a
/// corrupt value under that key, not an outage.
fn read_error(key: &str, error: RedisError) -> CacheError {
    if error.code() == Some("WRONGTYPE") {
        return CacheError::CorruptValue {
            key: key.to_owned(),
            reason: "the key holds a Redis type other than a string".to_owned(),
        };
    }
    unavailable(error)
}

impl RedisCache {
    /// Run one command; when it failed because the connection dropped (Redis
    /// restarted), the manager is already reconnecting and the command is sent once
    /// more. Every command this adapter sends can safely run twice.
    async fn query<T: FromRedisValue>(&self, command: &redis::Cmd) -> redis::RedisResult<T> {
        let mut connection = self.connection.clone();
        match command.query_async(&mut connection).await {
            Err(error) if error.is_connection_dropped() => {
                command.query_async(&mut connection).await
            }
            result => result,
        }
    }

    /// [`RedisCache::query`] for a pipeline (or a `MULTI`/`EXEC` transaction).
    async fn query_pipeline<T: FromRedisValue>(
        &self,
        pipeline: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        let mut connection = self.connection.clone();
        match pipeline.query_async(&mut connection).await {
            Err(error) if error.is_connection_dropped() => {
                pipeline.query_async(&mut connection).await
            }
            result => result,
        }
    }

    /// Every distinct projection key matching `pattern`, sorted bytewise. `SCAN` may
    /// return a key twice and in any order, so the keys go through a sorted set.
    async fn scan(&self, pattern: &str) -> CacheResult<BTreeSet<String>> {
        let mut keys = BTreeSet::new();
        let mut pages = ScanPages::new(pattern);
        while let Some(page) = pages.next(self).await? {
            keys.extend(page);
        }
        Ok(keys)
    }

    /// Delete `keys` with one `UNLINK`; returns how many existed.
    async fn unlink(&self, keys: &[String]) -> CacheResult<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.query(redis::cmd("UNLINK").arg(keys))
            .await
            .map_err(unavailable)
    }

    /// The Redis type of each of `keys` (`"none"` for a key that is gone), in one
    /// round trip; no round trip at all for no keys.
    async fn types_of(&self, keys: &[&String]) -> CacheResult<Vec<String>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipeline = redis::pipe();
        for key in keys {
            pipeline.cmd("TYPE").arg(*key);
        }
        self.query_pipeline(&pipeline).await.map_err(unavailable)
    }

    fn ttl_millis(&self, expiry: Expiry) -> Option<u64> {
        expiry.ttl(self.default_ttl).map(|ttl| ttl.as_millis())
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn ping(&self) -> bool {
        let command = redis::cmd("PING");
        let answer = tokio::time::timeout(PING_TIMEOUT, self.query::<String>(&command)).await;
        matches!(answer, Ok(Ok(reply)) if reply == "PONG")
    }

    fn get_connection(&self) -> Connection {
        Connection::Redis(self.connection.clone())
    }

    fn default_ttl(&self) -> Ttl {
        self.default_ttl
    }

    async fn add(&self, projection: &Projection, ttl: Option<Ttl>) -> CacheResult<()> {
        // One `SET`, atomic by itself: not a one-op batch, which would deep-copy
        // the projection and wrap it in `MULTI`/`EXEC` for nothing.
        let millis = ttl.unwrap_or(self.default_ttl).as_millis();
        let command = ArgWriter::default().set(projection, Some(millis));
        self.query(&command).await.map_err(unavailable)
    }

    async fn get(&self, key: &str) -> CacheResult<Option<Projection>> {
        let text: Option<Vec<u8>> = self
            .query(redis::cmd("GET").arg(key))
            .await
            .map_err(|error| read_error(key, error))?;
        text.map(|text| decode_value(key, &text)).transpose()
    }

    async fn get_all(
        &self,
        key_pattern: &str,
        last_position: usize,
        size: usize,
    ) -> CacheResult<Vec<Projection>> {
        check_page_size(size)?;
        let keys = self.scan(key_pattern).await?;
        let page: Vec<&String> = keys.iter().skip(last_position).take(size).collect();
        if page.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<Option<Vec<u8>>> = self
            .query(redis::cmd("MGET").arg(&page))
            .await
            .map_err(unavailable)?;
        let missing_types = self.types_of(&missing_of(&page, &texts)).await?;
        decode_page(page, texts, missing_types)
    }

    async fn count(&self, key_pattern: &str) -> CacheResult<usize> {
        Ok(self.scan(key_pattern).await?.len())
    }

    async fn remove_by_key(&self, key: &str) -> CacheResult<()> {
        self.unlink(&[key.to_owned()]).await.map(|_| ())
    }

    async fn remove_by_key_pattern(&self, key_pattern: &str) -> CacheResult<usize> {
        // Deleting while scanning is safe (SCAN still returns every key that stays)
        // and keeps memory flat however many keys match. A key SCAN repeats is
        // unlinked twice but counted once, since UNLINK counts what it removed.
        let mut removed = 0;
        let mut pending: Vec<String> = Vec::with_capacity(DELETE_BATCH);
        let mut pages = ScanPages::new(key_pattern);
        while let Some(page) = pages.next(self).await? {
            pending.extend(page);
            while pending.len() >= DELETE_BATCH {
                let batch: Vec<String> = pending.drain(..DELETE_BATCH).collect();
                removed += self.unlink(&batch).await?;
            }
        }
        removed += self.unlink(&pending).await?;
        Ok(removed)
    }

    async fn flush_all(&self) -> CacheResult<()> {
        self.remove_by_key_pattern(ALL_ENTRIES).await.map(|_| ())
    }

    async fn set_ttl(&self, key: &str, ttl: Ttl) -> CacheResult<bool> {
        operator::set_ttl(self, key, ttl).await
    }

    async fn get_ttl(&self, key: &str) -> CacheResult<Option<RemainingTtl>> {
        operator::get_ttl(self, key).await
    }

    async fn get_many_versioned(
        &self,
        keys: &[String],
    ) -> CacheResult<Vec<(Option<Projection>, Version)>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<Option<Vec<u8>>> = self
            .query(redis::cmd("MGET").arg(keys))
            .await
            .map_err(unavailable)?;
        let mut found = Vec::with_capacity(keys.len());
        for (key, text) in keys.iter().zip(texts) {
            let projection = text
                .as_ref()
                .map(|text| decode_value(key, text))
                .transpose()?;
            found.push((projection, text));
        }
        Ok(found)
    }

    async fn apply_if_unchanged(
        &self,
        batch: &[WriteOp],
        expected: &[(String, Version)],
    ) -> CacheResult<bool> {
        self.apply_checked(batch, expected).await
    }

    async fn apply(&self, batch: &[WriteOp]) -> CacheResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut transaction = redis::Pipeline::with_capacity(batch.len());
        transaction.atomic();
        let mut args = ArgWriter::default();
        for op in batch {
            match op {
                // A plain SET also clears an old TTL: `Never` means never.
                WriteOp::Upsert { projection, expiry } => {
                    transaction.add_command(args.set(projection, self.ttl_millis(*expiry)))
                }
                WriteOp::Delete { key } => transaction.cmd("UNLINK").arg(key),
            };
        }
        // No command is marked ignored (that costs a hash insert each): the
        // replies, all `OK` or a count, are dropped by reading them as `()`,
        // and an error reply still fails the batch.
        self.query_pipeline(&transaction).await.map_err(unavailable)
    }

    async fn claim(&self, scope: &str, partitions: &[Partition]) -> CacheResult<Vec<Claim>> {
        checkpoint::claim_partitions(self, scope, partitions).await
    }

    async fn commit(&self, commit: Commit<'_>) -> CacheResult<CommitOutcome> {
        self.commit_batch(commit).await
    }

    async fn applied(&self, scope: &str, partition: &Partition) -> CacheResult<Option<i64>> {
        operator::applied_offset(self, scope, partition).await
    }

    async fn paused(&self, group: &str) -> CacheResult<BTreeSet<String>> {
        operator::paused_projections(self, group).await
    }

    async fn set_paused(&self, group: &str, projection: &str, paused: bool) -> CacheResult<()> {
        operator::mark_paused(self, group, projection, paused).await
    }

    async fn note(&self, key: &str) -> CacheResult<Option<String>> {
        operator::note(self, key).await
    }

    async fn set_note(&self, key: &str, text: Option<&str>) -> CacheResult<()> {
        operator::set_note(self, key, text).await
    }

    async fn advance_generation(&self, scope: &str) -> CacheResult<Generation> {
        operator::advance_generation(self, scope).await
    }

    async fn keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<String>,
    ) -> CacheResult<(Vec<String>, Option<String>)> {
        self.keys_page(prefix, cursor).await
    }

    async fn rotate(&self, rotations: &[Rotation], when: RotateWhen) -> CacheResult<usize> {
        self.rotate_keys(rotations, when).await
    }
}

#[async_trait]
impl operator::KeyCommands for RedisCache {
    async fn query_key<T: redis::FromRedisValue + Send>(
        &self,
        command: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        RedisCache::query(self, command).await
    }
}
