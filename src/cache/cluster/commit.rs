//! Exactly once, slot by slot. A script only runs within one hash slot, so a
//! batch cannot land atomically with its checkpoint as on one Redis. Instead
//! each slot keeps its own progress beside its keys: a mark hash,
//! `@projectionist/mark/{tag}/{scope}` with the slot's own tag (see
//! [`slots::tag`]), holding per partition (`{topic}/{partition}`) the next
//! offset that slot has applied. Marks replicate with the keys they guard
//! (same slot, same primary, same replication stream), so a failover or a
//! migration moves or loses them together. Their memory is bounded by slots
//! times partitions, whatever the number of keys.
//!
//! A commit runs in three steps:
//! 1. **check**: the checkpoint (owner's epoch, batch start), and, for a batch
//!    folded without floors, every slot (marks, read versions) concurrently,
//!    so that its refusal writes nothing;
//! 2. **write**, one script per slot, concurrently: each compares its marks
//!    and read versions again, writes, and advances its marks to the batch's
//!    end, atomically;
//! 3. **advance** the checkpoint, under the owner's epoch.
//!
//! A slot that landed when another did not (a crash, a timeout, a racing
//! writer) holds marks past the batch start: the next fold skips, per key,
//! the events its slot already holds ([`Floors`]), and a slot whose marks
//! moved since they were read refuses to write. So no event is applied twice
//! to a key, whoever writes (even a zombie, whose writes are the same fold of
//! the same log), and the checkpoint only ever lags the marks.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use redis::Value as Reply;

use super::slots;
use super::wire::SlotShare;
use super::{ClusterCache, concurrently, unavailable};
use crate::cache::redis::checkpoint::{foreign_checkpoint, outcome};
use crate::cache::redis::{
    ArgWriter, check_keys_lua, checked_command, checked_keys, checked_values, write_keys_lua,
};
use crate::cache::{
    Advance, BOOKKEEPING_PREFIX, CacheResult, Commit, CommitOutcome, Floors, Version, WriteOp,
    checkpoint_key,
};

/// `KEYS[1]`: the checkpoint hash. `ARGV[1]`: '1' to advance, '0' to check
/// only; `ARGV[2]`: the generation folded under; `ARGV[3]`: how many
/// partitions; then per partition its field, epoch, expected next offset
/// (`""`: none) and new next offset. Answers as the single-Redis commit
/// script: `{0}` fine (and advanced when asked), `{1, i, epoch}` fenced,
/// `{2, i}` unclaimed, `{3, i, next}` moved, `{5, generation}` outdated.
const CHECKPOINT_SCRIPT: &str = r#"
local checkpoint = KEYS[1]
local advances = tonumber(ARGV[3])
local generation = redis.call('HGET', checkpoint, 'g') or '0'
if generation ~= ARGV[2] then return {5, generation} end
for i = 0, advances - 1 do
  local at = 4 + 4 * i
  local field, epoch, from = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local owner = redis.call('HGET', checkpoint, 'e/' .. field)
  if owner ~= epoch then
    if owner and tonumber(owner) > tonumber(epoch) then return {1, i, owner} end
    return {2, i}
  end
  local next = redis.call('HGET', checkpoint, 'n/' .. field) or ''
  if next ~= from then return {3, i, next} end
end
if ARGV[1] == '1' then
  for i = 0, advances - 1 do
    local at = 4 + 4 * i
    redis.call('HSET', checkpoint, 'n/' .. ARGV[at], ARGV[at + 3])
  end
end
return {0}
"#;

