//! Checked writes: a batch that lands only if every key it was folded from
//! still holds the text that was read. The single-Redis conditional write,
//! its exactly-once commit and the cluster's slot script all run the same
//! check and the same writes, so the Lua for them, and the arguments they
//! take, are written once here.

use super::{ArgWriter, RedisCache, unavailable};
use crate::cache::{CacheResult, Ttl, Version, WriteOp};

/// Lua: the check. Expects the locals `keys_at` (the `KEYS` index just
/// before the first checked key), `argv_at` (the `ARGV` index of the
/// presence bytes, see [`checked_values`]) and `conflict` (what the script
/// returns when a checked key changed). Leaves `checked`, their count.
macro_rules! check_keys_lua {
    () => {
        r#"
local present = ARGV[argv_at]
local checked = #present
for i = 1, checked do
  local current = redis.call('GET', KEYS[keys_at + i])
  if string.byte(present, i) == 49 then
    if current ~= ARGV[argv_at + i] then return conflict end
  elseif current then
    return conflict
  end
end
"#
    };
}

/// Lua: the writes, after [`check_keys_lua`]: every key after the checked
/// ones, with its JSON ("" deletes) and TTL in ms (0: none, and a plain SET
/// also clears an old TTL).
macro_rules! write_keys_lua {
    () => {
        r#"
local values = argv_at + checked
for i = checked + 1, #KEYS - keys_at do
  local at = values + 2 * (i - checked) - 1
  local value, ttl = ARGV[at], ARGV[at + 1]
  if value == '' then
    redis.call('UNLINK', KEYS[keys_at + i])
  elseif ttl == '0' then
    redis.call('SET', KEYS[keys_at + i], value)
  else
    redis.call('SET', KEYS[keys_at + i], value, 'PX', ttl)
  end
end
"#
    };
}

pub(crate) use {check_keys_lua, write_keys_lua};

/// `KEYS`: the checked keys, then the written keys. `ARGV`: as
/// [`checked_values`] writes them. Returns 1 when applied, 0 (nothing
/// written) when a checked key changed.
const CHECKED_APPLY_SCRIPT: &str = concat!(
    "local keys_at, argv_at, conflict = 0, 1, 0\n",
    check_keys_lua!(),
    write_keys_lua!(),
    "return 1\n"
);

impl RedisCache {
    /// Write `batch` only if every key of `expected` still holds its version.
    pub(super) async fn apply_checked(
        &self,
        batch: &[WriteOp],
        expected: &[(String, Version)],
    ) -> CacheResult<bool> {
        if batch.is_empty() && expected.is_empty() {
            return Ok(true);
        }
        // One script: Redis runs it atomically, so the check and the writes
        // cannot interleave with another writer's.
        let mut command = checked_command("EVAL", CHECKED_APPLY_SCRIPT, 0, expected, batch);
        command.arg(expected.len() + batch.len());
        let mut args = ArgWriter::default();
        checked_keys(&mut command, &mut args, expected, batch);
        checked_values(&mut command, &mut args, expected, batch, self.default_ttl);
        let applied: i64 = self.query(&command).await.map_err(unavailable)?;
        Ok(applied == 1)
    }
}

/// `name script` (`EVAL` or `EVALSHA`) for a checked write of `expected`
/// and `batch` that also advances `advances` partitions, its buffers
/// allocated once: grown argument by argument, they were copied over and
/// over, a batch's texts at a time. Each written JSON is estimated at the
/// average stored text read: a capacity, so a wrong guess costs a copy,
/// nothing more.
pub(crate) fn checked_command(
    name: &str,
    script: &str,
    advances: usize,
    expected: &[(String, Version)],
    batch: &[WriteOp],
) -> redis::Cmd {
    // What the callers add besides the checked keys and values: key and
    // partition counts, a checkpoint or mark key, flags, and per advancing
    // partition its field, epoch and offsets.
    const OWN_ARGUMENTS: usize = 8;
    const OWN_BYTES: usize = 256;
    const PER_ADVANCE: (usize, usize) = (4, 64);
    let (read_keys, read_texts) = expected
        .iter()
        .fold((0, 0), |(keys, texts), (key, version)| {
            (
                keys + key.len(),
                texts + version.as_ref().map_or(0, Vec::len),
            )
        });
    let json_estimate = if expected.is_empty() {
        256
    } else {
        read_texts / expected.len() + 64
    };
    let written: usize = batch
        .iter()
        .map(|op| match op {
            WriteOp::Upsert { projection, .. } => {
                projection.name().len() + 3 + projection.id().len() + json_estimate + 20
            }
            WriteOp::Delete { key } => key.len() + 2,
        })
        .sum();
    let arguments = OWN_ARGUMENTS + PER_ADVANCE.0 * advances + 2 * expected.len() + 3 * batch.len();
    let bytes = name.len()
        + script.len()
        + OWN_BYTES
        + PER_ADVANCE.1 * advances
        + expected.len()
        + read_keys
        + read_texts
        + written;
    let mut command = redis::Cmd::with_capacity(arguments, bytes);
    command.arg(name).arg(script);
    command
}

/// The arguments of a checked write after its own: which checked keys
/// were present ('1') or absent ('0'), then the text each present one
/// held (compared as it is, with no copy to tell an absent key from one
/// that held "": foreign values can be anything), then per written key
/// its JSON ("" deletes) and TTL in ms (0: none).
pub(crate) fn checked_values(
    command: &mut redis::Cmd,
    args: &mut ArgWriter,
    expected: &[(String, Version)],
    batch: &[WriteOp],
    default_ttl: Ttl,
) {
    let present: String = expected
        .iter()
        .map(|(_, version)| if version.is_some() { '1' } else { '0' })
        .collect();
    command.arg(present);
    for (_, version) in expected {
        command.arg(version.as_deref().unwrap_or_default());
    }
    for op in batch {
        match op {
            WriteOp::Upsert { projection, expiry } => {
                // 0 = no expiry: a plain SET also clears an old TTL.
                let millis = expiry
                    .ttl(default_ttl)
                    .map(|ttl| ttl.as_millis())
                    .unwrap_or(0);
                command.arg(args.json(projection.value())).arg(millis);
            }
            // A JSON object is never empty text, so "" means delete.
            WriteOp::Delete { .. } => {
                command.arg("").arg(0);
            }
        }
    }
}

/// The keys of a checked write: the checked keys, then the written ones.
pub(crate) fn checked_keys(
    command: &mut redis::Cmd,
    args: &mut ArgWriter,
    expected: &[(String, Version)],
    batch: &[WriteOp],
) {
    for (key, _) in expected {
        command.arg(key);
    }
    for op in batch {
        match op {
            WriteOp::Upsert { projection, .. } => command.arg(args.key(projection)),
            WriteOp::Delete { key } => command.arg(key),
        };
    }
}
