//! Logs as a user sees them: human-readable by default, JSON lines with
//! `--log-format json`, levels from `RUST_LOG`. `dev` needs no service, so it is
//! the daemon run here, and a custom binary registering its own projector too.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Run `dev` until it is ready, stop it with SIGTERM, return its exit status
/// success and its stderr.
fn dev_logs(args: &[&str], rust_log: Option<&str>) -> (bool, String) {
    let port = support::redis::free_port();
    let listen = format!("127.0.0.1:{port}");
    let projections = concat!(env!("CARGO_MANIFEST_DIR"), "/projections");
    let mut command = Command::new(env!("CARGO_BIN_EXE_projectionist"));
    command
        .args(args)
        .args(["dev", "--listen", &listen, "--projections", projections])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(level) = rust_log {
        command.env("RUST_LOG", level);
    }
    let mut child = command.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while support::daemon::http_get(port, "/readyz").0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "dev never became ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.success(), stderr)
}

#[test]
fn json_logs_are_one_object_per_line_with_structured_fields() {
    let (ok, stderr) = dev_logs(&["--log-format", "json"], None);
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let assigned = lines
        .iter()
        .find(|line| line["message"] == "partitions assigned")
        .unwrap_or_else(|| panic!("no assignment logged: {stderr}"));
    assert_eq!(assigned["level"], "INFO");
    assert!(
        assigned["partitions"].is_string(),
        "fields are top-level: {assigned}"
    );
}

#[test]
fn text_logs_by_default_and_rust_log_sets_the_level() {
    let (ok, stderr) = dev_logs(&[], None);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("INFO") && stderr.contains("partitions assigned"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .all(|line| serde_json::from_str::<serde_json::Value>(line).is_err())
    );

    let (ok, quiet) = dev_logs(&[], Some("warn"));
    assert!(ok, "{quiet}");
    assert!(
        !quiet.contains("INFO"),
        "RUST_LOG=warn still logged info: {quiet}"
    );
}
