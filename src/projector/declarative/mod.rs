//! Declarative projectors: `[[handler]]` tables in a projection's TOML file,
//! one per event type, whose steps (`set`, `increment`, `append`, `upsert`,
//! `delete`, ...) fold the event into the projection document.
//!
//! Everything is checked and every jq expression compiled when the definition
//! loads, so a running projector only evaluates. A handler is atomic: its
//! steps work on a copy of the projection, and the first failing step fails the
//! event (a permanent error) with the stored projection unchanged.

mod expr;
mod ops;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::event::Event;
use crate::projector::{Folding, Outcome, Projector, ProjectorError, time_text};

use expr::{EventInput, Expr, Scope};
use ops::{Applied, Step};

/// What a definition's `projector_name` says for a declarative projection.
pub const NAME: &str = "declarative";

/// One `[[handler]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec {
    /// The event type it handles.
    pub on: String,
    /// A jq condition over the event (`.`) and the stored projection (`$state`).
    pub when: Option<String>,
    /// The steps, in order; each an inline table naming one operation. Kept as
    /// TOML tables so a mistake is reported with the handler and step it is in.
    #[serde(rename = "do")]
    pub steps: Vec<toml::Table>,
}

struct Handler {
    when: Option<Expr>,
    steps: Vec<Step>,
}

/// A projector compiled from handler specs.
pub struct DeclarativeProjector {
    handlers: BTreeMap<String, Handler>,
}

impl std::fmt::Debug for DeclarativeProjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeclarativeProjector")
            .field("event_types", &self.event_types())
            .finish()
    }
}

/// Check and compile `specs`; each error names the handler's event type (and
/// the step) and what is wrong, and all of them are reported at once.
pub fn compile(specs: &[HandlerSpec]) -> Result<DeclarativeProjector, Vec<String>> {
    let mut errors = Vec::new();
    if specs.is_empty() {
        errors.push("no [[handler]] tables".to_owned());
    }
    let mut handlers = BTreeMap::new();
    let mut first_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, spec) in specs.iter().enumerate() {
        let number = index + 1;
        let on = spec.on.as_str();
        let mut fail = |message: String| {
            errors.push(format!("handler {number} on = {on:?}: {message}"));
        };
        if on.trim().is_empty() {
            fail("`on` is empty: name the event type it handles".to_owned());
        }
        if let Some(first) = first_of.insert(on, number) {
            fail(format!(
                "event type {on:?} is already handled by handler {first}; merge their steps"
            ));
        }
        let when = spec.when.as_deref().and_then(|code| {
            Expr::compile(code)
                .map_err(|error| fail(format!("when: {error}")))
                .ok()
        });
        if spec.steps.is_empty() {
            fail("`do` is empty: give at least one step".to_owned());
        }
        let mut steps = Vec::new();
        for (step_index, table) in spec.steps.iter().enumerate() {
            let step_number = step_index + 1;
            match Step::parse(table) {
                Ok(step) => steps.push(step),
                Err(problems) => {
                    for problem in problems {
                        fail(format!("step {step_number}: {problem}"));
                    }
                }
            }
        }
        let delete_at = steps.iter().position(Step::is_delete);
        if delete_at.is_some_and(|at| at + 1 != steps.len()) {
            fail("delete must be the last step: nothing after it would be kept".to_owned());
        }
        handlers.insert(on.to_owned(), Handler { when, steps });
    }
    if errors.is_empty() {
        Ok(DeclarativeProjector { handlers })
    } else {
        Err(errors)
    }
}

impl DeclarativeProjector {
    /// The event types it handles: the handlers' `on`.
    pub fn event_types(&self) -> BTreeSet<String> {
        self.handlers.keys().cloned().collect()
    }
}

/// The event as jq sees it: the CloudEvents attributes, the data and where it
/// came from; `time` is RFC 3339 text in UTC.
pub fn event_json(event: &Event) -> Value {
    json!({
        "type": event.event_type,
        "id": event.id,
        "source": event.source,
        "subject": event.subject,
        "time": time_text(event),
        "data": event.data,
        "topic": &*event.position.topic,
        "partition": event.position.partition,
        "offset": event.position.offset,
    })
}

impl Projector for DeclarativeProjector {
    fn project(&self, current: Option<&Value>, event: &Event) -> Result<Outcome, ProjectorError> {
        // The steps change a copy: a failing step must leave the stored
        // projection as it was, not half-updated.
        let mut document = current.cloned();
        Ok(match self.apply(&mut document, event)? {
            Folding::Skipped => Outcome::Skip,
            Folding::Applied => document.map_or(Outcome::Delete, Outcome::Upsert),
        })
    }

    /// The steps work on `state` itself, one after the other: each sees what
    /// the ones before it left (`$state`), and a failure leaves the rest to
    /// the caller, who restores the state it had.
    fn apply(&self, state: &mut Option<Value>, event: &Event) -> Result<Folding, ProjectorError> {
        let Some(handler) = self.handlers.get(&event.event_type) else {
            return Ok(Folding::Skipped);
        };
        let event_type = &event.event_type;
        let fail = |message: String| ProjectorError::new(format!("{event_type}: {message}"));
        let event_input = EventInput::new(event);
        if let Some(when) = &handler.when {
            let scope = Scope {
                event: &event_input,
                state: state.as_ref(),
                item: None,
            };
            let holds = when
                .eval(&scope)
                .map_err(|error| fail(format!("when: {error}")))?;
            if matches!(holds, None | Some(Value::Bool(false))) {
                return Ok(Folding::Skipped);
            }
        }
        let was_absent = state.is_none();
        for (index, step) in handler.steps.iter().enumerate() {
            let applied = step
                .apply(state, &event_input)
                .map_err(|error| fail(format!("step {} ({}): {error}", index + 1, step.label)))?;
            if applied == Applied::Delete {
                *state = None;
                return Ok(Folding::Applied);
            }
        }
        // Every step was skipped on an absent projection: there is nothing to store.
        if was_absent && state.is_none() {
            return Ok(Folding::Skipped);
        }
        Ok(Folding::Applied)
    }
}
