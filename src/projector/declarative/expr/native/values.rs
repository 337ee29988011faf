//! jq's truth, arithmetic and order on serde_json values, where the answer
//! is plain; anything else gives up, for jaq to decide.

use std::cmp::Ordering;

use serde_json::Value;

use super::{Arith, GiveUp};

pub(super) fn is_true(value: &Value) -> bool {
    !matches!(value, Value::Null | Value::Bool(false))
}

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(number) => number.as_i64(),
        _ => None,
    }
}

/// jaq's `+ - *` where the answer is plain: integers that do not overflow,
/// floats (decimals) where either side is one and the answer is finite (jaq
/// computes them in `f64` too), `null` as the neutral element of `+`, and
/// joined strings.
pub(super) fn arith(left: &Value, op: Arith, right: &Value) -> Result<Value, GiveUp> {
    if let (Some(l), Some(r)) = (integer(left), integer(right)) {
        let result = match op {
            Arith::Add => l.checked_add(r),
            Arith::Sub => l.checked_sub(r),
            Arith::Mul => l.checked_mul(r),
        };
        return result.map(Value::from).ok_or(GiveUp);
    }
    if let (Some(l), Some(r)) = (float(left), float(right)) {
        let result = match op {
            Arith::Add => l + r,
            Arith::Sub => l - r,
            Arith::Mul => l * r,
        };
        return serde_json::Number::from_f64(result)
            .map(Value::Number)
            .ok_or(GiveUp);
    }
    match (op, left, right) {
        (Arith::Add, Value::Null, other) | (Arith::Add, other, Value::Null)
            if other.is_null() || float(other).is_some() || other.is_string() =>
        {
            Ok(other.clone())
        }
        (Arith::Add, Value::String(l), Value::String(r)) => Ok(Value::String(format!("{l}{r}"))),
        _ => Err(GiveUp),
    }
}

/// A number as jaq computes with it: a 64-bit integer or a float. An
/// integer past 64 bits (which jaq keeps exactly) is left to jaq.
fn float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) if number.is_f64() => number.as_f64(),
        Value::Number(number) => number.as_i64().map(|int| int as f64),
        _ => None,
    }
}

/// jq's order (null < booleans < numbers < strings < arrays < objects): by
/// kind, then within the plain kinds; two arrays or two objects are left to
/// jaq.
pub(super) fn order(left: &Value, right: &Value) -> Result<Ordering, GiveUp> {
    let rank = |value: &Value| match value {
        Value::Null => Ok(0),
        Value::Bool(_) => Ok(1),
        Value::Number(_) if float(value).is_some() => Ok(2),
        Value::Number(_) => Err(GiveUp),
        Value::String(_) => Ok(3),
        Value::Array(_) => Ok(4),
        Value::Object(_) => Ok(5),
    };
    let by_kind = rank(left)?.cmp(&rank(right)?);
    Ok(match (left, right) {
        (Value::Bool(l), Value::Bool(r)) => l.cmp(r),
        (Value::Number(_), Value::Number(_)) => match (integer(left), integer(right)) {
            (Some(l), Some(r)) => l.cmp(&r),
            _ => float(left)
                .zip(float(right))
                .and_then(|(l, r)| l.partial_cmp(&r))
                .ok_or(GiveUp)?,
        },
        (Value::String(l), Value::String(r)) => l.as_bytes().cmp(r.as_bytes()),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            return Err(GiveUp);
        }
        _ => by_kind,
    })
}

/// Whether jaq would give `value` back unchanged: its numbers are 64-bit
/// integers or floats (jaq reads a float it is given as one and writes it
/// back as the same `f64`); an integer past 64 bits goes through jaq's own
/// number reading and writing.
pub fn jaq_keeps(value: &Value) -> bool {
    match value {
        Value::Number(number) => number.is_f64() || number.as_i64().is_some(),
        Value::Array(items) => items.iter().all(jaq_keeps),
        Value::Object(object) => object.values().all(jaq_keeps),
        _ => true,
    }
}
