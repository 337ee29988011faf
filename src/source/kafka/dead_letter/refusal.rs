//! Why the producer did not deliver a dead letter, decided once, where the
//! error is born: librdkafka's error code says whether waiting helps, a
//! smaller letter helps, or nothing does.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The broker or the client cannot take it now: the same letter may pass later.
    Transient,
    /// This letter cannot be written as it is (too large, invalid): it never
    /// will, but a smaller form of it may.
    Letter,
    /// Nothing can be written to the dead-letter topic: a configuration to fix.
    Topic,
}

pub fn classify(error: &KafkaError) -> Refusal {
    match error.rdkafka_error_code() {
        Some(code) => classify_code(code),
        // No code: the producer went away (`Canceled`) or similar; retrying is
        // what the previous behaviour did for everything, and it is safe.
        None => Refusal::Transient,
    }
}

pub fn classify_code(code: RDKafkaErrorCode) -> Refusal {
    use RDKafkaErrorCode as Code;
    match code {
        // Refused for the record itself: librdkafka's own check of
        // `message.max.bytes` (before sending), the broker's of the topic's
        // `max.message.bytes` (MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE),
        // and its validation (CORRUPT_MESSAGE, INVALID_RECORD, ...).
        Code::MessageSizeTooLarge
        | Code::MessageBatchTooLarge
        | Code::InvalidMessageSize
        | Code::InvalidMessage
        | Code::InvalidRecord
        | Code::InvalidTimestamp
        | Code::InvalidArgument
        | Code::BadMessage => Refusal::Letter,
        // Refused whatever the letter: no smaller form passes either.
        Code::TopicAuthorizationFailed
        | Code::ClusterAuthorizationFailed
        | Code::TransactionalIdAuthorizationFailed
        | Code::Authentication
        | Code::SaslAuthenticationFailed
        | Code::InvalidTopic
        | Code::InvalidRequiredAcks
        | Code::UnsupportedForMessageFormat
        | Code::UnsupportedCompressionType
        | Code::UnsupportedVersion
        | Code::InvalidProducerEpoch
        | Code::ProducerFenced
        | Code::Fatal => Refusal::Topic,
        // Everything else is an outage or a race that passes: brokers down or
        // moving (MessageTimedOut, transport, leader changes, too few
        // replicas), a full local queue, a batch refused for another record
        // (InvalidDifferentRecord), a topic not created yet. The pipeline
        // retries with capped backoff and reports itself not ready meanwhile.
        _ => Refusal::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_by_what_helps() {
        use RDKafkaErrorCode as Code;
        let table = [
            (Code::MessageSizeTooLarge, Refusal::Letter),
            (Code::MessageBatchTooLarge, Refusal::Letter),
            (Code::InvalidRecord, Refusal::Letter),
            (Code::InvalidMessage, Refusal::Letter),
            (Code::InvalidMessageSize, Refusal::Letter),
            (Code::InvalidArgument, Refusal::Letter),
            (Code::MessageTimedOut, Refusal::Transient),
            (Code::QueueFull, Refusal::Transient),
            (Code::AllBrokersDown, Refusal::Transient),
            (Code::BrokerTransportFailure, Refusal::Transient),
            (Code::RequestTimedOut, Refusal::Transient),
            (Code::NotLeaderForPartition, Refusal::Transient),
            (Code::NotEnoughReplicas, Refusal::Transient),
            (Code::InvalidDifferentRecord, Refusal::Transient),
            (Code::UnknownTopicOrPartition, Refusal::Transient),
            (Code::TopicAuthorizationFailed, Refusal::Topic),
            (Code::InvalidTopic, Refusal::Topic),
            (Code::Fatal, Refusal::Topic),
        ];
        for (code, expected) in table {
            assert_eq!(classify_code(code), expected, "{code:?}");
        }
    }

    #[test]
    fn the_errors_the_producer_returns_carry_their_code() {
        let local = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(classify(&local), Refusal::Letter);
        let timeout = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert_eq!(classify(&timeout), Refusal::Transient);
        assert_eq!(classify(&KafkaError::Canceled), Refusal::Transient);
    }
}
