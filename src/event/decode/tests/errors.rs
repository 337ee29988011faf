//! The error rows: every [`DecodeError`] variant, its message and its reason.

use serde_json::json;

use super::*;

#[test]
fn rejects_invalid_records() {
    let ce = Envelope::CloudEvents;
    let cases: Vec<(&str, RawRecord, Envelope, DecodeError, &str)> = vec![
        (
            "structured mode without payload",
            record(None, &[]),
            ce.clone(),
            DecodeError::EmptyPayload {
                needed_by: "a structured CloudEvent",
            },
            "the record has no payload, but a structured CloudEvent needs one",
        ),
        (
            "JSON envelope with an empty payload",
            record(Some(b""), &[]),
            json_envelope(None),
            DecodeError::EmptyPayload {
                needed_by: "the JSON envelope",
            },
            "the record has no payload, but the JSON envelope needs one",
        ),
        (
            "structured mode, invalid JSON",
            record(Some(b"{\"type\":"), &[]),
            ce.clone(),
            DecodeError::InvalidJson {
                what: "the payload",
                message: "EOF while parsing a value at line 1 column 8".to_owned(),
            },
            "the payload is not valid JSON: EOF while parsing a value at line 1 column 8",
        ),
        (
            // UTF-8 is checked over the whole payload first; bytes that fail
            // it are read as bytes, so the message still says where.
            "structured mode, a string that is not UTF-8",
            record(Some(b"{\"type\":\"t\",\"data\":\"\xff\"}"), &[]),
            ce.clone(),
            DecodeError::InvalidJson {
                what: "the payload",
                message: "invalid unicode code point at line 1 column 21".to_owned(),
            },
            "the payload is not valid JSON: invalid unicode code point at line 1 column 21",
        ),
        (
            "binary mode, JSON data with a string that is not UTF-8",
            record(Some(b"[\"\xff\"]"), &[("ce_type", Some(b"t"))]),
            ce.clone(),
            DecodeError::InvalidJson {
                what: "the payload",
                message: "invalid unicode code point at line 1 column 3".to_owned(),
            },
            "the payload is not valid JSON: invalid unicode code point at line 1 column 3",
        ),
        (
            "binary mode, JSON content type but invalid JSON",
            record(Some(b"nope"), &[("ce_type", Some(b"t"))]),
            ce.clone(),
            DecodeError::InvalidJson {
                what: "the payload",
                message: "expected ident at line 1 column 2".to_owned(),
            },
            "the payload is not valid JSON: expected ident at line 1 column 2",
        ),
        (
            "structured mode, data_base64 announced as JSON but is not",
            structured(json!({"type": "t", "data_base64": "bm9wZQ=="})),
            ce.clone(),
            DecodeError::InvalidJson {
                what: "the data_base64 content",
                message: "expected ident at line 1 column 2".to_owned(),
            },
            "the data_base64 content is not valid JSON: expected ident at line 1 column 2",
        ),
        (
            "structured mode, an array",
            structured(json!([1])),
            ce.clone(),
            DecodeError::NotAnObject { found: "an array" },
            "a structured CloudEvent must be a JSON object, got an array",
        ),
        (
            "structured mode without type",
            structured(json!({"specversion": "1.0", "id": "1"})),
            ce.clone(),
            DecodeError::MissingAttribute {
                name: "type",
                location: "no `type` member in the structured event".to_owned(),
            },
            "required attribute `type` is missing (no `type` member in the structured event)",
        ),
        (
            "binary mode (ce_specversion) without ce_type",
            record(Some(b"{}"), &[("ce_specversion", Some(b"1.0"))]),
            ce.clone(),
            DecodeError::MissingAttribute {
                name: "type",
                location: "no ce_type header".to_owned(),
            },
            "required attribute `type` is missing (no ce_type header)",
        ),
        (
            "JSON envelope, nothing at the type pointer",
            record(Some(br#"{"meta":{}}"#), &[]),
            json_envelope(None),
            DecodeError::MissingAttribute {
                name: "type",
                location: "nothing at pointer \"/meta/eventType\"".to_owned(),
            },
            "required attribute `type` is missing (nothing at pointer \"/meta/eventType\")",
        ),
        (
            "JSON envelope, type is not a string",
            record(Some(br#"{"meta":{"eventType":3}}"#), &[]),
            json_envelope(None),
            DecodeError::InvalidAttribute {
                name: "type",
                expected: "a string",
                found: "a number".to_owned(),
            },
            "attribute `type` must be a string, got a number",
        ),
        (
            "JSON envelope, id is an object",
            record(Some(br#"{"meta":{"eventType":"t","eventId":{}}}"#), &[]),
            json_envelope(None),
            DecodeError::InvalidAttribute {
                name: "id",
                expected: "a string or a number",
                found: "an object".to_owned(),
            },
            "attribute `id` must be a string or a number, got an object",
        ),
        (
            "structured mode, source is a number",
            structured(json!({"type": "t", "source": 1})),
            ce.clone(),
            DecodeError::InvalidAttribute {
                name: "source",
                expected: "a string",
                found: "a number".to_owned(),
            },
            "attribute `source` must be a string, got a number",
        ),
        (
            "structured mode, data_base64 is not a string",
            structured(json!({"type": "t", "data_base64": [1]})),
            ce.clone(),
            DecodeError::InvalidAttribute {
                name: "data_base64",
                expected: "a string",
                found: "an array".to_owned(),
            },
            "attribute `data_base64` must be a string, got an array",
        ),
        (
            "structured mode, time is not RFC 3339",
            structured(json!({"type": "t", "time": "2024-13-01T10:00:00Z"})),
            ce.clone(),
            DecodeError::InvalidTime {
                value: "\"2024-13-01T10:00:00Z\"".to_owned(),
                message: "input is out of range".to_owned(),
            },
            "attribute `time` = \"2024-13-01T10:00:00Z\" is not an RFC 3339 timestamp: \
             input is out of range",
        ),
        (
            "binary mode, ce_time without an offset",
            record(
                None,
                &[
                    ("ce_type", Some(b"t")),
                    ("ce_time", Some(b"2024-05-01T10:00:00")),
                ],
            ),
            ce.clone(),
            DecodeError::InvalidTime {
                value: "\"2024-05-01T10:00:00\"".to_owned(),
                message: "premature end of input".to_owned(),
            },
            "attribute `time` = \"2024-05-01T10:00:00\" is not an RFC 3339 timestamp: \
             premature end of input",
        ),
        (
            "JSON envelope, time is a number",
            record(
                Some(br#"{"meta":{"eventType":"t","occurredAt":1714557600}}"#),
                &[],
            ),
            json_envelope(None),
            DecodeError::InvalidTime {
                value: "1714557600".to_owned(),
                message: "expected a string, got a number".to_owned(),
            },
            "attribute `time` = 1714557600 is not an RFC 3339 timestamp: \
             expected a string, got a number",
        ),
        (
            "structured mode, specversion 0.3",
            structured(json!({"specversion": "0.3", "type": "t"})),
            ce.clone(),
            DecodeError::UnsupportedSpecVersion {
                found: "\"0.3\"".to_owned(),
            },
            "specversion \"0.3\" is not supported (only \"1.0\" is)",
        ),
        (
            "structured mode, specversion is a number",
            structured(json!({"specversion": 1.0, "type": "t"})),
            ce.clone(),
            DecodeError::UnsupportedSpecVersion {
                found: "1.0".to_owned(),
            },
            "specversion 1.0 is not supported (only \"1.0\" is)",
        ),
        (
            "binary mode, ce_specversion 2.0",
            record(
                None,
                &[("ce_specversion", Some(b"2.0")), ("ce_type", Some(b"t"))],
            ),
            ce.clone(),
            DecodeError::UnsupportedSpecVersion {
                found: "\"2.0\"".to_owned(),
            },
            "specversion \"2.0\" is not supported (only \"1.0\" is)",
        ),
        (
            "binary mode, ce_type is not UTF-8",
            record(None, &[("ce_type", Some(&[0xff, 0xfe]))]),
            ce.clone(),
            DecodeError::HeaderNotUtf8 {
                name: "ce_type".to_owned(),
            },
            "header `ce_type` is not valid UTF-8",
        ),
        (
            "structured mode, traceparent is not UTF-8",
            RawRecord {
                headers: vec![("traceparent".to_owned(), Some(vec![0xc3]))],
                ..structured(json!({"type": "t"}))
            },
            ce.clone(),
            DecodeError::HeaderNotUtf8 {
                name: "traceparent".to_owned(),
            },
            "header `traceparent` is not valid UTF-8",
        ),
        (
            "structured mode, data_base64 is not base64",
            structured(json!({"type": "t", "data_base64": "%%%"})),
            ce.clone(),
            DecodeError::InvalidBase64 {
                message: "Invalid symbol 37, offset 0.".to_owned(),
            },
            "data_base64 is not valid base64: Invalid symbol 37, offset 0.",
        ),
        (
            "binary mode, text data that is not UTF-8",
            record(
                Some(&[0xff]),
                &[
                    ("ce_type", Some(b"t")),
                    ("content-type", Some(b"text/plain")),
                ],
            ),
            ce.clone(),
            DecodeError::DataNotUtf8 {
                content_type: "text/plain".to_owned(),
            },
            "data of content type \"text/plain\" is not valid UTF-8 text",
        ),
        (
            "structured mode, both data and data_base64",
            structured(json!({"type": "t", "data": 1, "data_base64": "MQ=="})),
            ce.clone(),
            DecodeError::ConflictingData,
            "the event has both `data` and `data_base64`; CloudEvents allows one",
        ),
    ];
    for (name, record, envelope, expected, message) in cases {
        let error = decode(&record, &envelope).expect_err(name);
        assert_eq!(error, expected, "{name}");
        assert_eq!(error.to_string(), message, "{name}");
    }
}

#[test]
fn every_reason_is_distinct_snake_case() {
    let errors = [
        DecodeError::EmptyPayload { needed_by: "x" },
        DecodeError::InvalidJson {
            what: "x",
            message: String::new(),
        },
        DecodeError::NotAnObject { found: "x" },
        DecodeError::MissingAttribute {
            name: "x",
            location: String::new(),
        },
        DecodeError::InvalidAttribute {
            name: "x",
            expected: "x",
            found: String::new(),
        },
        DecodeError::InvalidTime {
            value: String::new(),
            message: String::new(),
        },
        DecodeError::UnsupportedSpecVersion {
            found: String::new(),
        },
        DecodeError::HeaderNotUtf8 {
            name: String::new(),
        },
        DecodeError::InvalidBase64 {
            message: String::new(),
        },
        DecodeError::DataNotUtf8 {
            content_type: String::new(),
        },
        DecodeError::ConflictingData,
    ];
    let reasons: std::collections::BTreeSet<&str> =
        errors.iter().map(DecodeError::reason).collect();
    assert_eq!(reasons.len(), errors.len(), "reasons must be distinct");
    for reason in reasons {
        assert!(
            reason
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{reason} is not snake_case"
        );
    }
}
