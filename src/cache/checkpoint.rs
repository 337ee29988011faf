//! Progress beside the data: what a consumer group has applied to a cache, per
//! `(topic, partition)`, and the atomic batch write that advances it.
//!
//! Each partition's checkpoint holds the next offset to apply and the epoch of
//! its current owner. A claim ([`crate::cache::Cache::claim`]) gives a fresh,
//! larger epoch; a [`Commit`] lands only while every epoch it names is still
//! stored, every partition still stands where the batch starts, and every key
//! it read is unchanged. The writes and the advance are one atomic step, so a
//! crash, a retried timeout or a zombie can never apply an event twice.
//!
//! Checkpoints live under [`BOOKKEEPING_PREFIX`], which no projection name can
//! take (names are snake_case) and which carries no `:::`, so the seed's
//! methods (patterns, `flush_all`) never see them.

use std::collections::HashMap;

use super::{Version, WriteOp};

/// The prefix of every key Projectionist keeps for itself.
pub const BOOKKEEPING_PREFIX: &str = "@projectionist/";

/// A claim's identity: larger is newer. Redis derives it from its own clock
/// as well as the stored epoch, so an epoch stays monotonic even when Redis is
/// rolled back to an older snapshot.
pub type Epoch = u64;

/// Which definitions a scope's writers must fold with: a count that a
/// promotion of a rebuilt projection advances (field `g` of the checkpoint
/// hash, 0 when absent). A commit folded under another generation is refused
/// ([`CommitOutcome::Outdated`]), so no batch folded with the old definition
/// lands after the switch.
pub type Generation = u64;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub topic: String,
    pub number: i32,
}

impl Partition {
    pub fn new(topic: impl Into<String>, number: i32) -> Partition {
        Partition {
            topic: topic.into(),
            number,
        }
    }

    /// The checkpoint's field suffix: topic names cannot hold `/`.
    pub fn field(&self) -> String {
        format!("{}/{}", self.topic, self.number)
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.number)
    }
}

/// Whose progress a checkpoint holds: a consumer group's in one cache.
pub fn checkpoint_scope(group: &str, cache: &str) -> String {
    format!("{group}/{cache}")
}

/// The key of a scope's checkpoint. `:` is escaped so no group or cache
/// name can make the key look like a projection's (`:::`).
pub fn checkpoint_key(scope: &str) -> String {
    format!(
        "{BOOKKEEPING_PREFIX}checkpoint/{}",
        scope.replace(':', "%3A")
    )
}

/// The key of a consumer group's paused projections (a set of names),
/// escaped like [`checkpoint_key`].
pub fn pauses_key(group: &str) -> String {
    format!("{BOOKKEEPING_PREFIX}paused/{}", group.replace(':', "%3A"))
}

/// What a claim found and took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The new owner's epoch.
    pub epoch: Epoch,
    /// The next offset to apply, `None` when this scope never applied the partition.
    pub next: Option<i64>,
}

/// How one partition moves in a commit: from `from` (what the checkpoint must
/// hold; `None`: nothing) to `to`, under `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    pub partition: Partition,
    pub epoch: Epoch,
    pub from: Option<i64>,
    pub to: i64,
}

/// One atomic batch write with its progress.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// Whose progress: consumer group and cache (see [`checkpoint_key`]).
    pub scope: &'a str,
    pub advances: &'a [Advance],
    /// Keys the batch read, with what they held then.
    pub expected: &'a [(String, Version)],
    pub writes: &'a [WriteOp],
    /// The definitions' generation the batch was folded under; checked only
    /// where partitions advance (a file's replay has no checkpoint).
    pub generation: Generation,
}

/// Why a commit wrote nothing, or that it landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Applied,
    /// A newer owner claimed `advances[index]`'s partition: we are a zombie there.
    Fenced {
        index: usize,
        stored: Epoch,
    },
    /// The stored claim is older than ours or gone: the store lost data
    /// (restarted without it, or rolled back). Claim again.
    Unclaimed {
        index: usize,
    },
    /// The partition stands elsewhere than `from`, under our own epoch.
    Moved {
        index: usize,
        stored: Option<i64>,
    },
    /// A key the batch read changed meanwhile (another partition's writer).
    Conflict,
    /// The scope's definitions changed (a rebuilt projection was promoted, or
    /// is being promoted): load them again and fold again.
    Outdated {
        stored: Generation,
    },
}

