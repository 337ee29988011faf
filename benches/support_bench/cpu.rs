//! Whole-process CPU time, for CPU per event: this process's own
//! (`getrusage`), a child's when it is reaped (`wait4`, every thread it ever
//! had), and a running child's split by thread (`/proc/<pid>/task`).

use std::collections::BTreeMap;
use std::process::Child;

fn seconds(time: libc::timeval) -> f64 {
    time.tv_sec as f64 + time.tv_usec as f64 / 1e6
}

/// User plus system CPU seconds this process has used, all threads.
pub fn own_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(status, 0, "getrusage");
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Ask `child` to stop (SIGTERM, its own clean shutdown) and reap it: the
/// user plus system CPU seconds of its whole life.
pub fn stop_and_reap(child: Child) -> f64 {
    let pid = child.id() as libc::pid_t;
    // SAFETY: signalling and reaping our own child, writing into our structs.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0;
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        assert_eq!(libc::wait4(pid, &mut status, 0, &mut usage), pid, "wait4");
    }
    drop(child);
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU seconds of each thread of a running process, summed by thread name
/// with digits dropped (`rdk:broker1` and `rdk:broker2` are one line).
pub fn by_thread(pid: u32) -> BTreeMap<String, f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut threads = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ...`: the name may hold spaces, so split at the
        // last ')'; utime and stime are the 12th and 13th fields after it.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name: String = stat[open + 1..close]
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect();
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let cpu = |at: usize| {
            fields
                .get(at)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        *threads.entry(name).or_insert(0.0) += (cpu(11) + cpu(12)) / ticks;
    }
    threads
}
