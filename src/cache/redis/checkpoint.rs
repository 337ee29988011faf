//! Checkpoints on Redis: one hash per scope (see [`checkpoint_key`]) with two
//! fields per partition, `e/{topic}/{partition}` (the owner's epoch) and
//! `n/{topic}/{partition}` (the next offset to apply). Claims and commits are
//! Lua scripts, so each runs atomically with the writes it guards.

use redis::Value as Reply;

use super::ArgWriter;
use super::operator::KeyCommands;
use super::{
    RedisCache, check_keys_lua, checked_command, checked_keys, checked_values, unavailable,
    write_keys_lua,
};
use crate::cache::{
    CacheError, CacheResult, Claim, Commit, CommitOutcome, Partition, checkpoint_key,
};

/// `KEYS[1]`: the checkpoint hash. `ARGV`: partition fields. Each partition
/// gets an epoch above both its stored one and Redis's clock in microseconds,
/// so epochs keep growing even after Redis is rolled back to an older
/// snapshot. Returns, per partition, the epoch and the stored next offset
/// (`""` when none).
const CLAIM_SCRIPT: &str = r#"
local now = redis.call('TIME')
local clock = tonumber(now[1]) * 1000000 + tonumber(now[2])
local claims = {}
for i = 1, #ARGV do
  local stored = tonumber(redis.call('HGET', KEYS[1], 'e/' .. ARGV[i]) or '0')
  local epoch = math.max(stored + 1, clock)
  local text = string.format('%d', epoch)
  redis.call('HSET', KEYS[1], 'e/' .. ARGV[i], text)
  claims[#claims + 1] = text
  claims[#claims + 1] = redis.call('HGET', KEYS[1], 'n/' .. ARGV[i]) or ''
end
return claims
"#;

/// `KEYS`: the checkpoint hash, the checked keys, the written keys. `ARGV[1]`:
/// how many partitions advance; `ARGV[2]`: the generation the batch was
/// folded under (checked only when partitions advance); then per partition its field, epoch, expected
/// next offset (`""`: none stored) and new next offset; then one byte per
/// checked key ('1' held a value when read, '0' absent) followed by the text
/// each held; then per written key its JSON ("" deletes) and TTL in ms (0:
/// none). Returns `{0}` applied, `{1, i, epoch}` fenced by a newer owner of
/// partition i (0-based), `{2, i}` partition i unclaimed (or claimed by an older
/// epoch: the store lost our claim), `{3, i, next}` partition i moved, `{4}` a
/// checked key changed, `{5, generation}` the definitions changed. Nothing is
/// written unless it returns `{0}`.
const COMMIT_SCRIPT: &str = concat!(
    r#"
local checkpoint = KEYS[1]
local advances = tonumber(ARGV[1])
if advances > 0 then
  local generation = redis.call('HGET', checkpoint, 'g') or '0'
  if generation ~= ARGV[2] then return {5, generation} end
end
for i = 0, advances - 1 do
  local at = 3 + 4 * i
  local field, epoch, from = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local owner = redis.call('HGET', checkpoint, 'e/' .. field)
  if owner ~= epoch then
    if owner and tonumber(owner) > tonumber(epoch) then return {1, i, owner} end
    return {2, i}
  end
  local next = redis.call('HGET', checkpoint, 'n/' .. field) or ''
  if next ~= from then return {3, i, next} end
end
local keys_at, argv_at, conflict = 1, 3 + 4 * advances, {4}
"#,
    check_keys_lua!(),
    write_keys_lua!(),
    r#"
for i = 0, advances - 1 do
  local at = 3 + 4 * i
  redis.call('HSET', checkpoint, 'n/' .. ARGV[at], ARGV[at + 3])
end
return {0}
"#
);

/// Claim `partitions` in `scope`'s checkpoint: one key, so one script on one
/// Redis and on a cluster (on the primary of that key's slot) alike.
pub(crate) async fn claim_partitions(
    on: &impl KeyCommands,
    scope: &str,
    partitions: &[Partition],
) -> CacheResult<Vec<Claim>> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let mut command = redis::cmd("EVAL");
    command.arg(CLAIM_SCRIPT).arg(1).arg(checkpoint_key(scope));
    for partition in partitions {
        command.arg(partition.field());
    }
    let reply: Vec<String> = on.query_key(&command).await.map_err(unavailable)?;
    parse_claims(scope, partitions.len(), &reply)
}

impl RedisCache {
    pub(super) async fn commit_batch(&self, commit: Commit<'_>) -> CacheResult<CommitOutcome> {
        if commit.advances.is_empty() && commit.writes.is_empty() {
            return Ok(CommitOutcome::Applied);
        }
        let mut command = checked_command(
            "EVAL",
            COMMIT_SCRIPT,
            commit.advances.len(),
            commit.expected,
            commit.writes,
        );
        command
            .arg(1 + commit.expected.len() + commit.writes.len())
            .arg(checkpoint_key(commit.scope));
        let mut args = ArgWriter::default();
        checked_keys(&mut command, &mut args, commit.expected, commit.writes);
        command.arg(commit.advances.len()).arg(commit.generation);
        for advance in commit.advances {
            command
                .arg(advance.partition.field())
                .arg(advance.epoch)
                .arg(
                    advance
                        .from
                        .map(|from| from.to_string())
                        .unwrap_or_default(),
                )
                .arg(advance.to);
        }
        checked_values(
            &mut command,
            &mut args,
            commit.expected,
            commit.writes,
            self.default_ttl,
        );
        let reply: Vec<Reply> = self.query(&command).await.map_err(unavailable)?;
        outcome(&reply).ok_or_else(|| foreign_checkpoint(commit.scope, format!("{reply:?}")))
    }
}

/// A claim script's answer: per partition its epoch and stored next offset.
fn parse_claims(scope: &str, expected: usize, reply: &[String]) -> CacheResult<Vec<Claim>> {
    let claims: Option<Vec<Claim>> = reply
        .chunks(2)
        .map(|pair| {
            Some(Claim {
                epoch: pair.first()?.parse().ok()?,
                next: parse_next(pair.get(1)?)?,
            })
        })
        .collect();
    match claims {
        Some(claims) if claims.len() == expected => Ok(claims),
        _ => Err(foreign_checkpoint(scope, format!("{reply:?}"))),
    }
}

/// A stored next offset: `""` for none.
pub(crate) fn parse_next(text: &str) -> Option<Option<i64>> {
    if text.is_empty() {
        return Some(None);
    }
    text.parse().ok().map(Some)
}

pub(crate) fn outcome(reply: &[Reply]) -> Option<CommitOutcome> {
    let number = |at: usize| match reply.get(at)? {
        Reply::Int(number) => Some(*number),
        Reply::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    };
    let text = |at: usize| match reply.get(at)? {
        Reply::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        _ => None,
    };
    let index = || usize::try_from(number(1)?).ok();
    Some(match number(0)? {
        0 => CommitOutcome::Applied,
        1 => CommitOutcome::Fenced {
            index: index()?,
            stored: text(2)?.parse().ok()?,
        },
        2 => CommitOutcome::Unclaimed { index: index()? },
        3 => CommitOutcome::Moved {
            index: index()?,
            stored: parse_next(text(2)?)?,
        },
        4 => CommitOutcome::Conflict,
        5 => CommitOutcome::Outdated {
            stored: text(1)?.parse().ok()?,
        },
        _ => return None,
    })
}

/// The checkpoint hash holds something no claim or commit of ours wrote.
pub(crate) fn foreign_checkpoint(scope: &str, reply: String) -> CacheError {
    CacheError::CorruptValue {
        key: checkpoint_key(scope),
        reason: format!("not a checkpoint this version understands: {reply}"),
    }
}
