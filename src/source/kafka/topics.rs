//! Every partition of some topics, from the broker's metadata: what a
//! rebuild's promotion and progress compare, across all replicas' shares.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::client_config;
use crate::config::KafkaSettings;
use crate::source::{Partition, SourceError};

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// The partitions of `topics`, sorted. Blocking: call it off the runtime's
/// workers (`spawn_blocking`).
pub fn partitions_of(
    kafka: &KafkaSettings,
    topics: &[String],
) -> Result<Vec<Partition>, SourceError> {
    let consumer: BaseConsumer = client_config(kafka)
        .set("group.id", format!("{}-metadata", kafka.group_id))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|error| SourceError::Permanent(format!("metadata reader: {error}")))?;
    let mut partitions = Vec::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|error| SourceError::Unavailable(format!("metadata of {topic}: {error}")))?;
        let found: Vec<Partition> = metadata
            .topics()
            .iter()
            .filter(|found| found.name() == topic && found.error().is_none())
            .flat_map(|found| found.partitions().iter())
            .map(|partition| Partition::new(topic.clone(), partition.id()))
            .collect();
        if found.is_empty() {
            return Err(SourceError::Unavailable(format!(
                "topic {topic:?} has no partitions (does it exist?)"
            )));
        }
        partitions.extend(found);
    }
    partitions.sort();
    Ok(partitions)
}
