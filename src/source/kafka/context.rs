//! librdkafka callbacks: rebalances (finish the batch in flight, commit, then let
//! partitions go), statistics (consumer lag), errors (logged, classified).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use tracing::{info, warn};

use crate::health::Health;
use crate::metrics::Metrics;
use crate::source::Assignment;

pub struct SourceContext {
    pub assignment: Arc<Assignment>,
    pub health: Health,
    pub metrics: Metrics,
    /// How long a revocation waits for the batch in flight before letting go.
    pub drain_timeout: Duration,
}

fn partitions(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements()
        .iter()
        .map(|element| (element.topic().to_owned(), element.partition()))
        .collect()
}

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, partition_stats) in &stats.partitions {
                // librdkafka reports -1 for the internal UA partition and for
                // partitions it does not consume.
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
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let revoked = partitions(list);
        self.metrics.rebalances.with_label_values(&["revoke"]).inc();
        // Wait for the batch in flight: its offsets must be stored before the
        // commit below, or the next owner would apply its records again.
        let deadline = Instant::now() + self.drain_timeout;
        let guard = loop {
            if let Ok(guard) = self.assignment.in_flight.try_lock() {
                break Some(guard);
            }
            if Instant::now() >= deadline {
                warn!(
                    partitions = revoked.len(),
                    "batch in flight did not finish before the drain timeout; revoking anyway"
                );
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.assignment.revoke(revoked.iter().cloned());
        // Another member reports these partitions now; stale lag here would be
        // counted twice by a sum over pods.
        for (topic, partition) in &revoked {
            let partition = partition.to_string();
            let _ = self
                .metrics
                .consumer_lag
                .remove_label_values(&[topic, &partition]);
            let _ = self
                .metrics
                .consumer_lag_seconds
                .remove_label_values(&[topic, &partition]);
        }
        if let Err(error) = super::commit_stored(consumer) {
            warn!(%error, "commit on revocation failed");
        }
        self.health.set_assigned(false);
        self.metrics.consumer_assigned.set(0);
        drop(guard);
        info!(partitions = ?revoked, "partitions revoked");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions(list);
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                // The lag series of an owned partition exist from the assignment on,
                // before librdkafka's first statistics report.
                for (topic, partition) in &assigned {
                    let partition = partition.to_string();
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic, &partition]);
                    self.metrics
                        .consumer_lag_seconds
                        .with_label_values(&[topic, &partition]);
                }
                self.assignment.assign(assigned.iter().cloned());
                self.health.set_assigned(true);
                self.metrics.consumer_assigned.set(1);
                info!(partitions = ?assigned, "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                self.metrics.rebalances.with_label_values(&["error"]).inc();
                warn!(%error, "rebalance failed");
            }
        }
    }
}
