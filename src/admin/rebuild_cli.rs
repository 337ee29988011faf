//! `projectionist rebuild NAME [start|status|watch|promote|rollback|collect]`:
//! rebuilds from a terminal, over the admin API. `watch` draws a progress bar
//! with the rate and the time left.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::{AdminClient, TOKEN_ENV};

/// What to do with a projection's rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// Build the live version again beside it (a new version in the files
    /// starts by itself).
    Start,
    /// Where the shadow stands, once.
    Status,
    /// Follow the shadow until it reaches the live version.
    Watch,
    /// Replace the live version with the shadow, key by key.
    Promote,
    /// Go back to the previous version (it kept being built).
    Rollback,
    /// Drop the shadow (and with it the rollback).
    Collect,
}

const WATCH_INTERVAL: Duration = Duration::from_secs(1);
const BAR: usize = 30;

pub fn rebuild(
    admin: &str,
    name: &str,
    action: Action,
    wait_secs: Option<u64>,
    from: Option<&str>,
) -> ExitCode {
    let path = format!("/admin/projections/{name}/rebuild");
    let token = || std::env::var(TOKEN_ENV).ok();
    let (method, path, token) = match action {
        Action::Status | Action::Watch => ("GET", path, None),
        Action::Start => {
            // A `+01:00` offset would read as a space in a query.
            let from = from
                .map(|time| format!("?from={}", time.replace('+', "%2B")))
                .unwrap_or_default();
            ("POST", format!("{path}{from}"), token())
        }
        Action::Collect => ("POST", format!("{path}/collect"), token()),
        Action::Promote | Action::Rollback => {
            let verb = if action == Action::Promote {
                "promote"
            } else {
                "rollback"
            };
            let wait = wait_secs
                .map(|secs| format!("?wait_secs={secs}"))
                .unwrap_or_default();
            ("POST", format!("{path}/{verb}{wait}"), token())
        }
    };
    if method == "POST" && token.is_none() {
        eprintln!("projectionist: set {TOKEN_ENV} to the admin token");
        return ExitCode::FAILURE;
    }
    // The daemon waits up to 30 s (or --wait-secs) for the shadow.
    let patience = Duration::from_secs(wait_secs.unwrap_or(30));
    let client = match AdminClient::new(admin, token) {
        Ok(client) => client.with_timeout(Duration::from_secs(10) + patience),
        Err(error) => {
            eprintln!("projectionist: {error}");
            return ExitCode::FAILURE;
        }
    };
    if action == Action::Watch {
        return watch(&client, &path);
    }
    match client.request(method, &path) {
        Ok((status, body)) if (200..300).contains(&status) => {
            println!("{}", describe(action, &body));
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            let error = body["error"].as_str().unwrap_or("no reason given");
            eprintln!("projectionist: the admin API answered {status}: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("projectionist: {error}");
            ExitCode::FAILURE
        }
    }
}

fn describe(action: Action, body: &Value) -> String {
    match action {
        Action::Start => format!(
            "rebuilding version {} of {} (follow it with: projectionist rebuild {} watch)",
            body["shadow"]["version"],
            body["projection"].as_str().unwrap_or("?"),
            body["projection"].as_str().unwrap_or("?")
        ),
        Action::Promote | Action::Rollback => {
            let promoted = &body["promoted"];
            format!(
                "version {} is live (was {}): {} keys replaced, {} retired; version {} is kept for a rollback until collected",
                promoted["live"],
                promoted["previous"],
                promoted["replaced"],
                promoted["retired"],
                promoted["previous"]
            )
        }
        Action::Collect => format!("collected: {} keys removed", body["removed"]),
        Action::Status | Action::Watch => format!("{body:#}"),
    }
}

/// Poll until the shadow stands where the live version does.
fn watch(client: &AdminClient, path: &str) -> ExitCode {
    let terminal = std::io::stdout().is_terminal();
    let mut last: Option<(Instant, i64)> = None;
    let mut rate: Option<f64> = None;
    loop {
        let body = match client.request("GET", path) {
            Ok((200, body)) => body,
            Ok((status, body)) => {
                let error = body["error"].as_str().unwrap_or("no reason given");
                eprintln!("\nprojectionist: the admin API answered {status}: {error}");
                return ExitCode::FAILURE;
            }
            Err(error) => {
                eprintln!("\nprojectionist: {error}");
                return ExitCode::FAILURE;
            }
        };
        let Some(remaining) = body["progress"]["remaining"].as_i64() else {
            println!("no shadow is being built");
            return ExitCode::SUCCESS;
        };
        let now = Instant::now();
        if let Some((then, before)) = last {
            let seconds = now.duration_since(then).as_secs_f64();
            if seconds > 0.0 {
                let current = (before - remaining) as f64 / seconds;
                // Smoothed, so the time left does not jump with every poll.
                rate = Some(rate.map_or(current, |rate| 0.7 * rate + 0.3 * current));
            }
        }
        last = Some((now, remaining));
        let line = bar(&body, remaining, rate);
        if terminal {
            print!("\r{line}");
        } else {
            println!("{line}");
        }
        let _ = std::io::stdout().flush();
        if body["progress"]["level"] == Value::Bool(true) {
            let name = body["projection"].as_str().unwrap_or("?");
            println!(
                "\ncaught up with the live version: promote it with projectionist rebuild {name} promote"
            );
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(WATCH_INTERVAL);
    }
}

fn bar(body: &Value, remaining: i64, rate: Option<f64>) -> String {
    let ratio = body["progress"]["ratio"]
        .as_f64()
        .unwrap_or(0.0)
        .clamp(0.0, 1.0);
    let filled = (ratio * BAR as f64).round() as usize;
    let eta = match rate {
        Some(rate) if rate > 0.0 => format!("{:.0}s", remaining as f64 / rate),
        _ => "?".to_owned(),
    };
    format!(
        "v{} [{}{}] {:>5.1}%  {} to go  {}/s  eta {}   ",
        body["shadow"]["version"],
        "#".repeat(filled),
        "-".repeat(BAR - filled),
        ratio * 100.0,
        remaining,
        rate.map_or("?".to_owned(), |rate| format!("{rate:.0}")),
        eta
    )
}
