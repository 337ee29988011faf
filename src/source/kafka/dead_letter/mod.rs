//! The dead-letter topic: a failed record's original key, payload and headers,
//! plus headers saying what failed, why, and where it came from; and reading
//! it back for operators ([`list_letters`], [`read_letter`]) and for a replay
//! ([`KafkaLetterLog`]).
//!
//! Invariants: the line never stops for one letter, and no letter is sent
//! twice.
//! - A letter the producer or the broker refuses for its size (or as invalid)
//!   is sent again alone, then cut ([`letter::Form`]): the payload is cut to
//!   fit, with headers giving its original size and SHA-256, halving the budget
//!   on every further refusal. Only when even our headers alone are refused does
//!   [`KafkaDeadLetters::send`] fail, permanently: the topic is misconfigured.
//! - When some letters of a call are delivered and others fail transiently,
//!   the call fails transiently and remembers the delivered ones; the pipeline
//!   retries with the same letters, and only the others are sent.

mod browse;
mod letter;
mod log;
mod refusal;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tracing::warn;

pub use self::browse::{Letter, letter_partitions, list_letters, read_letter};
use self::letter::{Encoded, Form};
pub use self::log::KafkaLetterLog;
use self::refusal::{Refusal, classify};
use crate::config::KafkaSettings;
use crate::metrics::Metrics;
use crate::source::{DeadLetter, DeadLetters, SourceError};

/// How long one dead letter may wait for the broker before the batch retries
/// (`message.timeout.ms`, unless the properties set it).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

pub struct KafkaDeadLetters {
    producer: FutureProducer,
    topic: String,
    /// The producer's `message.max.bytes`: librdkafka refuses a larger record
    /// before sending it, so a letter over it starts out cut.
    local_limit: usize,
    metrics: Metrics,
    /// Letters delivered by the last call, which then failed transiently, and
    /// how many of each: the retry of that call does not send them again.
    delivered: Mutex<HashMap<LetterId, usize>>,
}

/// Which record a letter is about, and which failure: unique within a batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LetterId {
    topic: String,
    partition: i32,
    offset: i64,
    projection: Option<String>,
    reason: &'static str,
}

impl LetterId {
    fn of(letter: &DeadLetter) -> LetterId {
        let position = &letter.record.position;
        LetterId {
            topic: position.topic.to_string(),
            partition: position.partition,
            offset: position.offset,
            projection: letter.projection.clone(),
            reason: letter.reason,
        }
    }
}

/// One attempt that did not deliver.
struct Undelivered {
    refusal: Refusal,
    error: KafkaError,
    /// The size of the refused letter, as [`Encoded::size`] counts it.
    size: usize,
}

