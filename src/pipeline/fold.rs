//! The functional core of a batch: decoded events + the loaded states of the keys
//! they touch -> the final state of every touched key, and the failures.
//!
//! No IO here: loading and writing are the caller's. Several events for one key
//! become one write, and a failed event leaves its projection as it was.
//!
//! Each key's state is folded in place, event after event
//! ([`crate::projector::Projector::apply`]), never copied. An event that
//! fails restores its key from the stored text it was loaded from (its
//! [`Version`]), folded again over the events of this batch the key had
//! applied: projectors are pure, so that gives back exactly the state before
//! the failure, and only a failure pays for it.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::KeyMap;
use super::router::Router;
use crate::cache::Version;
use crate::event::{Event, json_kind};
use crate::projector::{Folding, ProjectorError};

/// One application of one projection to one event.
#[derive(Debug, Clone)]
pub struct Work {
    /// Index of the event in the batch's decoded events.
    pub event: usize,
    pub route: usize,
    pub key: String,
}

/// A projector refused an event (permanent).
#[derive(Debug, Clone)]
pub struct Refusal {
    pub event: usize,
    pub route: usize,
    pub reason: &'static str,
    pub error: String,
}

/// The final state of one touched key.
#[derive(Debug, Clone)]
pub struct Write {
    pub route: usize,
    pub key: String,
    /// `None` deletes the projection.
    pub state: Option<Value>,
    /// The latest event time among the events folded into it, for freshness.
    pub event_time: Option<DateTime<Utc>>,
}

/// What the fold decided.
#[derive(Debug, Default)]
pub struct Folded {
    /// One write per touched key, in first-touch order.
    pub writes: Vec<Write>,
    pub refusals: Vec<Refusal>,
    /// Per route (by index): events applied, events skipped by the projector.
    pub applied: Vec<u64>,
    pub skipped: Vec<u64>,
}

/// One touched key while the fold runs.
struct Touched {
    route: usize,
    /// Whether an event was applied (the key is written).
    changed: bool,
    event_time: Option<DateTime<Utc>>,
}

/// Fold `work` in order over `states` (the loaded projections, by key),
/// loaded from `versions` (the stored texts, by key).
pub fn fold(
    router: &Router,
    events: &[Event],
    work: &[Work],
    mut states: KeyMap<String, Option<Value>>,
    versions: &KeyMap<String, Version>,
) -> Folded {
    let mut folded = Folded {
        applied: vec![0; router.len()],
        skipped: vec![0; router.len()],
        ..Folded::default()
    };
    // Keys in first-touch order, and what each went through.
    let mut order: Vec<&str> = Vec::new();
    let mut touched: KeyMap<&str, Touched> = KeyMap::default();
    // Per work item: whether its event was applied (to fold a key again).
    let mut took = vec![false; work.len()];
    for (at, item) in work.iter().enumerate() {
        let projector = &router.route(item.route).definition.projector;
        if !states.contains_key(&item.key) {
            states.insert(item.key.clone(), None);
        }
        let state = states.get_mut(&item.key).expect("inserted when missing");
        let entry = touched.entry(&item.key).or_insert_with(|| {
            order.push(&item.key);
            Touched {
                route: item.route,
                changed: false,
                event_time: None,
            }
        });
        let event = &events[item.event];
        let failure = match projector.apply(state, event) {
            Ok(Folding::Skipped) => {
                folded.skipped[item.route] += 1;
                continue;
            }
            Ok(Folding::Applied) => match state {
                Some(value) if !value.is_object() => Some((
                    "invalid_projection",
                    format!(
                        "projector returned {} instead of a JSON object",
                        json_kind(value)
                    ),
                )),
                _ => None,
            },
            Err(ProjectorError(error)) => Some(("projector_error", error)),
        };
        if let Some((reason, error)) = failure {
            folded.refusals.push(Refusal {
                event: item.event,
                route: item.route,
                reason,
                error,
            });
            let loaded = versions.get(&item.key).cloned().flatten();
            *state = refold(router, events, &work[..at], &took, &item.key, loaded);
            continue;
        }
        took[at] = true;
        folded.applied[item.route] += 1;
        entry.changed = true;
        entry.event_time = entry.event_time.max(event.time);
    }
    for key in order {
        let Touched {
            route,
            changed,
            event_time,
            ..
        } = touched.remove(key).expect("every ordered key was touched");
        if !changed {
            continue;
        }
        folded.writes.push(Write {
            route,
            key: key.to_owned(),
            state: states.remove(key).unwrap_or(None),
            event_time,
        });
    }
    folded
}

