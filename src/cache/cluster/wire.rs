//! How the cluster adapter talks to the cluster below the trait: the current
//! connection (replaced after a timeout), commands routed by key or by node,
//! and reads and deletes split by hash slot.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt, TryStreamExt};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::RoutingInfo;
use redis::{Cmd, FromRedisValue, RedisResult};
use tracing::warn;

use super::{CONCURRENCY, ClusterCache, open, slots, unavailable};
use crate::cache::{CacheResult, Version, WriteOp};

impl ClusterCache {
    pub(super) fn connection(&self) -> (u64, ClusterConnection) {
        self.current
            .read()
            .expect("the connection lock is only held to clone or swap")
            .clone()
    }

    /// After a timeout on connection `generation`: replace it, unless a
    /// concurrent command did already. A failed reconnect keeps the old one.
    async fn replace_stalled(&self, generation: u64) {
        let _once = self.replacing.lock().await;
        if self.connection().0 != generation {
            return;
        }
        match open(&self.client, &self.shown_nodes).await {
            Ok(fresh) => {
                warn!(nodes = ?self.shown_nodes, "a cluster command timed out; connecting afresh");
                *self
                    .current
                    .write()
                    .expect("the connection lock is only held to clone or swap") =
                    (generation + 1, fresh);
            }
            Err(error) => warn!(%error, "a cluster command timed out and reconnecting failed"),
        }
    }

    /// Run one command where its keys live (or anywhere, for keyless ones).
    pub(super) async fn query<T: FromRedisValue>(&self, command: &Cmd) -> RedisResult<T> {
        let (generation, mut connection) = self.connection();
        let result = command.query_async(&mut connection).await;
        if matches!(&result, Err(error) if error.is_timeout()) {
            self.replace_stalled(generation).await;
        }
        result
    }

    /// Run one command on the nodes `routing` names.
    pub(super) async fn route<T: FromRedisValue>(
        &self,
        command: &Cmd,
        routing: RoutingInfo,
    ) -> RedisResult<T> {
        let (generation, mut connection) = self.connection();
        let reply = connection.route_command(command.clone(), routing).await;
        if matches!(&reply, Err(error) if error.is_timeout()) {
            self.replace_stalled(generation).await;
        }
        Ok(redis::from_redis_value(reply?)?)
    }

    /// Delete `keys`; returns how many existed. One `UNLINK` per slot: the
    /// client could split a multi-slot command itself, but its fan-out pins
    /// each part to a connection, and a part that meets a slot on the move
    /// (`ASK`) was seen to stall every later command.
    pub(super) async fn unlink(&self, keys: &[String]) -> CacheResult<usize> {
        let unlinks = slot_groups(keys)
            .into_values()
            .map(|indexes| {
                let command = redis::cmd("UNLINK")
                    .arg(indexes.iter().map(|&at| &keys[at]).collect::<Vec<_>>())
                    .to_owned();
                async move {
                    let removed: usize = self.query(&command).await.map_err(unavailable)?;
                    Ok(removed)
                }
            })
            .collect();
        Ok(concurrently(unlinks).await?.into_iter().sum())
    }

    /// The stored text under each of `keys`, in order: one `MGET` per slot,
    /// concurrently (see [`ClusterCache::unlink`] for why not one `MGET`).
    pub(super) async fn texts<K: AsRef<str> + Sync>(
        &self,
        keys: &[K],
    ) -> CacheResult<Vec<Option<Vec<u8>>>> {
        let reads = slot_groups(keys)
            .into_values()
            .map(|indexes| {
                let command = redis::cmd("MGET")
                    .arg(
                        indexes
                            .iter()
                            .map(|&at| keys[at].as_ref())
                            .collect::<Vec<_>>(),
                    )
                    .to_owned();
                async move {
                    let texts: Vec<Option<Vec<u8>>> =
                        self.query(&command).await.map_err(unavailable)?;
                    Ok((indexes, texts))
                }
            })
            .collect();
        let mut texts = vec![None; keys.len()];
        for (indexes, found) in concurrently(reads).await? {
            for (at, text) in indexes.into_iter().zip(found) {
                texts[at] = text;
            }
        }
        Ok(texts)
    }

    /// The Redis type of each of `keys` (`"none"` for a key that is gone).
    pub(super) async fn types_of(&self, keys: &[&String]) -> CacheResult<Vec<String>> {
        let mut types = Vec::with_capacity(keys.len());
        for key in keys {
            types.push(
                self.query(redis::cmd("TYPE").arg(*key))
                    .await
                    .map_err(unavailable)?,
            );
        }
        Ok(types)
    }
}

/// The indexes of `keys`, grouped by hash slot.
pub(super) fn slot_groups<K: AsRef<str>>(keys: &[K]) -> BTreeMap<u16, Vec<usize>> {
    let mut groups: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
    for (at, key) in keys.iter().enumerate() {
        groups
            .entry(slots::slot_of(key.as_ref().as_bytes()))
            .or_default()
            .push(at);
    }
    groups
}

/// One slot's share of a batch: the keys it checks and the writes it makes.
pub(super) type SlotShare = (Vec<(String, Version)>, Vec<WriteOp>);

/// Split a batch and the keys it checks by hash slot, keeping each slot's
/// writes in batch order (one key's writes all share its slot).
pub(super) fn by_slot<'a>(
    expected: &'a [(String, Version)],
    batch: &'a [WriteOp],
) -> BTreeMap<u16, SlotShare> {
    let mut slots: BTreeMap<u16, SlotShare> = BTreeMap::new();
    for (key, version) in expected {
        let share = slots.entry(slots::slot_of(key.as_bytes())).or_default();
        share.0.push((key.clone(), version.clone()));
    }
    for op in batch {
        let share = slots
            .entry(slots::slot_of(op.key().as_bytes()))
            .or_default();
        share.1.push(op.clone());
    }
    slots
}

/// Run `tasks` with at most [`CONCURRENCY`] in flight; the answers in any
/// order. The futures are made before they are streamed: a stream that maps
/// a closure over borrowed items is not provably `Send` in an async trait.
pub(super) async fn concurrently<T, Fut>(tasks: Vec<Fut>) -> CacheResult<Vec<T>>
where
    Fut: std::future::Future<Output = CacheResult<T>>,
{
    stream::iter(tasks)
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await
}
