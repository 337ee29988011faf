//! Written states kept between chunks.
//!
//! A key the pipeline has just written is usually touched again soon (an
//! order's next event, a day's sales), and reading it back costs a round
//! trip and a parse of its text, a fifth of the batch path's instructions.
//! So once a commit lands, each state it wrote stays here with the exact
//! text the cache now holds: the next chunk folds from the state and sends
//! the text as the version its commit compares.
//!
//! The compare is what makes this safe, not any bookkeeping here: if
//! anything changed the key meanwhile (another owner of a shared key, an
//! expiry, a rollback, a promotion, an operator), the commit is refused as a
//! whole and the keys are read again. Such a refusal is not two writers
//! racing, so it is retried at once; the keys whose stored text then differs
//! from the kept one name the projections written elsewhere too, which are
//! not kept for a while ([`SHARED_PAUSE`]).
//!
//! Bounded by entries: two generations of at most `per_generation` each; a
//! full generation becomes the older one and the one before is dropped, so
//! what was touched lately stays (a cheap stand-in for least recently used).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::fold::KeyMap;
use crate::cache::Expiry;

/// How long a projection found written elsewhere is not kept.
pub const SHARED_PAUSE: Duration = Duration::from_secs(30);

/// The longest a state is trusted without being read again. Not needed for
/// correctness (the compare is): it bounds how stale a kept state gets, and
/// so how likely it is to cost a refused commit.
const NEVER_EXPIRING_FOR: Duration = Duration::from_secs(600);

/// A state as written, and the text the cache holds for it.
pub(super) struct KeptState {
    pub value: Value,
    pub text: Box<str>,
    /// Before this the cache still holds the key (its TTL has not run out).
    fresh_until: Instant,
}

/// The states kept for one cache.
pub(super) struct Kept {
    recent: KeyMap<String, KeptState>,
    older: KeyMap<String, KeptState>,
    per_generation: usize,
    /// Per route: until when its states are not kept.
    shared_until: Vec<Option<Instant>>,
}

impl Kept {
    /// Keeps at most `2 * per_generation` states; 0 keeps none.
    pub fn new(per_generation: usize) -> Kept {
        Kept {
            recent: KeyMap::default(),
            older: KeyMap::default(),
            per_generation,
            shared_until: Vec::new(),
        }
    }

    /// `key`'s kept state, taken out: a commit that lands keeps it again.
    pub fn take(&mut self, key: &str, now: Instant) -> Option<KeptState> {
        if self.per_generation == 0 {
            return None;
        }
        let state = match self.recent.remove(key) {
            Some(state) => state,
            None => self.older.remove(key)?,
        };
        (now < state.fresh_until).then_some(state)
    }

    /// Keep `key`'s state as just written by a commit sent at `sent`.
    pub fn keep(
        &mut self,
        route: usize,
        key: String,
        (value, text): (Value, Box<str>),
        expiry: Expiry,
        sent: Instant,
    ) {
        if self.per_generation == 0 || self.is_shared(route, sent) {
            return;
        }
        // Half the TTL: the cache drops the key a TTL after it ran the
        // commit, which is after `sent`, so the state is surely still there.
        let fresh_for = match expiry {
            Expiry::After(ttl) => (ttl.as_duration() / 2).min(NEVER_EXPIRING_FOR),
            Expiry::Never => NEVER_EXPIRING_FOR,
            // The adapter's own default: not known here.
            Expiry::CacheDefault => return,
        };
        let state = KeptState {
            value,
            text,
            fresh_until: sent + fresh_for,
        };
        self.older.remove(&key);
        self.recent.insert(key, state);
        if self.recent.len() >= self.per_generation {
            self.older = std::mem::take(&mut self.recent);
        }
    }

    /// Drop `key`'s state (it was deleted).
    pub fn forget(&mut self, key: &str) {
        self.recent.remove(key);
        self.older.remove(key);
    }

    /// Drop every state: the partitions, the definitions or the cache's
    /// history changed, and the kept states would mostly be refused.
    pub fn clear(&mut self) {
        self.recent.clear();
        self.older.clear();
    }

    /// `route`'s projection was changed in the cache by someone else: do
    /// not keep its states for a while.
    pub fn shared(&mut self, route: usize, now: Instant) {
        if self.shared_until.len() <= route {
            self.shared_until.resize(route + 1, None);
        }
        self.shared_until[route] = Some(now + SHARED_PAUSE);
    }

    fn is_shared(&self, route: usize, now: Instant) -> bool {
        matches!(self.shared_until.get(route), Some(Some(until)) if now < *until)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.recent.len() + self.older.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Ttl;
    use serde_json::json;

    fn state(n: u64) -> (Value, Box<str>) {
        let value = json!({ "n": n });
        let text = value.to_string().into();
        (value, text)
    }

    const HOUR: Expiry = Expiry::Never;

    #[test]
    fn a_kept_state_is_taken_once() {
        let mut kept = Kept::new(8);
        let now = Instant::now();
        kept.keep(0, "p:::1".into(), state(1), HOUR, now);
        let taken = kept.take("p:::1", now).expect("kept");
        assert_eq!((taken.value, &*taken.text), (json!({"n": 1}), r#"{"n":1}"#));
        assert!(kept.take("p:::1", now).is_none());
    }

    #[test]
    fn two_generations_bound_it_and_keep_the_recent() {
        let mut kept = Kept::new(4);
        let now = Instant::now();
        for n in 0..10 {
            kept.keep(0, format!("p:::{n}"), state(n), HOUR, now);
        }
        assert!(kept.len() <= 8, "{}", kept.len());
        assert!(kept.take("p:::9", now).is_some());
        assert!(kept.take("p:::0", now).is_none());
    }

    #[test]
    fn a_state_is_not_trusted_past_half_its_ttl() {
        let mut kept = Kept::new(8);
        let sent = Instant::now();
        let ttl = Expiry::After(Ttl::from_secs(10).unwrap());
        kept.keep(0, "p:::1".into(), state(1), ttl, sent);
        kept.keep(0, "p:::2".into(), state(2), ttl, sent);
        assert!(kept.take("p:::1", sent + Duration::from_secs(4)).is_some());
        assert!(kept.take("p:::2", sent + Duration::from_secs(6)).is_none());
        // Whose TTL only the adapter knows: never kept.
        kept.keep(0, "p:::3".into(), state(3), Expiry::CacheDefault, sent);
        assert!(kept.take("p:::3", sent).is_none());
    }

    #[test]
    fn a_shared_projection_is_not_kept_for_a_while() {
        let mut kept = Kept::new(8);
        let now = Instant::now();
        kept.shared(1, now);
        kept.keep(1, "q:::1".into(), state(1), HOUR, now);
        kept.keep(0, "p:::1".into(), state(1), HOUR, now);
        assert!(kept.take("q:::1", now).is_none());
        assert!(kept.take("p:::1", now).is_some());
        let later = now + SHARED_PAUSE;
        kept.keep(1, "q:::1".into(), state(1), HOUR, later);
        assert!(kept.take("q:::1", later).is_some());
    }

    #[test]
    fn none_is_kept_when_turned_off() {
        let mut kept = Kept::new(0);
        let now = Instant::now();
        kept.keep(0, "p:::1".into(), state(1), HOUR, now);
        assert!(kept.take("p:::1", now).is_none());
    }
}
