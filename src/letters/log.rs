//! The dead-letter topic as a replay reads it: a port, so the replay is
//! tested against a log in memory, and [`crate::source::kafka`] adapts it.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::event::RawRecord;
use crate::source::SourceError;

/// What one read brought.
#[derive(Debug, Clone, PartialEq)]
pub enum Polled {
    /// A letter, at its position in the dead-letter topic.
    Letter(RawRecord),
    /// The reader is at the end of this partition (as far as it is written now).
    End(i32),
}

/// The dead-letter topic, read by one replay.
#[async_trait]
pub trait LetterLog: Send + Sync {
    /// Every partition and its end (the offset its next letter will take),
    /// as of now: letters written after this call are not taken up.
    async fn ends(&self) -> Result<BTreeMap<i32, i64>, SourceError>;

    /// Read these partitions, each from an offset (`None`: its first letter).
    async fn assign(&self, starts: &[(i32, Option<i64>)]) -> Result<(), SourceError>;

    /// Read `partition` again from `offset`.
    async fn seek(&self, partition: i32, offset: i64) -> Result<(), SourceError>;

    /// The next letter or end, in offset order per partition; `None` when
    /// nothing came within `wait`.
    async fn poll(&self, wait: Duration) -> Result<Option<Polled>, SourceError>;
}
