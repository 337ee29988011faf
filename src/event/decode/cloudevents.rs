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

/// A structured event as the fast path reads it: the attributes straight
/// from the payload's bytes, the extensions skipped unparsed, only `data`
/// built as a tree. Anything this shape refuses (a wrong type, a repeated
/// member, bad JSON) is read again by [`structured_in_full`], whose errors
/// say exactly what is wrong.
///
/// `specversion` and `time` are only read, so they borrow the payload's
/// text (an `Option<Cow>` would always copy it: serde borrows only a bare
/// `Cow`). One written with an escape cannot be borrowed, and the full
/// reading takes it.
#[derive(serde::Deserialize)]
struct Structured<'a> {
    #[serde(borrow)]
    specversion: Option<&'a str>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    id: Option<String>,
    source: Option<String>,
    subject: Option<String>,
    #[serde(borrow)]
    time: Option<&'a str>,
    datacontenttype: Option<String>,
    data: Option<Value>,
    data_base64: Option<String>,
}

fn structured(record: &RawRecord) -> Result<Attributes, DecodeError> {
    let bytes = payload(record).ok_or(DecodeError::EmptyPayload {
        needed_by: "a structured CloudEvent",
    })?;
    // A struct also deserializes from a JSON array (its members in order):
    // only an object takes the fast path.
    let is_object = bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{');
    let fast = is_object
        .then(|| crate::json::from_bytes::<Structured<'_>>(bytes).ok())
        .flatten();
    let Some(event) = fast else {
        return structured_in_full(bytes);
    };
    if let Some(version) = event.specversion {
        check_spec_version(version)?;
    }
    let event_type = event
        .event_type
        .ok_or_else(|| DecodeError::MissingAttribute {
            name: "type",
            location: "no `type` member in the structured event".to_owned(),
        })?;
    let time = event.time.map(parse_time).transpose()?;
    let data = match (event.data, event.data_base64) {
        (data, None) => data.unwrap_or(Value::Null),
        (Some(_), Some(_)) => return Err(DecodeError::ConflictingData),
        (None, Some(encoded)) => from_base64(&encoded, event.datacontenttype.as_deref())?,
    };
    Ok(Attributes {
        event_type,
        id: event.id,
        source: event.source,
        subject: event.subject,
        time,
        data,
    })
}

/// The payload read as a whole JSON object first: slower, and exact about
/// what is wrong with an event the fast path refused.
fn structured_in_full(bytes: &[u8]) -> Result<Attributes, DecodeError> {
    let value = parse_json("the payload", bytes)?;
    let Value::Object(mut event) = value else {
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
    // Members are taken out of the parsed event, not copied: it is dropped
    // once its attributes are read, and `data` may be most of it.
    let event_type = string(&mut event, "type")?.ok_or_else(|| DecodeError::MissingAttribute {
        name: "type",
        location: "no `type` member in the structured event".to_owned(),
    })?;
    let time = string(&mut event, "time")?
        .map(|text| parse_time(&text))
        .transpose()?;
    let data = structured_data(&mut event)?;
    Ok(Attributes {
        event_type,
        id: string(&mut event, "id")?,
        source: string(&mut event, "source")?,
        subject: string(&mut event, "subject")?,
        time,
        data,
    })
}

/// `data` as it is, or `data_base64` decoded and read as its `datacontenttype`
/// says (JSON when absent, as the JSON event format implies).
fn structured_data(event: &mut Map<String, Value>) -> Result<Value, DecodeError> {
    let data = event.remove("data").filter(|value| !value.is_null());
    let Some(encoded) = present(event, "data_base64") else {
        return Ok(data.unwrap_or(Value::Null));
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
        })?
        .to_owned();
    let content_type = string(event, "datacontenttype")?;
    from_base64(&encoded, content_type.as_deref())
}

/// `data_base64` decoded and read as its content type says.
fn from_base64(encoded: &str, content_type: Option<&str>) -> Result<Value, DecodeError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|error| DecodeError::InvalidBase64 {
            message: error.to_string(),
        })?;
    data_value(&bytes, content_type, "the data_base64 content")
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

/// A string attribute, taken out of the event; anything but a string (or
/// absence) is an error.
fn string(
    event: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, DecodeError> {
    match event.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(other) => Err(DecodeError::InvalidAttribute {
            name,
            expected: "a string",
            found: kind(&other).to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path gives what reading the whole object gives, or leaves
    /// the event to it: same attributes, same error.
    #[test]
    fn the_fast_path_agrees_with_the_full_reading() {
        let payloads: &[&str] = &[
            r#"{"specversion":"1.0","type":"t","id":"1","source":"s","subject":"x","time":"2024-05-01T10:00:00+02:00","data":{"a":[1,2.5,"\u00e9"]},"ext":{"deep":[null]}}"#,
            r#"{"type":"t\"q","time":"2024-05-01T10:00:00\u005a","data":null,"data_base64":null}"#,
            r#"{"specversion":"1\u002e0","type":"t","time":"2024-05-01T10:00:00Z"}"#,
            r#"{"type":"t","type":"u"}"#,
            r#"{"type":"t","data_base64":"eyJhIjoxfQ==","datacontenttype":"application/json"}"#,
            r#"{"type":"t","data_base64":"aGk=","datacontenttype":"text/plain"}"#,
            r#"{"type":"t","data":1,"data_base64":"aGk="}"#,
            r#"{"type":1}"#,
            r#"{"type":"t","id":7}"#,
            r#"{"specversion":1.0,"type":"t"}"#,
            r#"{"specversion":"0.3","type":"t"}"#,
            r#"{"id":"1"}"#,
            r#"["1.0","t"]"#,
            r#"  {"type":"t"}  "#,
            r#"{"type":"t","time":"yesterday"}"#,
            r#"{"type":"t","data":{}} trailing"#,
            r#"{"type":"t","data_base64":"%%%"}"#,
        ];
        for payload in payloads {
            let record = RawRecord {
                position: crate::event::Position {
                    topic: "t".into(),
                    partition: 0,
                    offset: 0,
                },
                key: None,
                payload: Some(payload.as_bytes().to_vec()),
                headers: Vec::new(),
                timestamp_ms: None,
            };
            assert_eq!(
                structured(&record),
                structured_in_full(payload.as_bytes()),
                "{payload}"
            );
        }
    }
}
