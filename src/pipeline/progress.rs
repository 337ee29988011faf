//! After a chunk: where it left every partition, told to those who watch
//! (the progress board, Kafka's committed offsets, the lag gauges). None of
//! it is the truth about progress, which the caches' checkpoints hold.

use tracing::warn;

use super::Pipeline;
use crate::cache::Partition;
use crate::source::Offsets;

impl Pipeline {
    /// Tell the progress board where each cache stands on `partitions`, with
    /// the Kafka timestamp of the newest record of each just handled.
    pub(super) fn publish_progress(&mut self, partitions: &[(Partition, Option<i64>)]) {
        let progress = self.retry.health.progress().clone();
        for (partition, newest_ms) in partitions {
            for cache in 0..self.caches.len() {
                let slot = &self.caches[cache];
                if !slot.topics.contains(&partition.topic) {
                    continue;
                }
                let name = slot.name.clone();
                let applied = if progress.is_held(&name) {
                    None
                } else {
                    *newest_ms
                };
                let next = self.positions.next(cache, partition);
                progress.set_applied(&name, partition, next, applied);
            }
        }
    }

    /// Kafka's copy of the progress: per partition, the lowest next offset of
    /// the caches it feeds. The checkpoints are the truth, so a refusal (the
    /// partition was revoked meanwhile) costs only a warning.
    pub(super) fn store_offsets<'a>(&mut self, partitions: impl Iterator<Item = &'a Partition>) {
        let mut offsets: Offsets = Vec::new();
        for partition in partitions {
            let lowest = (0..self.caches.len())
                .filter(|&cache| self.caches[cache].topics.contains(&partition.topic))
                .map(|cache| self.positions.next(cache, partition))
                .min()
                .flatten();
            if let Some(next) = lowest {
                offsets.push((partition.topic.clone(), partition.number, next));
            }
        }
        if offsets.is_empty() {
            return;
        }
        offsets.sort();
        if let Err(error) = self.source.store_offsets(&offsets) {
            self.metrics
                .retries
                .with_label_values(&["kafka_offsets"])
                .inc();
            warn!(%error, "kafka offsets not stored; the checkpoints hold the progress");
        }
    }

    /// How old the newest record of each partition is, by
    /// [`Plan::newest_timestamps`](super::plan::Plan::newest_timestamps) (a
    /// map keyed per record cost 1% of a catch-up).
    pub(super) fn observe_lag(&self, newest: &[(Partition, Option<i64>)]) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        for (partition, newest_ms) in newest {
            if let Some(timestamp) = newest_ms {
                let age = (now_ms - timestamp).max(0) as f64 / 1000.0;
                self.metrics
                    .consumer_lag_seconds
                    .with_label_values(&[&partition.topic, &partition.number.to_string()])
                    .set(age);
            }
        }
    }
}
