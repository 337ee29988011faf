//! Reading the shop events' data and the stored projections, with errors that
//! name the event type and the field, so a dead letter says what to fix.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::event::Event;
use crate::projector::{Outcome, ProjectorError};

/// A required text field of the event's data.
pub(super) fn string<'e>(event: &'e Event, field: &str) -> Result<&'e str, ProjectorError> {
    match required(event, field)? {
        Value::String(text) => Ok(text),
        other => Err(ill_typed(event, field, "a string", other)),
    }
}

/// A required integer field that must be above zero (a quantity).
pub(super) fn positive(event: &Event, field: &str) -> Result<i64, ProjectorError> {
    integer(event, field, "a positive integer", |number| number > 0)
}

/// A required integer field that may be zero (a price: free items exist).
pub(super) fn non_negative(event: &Event, field: &str) -> Result<i64, ProjectorError> {
    integer(event, field, "a non-negative integer", |number| number >= 0)
}

/// The stored projection as `T`; `None` when there is none. A projection of
/// another shape is refused rather than overwritten, since it is somebody's data.
pub(super) fn current<T: DeserializeOwned>(
    current: Option<&Value>,
    projector: &str,
) -> Result<Option<T>, ProjectorError> {
    let Some(value) = current else {
        return Ok(None);
    };
    T::deserialize(value).map(Some).map_err(|error| {
        ProjectorError::new(format!(
            "the current projection does not have the {projector} shape: {error}"
        ))
    })
}

pub(super) fn upsert(projection: &impl Serialize) -> Result<Outcome, ProjectorError> {
    serde_json::to_value(projection)
        .map(Outcome::Upsert)
        .map_err(|error| ProjectorError::new(format!("projection cannot be serialized: {error}")))
}

/// An arithmetic overflow: only absurd quantities or prices get here.
pub(super) fn overflow(event: &Event, what: &str) -> ProjectorError {
    ProjectorError::new(format!("{}: {what} overflows", event.event_type))
}

fn required<'e>(event: &'e Event, field: &str) -> Result<&'e Value, ProjectorError> {
    event
        .data
        .get(field)
        .filter(|value| !value.is_null())
        .ok_or_else(|| {
            ProjectorError::new(format!(
                "{}: data field `{field}` is missing",
                event.event_type
            ))
        })
}

fn integer(
    event: &Event,
    field: &str,
    expected: &str,
    accept: impl Fn(i64) -> bool,
) -> Result<i64, ProjectorError> {
    let value = required(event, field)?;
    match value.as_i64() {
        Some(number) if accept(number) => Ok(number),
        _ => Err(ill_typed(event, field, expected, value)),
    }
}

fn ill_typed(event: &Event, field: &str, expected: &str, found: &Value) -> ProjectorError {
    ProjectorError::new(format!(
        "{}: data field `{field}` must be {expected}, got {found}",
        event.event_type
    ))
}

#[cfg(test)]
pub(super) mod testing {
    //! Building events for the projector tables.

    use chrono::DateTime;
    use serde_json::Value;

    use crate::event::{Event, Position};

    /// An event of `event_type` at `time` (RFC 3339) carrying `data`.
    pub(in crate::projector::examples) fn event(
        event_type: &str,
        time: Option<&str>,
        data: Value,
    ) -> Event {
        Event {
            event_type: event_type.to_owned(),
            id: None,
            source: Some("/shop".to_owned()),
            subject: None,
            time: time.map(|text| {
                DateTime::parse_from_rfc3339(text)
                    .expect("test times are RFC 3339")
                    .to_utc()
            }),
            data,
            position: Position {
                topic: "shop.orders".into(),
                partition: 0,
                offset: 0,
            },
            traceparent: None,
        }
    }
}
