//! Domain events as the projectors see them, decoded from Kafka records.
//!
//! Decoding never panics and never drops a record silently: a record that cannot
//! be decoded is a [`DecodeError`], a permanent failure the pipeline counts,
//! logs with its position and dead-letters.

mod decode;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

pub(crate) use decode::kind as json_kind;
pub use decode::{DecodeError, Envelope, Headers, RawRecord, decode};

/// Where a record sits in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// Shared: every record of a partition names the same topic, and a
    /// record's position is copied into its event and its progress.
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// A decoded domain event: the CloudEvents attributes the projectors may use,
/// its data, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `type`: what happened, e.g. `shop.order.placed`.
    pub event_type: String,
    /// `id`: unique per `source`.
    pub id: Option<String>,
    pub source: Option<String>,
    pub subject: Option<String>,
    /// `time`: when it happened, as the producer says.
    pub time: Option<DateTime<Utc>>,
    /// The payload (`data`); `Value::Null` when the event has none.
    pub data: Value,
    pub position: Position,
    /// W3C trace context, when the record carried a `traceparent` header.
    pub traceparent: Option<String>,
}
