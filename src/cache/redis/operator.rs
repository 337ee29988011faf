//! The operations that touch one key, written once for one Redis and for a
//! cluster (where a one-key command goes to its slot's primary, as on one
//! Redis): TTLs, a checkpoint's applied position (what operators and waiting
//! readers ask for), and the paused projections of a group (a set under
//! [`pauses_key`]), notes, and a scope's generation (field `g` of its
//! checkpoint hash).

use std::collections::BTreeSet;

use async_trait::async_trait;
use redis::{Cmd, FromRedisValue, RedisResult};

use super::unavailable;
use crate::cache::{
    CacheError, CacheResult, Generation, Partition, RemainingTtl, Ttl, check_note_key,
    checkpoint_key, pauses_key,
};

/// One command to wherever its key lives: each adapter's own retry rules.
#[async_trait]
pub(crate) trait KeyCommands: Sync {
    async fn query_key<T: FromRedisValue + Send>(&self, command: &Cmd) -> RedisResult<T>;
}

pub(crate) async fn set_ttl(on: &impl KeyCommands, key: &str, ttl: Ttl) -> CacheResult<bool> {
    // PEXPIRE never creates a key, so a missing or expired one stays absent.
    on.query_key(redis::cmd("PEXPIRE").arg(key).arg(ttl.as_millis()))
        .await
        .map_err(unavailable)
}

pub(crate) async fn get_ttl(on: &impl KeyCommands, key: &str) -> CacheResult<Option<RemainingTtl>> {
    let millis: i64 = on
        .query_key(redis::cmd("PTTL").arg(key))
        .await
        .map_err(unavailable)?;
    Ok(match millis {
        -1 => Some(RemainingTtl::Never),
        left if left >= 0 => Some(RemainingTtl::Seconds(left as f64 / 1000.0)),
        // -2: no such key (or an answer no Redis gives).
        _ => None,
    })
}

pub(crate) async fn applied_offset(
    on: &impl KeyCommands,
    scope: &str,
    partition: &Partition,
) -> CacheResult<Option<i64>> {
    let key = checkpoint_key(scope);
    let mut command = redis::cmd("HGET");
    command.arg(&key).arg(format!("n/{}", partition.field()));
    let stored: Option<String> = on.query_key(&command).await.map_err(unavailable)?;
    match stored {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| CacheError::CorruptValue {
                key,
                reason: format!("applied position {text:?} is not an offset"),
            }),
    }
}

pub(crate) async fn paused_projections(
    on: &impl KeyCommands,
    group: &str,
) -> CacheResult<BTreeSet<String>> {
    let mut command = redis::cmd("SMEMBERS");
    command.arg(pauses_key(group));
    on.query_key(&command).await.map_err(unavailable)
}

pub(crate) async fn mark_paused(
    on: &impl KeyCommands,
    group: &str,
    projection: &str,
    paused: bool,
) -> CacheResult<()> {
    let mut command = redis::cmd(if paused { "SADD" } else { "SREM" });
    command.arg(pauses_key(group)).arg(projection);
    on.query_key::<i64>(&command).await.map_err(unavailable)?;
    Ok(())
}

pub(crate) async fn note(on: &impl KeyCommands, key: &str) -> CacheResult<Option<String>> {
    check_note_key(key)?;
    on.query_key(redis::cmd("GET").arg(key))
        .await
        .map_err(unavailable)
}

pub(crate) async fn set_note(
    on: &impl KeyCommands,
    key: &str,
    text: Option<&str>,
) -> CacheResult<()> {
    check_note_key(key)?;
    let command = match text {
        Some(text) => redis::cmd("SET").arg(key).arg(text).clone(),
        None => redis::cmd("DEL").arg(key).clone(),
    };
    on.query_key::<redis::Value>(&command)
        .await
        .map_err(unavailable)?;
    Ok(())
}

pub(crate) async fn advance_generation(
    on: &impl KeyCommands,
    scope: &str,
) -> CacheResult<Generation> {
    let mut command = redis::cmd("HINCRBY");
    command.arg(checkpoint_key(scope)).arg("g").arg(1);
    let generation: i64 = on.query_key(&command).await.map_err(unavailable)?;
    Ok(u64::try_from(generation).unwrap_or(0))
}