/// `KEYS[1]`: the slot's mark hash; then the checked keys, then the written
/// keys, all in that slot. `ARGV[1]`: '1' to write, '0' to check only;
/// `ARGV[2]`: '1' when the marks were read with the batch, '0' when not;
/// `ARGV[3]`: how many partitions; `ARGV[4]`: the generation the batch was
/// folded under (refused below the slot's, which a promotion raises: field `g`);
/// then per partition its field, the batch
/// start (`""`: none), the mark read (`""`: none) and the batch end; then the
/// checked keys' presence and texts and the written keys' JSON and TTLs, as
/// in the single-Redis scripts. Each mark must still be the one read (a mark
/// that moved on means another writer landed; one that went back, that the
/// slot lost writes), or, when none was read, not past the batch start.
/// Returns 0 fine (written and marked when asked), 1 a mark moved, 2 a
/// checked key changed, 3 outdated; nothing written unless 0.
const SLOT_SCRIPT: &str = concat!(
    r#"
local marks = KEYS[1]
local read = ARGV[2] == '1'
local partitions = tonumber(ARGV[3])
local function offset(text)
  if not text or text == '' then return -1 end
  return tonumber(text)
end
if tonumber(redis.call('HGET', marks, 'g') or '0') > tonumber(ARGV[4]) then return 3 end
for i = 0, partitions - 1 do
  local at = 5 + 4 * i
  local stored = offset(redis.call('HGET', marks, ARGV[at]))
  if read then
    if stored ~= offset(ARGV[at + 2]) then return 1 end
  elseif stored > offset(ARGV[at + 1]) then
    return 1
  end
end
local keys_at, argv_at, conflict = 1, 5 + 4 * partitions, 2
"#,
    check_keys_lua!(),
    "if ARGV[1] ~= '1' then return 0 end\n",
    write_keys_lua!(),
    r#"
for i = 0, partitions - 1 do
  local at = 5 + 4 * i
  if tonumber(ARGV[at + 3]) > offset(redis.call('HGET', marks, ARGV[at])) then
    redis.call('HSET', marks, ARGV[at], ARGV[at + 3])
  end
end
return 0
"#
);

/// The SHA-1 of [`SLOT_SCRIPT`] in hex, as `EVALSHA` names it.
fn slot_script_digest() -> &'static str {
    static DIGEST: OnceLock<String> = OnceLock::new();
    DIGEST.get_or_init(|| {
        let digest = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            SLOT_SCRIPT.as_bytes(),
        );
        digest
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    })
}

/// The mark hash of `scope` in `slot`; `:` escaped as in [`checkpoint_key`].
pub fn mark_key(scope: &str, slot: u16) -> String {
    format!(
        "{BOOKKEEPING_PREFIX}mark/{{{}}}/{}",
        slots::tag(slot),
        scope.replace(':', "%3A")
    )
}

/// Where a landed slot's mark of `step`'s partition moves: past the last
/// record folded, which is the checkpoint's new position except during a
/// replay below it.
pub(super) fn mark_to(floors: Option<&Floors>, step: &Advance) -> i64 {
    floors
        .and_then(|floors| floors.end(&step.partition))
        .unwrap_or(step.to)
}

/// A slot's mark of `step`'s partition as read with the batch: every key of
/// a slot was read with the same marks, so any one says them.
fn slot_mark(
    floors: &Floors,
    expected: &[(String, Version)],
    batch: &[WriteOp],
    step: &Advance,
) -> Option<i64> {
    let any_key = expected
        .first()
        .map(|(key, _)| key.clone())
        .or_else(|| batch.first().map(WriteOp::key))
        .unwrap_or_default();
    floors.mark(&any_key, &step.partition)
}

/// Where a slot's fold of `step`'s partition started: the later of its mark
/// and the batch start (`None` sorts first).
fn slot_floor(
    floors: Option<&Floors>,
    expected: &[(String, Version)],
    batch: &[WriteOp],
    step: &Advance,
) -> Option<i64> {
    let mark = floors.and_then(|floors| slot_mark(floors, expected, batch, step));
    mark.max(step.from)
}

fn text(offset: Option<i64>) -> String {
    offset.map(|offset| offset.to_string()).unwrap_or_default()
}

impl ClusterCache {
    /// The three steps of a commit (see the module docs). Without `floors`,
    /// every slot must still stand at the batch start.
    pub(super) async fn commit_slots(
        &self,
        commit: Commit<'_>,
        floors: Option<&Floors>,
    ) -> CacheResult<CommitOutcome> {
        if commit.advances.is_empty() && commit.writes.is_empty() {
            return Ok(CommitOutcome::Applied);
        }
        let slots = super::by_slot(commit.expected, commit.writes);
        // With floors, the slots are not checked ahead: a slot that lands
        // while another refuses is skipped by the next fold's floors, so the
        // check would only spare a refold, at the cost of a script per slot.
        // Without them, a refusal must leave every slot untouched.
        let check_slots = async {
            match floors {
                Some(_) => Ok(true),
                None => self.write_slots(&commit, &slots, floors, false).await,
            }
        };
        let (checkpoint, slots_hold) = tokio::join!(self.checkpoint(&commit, false), check_slots,);
        let checkpoint = checkpoint?;
        if checkpoint != CommitOutcome::Applied {
            return Ok(checkpoint);
        }
        if !slots_hold? {
            return Ok(CommitOutcome::Conflict);
        }
        if !self.write_slots(&commit, &slots, floors, true).await? {
            return Ok(CommitOutcome::Conflict);
        }
        self.checkpoint(&commit, true).await
    }

