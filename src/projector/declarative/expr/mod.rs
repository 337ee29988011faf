//! jq expressions (through the `jaq` crates), compiled once at load and
//! evaluated purely: no clock, no environment, no IO.
//!
//! Every expression sees the event as `.` (and as `$event`), the projection as
//! `$state` and, inside `upsert`, the matched list element as `$item`. It must
//! produce at most one value: none (or `null`) is "missing", which the caller
//! resolves with a default.
//!
//! Most expressions are in the subset [`native`] evaluates on the JSON itself;
//! jaq runs the rest, and whatever the native evaluator is not sure of.

mod convert;
mod native;
#[cfg(test)]
mod tests;

use std::cell::OnceCell;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;
use serde_json::Value;

use crate::event::Event;
pub use convert::{from_val, to_val};
pub use native::jaq_keeps;
use native::{Node, Roots};

/// The variables every expression may use, in the order [`Scope::vars`] binds them.
const GLOBALS: [&str; 3] = ["$event", "$state", "$item"];

/// Native filters left out because they read the clock, the environment or
/// the time zone, or write to stderr: a projector must give the same result
/// on every replay.
const IMPURE: [&str; 9] = [
    "now",
    "env",
    "halt",
    "input",
    "inputs",
    "localtime",
    "strflocaltime",
    "debug_empty",
    "stderr_empty",
];

/// The standard library's definitions built on those filters, left out with them.
const IMPURE_DEFS: [&str; 4] = ["stderr", "debug", "halt", "halt_error"];

type Data = data::JustLut<Val>;

/// A compiled jq expression and its source, for messages.
pub struct Expr {
    source: String,
    filter: jaq_core::Filter<Data>,
    /// Whether converting the projection to `$state` is worth it: jq has no
    /// dynamic variable lookup, so an expression whose text never names
    /// `$state` cannot read it.
    uses_state: bool,
    uses_item: bool,
    /// The expression as [`native`] evaluates it, when it is in that subset.
    native: Option<Node>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

/// The event as expressions see it (see [`super::event_json`]), built lazily:
/// the payload is read in place, and the whole event is built as JSON, or as
/// jaq's value, at most once per event and only when an expression needs it.
pub struct EventInput<'e> {
    event: &'e Event,
    time: OnceCell<Value>,
    json: OnceCell<Value>,
    val: OnceCell<Val>,
}

impl<'e> EventInput<'e> {
    pub fn new(event: &'e Event) -> Self {
        EventInput {
            event,
            time: OnceCell::new(),
            json: OnceCell::new(),
            val: OnceCell::new(),
        }
    }

    fn json(&self) -> &Value {
        self.json.get_or_init(|| super::event_json(self.event))
    }

    fn field(&self, key: &str) -> &Value {
        match key {
            "data" => &self.event.data,
            "time" => self
                .time
                .get_or_init(|| Value::from(crate::projector::time_text(self.event))),
            _ => self.json().get(key).unwrap_or(&Value::Null),
        }
    }

    fn val(&self) -> Result<&Val, String> {
        if let Some(val) = self.val.get() {
            return Ok(val);
        }
        let converted = to_val(self.json())?;
        Ok(self.val.get_or_init(|| converted))
    }
}

/// The values an expression runs against.
pub struct Scope<'a> {
    pub event: &'a EventInput<'a>,
    pub state: Option<&'a Value>,
    pub item: Option<&'a Value>,
}

impl Roots for Scope<'_> {
    fn event_field(&self, key: &str) -> &Value {
        self.event.field(key)
    }

    fn event(&self) -> &Value {
        self.event.json()
    }

    fn state(&self) -> &Value {
        self.state.unwrap_or(&Value::Null)
    }

    fn item(&self) -> &Value {
        self.item.unwrap_or(&Value::Null)
    }
}

