//! Conversions between JSON and jaq's values, for the expressions jaq runs.

use jaq_json::{Map, Num, Val};
use serde::Deserialize;
use serde_json::Value;

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
