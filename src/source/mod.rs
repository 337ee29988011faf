//! Where records come from and where their progress goes: the ports the
//! pipeline talks to ([`Checkpoint`], [`DeadLetters`]) and the state shared with
//! the consumer ([`Assignment`]). [`kafka`] is the adapter.
//!
//! Invariant: a record's offset is stored only after every write it caused is
//! acknowledged (and, when it failed, after its dead letter is acknowledged).

pub mod kafka;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use crate::event::RawRecord;

/// A record fetched while its partition was assigned under `epoch`.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub record: RawRecord,
    pub epoch: u64,
}

/// What the consumer hands the pipeline at once.
pub type Batch = Vec<Fetched>;

/// A failure of the source or sink itself (never of one event).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The broker could not take it now: retry.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Permanent(String),
}

impl SourceError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Unavailable(_))
    }
}

/// Next offsets to commit, `(topic, partition, offset of the last record done + 1)`.
pub type Offsets = Vec<(String, i32, i64)>;

/// Takes the offsets of work that is done.
pub trait Checkpoint: Send + Sync {
    fn store(&self, offsets: &Offsets) -> Result<(), SourceError>;
}

/// A record that failed permanently, with why and where.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub record: RawRecord,
    /// The projection that failed, when the failure was one projection's.
    pub projection: Option<String>,
    pub reason: &'static str,
    pub error: String,
}

/// Where permanently failed records go (the dead-letter topic).
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// Returns once every letter is acknowledged. A transient error may come
    /// after some letters were delivered: called again with the same letters
    /// (the pipeline's retry), an implementation sends only the others, so no
    /// letter lands twice. A letter too large for the topic is sent cut, never
    /// retried forever; a permanent error means the topic itself is unusable.
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), SourceError>;
}

/// Which partitions this consumer owns, shared by the consumer thread and the
/// pipeline. Each assignment of a partition gets a fresh epoch; records fetched
/// under an older epoch belong to a revoked assignment and are dropped unapplied
/// (the partition's new owner reads them again from the committed offset).
#[derive(Debug, Default)]
pub struct Assignment {
    /// Held by the pipeline for the whole of a batch, and by a revocation while it
    /// commits: revoked partitions are released only between batches.
    pub in_flight: tokio::sync::Mutex<()>,
    /// Topic -> partition -> epoch; nested so a lookup by `&str` allocates nothing
    /// (it runs for every record).
    epochs: Mutex<HashMap<String, HashMap<i32, u64>>>,
    next_epoch: AtomicU64,
}

impl Assignment {
    pub fn assign(&self, partitions: impl IntoIterator<Item = (String, i32)>) {
        let mut epochs = self.epochs();
        for (topic, partition) in partitions {
            let epoch = self.next_epoch.fetch_add(1, Ordering::Relaxed) + 1;
            epochs.entry(topic).or_default().insert(partition, epoch);
        }
    }

    pub fn revoke(&self, partitions: impl IntoIterator<Item = (String, i32)>) {
        let mut epochs = self.epochs();
        for (topic, partition) in partitions {
            if let Some(by_partition) = epochs.get_mut(&topic) {
                by_partition.remove(&partition);
            }
        }
    }

    /// The current epoch of a partition, `None` when it is not assigned.
    pub fn epoch(&self, topic: &str, partition: i32) -> Option<u64> {
        self.epochs()
            .get(topic)
            .and_then(|by_partition| by_partition.get(&partition))
            .copied()
    }

    pub fn owns(&self, fetched: &Fetched) -> bool {
        let position = &fetched.record.position;
        self.epoch(&position.topic, position.partition) == Some(fetched.epoch)
    }

    /// The epochs, even after a panic elsewhere poisoned the lock: each step of
    /// an update is one insert or remove, so a poisoned map is still consistent.
    fn epochs(&self) -> MutexGuard<'_, HashMap<String, HashMap<i32, u64>>> {
        self.epochs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
