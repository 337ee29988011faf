//! Reading and writing the projection document at a field path.

use serde_json::{Map, Value};

/// The field at `path`, if it and every parent exist and are not null.
pub(super) fn existing<'d>(
    document: Option<&'d Value>,
    path: &[String],
) -> Result<Option<&'d Value>, String> {
    let mut here = match document {
        Some(value) => value,
        None => return Ok(None),
    };
    for (depth, step) in path.iter().enumerate() {
        here = match here {
            Value::Object(object) => match object.get(step) {
                Some(Value::Null) | None => return Ok(None),
                Some(value) => value,
            },
            other => return Err(not_an_object(&path[..depth], other)),
        };
    }
    Ok(Some(here))
}

/// The field at `path`, created (as `null`, with object parents) when absent.
/// Callers go through [`with_slot`], which finds an existing field first.
fn slot<'d>(document: &'d mut Option<Value>, path: &[String]) -> Result<&'d mut Value, String> {
    let mut here = document.get_or_insert_with(|| Value::Object(Map::new()));
    for (depth, step) in path.iter().enumerate() {
        if here.is_null() {
            *here = Value::Object(Map::new());
        }
        if !here.is_object() {
            return Err(not_an_object(&path[..depth], here));
        }
        let object = here.as_object_mut().expect("checked just above");
        here = object.entry(step.as_str()).or_insert(Value::Null);
    }
    Ok(here)
}

/// `write` on the field at `path`, created as [`slot`] creates it when
/// absent. Most events write fields the projection already has: those are
/// found without `slot`'s copy of each key.
pub(super) fn with_slot<T>(
    document: &mut Option<Value>,
    path: &[String],
    write: impl FnOnce(&mut Value) -> Result<T, String>,
) -> Result<T, String> {
    if let Some(field) = present_mut(document, path) {
        return write(field);
    }
    write(slot(document, path)?)
}

/// The field at `path` when it and every parent exist (`null` included).
fn present_mut<'d>(document: &'d mut Option<Value>, path: &[String]) -> Option<&'d mut Value> {
    let mut here = document.as_mut()?;
    for step in path {
        here = here.as_object_mut()?.get_mut(step)?;
    }
    Some(here)
}

/// Make `field` equal to `value`, reusing its text's buffer: a field set on
/// every event (`updated_at`) mostly holds a text of the same length.
pub(super) fn assign(field: &mut Value, value: &Value) {
    match (field, value) {
        (Value::String(text), Value::String(new)) => text.clone_from(new),
        (field, value) if field != value => *field = value.clone(),
        _ => {}
    }
}

pub(super) fn not_an_object(path: &[String], found: &Value) -> String {
    if path.is_empty() {
        format!("the projection is {found}, not an object")
    } else {
        format!("{} is {found}, not an object", path.join("."))
    }
}

/// The list at a field, made empty when the field was absent.
pub(super) fn list<'d>(
    field: &'d mut Value,
    path: &[String],
) -> Result<&'d mut Vec<Value>, String> {
    if field.is_null() {
        *field = Value::Array(Vec::new());
    }
    match field {
        Value::Array(items) => Ok(items),
        other => Err(format!("{} is {other}, not a list", path.join("."))),
    }
}

/// `field + sign * by`: integers stay integers (and overflow is an error),
/// anything else is a float. An absent field counts as 0.
pub(super) fn add(field: &Value, by: &Value, sign: i8, path: &[String]) -> Result<Value, String> {
    // Joined only on failure: an increment runs for every event it handles.
    let shown = || path.join(".");
    let Value::Number(by) = by else {
        return Err(format!("cannot add {by} to {}: not a number", shown()));
    };
    let current = match field {
        Value::Null => serde_json::Number::from(0),
        Value::Number(number) => number.clone(),
        other => return Err(format!("{} is {other}, not a number", shown())),
    };
    if let (Some(left), Some(right)) = (current.as_i64(), by.as_i64()) {
        let sum = if sign > 0 {
            left.checked_add(right)
        } else {
            left.checked_sub(right)
        };
        return sum
            .map(Value::from)
            .ok_or_else(|| format!("{} overflows", shown()));
    }
    let (left, right) = (
        current.as_f64().unwrap_or(f64::NAN),
        by.as_f64().unwrap_or(f64::NAN),
    );
    serde_json::Number::from_f64(left + f64::from(sign) * right)
        .map(Value::Number)
        .ok_or_else(|| format!("{} overflows", shown()))
}