/// Where each key's own writes stand, per partition, in a store whose batch
/// writes are atomic per hash slot rather than as a whole (Redis Cluster):
/// a key's slot may have applied a partition past the checkpoint (a crash
/// between two slots' writes, a zombie's batch, a rewind after a failover),
/// and the fold skips what it already holds. Read with
/// [`crate::cache::Cache::floors`], handed back to
/// [`crate::cache::Cache::commit_over`], which lands only where they still hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Floors {
    partitions: Vec<Partition>,
    /// Per key: per partition (in `partitions` order), the next offset its
    /// slot has to apply, `None` when it never applied the partition.
    marks: HashMap<String, Vec<Option<i64>>>,
    /// Partitions whose writes the store lost from an offset on, below the
    /// checkpoint (a primary failed over before replicating them): the
    /// caller folds them again from there.
    lost: Vec<(Partition, i64)>,
    /// Per partition, past the last record the fold covered, where that is
    /// short of the checkpoint's advance (a replay below it): slot marks
    /// advance to here, not to the checkpoint.
    ends: Vec<(Partition, i64)>,
}

impl Floors {
    pub fn new(partitions: Vec<Partition>) -> Floors {
        Floors {
            partitions,
            marks: HashMap::new(),
            lost: Vec::new(),
            ends: Vec::new(),
        }
    }

    /// The fold covered `partition` up to (not including) `end` only.
    pub fn folded_to(&mut self, partition: &Partition, end: i64) {
        self.ends.retain(|(known, _)| known != partition);
        self.ends.push((partition.clone(), end));
    }

    /// How far the fold covered `partition`, when short of its advance.
    pub fn end(&self, partition: &Partition) -> Option<i64> {
        self.ends
            .iter()
            .find(|(known, _)| known == partition)
            .map(|(_, end)| *end)
    }

    /// The store lost `partition`'s writes from `offset` on.
    pub fn lose(&mut self, partition: &Partition, offset: i64) {
        match self.lost.iter_mut().find(|(known, _)| known == partition) {
            Some((_, from)) => *from = (*from).min(offset),
            None => self.lost.push((partition.clone(), offset)),
        }
    }

    /// Partitions to fold again, and from where (see [`Floors::lose`]).
    pub fn lost(&self) -> &[(Partition, i64)] {
        &self.lost
    }

    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// The same floors, each key renamed by `rename` (a shadow keyspace's
    /// keys stand for live keys).
    pub fn renamed(&self, rename: impl Fn(&str) -> String) -> Floors {
        Floors {
            partitions: self.partitions.clone(),
            marks: self
                .marks
                .iter()
                .map(|(key, marks)| (rename(key), marks.clone()))
                .collect(),
            lost: self.lost.clone(),
            ends: self.ends.clone(),
        }
    }

    /// Record `key`'s marks, one per partition in [`Floors::partitions`] order.
    pub fn insert(&mut self, key: String, marks: Vec<Option<i64>>) {
        self.marks.insert(key, marks);
    }

    /// The next offset of `partition` that `key`'s slot still has to apply;
    /// `None` when it applied none (or the key was not read).
    pub fn mark(&self, key: &str, partition: &Partition) -> Option<i64> {
        self.mark_of(key, &partition.topic, partition.number)
    }

    fn mark_of(&self, key: &str, topic: &str, number: i32) -> Option<i64> {
        let index = self
            .partitions
            .iter()
            .position(|known| known.number == number && known.topic == topic)?;
        self.marks.get(key)?.get(index).copied().flatten()
    }

    /// Whether `key` already holds the event at `offset` of partition
    /// `number` of `topic` (by name: the fold asks once per event).
    pub fn holds(&self, key: &str, topic: &str, number: i32, offset: i64) -> bool {
        self.mark_of(key, topic, number)
            .is_some_and(|mark| offset < mark)
    }
}
