//! Any JSON payload whose attributes are found by JSON pointers (RFC 6901).
//!
//! A pointer that finds nothing (or `null`) means the attribute is absent; only
//! the type is required. An id may be a string or a number, since many systems
//! number their events.

use serde_json::Value;

use super::{Attributes, DecodeError, RawRecord, kind, parse_json, parse_time, payload};

/// The pointers of an [`super::Envelope::Json`], borrowed.
pub(super) struct Pointers<'p> {
    pub event_type: &'p str,
    pub id: Option<&'p str>,
    pub time: Option<&'p str>,
    pub data: Option<&'p str>,
}

pub(super) fn decode(
    record: &RawRecord,
    pointers: &Pointers<'_>,
) -> Result<Attributes, DecodeError> {
    let bytes = payload(record).ok_or(DecodeError::EmptyPayload {
        needed_by: "the JSON envelope",
    })?;
    let mut document = parse_json("the payload", bytes)?;

    let event_type = match find(&document, pointers.event_type) {
        None => {
            return Err(DecodeError::MissingAttribute {
                name: "type",
                location: format!("nothing at pointer {:?}", pointers.event_type),
            });
        }
        Some(Value::String(text)) => text.clone(),
        Some(other) => return Err(invalid("type", "a string", other)),
    };
    let id = match pointers.id.and_then(|pointer| find(&document, pointer)) {
        None => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Number(number)) => Some(number.to_string()),
        Some(other) => return Err(invalid("id", "a string or a number", other)),
    };
    let time = match pointers.time.and_then(|pointer| find(&document, pointer)) {
        None => None,
        Some(Value::String(text)) => Some(parse_time(text)?),
        Some(other) => {
            return Err(DecodeError::InvalidTime {
                value: other.to_string(),
                message: format!("expected a string, got {}", kind(other)),
            });
        }
    };
    let data = match pointers.data {
        None => document,
        // Taken out, not copied: the rest of the document is dropped.
        Some(pointer) => document
            .pointer_mut(pointer)
            .map(Value::take)
            .unwrap_or(Value::Null),
    };
    Ok(Attributes {
        event_type,
        id,
        source: None,
        subject: None,
        time,
        data,
    })
}

fn find<'d>(document: &'d Value, pointer: &str) -> Option<&'d Value> {
    document.pointer(pointer).filter(|value| !value.is_null())
}

fn invalid(name: &'static str, expected: &'static str, found: &Value) -> DecodeError {
    DecodeError::InvalidAttribute {
        name,
        expected,
        found: kind(found).to_owned(),
    }
}
