//! The librdkafka settings: the user's pass-through properties, the defaults
//! the daemon chooses (which those override), and the ones it owns.

use rdkafka::ClientConfig;

use crate::config::KafkaSettings;

/// The librdkafka settings shared by the consumer and the dead-letter producer:
/// the user's pass-through properties first, then the ones we own.
pub fn client_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (name, value) in &settings.properties {
        config.set(name, value);
    }
    config.set("bootstrap.servers", &settings.brokers);
    config
}

/// How long a fetch may wait at the broker for records to arrive. librdkafka's
/// 500 ms is spent in full by brokers that hold a fetch until it runs out
/// (tansu, some managed services), and then every event waits up to half a
/// second before the daemon sees it. Kafka answers as soon as a record is
/// there, so on Kafka a short wait only costs a fetch request per 10 ms while
/// the topic is quiet.
pub const FETCH_WAIT_MAX_MS: (&str, &str) = ("fetch.wait.max.ms", "10");

/// How much one fetch may bring back. Kafka caps each partition's share at
/// `max.partition.fetch.bytes` (1 MiB), so a fetch mixes partitions; brokers
/// that ignore that cap (tansu) fill librdkafka's 50 MiB from one partition,
/// and a catch-up then delivers the partitions in runs of tens of thousands
/// of records. 1 MiB a fetch cuts the runs to a few thousand. Which partition
/// fills a fetch is still the broker's choice (see the README's Freshness).
pub const FETCH_MAX_BYTES: (&str, &str) = ("fetch.max.bytes", "1048576");

/// How long librdkafka waits before fetching a partition again once its
/// prefetch queue was full (`queued.min.messages` per partition, or
/// `queued.max.messages.kbytes` in all). librdkafka's 1 s suits a consumer
/// that keeps up; the daemon catching up a backlog is slower than the fetch,
/// so the queue fills, drains while fetching is held off, and then the
/// pipeline sat idle for the rest of the second: four pauses of about 0.4 s
/// in a 7 s catch-up of 1M events (the pipeline bench's "pipeline busy").
/// A check per 10 ms per held-off partition costs nothing that shows.
pub const FETCH_QUEUE_BACKOFF_MS: (&str, &str) = ("fetch.queue.backoff.ms", "10");

/// How much librdkafka may prefetch per assigned partition. Its 64 MiB (and
/// `queued.min.messages`, 100,000) bound the one queue a consumer's
/// partitions share; the fetch thread gives each partition a queue of its
/// own (to take them in turn), and the bounds then hold per partition. 8 MiB
/// keeps a partition's queue deep enough that a catch-up's batches are runs
/// of one partition (see `queues`), and 8 assigned partitions prefetch at
/// most what the one shared queue could. A replica owning many more
/// partitions can lower it in `kafka.properties`.
pub const QUEUED_MAX_KBYTES: (&str, &str) = ("queued.max.messages.kbytes", "8192");

/// The consumer settings the daemon chooses unless `kafka.properties` does.
pub const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.auto.commit", "true"),
    ("auto.commit.interval.ms", "1000"),
    ("statistics.interval.ms", "5000"),
    ("session.timeout.ms", "30000"),
    FETCH_WAIT_MAX_MS,
    FETCH_MAX_BYTES,
    FETCH_QUEUE_BACKOFF_MS,
    QUEUED_MAX_KBYTES,
];

pub(super) fn consumer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = client_config(settings);
    for &(name, value) in CONSUMER_DEFAULTS {
        if !settings.properties.contains_key(name) {
            config.set(name, value);
        }
    }
    config
        .set("group.id", &settings.group_id)
        .set("auto.offset.reset", settings.start_from.as_librdkafka())
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    if let Some(id) = &settings.instance_id {
        config.set("group.instance.id", id);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn the_consumer_fetches_with_short_waits_unless_told_otherwise() {
        let mut kafka = Settings::defaults().kafka;
        assert_eq!(
            consumer_config(&kafka).get("fetch.wait.max.ms"),
            Some("10"),
            "librdkafka's 500 ms would hold every event that long on brokers that hold fetches"
        );
        assert_eq!(
            consumer_config(&kafka).get("fetch.max.bytes"),
            Some("1048576"),
            "a broker that ignores the per-partition cap would fill 50 MiB from one partition"
        );
        assert_eq!(
            consumer_config(&kafka).get("fetch.queue.backoff.ms"),
            Some("10"),
            "librdkafka's 1 s leaves a catching-up pipeline idle once its prefetch queue drains"
        );
        assert_eq!(
            consumer_config(&kafka).get("queued.max.messages.kbytes"),
            Some("8192"),
            "librdkafka's 64 MiB would hold per partition, each having a queue of its own"
        );
        kafka
            .properties
            .insert("fetch.wait.max.ms".to_owned(), "250".to_owned());
        assert_eq!(
            consumer_config(&kafka).get("fetch.wait.max.ms"),
            Some("250")
        );
    }
}
