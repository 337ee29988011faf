//! Kafka record -> [`Event`]: CloudEvents 1.0 (structured and binary modes of the
//! Kafka protocol binding) or any JSON envelope described by JSON pointers.
//!
//! Only the headers an envelope reads are inspected, so a foreign binary header
//! never makes a record undecodable. Every failure is a [`DecodeError`].

mod cloudevents;
mod json;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Event, Position};

/// Record headers in order, as Kafka carries them (values may be null).
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// A Kafka record as it arrived, owned, so a failure can be dead-lettered with
/// its original bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRecord {
    pub position: Position,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Headers,
    /// The record's Kafka timestamp, milliseconds since the epoch, when it has one.
    pub timestamp_ms: Option<i64>,
}

/// How events are wrapped in records.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    /// CloudEvents 1.0: binary mode when the record has a `ce_type` (or
    /// `ce_specversion`) header, structured mode (a JSON envelope) otherwise.
    CloudEvents,
    /// A JSON payload whose attributes are found by JSON pointers (RFC 6901).
    Json {
        /// Pointer to the event type, e.g. `/eventType`. Required.
        event_type: String,
        /// Pointer to the event id, e.g. `/eventId`.
        id: Option<String>,
        /// Pointer to the event time (RFC 3339 text), e.g. `/occurredAt`.
        time: Option<String>,
        /// Pointer to the data; `None` means the whole payload is the data.
        data: Option<String>,
    },
}

/// Why a record is not an event. Always permanent: the same bytes fail the same
/// way on every attempt.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The envelope needs a payload and the record has none (or an empty one).
    #[error("the record has no payload, but {needed_by} needs one")]
    EmptyPayload { needed_by: &'static str },
    #[error("{what} is not valid JSON: {message}")]
    InvalidJson { what: &'static str, message: String },
    #[error("a structured CloudEvent must be a JSON object, got {found}")]
    NotAnObject { found: &'static str },
    /// `location` says where the attribute was looked for (a header, a pointer...).
    #[error("required attribute `{name}` is missing ({location})")]
    MissingAttribute {
        name: &'static str,
        location: String,
    },
    #[error("attribute `{name}` must be {expected}, got {found}")]
    InvalidAttribute {
        name: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("attribute `time` = {value} is not an RFC 3339 timestamp: {message}")]
    InvalidTime { value: String, message: String },
    #[error("specversion {found} is not supported (only \"1.0\" is)")]
    UnsupportedSpecVersion { found: String },
    #[error("header `{name}` is not valid UTF-8")]
    HeaderNotUtf8 { name: String },
    #[error("data_base64 is not valid base64: {message}")]
    InvalidBase64 { message: String },
    /// Non-JSON data becomes a string, so it must be text.
    #[error("data of content type {content_type:?} is not valid UTF-8 text")]
    DataNotUtf8 { content_type: String },
    #[error("the event has both `data` and `data_base64`; CloudEvents allows one")]
    ConflictingData,
}

impl DecodeError {
    /// A low-cardinality label for metrics (`reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::EmptyPayload { .. } => "empty_payload",
            DecodeError::InvalidJson { .. } => "invalid_json",
            DecodeError::NotAnObject { .. } => "not_an_object",
            DecodeError::MissingAttribute { .. } => "missing_attribute",
            DecodeError::InvalidAttribute { .. } => "invalid_attribute",
            DecodeError::InvalidTime { .. } => "invalid_time",
            DecodeError::UnsupportedSpecVersion { .. } => "unsupported_specversion",
            DecodeError::HeaderNotUtf8 { .. } => "header_not_utf8",
            DecodeError::InvalidBase64 { .. } => "invalid_base64",
            DecodeError::DataNotUtf8 { .. } => "data_not_utf8",
            DecodeError::ConflictingData => "conflicting_data",
        }
    }
}

/// Decode one record as `envelope` says. The position is copied from the record
/// and the `traceparent` header, when present, into the event.
pub fn decode(record: &RawRecord, envelope: &Envelope) -> Result<Event, DecodeError> {
    let attributes = match envelope {
        Envelope::CloudEvents => cloudevents::decode(record)?,
        Envelope::Json {
            event_type,
            id,
            time,
            data,
        } => json::decode(
            record,
            &json::Pointers {
                event_type,
                id: id.as_deref(),
                time: time.as_deref(),
                data: data.as_deref(),
            },
        )?,
    };
    Ok(Event {
        event_type: attributes.event_type,
        id: attributes.id,
        source: attributes.source,
        subject: attributes.subject,
        time: attributes.time,
        data: attributes.data,
        position: record.position.clone(),
        traceparent: header(record, "traceparent")?.map(str::to_owned),
    })
}

/// What an envelope yields; [`decode`] adds what every envelope shares.
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Attributes {
    event_type: String,
    id: Option<String>,
    source: Option<String>,
    subject: Option<String>,
    time: Option<DateTime<Utc>>,
    data: Value,
}

/// The text of header `name`; a null value counts as absent. When a name repeats,
/// the last one wins, as with the Java client's `Headers.lastHeader` that most
/// producers are written against.
fn header<'r>(record: &'r RawRecord, name: &str) -> Result<Option<&'r str>, DecodeError> {
    header_where(record, name, |candidate| candidate == name)
}

fn header_where<'r>(
    record: &'r RawRecord,
    name: &str,
    matches: impl Fn(&str) -> bool,
) -> Result<Option<&'r str>, DecodeError> {
    let value = record
        .headers
        .iter()
        .rev()
        .find(|(candidate, _)| matches(candidate))
        .and_then(|(_, value)| value.as_deref());
    match value {
        None => Ok(None),
        Some(bytes) => {
            std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|_| DecodeError::HeaderNotUtf8 {
                    name: name.to_owned(),
                })
        }
    }
}

/// The payload bytes, `None` when absent or empty (the two mean the same to
/// every envelope).
fn payload(record: &RawRecord) -> Option<&[u8]> {
    record.payload.as_deref().filter(|bytes| !bytes.is_empty())
}

fn parse_json(what: &'static str, bytes: &[u8]) -> Result<Value, DecodeError> {
    crate::json::from_bytes(bytes).map_err(|error| DecodeError::InvalidJson {
        what,
        message: error.to_string(),
    })
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, DecodeError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| DecodeError::InvalidTime {
            value: format!("{text:?}"),
            message: error.to_string(),
        })
}

/// The JSON kind of `value`, for messages that say what was found instead.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a media type carries JSON: `application/json` or any `+json`
/// structured suffix (RFC 6839), parameters such as `charset` ignored.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// Data bytes as a value: JSON for JSON media types, else text. Empty is null.
fn data_value(
    bytes: &[u8],
    content_type: Option<&str>,
    json_what: &'static str,
) -> Result<Value, DecodeError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    match content_type {
        None => parse_json(json_what, bytes),
        Some(media_type) if is_json_media_type(media_type) => parse_json(json_what, bytes),
        Some(media_type) => std::str::from_utf8(bytes)
            .map(|text| Value::String(text.to_owned()))
            .map_err(|_| DecodeError::DataNotUtf8 {
                content_type: media_type.to_owned(),
            }),
    }
}
