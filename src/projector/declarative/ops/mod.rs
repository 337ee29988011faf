//! The operations a handler's steps perform on the projection document: parsed
//! from a TOML inline table at load, applied to a `serde_json::Value` per event.
//!
//! A literal (`value`, `by_value`, `default`) is a TOML value and never an
//! expression; an expression (`from`, `by`, `match`) is always jq. A step either
//! changes the document, is skipped (an `optional` value is missing), or fails,
//! and a failure leaves the caller's document untouched (it works on a copy).

mod document;
mod parse;

use serde_json::{Map, Value};

use super::expr::{EventInput, Expr, Scope, jaq_keeps};
use document::{add, assign, existing, list, not_an_object, with_slot};

/// The keys that name an operation; a step has exactly one.
pub const OPERATIONS: [&str; 9] = [
    "set",
    "increment",
    "decrement",
    "append",
    "remove",
    "upsert",
    "merge",
    "unset",
    "delete",
];

/// Where a value comes from.
#[derive(Debug)]
pub enum Source {
    Literal(Value),
    Expr {
        expr: Expr,
        /// Used when the expression produces nothing or `null`.
        default: Option<Value>,
        /// Without a default: skip the step instead of failing the event.
        optional: bool,
    },
}

#[derive(Debug)]
enum Op {
    Set {
        source: Source,
        /// `from` is the target itself (`set = "lines", from = "$state.lines"`,
        /// to give it a default): present, it stays as it is, uncopied.
        keeps_itself: bool,
    },
    /// `sign` is 1 for increment, -1 for decrement.
    Add {
        by: Source,
        sign: i8,
    },
    Append {
        element: Source,
        unique: bool,
    },
    Remove {
        element: Source,
        key: Option<String>,
    },
    Upsert {
        element: Source,
        key: String,
        matching: Option<Expr>,
    },
    Merge(Source),
    Unset,
    Delete,
}

/// One parsed step: an operation on a field path of the document.
#[derive(Debug)]
pub struct Step {
    /// `set "status"`, for messages.
    pub label: String,
    target: Vec<String>,
    op: Op,
}

/// What applying a step decided.
#[derive(Debug, PartialEq)]
pub enum Applied {
    Done,
    /// `delete`: the projection goes.
    Delete,
}

impl Step {
    pub fn is_delete(&self) -> bool {
        matches!(self.op, Op::Delete)
    }

    /// Apply the step to `document` (`None` while the projection is absent);
    /// its expressions see `document` as `$state`.
    pub fn apply(
        &self,
        document: &mut Option<Value>,
        event: &EventInput<'_>,
    ) -> Result<Applied, String> {
        let state = document.as_ref();
        let here = Scope {
            event,
            state,
            item: None,
        };
        // For what only reads the event: `here` borrows the document, which
        // a value borrowed from this one can be written into.
        let on_event = Scope {
            event,
            state: None,
            item: None,
        };
        match &self.op {
            Op::Delete => return Ok(Applied::Delete),
            Op::Set {
                source,
                keeps_itself,
            } => {
                // Exactly what writing back its own value would leave (jq, which
                // would read a value that is not all integers, rewrites none).
                if *keeps_itself
                    && let Ok(Some(current)) = existing(state, &self.target)
                    && jaq_keeps(current)
                {
                    return Ok(Applied::Done);
                }
                // A literal, or a path on the event: copied only where the
                // field differs, into the field's own buffer.
                let borrowed = match source {
                    Source::Literal(value) => Some(value),
                    Source::Expr { expr, .. } => expr.event_value(&on_event),
                };
                if let Some(value) = borrowed {
                    return with_slot(document, &self.target, |field| {
                        assign(field, value);
                        Ok(Applied::Done)
                    });
                }
                if let Some(value) = resolve(source, &here)? {
                    with_slot(document, &self.target, |field| {
                        *field = value;
                        Ok(())
                    })?;
                }
            }
            Op::Add { by, sign } => {
                if let Source::Expr { expr, .. } = by
                    && let Some(by) = expr.event_value(&on_event)
                {
                    return with_slot(document, &self.target, |field| {
                        *field = add(field, by, *sign, &self.target)?;
                        Ok(Applied::Done)
                    });
                }
                if let Some(by) = resolve(by, &here)? {
                    with_slot(document, &self.target, |field| {
                        *field = add(field, &by, *sign, &self.target)?;
                        Ok(())
                    })?;
                }
            }
            Op::Append { element, unique } => {
                if let Some(element) = resolve(element, &here)? {
                    with_slot(document, &self.target, |field| {
                        let list = list(field, &self.target)?;
                        if !(*unique && list.contains(&element)) {
                            list.push(element);
                        }
                        Ok(())
                    })?;
                }
            }
            Op::Remove { element, key } => {
                if let Some(element) = resolve(element, &here)? {
                    if existing(document.as_ref(), &self.target)?.is_none() {
                        return Ok(Applied::Done);
                    }
                    with_slot(document, &self.target, |field| {
                        list(field, &self.target)?.retain(|candidate| match key {
                            Some(key) => candidate.get(key) != Some(&element),
                            None => *candidate != element,
                        });
                        Ok(())
                    })?;
                }
            }
            Op::Upsert {
                element,
                key,
                matching,
            } => self.upsert(document, event, element, key, matching.as_ref())?,
            Op::Merge(source) => {
                if let Some(value) = resolve(source, &here)? {
                    let Value::Object(additions) = value else {
                        return Err(format!("merge needs an object, got {value}"));
                    };
                    with_slot(document, &self.target, |field| {
                        if field.is_null() {
                            *field = Value::Object(Map::new());
                        }
                        let Value::Object(object) = field else {
                            return Err(format!(
                                "{} is {field}, not an object",
                                self.target.join(".")
                            ));
                        };
                        object.extend(additions);
                        Ok(())
                    })?;
                }
            }
            Op::Unset => {
                let (last, parents) = self.target.split_last().expect("paths are not empty");
                if existing(document.as_ref(), parents)?.is_some() {
                    with_slot(document, parents, |parent| match parent {
                        Value::Object(parent) => {
                            parent.remove(last);
                            Ok(())
                        }
                        other => Err(not_an_object(parents, other)),
                    })?;
                }
            }
        }
        Ok(Applied::Done)
    }

