//! `projectionist replay` as a child process, and the peak memory the kernel
//! accounted to it.

use std::path::Path;
use std::process::{Command, Stdio};

/// Run `projectionist replay` of `events` under `config`; its peak resident
/// memory in bytes (`wait4`'s figure for that child alone). The caller should
/// be small when it calls: a forked child is charged its parent's pages
/// until it execs.
pub fn replay_peak(config: &Path, events: &Path) -> u64 {
    // Reaped by wait4 below, which also reports its peak memory.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_projectionist"))
        .args(["replay", "--config"])
        .arg(config)
        .arg("--events")
        .arg(events)
        .stdout(Stdio::null())
        .spawn()
        .expect("the projectionist binary runs");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 reaps our own child and writes into the structs given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "replay failed: {status}"
    );
    // Linux reports kilobytes.
    usage.ru_maxrss as u64 * 1024
}
