//! A projection's and a partition's state, derived from lag against the end of
//! the log, never from how old the events are: a historical stream applied to
//! its end is live.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::Applied;
use crate::cache::Partition;

/// A partition behind its end, but by records this recent, is live: they are
/// in flight, not a backlog.
pub const LIVE_WITHIN_SECS: f64 = 10.0;

/// A partition behind its end whose position has not moved for this long is
/// stalled; so is a projection while a component has been failing this long.
pub const STALLED_AFTER_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    CatchingUp,
    Live,
    Stalled,
    Paused,
    /// This replica owns none of the projection's partitions: it has nothing
    /// to say (every `projectionist_projection_state` series is 0).
    Idle,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::CatchingUp => "catching_up",
            State::Live => "live",
            State::Stalled => "stalled",
            State::Paused => "paused",
            State::Idle => "idle",
        }
    }
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// One partition as one cache has applied it.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// The next offset to apply (the checkpoint), `None` before the first.
    pub applied: Option<i64>,
    /// The high watermark, `None` before librdkafka's first statistics.
    pub end: Option<i64>,
    /// Records between the two, `None` while either is unknown.
    pub lag: Option<i64>,
    /// Age of the newest record applied while behind; 0 when caught up.
    pub lag_seconds: Option<f64>,
    pub state: State,
}

impl PartitionStatus {
    pub(super) fn new(
        partition: &Partition,
        applied: &Applied,
        end: Option<i64>,
        now: u64,
    ) -> PartitionStatus {
        let lag = match (applied.next, end) {
            // Statistics lag behind commits: an end below the position is old news.
            (Some(next), Some(end)) => Some((end - next).max(0)),
            (None, Some(0)) => Some(0),
            _ => None,
        };
        let lag_seconds = match lag {
            Some(0) => Some(0.0),
            _ => applied
                .newest_record_ms
                .map(|newest| (now as i64 - newest).max(0) as f64 / 1000.0),
        };
        let since_moved_ms = now.saturating_sub(applied.moved_ms);
        PartitionStatus {
            topic: partition.topic.clone(),
            partition: partition.number,
            applied: applied.next,
            end,
            lag,
            lag_seconds,
            state: partition_state(lag, lag_seconds, since_moved_ms),
        }
    }
}

/// Caught up (or behind only by records seconds old) is live; behind and not
/// moving for [`STALLED_AFTER_MS`] is stalled; otherwise catching up.
pub fn partition_state(lag: Option<i64>, lag_seconds: Option<f64>, since_moved_ms: u64) -> State {
    if lag == Some(0) {
        return State::Live;
    }
    if since_moved_ms > STALLED_AFTER_MS {
        return State::Stalled;
    }
    match lag_seconds {
        Some(age) if lag.is_some() && age <= LIVE_WITHIN_SECS => State::Live,
        _ => State::CatchingUp,
    }
}

/// One projection on this replica.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub cache: String,
    pub state: State,
    pub paused: bool,
    /// Paused projections whose pause holds this one (they share its cache).
    pub held_by: Vec<String>,
    pub lag: Option<i64>,
    pub lag_seconds: Option<f64>,
    pub partitions: Vec<PartitionStatus>,
}

impl ProjectionStatus {
    /// `failing` says a component has been failing (or the loop silent) for
    /// longer than [`STALLED_AFTER_MS`]: everything is stalled then.
    pub fn new(
        name: &str,
        cache: &str,
        held_by: Vec<String>,
        failing: bool,
        partitions: Vec<PartitionStatus>,
    ) -> ProjectionStatus {
        let worst = |wanted: State| partitions.iter().any(|p| p.state == wanted);
        let state = if !held_by.is_empty() {
            State::Paused
        } else if failing || worst(State::Stalled) {
            State::Stalled
        } else if partitions.is_empty() {
            State::Idle
        } else if worst(State::CatchingUp) {
            State::CatchingUp
        } else {
            State::Live
        };
        let lag = if partitions.is_empty() {
            None
        } else {
            partitions.iter().map(|p| p.lag).sum::<Option<i64>>()
        };
        let lag_seconds = partitions
            .iter()
            .filter_map(|p| p.lag_seconds)
            .fold(None, |worst: Option<f64>, age| {
                Some(worst.map_or(age, |w| w.max(age)))
            });
        ProjectionStatus {
            name: name.to_owned(),
            cache: cache.to_owned(),
            state,
            paused: held_by.iter().any(|holder| holder == name),
            held_by,
            lag,
            lag_seconds,
            partitions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_lag_not_event_age() {
        let table = [
            // (lag, lag seconds, ms since the position moved) -> state
            ((Some(0), Some(0.0), 3_600_000), State::Live),
            ((Some(0), None, 0), State::Live),
            ((Some(500), Some(2.0), 100), State::Live),
            ((Some(500), Some(86_400.0), 100), State::CatchingUp),
            ((Some(500), None, 100), State::CatchingUp),
            ((None, None, 100), State::CatchingUp),
            ((Some(500), Some(2.0), 31_000), State::Stalled),
            ((None, None, 31_000), State::Stalled),
        ];
        for ((lag, seconds, moved), expected) in table {
            assert_eq!(
                partition_state(lag, seconds, moved),
                expected,
                "lag {lag:?}, {seconds:?} s, moved {moved} ms ago"
            );
        }
    }

    #[test]
    fn a_pause_outranks_everything_and_a_held_projection_is_not_itself_paused() {
        let held = ProjectionStatus::new("b", "default", vec!["a".into()], true, Vec::new());
        assert_eq!((held.state, held.paused), (State::Paused, false));
        let paused = ProjectionStatus::new("a", "default", vec!["a".into()], false, Vec::new());
        assert_eq!((paused.state, paused.paused), (State::Paused, true));
        let idle = ProjectionStatus::new("c", "other", Vec::new(), false, Vec::new());
        assert_eq!((idle.state, idle.lag), (State::Idle, None));
    }
}
