//! One cache's share of a chunk, to the end: take its share, load the keys,
//! fold, dead-letter what failed, then commit the writes and the checkpoint
//! in one atomic step. A commit the cache refuses says why, and the share is
//! taken again from what the cache holds: another writer changed a shared key
//! (fold again), a retried commit had landed after all (done), the checkpoint
//! moved or was lost (resume from it), or a newer owner took the partition
//! (stop writing it).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::debug;

use super::fold::{Folded, Work, Write, fold};
use super::plan::Plan;
use super::positions::Span;
use super::{KeyMap, KeySet};
use super::{Pipeline, PipelineError};
use crate::cache::{
    Advance, CacheError, Claim, Commit, CommitOutcome, Expiry, Floors, Partition, Projection, Ttl,
    Version, WriteOp,
};

/// Loaded states, their versions, and the keys whose stored value is unreadable.
type Loaded = (
    KeyMap<String, Option<Value>>,
    KeyMap<String, Version>,
    HashMap<String, String>,
);

/// A cache's share of a chunk: per partition the span it moves over, and the
/// work on the records in those spans.
struct Share {
    spans: Vec<(Partition, Span)>,
    work: Vec<Work>,
}

/// Drop the work whose key's slot already holds its event: written there by
/// an earlier attempt that landed in some slots only, or by a writer that
/// lost the partition since, or replayed by a rewind.
fn skip_held(plan: &Plan, work: &mut Vec<Work>, floors: &Floors) {
    work.retain(|item| {
        let position = &plan.record_of(item.event).record.position;
        !floors.holds(
            &item.key,
            &position.topic,
            position.partition,
            position.offset,
        )
    });
}

/// How a cache's share ended.
pub(super) enum Committed {
    Done,
    /// A new version went live for one of its projections: the chunk must be
    /// routed again before it is folded.
    Replan,
}

/// Failures already reported in this chunk, by (event, route), so folding again
/// never letters or counts one twice.
pub(super) type Reported = HashSet<(usize, usize)>;

