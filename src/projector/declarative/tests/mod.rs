//! Every operation as a table: (steps, current projection, event data) ->
//! outcome or the error's telling part; then the load-time checks.

use chrono::DateTime;
use serde_json::{Value, json};

use super::*;
use crate::event::Position;

mod operations;
mod set;

const EVENT_TYPE: &str = "shop.order.placed";

fn event(data: Value) -> Event {
    Event {
        event_type: EVENT_TYPE.to_owned(),
        id: Some("evt-1".to_owned()),
        source: Some("/shop".to_owned()),
        subject: None,
        time: Some(
            DateTime::parse_from_rfc3339("2024-05-01T09:21:00Z")
                .expect("a valid time")
                .to_utc(),
        ),
        data,
        position: Position {
            topic: "shop.orders".into(),
            partition: 3,
            offset: 42,
        },
        traceparent: None,
    }
}

/// Handlers from TOML as a definition file holds them.
fn specs(text: &str) -> Vec<HandlerSpec> {
    #[derive(Deserialize)]
    struct File {
        handler: Vec<HandlerSpec>,
    }
    toml::from_str::<File>(text)
        .unwrap_or_else(|error| panic!("{text}: {error}"))
        .handler
}

/// One handler for [`EVENT_TYPE`] with these steps (the inside of `do = [...]`).
fn handler(when: Option<&str>, steps: &str) -> DeclarativeProjector {
    let when = when.map_or(String::new(), |when| format!("when = '{when}'\n"));
    let text = format!("[[handler]]\non = \"{EVENT_TYPE}\"\n{when}do = [{steps}]\n");
    compile(&specs(&text)).unwrap_or_else(|errors| panic!("{text}: {errors:#?}"))
}

#[derive(Debug)]
enum Expect {
    Is(Outcome),
    /// A permanent error containing this text.
    Fails(&'static str),
}

fn upsert(value: Value) -> Expect {
    Expect::Is(Outcome::Upsert(value))
}

type Case = (&'static str, &'static str, Option<Value>, Value, Expect);

fn run(cases: Vec<Case>) {
    for (name, steps, current, data, expected) in cases {
        let outcome = handler(None, steps).project(current.as_ref(), &event(data));
        match (&outcome, &expected) {
            (Ok(outcome), Expect::Is(expected)) if outcome == expected => {}
            (Err(error), Expect::Fails(needle))
                if error.0.contains(needle) && error.0.starts_with(EVENT_TYPE) => {}
            _ => panic!("{name}: expected {expected:?}, got {outcome:?}"),
        }
    }
}

#[test]
fn conditions_and_unhandled_types() {
    let cases: Vec<(&str, Option<&str>, Option<Value>, Outcome)> = vec![
        (
            "a true condition",
            Some("$state == null"),
            None,
            Outcome::Upsert(json!({"n": 1})),
        ),
        (
            "a false condition skips",
            Some("$state == null"),
            Some(json!({"n": 5})),
            Outcome::Skip,
        ),
        ("null is false", Some(".data.missing"), None, Outcome::Skip),
        ("no value is false", Some("empty"), None, Outcome::Skip),
        (
            "over event and state",
            Some("$state.n < .data.limit"),
            Some(json!({"n": 5})),
            Outcome::Upsert(json!({"n": 1})),
        ),
    ];
    for (name, when, current, expected) in cases {
        let projector = handler(when, r#"{ set = "n", value = 1 }"#);
        let outcome = projector.project(current.as_ref(), &event(json!({"limit": 9})));
        assert_eq!(outcome, Ok(expected), "{name}");
    }
    let projector = handler(None, r#"{ set = "n", value = 1 }"#);
    let mut other = event(json!({}));
    other.event_type = "shop.order.paid".to_owned();
    assert_eq!(projector.project(None, &other), Ok(Outcome::Skip));
    assert_eq!(
        projector.event_types(),
        BTreeSet::from([EVENT_TYPE.to_owned()])
    );
}

#[test]
fn load_errors_name_the_handler_the_step_and_the_problem() {
    let text = r#"
[[handler]]
on = "a"
do = [{ increse = "n", by_value = 1 }]

[[handler]]
on = "b"
when = ".data.x =="
do = [
  { set = "n", from = ".data | nosuchfn" },
  { set = "n", value = 1, from = ".x" },
  { set = "n" },
  { set = "n", value = 1, default = 2 },
  { append = "tags", value = "x", key = "id" },
  { delete = true },
  { unset = "n" },
]

[[handler]]
on = "a"
do = [{ set = "..", value = 1 }, { upsert = "lines", from = "{q: $item.q}" }, { set = "t", from = "now" }]

[[handler]]
on = "c"
do = []
"#;
    let errors = compile(&specs(text)).expect_err("every handler is wrong");
    let expected = [
        "handler 1 on = \"a\": step 1: unknown operation in { by_value, increse } (valid: set,",
        "handler 2 on = \"b\": when: jq \".data.x ==\" does not parse",
        "handler 2 on = \"b\": step 1: from: jq \".data | nosuchfn\": undefined filter `nosuchfn`",
        "handler 2 on = \"b\": step 2: give either value (a literal) or from (jq), not both",
        "handler 2 on = \"b\": step 3: value (a literal) or from (jq) is required",
        "handler 2 on = \"b\": step 4: default and optional apply to from, not to a literal",
        "handler 2 on = \"b\": step 5: `key` does not apply to append",
        "handler 2 on = \"b\": delete must be the last step",
        "handler 3 on = \"a\": event type \"a\" is already handled by handler 1",
        "handler 3 on = \"a\": step 1: set = \"..\" is not a field path",
        "handler 3 on = \"a\": step 2: `from` uses $item, so `match` must say",
        "handler 3 on = \"a\": step 2: key is required",
        "handler 3 on = \"a\": step 3: from: jq \"now\": undefined filter `now`",
        "handler 4 on = \"c\": `do` is empty",
    ];
    for needle in expected {
        assert!(
            errors.iter().any(|error| error.starts_with(needle)),
            "no error starting {needle:?} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn values_round_trip_through_jq() {
    let value = json!({"s": "é", "i": -3, "big": 9_007_199_254_740_993_i64, "f": 0.25,
                       "b": true, "n": null, "list": [1, {"k": []}]});
    let back = expr::from_val(&expr::to_val(&value).unwrap()).unwrap();
    assert_eq!(back, value);
}
