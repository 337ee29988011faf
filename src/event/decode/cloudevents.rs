//! CloudEvents 1.0 over Kafka: binary mode (attributes in `ce_*` headers, the
//! payload is the data) and structured mode (the payload is a JSON event).
//!
//! A JSON `null` attribute counts as absent, as the JSON event format allows.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{
    Attributes, DecodeError, RawRecord, data_value, header, header_where, kind, parse_json,
    parse_time, payload,
};

const SPEC_VERSION: &str = "1.0";

pub(super) fn decode(record: &RawRecord) -> Result<Attributes, DecodeError> {
    let is_binary = record
        .headers
        .iter()
        .any(|(name, _)| name == "ce_type" || name == "ce_specversion");
    if is_binary {
        binary(record)
    } else {
        structured(record)
    }
}

fn binary(record: &RawRecord) -> Result<Attributes, DecodeError> {
    if let Some(version) = header(record, "ce_specversion")? {
        check_spec_version(version)?;
    }
    let event_type = header(record, "ce_type")?.ok_or_else(|| DecodeError::MissingAttribute {
        name: "type",
        location: "no ce_type header".to_owned(),
    })?;
    let time = header(record, "ce_time")?.map(parse_time).transpose()?;
    // HTTP-minded producers write `Content-Type`; the binding's name is lowercase.
    let content_type = header_where(record, "content-type", |name| {
        name.eq_ignore_ascii_case("content-type")
    })?;
    let data = data_value(
        payload(record).unwrap_or_default(),
        content_type,
        "the payload",
    )?;
    Ok(Attributes {
        event_type: event_type.to_owned(),
        id: header(record, "ce_id")?.map(str::to_owned),
        source: header(record, "ce_source")?.map(str::to_owned),
        subject: header(record, "ce_subject")?.map(str::to_owned),
        time,
        data,
    })
}

fn structured(record: &RawRecord) -> Result<Attributes, DecodeError> {
    let bytes = payload(record).ok_or(DecodeError::EmptyPayload {
        needed_by: "a structured CloudEvent",
    })?;
    let value = parse_json("the payload", bytes)?;
    let Value::Object(event) = value else {
        return Err(DecodeError::NotAnObject {
            found: kind(&value),
        });
    };
    if let Some(version) = present(&event, "specversion") {
        let text = version
            .as_str()
            .ok_or_else(|| DecodeError::UnsupportedSpecVersion {
                found: version.to_string(),
            })?;
        check_spec_version(text)?;
    }
    let event_type = string(&event, "type")?.ok_or_else(|| DecodeError::MissingAttribute {
        name: "type",
        location: "no `type` member in the structured event".to_owned(),
    })?;
    let time = string(&event, "time")?
        .map(|text| parse_time(&text))
        .transpose()?;
    let data = structured_data(&event)?;
    Ok(Attributes {
        event_type,
        id: string(&event, "id")?,
        source: string(&event, "source")?,
        subject: string(&event, "subject")?,
        time,
        data,
    })
}

/// `data` as it is, or `data_base64` decoded and read as its `datacontenttype`
/// says (JSON when absent, as the JSON event format implies).
fn structured_data(event: &Map<String, Value>) -> Result<Value, DecodeError> {
    let data = present(event, "data");
    let Some(encoded) = present(event, "data_base64") else {
        return Ok(data.cloned().unwrap_or(Value::Null));
    };
    if data.is_some() {
        return Err(DecodeError::ConflictingData);
    }
    let encoded = encoded
        .as_str()
        .ok_or_else(|| DecodeError::InvalidAttribute {
            name: "data_base64",
            expected: "a string",
            found: kind(encoded).to_owned(),
        })?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|error| DecodeError::InvalidBase64 {
            message: error.to_string(),
        })?;
    let content_type = string(event, "datacontenttype")?;
    data_value(&bytes, content_type.as_deref(), "the data_base64 content")
}

fn check_spec_version(version: &str) -> Result<(), DecodeError> {
    if version == SPEC_VERSION {
        return Ok(());
    }
    Err(DecodeError::UnsupportedSpecVersion {
        found: format!("{version:?}"),
    })
}

/// Member `name`, absent when missing or null.
fn present<'e>(event: &'e Map<String, Value>, name: &str) -> Option<&'e Value> {
    event.get(name).filter(|value| !value.is_null())
}

/// A string attribute; anything but a string (or absence) is an error.
fn string(event: &Map<String, Value>, name: &'static str) -> Result<Option<String>, DecodeError> {
    match present(event, name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(DecodeError::InvalidAttribute {
            name,
            expected: "a string",
            found: kind(other).to_owned(),
        }),
    }
}
