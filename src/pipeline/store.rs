//! The pipeline's cache round trips: load the touched keys with their versions
//! (one `get_many` per cache) and write the final states conditionally (one
//! `apply_if_unchanged` per cache).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::{Folded, Pipeline, PipelineError, Work, Write};
use crate::cache::{Cache, CacheError, Projection, Version, WriteOp, split_key};

/// Loaded states, their versions, and the keys whose stored value is unreadable.
pub(super) type Loaded = (
    HashMap<String, Option<Value>>,
    HashMap<String, Version>,
    HashMap<String, String>,
);

/// One cache's share of a batch: the cache, its writes, and the versions they
/// expect.
type CacheWrites = (Arc<dyn Cache>, Vec<WriteOp>, Vec<(String, Version)>);

impl Pipeline {
    /// Load the current state of every key `work` touches, grouped by cache.
    pub(super) async fn load(&self, work: &[Work]) -> Result<Loaded, PipelineError> {
        let mut keys_by_cache: BTreeMap<&str, (Arc<dyn Cache>, Vec<String>)> = BTreeMap::new();
        let mut seen = HashSet::new();
        for item in work {
            if !seen.insert(item.key.as_str()) {
                continue;
            }
            let route = self.router.route(item.route);
            keys_by_cache
                .entry(route.definition.cache.as_str())
                .or_insert_with(|| (Arc::clone(&route.cache), Vec::new()))
                .1
                .push(item.key.clone());
        }
        let mut states = HashMap::with_capacity(seen.len());
        let mut versions = HashMap::with_capacity(seen.len());
        let mut corrupt = HashMap::new();
        for (name, (cache, keys)) in keys_by_cache {
            let fail = |error| PipelineError::Cache {
                cache: name.to_owned(),
                error,
            };
            let timer = self.cache_timer(name, "get_many");
            let loaded = self
                .retry
                .run("cache", || cache.get_many_versioned(&keys))
                .await;
            timer.observe_duration();
            let found = match loaded {
                Ok(found) => keys.into_iter().zip(found).collect::<Vec<_>>(),
                Err(CacheError::CorruptValue { .. }) => {
                    // One bad value spoils a multi-get: find which keys, one by one.
                    let mut found = Vec::with_capacity(keys.len());
                    for key in keys {
                        let single = std::slice::from_ref(&key);
                        match self
                            .retry
                            .run("cache", || cache.get_many_versioned(single))
                            .await
                        {
                            Ok(mut one) => {
                                let entry = one.pop().unwrap_or((None, None));
                                found.push((key, entry));
                            }
                            Err(error @ CacheError::CorruptValue { .. }) => {
                                corrupt.insert(key, error.to_string());
                            }
                            Err(error) => return Err(fail(error)),
                        }
                    }
                    found
                }
                Err(error) => return Err(fail(error)),
            };
            for (key, (projection, version)) in found {
                states.insert(key.clone(), projection.map(Projection::into_value));
                versions.insert(key, version);
            }
        }
        Ok((states, versions, corrupt))
    }

    /// Write every final state of the `pending` caches, each cache in one
    /// conditional round trip; returns the caches whose writes landed (a cache
    /// with nothing to write counts as landed). The ops are absolute states, so
    /// retrying a cache after a transient failure is idempotent.
    pub(super) async fn write<'a>(
        &self,
        folded: &Folded,
        versions: &HashMap<String, Version>,
        pending: &BTreeSet<&'a str>,
    ) -> Result<BTreeSet<&'a str>, PipelineError> {
        let mut ops_by_cache: BTreeMap<&str, CacheWrites> = BTreeMap::new();
        for Write {
            route: route_index,
            key,
            state,
            ..
        } in &folded.writes
        {
            let route = self.router.route(*route_index);
            let definition = &route.definition;
            let op = match state {
                Some(value) => {
                    let projection = Projection::from_key(key, value.clone())
                        .expect("names are validated at load and the fold keeps only objects");
                    WriteOp::Upsert {
                        projection,
                        expiry: definition.expiry,
                    }
                }
                None => WriteOp::Delete { key: key.clone() },
            };
            let entry = ops_by_cache
                .entry(definition.cache.as_str())
                .or_insert_with(|| (Arc::clone(&route.cache), Vec::new(), Vec::new()));
            entry.1.push(op);
            let version = versions.get(key).cloned().unwrap_or(None);
            entry.2.push((key.clone(), version));
        }
        let mut landed: BTreeSet<&'a str> = pending
            .iter()
            .filter(|cache| !ops_by_cache.contains_key(**cache))
            .copied()
            .collect();
        for (name, (cache, ops, expected)) in ops_by_cache {
            let timer = self.cache_timer(name, "apply");
            let applied = self
                .retry
                .run("cache", || cache.apply_if_unchanged(&ops, &expected))
                .await;
            timer.observe_duration();
            let applied = applied.map_err(|error| PipelineError::Cache {
                cache: name.to_owned(),
                error,
            })?;
            if !applied {
                continue;
            }
            // Counted per label once a batch: a labelled counter is a locked lookup.
            let mut written: BTreeMap<(&str, &str), u64> = BTreeMap::new();
            for op in &ops {
                let label = match op {
                    WriteOp::Upsert { projection, .. } => (projection.name(), "upsert"),
                    WriteOp::Delete { key } => (
                        split_key(key).map_or(key.as_str(), |(name, _)| name),
                        "delete",
                    ),
                };
                *written.entry(label).or_default() += 1;
            }
            for ((projection, operation), count) in written {
                self.metrics
                    .cache_writes
                    .with_label_values(&[projection, operation])
                    .inc_by(count);
            }
            if let Some(cache) = pending.iter().find(|cache| **cache == name) {
                landed.insert(cache);
            }
        }
        Ok(landed)
    }
}
