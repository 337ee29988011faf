//! Purging dead letters: their checkpoint moves past them in every cache,
//! with no writes, so they are no longer pending and no replay applies them.
//! The records stay in the topic until its retention removes them.
//!
//! A purge claims the partitions like a replay does: a replay running
//! meanwhile is fenced off them (it reports them unfinished), and a purge
//! never moves a checkpoint backwards.

use std::collections::BTreeMap;

use serde::Serialize;
use tracing::info;

use super::{Caches, LetterLog, LettersError, Target, handled, letters_group, ranges};
use crate::cache::{Advance, Commit, CommitOutcome, Partition, checkpoint_scope};

/// Claims and commits a purge tries before it reports the partition moving.
const ATTEMPTS: usize = 3;

/// What a purge did.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeReport {
    pub topic: String,
    pub partitions: Vec<PurgedPartition>,
    /// Letters no longer pending (offsets passed over).
    pub purged: u64,
}

/// One partition: pending from `from` (`None`: from its first letter)
/// before, from `to` after.
#[derive(Debug, Clone, Serialize)]
pub struct PurgedPartition {
    pub partition: i32,
    pub from: Option<i64>,
    pub to: i64,
}

/// Mark the letters `target` names as handled, in every cache of `caches`.
pub async fn purge(
    caches: &Caches,
    group: &str,
    topic: &str,
    log: &dyn LetterLog,
    target: Target,
) -> Result<PurgeReport, LettersError> {
    let ends = log.ends().await?;
    let stops = ranges(topic, &ends, target)?;
    let before = handled(caches, group, topic, stops.keys().copied()).await?;
    let scope_group = letters_group(group);
    for (name, cache) in caches {
        let scope = checkpoint_scope(&scope_group, name);
        for (&number, &stop) in &stops {
            let partition = Partition::new(topic, number);
            advance_to(cache.as_ref(), &scope, &partition, stop).await?;
        }
    }
    let mut partitions = Vec::new();
    let mut purged = 0;
    for (&partition, &stop) in &stops {
        let from = before[&partition];
        purged += u64::try_from(stop - from.unwrap_or(0)).unwrap_or(0);
        partitions.push(PurgedPartition {
            partition,
            from,
            to: stop.max(from.unwrap_or(0)),
        });
    }
    info!(topic, ?stops, purged, "dead letters purged");
    Ok(PurgeReport {
        topic: topic.to_owned(),
        partitions,
        purged,
    })
}

/// Move `partition`'s checkpoint in `scope` to `stop`, unless it is there
/// or past it already.
async fn advance_to(
    cache: &dyn crate::cache::Cache,
    scope: &str,
    partition: &Partition,
    stop: i64,
) -> Result<(), LettersError> {
    let mut outcomes = BTreeMap::new();
    for attempt in 0..ATTEMPTS {
        let claims = cache.claim(scope, std::slice::from_ref(partition)).await?;
        let Some(claim) = claims.first() else {
            break;
        };
        if claim.next.is_some_and(|next| next >= stop) {
            return Ok(());
        }
        let advances = [Advance {
            partition: partition.clone(),
            epoch: claim.epoch,
            from: claim.next,
            to: stop,
        }];
        let commit = Commit {
            scope,
            advances: &advances,
            expected: &[],
            writes: &[],
            // Letters have a scope of their own, whose definitions never change.
            generation: 0,
        };
        match cache.commit(commit).await? {
            CommitOutcome::Applied => return Ok(()),
            // Another replica's replay or purge moved it between our claim
            // and our commit: claim again and look.
            outcome => {
                outcomes.insert(attempt, format!("{outcome:?}"));
            }
        }
    }
    Err(LettersError::Contended(format!(
        "the letters checkpoint of {partition} kept moving while it was purged \
         (another replica is replaying or purging it): {outcomes:?}; try again"
    )))
}
