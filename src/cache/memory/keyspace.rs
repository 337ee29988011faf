//! A rebuild's operations on the memory store: keys listed by prefix, and
//! key rotations (see [`Rotation`]), each under the store's one lock.

use tokio::time::Instant;

use super::Inner;
use crate::cache::{RotateWhen, Rotation};

/// Keys per page when listing by prefix.
const PAGE: usize = 1000;

impl Inner {
    /// Live keys starting with `prefix`, in key order, a page after `cursor`
    /// (the last key of the page before).
    pub(super) fn keys_with_prefix(
        &self,
        prefix: &str,
        cursor: Option<String>,
        now: Instant,
    ) -> (Vec<String>, Option<String>) {
        let start = match &cursor {
            Some(after) => std::ops::Bound::Excluded(after.as_str()),
            None => std::ops::Bound::Included(prefix),
        };
        let keys: Vec<String> = self
            .entries
            .range::<str, _>((start, std::ops::Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, entry)| entry.is_live(now))
            .map(|(key, _)| key.clone())
            .take(PAGE)
            .collect();
        let next = (keys.len() == PAGE).then(|| keys[PAGE - 1].clone());
        (keys, next)
    }

    pub(super) fn rotate(
        &mut self,
        rotations: &[Rotation],
        when: RotateWhen,
        now: Instant,
    ) -> usize {
        let mut moved = 0;
        for rotation in rotations {
            let incoming = self.take_live(&rotation.incoming, now);
            let live_exists = self.live(&rotation.live, now).is_some();
            let selected = match when {
                RotateWhen::IncomingPresent => incoming.is_some(),
                RotateWhen::IncomingAbsent => incoming.is_none() && live_exists,
            };
            if !selected {
                // Put back what was taken: nothing moves.
                if let Some((json, expires_at)) = incoming {
                    self.insert(rotation.incoming.clone(), json, expires_at);
                }
                continue;
            }
            match self.take_live(&rotation.live, now) {
                Some((json, expires_at)) => {
                    self.insert(rotation.outgoing.clone(), json, expires_at)
                }
                None => {
                    self.remove(&rotation.outgoing);
                }
            }
            if let Some((json, expires_at)) = incoming {
                self.insert(rotation.live.clone(), json, expires_at);
            }
            moved += 1;
        }
        moved
    }

    /// Remove `key` and hand back its text and expiry, when it is live.
    fn take_live(&mut self, key: &str, now: Instant) -> Option<(Box<str>, Option<Instant>)> {
        self.live(key, now)?;
        let entry = self.entries.remove(key)?;
        Some((entry.json, entry.expires_at))
    }
}
