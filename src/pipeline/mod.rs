//! The pipeline: deliveries in, projections out. The consumer's deliveries
//! arrive in order on one queue ([`Delivery`]): records, and the assignments,
//! revocations and seeks between them. Per chunk of records:
//!
//! 1. **admit**: drop what is not ours to apply (redelivered, fetched before a
//!    seek, a partition we no longer own) and seek back over a gap;
//! 2. **plan**: decode, route, name the keys; undecodable records are letters;
//! 3. per cache, **commit**: its share (each partition from that cache's own
//!    checkpoint on), load, fold, dead-letter the refusals, then the writes
//!    and the checkpoint's advance as one atomic, compared step;
//! 4. **store offsets**: Kafka's copy of the progress, for lag and tooling.
//!
//! The same pipeline replays dead letters ([`Pipeline::replaying_letters`]):
//! the dead-letter topic is its source, checkpointed in a scope of its own.
//!
//! Chunks are processed one at a time, each mixing records of every owned
//! partition in their partition order. Running partitions side by side would
//! race: a projection keyed differently from the partition key
//! (`customer_orders`) is read-modified-written from several partitions, and
//! two concurrent folds of one key lose an update.

mod bound;
mod commit;
mod fold;
mod letters;
mod plan;
mod positions;
mod progress;
mod replayed;
mod retry;
mod router;
mod tally;
mod versions;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::cache::{Cache, CacheError, Claim, Generation, Partition};
use crate::event::Envelope;
use crate::metrics::{Metrics, ProjectionMetrics};
use crate::rebuild::Catalog;
use crate::source::{DeadLetters, Delivery, SourceControl, SourceError};

pub use bound::Bound;
pub use fold::{Folded, Work, Write, fold};
pub use positions::{Admitted, Positioning};
pub use replayed::DUPLICATE_OF;
pub use retry::{Classified, Retry};
pub use router::{Route, Router};

/// A map the batch path looks up per record or per key (projection keys,
/// topic names): foldhash, not SipHash, as these keys come from our own
/// cache and configuration, not from a client who could collide them.
pub type KeyMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A set of such keys.
pub type KeySet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Records per atomic commit at most: a larger delivery is split, so one
/// script never holds Redis for long (about a millisecond per thousand keys).
pub const MAX_CHUNK: usize = 2000;

/// What a pipeline is built from.
pub struct Wiring {
    pub router: Router,
    pub envelope: Envelope,
    pub metrics: Metrics,
    pub retry: Retry,
    pub source: Arc<dyn SourceControl>,
    pub dead_letters: Option<Arc<dyn DeadLetters>>,
    /// The consumer group: with a cache's name, whose checkpoint it is.
    pub group: String,
    pub positioning: Positioning,
    /// Where the live versions are kept, for a pipeline that folds them
    /// (the daemon's); `None` where definitions never change (a file, a
    /// shadow build).
    pub catalog: Option<Catalog>,
    /// For a shadow build: the live checkpoint it follows.
    pub bound: Option<Bound>,
}

/// One cache the pipeline writes, with its checkpoint's scope.
struct CacheSlot {
    name: String,
    cache: Arc<dyn Cache>,
    scope: String,
    /// The topics whose partitions advance in this cache's checkpoint.
    topics: BTreeSet<String>,
    /// The generation of definitions the routes into it fold with.
    generation: Generation,
}

/// The batch path and the positions it keeps.
pub struct Pipeline {
    router: Router,
    envelope: Envelope,
    metrics: Metrics,
    retry: Retry,
    source: Arc<dyn SourceControl>,
    dead_letters: Option<Arc<dyn DeadLetters>>,
    caches: Vec<CacheSlot>,
    /// Route index -> index in `caches`.
    route_cache: Vec<usize>,
    /// Route index -> its projection's per-event series (a new version of
    /// a projection keeps its name, so they never change).
    route_metrics: Vec<ProjectionMetrics>,
    positions: positions::Positions,
    catalog: Option<Catalog>,
    bound: Option<Bound>,
    /// The dead-letter topic, when this pipeline replays its letters
    /// ([`Pipeline::replaying_letters`]).
    letters: Option<String>,
}

