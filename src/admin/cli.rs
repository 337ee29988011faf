//! `projectionist status | pause NAME | resume NAME | dead-letters |
//! dead-letter P O`: the admin API for a person at a terminal. Each prints what the daemon answered and exits 0
//! only on success.

use std::io::Write as _;
use std::process::ExitCode;

use serde_json::Value;

use super::client::{AdminClient, TOKEN_ENV};

/// Print every projection and partition the replica behind `admin` owns;
/// `json` prints the API's answer as it is.
pub fn status(admin: &str, json: bool) -> ExitCode {
    let Some((status, body)) = call(admin, None, "GET", "/admin/status") else {
        return ExitCode::FAILURE;
    };
    if status != 200 {
        return refused(status, &body);
    }
    if json {
        return print(&[format!("{body:#}")]);
    }
    let mut lines = Vec::new();
    let shown = |value: &Value| match value {
        Value::Null => "?".to_owned(),
        Value::Number(number) if number.is_f64() => {
            format!("{:.1}", number.as_f64().unwrap_or_default())
        }
        other => other.to_string(),
    };
    lines.push(format!(
        "group {} ({})",
        body["group"].as_str().unwrap_or("?"),
        if body["ready"] == Value::Bool(true) {
            "ready"
        } else {
            "not ready"
        }
    ));
    lines.push(format!(
        "{:<24} {:<12} {:>10} {:>10}  CACHE",
        "PROJECTION", "STATE", "LAG", "LAG_S"
    ));
    for projection in body["projections"].as_array().into_iter().flatten() {
        let held_by = projection["held_by"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let note = if held_by.is_empty() || projection["paused"] == Value::Bool(true) {
            String::new()
        } else {
            format!("  (held by {})", Value::Array(held_by))
        };
        lines.push(format!(
            "{:<24} {:<12} {:>10} {:>10}  {}{note}",
            projection["name"].as_str().unwrap_or("?"),
            projection["state"].as_str().unwrap_or("?"),
            shown(&projection["lag"]),
            shown(&projection["lag_seconds"]),
            projection["cache"].as_str().unwrap_or("?"),
        ));
        for partition in projection["partitions"].as_array().into_iter().flatten() {
            lines.push(format!(
                "  {:<22} {:<12} {:>10} {:>10}  applied {} of {}",
                format!(
                    "{}/{}",
                    partition["topic"].as_str().unwrap_or("?"),
                    partition["partition"]
                ),
                partition["state"].as_str().unwrap_or("?"),
                shown(&partition["lag"]),
                shown(&partition["lag_seconds"]),
                shown(&partition["applied"]),
                shown(&partition["end"]),
            ));
        }
    }
    print(&lines)
}

/// Written once, whole: a closed pipe (`| head`) ends the listing, not the
/// process.
fn print(lines: &[String]) -> ExitCode {
    let mut text = lines.join("\n");
    text.push('\n');
    let _ = std::io::stdout().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// One line per dead letter: where it sits, why, and where it came from.
pub fn dead_letters(admin: &str, limit: usize) -> ExitCode {
    let path = format!("/admin/dead-letters?limit={limit}");
    let Some((status, body)) = call(admin, None, "GET", &path) else {
        return ExitCode::FAILURE;
    };
    if status != 200 {
        return refused(status, &body);
    }
    let text = |value: &Value| value.as_str().unwrap_or("-").to_owned();
    let mut lines = vec![format!(
        "{:<12} {:<20} {:<20} {:<32} ERROR",
        "LETTER", "REASON", "PROJECTION", "FROM"
    )];
    for letter in body["letters"].as_array().into_iter().flatten() {
        let source = &letter["source"];
        lines.push(format!(
            "{:<12} {:<20} {:<20} {:<32} {}",
            format!("{}/{}", letter["partition"], letter["offset"]),
            text(&letter["reason"]),
            text(&letter["projection"]),
            format!(
                "{}/{}@{}",
                text(&source["topic"]),
                source["partition"],
                source["offset"]
            ),
            text(&letter["error"]),
        ));
    }
    print(&lines)
}

/// One dead letter whole (the original record with every header), as JSON.
pub fn dead_letter(admin: &str, partition: i32, offset: i64) -> ExitCode {
    let path = format!("/admin/dead-letters/{partition}/{offset}");
    let Some((status, body)) = call(admin, None, "GET", &path) else {
        return ExitCode::FAILURE;
    };
    if status != 200 {
        return refused(status, &body);
    }
    print(&[format!("{body:#}")])
}

/// Pause or resume `name` in every replica of the group.
pub fn set_paused(admin: &str, name: &str, paused: bool) -> ExitCode {
    let token = std::env::var(TOKEN_ENV).ok();
    if token.is_none() {
        eprintln!("projectionist: set {TOKEN_ENV} to the admin token");
        return ExitCode::FAILURE;
    }
    let verb = if paused { "pause" } else { "resume" };
    let path = format!("/admin/projections/{name}/{verb}");
    let Some((status, body)) = call(admin, token, "POST", &path) else {
        return ExitCode::FAILURE;
    };
    if status != 200 {
        return refused(status, &body);
    }
    let held: Vec<&str> = body["cache_held_by"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let cache = body["cache"].as_str().unwrap_or("?");
    println!("{name}: {}", if paused { "paused" } else { "resumed" });
    if held.is_empty() {
        println!("cache {cache} is not held: its projections are applied again");
    } else {
        println!(
            "cache {cache} is held by {}: every projection writing to it waits",
            held.join(", ")
        );
    }
    ExitCode::SUCCESS
}

fn call(admin: &str, token: Option<String>, method: &str, path: &str) -> Option<(u16, Value)> {
    let answered = AdminClient::new(admin, token).and_then(|client| client.request(method, path));
    match answered {
        Ok(answer) => Some(answer),
        Err(error) => {
            eprintln!("projectionist: {error}");
            None
        }
    }
}

fn refused(status: u16, body: &Value) -> ExitCode {
    let error = body["error"].as_str().unwrap_or("no reason given");
    eprintln!("projectionist: the admin API answered {status}: {error}");
    ExitCode::FAILURE
}
