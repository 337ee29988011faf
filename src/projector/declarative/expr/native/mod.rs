//! The common subset of jq evaluated on the JSON directly, without converting
//! the event and the projection to jaq's values and back (which costs more
//! than most expressions): paths (`.a.b`, `$state.lines[]?`, `.time[:10]`
//! on ASCII text), literals, `|`, `,`, `//`, `[...]`, `{key: ...}`,
//! `+ - *` (integers and decimals), comparisons, `and`, `or`, `if`,
//! `select`, `empty`, `not`, `add` and `.a.b op= x`.
//!
//! It is parsed by jaq's own parser, so precedence is jaq's. It answers only
//! when it is sure to answer what jaq answers: on anything it does not model
//! (an error, a number that is not a 64-bit integer, an overflow, a count of
//! values jaq would combine in a way not modelled here) it gives up, and the
//! caller runs jaq from the start. Expressions are pure, so that is safe.

use std::cmp::Ordering;

mod compile;
mod values;

use jaq_core::ops::Cmp;
use serde_json::{Map, Value};

pub use values::jaq_keeps;
use values::{arith, is_true, order};

/// What the native evaluator cannot decide; jaq decides instead.
#[derive(Debug, PartialEq)]
pub struct GiveUp;

type Outcome = Result<(), GiveUp>;
/// Where a node sends each value it produces, in order.
type Out<'o> = dyn FnMut(&Value) -> Outcome + 'o;

static NULL: Value = Value::Null;

/// The variables an expression starts from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    /// `$event`, and `.` at the top of an expression.
    Event,
    State,
    Item,
}

/// The values of the roots. The event is asked for field by field, so that
/// `.data.sku` reads the payload without the whole event being built as JSON.
pub trait Roots {
    fn event_field(&self, key: &str) -> &Value;
    fn event(&self) -> &Value;
    fn state(&self) -> &Value;
    fn item(&self) -> &Value;
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
}

#[derive(Debug)]
pub enum Step {
    Key(String),
    /// `[]`: the elements of an array, the values of an object.
    Each,
    /// `[from:to]` with literal bounds, natively on ASCII text only (where
    /// a byte is a character, as jaq counts); anything else goes to jaq.
    Slice {
        from: Option<usize>,
        to: Option<usize>,
    },
}

/// A compiled expression of the subset.
#[derive(Debug)]
pub enum Node {
    /// `.` below the top (the input of the right side of a pipe, say).
    Input,
    Root(Root),
    Literal(Value),
    /// Each step with whether it is optional (`?`).
    Path(Box<Node>, Vec<(Step, bool)>),
    Array(Option<Box<Node>>),
    Object(Vec<(String, Node)>),
    Pipe(Box<Node>, Box<Node>),
    Comma(Box<Node>, Box<Node>),
    Alt(Box<Node>, Box<Node>),
    Arith(Box<Node>, Arith, Box<Node>),
    Compare(Box<Node>, Cmp, Box<Node>),
    /// `and` (stopping on `false`) and `or` (stopping on `true`).
    Logic(Box<Node>, bool, Box<Node>),
    If(Box<Node>, Box<Node>, Box<Node>),
    Select(Box<Node>),
    Not,
    Empty,
    Add,
    /// `[inner] | add`: the sum of `inner`'s values, added as they come
    /// rather than collected into a list first (the total of a projection's
    /// lines is recomputed per event).
    Sum(Box<Node>),
    /// `.a.b op= by`: `by` runs on the input.
    Update(Vec<String>, Arith, Box<Node>),
}

impl Node {
    /// The native form of `source`, `None` when it is outside the subset.
    pub fn compile(source: &str) -> Option<Node> {
        let term = jaq_core::load::parse(source, |parser| parser.term())?;
        compile::compile(&term, true)
    }

    /// The one value the expression produces (`None` for none or `null`),
    /// or [`GiveUp`] (also for several values: jaq words that error).
    pub fn eval(&self, roots: &dyn Roots) -> Result<Option<Value>, GiveUp> {
        let first = match self {
            // One value, built here: handed on whole rather than copied out
            // of the callback (an upsert builds its element per event).
            Node::Object(entries) => Some(object(entries, roots, &NULL)?),
            _ => {
                let mut first = None;
                // At the top `.` is the event, compiled to `Root::Event`: the input is unused.
                self.run(roots, &NULL, &mut |value| {
                    if first.is_some() {
                        return Err(GiveUp);
                    }
                    first = Some(value.clone());
                    Ok(())
                })?;
                first
            }
        };
        match first {
            Some(value) if !jaq_keeps(&value) => Err(GiveUp),
            Some(value) => Ok((!value.is_null()).then_some(value)),
            None => Ok(None),
        }
    }

