//! What the memory cache holds, behind its one lock: the entries (JSON text
//! with an expiry), the checkpoints, pauses, generations and notes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::time::Instant;

use crate::cache::{Epoch, Generation, Partition, glob};

/// A write ready to land: the key and its JSON text with its expiry, or `None`
/// for a delete.
pub(super) type PreparedWrite = (String, Option<(Box<str>, Option<Instant>)>);

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) json: Box<str>,
    pub(super) expires_at: Option<Instant>,
}

impl Entry {
    pub(super) fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    /// Sorted, so `get_all` pages in key order without sorting.
    pub(super) entries: BTreeMap<String, Entry>,
    /// Scope -> partition -> (owner's epoch, next offset): in the same memory
    /// as the entries, so a restart loses both together and starts over.
    pub(super) checkpoints: HashMap<String, HashMap<Partition, (Epoch, Option<i64>)>>,
    /// The last epoch handed out, by any scope.
    pub(super) last_epoch: Epoch,
    /// Group -> paused projections; like the checkpoints, gone with the process.
    pub(super) paused: HashMap<String, BTreeSet<String>>,
    /// Scope -> the generation of its definitions (absent: 0).
    pub(super) generations: HashMap<String, Generation>,
    /// Our own notes (rebuild states, stored definitions), by key.
    pub(super) notes: HashMap<String, String>,
}

impl Inner {
    pub(super) fn live(&self, key: &str, now: Instant) -> Option<&Entry> {
        self.entries.get(key).filter(|entry| entry.is_live(now))
    }

    pub(super) fn insert(&mut self, key: String, json: Box<str>, expires_at: Option<Instant>) {
        self.entries.insert(key, Entry { json, expires_at });
    }

    pub(super) fn remove(&mut self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    pub(super) fn set_expiry(&mut self, key: &str, expires_at: Instant) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.expires_at = Some(expires_at);
        }
    }

    pub(super) fn write_all(&mut self, prepared: Vec<PreparedWrite>) {
        for (key, write) in prepared {
            match write {
                Some((json, expires_at)) => self.insert(key, json, expires_at),
                None => {
                    self.remove(&key);
                }
            }
        }
    }

    /// Live projection keys matching `pattern`, in key order. Only the keys that
    /// share the pattern's literal prefix are visited, so `order_summary:::*`
    /// does not walk the other projections.
    pub(super) fn matching<'a>(
        &'a self,
        pattern: &'a str,
        now: Instant,
    ) -> impl Iterator<Item = (&'a String, &'a Entry)> {
        let prefix = glob::literal_prefix(pattern);
        self.entries
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(key, _)| key.starts_with(prefix))
            .filter(move |(key, entry)| {
                crate::cache::is_entry_key(key) && entry.is_live(now) && glob::matches(pattern, key)
            })
    }
}

/// The shared store behind a [`MemoryCache`](super::MemoryCache); what `get_connection` hands out.
#[derive(Debug, Default)]
pub struct Store {
    inner: RwLock<Inner>,
}

impl Store {
    pub(super) fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way
        // that matters more than losing the cache, so poisoning is ignored.
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many entries are held, expired ones not yet swept included.
    pub fn stored_entries(&self) -> usize {
        self.read().entries.len()
    }
}
