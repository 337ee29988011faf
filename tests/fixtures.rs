//! Every `projections/fixtures/<name>/events.jsonl` folded through the
//! definition `projections/` ships for `<name>` (declarative or Rust, keys from
//! its identifier template) must give `expected.json`, so the shipped examples,
//! documentation and test data for other suites, cannot drift from the code.
//! And the declarative `order_summary` must agree with its Rust twin.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use projectionist::config::Settings;
use projectionist::event::{Envelope, Event, decode};
use projectionist::fixtures::read_jsonl;
use projectionist::projection::{Definition, load_dir};
use projectionist::projector::examples::OrderSummaryProjector;
use projectionist::projector::{Outcome, Projector, Registry};

fn projections_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("projections")
}

fn definitions() -> Vec<Definition> {
    let mut settings = Settings::defaults();
    settings.projections_dir = projections_dir();
    load_dir(&settings, &Registry::with_builtins()).expect("the shipped definitions load")
}

/// The story of `name`'s fixture, decoded, each record at its line's offset.
fn story(name: &str) -> Vec<Event> {
    let path = projections_dir()
        .join("fixtures")
        .join(name)
        .join("events.jsonl");
    let records = read_jsonl(&path).unwrap_or_else(|error| panic!("{error}"));
    (0..)
        .zip(records)
        .map(|(offset, record)| {
            decode(&record.to_raw_record(offset), &Envelope::CloudEvents)
                .unwrap_or_else(|error| panic!("{name} line {}: {error}", offset + 1))
        })
        .collect()
}

/// Apply `outcome` for `key` to `projections`; false for a skip.
fn apply(projections: &mut BTreeMap<String, Value>, key: String, outcome: Outcome) -> bool {
    match outcome {
        Outcome::Skip => return false,
        Outcome::Upsert(value) => {
            projections.insert(key, value);
        }
        Outcome::Delete => {
            projections.remove(&key);
        }
    }
    true
}

/// Fold the events `definition` consumes as the pipeline would: the key from
/// the identifier template, the current projection from the keys so far.
fn fold(definition: &Definition, events: &[Event]) -> (BTreeMap<String, Value>, usize) {
    let name = &definition.name;
    let mut projections = BTreeMap::new();
    let mut folded = 0;
    for event in events {
        if !definition.consumes(&event.position.topic, &event.event_type) {
            continue;
        }
        let at = &event.position;
        let identifier = definition
            .identifier
            .render(event)
            .unwrap_or_else(|error| panic!("{name} at {at}: {error}"));
        let key = format!("{name}:::{identifier}");
        let outcome = definition
            .projector
            .project(projections.get(&key), event)
            .unwrap_or_else(|error| panic!("{name} at {at}: {error}"));
        if apply(&mut projections, key, outcome) {
            folded += 1;
        }
    }
    (projections, folded)
}

#[test]
fn every_definition_folds_its_fixture_into_the_expected_projections() {
    let definitions = definitions();
    let fixtures: BTreeSet<String> = std::fs::read_dir(projections_dir().join("fixtures"))
        .expect("the fixtures folder is readable")
        .map(|entry| entry.expect("a readable entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    let named: BTreeSet<String> = definitions.iter().map(|d| d.name.clone()).collect();
    assert_eq!(named, fixtures, "one fixture folder per shipped definition");
    for definition in &definitions {
        let name = &definition.name;
        let (projections, folded) = fold(definition, &story(name));
        let path = projections_dir()
            .join("fixtures")
            .join(name)
            .join("expected.json");
        let expected: BTreeMap<String, Value> =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("expected.json"))
                .expect("expected.json is a JSON object");
        // A story the projector mostly skips would prove little.
        assert!(folded >= 3, "{name}: only {folded} events were folded");
        assert!(!expected.is_empty(), "{name}: expected.json is empty");
        assert_eq!(projections, expected, "{name}");
    }
}

#[test]
fn the_shipped_examples_are_declarative_but_one() {
    let kinds: BTreeMap<String, String> = definitions()
        .into_iter()
        .map(|d| (d.name, d.projector_name))
        .collect();
    let expected = [
        ("customer_orders", "customer_orders"),
        ("daily_sales", "declarative"),
        ("order_summary", "declarative"),
        ("product_stock", "declarative"),
    ];
    let expected: BTreeMap<String, String> = expected
        .iter()
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect();
    assert_eq!(kinds, expected);
}

/// Event by event from the same state: the same outcome every time, so the
/// documents agree along the whole story, not only at its end.
fn assert_twins_agree(events: Vec<Event>, at_least: usize) {
    let definitions = definitions();
    let declarative = definitions
        .iter()
        .find(|d| d.name == "order_summary")
        .expect("order_summary is shipped");
    let mut projections = BTreeMap::new();
    let mut compared = 0;
    for event in events {
        if !declarative.consumes(&event.position.topic, &event.event_type) {
            continue;
        }
        let key = declarative.identifier.render(&event).expect("an order id");
        let at = &event.position;
        let current = projections.get(&key);
        let ours = declarative.projector.project(current, &event);
        let theirs = OrderSummaryProjector.project(current, &event);
        assert_eq!(ours, theirs, "at {at} ({})", event.event_type);
        apply(
            &mut projections,
            key,
            ours.expect("compared equal to a success"),
        );
        compared += 1;
    }
    assert!(compared >= at_least, "only {compared} events compared");
}

#[test]
fn declarative_order_summary_matches_its_rust_twin() {
    assert_twins_agree(story("order_summary"), 15);
}

/// The generated story of the daemon tests and benchmarks: thousands of events,
/// repeated skus at new prices, removals and cancellations.
#[test]
fn the_twins_agree_on_the_long_generated_story() {
    let records = support::shop::story_with_items("shop.orders", "shop.inventory", 400, 50, 7);
    let events = records
        .iter()
        .enumerate()
        .map(|(offset, record)| {
            let raw = record.to_fixture().to_raw_record(offset as i64);
            decode(&raw, &Envelope::CloudEvents).expect("the story decodes")
        })
        .collect();
    assert_twins_agree(events, 3000);
}
