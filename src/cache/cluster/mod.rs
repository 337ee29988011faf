//! The Redis Cluster adapter: the same keys, values and TTLs as the Redis
//! adapter, spread over the cluster's hash slots.
//!
//! What is atomic on a cluster is one key, and one script within one slot:
//! a batch (and a checkpointed commit) is split by slot into one script each,
//! sent concurrently. Exactly once holds per slot: each slot keeps, per
//! partition, a mark of how far its own keys have applied (see [`commit`]),
//! so a slot that landed and a slot that did not are both right again after
//! a retry, a crash between them, or a zombie's batch.
//!
//! The `redis` crate's async cluster client follows `MOVED` and `ASK`
//! redirections, refreshes its slot map after a failover and connects to new
//! nodes by itself. Its slot refresh can deadlock with requests in flight
//! (redis 1.8: the refresh waits for a lock that an unpolled request holds),
//! which stalls every later command; so a command that times out replaces
//! the connection with a fresh one, and the stall costs one timeout instead
//! of the daemon. Pattern operations `SCAN` every primary (each key lives
//! on exactly one), so they see the whole keyspace, sorted and each key once.

mod commit;
mod keyspace;
mod losses;
mod scan;
pub mod slots;
mod wire;

pub use commit::mark_key;
use wire::{by_slot, concurrently};

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::RedisError;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;

use super::redis::operator::{self, KeyCommands};
use super::redis::{decode_page, masked_uri, missing_of, validate_uri};
use super::{
    Cache, CacheError, CacheResult, Claim, Commit, CommitOutcome, Connection, Floors, Generation,
    Partition, Projection, RemainingTtl, RotateWhen, Rotation, Ttl, Version, WriteOp,
    check_page_size, decode_value,
};

/// `ping` answers `false` after this long without every primary's `PONG`.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// One connection attempt to one node gives up after this long.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// A command without an answer after this long fails instead of hanging,
/// redirections and retries included. Shorter than the Redis adapter's: a
/// cluster command is one slot's share of a batch, and a timeout is also
/// how a stalled client is noticed and replaced.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per command across redirections and reconnects. A failover takes
/// the cluster a few seconds (`cluster-node-timeout` and the election); the
/// pipeline's own retry covers the rest, with backoff.
const RETRIES: u32 = 6;
/// Scripts or reads in flight at once per operation: a batch of 2,000 keys
/// touches nearly as many slots.
const CONCURRENCY: usize = 128;
/// Keys per `UNLINK` when deleting by pattern.
const DELETE_BATCH: usize = 500;
/// Offsets below its checkpoint a claimed partition is folded again, unless
/// configured (`rewind`): writes a failed-over primary had not replicated are
/// recent, and a replay of what is still held costs only reads.
pub const DEFAULT_REPLAY_WINDOW: u64 = 1000;
/// Writes outside any checkpoint (the seed's batch methods): no scope, no
/// partitions, no generation. The slots' shares travel separately.
const UNTRACKED: Commit<'static> = Commit {
    scope: "",
    advances: &[],
    expected: &[],
    writes: &[],
    generation: 0,
};
/// The pattern of every entry this cache can have written.
const ALL_ENTRIES: &str = "*:::*";

/// Check seed node URIs without IO, for config validation: at least one, each
/// a `redis://` or `rediss://` URI, none naming a database other than 0 (a
/// cluster has only database 0).
pub fn validate_nodes(nodes: &[String]) -> Result<(), String> {
    if nodes.is_empty() {
        return Err("no seed nodes: name at least one, e.g. [\"redis://10.0.0.1:6379\"]".into());
    }
    for uri in nodes {
        validate_uri(uri)?;
        let url = redis::parse_redis_url(uri).ok_or_else(|| masked_uri(uri))?;
        let database = url.path().trim_matches('/');
        if !database.is_empty() && database != "0" {
            return Err(format!(
                "{} names database {database}; a Redis Cluster has only database 0",
                masked_uri(uri)
            ));
        }
    }
    Ok(())
}

/// Connect through the seed `nodes` (any of the cluster's nodes; the client
/// learns the rest). Malformed URIs are [`CacheError::InvalidArgument`]; a
/// cluster that cannot be reached is [`CacheError::Unavailable`].
pub async fn connect(nodes: &[String], default_ttl: Ttl) -> CacheResult<ClusterCache> {
    validate_nodes(nodes).map_err(CacheError::InvalidArgument)?;
    let shown: Vec<String> = nodes.iter().map(|uri| masked_uri(uri)).collect();
    let client = ClusterClientBuilder::new(nodes.iter().map(String::as_str))
        .connection_timeout(CONNECTION_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(RETRIES)
        .build()
        .map_err(|error| CacheError::InvalidArgument(format!("{shown:?}: {error}")))?;
    let connection = open(&client, &shown).await?;
    Ok(ClusterCache {
        client,
        current: Arc::new(RwLock::new((0, connection))),
        replacing: Arc::new(tokio::sync::Mutex::new(())),
        landed: Arc::new(Mutex::new(losses::LandedMarks::new())),
        replay_window: DEFAULT_REPLAY_WINDOW,
        default_ttl,
        shown_nodes: shown,
    })
}

async fn open(client: &ClusterClient, shown: &[String]) -> CacheResult<ClusterConnection> {
    client.get_async_connection().await.map_err(|error| {
        CacheError::Unavailable(format!("cannot connect to cluster {shown:?}: {error}"))
    })
}

/// The Redis Cluster cache (see the module docs). Cheap to clone; clones
/// share the connections.
#[derive(Clone)]
pub struct ClusterCache {
    client: ClusterClient,
    /// The connection in use and its generation (how many it replaced).
    current: Arc<RwLock<(u64, ClusterConnection)>>,
    /// Held while a stalled connection is replaced, so it is replaced once.
    replacing: Arc<tokio::sync::Mutex<()>>,
    /// The marks this process wrote, to notice a slot that lost them.
    landed: Arc<Mutex<losses::LandedMarks>>,
    /// See [`Cache::replay_window`].
    replay_window: u64,
    default_ttl: Ttl,
    /// The seed URIs without passwords, for `Debug` and errors.
    shown_nodes: Vec<String>,
}

impl fmt::Debug for ClusterCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCache")
            .field("nodes", &self.shown_nodes)
            .field("default_ttl", &self.default_ttl)
            .finish()
    }
}