    /// Check the checkpoint for `advances`, and move it when `advance`.
    async fn checkpoint(&self, commit: &Commit<'_>, advance: bool) -> CacheResult<CommitOutcome> {
        let (scope, advances) = (commit.scope, commit.advances);
        if advances.is_empty() {
            return Ok(CommitOutcome::Applied);
        }
        let mut command = redis::cmd("EVAL");
        command
            .arg(CHECKPOINT_SCRIPT)
            .arg(1)
            .arg(checkpoint_key(scope))
            .arg(if advance { "1" } else { "0" })
            .arg(commit.generation)
            .arg(advances.len());
        for step in advances {
            command
                .arg(step.partition.field())
                .arg(step.epoch)
                .arg(text(step.from))
                .arg(step.to);
        }
        let reply: Vec<Reply> = self.query(&command).await.map_err(unavailable)?;
        outcome(&reply).ok_or_else(|| foreign_checkpoint(scope, format!("{reply:?}")))
    }

    /// Run every slot's script, concurrently; `false` when any refused (its
    /// marks or read keys moved). With `write`, the slots that did not
    /// refuse have landed.
    pub(super) async fn write_slots(
        &self,
        commit: &Commit<'_>,
        slots: &BTreeMap<u16, SlotShare>,
        floors: Option<&Floors>,
        write: bool,
    ) -> CacheResult<bool> {
        let (scope, advances) = (commit.scope, commit.advances);
        let generation = commit.generation;
        let scripts = slots
            .iter()
            .map(|(&slot, (expected, batch))| {
                let share = (slot, expected.as_slice(), batch.as_slice());
                let command =
                    self.slot_command(scope, advances, share, generation, floors, write, true);
                async move {
                    let answer: i64 = match self.query(&command).await {
                        // A node that never ran the script (new, restarted,
                        // promoted) learns it from one `EVAL`.
                        Err(error) if error.code() == Some("NOSCRIPT") => {
                            let full = self.slot_command(
                                scope, advances, share, generation, floors, write, false,
                            );
                            self.query(&full).await
                        }
                        answer => answer,
                    }
                    .map_err(unavailable)?;
                    Ok((slot, answer))
                }
            })
            .collect();
        let answers: Vec<(u16, i64)> = concurrently(scripts).await?;
        if write && !advances.is_empty() {
            let landed: Vec<(u16, Vec<Option<i64>>)> = answers
                .iter()
                .filter(|(_, answer)| *answer == 0)
                .map(|(slot, _)| {
                    let (expected, batch) = &slots[slot];
                    let floors = advances
                        .iter()
                        .map(|step| slot_floor(floors, expected, batch, step))
                        .collect();
                    (*slot, floors)
                })
                .collect();
            self.remember(scope, advances, floors, &landed);
        }
        Ok(answers.iter().all(|(_, answer)| *answer == 0))
    }

    #[allow(clippy::too_many_arguments)]
    fn slot_command(
        &self,
        scope: &str,
        advances: &[Advance],
        (slot, expected, batch): (u16, &[(String, Version)], &[WriteOp]),
        generation: crate::cache::Generation,
        floors: Option<&Floors>,
        write: bool,
        by_digest: bool,
    ) -> redis::Cmd {
        // By digest: a batch is hundreds of slot scripts, and sending the
        // script's text with each (and having Redis hash it) costs more than
        // the writes.
        let (name, script) = if by_digest {
            ("EVALSHA", slot_script_digest())
        } else {
            ("EVAL", SLOT_SCRIPT)
        };
        let mut command = checked_command(name, script, advances.len(), expected, batch);
        command
            .arg(1 + expected.len() + batch.len())
            .arg(mark_key(scope, slot));
        let mut args = ArgWriter::default();
        checked_keys(&mut command, &mut args, expected, batch);
        command
            .arg(if write { "1" } else { "0" })
            .arg(if floors.is_some() { "1" } else { "0" })
            .arg(advances.len())
            .arg(generation);
        for step in advances {
            let read = floors.and_then(|floors| slot_mark(floors, expected, batch, step));
            command
                .arg(step.partition.field())
                .arg(text(step.from))
                .arg(text(read))
                .arg(mark_to(floors, step));
        }
        checked_values(&mut command, &mut args, expected, batch, self.default_ttl);
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_one_redis_names_the_script_by() {
        let script = redis::Script::new(SLOT_SCRIPT);
        assert_eq!(slot_script_digest(), script.get_hash());
    }
}
