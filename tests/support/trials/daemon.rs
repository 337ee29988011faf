//! A daemon under trial: the real binary in a process of its own, so it can
//! be killed, frozen and thawed like a pod; it serves HTTP on a port of its
//! own (`PROJECTIONIST__SERVER__LISTEN`) and logs into the trial's folder.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::chaos::signal;
use crate::support::daemon::http_get;
use crate::support::redis::free_port;

pub struct Daemon {
    child: Child,
    pub label: String,
    pub http_port: u16,
}

impl Daemon {
    pub(super) fn spawn(config: &Path, dir: &Path, number: usize) -> Daemon {
        let http_port = free_port();
        let log = File::create(dir.join(format!("daemon-{number}.log"))).expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_projectionist"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,rdkafka=warn")
            .env(
                "PROJECTIONIST__SERVER__LISTEN",
                format!("127.0.0.1:{http_port}"),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the projectionist binary runs");
        Daemon {
            child,
            label: number.to_string(),
            http_port,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap the process.
    pub fn kill(&mut self) {
        signal(self.pid(), "KILL");
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process keeps its sockets but does nothing at all.
    pub fn freeze(&self) {
        assert!(signal(self.pid(), "STOP"), "daemon {} is gone", self.label);
    }

    /// SIGCONT after [`Daemon::freeze`].
    pub fn thaw(&self) {
        assert!(signal(self.pid(), "CONT"), "daemon {} is gone", self.label);
    }

    /// SIGTERM, then wait for the exit: the daemon drains and leaves.
    pub async fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        signal(self.pid(), "TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon {} did not exit within {timeout:?} of SIGTERM",
                self.label
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("the child can be polled")
    }

    /// Does it hold partitions (`projectionist_consumer_assigned 1`)? Never
    /// ask a frozen daemon: the request would wait for its timeout.
    pub fn is_assigned(&self) -> bool {
        let (_, metrics) = http_get(self.http_port, "/metrics");
        metrics
            .lines()
            .any(|line| line == "projectionist_consumer_assigned 1")
    }

    /// Wait until it holds partitions; how long that took, or why not.
    pub async fn wait_assigned(&mut self, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(format!("daemon {} exited: {status}", self.label));
            }
            if self.is_assigned() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "daemon {} got no partition within {timeout:?}",
                    self.label
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    /// A failing trial leaves no daemon behind (SIGKILL reaches a frozen one too).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