impl KafkaDeadLetters {
    pub fn new(
        settings: &KafkaSettings,
        topic: &str,
        metrics: Metrics,
    ) -> Result<Self, SourceError> {
        let mut config = super::client_config(settings);
        if !settings.properties.contains_key("message.timeout.ms") {
            config.set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            );
        }
        let local_limit = match settings.properties.get("message.max.bytes") {
            None => DEFAULT_MESSAGE_MAX_BYTES,
            Some(text) => text.trim().parse().map_err(|_| {
                SourceError::Permanent(format!(
                    "kafka.properties.\"message.max.bytes\" = {text:?} is not a number of bytes"
                ))
            })?,
        };
        let producer = config
            .create()
            .map_err(|error| SourceError::Permanent(format!("dead-letter producer: {error}")))?;
        Ok(KafkaDeadLetters {
            producer,
            topic: topic.to_owned(),
            local_limit,
            metrics,
            delivered: Mutex::new(HashMap::new()),
        })
    }

    /// Send one form of a letter and wait for its acknowledgement.
    async fn deliver(&self, letter: &DeadLetter, form: Form) -> Result<(), Undelivered> {
        let encoded = letter::encode(letter, form);
        let size = encoded.size();
        let record = self.record(&encoded);
        match self.producer.send(record, DELIVERY_TIMEOUT).await {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(Undelivered {
                refusal: classify(&error),
                error,
                size,
            }),
        }
    }

    fn record<'e>(&'e self, encoded: &'e Encoded<'_>) -> FutureRecord<'e, [u8], [u8]> {
        let mut headers = OwnedHeaders::new_with_capacity(encoded.headers.len());
        for (key, value) in &encoded.headers {
            headers = headers.insert(Header {
                key,
                value: value.as_deref(),
            });
        }
        let mut record = FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = encoded.key {
            record = record.key(key);
        }
        if let Some(payload) = encoded.payload {
            record = record.payload(payload);
        }
        record
    }

    /// A letter refused in `refused` form: send it again alone (a batch can be
    /// refused for its size as a whole), then smaller and smaller.
    async fn send_smaller(&self, letter: &DeadLetter, refused: Form) -> Result<(), SourceError> {
        let mut form = refused;
        loop {
            let failure = match self.deliver(letter, form).await {
                Ok(()) => {
                    self.note_truncated(letter, form);
                    return Ok(());
                }
                Err(failure) => failure,
            };
            match failure.refusal {
                Refusal::Transient => return Err(self.unavailable(&failure.error)),
                Refusal::Topic => return Err(self.unusable(&failure.error)),
                Refusal::Letter => {}
            }
            let Some(next) = letter::smaller(letter, form, failure.size, self.local_limit) else {
                return Err(SourceError::Permanent(format!(
                    "dead-letter topic {:?} refused even a letter with no payload, key or \
                     original headers ({} bytes): {}; raise the topic's max.message.bytes \
                     or fix what it refuses",
                    self.topic, failure.size, failure.error
                )));
            };
            warn!(
                topic = %letter.record.position.topic,
                partition = letter.record.position.partition,
                offset = letter.record.position.offset,
                refused_bytes = failure.size,
                error = %failure.error,
                "dead letter refused; sending it cut"
            );
            form = next;
        }
    }

    fn note_truncated(&self, letter: &DeadLetter, form: Form) {
        if form == Form::Whole {
            return;
        }
        self.metrics.dead_letters_truncated.inc();
        let position = &letter.record.position;
        warn!(
            topic = %position.topic,
            partition = position.partition,
            offset = position.offset,
            original_bytes = letter.record.payload.as_ref().map_or(0, Vec::len),
            ?form,
            "dead letter sent without its whole payload"
        );
    }

    fn unavailable(&self, error: &KafkaError) -> SourceError {
        SourceError::Unavailable(format!("dead-letter topic {:?}: {error}", self.topic))
    }

    fn unusable(&self, error: &KafkaError) -> SourceError {
        SourceError::Permanent(format!(
            "dead-letter topic {:?} cannot be written: {error}",
            self.topic
        ))
    }

    /// The delivered-letter memory, even after a panic elsewhere poisoned the
    /// lock: it is replaced whole, never left half-updated.
    fn delivered(&self) -> MutexGuard<'_, HashMap<LetterId, usize>> {
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl DeadLetters for KafkaDeadLetters {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), SourceError> {
        let mut earlier = std::mem::take(&mut *self.delivered());
        let mut delivered: HashMap<LetterId, usize> = HashMap::new();
        let mut pending = Vec::new();
        for letter in letters {
            let id = LetterId::of(letter);
            match earlier.get_mut(&id) {
                Some(count) if *count > 0 => {
                    *count -= 1;
                    *delivered.entry(id).or_default() += 1;
                }
                _ => pending.push((id, letter, letter::first(letter, self.local_limit))),
            }
        }
        let attempts = pending
            .iter()
            .map(|(_, letter, form)| self.deliver(letter, *form));
        let outcomes = join_all(attempts).await;
        let mut failure: Option<SourceError> = None;
        let mut refused = Vec::new();
        for ((id, letter, form), outcome) in pending.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => {
                    self.note_truncated(letter, form);
                    *delivered.entry(id).or_default() += 1;
                }
                Err(undelivered) => match undelivered.refusal {
                    Refusal::Letter => refused.push((id, letter, form)),
                    Refusal::Transient => {
                        failure.get_or_insert(self.unavailable(&undelivered.error));
                    }
                    Refusal::Topic => failure = Some(self.unusable(&undelivered.error)),
                },
            }
        }
        // One at a time, so each refused letter travels alone.
        for (id, letter, form) in refused {
            if failure.is_some() {
                break;
            }
            match self.send_smaller(letter, form).await {
                Ok(()) => *delivered.entry(id).or_default() += 1,
                Err(error) => failure = Some(error),
            }
        }
        match failure {
            None => Ok(()),
            Some(error) => {
                *self.delivered() = delivered;
                Err(error)
            }
        }
    }
}
