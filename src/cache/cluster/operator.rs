//! What operators and waiting readers ask a cluster for beside the
//! projections: a checkpoint's applied position, and the paused projections
//! of a group. Each is one key (the checkpoint hash, the pauses set), so each
//! is one command on the primary of its slot, as on one Redis.

use std::collections::BTreeSet;

use super::{ClusterCache, unavailable};
use crate::cache::{CacheError, CacheResult, Partition, checkpoint_key, pauses_key};

impl ClusterCache {
    pub(super) async fn applied_offset(
        &self,
        scope: &str,
        partition: &Partition,
    ) -> CacheResult<Option<i64>> {
        let key = checkpoint_key(scope);
        let mut command = redis::cmd("HGET");
        command.arg(&key).arg(format!("n/{}", partition.field()));
        let stored: Option<String> = self.query(&command).await.map_err(unavailable)?;
        match stored {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| CacheError::CorruptValue {
                    key,
                    reason: format!("applied position {text:?} is not an offset"),
                }),
        }
    }

    pub(super) async fn paused_projections(&self, group: &str) -> CacheResult<BTreeSet<String>> {
        let mut command = redis::cmd("SMEMBERS");
        command.arg(pauses_key(group));
        self.query(&command).await.map_err(unavailable)
    }

    pub(super) async fn mark_paused(
        &self,
        group: &str,
        projection: &str,
        paused: bool,
    ) -> CacheResult<()> {
        let mut command = redis::cmd(if paused { "SADD" } else { "SREM" });
        command.arg(pauses_key(group)).arg(projection);
        self.query::<i64>(&command).await.map_err(unavailable)?;
        Ok(())
    }
}
