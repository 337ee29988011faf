//! The dead-letter topic: a failed record's original key, payload and headers,
//! plus headers saying what failed, why, and where it came from.

use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::KafkaSettings;
use crate::source::{DeadLetter, DeadLetters, SourceError};

/// How long one dead letter may wait for the broker before the batch retries.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct KafkaDeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl KafkaDeadLetters {
    pub fn new(settings: &KafkaSettings, topic: &str) -> Result<Self, SourceError> {
        let producer = super::client_config(settings)
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .create()
            .map_err(|error| SourceError::Permanent(format!("dead-letter producer: {error}")))?;
        Ok(KafkaDeadLetters {
            producer,
            topic: topic.to_owned(),
        })
    }
}

fn headers(letter: &DeadLetter) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    for (key, value) in &letter.record.headers {
        headers = headers.insert(Header {
            key,
            value: value.as_deref(),
        });
    }
    let position = &letter.record.position;
    let partition = position.partition.to_string();
    let offset = position.offset.to_string();
    let ours = [
        ("projectionist.error", letter.error.as_str()),
        ("projectionist.reason", letter.reason),
        (
            "projectionist.projection",
            letter.projection.as_deref().unwrap_or(""),
        ),
        ("projectionist.source.topic", position.topic.as_str()),
        ("projectionist.source.partition", partition.as_str()),
        ("projectionist.source.offset", offset.as_str()),
    ];
    for (key, value) in ours {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    headers
}

#[async_trait]
impl DeadLetters for KafkaDeadLetters {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), SourceError> {
        let deliveries = letters.iter().map(|letter| {
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.topic).headers(headers(letter));
            if let Some(key) = &letter.record.key {
                record = record.key(key.as_slice());
            }
            if let Some(payload) = &letter.record.payload {
                record = record.payload(payload.as_slice());
            }
            self.producer.send(record, DELIVERY_TIMEOUT)
        });
        for delivery in join_all(deliveries).await {
            if let Err((error, _)) = delivery {
                // Every producer error is worth a retry here: the letters must land
                // before the offsets move, and a resend only duplicates a letter.
                return Err(SourceError::Unavailable(format!(
                    "dead-letter topic {:?}: {error}",
                    self.topic
                )));
            }
        }
        Ok(())
    }
}
