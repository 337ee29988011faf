//! A rebuild's operations on a cluster: keys listed by prefix (one primary
//! after another, `SCAN` pinned to each), rotations (one script per slot: a
//! shadow key shares its live key's slot), and the fence of a promotion,
//! which raises the live scope's generation in every slot's mark hash so no
//! slot takes a write folded with the old definition any more.

use std::collections::BTreeMap;

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::commit::mark_key;
use super::slots::{SLOTS, slot_of};
use super::{ClusterCache, concurrently, unavailable};
use crate::cache::redis::keyspace::{escape_glob, rotate_command};
use crate::cache::{CacheResult, Generation, Partition, RotateWhen, Rotation};

/// Keys Redis examines per `SCAN` step.
const SCAN_COUNT: usize = 1000;

/// `KEYS[1]`: a slot's mark hash. `ARGV[1]`: the generation to raise it to;
/// then per partition its field and the live checkpoint (`""`: none).
/// Returns 1 when a mark stands past the checkpoint (a batch landed in this
/// slot and not yet in the checkpoint), else 0.
const FENCE_SCRIPT: &str = r#"
local marks = KEYS[1]
if tonumber(ARGV[1]) > tonumber(redis.call('HGET', marks, 'g') or '0') then
  redis.call('HSET', marks, 'g', ARGV[1])
end
for i = 2, #ARGV, 2 do
  local mark = redis.call('HGET', marks, ARGV[i])
  if mark and (ARGV[i + 1] == '' or tonumber(mark) > tonumber(ARGV[i + 1])) then
    return 1
  end
end
return 0
"#;

/// `KEYS[1]`: a slot's mark hash. `ARGV`: per partition its field and the
/// offset its keys stand at now (`""`: leave it).
const MARK_SCRIPT: &str = r#"
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] ~= '' then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 0
"#;

impl ClusterCache {
    /// A page of keys under `prefix`: the cursor is `{primary}:{scan cursor}`
    /// over the primaries in address order.
    pub(super) async fn keys_page(
        &self,
        prefix: &str,
        cursor: Option<String>,
    ) -> CacheResult<(Vec<String>, Option<String>)> {
        let primaries: Vec<(String, u16)> = self.primaries().await?.into_iter().collect();
        let (index, scan) = cursor
            .as_deref()
            .and_then(|cursor| cursor.split_once(':'))
            .and_then(|(index, scan)| {
                Some((index.parse::<usize>().ok()?, scan.parse::<u64>().ok()?))
            })
            .unwrap_or((0, 0));
        let Some((host, port)) = primaries.get(index).cloned() else {
            return Ok((Vec::new(), None));
        };
        let command = redis::cmd("SCAN")
            .arg(scan)
            .arg("MATCH")
            .arg(format!("{}*", escape_glob(prefix)))
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .to_owned();
        let node = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
        let (next, raw): (u64, Vec<Vec<u8>>) =
            self.route(&command, node).await.map_err(unavailable)?;
        let keys = raw
            .into_iter()
            .filter_map(|key| String::from_utf8(key).ok())
            .collect();
        let next = match next {
            0 if index + 1 < primaries.len() => Some(format!("{}:0", index + 1)),
            0 => None,
            next => Some(format!("{index}:{next}")),
        };
        Ok((keys, next))
    }

    /// The rotations, one script per slot, concurrently.
    pub(super) async fn rotate_slots(
        &self,
        rotations: &[Rotation],
        when: RotateWhen,
    ) -> CacheResult<usize> {
        let mut by_slot: BTreeMap<u16, Vec<&Rotation>> = BTreeMap::new();
        for rotation in rotations {
            by_slot
                .entry(slot_of(rotation.live.as_bytes()))
                .or_default()
                .push(rotation);
        }
        let scripts = by_slot
            .into_values()
            .map(|rotations| {
                let command = rotate_command(&rotations, when);
                async move {
                    let moved: i64 = self.query(&command).await.map_err(unavailable)?;
                    Ok(usize::try_from(moved).unwrap_or(0))
                }
            })
            .collect();
        Ok(concurrently(scripts).await?.into_iter().sum())
    }

    /// Raise `scope`'s generation in every slot; `true` when no slot's marks
    /// stand past `live` (the checkpoint, per partition).
    pub(super) async fn fence_every_slot(
        &self,
        scope: &str,
        generation: Generation,
        live: &[(Partition, Option<i64>)],
    ) -> CacheResult<bool> {
        let fences = (0..SLOTS)
            .map(|slot| {
                let mut command = redis::cmd("EVAL");
                command
                    .arg(FENCE_SCRIPT)
                    .arg(1)
                    .arg(mark_key(scope, slot))
                    .arg(generation);
                for (partition, next) in live {
                    command
                        .arg(partition.field())
                        .arg(next.map(|next| next.to_string()).unwrap_or_default());
                }
                async move {
                    let ahead: i64 = self.query(&command).await.map_err(unavailable)?;
                    Ok(ahead == 0)
                }
            })
            .collect();
        Ok(concurrently(fences).await?.into_iter().all(|clean| clean))
    }

    /// Mark every slot of `scope` as standing at `positions`.
    pub(super) async fn mark_every_slot(
        &self,
        scope: &str,
        positions: &[(Partition, Option<i64>)],
    ) -> CacheResult<()> {
        let marks = (0..SLOTS)
            .map(|slot| {
                let mut command = redis::cmd("EVAL");
                command.arg(MARK_SCRIPT).arg(1).arg(mark_key(scope, slot));
                for (partition, next) in positions {
                    command
                        .arg(partition.field())
                        .arg(next.map(|next| next.to_string()).unwrap_or_default());
                }
                async move {
                    let _: i64 = self.query(&command).await.map_err(unavailable)?;
                    Ok(())
                }
            })
            .collect();
        concurrently(marks).await.map(|_| ())
    }
}
