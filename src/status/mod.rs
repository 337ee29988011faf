//! What each owned partition has applied, per cache, against the end of its
//! log, and which caches an operator's pause holds: the board the status
//! endpoint, `projectionist_projection_state` and the pipeline read.
//!
//! Invariants: the end of a log comes from librdkafka's statistics (the high
//! watermark of its last fetch), the applied positions from the pipeline after
//! each commit; a partition is on the board only while this process owns it,
//! so a sum over replicas counts each partition once.

mod pauses;
mod report;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use crate::cache::Partition;

pub use pauses::{PAUSE_POLL, Pauses, load_pauses, watch_pauses};
pub use report::{
    LIVE_WITHIN_SECS, PartitionStatus, ProjectionStatus, STALLED_AFTER_MS, State, partition_state,
};

/// One cache's progress on one partition.
#[derive(Debug, Clone, Copy)]
struct Applied {
    /// The next offset to apply; `None` until the cache anchored the partition.
    next: Option<i64>,
    /// Unix ms when `next` last moved (or the partition was taken up).
    moved_ms: u64,
    /// Kafka timestamp of the newest record applied, unix ms.
    newest_record_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct Board {
    /// High watermark per partition.
    ends: HashMap<Partition, i64>,
    applied: HashMap<(String, Partition), Applied>,
    /// Projections an operator paused, and the caches they hold.
    pauses: Pauses,
}

/// Shared progress board; clones share it.
#[derive(Debug, Clone)]
pub struct Progress {
    board: Arc<Mutex<Board>>,
    /// The caches held by a pause, for the pipeline to notice a resume at once.
    held: Arc<watch::Sender<BTreeSet<String>>>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            board: Arc::default(),
            held: Arc::new(watch::channel(BTreeSet::new()).0),
        }
    }
}

impl Progress {
    fn board(&self) -> MutexGuard<'_, Board> {
        // Every update is a single insert or removal: a poisoned board is consistent.
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The end of a partition's log, as librdkafka last saw it.
    pub fn set_end(&self, partition: Partition, high_watermark: i64) {
        self.board().ends.insert(partition, high_watermark);
    }

    /// Where `cache` stands on `partition` now, with the Kafka timestamp of
    /// the newest record it just applied, if any.
    pub fn set_applied(
        &self,
        cache: &str,
        partition: &Partition,
        next: Option<i64>,
        newest_record_ms: Option<i64>,
    ) {
        let now = report::now_ms();
        let mut board = self.board();
        let entry = board
            .applied
            .entry((cache.to_owned(), partition.clone()))
            .or_insert(Applied {
                next,
                moved_ms: now,
                newest_record_ms: None,
            });
        if entry.next != next {
            entry.next = next;
            entry.moved_ms = now;
        }
        if newest_record_ms.is_some() {
            entry.newest_record_ms = newest_record_ms;
        }
    }

    /// Another member owns `partition` now: it reports it.
    pub fn forget(&self, partition: &Partition) {
        let mut board = self.board();
        board.ends.remove(partition);
        board.applied.retain(|(_, owned), _| owned != partition);
    }

    /// Replace the pauses in force; the pipeline hears about held caches.
    pub fn set_pauses(&self, pauses: Pauses) {
        let held = pauses.held_caches();
        self.board().pauses = pauses;
        self.held.send_if_modified(|current| {
            let changed = *current != held;
            *current = held;
            changed
        });
    }

    pub fn pauses(&self) -> Pauses {
        self.board().pauses.clone()
    }

    /// Whether a pause holds `cache`: nothing of it is committed meanwhile.
    pub fn is_held(&self, cache: &str) -> bool {
        self.held.borrow().contains(cache)
    }

    /// The held caches, changing whenever a pause or resume takes effect.
    pub fn watch_held(&self) -> watch::Receiver<BTreeSet<String>> {
        self.held.subscribe()
    }

    /// Every owned partition of `topics` as `cache` has applied it.
    pub fn partitions(&self, cache: &str, topics: &[String]) -> Vec<PartitionStatus> {
        let now = report::now_ms();
        let board = self.board();
        let mut partitions: Vec<PartitionStatus> = board
            .applied
            .iter()
            .filter(|((owner, partition), _)| owner == cache && topics.contains(&partition.topic))
            .map(|((_, partition), applied)| {
                let end = board.ends.get(partition).copied();
                PartitionStatus::new(partition, applied, end, now)
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        partitions
    }
}
