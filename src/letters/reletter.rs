//! A letter that fails again during a replay goes back to the dead-letter
//! topic as a letter about its original record: the source position, the
//! original headers and the projection it failed for travel on, the failure
//! headers are the new ones. So it is listed like any letter, and the next
//! replay routes it as the first one would have.

use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use serde::Serialize;

use crate::event::{Position, RawRecord};
use crate::source::headers::{FAILURE, Origin};
use crate::source::{DeadLetter, DeadLetters, SourceError};

/// How many failures a replay's report lists one by one (all are counted).
pub const LISTED: usize = 100;

/// One letter sent again, for the replay's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Relettered {
    /// Where the letter that failed sat in the dead-letter topic.
    pub partition: i32,
    pub offset: i64,
    pub source: String,
    pub projection: Option<String>,
    pub reason: &'static str,
    pub error: String,
}

/// The dead-letter sink of a replay: letters about letters become letters
/// about their original records.
pub struct Reletter {
    inner: std::sync::Arc<dyn DeadLetters>,
    sent: Mutex<(usize, Vec<Relettered>)>,
}

impl Reletter {
    pub fn new(inner: std::sync::Arc<dyn DeadLetters>) -> Reletter {
        Reletter {
            inner,
            sent: Mutex::new((0, Vec::new())),
        }
    }

    /// How many letters were sent again, and the first [`LISTED`] of them.
    pub fn sent(&self) -> (usize, Vec<Relettered>) {
        self.lock().clone()
    }

    /// Replaced whole or appended to: a poisoned lock holds nothing half-done.
    fn lock(&self) -> MutexGuard<'_, (usize, Vec<Relettered>)> {
        self.sent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The letter `failed` (about a record read from the dead-letter topic) as a
/// letter about that record's original. A record that names no origin is
/// sent as it is.
pub fn original(failed: &DeadLetter) -> DeadLetter {
    let letter = &failed.record;
    let Some(origin) = Origin::of(&letter.headers) else {
        return failed.clone();
    };
    let headers = letter
        .headers
        .iter()
        .filter(|(name, _)| !FAILURE.contains(&name.as_str()))
        .filter(|(name, _)| name != crate::pipeline::DUPLICATE_OF)
        .cloned()
        .collect();
    DeadLetter {
        record: RawRecord {
            position: origin.position,
            key: letter.key.clone(),
            payload: letter.payload.clone(),
            headers,
            timestamp_ms: letter.timestamp_ms,
        },
        // A letter that no longer decodes failed for no projection now, but
        // only its own projection missed it.
        projection: failed.projection.clone().or(origin.projection),
        reason: failed.reason,
        error: failed.error.clone(),
    }
}

fn summary(failed: &DeadLetter, original: &DeadLetter) -> Relettered {
    let Position {
        partition, offset, ..
    } = failed.record.position;
    Relettered {
        partition,
        offset,
        source: original.record.position.to_string(),
        projection: original.projection.clone(),
        reason: original.reason,
        error: original.error.clone(),
    }
}

#[async_trait]
impl DeadLetters for Reletter {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), SourceError> {
        let originals: Vec<DeadLetter> = letters.iter().map(original).collect();
        self.inner.send(&originals).await?;
        let mut sent = self.lock();
        sent.0 += letters.len();
        for (failed, original) in letters.iter().zip(&originals) {
            if sent.1.len() < LISTED {
                sent.1.push(summary(failed, original));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::headers::{PROJECTION, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC};

    fn header(name: &str, value: &str) -> (String, Option<Vec<u8>>) {
        (name.to_owned(), Some(value.as_bytes().to_vec()))
    }

    #[test]
    fn a_letter_about_a_letter_is_about_the_original_record() {
        let read = RawRecord {
            position: Position {
                topic: "dead-letters".into(),
                partition: 1,
                offset: 17,
            },
            key: Some(b"ord-1".to_vec()),
            payload: Some(b"{}".to_vec()),
            headers: vec![
                header("ce_type", "shop.order.paid"),
                header("projectionist.error", "old error"),
                header("projectionist.reason", "projector_error"),
                header(PROJECTION, "daily_sales"),
                header(SOURCE_TOPIC, "shop.orders"),
                header(SOURCE_PARTITION, "2"),
                header(SOURCE_OFFSET, "40"),
                header("projectionist.truncated", "true"),
            ],
            timestamp_ms: Some(5),
        };
        let failed = DeadLetter {
            record: read,
            projection: None,
            reason: "invalid_json",
            error: "new error".to_owned(),
        };
        let again = original(&failed);
        assert_eq!(again.record.position.to_string(), "shop.orders/2@40");
        assert_eq!(again.projection.as_deref(), Some("daily_sales"));
        assert_eq!(
            (again.reason, again.error.as_str()),
            ("invalid_json", "new error")
        );
        let names: Vec<&str> = again
            .record
            .headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(
            names,
            ["ce_type", "projectionist.truncated"],
            "the failure headers are made anew; the record's own and the cut mark travel on"
        );
        let summary = summary(&failed, &again);
        assert_eq!((summary.partition, summary.offset), (1, 17));
        assert_eq!(summary.source, "shop.orders/2@40");
    }
}
