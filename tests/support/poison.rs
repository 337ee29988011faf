//! Poison for a counters projection: good deposits, and every kind of bad
//! record a producer can write, each with what the daemon must do with it.

use serde_json::json;

/// The projection the poison test folds the good events into: non-idempotent
/// counters, so an event applied twice (or lost) shows.
pub fn counters_definition(topic: &str) -> String {
    format!(
        r#"name = "counters"
ttl = "never"
topics = [{topic:?}]
identifier = "{{data.account}}"

[[handler]]
on = "bank.deposited"
do = [
  {{ increment = "n", by_value = 1 }},
  {{ increment = "sum", by = ".data.amount" }},
]
"#
    )
}

/// One record to produce.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(&'static str, Vec<u8>)>,
}

/// A good deposit, in CloudEvents structured mode.
pub fn deposit(index: usize, account: &str, amount: i64) -> Record {
    let event = json!({
        "specversion": "1.0",
        "type": "bank.deposited",
        "id": format!("ok-{index}"),
        "source": "/bank",
        "time": "2024-05-01T10:00:00Z",
        "data": {"account": account, "amount": amount},
    });
    Record {
        key: account.to_owned(),
        payload: event.to_string().into_bytes(),
        headers: vec![("content-type", b"application/cloudevents+json".to_vec())],
    }
}

/// The kinds of bad record, in the order [`poison`] cycles through them.
pub const KINDS: [&str; 14] = [
    "not_json",
    "truncated_json",
    "invalid_utf8",
    "nested_10000_deep",
    "type_not_a_string",
    "amount_not_a_number",
    "missing_type",
    "missing_account",
    "binary_type_not_utf8",
    "binary_bad_specversion",
    "binary_bad_time",
    "binary_payload_not_json",
    "binary_without_type",
    "unknown_type",
];

/// What the daemon must do with a kind: skip it and count the skip
/// (`unrouted_type`), or dead-letter it.
pub fn is_skipped(kind: &str) -> bool {
    kind == "unknown_type"
}

/// A 1 MiB record: garbage, or a deposit whose amount is a 1 MiB string.
pub const HUGE_BYTES: usize = 1 << 20;

pub fn huge(index: usize, as_json: bool) -> Record {
    if !as_json {
        return Record {
            key: format!("huge-{index}"),
            payload: (0..HUGE_BYTES).map(|i| b"poison!"[i % 7]).collect(),
            headers: Vec::new(),
        };
    }
    // Valid JSON whose amount the projector refuses; padded to 1 MiB with
    // the whitespace JSON allows after a value.
    let amount = "9".repeat(HUGE_BYTES - 300);
    let mut record = deposit(index, "acct-huge", 0);
    let text = String::from_utf8(record.payload).expect("serde_json writes UTF-8");
    let text = text.replace("\"amount\":0", &format!("\"amount\":\"{amount}\""));
    assert!(text.len() <= HUGE_BYTES, "{} bytes", text.len());
    record.payload = text.into_bytes();
    record.payload.resize(HUGE_BYTES, b' ');
    record
}

/// Bad record number `index` of `kind`.
pub fn poison(kind: &str, index: usize) -> Record {
    let account = format!("acct-{}", index % 50);
    let structured = |event: serde_json::Value| Record {
        key: account.clone(),
        payload: event.to_string().into_bytes(),
        headers: vec![("content-type", b"application/cloudevents+json".to_vec())],
    };
    let binary = |headers: Vec<(&'static str, Vec<u8>)>, payload: &[u8]| Record {
        key: account.clone(),
        payload: payload.to_vec(),
        headers,
    };
    let good_data = format!(r#"{{"account":"{account}","amount":5}}"#);
    match kind {
        "not_json" => binary(Vec::new(), format!("not json at all #{index}").as_bytes()),
        "truncated_json" => {
            let whole = deposit(index, &account, 5).payload;
            binary(Vec::new(), &whole[..whole.len() / 2])
        }
        "invalid_utf8" => {
            let mut bytes = br#"{"specversion":"1.0","type":"bank.deposited","id":""#.to_vec();
            bytes.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
            bytes.extend_from_slice(br#"","data":{"account":"a","amount":1}}"#);
            binary(Vec::new(), &bytes)
        }
        "nested_10000_deep" => {
            let depth = 10_000;
            let mut text = String::from(r#"{"specversion":"1.0","type":"bank.deposited","data":"#);
            text.push_str(&"[".repeat(depth));
            text.push_str(&"]".repeat(depth));
            text.push('}');
            binary(Vec::new(), text.as_bytes())
        }
        "type_not_a_string" => structured(json!({
            "specversion": "1.0", "type": 42, "id": format!("bad-{index}"),
            "data": {"account": account, "amount": 5},
        })),
        "amount_not_a_number" => structured(json!({
            "specversion": "1.0", "type": "bank.deposited", "id": format!("bad-{index}"),
            "data": {"account": account, "amount": "five"},
        })),
        "missing_type" => structured(json!({
            "specversion": "1.0", "id": format!("bad-{index}"),
            "data": {"account": account, "amount": 5},
        })),
        "missing_account" => structured(json!({
            "specversion": "1.0", "type": "bank.deposited", "id": format!("bad-{index}"),
            "data": {"amount": 5},
        })),
        "binary_type_not_utf8" => binary(
            vec![
                ("ce_specversion", b"1.0".to_vec()),
                ("ce_type", vec![0xff, 0x00, 0xfe]),
            ],
            good_data.as_bytes(),
        ),
        "binary_bad_specversion" => binary(
            vec![
                ("ce_specversion", b"0.3-garbage".to_vec()),
                ("ce_type", b"bank.deposited".to_vec()),
            ],
            good_data.as_bytes(),
        ),
        "binary_bad_time" => binary(
            vec![
                ("ce_type", b"bank.deposited".to_vec()),
                ("ce_time", b"yesterday-ish".to_vec()),
            ],
            good_data.as_bytes(),
        ),
        "binary_payload_not_json" => binary(
            vec![
                ("ce_type", b"bank.deposited".to_vec()),
                ("content-type", b"application/json".to_vec()),
            ],
            b"\x00\x01 binary garbage \xff",
        ),
        "binary_without_type" => binary(
            vec![
                ("ce_specversion", b"1.0".to_vec()),
                ("ce_id", b"\xff\xfe".to_vec()),
            ],
            good_data.as_bytes(),
        ),
        "unknown_type" => structured(json!({
            "specversion": "1.0", "type": "bank.unheard_of", "id": format!("bad-{index}"),
            "data": {"account": account, "amount": 5},
        })),
        other => panic!("no poison of kind {other}"),
    }
}
