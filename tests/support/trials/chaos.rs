//! The trials' means of harm: a seeded random source (the seed is printed,
//! and `TRIAL_SEED` replays it), POSIX signals to daemons and servers, and
//! the lock that runs one trial at a time.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Mutex, MutexGuard};

/// A small seeded generator (SplitMix64): the same seed gives the same
/// workload and the same moments of harm, on any platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0; the modulo bias is negligible here).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// A duration uniform in `from..=to`, in whole milliseconds.
    pub fn between(&mut self, from: Duration, to: Duration) -> Duration {
        let (from, to) = (from.as_millis() as u64, to.as_millis() as u64);
        Duration::from_millis(from + self.below(to - from + 1))
    }
}

/// `TRIAL_SEED` when set (to replay a failure), else a fresh one.
pub fn seed() -> u64 {
    if let Ok(text) = std::env::var("TRIAL_SEED") {
        return text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("TRIAL_SEED={text} is not a number"));
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or_default();
    Rng::new(nanos ^ u64::from(std::process::id())).next_u64()
}

/// Send `signal` (`KILL`, `TERM`, `STOP`, `CONT`) to process `pid`; false
/// when there is no such process any more.
pub fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the kill command runs")
        .success()
}

/// Held for a whole trial. Trials share a 2-core machine with the broker,
/// Redis and several daemons, and their harm is timed: two at once would
/// slow each other into different experiments.
pub async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TRIALS: Mutex<()> = Mutex::const_new(());
    TRIALS.lock().await
}
