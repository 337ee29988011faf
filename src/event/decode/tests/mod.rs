//! Table tests for [`decode`](super::decode): each row is a record, an envelope and the
//! event or error it must give.

mod errors;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::*;

pub(super) fn position() -> Position {
    Position {
        topic: "shop.orders".into(),
        partition: 2,
        offset: 41,
    }
}

pub(super) fn record(payload: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]) -> RawRecord {
    RawRecord {
        position: position(),
        key: Some(b"ord-1".to_vec()),
        payload: payload.map(<[u8]>::to_vec),
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.map(<[u8]>::to_vec)))
            .collect(),
        timestamp_ms: Some(1_714_557_600_000),
    }
}

pub(super) fn structured(event: Value) -> RawRecord {
    record(Some(event.to_string().as_bytes()), &[])
}

/// The event every successful row starts from; rows override what they test.
pub(super) fn event(event_type: &str, data: Value) -> Event {
    Event {
        event_type: event_type.to_owned(),
        id: None,
        source: None,
        subject: None,
        time: None,
        data,
        position: position(),
        traceparent: None,
    }
}

fn may_first_ten() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0)
        .single()
        .expect("a valid date")
}

pub(super) fn json_envelope(data: Option<&str>) -> Envelope {
    Envelope::Json {
        event_type: "/meta/eventType".to_owned(),
        id: Some("/meta/eventId".to_owned()),
        time: Some("/meta/occurredAt".to_owned()),
        data: data.map(str::to_owned),
    }
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn decodes_valid_records() {
    let full = Event {
        id: Some("evt-1".to_owned()),
        source: Some("/shop".to_owned()),
        subject: Some("ord-1".to_owned()),
        time: Some(may_first_ten()),
        traceparent: Some(TRACEPARENT.to_owned()),
        ..event("shop.order.placed", json!({"order_id": "ord-1"}))
    };
    let cases: Vec<(&str, RawRecord, Envelope, Event)> = vec![
        (
            "binary mode, every attribute, JSON data without content-type",
            record(
                Some(br#"{"order_id":"ord-1"}"#),
                &[
                    ("ce_specversion", Some(b"1.0")),
                    ("ce_type", Some(b"shop.order.placed")),
                    ("ce_id", Some(b"evt-1")),
                    ("ce_source", Some(b"/shop")),
                    ("ce_subject", Some(b"ord-1")),
                    ("ce_time", Some(b"2024-05-01T12:00:00+02:00")),
                    ("traceparent", Some(TRACEPARENT.as_bytes())),
                ],
            ),
            Envelope::CloudEvents,
            full.clone(),
        ),
        (
            "binary mode, +json content type with parameters",
            record(
                Some(b"[1,2]"),
                &[
                    ("ce_type", Some(b"t")),
                    (
                        "Content-Type",
                        Some(b"application/vnd.shop+json; charset=utf-8"),
                    ),
                ],
            ),
            Envelope::CloudEvents,
            event("t", json!([1, 2])),
        ),
        (
            "binary mode, text content type gives a string",
            record(
                Some(b"{not json}"),
                &[
                    ("ce_type", Some(b"t")),
                    ("content-type", Some(b"text/plain")),
                ],
            ),
            Envelope::CloudEvents,
            event("t", json!("{not json}")),
        ),
        (
            "binary mode, no payload is null data, a null header is absent",
            record(None, &[("ce_type", Some(b"t")), ("ce_id", None)]),
            Envelope::CloudEvents,
            event("t", Value::Null),
        ),
        (
            "binary mode, empty payload is null data, the last repeated header wins",
            record(
                Some(b""),
                &[("ce_type", Some(b"old")), ("ce_type", Some(b"t"))],
            ),
            Envelope::CloudEvents,
            event("t", Value::Null),
        ),
        (
            "structured mode, every attribute",
            RawRecord {
                headers: vec![(
                    "traceparent".to_owned(),
                    Some(TRACEPARENT.as_bytes().to_vec()),
                )],
                ..structured(json!({
                    "specversion": "1.0", "type": "shop.order.placed", "id": "evt-1",
                    "source": "/shop", "subject": "ord-1", "time": "2024-05-01T10:00:00Z",
                    "data": {"order_id": "ord-1"}
                }))
            },
            Envelope::CloudEvents,
            full.clone(),
        ),
        (
            "structured mode, only a type, null attributes count as absent",
            structured(json!({"type": "t", "id": null, "time": null})),
            Envelope::CloudEvents,
            event("t", Value::Null),
        ),
        (
            "structured mode, data_base64 without datacontenttype is JSON",
            structured(json!({"type": "t", "data_base64": "eyJhIjoxfQ=="})),
            Envelope::CloudEvents,
            event("t", json!({"a": 1})),
        ),
        (
            "structured mode, data_base64 with a text datacontenttype is a string",
            structured(json!({
                "type": "t", "datacontenttype": "text/plain", "data_base64": "eyJhIjoxfQ=="
            })),
            Envelope::CloudEvents,
            event("t", json!("{\"a\":1}")),
        ),
        (
            "JSON envelope, data pointer, numeric id",
            record(
                Some(
                    json!({
                        "meta": {"eventType": "shop.order.placed", "eventId": 7,
                                 "occurredAt": "2024-05-01T10:00:00Z"},
                        "body": {"order_id": "ord-1"}
                    })
                    .to_string()
                    .as_bytes(),
                ),
                &[("traceparent", Some(TRACEPARENT.as_bytes()))],
            ),
            json_envelope(Some("/body")),
            Event {
                id: Some("7".to_owned()),
                time: Some(may_first_ten()),
                traceparent: Some(TRACEPARENT.to_owned()),
                ..event("shop.order.placed", json!({"order_id": "ord-1"}))
            },
        ),
        (
            "JSON envelope, whole payload is the data, optional attributes absent",
            record(Some(br#"{"meta":{"eventType":"t"}}"#), &[]),
            json_envelope(None),
            event("t", json!({"meta": {"eventType": "t"}})),
        ),
        (
            "JSON envelope, data pointer that finds nothing gives null",
            record(Some(br#"{"meta":{"eventType":"t"}}"#), &[]),
            json_envelope(Some("/body")),
            event("t", Value::Null),
        ),
        (
            // An attribute no envelope reads is skipped, not checked: bytes
            // there that are not UTF-8 never made an event undecodable.
            "structured mode, an extension attribute that is not UTF-8",
            record(Some(b"{\"type\":\"t\",\"data\":1,\"note\":\"\xff\"}"), &[]),
            Envelope::CloudEvents,
            event("t", json!(1)),
        ),
    ];
    for (name, record, envelope, expected) in cases {
        assert_eq!(decode(&record, &envelope), Ok(expected), "{name}");
    }
}
