//! jq expressions (through the `jaq` crates), compiled once at load and
//! evaluated purely: no clock, no environment, no IO.
//!
//! Every expression sees the event as `.` (and as `$event`), the projection as
//! `$state` and, inside `upsert`, the matched list element as `$item`. It must
//! produce at most one value: none (or `null`) is "missing", which the caller
//! resolves with a default.

use std::cell::OnceCell;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::{Map, Num, Val};
use serde::Deserialize;
use serde_json::Value;

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
    plain: Option<PlainPath>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expr").field(&self.source).finish()
    }
}

/// The values an expression runs against.
pub struct Scope<'a> {
    /// The event as JSON (see [`super::event_json`]).
    pub event: &'a Value,
    /// The event as jq's value, converted at most once per event and only when
    /// an expression needs jq (a plain path does not).
    pub event_val: &'a OnceCell<Val>,
    pub state: Option<&'a Value>,
    pub item: Option<&'a Value>,
}

/// What a plain path (`.data.order_id`, `$state.status`) starts from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Root {
    Event,
    State,
    Item,
}

/// A path of object keys, evaluated on the JSON directly: most expressions are
/// such paths, and going through jq for them costs a conversion of the event
/// (and the projection) per step.
#[derive(Debug, Clone, PartialEq)]
struct PlainPath {
    root: Root,
    keys: Vec<String>,
}

