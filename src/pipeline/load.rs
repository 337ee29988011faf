//! Loading a share's keys before the fold, and keeping what a commit wrote
//! for the next chunk ([`super::kept`]): kept states first, the cache for
//! the rest.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::Value;

use super::fold::{KeyMap, Work, Write};
use super::{Pipeline, PipelineError};
use crate::cache::{CacheError, Projection, Version, WriteOp};

/// What a share folds from.
pub(super) struct Loaded {
    /// Per key, its state (`None`: absent).
    pub states: KeyMap<String, Option<Value>>,
    /// Per key, the text it was folded from: what the commit compares.
    pub versions: KeyMap<String, Version>,
    /// Keys whose stored value is unreadable, and why.
    pub corrupt: HashMap<String, String>,
    /// Keys folded from a kept state rather than read.
    pub kept: Vec<String>,
}

/// Kept states a commit was refused over: per key, its route and the text
/// that was kept. Read again, a key holding another text shows whose
/// projection is written elsewhere too.
pub(super) type Suspects = Vec<(String, usize, Version)>;

impl Pipeline {
    /// The state of every key in `keys`: kept, else read from the cache.
    pub(super) async fn load(
        &mut self,
        cache: usize,
        keys: &[String],
    ) -> Result<Loaded, PipelineError> {
        let capacity = keys.len();
        let mut loaded = Loaded {
            states: KeyMap::with_capacity_and_hasher(capacity, Default::default()),
            versions: KeyMap::with_capacity_and_hasher(capacity, Default::default()),
            corrupt: HashMap::new(),
            kept: Vec::new(),
        };
        let now = Instant::now();
        let kept = &mut self.caches[cache].kept;
        let mut missing = Vec::new();
        for key in keys {
            match kept.take(key, now) {
                Some(state) => {
                    loaded.states.insert(key.clone(), Some(state.value));
                    let text = state.text.into_boxed_bytes().into_vec();
                    loaded.versions.insert(key.clone(), Some(text));
                    loaded.kept.push(key.clone());
                }
                None => missing.push(key.clone()),
            }
        }
        if missing.is_empty() {
            return Ok(loaded);
        }
        for (key, found) in self.read(cache, &missing, &mut loaded.corrupt).await? {
            let (projection, version) = found;
            loaded
                .states
                .insert(key.clone(), projection.map(Projection::into_value));
            loaded.versions.insert(key, version);
        }
        Ok(loaded)
    }

    /// Read `keys` from the cache; the keys whose value does not read go
    /// into `corrupt`.
    async fn read(
        &self,
        cache: usize,
        keys: &[String],
        corrupt: &mut HashMap<String, String>,
    ) -> Result<Vec<(String, (Option<Projection>, Version))>, PipelineError> {
        let slot = &self.caches[cache];
        let timer = self.cache_timer(&slot.name, "get_many");
        let loaded = self
            .retry
            .run("cache", || slot.cache.get_many_versioned(keys))
            .await;
        timer.observe_duration();
        match loaded {
            Ok(found) => Ok(keys.iter().cloned().zip(found).collect()),
            Err(CacheError::CorruptValue { .. }) => {
                // One bad value spoils a multi-get: find which keys, one by one.
                let mut found = Vec::with_capacity(keys.len());
                for key in keys {
                    let single = std::slice::from_ref(key);
                    match self
                        .retry
                        .run("cache", || slot.cache.get_many_versioned(single))
                        .await
                    {
                        Ok(mut one) => found.push((key.clone(), one.pop().unwrap_or((None, None)))),
                        Err(error @ CacheError::CorruptValue { .. }) => {
                            corrupt.insert(key.clone(), error.to_string());
                        }
                        Err(error) => return Err(self.cache_error(cache, error)),
                    }
                }
                Ok(found)
            }
            Err(error) => Err(self.cache_error(cache, error)),
        }
    }

    /// After a commit refused over kept states: which of them, and whose.
    pub(super) fn suspects(
        loaded_kept: &[String],
        work: &[Work],
        expected: &[(String, Version)],
    ) -> Suspects {
        let texts: KeyMap<&str, &Version> = expected
            .iter()
            .map(|(key, version)| (key.as_str(), version))
            .collect();
        let routes: KeyMap<&str, usize> = work
            .iter()
            .map(|item| (item.key.as_str(), item.route))
            .collect();
        loaded_kept
            .iter()
            .filter_map(|key| {
                let text = (*texts.get(key.as_str())?).clone();
                Some((key.clone(), *routes.get(key.as_str())?, text))
            })
            .collect()
    }

    /// The suspects read again: a projection whose key now holds another
    /// text than was kept is written elsewhere too.
    pub(super) fn convict(&mut self, cache: usize, suspects: Suspects, loaded: &Loaded) {
        let now = Instant::now();
        for (key, route, text) in suspects {
            let Some(stored) = loaded.versions.get(&key) else {
                continue;
            };
            if *stored != text {
                let name = &self.router.route(route).definition.name;
                tracing::debug!(projection = %name, %key, "changed in the cache by another writer; its states are read, not kept, for a while");
                self.caches[cache].kept.shared(route, now);
            }
        }
    }

    /// Keep what a landed commit, sent at `sent`, wrote.
    pub(super) fn keep_written(
        &mut self,
        cache: usize,
        written: Vec<Write>,
        ops: Vec<WriteOp>,
        sent: Instant,
    ) {
        let kept = &mut self.caches[cache].kept;
        for (write, op) in written.into_iter().zip(ops) {
            match op {
                WriteOp::Upsert { projection, expiry } => {
                    let key = write.key;
                    match projection.into_parts() {
                        (value, Some(text)) => kept.keep(write.route, key, (value, text), expiry, sent),
                        // The adapter never asked for the text.
                        (_, None) => kept.forget(&key),
                    }
                }
                WriteOp::Delete { key } => kept.forget(&key),
            }
        }
    }
}
