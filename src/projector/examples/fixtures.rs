//! Folds each `projections/fixtures/<name>/events.jsonl` through the registered
//! projector and compares with `expected.json`, so the fixtures (documentation
//! and test data for other suites) cannot drift from the code.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use crate::event::{Envelope, Position, RawRecord, decode};
use crate::projector::{Outcome, Registry};

/// Each projector and the data field that names its projection.
const FIXTURES: [(&str, &str); 3] = [
    ("order_summary", "order_id"),
    ("customer_orders", "customer_id"),
    ("product_stock", "sku"),
];

fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("projections/fixtures")
        .join(name)
}

/// One line of `events.jsonl` as the Kafka record a producer would send in
/// structured mode.
fn record(line: &str, offset: i64) -> RawRecord {
    let line: Value = serde_json::from_str(line).expect("each fixture line is JSON");
    let topic = line["topic"].as_str().expect("each line has a topic");
    let key = line["key"].as_str().expect("each line has a key");
    RawRecord {
        position: Position {
            topic: topic.to_owned(),
            partition: 0,
            offset,
        },
        key: Some(key.as_bytes().to_vec()),
        payload: Some(serde_json::to_vec(&line["event"]).expect("a value serializes")),
        headers: Vec::new(),
        timestamp_ms: None,
    }
}

fn fold(name: &str, identifier_field: &str) -> (BTreeMap<String, Value>, usize) {
    let registry = Registry::with_builtins();
    let projector = registry
        .get(name)
        .expect("the fixture's projector is registered");
    let events = std::fs::read_to_string(fixture_dir(name).join("events.jsonl"))
        .expect("events.jsonl is readable");
    let lines: Vec<&str> = events.lines().collect();
    assert!((10..=30).contains(&lines.len()), "{name}: 10-30 events");

    let mut projections = BTreeMap::new();
    let mut folded = 0;
    for (offset, line) in (0..).zip(lines) {
        let event = decode(&record(line, offset), &Envelope::CloudEvents)
            .unwrap_or_else(|error| panic!("{name} line {}: {error}", offset + 1));
        let key = event
            .data
            .get(identifier_field)
            .and_then(Value::as_str)
            .map(|identifier| format!("{name}:::{identifier}"));
        let current = key.as_ref().and_then(|key| projections.get(key));
        let outcome = projector
            .project(current, &event)
            .unwrap_or_else(|error| panic!("{name} line {}: {error}", offset + 1));
        match (outcome, key) {
            (Outcome::Skip, _) => continue,
            (_, None) => panic!(
                "{name} line {}: folded without `{identifier_field}`",
                offset + 1
            ),
            (Outcome::Upsert(value), Some(key)) => {
                projections.insert(key, value);
            }
            (Outcome::Delete, Some(key)) => {
                projections.remove(&key);
            }
        }
        folded += 1;
    }
    (projections, folded)
}

#[test]
fn fixtures_match_the_projectors() {
    for (name, identifier_field) in FIXTURES {
        let (projections, folded) = fold(name, identifier_field);
        let expected: BTreeMap<String, Value> = serde_json::from_str(
            &std::fs::read_to_string(fixture_dir(name).join("expected.json"))
                .expect("expected.json is readable"),
        )
        .expect("expected.json is a JSON object");
        // A story the projector mostly skips would prove little.
        assert!(folded >= 8, "{name}: only {folded} events were folded");
        assert!(!expected.is_empty(), "{name}: expected.json is empty");
        assert_eq!(projections, expected, "{name}");
    }
}

#[test]
fn every_builtin_has_a_fixture() {
    let registry = Registry::with_builtins();
    let mut fixtures: Vec<&str> = FIXTURES.iter().map(|(name, _)| *name).collect();
    fixtures.sort_unstable();
    assert_eq!(registry.names(), fixtures);
}
