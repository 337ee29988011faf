//! Checkpoints in the memory store: claims, and commits that land with the
//! writes they guard under the store's one lock, so a commit's checks and
//! its writes cannot interleave with another writer's.

use tokio::time::Instant;

use super::{Inner, PreparedWrite};
use crate::cache::{Advance, Claim, Commit, CommitOutcome, Partition};

impl Inner {
    /// Claim `partitions` in `scope`: each gets an epoch above every epoch
    /// handed out before.
    pub(super) fn claim(&mut self, scope: &str, partitions: &[Partition]) -> Vec<Claim> {
        let stored = self.checkpoints.entry(scope.to_owned()).or_default();
        let mut claims = Vec::with_capacity(partitions.len());
        for partition in partitions {
            self.last_epoch += 1;
            // Nothing survives a restart here, so a partition never seen has
            // had nothing applied: start it from the beginning of the log.
            let entry = stored.entry(partition.clone()).or_insert((0, Some(0)));
            entry.0 = self.last_epoch;
            claims.push(Claim {
                epoch: entry.0,
                next: entry.1,
            });
        }
        claims
    }

    /// Land `prepared` (the commit's writes) and advance its partitions, or
    /// nothing when a check fails.
    pub(super) fn commit(
        &mut self,
        commit: &Commit<'_>,
        prepared: Vec<PreparedWrite>,
        now: Instant,
    ) -> CommitOutcome {
        if let Some(refusal) = self.refusal(commit, now) {
            return refusal;
        }
        self.write_all(prepared);
        // refusal() found every partition of the commit claimed.
        if let Some(stored) = self.checkpoints.get_mut(commit.scope) {
            for advance in commit.advances {
                if let Some(entry) = stored.get_mut(&advance.partition) {
                    entry.1 = Some(advance.to);
                }
            }
        }
        CommitOutcome::Applied
    }

    /// The next offset `scope` applies in `partition`, when it has one.
    pub(super) fn applied(&self, scope: &str, partition: &Partition) -> Option<i64> {
        let stored = self
            .checkpoints
            .get(scope)
            .and_then(|scope| scope.get(partition));
        stored.and_then(|(_, next)| *next)
    }

    /// Why `commit` cannot land, or `None` when every check holds.
    fn refusal(&self, commit: &Commit<'_>, now: Instant) -> Option<CommitOutcome> {
        let stored = self.checkpoints.get(commit.scope);
        let generation = self.generations.get(commit.scope).copied().unwrap_or(0);
        if !commit.advances.is_empty() && generation != commit.generation {
            return Some(CommitOutcome::Outdated { stored: generation });
        }
        for (
            index,
            Advance {
                partition,
                epoch,
                from,
                ..
            },
        ) in commit.advances.iter().enumerate()
        {
            let Some(&(owner, next)) = stored.and_then(|partitions| partitions.get(partition))
            else {
                return Some(CommitOutcome::Unclaimed { index });
            };
            if owner > *epoch {
                return Some(CommitOutcome::Fenced {
                    index,
                    stored: owner,
                });
            }
            if owner < *epoch {
                return Some(CommitOutcome::Unclaimed { index });
            }
            if next != *from {
                return Some(CommitOutcome::Moved {
                    index,
                    stored: next,
                });
            }
        }
        let unchanged = commit.expected.iter().all(|(key, version)| {
            self.live(key, now).map(|entry| entry.json.as_bytes()) == version.as_deref()
        });
        (!unchanged).then_some(CommitOutcome::Conflict)
    }
}