impl Pipeline {
    /// Apply cache `cache`'s share of `plan`; returns once it is committed (or
    /// nothing of it is ours to write any more).
    pub(super) async fn commit_cache(
        &mut self,
        plan: &Plan,
        cache: usize,
        reported: &mut Reported,
    ) -> Result<Committed, PipelineError> {
        let mut conflicts: u32 = 0;
        loop {
            let Share { spans, mut work } = self.share(plan, cache, reported);
            if spans.is_empty() {
                return Ok(Committed::Done);
            }
            // The distinct keys, once: loaded, then asked for their floors.
            let mut keys = distinct_keys(&work);
            let (states, versions, corrupt) = self.load(cache, &keys).await?;
            if !corrupt.is_empty() {
                self.letter_corrupt(plan, &mut work, &corrupt, reported)
                    .await?;
                keys.retain(|key| !corrupt.contains_key(key));
            }
            let mut floors = self.floors(cache, &keys, &spans).await?;
            if let Some(floors) = &mut floors {
                for (partition, span) in &spans {
                    if span.end < span.to {
                        floors.folded_to(partition, span.end);
                    }
                }
                if !floors.lost().is_empty() {
                    for (partition, offset) in floors.lost() {
                        self.metrics.partition_replays.inc();
                        let source = self.source.as_ref();
                        self.positions.replay(cache, partition, *offset, source);
                    }
                    continue;
                }
                skip_held(plan, &mut work, floors);
            }
            let mut folded = fold(&self.router, &plan.events, &work, states, &versions);
            self.letter_refusals(plan, &folded, reported).await?;
            let advances = self.advances(&spans);
            let (writes, expected) = self.write_ops(&mut folded, &versions);
            let slot = &self.caches[cache];
            let commit = Commit {
                scope: &slot.scope,
                advances: &advances,
                expected: &expected,
                writes: &writes,
                generation: slot.generation,
            };
            let timer = self.cache_timer(&slot.name, "commit");
            let outcome = self
                .retry
                .run("cache", || slot.cache.commit_over(commit, floors.as_ref()))
                .await;
            timer.observe_duration();
            let outcome = outcome.map_err(|error| self.cache_error(cache, error))?;
            match outcome {
                CommitOutcome::Applied => {}
                // Under our own epoch only we move the checkpoint: an earlier
                // attempt that timed out landed after all.
                CommitOutcome::Moved { index, stored } if stored == Some(advances[index].to) => {}
                CommitOutcome::Moved { index, stored } => {
                    let partition = &advances[index].partition;
                    let claim = Claim {
                        epoch: advances[index].epoch,
                        next: stored,
                    };
                    let source = self.source.as_ref();
                    self.positions.reposition(cache, partition, claim, source);
                    continue;
                }
                CommitOutcome::Unclaimed { index } => {
                    self.reclaim(cache, &advances[index].partition).await?;
                    continue;
                }
                CommitOutcome::Fenced { index, .. } => {
                    self.positions.fence(&advances[index].partition);
                    continue;
                }
                CommitOutcome::Outdated { stored } => {
                    if self.adopt(cache, stored).await? {
                        return Ok(Committed::Replan);
                    }
                    continue;
                }
                CommitOutcome::Conflict => {
                    conflicts += 1;
                    self.metrics.retries.with_label_values(&["conflict"]).inc();
                    debug!(conflicts, cache = %self.caches[cache].name, "a shared key changed since it was loaded; folding again");
                    let pause = Duration::from_millis(u64::from(conflicts.min(20)) * 5);
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
            for (partition, span) in &spans {
                self.positions.advanced(cache, partition, span);
            }
            self.tally(&folded, &writes);
            return Ok(Committed::Done);
        }
    }

    /// The cache's spans over the chunk's partitions it consumes, and the work
    /// on their records that has not failed already.
    fn share(&mut self, plan: &Plan, cache: usize, reported: &Reported) -> Share {
        let mut spans = Vec::new();
        // Per record: whether it falls in this cache's spans.
        let mut in_span = vec![false; plan.records.len()];
        for (partition, indexes) in &plan.partitions {
            if !self.caches[cache].topics.contains(&partition.topic) {
                continue;
            }
            let records: Vec<_> = indexes.iter().map(|&index| &plan.records[index]).collect();
            let span = self
                .positions
                .span(cache, partition, &records, self.source.as_ref());
            if let Some(span) = span {
                for &index in indexes {
                    in_span[index] = plan.records[index].offset() >= span.first;
                }
                spans.push((partition.clone(), span));
            }
        }
        let work = plan
            .work
            .iter()
            .filter(|item| self.route_cache[item.route] == cache)
            .filter(|item| in_span[plan.sources[item.event]])
            .filter(|item| !reported.contains(&(item.event, item.route)))
            .cloned()
            .collect();
        Share { spans, work }
    }

    /// How the spans move the checkpoint; nothing where progress is not
    /// checkpointed (a file).
    fn advances(&self, spans: &[(Partition, Span)]) -> Vec<Advance> {
        if !self.positions.positioning().checkpoints() {
            return Vec::new();
        }
        spans
            .iter()
            .map(|(partition, span)| Advance {
                partition: partition.clone(),
                epoch: span.epoch,
                from: span.from,
                to: span.to,
            })
            .collect()
    }

    /// Claim a partition again in one cache, after the cache lost our claim.
    async fn reclaim(&mut self, cache: usize, partition: &Partition) -> Result<(), PipelineError> {
        let slot = &self.caches[cache];
        let partitions = std::slice::from_ref(partition);
        let claims = self
            .retry
            .run("cache", || slot.cache.claim(&slot.scope, partitions))
            .await
            .map_err(|error| self.cache_error(cache, error))?;
        if let Some(claim) = claims.first() {
            let source = self.source.as_ref();
            self.positions.reposition(cache, partition, *claim, source);
        }
        Ok(())
    }

    /// Where the keys of `work` stand in the spans' partitions, for a cache
    /// that commits slot by slot (see [`Floors`]); `None` for the others,
    /// without IO.
    async fn floors(
        &self,
        cache: usize,
        keys: &[String],
        spans: &[(Partition, Span)],
    ) -> Result<Option<Floors>, PipelineError> {
        let slot = &self.caches[cache];
        if !self.positions.positioning().checkpoints() || keys.is_empty() {
            return Ok(None);
        }
        let partitions: Vec<Partition> = spans
            .iter()
            .map(|(partition, _)| partition.clone())
            .collect();
        let started = Instant::now();
        let floors = self
            .retry
            .run("cache", || {
                slot.cache.floors(&slot.scope, keys, &partitions)
            })
            .await
            .map_err(|error| self.cache_error(cache, error))?;
        // Timed only where there are floors: elsewhere the call does nothing.
        if floors.is_some() {
            self.metrics
                .cache_operation_duration
                .with_label_values(&[&slot.name, "floors"])
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(floors)
    }

    /// Load the current state of every key `work` touches.
    async fn load(&self, cache: usize, keys: &[String]) -> Result<Loaded, PipelineError> {
        let slot = &self.caches[cache];
        let mut states = KeyMap::with_capacity_and_hasher(keys.len(), Default::default());
        let mut versions = KeyMap::with_capacity_and_hasher(keys.len(), Default::default());
        let mut corrupt = HashMap::new();
        if keys.is_empty() {
            return Ok((states, versions, corrupt));
        }
        let timer = self.cache_timer(&slot.name, "get_many");
        let loaded = self
            .retry
            .run("cache", || slot.cache.get_many_versioned(keys))
            .await;
        timer.observe_duration();
        let found = match loaded {
            Ok(found) => keys.iter().cloned().zip(found).collect::<Vec<_>>(),
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
                found
            }
            Err(error) => return Err(self.cache_error(cache, error)),
        };
        for (key, (projection, version)) in found {
            states.insert(key.clone(), projection.map(Projection::into_value));
            versions.insert(key, version);
        }
        Ok((states, versions, corrupt))
    }

    pub(super) fn cache_error(&self, cache: usize, error: CacheError) -> PipelineError {
        PipelineError::Cache {
            cache: self.caches[cache].name.clone(),
            error,
        }
    }

    /// The folded states as cache writes, and the version each written key must
    /// still hold for them to land. The states move into the writes (a copy
    /// of every projection per commit showed in the profile).
    fn write_ops(
        &self,
        folded: &mut Folded,
        versions: &KeyMap<String, Version>,
    ) -> (Vec<WriteOp>, Vec<(String, Version)>) {
        let mut writes = Vec::with_capacity(folded.writes.len());
        let mut expected = Vec::with_capacity(folded.writes.len());
        let now = chrono::Utc::now();
        for Write {
            route,
            key,
            state,
            event_time,
        } in &mut folded.writes
        {
            let definition = &self.router.route(*route).definition;
            let expiry = if definition.ttl_from_event {
                expiry_from_event(definition.expiry, *event_time, now)
            } else {
                Some(definition.expiry)
            };
            let op = match (state.take(), expiry) {
                (Some(value), Some(expiry)) => {
                    let projection = Projection::from_key(key, value)
                        .expect("names are validated at load and the fold keeps only objects");
                    WriteOp::Upsert { projection, expiry }
                }
                // Deleted, or expired already by its events' time.
                _ => WriteOp::Delete { key: key.clone() },
            };
            writes.push(op);
            expected.push((key.clone(), versions.get(key).cloned().unwrap_or(None)));
        }
        (writes, expected)
    }
}

/// What is left of `expiry` counted from the newest event's time; `None`
/// when it has run out (the projection had expired: a rebuild must not bring
/// it back). Without an event time the TTL counts from the write.
fn expiry_from_event(
    expiry: Expiry,
    event_time: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Expiry> {
    let (Expiry::After(ttl), Some(time)) = (expiry, event_time) else {
        return Some(expiry);
    };
    let age = (now - time).to_std().unwrap_or_default();
    let left = ttl.as_duration().checked_sub(age)?;
    Ttl::from_secs_f64(left.as_secs_f64())
        .ok()
        .map(Expiry::After)
}

/// Each key `work` touches, once, in first-touch order.
fn distinct_keys(work: &[Work]) -> Vec<String> {
    let mut seen: KeySet<&str> = KeySet::default();
    work.iter()
        .filter(|item| seen.insert(item.key.as_str()))
        .map(|item| item.key.clone())
        .collect()
}

#[cfg(test)]
mod tests;