    /// Replace the element of the list whose `key` field matches, or append.
    fn upsert(
        &self,
        document: &mut Option<Value>,
        event: &EventInput<'_>,
        element: &Source,
        key: &str,
        matching: Option<&Expr>,
    ) -> Result<(), String> {
        // Everything is read from the document before it is changed, so the
        // document is borrowed rather than copied.
        let here = Scope {
            event,
            state: document.as_ref(),
            item: None,
        };
        let wanted = match matching {
            Some(expr) => match expr.eval(&here)? {
                Some(wanted) => Some(wanted),
                None => return Err(format!("`match` {:?} produced no value", expr.source())),
            },
            None => None,
        };
        let items: &[Value] = match existing(document.as_ref(), &self.target)? {
            Some(Value::Array(items)) => items,
            Some(other) => return Err(format!("{} is {other}, not a list", self.target.join("."))),
            None => &[],
        };
        let position = |wanted: &Value| {
            items
                .iter()
                .position(|candidate| candidate.get(key) == Some(wanted))
        };
        let matched = wanted.as_ref().and_then(position);
        let with_item = Scope {
            item: matched.map(|index| &items[index]),
            ..here
        };
        let Some(mut element) = resolve(element, &with_item)? else {
            return Ok(());
        };
        let Value::Object(fields) = &mut element else {
            return Err(format!("upsert needs an object, got {element}"));
        };
        match (fields.get(key).filter(|value| !value.is_null()), wanted) {
            (Some(found), Some(wanted)) if *found != wanted => {
                return Err(format!(
                    "the element's {key} is {found} but `match` gave {wanted}"
                ));
            }
            (Some(_), _) => {}
            // The element takes the matched value itself: `wanted` is not
            // needed after this.
            (None, Some(wanted)) => {
                fields.insert(key.to_owned(), wanted);
            }
            (None, None) => return Err(format!("the element {element} has no {key}")),
        }
        let index = matched.or_else(|| fields.get(key).and_then(position));
        with_slot(document, &self.target, |field| {
            let list = list(field, &self.target)?;
            match index {
                Some(index) => list[index] = element,
                None => list.push(element),
            }
            Ok(())
        })
    }
}

/// The value of `source`, `None` to skip the step.
fn resolve(source: &Source, scope: &Scope<'_>) -> Result<Option<Value>, String> {
    let (expr, default, optional) = match source {
        Source::Literal(value) => return Ok(Some(value.clone())),
        Source::Expr {
            expr,
            default,
            optional,
        } => (expr, default, optional),
    };
    match (expr.eval(scope)?, default) {
        (Some(value), _) => Ok(Some(value)),
        (None, Some(default)) => Ok(Some(default.clone())),
        (None, None) if *optional => Ok(None),
        (None, None) => Err(format!(
            "{:?} produced no value (or null) and the step has no default",
            expr.source()
        )),
    }
}