/// Every failure the server did not cause on purpose is transient: a node
/// down, a failover under way (`CLUSTERDOWN`, `TRYAGAIN`), a timeout.
fn unavailable(error: RedisError) -> CacheError {
    CacheError::Unavailable(error.to_string())
}

impl ClusterCache {
    /// Fold `offsets` below the checkpoint again on every claim (see
    /// [`Cache::replay_window`]).
    pub fn with_replay_window(mut self, offsets: u64) -> ClusterCache {
        self.replay_window = offsets;
        self
    }
}

#[async_trait]
impl Cache for ClusterCache {
    async fn ping(&self) -> bool {
        let answer = tokio::time::timeout(PING_TIMEOUT, self.ping_primaries()).await;
        matches!(answer, Ok(Ok(())))
    }

    fn get_connection(&self) -> Connection {
        Connection::Cluster(self.connection().1)
    }

    fn default_ttl(&self) -> Ttl {
        self.default_ttl
    }

    fn replay_window(&self) -> u64 {
        self.replay_window
    }

    async fn add(&self, projection: &Projection, ttl: Option<Ttl>) -> CacheResult<()> {
        let millis = ttl.unwrap_or(self.default_ttl).as_millis();
        let command = super::redis::ArgWriter::default().set(projection, Some(millis));
        self.query(&command).await.map_err(unavailable)
    }

    async fn get(&self, key: &str) -> CacheResult<Option<Projection>> {
        let text: Option<Vec<u8>> =
            self.query(redis::cmd("GET").arg(key))
                .await
                .map_err(|error| match error.code() {
                    Some("WRONGTYPE") => CacheError::CorruptValue {
                        key: key.to_owned(),
                        reason: "the key holds a Redis type other than a string".to_owned(),
                    },
                    _ => unavailable(error),
                })?;
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
        let texts = self.texts(&page).await?;
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
        let keys: Vec<String> = self.scan(key_pattern).await?.into_iter().collect();
        let mut removed = 0;
        for batch in keys.chunks(DELETE_BATCH) {
            removed += self.unlink(batch).await?;
        }
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
        let texts = self.texts(keys).await?;
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
        let slots = by_slot(expected, batch);
        // Checked first everywhere, so a changed key stops the whole batch
        // unless a writer slips in between; then atomic per slot.
        if !self.write_slots(&UNTRACKED, &slots, None, false).await? {
            return Ok(false);
        }
        self.write_slots(&UNTRACKED, &slots, None, true).await
    }

    async fn apply(&self, batch: &[WriteOp]) -> CacheResult<()> {
        let slots = by_slot(&[], batch);
        self.write_slots(&UNTRACKED, &slots, None, true)
            .await
            .map(|_| ())
    }

    async fn claim(&self, scope: &str, partitions: &[Partition]) -> CacheResult<Vec<Claim>> {
        crate::cache::redis::checkpoint::claim_partitions(self, scope, partitions).await
    }

    async fn commit(&self, commit: Commit<'_>) -> CacheResult<CommitOutcome> {
        self.commit_slots(commit, None).await
    }

    async fn floors(
        &self,
        scope: &str,
        keys: &[String],
        partitions: &[Partition],
    ) -> CacheResult<Option<Floors>> {
        self.read_floors(scope, keys, partitions).await.map(Some)
    }

    async fn commit_over(
        &self,
        commit: Commit<'_>,
        floors: Option<&Floors>,
    ) -> CacheResult<CommitOutcome> {
        self.commit_slots(commit, floors).await
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
        self.rotate_slots(rotations, when).await
    }

    async fn fence_slots(
        &self,
        scope: &str,
        generation: Generation,
        live: &[(Partition, Option<i64>)],
    ) -> CacheResult<bool> {
        self.fence_every_slot(scope, generation, live).await
    }

    async fn mark_slots(
        &self,
        scope: &str,
        positions: &[(Partition, Option<i64>)],
    ) -> CacheResult<()> {
        self.mark_every_slot(scope, positions).await
    }
}

#[async_trait]
impl KeyCommands for ClusterCache {
    async fn query_key<T: redis::FromRedisValue + Send>(
        &self,
        command: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        ClusterCache::query(self, command).await
    }
}