    /// The value of a path of keys on the event (`.data.order_id`, `.time`),
    /// borrowed where it lies: `None` unless the expression is such a path
    /// and finds a value jq would give back unchanged (not `null`), so the
    /// caller evaluates it the usual way for anything else.
    pub fn event_path<'r>(&self, roots: &'r dyn Roots) -> Option<&'r Value> {
        let Node::Path(base, steps) = self else {
            return None;
        };
        let (Node::Root(Root::Event), [(Step::Key(first), _), rest @ ..]) =
            (base.as_ref(), steps.as_slice())
        else {
            return None;
        };
        let mut here = roots.event_field(first);
        for step in rest {
            here = match step {
                (Step::Key(key), _) => here.as_object()?.get(key)?,
                _ => return None,
            };
        }
        (!here.is_null() && jaq_keeps(here)).then_some(here)
    }

    /// The keys of a path on the projection such as `$state.totals.cents`.
    pub fn state_keys(&self) -> Option<Vec<String>> {
        let Node::Path(base, steps) = self else {
            return None;
        };
        if !matches!(base.as_ref(), Node::Root(Root::State)) {
            return None;
        }
        steps
            .iter()
            .map(|step| match step {
                (Step::Key(key), false) => Some(key.clone()),
                _ => None,
            })
            .collect()
    }

    fn run(&self, roots: &dyn Roots, input: &Value, out: &mut Out<'_>) -> Outcome {
        match self {
            Node::Input => out(input),
            Node::Root(Root::Event) => out(roots.event()),
            Node::Root(Root::State) => out(roots.state()),
            Node::Root(Root::Item) => out(roots.item()),
            Node::Literal(value) => out(value),
            Node::Path(base, steps) => {
                if let (Node::Root(Root::Event), [(Step::Key(key), _), rest @ ..]) =
                    (base.as_ref(), steps.as_slice())
                {
                    return walk(roots.event_field(key), rest, out);
                }
                base.run(roots, input, &mut |value| walk(value, steps, out))
            }
            Node::Array(None) => out(&Value::Array(Vec::new())),
            Node::Array(Some(inner)) => {
                let mut items = Vec::new();
                inner.run(roots, input, &mut |value| {
                    items.push(value.clone());
                    Ok(())
                })?;
                out(&Value::Array(items))
            }
            Node::Object(entries) => out(&object(entries, roots, input)?),
            Node::Pipe(left, right) => {
                left.run(roots, input, &mut |value| right.run(roots, value, out))
            }
            Node::Comma(left, right) => {
                left.run(roots, input, out)?;
                right.run(roots, input, out)
            }
            Node::Alt(left, right) => {
                // Most left sides give one value: it is kept without a list.
                let (mut first, mut more) = (None, Vec::new());
                left.run(roots, input, &mut |value| {
                    if is_true(value) {
                        match first {
                            None => first = Some(value.clone()),
                            Some(_) => more.push(value.clone()),
                        }
                    }
                    Ok(())
                })?;
                let Some(first) = first else {
                    return right.run(roots, input, out);
                };
                out(&first)?;
                more.iter().try_for_each(&mut *out)
            }
            Node::Arith(left, op, right) => {
                let value = binary(left, right, roots, input, |l, r| arith(l, *op, r))?;
                out(&value)
            }
            Node::Compare(left, cmp, right) => {
                let value = binary(left, right, roots, input, |l, r| {
                    let order = order(l, r)?;
                    Ok(Value::Bool(cmp.run(&order, &Ordering::Equal)))
                })?;
                out(&value)
            }
            // jaq's order: per value of the left side, either its verdict
            // or the truth of each value of the right side.
            Node::Logic(left, stop, right) => left.run(roots, input, &mut |l| {
                if is_true(l) == *stop {
                    out(&Value::Bool(*stop))
                } else {
                    right.run(roots, input, &mut |r| out(&Value::Bool(is_true(r))))
                }
            }),
            Node::If(condition, then, otherwise) => condition.run(roots, input, &mut |value| {
                let branch = if is_true(value) { then } else { otherwise };
                branch.run(roots, input, out)
            }),
            Node::Select(condition) => condition.run(roots, input, &mut |value| {
                if is_true(value) { out(input) } else { Ok(()) }
            }),
            Node::Not => out(&Value::Bool(!is_true(input))),
            Node::Empty => Ok(()),
            Node::Add => {
                // `reduce .[] as $x (null; . + $x)`; an object's values are left to jaq.
                let Value::Array(items) = input else {
                    return Err(GiveUp);
                };
                let mut sum = Value::Null;
                for item in items {
                    sum = arith(&sum, Arith::Add, item)?;
                }
                out(&sum)
            }
            Node::Sum(inner) => {
                let mut sum = Value::Null;
                inner.run(roots, input, &mut |item| {
                    sum = arith(&sum, Arith::Add, item)?;
                    Ok(())
                })?;
                out(&sum)
            }
            Node::Update(keys, op, by) => {
                let by = by.single(roots, input)?;
                let mut updated = input.clone();
                let (last, parents) = keys.split_last().ok_or(GiveUp)?;
                let mut here = &mut updated;
                for key in parents {
                    here = here.get_mut(key).filter(|v| v.is_object()).ok_or(GiveUp)?;
                }
                let Value::Object(object) = here else {
                    return Err(GiveUp);
                };
                let field = object.entry(last.clone()).or_insert(Value::Null);
                *field = arith(field, *op, &by)?;
                out(&updated)
            }
        }
    }

    /// The node's only value; giving up on none or several.
    fn single(&self, roots: &dyn Roots, input: &Value) -> Result<Value, GiveUp> {
        let mut found = None;
        self.run(roots, input, &mut |value| {
            if found.is_some() {
                return Err(GiveUp);
            }
            found = Some(value.clone());
            Ok(())
        })?;
        found.ok_or(GiveUp)
    }
}

