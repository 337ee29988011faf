//! Where records come from and where their progress goes: the ports the
//! pipeline talks to ([`SourceControl`], [`DeadLetters`]) and what the consumer
//! hands it, in order ([`Delivery`]).
//!
//! The consumer's whole conversation with the pipeline is one ordered queue:
//! records, and the rebalance and seek events between them. Whatever the
//! pipeline reads after [`Delivery::Revoked`] no longer belongs to it, and
//! whatever it reads of a partition between asking for a seek and
//! [`Delivery::Sought`] was fetched before the seek. The truth of what was
//! applied lives in each cache's checkpoint (see [`crate::cache::checkpoint`]);
//! the offsets stored here are only Kafka's copy, for lag and tooling.
//!
//! [`headers`] names what a dead letter carries besides its record, for the
//! producer, the reader and a replay alike.

pub mod headers;
pub mod kafka;

use async_trait::async_trait;

pub use crate::cache::Partition;
use crate::event::RawRecord;

/// What the consumer hands the pipeline, in the order it happened.
#[derive(Debug)]
pub enum Delivery {
    Records(Vec<RawRecord>),
    /// These partitions are ours from here on.
    Assigned(Vec<Partition>),
    /// These partitions go to another member once `done` is answered (or the
    /// consumer's drain timeout passed).
    Revoked {
        partitions: Vec<Partition>,
        done: std::sync::mpsc::SyncSender<()>,
    },
    /// A seek the pipeline asked for happened: the partition's records from here
    /// on start at `offset` (or past it, where the log has no such record).
    Sought {
        partition: Partition,
        offset: i64,
    },
}

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

/// The consumer as the pipeline steers it.
pub trait SourceControl: Send + Sync {
    /// Hand over the offsets of work that is done, for Kafka to commit.
    fn store_offsets(&self, offsets: &Offsets) -> Result<(), SourceError>;

    /// Read `partition` again from `offset`; a [`Delivery::Sought`] follows once
    /// the consumer did.
    fn seek(&self, partition: &Partition, offset: i64);
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
