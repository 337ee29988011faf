//! Identifier templates: how a projection's identifier is taken from an event,
//! e.g. `{data.order_id}`, `{subject}`, or `{time:%Y-%m-%d}` for a daily aggregate.
//!
//! A template is parsed and checked at load time; rendering it can only fail on
//! the event (a missing or non-scalar value), which is a permanent failure of
//! that event.

use std::fmt::Write as _;

use chrono::format::{Item, StrftimeItems};
use serde_json::Value;

use crate::cache::KEY_SEPARATOR;
use crate::event::Event;

/// The event attributes a placeholder may name (besides `data.<path>` and
/// `time:<strftime>`, parsed apart).
const ATTRIBUTES: [&str; 7] = [
    "subject",
    "id",
    "type",
    "source",
    "time",
    "topic",
    "partition",
];

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    /// `data.customer.id` -> ["customer", "id"] under `data`.
    Data(Vec<String>),
    Attribute(&'static str),
    /// `time:FORMAT`: the event time formatted with strftime, the format
    /// parsed once at load (chrono's `format` parses it on every call).
    Time {
        format: String,
        items: Vec<Item<'static>>,
    },
}

/// A parsed identifier template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parse `text`; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                if rest.contains('}') {
                    return Err(format!("unmatched '}}' in {text:?}"));
                }
                parts.push(Part::Literal(rest.to_owned()));
                break;
            };
            if open > 0 {
                let literal = &rest[..open];
                if literal.contains('}') {
                    return Err(format!("unmatched '}}' in {text:?}"));
                }
                parts.push(Part::Literal(literal.to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in {text:?}"))?;
            parts.push(parse_placeholder(&after[..close], text)?);
            rest = &after[close + 1..];
        }
        if !parts.iter().any(|part| !matches!(part, Part::Literal(_))) {
            return Err(format!(
                "{text:?} has no placeholder, so every event would share one identifier; use e.g. \"{{data.order_id}}\""
            ));
        }
        Ok(Template {
            source: text.to_owned(),
            parts,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The identifier of `event`, or why it has none.
    pub fn render(&self, event: &Event) -> Result<String, String> {
        let mut identifier = String::new();
        self.render_into(event, &mut identifier)?;
        Ok(identifier)
    }

    /// The cache key of `event` in projection `name`, `{name}:::{identifier}`,
    /// built in one buffer (it runs for every event and projection).
    pub fn render_key(&self, name: &str, event: &Event) -> Result<String, String> {
        let mut key = String::with_capacity(name.len() + KEY_SEPARATOR.len() + 32);
        key.push_str(name);
        key.push_str(KEY_SEPARATOR);
        self.render_into(event, &mut key)?;
        Ok(key)
    }

    /// Append the identifier of `event` to `identifier`.
    fn render_into(&self, event: &Event, identifier: &mut String) -> Result<(), String> {
        let start = identifier.len();
        for part in &self.parts {
            match part {
                Part::Literal(text) => identifier.push_str(text),
                Part::Data(path) => {
                    // Named only on failure: rendering runs for every event.
                    let shown = || format!("data.{}", path.join("."));
                    let value = path
                        .iter()
                        .try_fold(&event.data, |value, step| lookup(value, step))
                        .ok_or_else(|| format!("event has no {}", shown()))?;
                    push_scalar(identifier, value)
                        .map_err(|problem| format!("event's {} {problem}", shown()))?;
                }
                Part::Attribute(name) => push_attribute(identifier, event, name)?,
                Part::Time { format, items } => {
                    let time = event.time.ok_or("event has no time")?;
                    write!(identifier, "{}", time.format_with_items(items.iter()))
                        .map_err(|_| format!("time:{format} could not format {time}"))?;
                }
            }
        }
        if identifier.len() == start {
            return Err(format!("identifier {:?} rendered empty", self.source));
        }
        Ok(())
    }
}

fn parse_placeholder(inner: &str, text: &str) -> Result<Part, String> {
    let inner = inner.trim();
    if let Some(format) = inner.strip_prefix("time:") {
        // Parsed once, here: an unknown specifier is an error item, which
        // `parse_to_owned` refuses.
        let items = Some(format)
            .filter(|format| !format.is_empty())
            .and_then(|format| StrftimeItems::new(format).parse_to_owned().ok())
            .ok_or_else(|| format!("{{{inner}}} in {text:?} is not a valid strftime format"))?;
        return Ok(Part::Time {
            format: format.to_owned(),
            items,
        });
    }
    if let Some(path) = inner.strip_prefix("data.") {
        let steps: Vec<String> = path.split('.').map(str::to_owned).collect();
        if steps.iter().any(String::is_empty) {
            return Err(format!("{{{inner}}} in {text:?} has an empty path step"));
        }
        return Ok(Part::Data(steps));
    }
    ATTRIBUTES
        .iter()
        .find(|attribute| **attribute == inner)
        .map(|attribute| Part::Attribute(attribute))
        .ok_or_else(|| {
            format!(
                "{{{inner}}} in {text:?} is not a placeholder (valid: data.<path>, subject, id, type, source, time, time:<strftime>, topic, partition)"
            )
        })
}

fn lookup<'a>(value: &'a Value, step: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => map.get(step),
        Value::Array(items) => step
            .parse::<usize>()
            .ok()
            .and_then(|index| items.get(index)),
        _ => None,
    }
}

/// Append a scalar; the error says what the value is instead.
fn push_scalar(out: &mut String, value: &Value) -> Result<(), &'static str> {
    match value {
        Value::String(text) => out.push_str(text),
        Value::Number(number) => out.push_str(&number.to_string()),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Null => return Err("is null"),
        _ => return Err("is not a string or number"),
    }
    Ok(())
}