/// `key`'s state before the event that just failed: its stored text, read
/// again, with the earlier events of the batch that it applied folded in.
fn refold(
    router: &Router,
    events: &[Event],
    earlier: &[Work],
    took: &[bool],
    key: &str,
    stored: Option<Vec<u8>>,
) -> Option<Value> {
    // It was read once already when the batch loaded it (a key whose text
    // does not read is dead-lettered before the fold).
    let mut state = stored.and_then(|text| serde_json::from_slice(&text).ok());
    for (item, _) in earlier
        .iter()
        .zip(took)
        .filter(|(item, took)| **took && item.key == key)
    {
        let projector = &router.route(item.route).definition.projector;
        // Applied once already without error: pure, so it applies again.
        let _ = projector.apply(&mut state, &events[item.event]);
    }
    state
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::cache::memory::MemoryCache;
    use crate::cache::{Cache, Ttl};
    use crate::config::Settings;
    use crate::event::Position;
    use crate::projection::load_text;
    use crate::projector::Registry;

    /// `tally` counts in place and its second step fails on a text `by`,
    /// after the first one has changed the document.
    const TALLY: &str = r#"
        name = "tally"
        cache = "default"
        topics = ["t"]
        identifier = "{data.id}"

        [[handler]]
        on = "add"
        do = [
          { append = "seen", from = ".data.by" },
          { increment = "count", by = ".data.by" },
        ]
    "#;

    /// A Rust projector (the trait's default `apply`) that answers a number
    /// instead of an object when the event's `by` is negative.
    const SIGNED: &str = r#"
        name = "signed"
        topics = ["t"]
        event_types = ["add"]
        identifier = "{data.id}"
        projector = "signed"
    "#;

    fn signed(
        current: Option<&serde_json::Value>,
        event: &Event,
    ) -> Result<crate::projector::Outcome, ProjectorError> {
        let by = event.data["by"].as_i64().unwrap_or(0);
        let count = current.map_or(0, |state| state["count"].as_i64().unwrap_or(0));
        Ok(crate::projector::Outcome::Upsert(if by < 0 {
            json!(by)
        } else {
            json!({"count": count + by})
        }))
    }

    fn router_of(text: &str) -> Router {
        let settings = Settings::defaults();
        let mut registry = Registry::with_builtins();
        registry.register("signed", signed);
        let definition = load_text(text, Path::new("test.toml"), &settings, &registry)
            .expect("a valid definition");
        let cache: Arc<dyn Cache> = Arc::new(MemoryCache::new(Ttl::from_secs(60).unwrap()));
        Router::new(
            vec![definition],
            &BTreeMap::from([("default".to_owned(), cache)]),
        )
    }

    /// Each of `events` applied to `key` by the one route.
    fn on_one_key(key: &str, events: usize) -> Vec<Work> {
        (0..events)
            .map(|event| Work {
                event,
                route: 0,
                key: key.to_owned(),
            })
            .collect()
    }

    fn event(offset: i64, by: serde_json::Value) -> Event {
        Event {
            event_type: "add".to_owned(),
            id: None,
            source: None,
            subject: None,
            time: None,
            data: json!({"id": "a", "by": by}),
            position: Position {
                topic: "t".into(),
                partition: 0,
                offset,
            },
            traceparent: None,
        }
    }

    #[test]
    fn a_failed_event_leaves_the_state_the_events_before_it_made() {
        let router = router_of(TALLY);
        let events = vec![
            event(0, json!(1)),
            event(1, json!(2)),
            event(2, json!("three")),
            event(3, json!(4)),
        ];
        let work = on_one_key("tally:::a", events.len());
        let loaded = json!({"seen": [0], "count": 10});
        let states = || KeyMap::from_iter([("tally:::a".to_owned(), Some(loaded.clone()))]);
        let versions = KeyMap::from_iter([(
            "tally:::a".to_owned(),
            Some(loaded.to_string().into_bytes()),
        )]);
        let folded = fold(&router, &events, &work, states(), &versions);
        assert_eq!(folded.refusals.len(), 1, "{:?}", folded.refusals);
        assert_eq!(folded.refusals[0].event, 2);
        assert_eq!(folded.applied, [3]);
        let [write] = folded.writes.as_slice() else {
            panic!("one write: {:?}", folded.writes)
        };
        // The failed event's append did not stay, nor did it undo the others.
        assert_eq!(
            write.state,
            Some(json!({"seen": [0, 1, 2, 4], "count": 17}))
        );

        // Failing first, the state is the loaded one again, and not written.
        let folded = fold(&router, &events[2..3], &work[..1], states(), &versions);
        assert_eq!(folded.refusals.len(), 1);
        assert!(folded.writes.is_empty(), "{:?}", folded.writes);
    }

    #[test]
    fn a_projection_that_is_not_an_object_is_refused_and_undone() {
        let router = router_of(SIGNED);
        let events = vec![event(0, json!(2)), event(1, json!(-1)), event(2, json!(3))];
        let work = on_one_key("signed:::a", events.len());
        let folded = fold(
            &router,
            &events,
            &work,
            KeyMap::default(),
            &KeyMap::default(),
        );
        assert_eq!(folded.refusals.len(), 1, "{:?}", folded.refusals);
        assert_eq!(folded.refusals[0].reason, "invalid_projection");
        assert_eq!(folded.writes.len(), 1);
        assert_eq!(folded.writes[0].state, Some(json!({"count": 5})));
    }
}
