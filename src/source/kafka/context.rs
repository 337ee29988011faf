//! librdkafka callbacks: rebalances (told to the pipeline in order, on the
//! delivery queue: a revocation waits until the pipeline finished what it
//! holds, then commits; an assignment gives each partition its own queue
//! first), statistics (consumer lag, and the end of each log for the progress
//! board), errors (logged). Each tells the fetch thread's [`Queues`] that an
//! event was served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use tracing::{info, warn};

use super::{Outbox, Queues};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::source::{Delivery, Partition};

pub struct SourceContext {
    pub outbox: Arc<Outbox>,
    pub health: Health,
    pub metrics: Metrics,
    /// How long a revocation waits for the batch in flight before letting go.
    pub drain_timeout: Duration,
    pub queues: Arc<Queues>,
}

fn partitions(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|element| Partition::new(element.topic(), element.partition()))
        .collect()
}

/// `topic/0, topic/1`: how a log line names partitions.
fn shown(partitions: &[Partition]) -> String {
    let names: Vec<String> = partitions.iter().map(Partition::to_string).collect();
    names.join(", ")
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        self.queues.mark_served();
        for (topic, stats) in &statistics.topics {
            for (partition, partition_stats) in &stats.partitions {
                // librdkafka reports -1 for the internal UA partition and for
                // partitions it does not consume.
                // A partition with nothing committed has no lag (-1) but an
                // end all the same: an empty one is caught up.
                if *partition >= 0 && partition_stats.hi_offset >= 0 {
                    self.health
                        .progress()
                        .set_end(Partition::new(topic, *partition), partition_stats.hi_offset);
                }
                if *partition < 0 || partition_stats.consumer_lag < 0 {
                    continue;
                }
                let partition = partition.to_string();
                self.metrics
                    .consumer_lag
                    .with_label_values(&[topic, &partition])
                    .set(partition_stats.consumer_lag);
                // Caught up: the age of the last record processed is no lag.
                if partition_stats.consumer_lag == 0 {
                    self.metrics
                        .consumer_lag_seconds
                        .with_label_values(&[topic, &partition])
                        .set(0.0);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.queues.mark_served();
        let list = match rebalance {
            // Split before the assignment starts fetching, so that no record of
            // these partitions reaches the consumer's own queue.
            Rebalance::Assign(list) => return self.queues.split(&partitions(list)),
            Rebalance::Revoke(list) => list,
            Rebalance::Error(_) => return,
        };
        let revoked = partitions(list);
        self.metrics.rebalances.with_label_values(&["revoke"]).inc();
        // The pipeline finishes everything queued before this message, then
        // answers: its offsets are stored before the commit below, so the next
        // owner finds little to skip. Correctness does not depend on it (the
        // checkpoints in the caches fence a late writer); a pipeline stuck on an
        // outage is given up on at the drain timeout.
        let deadline = Instant::now() + self.drain_timeout;
        let (done, finished) = std::sync::mpsc::sync_channel(1);
        let told = self.outbox.send_by(
            Delivery::Revoked {
                partitions: revoked.clone(),
                done,
            },
            deadline,
        );
        let drained = told
            && finished
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_ok();
        // A closed queue: shutting down, and the pipeline already finished.
        if !drained && self.outbox.is_open() {
            warn!(
                partitions = revoked.len(),
                "the pipeline did not finish before the drain timeout; revoking anyway"
            );
        }
        // Another member reports these partitions now; stale lag here would be
        // counted twice by a sum over pods.
        for partition in &revoked {
            let number = partition.number.to_string();
            let labels = [partition.topic.as_str(), number.as_str()];
            let _ = self.metrics.consumer_lag.remove_label_values(&labels);
            let _ = self
                .metrics
                .consumer_lag_seconds
                .remove_label_values(&labels);
        }
        if let Err(error) = super::commit_stored(consumer) {
            warn!(%error, "commit on revocation failed");
        }
        self.queues.remove(&revoked);
        self.health.set_assigned(false);
        self.metrics.consumer_assigned.set(0);
        info!(partitions = %shown(&revoked), "partitions revoked");
    }

    fn commit_callback(&self, _result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        self.queues.mark_served();
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions(list);
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                // The lag series of an owned partition exist from the assignment on,
                // before librdkafka's first statistics report.
                for partition in &assigned {
                    let number = partition.number.to_string();
                    let labels = [partition.topic.as_str(), number.as_str()];
                    self.metrics.consumer_lag.with_label_values(&labels);
                    self.metrics.consumer_lag_seconds.with_label_values(&labels);
                }
                // The pipeline claims them in every cache and seeks to the
                // checkpoints before it applies any of their records.
                self.outbox.send(Delivery::Assigned(assigned.clone()));
                self.health.set_assigned(true);
                self.metrics.consumer_assigned.set(1);
                info!(partitions = %shown(&assigned), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                self.metrics.rebalances.with_label_values(&["error"]).inc();
                warn!(%error, "rebalance failed");
            }
        }
    }
}
