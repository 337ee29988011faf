//! Producing fixtures: single records that wait for their delivery, bulk
//! records for benchmarks that let the client batch them, and bulk records
//! one per batch for tests that restart consumers.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders, ToBytes};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use std::collections::VecDeque;

use super::{Broker, PRODUCER_SETTINGS, REQUEST_TIMEOUT, UNBATCHED_PRODUCERS, UNBATCHED_SETTINGS};

impl Broker {
    fn producer(&self) -> &FutureProducer {
        self.producer.get_or_init(|| {
            let mut config = self.client_config();
            for (key, value) in PRODUCER_SETTINGS {
                config.set(*key, *value);
            }
            config.create().expect("a producer from a valid config")
        })
    }

    /// Produces one record and waits for its delivery; returns its
    /// (partition, offset). Without `partition` the key picks one.
    pub async fn produce<K, P>(
        &self,
        topic: &str,
        key: &K,
        payload: &P,
        headers: &[(&str, &[u8])],
        partition: Option<i32>,
    ) -> (i32, i64)
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let mut owned_headers = OwnedHeaders::new_with_capacity(headers.len());
        for (name, value) in headers {
            owned_headers = owned_headers.insert(Header {
                key: name,
                value: Some(*value),
            });
        }
        let mut record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(owned_headers);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        match self.producer().send(record, REQUEST_TIMEOUT).await {
            Ok(delivery) => (delivery.partition, delivery.offset),
            Err((error, _)) => panic!("producing to {topic} failed: {error}"),
        }
    }

    /// Produces many keyed records as fast as the client batches them and
    /// waits until every one is delivered; returns how many were sent.
    /// Records share batches: on tansu a consumer that resumes inside one
    /// skips its rest (see the module docs), so restart tests use `produce`
    /// or `produce_unbatched`.
    pub async fn produce_many<I, K, P>(&self, topic: &str, records: I) -> usize
    where
        I: IntoIterator<Item = (K, P)>,
        K: AsRef<[u8]>,
        P: AsRef<[u8]>,
    {
        let records = records
            .into_iter()
            .map(|(key, payload)| (None, key, payload));
        send_all(self.producer(), topic, records).await
    }

    /// Produces `(partition, key, payload)` records, each one a record batch
    /// of its own ([`UNBATCHED_SETTINGS`]), and waits until every one is
    /// delivered; returns how many were sent. tansu serves one connection's
    /// requests one at a time (about 3.5k single-record batches/s), so each
    /// partition gets a connection of its own, up to [`UNBATCHED_PRODUCERS`]:
    /// 6k-14k records/s over 4 partitions on the 2-core machine. Not several
    /// connections per partition: with a partition's records spread over 8
    /// connections at once, 2 of 4 rebalance trials (daemon without
    /// checkpoints) lost one record and applied the next one twice; 0 of 4
    /// with one connection per partition. Cause unknown. Keep a
    /// call to a few thousand records per partition: a record still queued
    /// after `message.timeout.ms` (10 s) fails the call.
    pub async fn produce_unbatched<K, P>(&self, topic: &str, records: Vec<(i32, K, P)>) -> usize
    where
        K: AsRef<[u8]>,
        P: AsRef<[u8]>,
    {
        let producers = self.unbatched_producers.get_or_init(|| {
            let mut config = self.client_config();
            for (key, value) in PRODUCER_SETTINGS.iter().chain(UNBATCHED_SETTINGS) {
                config.set(*key, *value);
            }
            (0..UNBATCHED_PRODUCERS)
                .map(|_| config.create().expect("a producer from a valid config"))
                .collect()
        });
        let mut shares: Vec<Vec<_>> = producers.iter().map(|_| Vec::new()).collect();
        for (partition, key, payload) in records {
            let producer = partition.unsigned_abs() as usize % producers.len();
            shares[producer].push((Some(partition), key, payload));
        }
        let sends = producers
            .iter()
            .zip(shares)
            .map(|(producer, share)| send_all(producer, topic, share));
        futures::future::join_all(sends).await.into_iter().sum()
    }
}

/// Sends every record without waiting for each delivery (the client queue
/// bounds what is in flight), then waits for all of them.
async fn send_all<I, K, P>(producer: &FutureProducer, topic: &str, records: I) -> usize
where
    I: IntoIterator<Item = (Option<i32>, K, P)>,
    K: AsRef<[u8]>,
    P: AsRef<[u8]>,
{
    let mut in_flight: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut sent = 0;
    for (partition, key, payload) in records {
        let mut record = FutureRecord::to(topic)
            .key(key.as_ref())
            .payload(payload.as_ref());
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break in_flight.push_back(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    // The client's queue is full: let the oldest record land.
                    match in_flight.pop_front() {
                        Some(oldest) => expect_delivered(topic, oldest).await,
                        None => tokio::task::yield_now().await,
                    }
                }
                Err((error, _)) => panic!("producing to {topic} failed: {error}"),
            }
        }
        sent += 1;
    }
    for delivery in in_flight {
        expect_delivered(topic, delivery).await;
    }
    sent
}

async fn expect_delivered(topic: &str, delivery: DeliveryFuture) {
    match delivery.await {
        Ok(Ok(_)) => {}
        Ok(Err((error, _))) => panic!("producing to {topic} failed: {error}"),
        Err(_) => panic!("producing to {topic}: the producer dropped the delivery report"),
    }
}
