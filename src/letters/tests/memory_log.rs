//! The dead-letter topic in memory, for the replay and purge tests: a log
//! readers read on their own, and a sink that appends to it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::event::{Headers, Position, RawRecord};
use crate::letters::{LetterLog, Polled};
use crate::source::headers::{
    ERROR, PROJECTION, REASON, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC,
};
use crate::source::{DeadLetter, DeadLetters, SourceError};

pub const TOPIC: &str = "dead-letters";

/// Letters per partition, shared by every reader of the topic.
pub type Partitions = Arc<Mutex<BTreeMap<i32, Vec<RawRecord>>>>;

/// The dead-letter topic in memory; each clone of [`MemoryLog::reader`] reads
/// it on its own.
pub struct MemoryLog {
    partitions: Partitions,
    /// Per assigned partition: the next offset to read, and whether its end
    /// was signalled there.
    reading: Mutex<BTreeMap<i32, (i64, bool)>>,
    /// Reads left before the topic stops answering.
    polls_left: Mutex<Option<usize>>,
}

impl MemoryLog {
    pub fn new(partitions: i32) -> MemoryLog {
        let empty = (0..partitions).map(|number| (number, Vec::new())).collect();
        MemoryLog::over(Arc::new(Mutex::new(empty)))
    }

    pub fn over(partitions: Partitions) -> MemoryLog {
        MemoryLog {
            partitions,
            reading: Mutex::new(BTreeMap::new()),
            polls_left: Mutex::new(None),
        }
    }

    /// Where letters that fail again go: this topic.
    pub fn sink(&self) -> Sink {
        Sink(Arc::clone(&self.partitions))
    }

    pub fn reader(&self) -> MemoryLog {
        MemoryLog::over(Arc::clone(&self.partitions))
    }

    pub fn failing_after(self, polls: usize) -> MemoryLog {
        *self.polls_left.lock().unwrap() = Some(polls);
        self
    }

    pub fn append(&self, partition: i32, letter: &DeadLetter) -> i64 {
        let mut partitions = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let letters = partitions.get_mut(&partition).unwrap();
        let offset = letters.len() as i64;
        let mut headers: Headers = letter.record.headers.clone();
        let position = &letter.record.position;
        for (name, value) in [
            (ERROR, letter.error.clone()),
            (REASON, letter.reason.to_owned()),
            (PROJECTION, letter.projection.clone().unwrap_or_default()),
            (SOURCE_TOPIC, position.topic.to_string()),
            (SOURCE_PARTITION, position.partition.to_string()),
            (SOURCE_OFFSET, position.offset.to_string()),
        ] {
            headers.push((name.to_owned(), Some(value.into_bytes())));
        }
        letters.push(RawRecord {
            position: Position {
                topic: TOPIC.into(),
                partition,
                offset,
            },
            key: letter.record.key.clone(),
            payload: letter.record.payload.clone(),
            headers,
            timestamp_ms: None,
        });
        offset
    }

    pub fn len(&self, partition: i32) -> usize {
        self.partitions.lock().unwrap()[&partition].len()
    }
}

#[async_trait]
impl LetterLog for MemoryLog {
    async fn ends(&self) -> Result<BTreeMap<i32, i64>, SourceError> {
        let partitions = self.partitions.lock().unwrap();
        Ok(partitions
            .iter()
            .map(|(&number, letters)| (number, letters.len() as i64))
            .collect())
    }

    async fn assign(&self, starts: &[(i32, Option<i64>)]) -> Result<(), SourceError> {
        let mut reading = self.reading.lock().unwrap();
        for &(number, start) in starts {
            reading.insert(number, (start.unwrap_or(0), false));
        }
        Ok(())
    }

    async fn seek(&self, partition: i32, offset: i64) -> Result<(), SourceError> {
        self.reading
            .lock()
            .unwrap()
            .insert(partition, (offset, false));
        Ok(())
    }

    async fn poll(&self, _wait: Duration) -> Result<Option<Polled>, SourceError> {
        // Two replays at once take turns.
        tokio::task::yield_now().await;
        if let Some(left) = self.polls_left.lock().unwrap().as_mut() {
            if *left == 0 {
                return Err(SourceError::Unavailable("the broker went away".to_owned()));
            }
            *left -= 1;
        }
        let partitions = self.partitions.lock().unwrap();
        let mut reading = self.reading.lock().unwrap();
        for (number, (next, ended)) in reading.iter_mut() {
            let letters = &partitions[number];
            if let Some(letter) = letters.get(*next as usize) {
                *next += 1;
                *ended = false;
                return Ok(Some(Polled::Letter(letter.clone())));
            }
            if !*ended {
                *ended = true;
                return Ok(Some(Polled::End(*number)));
            }
        }
        Ok(None)
    }
}

/// Letters that fail again land in the same topic, on partition 0.
pub struct Sink(Partitions);

#[async_trait]
impl DeadLetters for Sink {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), SourceError> {
        let log = MemoryLog::over(Arc::clone(&self.0));
        for letter in letters {
            log.append(0, letter);
        }
        Ok(())
    }
}
