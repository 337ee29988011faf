//! Reading a batch's floors (its keys' slot marks), and noticing writes a
//! slot lost: marks only ever grow, so a mark read back below one this
//! process wrote means the slot's primary failed over before replicating
//! them. The pipeline then folds the partitions again from the lost mark
//! (see `Floors::lost`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tracing::warn;

use super::commit::{mark_key, mark_to};
use super::slots::slot_of;
use super::{ClusterCache, concurrently, unavailable};
use crate::cache::{Advance, CacheResult, Floors, Partition};

/// What this process wrote into one slot's marks for one partition of one
/// scope: the floor of its first write there and the end of its last one.
/// Marks only ever grow, so a mark read back below `last` means the slot
/// lost writes (a primary failed over before replicating them). Bounded by
/// slots times partitions, like the marks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Landed {
    first: Option<i64>,
    last: i64,
}

/// [`Landed`] by (scope, slot, partition field).
pub(super) type LandedMarks = HashMap<(String, u16, String), Landed>;

impl ClusterCache {
    /// Per key, its slot's marks for `partitions`: one `HMGET` per slot.
    pub(super) async fn read_floors(
        &self,
        scope: &str,
        keys: &[String],
        partitions: &[Partition],
    ) -> CacheResult<Floors> {
        let mut floors = Floors::new(partitions.to_vec());
        if partitions.is_empty() || keys.is_empty() {
            return Ok(floors);
        }
        let mut by_slot: BTreeMap<u16, Vec<&String>> = BTreeMap::new();
        for key in keys {
            by_slot
                .entry(slot_of(key.as_bytes()))
                .or_default()
                .push(key);
        }
        let slots: Vec<u16> = by_slot.keys().copied().collect();
        let marks = self.read_marks(scope, &slots, partitions).await?;
        if self.notice_losses(scope, partitions, &marks, &mut floors) {
            // A primary lost writes: other slots it served may have lost
            // some too, and no event may touch them again to tell. Every
            // slot this process wrote is checked once now.
            let (written, all_partitions) = self.written_slots(scope, &marks);
            let others = self.read_marks(scope, &written, &all_partitions).await?;
            self.notice_losses(scope, &all_partitions, &others, &mut floors);
        }
        for (slot, slot_keys) in by_slot {
            for key in slot_keys {
                floors.insert(key.clone(), marks[&slot].clone());
            }
        }
        Ok(floors)
    }

    /// Each of `slots`' marks for `partitions`: one `HMGET` per slot.
    pub(super) async fn read_marks(
        &self,
        scope: &str,
        slots: &[u16],
        partitions: &[Partition],
    ) -> CacheResult<HashMap<u16, Vec<Option<i64>>>> {
        let fields: Vec<String> = partitions.iter().map(Partition::field).collect();
        let reads = slots
            .iter()
            .map(|&slot| {
                let command = redis::cmd("HMGET")
                    .arg(mark_key(scope, slot))
                    .arg(&fields)
                    .to_owned();
                async move {
                    let marks: Vec<Option<i64>> =
                        self.query(&command).await.map_err(unavailable)?;
                    Ok((slot, marks))
                }
            })
            .collect();
        Ok(concurrently(reads).await?.into_iter().collect())
    }

    /// The slots of `scope` this process wrote marks into, except `known`,
    /// and every partition it wrote marks of.
    fn written_slots(
        &self,
        scope: &str,
        known: &HashMap<u16, Vec<Option<i64>>>,
    ) -> (Vec<u16>, Vec<Partition>) {
        let landed = self
            .landed
            .lock()
            .expect("the landed marks are only held to read or update");
        let mut slots = BTreeSet::new();
        let mut partitions = BTreeSet::new();
        for (of, slot, field) in landed.keys() {
            if of != scope {
                continue;
            }
            if !known.contains_key(slot) {
                slots.insert(*slot);
            }
            // A field is `{topic}/{partition}`, and topic names hold no `/`.
            if let Some((topic, number)) = field.rsplit_once('/')
                && let Ok(number) = number.parse()
            {
                partitions.insert(Partition::new(topic, number));
            }
        }
        (
            slots.into_iter().collect(),
            partitions.into_iter().collect(),
        )
    }

    /// Compare the marks read with those this process wrote: a mark below
    /// what landed means the slot lost writes; the partition is then folded
    /// again from the mark (or, with no mark left, from the first floor this
    /// process wrote there).
    fn notice_losses(
        &self,
        scope: &str,
        partitions: &[Partition],
        marks: &HashMap<u16, Vec<Option<i64>>>,
        floors: &mut Floors,
    ) -> bool {
        let mut found = false;
        let mut landed = self
            .landed
            .lock()
            .expect("the landed marks are only held to read or update");
        for (&slot, slot_marks) in marks {
            for (partition, &mark) in partitions.iter().zip(slot_marks) {
                let at = (scope.to_owned(), slot, partition.field());
                let Some(wrote) = landed.get(&at).copied() else {
                    continue;
                };
                if mark >= Some(wrote.last) {
                    continue;
                }
                let from = mark.or(wrote.first).unwrap_or(0);
                found = true;
                warn!(%partition, slot, mark = ?mark, landed = wrote.last, "a slot lost writes that were acknowledged; they are applied again");
                floors.lose(partition, from);
                match mark {
                    Some(mark) => {
                        landed.insert(
                            at,
                            Landed {
                                last: mark,
                                ..wrote
                            },
                        );
                    }
                    None => {
                        landed.remove(&at);
                    }
                }
            }
        }
        found
    }

    /// Remember the marks the slots in `landed` now hold (see [`Landed`]).
    pub(super) fn remember(
        &self,
        scope: &str,
        advances: &[Advance],
        floors: Option<&Floors>,
        landed_slots: &[(u16, Vec<Option<i64>>)],
    ) {
        let mut landed = self
            .landed
            .lock()
            .expect("the landed marks are only held to read or update");
        for (slot, slot_floors) in landed_slots {
            for (step, floor) in advances.iter().zip(slot_floors) {
                let at = (scope.to_owned(), *slot, step.partition.field());
                let to = mark_to(floors, step);
                let entry = landed.entry(at).or_insert(Landed {
                    first: *floor,
                    last: to,
                });
                entry.last = entry.last.max(to);
            }
        }
    }
}