/// Why the pipeline stopped: only a permanent failure of a sink itself (the
/// cache refusing a write), which stops it rather than skipping writes.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("cache {cache:?} refused a batch: {error}")]
    Cache { cache: String, error: CacheError },
    #[error("dead-letter topic refused a batch: {0}")]
    DeadLetter(SourceError),
    /// The live definitions changed and the new ones cannot be folded with.
    #[error("cannot load the live definitions: {0}")]
    Definitions(String),
    /// A shadow build's scope was fenced: it was promoted or collected.
    #[error("retired: the checkpoint scope in cache {0:?} moved on without this pipeline")]
    Retired(String),
}

impl Pipeline {
    pub fn new(wiring: Wiring) -> Pipeline {
        let mut caches: Vec<CacheSlot> = Vec::new();
        let mut route_cache = Vec::new();
        for index in 0..wiring.router.len() {
            let route = wiring.router.route(index);
            let name = &route.definition.cache;
            let slot = match caches.iter().position(|slot| &slot.name == name) {
                Some(slot) => slot,
                None => {
                    caches.push(CacheSlot {
                        name: name.clone(),
                        cache: Arc::clone(&route.cache),
                        scope: crate::cache::checkpoint_scope(&wiring.group, name),
                        topics: BTreeSet::new(),
                        generation: 0,
                    });
                    caches.len() - 1
                }
            };
            caches[slot]
                .topics
                .extend(route.definition.topics.iter().cloned());
            route_cache.push(slot);
        }
        let route_metrics = (0..wiring.router.len())
            .map(|index| {
                let name = &wiring.router.route(index).definition.name;
                wiring.metrics.for_projection(name)
            })
            .collect();
        Pipeline {
            router: wiring.router,
            envelope: wiring.envelope,
            metrics: wiring.metrics,
            retry: wiring.retry,
            source: wiring.source,
            dead_letters: wiring.dead_letters,
            caches,
            route_cache,
            route_metrics,
            positions: positions::Positions::new(wiring.positioning),
            catalog: wiring.catalog,
            bound: wiring.bound,
            letters: None,
        }
    }

    /// Process deliveries until the queue closes (the consumer stopped).
    pub async fn run(
        &mut self,
        mut deliveries: mpsc::Receiver<Delivery>,
    ) -> Result<(), PipelineError> {
        let mut held = self.retry.health.progress().watch_held();
        let mut holding = held.borrow_and_update().clone();
        loop {
            tokio::select! {
                delivery = deliveries.recv() => match delivery {
                    Some(delivery) => self.deliver(delivery).await?,
                    None => return Ok(()),
                },
                Ok(()) = held.changed() => {
                    let now = held.borrow_and_update().clone();
                    self.release(&holding, &now);
                    holding = now;
                }
            }
        }
    }

    /// Caches a resume released read again, from their own checkpoints, what
    /// the stream moved past while they were held.
    fn release(&mut self, before: &BTreeSet<String>, now: &BTreeSet<String>) {
        for cache in 0..self.caches.len() {
            let slot = &self.caches[cache];
            if !before.contains(&slot.name) || now.contains(&slot.name) {
                continue;
            }
            info!(cache = %slot.name, "pause lifted; catching up from the checkpoint");
            self.positions
                .catch_up(cache, &slot.topics, self.source.as_ref());
        }
    }

    /// Handle one delivery to the end: for records, when this returns `Ok`
    /// every write is acknowledged and the checkpoints advanced.
    pub async fn deliver(&mut self, delivery: Delivery) -> Result<(), PipelineError> {
        match delivery {
            Delivery::Records(records) => self.process(records).await,
            Delivery::Assigned(partitions) => self.assign(partitions).await,
            Delivery::Revoked { partitions, done } => {
                for partition in &partitions {
                    self.positions.revoke(partition);
                    self.retry.health.progress().forget(partition);
                }
                // The consumer may have given up waiting: nobody to tell then.
                let _ = done.try_send(());
                Ok(())
            }
            Delivery::Sought { partition, offset } => {
                self.positions.sought(&partition, offset);
                Ok(())
            }
        }
    }

