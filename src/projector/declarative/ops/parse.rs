//! Reading a step from its TOML inline table, every problem reported.

use serde_json::Value;

use super::{OPERATIONS, Op, Source, Step};
use crate::projector::declarative::expr::Expr;

impl Step {
    /// Parse one `do` entry; every problem of the entry is reported.
    pub fn parse(table: &toml::Table) -> Result<Step, Vec<String>> {
        let named: Vec<&str> = OPERATIONS
            .iter()
            .copied()
            .filter(|op| table.contains_key(*op))
            .collect();
        let operation = match named.as_slice() {
            [operation] => *operation,
            [] => {
                let keys: Vec<&str> = table.keys().map(String::as_str).collect();
                return Err(vec![format!(
                    "unknown operation in {{ {} }} (valid: {})",
                    keys.join(", "),
                    OPERATIONS.join(", ")
                )]);
            }
            several => {
                return Err(vec![format!(
                    "one operation per step, found {}",
                    several.join(" and ")
                )]);
            }
        };
        let mut reader = Reader {
            table,
            errors: Vec::new(),
            used: vec![operation],
        };
        let (target, label) = if operation == "delete" {
            if table.get("delete") != Some(&toml::Value::Boolean(true)) {
                reader.fail("delete takes `true`".to_owned());
            }
            (Vec::new(), "delete".to_owned())
        } else {
            let target = reader.path(operation);
            let label = format!("{operation} {:?}", target.join("."));
            (target, label)
        };
        let op = match operation {
            "set" => {
                let source = reader.source("value", "from");
                let keeps_itself =
                    matches!(&source, Source::Expr { expr, .. } if expr.is_state_field(&target));
                Op::Set {
                    source,
                    keeps_itself,
                }
            }
            "increment" | "decrement" => Op::Add {
                by: reader.source("by_value", "by"),
                sign: if operation == "increment" { 1 } else { -1 },
            },
            "append" => Op::Append {
                element: reader.source("value", "from"),
                unique: reader.flag("unique"),
            },
            "remove" => Op::Remove {
                element: reader.source("value", "from"),
                key: reader.text("key", false),
            },
            "upsert" => {
                let matching = reader.expr("match");
                let element = reader.source("value", "from");
                if matching.is_none()
                    && matches!(&element, Source::Expr { expr, .. } if expr.uses_item())
                {
                    reader.fail(
                        "`from` uses $item, so `match` must say which element it is (e.g. match = \".data.sku\")"
                            .to_owned(),
                    );
                }
                Op::Upsert {
                    element,
                    key: reader.text("key", true).unwrap_or_default(),
                    matching,
                }
            }
            "merge" => Op::Merge(reader.source("value", "from")),
            "unset" => Op::Unset,
            _ => Op::Delete,
        };
        reader.reject_unused(operation);
        if reader.errors.is_empty() {
            Ok(Step { label, target, op })
        } else {
            Err(reader.errors)
        }
    }
}

/// Reads one step's keys, collecting every problem instead of stopping at one.
struct Reader<'t> {
    table: &'t toml::Table,
    errors: Vec<String>,
    used: Vec<&'static str>,
}

impl Reader<'_> {
    fn fail(&mut self, message: String) {
        self.errors.push(message);
    }

    fn path(&mut self, operation: &'static str) -> Vec<String> {
        let Some(toml::Value::String(text)) = self.table.get(operation) else {
            self.fail(format!(
                "{operation} takes a field path such as \"totals.cents\""
            ));
            return vec![String::new()];
        };
        let steps: Vec<String> = text.split('.').map(str::to_owned).collect();
        if steps.iter().any(String::is_empty) {
            self.fail(format!(
                "{operation} = {text:?} is not a field path such as \"totals.cents\""
            ));
        }
        steps
    }

    fn take(&mut self, key: &'static str) -> Option<&toml::Value> {
        self.used.push(key);
        self.table.get(key)
    }

    fn flag(&mut self, key: &'static str) -> bool {
        match self.take(key) {
            None => false,
            Some(toml::Value::Boolean(flag)) => *flag,
            Some(other) => {
                let message = format!("{key} = {other} is not true or false");
                self.fail(message);
                false
            }
        }
    }

    fn text(&mut self, key: &'static str, required: bool) -> Option<String> {
        match self.take(key) {
            Some(toml::Value::String(text)) if !text.is_empty() => Some(text.clone()),
            None if !required => None,
            None => {
                self.fail(format!(
                    "{key} is required: the field that identifies an element"
                ));
                None
            }
            Some(other) => {
                let message = format!("{key} = {other} is not a field name");
                self.fail(message);
                None
            }
        }
    }

    fn expr(&mut self, key: &'static str) -> Option<Expr> {
        match self.take(key) {
            None => None,
            Some(toml::Value::String(code)) => {
                let code = code.clone();
                Expr::compile(&code)
                    .map_err(|error| self.fail(format!("{key}: {error}")))
                    .ok()
            }
            Some(other) => {
                let message = format!("{key} = {other} is not a jq expression (a string)");
                self.fail(message);
                None
            }
        }
    }

    /// A literal under `literal` or a jq expression under `expression`, with
    /// `default` and `optional` for the expression.
    fn source(&mut self, literal: &'static str, expression: &'static str) -> Source {
        let value = self.take(literal).map(json_of);
        let expr = self.expr(expression);
        let default = self.take("default").map(json_of);
        let optional = self.flag("optional");
        let has_expression = self.table.contains_key(expression);
        if value.is_some() && has_expression {
            self.fail(format!(
                "give either {literal} (a literal) or {expression} (jq), not both"
            ));
        }
        if value.is_none() && !has_expression {
            self.fail(format!(
                "{literal} (a literal) or {expression} (jq) is required"
            ));
        }
        if value.is_some() && (default.is_some() || optional) {
            self.fail(format!(
                "default and optional apply to {expression}, not to a literal"
            ));
        }
        if default.is_some() && optional {
            self.fail("give either default or optional = true, not both".to_owned());
        }
        match (value, expr) {
            (Some(value), _) => Source::Literal(value),
            (None, Some(expr)) => Source::Expr {
                expr,
                default,
                optional,
            },
            // Reported above; the placeholder is never applied.
            (None, None) => Source::Literal(Value::Null),
        }
    }

    fn reject_unused(&mut self, operation: &str) {
        let unused: Vec<String> = self
            .table
            .keys()
            .filter(|key| !self.used.contains(&key.as_str()))
            .cloned()
            .collect();
        for key in unused {
            self.fail(format!("`{key}` does not apply to {operation}"));
        }
    }
}

/// A TOML literal as JSON (dates become their RFC 3339 text).
pub fn json_of(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(text) => Value::String(text.clone()),
        toml::Value::Integer(int) => Value::from(*int),
        toml::Value::Float(float) => {
            serde_json::Number::from_f64(*float).map_or(Value::Null, Value::Number)
        }
        toml::Value::Boolean(flag) => Value::Bool(*flag),
        toml::Value::Datetime(time) => Value::String(time.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(json_of).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(key, value)| (key.clone(), json_of(value)))
                .collect(),
        ),
    }
}
