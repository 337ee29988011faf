//! Dead letters taken up again, once the definition that refused them is
//! fixed: [`replay`] applies them, [`purge`] marks them handled without
//! applying them. Both move one checkpoint, so a letter is handled once.
//!
//! # Exactly once
//! The dead-letter topic's partitions are source partitions like any other,
//! checkpointed in every cache under a consumer group of their own,
//! [`letters_group`] (`{group}.letters`). A replay is the ordinary pipeline
//! over them ([`crate::pipeline::Pipeline::replaying_letters`]): it claims the
//! partitions (a fresh epoch), folds each letter into the projection it
//! failed for, and commits the writes with the checkpoint's advance as one
//! atomic step (one script on Redis, per-slot marks on a cluster). So:
//! - a replay run again, or after a crash midway, starts at the checkpoint:
//!   what landed is never applied again, what did not is applied then;
//! - two replays at once (two replicas) fence each other by epoch: the later
//!   claim wins, the other's commits are refused and it reports the
//!   partition unfinished;
//! - a purge claims and advances the same checkpoint, with no writes.
//!
//! A letter that fails again is sent to the dead-letter topic anew (with its
//! original source position, [`reletter`]) before the checkpoint passes it:
//! never lost, and listed as pending for the next replay or a purge.
//!
//! The checkpoint is the truth of what is pending: a letter is handled once
//! every cache's checkpoint is past it ([`handled`]). The records stay in the
//! topic until its retention removes them.

pub mod log;
pub mod purge;
pub mod reletter;
pub mod replay;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cache::{Cache, CacheError, Partition, checkpoint_scope};
use crate::config::{KafkaSettings, PipelineSettings};
use crate::event::Envelope;
use crate::pipeline::{PipelineError, Router};
use crate::source::SourceError;

pub use log::{LetterLog, Polled};
pub use purge::{PurgeReport, purge};
pub use replay::{Replay, ReplayReport, replay, router_caches};

/// Where the letters are, and what a replay of them runs with.
#[derive(Clone)]
pub struct DeadLetterTopic {
    pub kafka: KafkaSettings,
    pub topic: String,
    /// The projections as this replica defines them (fixed, after a fix).
    pub router: Router,
    pub envelope: Envelope,
    pub pipeline: PipelineSettings,
    /// Held by the replay or purge running on this replica: one at a time
    /// here (two replicas fence each other by epoch).
    pub busy: Arc<tokio::sync::Mutex<()>>,
    /// Cancelled when the daemon shuts down: a replay stops between batches.
    pub stop: CancellationToken,
}

/// The consumer group whose checkpoints say which letters of `group` are handled.
pub fn letters_group(group: &str) -> String {
    format!("{group}.letters")
}

/// Which letters an operator means: every pending one, or those of one
/// partition up to and including an offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Target {
    pub partition: Option<i32>,
    /// Inclusive: the last letter to take up.
    pub to: Option<i64>,
}

/// Why letters could not be taken up. Bad input says what was wrong;
/// [`LettersError::is_transient`] tells an outage from the rest.
#[derive(Debug, thiserror::Error)]
pub enum LettersError {
    #[error("dead-letter topic {topic:?} has no partition {partition} (it has {known:?})")]
    UnknownPartition {
        topic: String,
        partition: i32,
        known: Vec<i32>,
    },
    #[error(
        "offset {to} is past the end of partition {partition}: its letters end at offset {last}"
    )]
    PastTheEnd { partition: i32, to: i64, last: i64 },
    #[error("an offset alone is ambiguous: name its partition too (--partition P --to O)")]
    OffsetWithoutPartition,
    #[error("a negative offset ({0}) names no letter")]
    NegativeOffset(i64),
    /// Another replica moved the same checkpoint at the same time.
    #[error("{0}")]
    Contended(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

impl LettersError {
    /// An outage: the same request may pass later.
    pub fn is_transient(&self) -> bool {
        match self {
            LettersError::Source(error) => error.is_transient(),
            LettersError::Cache(error) => error.is_transient(),
            LettersError::Contended(_) => true,
            _ => false,
        }
    }

    /// The operator asked for something that does not exist.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            LettersError::UnknownPartition { .. }
                | LettersError::PastTheEnd { .. }
                | LettersError::OffsetWithoutPartition
                | LettersError::NegativeOffset(_)
        )
    }
}

/// Per partition, where taking up `target` ends (exclusive), given each
/// partition's end: pure, so every refusal is tested as a value.
pub fn ranges(
    topic: &str,
    ends: &BTreeMap<i32, i64>,
    target: Target,
) -> Result<BTreeMap<i32, i64>, LettersError> {
    let Some(partition) = target.partition else {
        if target.to.is_some() {
            return Err(LettersError::OffsetWithoutPartition);
        }
        return Ok(ends.clone());
    };
    let Some(&end) = ends.get(&partition) else {
        return Err(LettersError::UnknownPartition {
            topic: topic.to_owned(),
            partition,
            known: ends.keys().copied().collect(),
        });
    };
    let stop = match target.to {
        None => end,
        Some(to) if to < 0 => return Err(LettersError::NegativeOffset(to)),
        Some(to) if to >= end => {
            return Err(LettersError::PastTheEnd {
                partition,
                to,
                last: end - 1,
            });
        }
        Some(to) => to + 1,
    };
    Ok(BTreeMap::from([(partition, stop)]))
}

/// The caches a group's projections write to: each keeps a letters checkpoint.
pub type Caches = Vec<(String, Arc<dyn Cache>)>;