    /// Claim newly assigned partitions in every cache, then seek each to the
    /// lowest of its checkpoints.
    async fn assign(&mut self, partitions: Vec<Partition>) -> Result<(), PipelineError> {
        let mut claims = vec![Vec::with_capacity(self.caches.len()); partitions.len()];
        for (index, slot) in self.caches.iter().enumerate() {
            let claimed = if self.positions.positioning().checkpoints() {
                self.retry
                    .run("cache", || slot.cache.claim(&slot.scope, &partitions))
                    .await
                    .map_err(|error| self.cache_error(index, error))?
            } else {
                vec![
                    Claim {
                        epoch: 0,
                        next: None
                    };
                    partitions.len()
                ]
            };
            for (per_partition, claim) in claims.iter_mut().zip(claimed) {
                per_partition.push(claim);
            }
        }
        let replays: Vec<u64> = self
            .caches
            .iter()
            .map(|slot| slot.cache.replay_window())
            .collect();
        for (partition, claims) in partitions.iter().zip(claims) {
            info!(%partition, checkpoints = ?claims.iter().map(|claim| claim.next).collect::<Vec<_>>(), "partition claimed");
            self.positions
                .assign(partition.clone(), &claims, &replays, self.source.as_ref());
        }
        // Kafka's copy catches up with the checkpoints now: a partition whose
        // checkpoint is at the end has no record to process, and its lag (what
        // autoscaling reads) would otherwise never clear.
        self.store_offsets(partitions.iter());
        let taken: Vec<(Partition, Option<i64>)> = partitions
            .into_iter()
            .map(|partition| (partition, None))
            .collect();
        self.publish_progress(&taken);
        Ok(())
    }

    /// Apply `records`, chunk by chunk.
    pub async fn process(
        &mut self,
        mut records: Vec<crate::event::RawRecord>,
    ) -> Result<(), PipelineError> {
        while !records.is_empty() {
            let rest = records.split_off(records.len().min(MAX_CHUNK));
            self.process_chunk(records).await?;
            records = rest;
        }
        Ok(())
    }

    async fn process_chunk(
        &mut self,
        records: Vec<crate::event::RawRecord>,
    ) -> Result<(), PipelineError> {
        let started = Instant::now();
        let admitted = self
            .positions
            .admit(records, self.source.as_ref(), &self.metrics);
        let (admitted, held) = self.hold_at_live(admitted).await?;
        if admitted.is_empty() {
            self.release_held(&held, true).await;
            return Ok(());
        }
        self.count_consumed(&admitted);
        let mut plan = self.plan(admitted);
        self.dead_letter(&plan.letters).await?;
        let mut reported = commit::Reported::new();
        let mut cache = 0;
        while cache < self.caches.len() {
            // A pause holds the cache: nothing of it is written and its
            // checkpoint stays, so a resume reads these records again.
            if self
                .retry
                .health
                .progress()
                .is_held(&self.caches[cache].name)
            {
                cache += 1;
                continue;
            }
            match self.commit_cache(&plan, cache, &mut reported).await? {
                commit::Committed::Done => cache += 1,
                commit::Committed::Replan => {
                    // A new version went live: route the chunk again. The
                    // caches that committed their share have nothing left of
                    // it; events and routes keep their indexes, so what was
                    // reported stays reported.
                    plan = self.replan(plan).await?;
                    cache = 0;
                }
            }
        }
        self.release_held(&held, false).await;
        self.store_offsets(plan.partitions.iter().map(|(partition, _)| partition));
        let newest = plan.newest_timestamps();
        self.publish_progress(&newest);
        self.observe_lag(&newest);
        self.metrics.batch_size.observe(plan.records.len() as f64);
        self.metrics
            .batch_duration
            .observe(started.elapsed().as_secs_f64());
        self.retry.health.beat();
        debug!(records = plan.records.len(), "chunk done");
        self.pace(started).await;
        Ok(())
    }

    fn cache_timer(&self, cache: &str, operation: &str) -> prometheus::HistogramTimer {
        self.metrics
            .cache_operation_duration
            .with_label_values(&[cache, operation])
            .start_timer()
    }
}
