//! `projectionist status | pause NAME | resume NAME | dead-letters [replay |
//! purge] | dead-letter P O`: the admin API for a person at a terminal. Each prints what the daemon answered and exits 0
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
    for (name, versions) in body["versions"].as_object().into_iter().flatten() {
        if let Some(shadow) = versions["shadow"].as_object() {
            lines.push(format!(
                "{name}: version {} live, version {} {} (projectionist rebuild {name} watch)",
                versions["live"],
                shadow["version"],
                match shadow["role"].as_str() {
                    Some("candidate") => "rebuilding",
                    _ => "kept for a rollback",
                }
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

/// One line per dead letter: where it sits, whether it is pending, why,
/// and where it came from.
pub fn dead_letters(admin: &str, limit: usize, pending: bool) -> ExitCode {
    let path = format!("/admin/dead-letters?limit={limit}&pending={pending}");
    let Some((status, body)) = call(admin, None, "GET", &path) else {
        return ExitCode::FAILURE;
    };
    if status != 200 {
        return refused(status, &body);
    }
    let text = |value: &Value| value.as_str().unwrap_or("-").to_owned();
    let mut lines = vec![format!(
        "{:<12} {:<8} {:<20} {:<20} {:<32} ERROR",
        "LETTER", "STATE", "REASON", "PROJECTION", "FROM"
    )];
    for letter in body["letters"].as_array().into_iter().flatten() {
        let source = &letter["source"];
        lines.push(format!(
            "{:<12} {:<8} {:<20} {:<20} {:<32} {}",
            format!("{}/{}", letter["partition"], letter["offset"]),
            text(&letter["state"]),
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

/// Replay the pending letters (of one partition, up to an offset).
pub fn replay_letters(admin: &str, partition: Option<i32>, to: Option<i64>) -> ExitCode {
    let path = format!("/admin/dead-letters/replay{}", query(partition, to, false));
    let Some(body) = take_up(admin, &path) else {
        return ExitCode::FAILURE;
    };
    let mut lines = vec![format!(
        "{}: {} replayed, {} failed again (sent back to the topic), {} duplicates passed over",
        body["topic"].as_str().unwrap_or("?"),
        body["replayed"],
        body["failed_again"],
        body["duplicates"],
    )];
    lines.push(format!(
        "  {:<10} {:>10} {:>10} {:>10}",
        "PARTITION", "FROM", "TO", "END"
    ));
    // No checkpoint yet: pending from the partition's first letter.
    let offset = |value: &Value| value.as_i64().map_or("-".to_owned(), |n| n.to_string());
    for partition in body["partitions"].as_array().into_iter().flatten() {
        lines.push(format!(
            "  {:<10} {:>10} {:>10} {:>10}  {}",
            offset(&partition["partition"]),
            offset(&partition["from"]),
            offset(&partition["to"]),
            offset(&partition["end"]),
            if partition["finished"] == Value::Bool(true) {
                "done"
            } else {
                "UNFINISHED"
            },
        ));
    }
    let failures = body["failures"].as_array().cloned().unwrap_or_default();
    if !failures.is_empty() {
        lines.push("failed again (pending again, as new letters):".to_owned());
    }
    for failure in &failures {
        lines.push(format!(
            "  {}/{} from {} {} {}: {}",
            failure["partition"],
            failure["offset"],
            failure["source"].as_str().unwrap_or("?"),
            failure["projection"].as_str().unwrap_or("-"),
            failure["reason"].as_str().unwrap_or("?"),
            failure["error"].as_str().unwrap_or(""),
        ));
    }
    if let Some(note) = body["note"].as_str() {
        lines.push(note.to_owned());
    }
    print(&lines);
    // A script must notice a replay that left letters pending.
    let clean = body["finished"] == Value::Bool(true) && failures.is_empty();
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Mark letters handled without applying them.
pub fn purge_letters(admin: &str, partition: Option<i32>, to: Option<i64>, all: bool) -> ExitCode {
    let path = format!("/admin/dead-letters/purge{}", query(partition, to, all));
    let Some(body) = take_up(admin, &path) else {
        return ExitCode::FAILURE;
    };
    let mut lines = vec![format!(
        "{}: {} letters purged (they stay in the topic until its retention)",
        body["topic"].as_str().unwrap_or("?"),
        body["purged"],
    )];
    for partition in body["partitions"].as_array().into_iter().flatten() {
        let was = partition["from"]
            .as_i64()
            .map_or("its first letter".to_owned(), |from| from.to_string());
        lines.push(format!(
            "  partition {}: pending from {} now (was {was})",
            partition["partition"], partition["to"],
        ));
    }
    print(&lines)
}

fn query(partition: Option<i32>, to: Option<i64>, all: bool) -> String {
    let mut pairs = Vec::new();
    if let Some(partition) = partition {
        pairs.push(format!("partition={partition}"));
    }
    if let Some(to) = to {
        pairs.push(format!("to={to}"));
    }
    if all {
        pairs.push("all=true".to_owned());
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// How long a replay or purge may take to answer.
const TAKE_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// POST a replay or purge with the token; the answer when it succeeded.
fn take_up(admin: &str, path: &str) -> Option<Value> {
    let token = std::env::var(TOKEN_ENV).ok();
    if token.is_none() {
        eprintln!("projectionist: set {TOKEN_ENV} to the admin token");
        return None;
    }
    let answered = AdminClient::new(admin, token)
        .map(|client| client.with_timeout(TAKE_UP_TIMEOUT))
        .and_then(|client| client.request("POST", path));
    match answered {
        Ok((200, body)) => Some(body),
        Ok((status, body)) => {
            refused(status, &body);
            None
        }
        Err(error) => {
            eprintln!("projectionist: {error}");
            None
        }
    }
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