impl Expr {
    /// Parse and compile `source`; the error says what jaq did not understand.
    pub fn compile(source: &str) -> Result<Expr, String> {
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs())
            .filter(|(name, _, _)| !IMPURE.contains(name));
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
            .filter(|def| !IMPURE_DEFS.contains(&def.name));
        let arena = Arena::default();
        let file = File {
            code: source,
            path: (),
        };
        let modules = Loader::new(defs)
            .load(&arena, file)
            .map_err(|errors| describe_load_errors(source, errors))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .with_global_vars(GLOBALS)
            .compile(modules)
            .map_err(|errors| {
                let undefined: Vec<String> = errors
                    .into_iter()
                    .flat_map(|(_, errors)| errors)
                    .map(|(name, kind)| format!("undefined {} `{name}`", kind.as_str()))
                    .collect();
                format!("jq {source:?}: {}", undefined.join(", "))
            })?;
        Ok(Expr {
            source: source.to_owned(),
            filter,
            uses_state: source.contains("$state"),
            uses_item: source.contains("$item"),
            native: Node::compile(source),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn uses_item(&self) -> bool {
        self.uses_item
    }

    /// Whether the expression is the projection's own field at `path`
    /// (`$state.status` for `status`), whose value, when present, it would
    /// give back unchanged.
    pub fn is_state_field(&self, path: &[String]) -> bool {
        self.native
            .as_ref()
            .and_then(Node::state_keys)
            .is_some_and(|keys| keys == path)
    }

    /// The value of an expression that is a plain path of keys on the event
    /// (`.data.order_id`, `.time`), borrowed from it rather than copied:
    /// `None` when the expression is anything else or finds no value, for
    /// [`Self::eval`] to answer.
    pub fn event_value<'s>(&self, scope: &'s Scope<'_>) -> Option<&'s Value> {
        self.native.as_ref()?.event_path(scope)
    }

    /// The one value the expression produces: `None` when it produces none or
    /// `null`; an error when it fails, produces several values, or produces
    /// something JSON cannot hold.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Option<Value>, String> {
        if let Some(native) = &self.native
            && let Ok(found) = native.eval(scope)
        {
            return Ok(found);
        }
        let event = scope.event.val()?;
        let state = match (self.uses_state, scope.state) {
            (true, Some(state)) => to_val(state)?,
            _ => Val::Null,
        };
        let item = match (self.uses_item, scope.item) {
            (true, Some(item)) => to_val(item)?,
            _ => Val::Null,
        };
        // In the order of GLOBALS.
        let vars = Vars::new([event.clone(), state, item]);
        let ctx = Ctx::<Data>::new(&self.filter.lut, vars);
        let mut outputs = self.filter.id.run((ctx, event.clone())).map(unwrap_valr);
        let first = match outputs.next() {
            None => return Ok(None),
            Some(Err(error)) => return Err(format!("jq {:?} failed: {error}", self.source)),
            Some(Ok(value)) => value,
        };
        if outputs.next().is_some() {
            return Err(format!(
                "jq {:?} produced more than one value; wrap it in [...] to make a list",
                self.source
            ));
        }
        let value = from_val(&first).map_err(|error| format!("jq {:?}: {error}", self.source))?;
        Ok((!value.is_null()).then_some(value))
    }
}

fn describe_load_errors(source: &str, errors: jaq_core::load::Errors<&str, ()>) -> String {
    use jaq_core::load::Error;
    let mut problems = Vec::new();
    for (_, error) in errors {
        match error {
            Error::Io(errors) => problems.extend(
                errors
                    .into_iter()
                    .map(|(path, why)| format!("{path}: {why}")),
            ),
            Error::Lex(errors) => problems.extend(errors.into_iter().map(|(expected, at)| {
                format!("expected {} at {:?}", expected.as_str(), snippet(at))
            })),
            Error::Parse(errors) => problems.extend(errors.into_iter().map(|(expected, at)| {
                format!("expected {} at {:?}", expected.as_str(), snippet(at))
            })),
        }
    }
    format!("jq {source:?} does not parse: {}", problems.join(", "))
}

/// Where a parse error sits, shortened: jaq reports the rest of the source.
fn snippet(rest: &str) -> String {
    if rest.is_empty() {
        return "the end".to_owned();
    }
    rest.chars().take(20).collect()
}