impl PlainPath {
    fn parse(source: &str) -> Option<PlainPath> {
        let source = source.trim();
        let (root, rest) = if let Some(rest) = source.strip_prefix("$event") {
            (Root::Event, rest)
        } else if let Some(rest) = source.strip_prefix("$state") {
            (Root::State, rest)
        } else if let Some(rest) = source.strip_prefix("$item") {
            (Root::Item, rest)
        } else {
            (Root::Event, source)
        };
        if rest.is_empty() {
            return (root != Root::Event || source == "$event")
                .then_some(PlainPath { root, keys: vec![] });
        }
        let mut keys = Vec::new();
        for key in rest.strip_prefix('.')?.split('.') {
            let mut chars = key.chars();
            let valid = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return None;
            }
            keys.push(key.to_owned());
        }
        Some(PlainPath { root, keys })
    }

    /// `Some(value)` when the walk stays on objects and nulls (jq's result);
    /// `None` when it meets anything else, whose error jq itself must word.
    fn eval(&self, scope: &Scope<'_>) -> Option<Option<Value>> {
        let start = match self.root {
            Root::Event => Some(scope.event),
            Root::State => scope.state,
            Root::Item => scope.item,
        };
        let mut value = start.unwrap_or(&Value::Null);
        for key in &self.keys {
            value = match value {
                Value::Object(map) => map.get(key).unwrap_or(&Value::Null),
                Value::Null => &Value::Null,
                _ => return None,
            };
        }
        Some((!value.is_null()).then(|| value.clone()))
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
            plain: PlainPath::parse(source),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn uses_item(&self) -> bool {
        self.uses_item
    }

    /// The one value the expression produces: `None` when it produces none or
    /// `null`; an error when it fails, produces several values, or produces
    /// something JSON cannot hold.
    pub fn eval(&self, scope: &Scope<'_>) -> Result<Option<Value>, String> {
        if let Some(found) = self.plain.as_ref().and_then(|path| path.eval(scope)) {
            return Ok(found);
        }
        if scope.event_val.get().is_none() {
            let converted = to_val(scope.event)?;
            // Set once per event: the cell is fresh for every event.
            let _ = scope.event_val.set(converted);
        }
        let event = scope
            .event_val
            .get()
            .expect("the event was converted just above");
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

/// JSON into jaq's value type, built directly: this runs for every expression
/// that reads `$state`, and going through serde cost twice as much.
pub fn to_val(value: &Value) -> Result<Val, String> {
    Ok(match value {
        Value::Null => Val::Null,
        Value::Bool(flag) => Val::Bool(*flag),
        Value::Number(number) => match number.as_i64().and_then(|int| isize::try_from(int).ok()) {
            Some(int) => Val::from(int),
            // Beyond a machine integer (or a float): let jaq's own reader decide.
            None => Val::deserialize(value)
                .map_err(|error| format!("cannot give {value} to jq: {error}"))?,
        },
        Value::String(text) => Val::from(text.clone()),
        Value::Array(items) => items.iter().map(to_val).collect::<Result<Val, String>>()?,
        Value::Object(map) => {
            let mut object = Map::with_capacity_and_hasher(map.len(), Default::default());
            for (key, item) in map {
                object.insert(Val::from(key.clone()), to_val(item)?);
            }
            Val::Obj(jaq_json::Rc::new(object))
        }
    })
}

/// jaq's value back into JSON; byte strings, non-string keys and non-finite
/// numbers have no JSON form and are refused.
pub fn from_val(value: &Val) -> Result<Value, String> {
    Ok(match value {
        Val::Null => Value::Null,
        Val::Bool(flag) => Value::Bool(*flag),
        Val::Num(number) => Value::Number(number_of(number)?),
        Val::TStr(bytes) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        Val::BStr(_) => return Err("a byte string has no JSON form".to_owned()),
        Val::Arr(items) => Value::Array(items.iter().map(from_val).collect::<Result<_, _>>()?),
        Val::Obj(map) => Value::Object(object_of(map)?),
    })
}

fn object_of(map: &Map) -> Result<serde_json::Map<String, Value>, String> {
    let mut object = serde_json::Map::new();
    for (key, value) in map {
        let Val::TStr(key) = key else {
            return Err(format!("object key {key} is not a string"));
        };
        object.insert(String::from_utf8_lossy(key).into_owned(), from_val(value)?);
    }
    Ok(object)
}

fn number_of(number: &Num) -> Result<serde_json::Number, String> {
    let float = |float: f64| {
        serde_json::Number::from_f64(float).ok_or_else(|| format!("{float} is not a JSON number"))
    };
    match number {
        Num::Int(int) => Ok(serde_json::Number::from(*int as i64)),
        Num::Float(value) => float(*value),
        // Big integers and decimal literals print as JSON numbers; serde_json
        // keeps what fits in 64 bits exactly and rounds the rest to a float.
        other => serde_json::from_str(&other.to_string())
            .map_err(|_| format!("{other} is not a JSON number")),
    }
}

#[cfg(test)]
mod plain_path_tests {
    use super::*;
    use serde_json::json;

    fn eval_both(
        source: &str,
        event: &Value,
        state: Option<&Value>,
    ) -> (Result<Option<Value>, String>, Result<Option<Value>, String>) {
        let fast = Expr::compile(source).unwrap();
        let mut slow = Expr::compile(source).unwrap();
        slow.plain = None;
        let run = |expr: &Expr| {
            let cell = OnceCell::new();
            expr.eval(&Scope {
                event,
                event_val: &cell,
                state,
                item: None,
            })
        };
        (run(&fast), run(&slow))
    }

    #[test]
    fn direct_conversion_matches_jaqs_own_reader() {
        let samples = [
            json!(null),
            json!({"a": [1, -2, 3.5, "x", true, null, {"b": {}}], "big": 18446744073709551615u64}),
            json!(["é", 0, 1e300]),
        ];
        for sample in samples {
            let direct = to_val(&sample).unwrap();
            let via_serde = Val::deserialize(&sample).unwrap();
            assert_eq!(direct, via_serde, "{sample}");
            assert_eq!(from_val(&direct).unwrap(), from_val(&via_serde).unwrap());
        }
    }

    #[test]
    fn plain_paths_are_recognised_and_nothing_else() {
        for plain in [
            ".data.order_id",
            ".time",
            "$state.status",
            "$state",
            "$item.quantity",
            "$event.data.x",
        ] {
            assert!(PlainPath::parse(plain).is_some(), "{plain}");
        }
        for not_plain in [
            ".",
            ".data[0]",
            ".data.order-id",
            "$state.lines[]",
            ".a | .b",
            ".a // 1",
            "$states",
            ".1x",
        ] {
            assert!(PlainPath::parse(not_plain).is_none(), "{not_plain}");
        }
    }

    #[test]
    fn plain_paths_answer_exactly_what_jq_answers() {
        let event = json!({"type": "t", "data": {"order_id": "o-1", "n": 3, "nested": {"x": null}, "text": "s"}});
        let state = json!({"status": "paid", "lines": []});
        for source in [
            ".data.order_id",
            ".data.n",
            ".data.missing",
            ".data.nested.x",
            ".nothing.deeper",
            "$state.status",
            "$state.absent",
            "$state",
            "$event.type",
            ".data.text.deeper",
        ] {
            for state in [Some(&state), None] {
                let (fast, slow) = eval_both(source, &event, state);
                assert_eq!(fast, slow, "{source} with state {state:?}");
            }
        }
    }
}