fn push_attribute(out: &mut String, event: &Event, name: &str) -> Result<(), String> {
    let missing = || format!("event has no {name}");
    match name {
        "subject" => out.push_str(event.subject.as_deref().ok_or_else(missing)?),
        "id" => out.push_str(event.id.as_deref().ok_or_else(missing)?),
        "source" => out.push_str(event.source.as_deref().ok_or_else(missing)?),
        "type" => out.push_str(&event.event_type),
        "time" => out.push_str(&event.time.ok_or_else(missing)?.to_rfc3339()),
        "topic" => out.push_str(&event.position.topic),
        "partition" => out.push_str(&event.position.partition.to_string()),
        _ => return Err(missing()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Position;
    use serde_json::json;

    fn event(data: Value) -> Event {
        Event {
            event_type: "shop.order.placed".into(),
            id: Some("e-1".into()),
            source: Some("/shop".into()),
            subject: None,
            time: Some("2026-11-27T10:15:00Z".parse().unwrap()),
            data,
            position: Position {
                topic: "shop.orders".into(),
                partition: 2,
                offset: 7,
            },
            traceparent: None,
        }
    }

    #[test]
    fn renders_data_paths_attributes_and_dates() {
        let event = event(json!({"order_id": "ord-1", "n": 5, "customer": {"id": 42}}));
        let render = |text: &str| Template::parse(text).unwrap().render(&event);
        assert_eq!(render("{data.order_id}").unwrap(), "ord-1");
        assert_eq!(render("c-{data.customer.id}").unwrap(), "c-42");
        assert_eq!(render("{time:%Y-%m-%d}").unwrap(), "2026-11-27");
        assert_eq!(render("{topic}/{partition}").unwrap(), "shop.orders/2");
    }

    #[test]
    fn missing_or_structured_values_are_errors() {
        let event = event(json!({"lines": [], "nothing": null}));
        for text in [
            "{data.order_id}",
            "{data.lines}",
            "{data.nothing}",
            "{subject}",
        ] {
            assert!(
                Template::parse(text).unwrap().render(&event).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn parse_errors_name_the_problem() {
        for (text, needle) in [
            ("{data.order_id", "unclosed"),
            ("order}", "unmatched"),
            ("{customer}", "not a placeholder"),
            ("fixed", "no placeholder"),
            ("{data..x}", "empty path step"),
            ("{time:%Q}", "strftime"),
        ] {
            let error = Template::parse(text).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
