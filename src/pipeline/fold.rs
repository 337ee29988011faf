//! The functional core of a batch: decoded events + the loaded states of the keys
//! they touch -> the final state of every touched key, and the failures.
//!
//! No IO here: loading and writing are the caller's. Several events for one key
//! become one write, and a failed event leaves its projection as it was.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::router::Router;
use crate::event::{Event, json_kind};
use crate::projector::Outcome;

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
    /// Per route: events applied, events skipped by the projector.
    pub applied: HashMap<usize, u64>,
    pub skipped: HashMap<usize, u64>,
}

/// Fold `work` in order over `states` (the loaded projections, by key).
pub fn fold(
    router: &Router,
    events: &[Event],
    work: &[Work],
    mut states: HashMap<String, Option<Value>>,
) -> Folded {
    let mut folded = Folded::default();
    let mut order: Vec<(usize, &str)> = Vec::new();
    let mut times: HashMap<&str, Option<DateTime<Utc>>> = HashMap::new();
    for item in work {
        let route = router.route(item.route);
        let current = states.get(&item.key).and_then(Option::as_ref);
        let outcome = route
            .definition
            .projector
            .project(current, &events[item.event]);
        let next = match outcome {
            Ok(Outcome::Upsert(value)) if value.is_object() => Some(value),
            Ok(Outcome::Upsert(value)) => {
                folded.refusals.push(Refusal {
                    event: item.event,
                    route: item.route,
                    reason: "invalid_projection",
                    error: format!(
                        "projector returned {} instead of a JSON object",
                        json_kind(&value)
                    ),
                });
                continue;
            }
            Ok(Outcome::Delete) => None,
            Ok(Outcome::Skip) => {
                *folded.skipped.entry(item.route).or_default() += 1;
                continue;
            }
            Err(error) => {
                folded.refusals.push(Refusal {
                    event: item.event,
                    route: item.route,
                    reason: "projector_error",
                    error: error.to_string(),
                });
                continue;
            }
        };
        *folded.applied.entry(item.route).or_default() += 1;
        states.insert(item.key.clone(), next);
        let event_time = events[item.event].time;
        match times.get_mut(item.key.as_str()) {
            Some(latest) => *latest = (*latest).max(event_time),
            None => {
                times.insert(&item.key, event_time);
                order.push((item.route, &item.key));
            }
        }
    }
    for (route, key) in order {
        folded.writes.push(Write {
            route,
            key: key.to_owned(),
            state: states.remove(key).unwrap_or(None),
            event_time: times.get(key).copied().flatten(),
        });
    }
    folded
}
