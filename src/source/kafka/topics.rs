//! Every partition of some topics, from the broker's metadata: what a
//! rebuild's promotion and progress compare, across all replicas' shares.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::client_config;
use crate::config::KafkaSettings;
use crate::source::{Partition, SourceError};

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// A client that joins no group and commits nothing by itself, named
/// `group` (librdkafka wants one), for one question to the broker.
fn throwaway(kafka: &KafkaSettings, group: &str, role: &str) -> Result<BaseConsumer, SourceError> {
    client_config(kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|error| SourceError::Permanent(format!("{role}: {error}")))
}

/// The partitions of `topics`, sorted. Blocking: call it off the runtime's
/// workers (`spawn_blocking`).
pub fn partitions_of(
    kafka: &KafkaSettings,
    topics: &[String],
) -> Result<Vec<Partition>, SourceError> {
    let consumer = throwaway(
        kafka,
        &format!("{}-metadata", kafka.group_id),
        "metadata reader",
    )?;
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

/// Per partition of `partitions`, the first offset whose record's timestamp
/// is at or after `time_ms` (the end of the partition when none is).
/// Blocking, like [`partitions_of`].
pub fn offsets_at(
    kafka: &KafkaSettings,
    partitions: &[Partition],
    time_ms: i64,
) -> Result<Vec<i64>, SourceError> {
    use rdkafka::{Offset, TopicPartitionList};
    let consumer = throwaway(
        kafka,
        &format!("{}-metadata", kafka.group_id),
        "offset reader",
    )?;
    let mut asked = TopicPartitionList::new();
    for partition in partitions {
        asked
            .add_partition_offset(&partition.topic, partition.number, Offset::Offset(time_ms))
            .map_err(|error| SourceError::Permanent(format!("{partition}: {error}")))?;
    }
    let found = consumer
        .offsets_for_times(asked, METADATA_TIMEOUT)
        .map_err(|error| SourceError::Unavailable(format!("offsets for a time: {error}")))?;
    partitions
        .iter()
        .map(|partition| {
            let offset = found
                .find_partition(&partition.topic, partition.number)
                .map(|element| element.offset());
            match offset {
                Some(Offset::Offset(offset)) => Ok(offset),
                // No record that late: from the end.
                _ => consumer
                    .fetch_watermarks(&partition.topic, partition.number, METADATA_TIMEOUT)
                    .map(|(_, high)| high)
                    .map_err(|error| {
                        SourceError::Unavailable(format!("end of {partition}: {error}"))
                    }),
            }
        })
        .collect()
}

/// Commit `positions` as consumer group `group`'s offsets, from outside the
/// group (it must have no members yet). A new group's consumer then starts
/// there instead of resetting to the start of the log, which could land
/// after the pipeline's seek to the same place and undo it. Blocking.
pub fn commit_offsets(
    kafka: &KafkaSettings,
    group: &str,
    positions: &[(Partition, i64)],
) -> Result<(), SourceError> {
    use rdkafka::consumer::CommitMode;
    use rdkafka::{Offset, TopicPartitionList};
    if positions.is_empty() {
        return Ok(());
    }
    let consumer = throwaway(kafka, group, "offset writer")?;
    let mut list = TopicPartitionList::new();
    for (partition, offset) in positions {
        list.add_partition_offset(&partition.topic, partition.number, Offset::Offset(*offset))
            .map_err(|error| SourceError::Permanent(format!("{partition}: {error}")))?;
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .map_err(|error| SourceError::Unavailable(format!("offsets of group {group}: {error}")))
}