/// `{key: node, ...}`, each node giving exactly one value.
fn object(entries: &[(String, Node)], roots: &dyn Roots, input: &Value) -> Result<Value, GiveUp> {
    let mut object = Map::new();
    for (key, node) in entries {
        object.insert(key.clone(), node.single(roots, input)?);
    }
    Ok(Value::Object(object))
}

/// `left op right` with one value on each side (jaq combines several in an
/// order not modelled here, and would still evaluate the other side of none).
fn binary(
    left: &Node,
    right: &Node,
    roots: &dyn Roots,
    input: &Value,
    combine: impl Fn(&Value, &Value) -> Result<Value, GiveUp>,
) -> Result<Value, GiveUp> {
    let mut result = None;
    let (mut lefts, mut pairs) = (0, 0);
    left.run(roots, input, &mut |l| {
        lefts += 1;
        right.run(roots, input, &mut |r| {
            pairs += 1;
            result = Some(combine(l, r)?);
            Ok(())
        })
    })?;
    if lefts != 1 || pairs != 1 {
        return Err(GiveUp);
    }
    result.ok_or(GiveUp)
}

fn walk(value: &Value, steps: &[(Step, bool)], out: &mut Out<'_>) -> Outcome {
    let Some(((step, optional), rest)) = steps.split_first() else {
        return out(value);
    };
    match (step, value) {
        (Step::Key(key), Value::Object(object)) => {
            walk(object.get(key).unwrap_or(&NULL), rest, out)
        }
        (Step::Key(_), Value::Null) => walk(&NULL, rest, out),
        (Step::Each, Value::Array(items)) => {
            items.iter().try_for_each(|item| walk(item, rest, out))
        }
        // Both iterate a serde_json map in key order, which jaq's copy keeps.
        (Step::Each, Value::Object(object)) => {
            object.values().try_for_each(|item| walk(item, rest, out))
        }
        (Step::Slice { from, to }, Value::String(text)) if text.is_ascii() => {
            let end = to.map_or(text.len(), |to| to.min(text.len()));
            let start = from.map_or(0, |from| from.min(end));
            walk(&Value::String(text[start..end].to_owned()), rest, out)
        }
        (Step::Slice { .. }, _) => Err(GiveUp),
        // jaq's error, which `?` turns into no value.
        _ if *optional => Ok(()),
        _ => Err(GiveUp),
    }
}
