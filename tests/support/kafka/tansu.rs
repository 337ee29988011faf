//! Runs one tansu broker as a child process: memory storage, a free loopback
//! port, output captured to a temp file. A watchdog shell sits between the
//! test process and tansu, so the broker dies with the test process however
//! that ends (panic, abort, SIGKILL), not only when `Drop` runs.

use std::env;
use std::fs;
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::NamedTempFile;

const INSTALL_HINT: &str = "install it with `cargo install --locked tansu --version 0.6.0 \
     --features dynostore` (scripts/test does this), point TANSU_BIN at the binary, or set \
     KAFKA_BROKERS to use a broker that is already running";

/// The watchdog: starts `"$@"` (tansu and its arguments) in the background,
/// then blocks reading its stdin, a pipe whose write end only the test
/// process holds. End of file means the test process let go of the broker
/// or died; either way tansu is killed and reaped.
const WATCHDOG: &str = r#""$@" & broker=$!
read -r _ignored
kill -KILL "$broker" 2>/dev/null
wait "$broker" 2>/dev/null
exit 0"#;

/// How long `Drop` waits for the watchdog to reap tansu before it kills the
/// whole process group itself.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// Finds the tansu binary: `TANSU_BIN`, else `tansu` on `PATH`, else the
/// cargo install directory. Panics with install instructions when absent.
pub fn locate_binary() -> PathBuf {
    if let Some(explicit) = env::var_os("TANSU_BIN") {
        let explicit = PathBuf::from(explicit);
        assert!(
            explicit.is_file(),
            "TANSU_BIN={} is not a file; {INSTALL_HINT}",
            explicit.display()
        );
        return explicit;
    }
    let on_path = env::var_os("PATH")
        .into_iter()
        .flat_map(|path| env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"));
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let in_cargo_home = cargo_home.map(|home| home.join("bin").join("tansu"));
    on_path
        .chain(in_cargo_home)
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("tansu broker binary not found; {INSTALL_HINT}"))
}

pub struct TansuProcess {
    watchdog: Child,
    /// Write end of the watchdog's stdin: dropping it stops the broker.
    lifeline: Option<ChildStdin>,
    log: NamedTempFile,
    pub port: u16,
}

impl TansuProcess {
    pub fn spawn(binary: &Path, port: u16) -> io::Result<TansuProcess> {
        let log = NamedTempFile::with_prefix("tansu-")?;
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("tansu-watchdog")
            .arg(binary)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            // Keep the captured log to what explains a failure; TANSU_LOG overrides.
            .env(
                "RUST_LOG",
                env::var("TANSU_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::piped())
            .stdout(log.reopen()?)
            .stderr(log.reopen()?);
        // Its own process group, so Drop can kill tansu even if the watchdog
        // was killed first, and a terminal's Ctrl-C reaches it only through us.
        command.process_group(0);
        let mut watchdog = command.spawn()?;
        let lifeline = watchdog.stdin.take();
        Ok(TansuProcess {
            watchdog,
            lifeline,
            log,
            port,
        })
    }

    /// The exit status if the broker (or its watchdog) has already stopped.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.watchdog.try_wait().ok().flatten()
    }

    /// Send `signal` (`STOP`, `CONT`) to tansu and its watchdog: `STOP`
    /// freezes the broker with its connections open, as a hung host would.
    pub fn signal(&self, signal: &str) {
        let group = format!("-{}", self.watchdog.id());
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), "--", &group])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} {group} failed");
    }

    /// The last lines tansu printed, for panic messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(40);
        lines[start..].join("\n")
    }

    /// Appends a note to the captured log (for example why the harness gave up).
    pub fn note(&mut self, text: &str) {
        let file = self.log.as_file_mut();
        let _ = file.seek(SeekFrom::End(0));
        let _ = writeln!(file, "[harness] {text}");
    }
}

impl Drop for TansuProcess {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        let deadline = Instant::now() + REAP_TIMEOUT;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let group = format!("-{}", self.watchdog.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.watchdog.wait();
    }
}
