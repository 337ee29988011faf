//! A shadow build's two limits: it never applies a partition past the live
//! version's checkpoint (so the live version is always at or ahead of it,
//! and a promotion finds the two at one position), and it takes only a share
//! of the time, so live freshness holds while it catches up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::positions::Admitted;
use super::{Pipeline, PipelineError};
use crate::cache::{Cache, Partition};

/// How long a shadow that caught up with the live version waits before it
/// reads again: it has nothing to do until the live version moves.
const CAUGHT_UP_WAIT: Duration = Duration::from_millis(200);

/// The live checkpoint a shadow build follows, and its share of the time.
#[derive(Clone)]
pub struct Bound {
    pub cache: Arc<dyn Cache>,
    /// The live version's checkpoint scope.
    pub scope: String,
    /// The share of the time the build may be busy, in (0, 1].
    pub share: f64,
}

impl Pipeline {
    /// The records below the live checkpoint, and per partition cut short
    /// the first offset held back.
    pub(super) async fn hold_at_live(
        &mut self,
        admitted: Vec<Admitted>,
    ) -> Result<(Vec<Admitted>, Vec<(Partition, i64)>), PipelineError> {
        let Some(bound) = self.bound.clone() else {
            return Ok((admitted, Vec::new()));
        };
        let mut limits: HashMap<Partition, Option<i64>> = HashMap::new();
        for record in &admitted {
            let position = &record.record.position;
            let partition = Partition::new(&*position.topic, position.partition);
            if limits.contains_key(&partition) {
                continue;
            }
            let live = self
                .retry
                .run("cache", || bound.cache.applied(&bound.scope, &partition))
                .await
                .map_err(|error| self.cache_error(0, error))?;
            limits.insert(partition, live);
        }
        let mut kept = Vec::with_capacity(admitted.len());
        let mut held: Vec<(Partition, i64)> = Vec::new();
        for record in admitted {
            let position = &record.record.position;
            let partition = Partition::new(&*position.topic, position.partition);
            if held.iter().any(|(known, _)| *known == partition) {
                continue;
            }
            if limits[&partition].is_some_and(|live| position.offset < live) {
                kept.push(record);
            } else {
                held.push((partition, record.from));
            }
        }
        Ok((kept, held))
    }

    /// Read each held-back partition again from where it was cut, once the
    /// records kept are committed (a seek asked for earlier would make the
    /// chunk's records look fetched before it); and when nothing was kept,
    /// wait for the live version to move first.
    pub(super) async fn release_held(&mut self, held: &[(Partition, i64)], idle: bool) {
        for (partition, from) in held {
            self.positions
                .hold_back(partition, *from, self.source.as_ref());
        }
        if idle && !held.is_empty() {
            tokio::time::sleep(CAUGHT_UP_WAIT).await;
        }
    }

    /// Rest after a chunk that took `busy` so the build keeps to its share.
    pub(super) async fn pace(&self, started: Instant) {
        let Some(bound) = &self.bound else { return };
        if bound.share >= 1.0 {
            return;
        }
        let busy = started.elapsed().as_secs_f64();
        let rest = busy * (1.0 - bound.share) / bound.share;
        tokio::time::sleep(Duration::from_secs_f64(rest.min(5.0))).await;
    }
}