/// The caches among `caches` that some projection writes to.
pub fn caches_in_use(
    caches: &BTreeMap<String, Arc<dyn Cache>>,
    used: impl IntoIterator<Item = String>,
) -> Caches {
    let used: BTreeSet<String> = used.into_iter().collect();
    caches
        .iter()
        .filter(|(name, _)| used.contains(*name))
        .map(|(name, cache)| (name.clone(), Arc::clone(cache)))
        .collect()
}

/// Per partition of `topic`, the offset from which letters are pending: the
/// lowest checkpoint among `caches` (a letter is handled once every cache
/// passed it), `None` when one never took up any.
pub async fn handled(
    caches: &Caches,
    group: &str,
    topic: &str,
    partitions: impl IntoIterator<Item = i32>,
) -> Result<BTreeMap<i32, Option<i64>>, CacheError> {
    let group = letters_group(group);
    let mut handled = BTreeMap::new();
    for number in partitions {
        let partition = Partition::new(topic, number);
        let mut lowest = None;
        for (index, (name, cache)) in caches.iter().enumerate() {
            let next = cache
                .applied(&checkpoint_scope(&group, name), &partition)
                .await?;
            lowest = match (index, next) {
                (0, next) => next,
                (_, None) => None,
                (_, Some(next)) => lowest.map(|lowest: i64| lowest.min(next)),
            };
            if lowest.is_none() {
                break;
            }
        }
        handled.insert(number, lowest);
    }
    Ok(handled)
}

#[cfg(test)]
mod targets {
    use super::*;

    fn ends() -> BTreeMap<i32, i64> {
        BTreeMap::from([(0, 5), (1, 0), (2, 12)])
    }

    #[test]
    fn everything_pending_is_every_partition_to_its_end() {
        assert_eq!(ranges("dl", &ends(), Target::default()).unwrap(), ends());
    }

    #[test]
    fn to_is_inclusive_and_confined_to_its_partition() {
        let target = Target {
            partition: Some(2),
            to: Some(7),
        };
        let ranges = ranges("dl", &ends(), target).unwrap();
        assert_eq!(ranges, BTreeMap::from([(2, 8)]));
        let whole = Target {
            partition: Some(0),
            to: None,
        };
        assert_eq!(
            super::ranges("dl", &ends(), whole).unwrap(),
            BTreeMap::from([(0, 5)])
        );
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        let unknown = Target {
            partition: Some(9),
            to: None,
        };
        let error = ranges("dl", &ends(), unknown).unwrap_err();
        assert!(error.is_bad_request());
        assert_eq!(
            error.to_string(),
            "dead-letter topic \"dl\" has no partition 9 (it has [0, 1, 2])"
        );
        let past = Target {
            partition: Some(0),
            to: Some(5),
        };
        let error = ranges("dl", &ends(), past).unwrap_err();
        assert_eq!(
            error.to_string(),
            "offset 5 is past the end of partition 0: its letters end at offset 4"
        );
        let empty = Target {
            partition: Some(1),
            to: Some(0),
        };
        assert!(matches!(
            ranges("dl", &ends(), empty),
            Err(LettersError::PastTheEnd { last: -1, .. })
        ));
        let alone = Target {
            partition: None,
            to: Some(3),
        };
        assert!(matches!(
            ranges("dl", &ends(), alone),
            Err(LettersError::OffsetWithoutPartition)
        ));
        let negative = Target {
            partition: Some(0),
            to: Some(-1),
        };
        assert!(matches!(
            ranges("dl", &ends(), negative),
            Err(LettersError::NegativeOffset(-1))
        ));
    }

    #[tokio::test]
    async fn a_letter_is_handled_once_every_cache_passed_it() {
        use crate::cache::memory::MemoryCache;
        use crate::cache::{Advance, Commit, CommitOutcome, Ttl};
        let ttl = Ttl::from_secs_f64(60.0).unwrap();
        let first: Arc<dyn Cache> = Arc::new(MemoryCache::new(ttl));
        let second: Arc<dyn Cache> = Arc::new(MemoryCache::new(ttl));
        let caches: Caches = vec![
            ("a".to_owned(), Arc::clone(&first)),
            ("b".to_owned(), Arc::clone(&second)),
        ];
        let advance = |cache: &Arc<dyn Cache>, name: &str, to: i64| {
            let cache = Arc::clone(cache);
            let scope = checkpoint_scope("g.letters", name);
            async move {
                let partition = Partition::new("dl", 0);
                let claim = cache.claim(&scope, std::slice::from_ref(&partition)).await;
                let claim = claim.unwrap()[0];
                let advances = [Advance {
                    partition,
                    epoch: claim.epoch,
                    from: claim.next,
                    to,
                }];
                let commit = Commit {
                    scope: &scope,
                    advances: &advances,
                    expected: &[],
                    writes: &[],
                    // Letters have a scope of their own, whose definitions never change.
                    generation: 0,
                };
                assert_eq!(cache.commit(commit).await.unwrap(), CommitOutcome::Applied);
            }
        };
        let pending = || handled(&caches, "g", "dl", [0, 1]);
        assert_eq!(
            pending().await.unwrap(),
            BTreeMap::from([(0, None), (1, None)])
        );
        advance(&first, "a", 4).await;
        assert_eq!(pending().await.unwrap()[&0], None, "b took up nothing yet");
        advance(&second, "b", 3).await;
        assert_eq!(pending().await.unwrap()[&0], Some(3));
    }
}
