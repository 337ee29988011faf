//! The letter forms as values, and the producer against librdkafka's mock
//! cluster: cut letters land, a broker limit below the producer's is found by
//! halving, a topic that refuses everything is a permanent error, and a retry
//! after a partial failure sends only what was not delivered.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers as _, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::letter::{self, Form, ORIGINAL_SHA256, ORIGINAL_SIZE, TRUNCATED};
use super::*;
use crate::config::Settings;
use crate::event::{Position, RawRecord};

fn letter(offset: i64, key: &str, payload: Vec<u8>) -> DeadLetter {
    DeadLetter {
        record: RawRecord {
            position: Position {
                topic: "shop.orders".into(),
                partition: 3,
                offset,
            },
            key: Some(key.as_bytes().to_vec()),
            payload: Some(payload),
            headers: vec![
                ("ce_type".to_owned(), Some(b"shop.order.placed".to_vec())),
                ("empty".to_owned(), None),
            ],
            timestamp_ms: None,
        },
        projection: Some("order_summary".to_owned()),
        reason: "invalid_json",
        error: "expected value at line 1 column 1".to_owned(),
    }
}

fn header<'e>(encoded: &'e Encoded<'_>, name: &str) -> Option<&'e str> {
    encoded
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| value.as_deref())
        .map(|value| std::str::from_utf8(value).unwrap())
}

#[test]
fn a_letter_that_fits_goes_whole_with_the_original_headers_first() {
    let small = letter(7, "ord-1", b"{not json".to_vec());
    assert_eq!(letter::first(&small, 1_000_000), Form::Whole);
    let encoded = letter::encode(&small, Form::Whole);
    assert_eq!(encoded.payload, Some(&b"{not json"[..]));
    assert_eq!(encoded.key, Some(&b"ord-1"[..]));
    assert_eq!(encoded.headers[0].0, "ce_type");
    assert_eq!(encoded.headers[1], ("empty".to_owned(), None));
    assert_eq!(header(&encoded, "projectionist.source.offset"), Some("7"));
    assert_eq!(header(&encoded, TRUNCATED), None);
}

#[test]
fn an_oversized_letter_is_cut_to_the_local_limit_and_says_so() {
    let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let big = letter(8, "ord-2", payload.clone());
    let form = letter::first(&big, 1_000_000);
    assert_eq!(form, Form::Truncated { budget: 1_000_000 });
    let encoded = letter::encode(&big, form);
    let size = encoded.size();
    assert!((999_000..=1_000_000).contains(&size), "{size} bytes");
    let kept = encoded.payload.unwrap();
    assert_eq!(kept, &payload[..kept.len()], "a prefix of the original");
    assert_eq!(encoded.key, Some(&b"ord-2"[..]));
    assert_eq!(header(&encoded, "ce_type"), Some("shop.order.placed"));
    assert_eq!(header(&encoded, TRUNCATED), Some("true"));
    assert_eq!(header(&encoded, ORIGINAL_SIZE), Some("2000000"));
    let digest = header(&encoded, ORIGINAL_SHA256).unwrap();
    assert_eq!(digest, letter::sha256_hex(&payload));
    assert_eq!(
        header(&encoded, "projectionist.source.topic"),
        Some("shop.orders")
    );
}

#[test]
fn the_digest_is_sha256() {
    assert_eq!(
        letter::sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn shrinking_halves_down_to_the_bare_letter_and_stops_there() {
    let big = letter(9, "ord-3", vec![b'x'; 3_000_000]);
    let mut form = letter::first(&big, 1_000_000);
    let mut sizes = vec![letter::encode(&big, form).size()];
    while let Some(next) = letter::smaller(&big, form, *sizes.last().unwrap(), 1_000_000) {
        form = next;
        sizes.push(letter::encode(&big, form).size());
        assert!(sizes.len() < 20, "no end in sight: {sizes:?}");
    }
    assert_eq!(form, Form::Bare);
    for pair in sizes.windows(2) {
        assert!(pair[1] <= pair[0] / 2 + 1 || pair[1] < 1_000, "{sizes:?}");
    }
    let bare = letter::encode(&big, Form::Bare);
    assert_eq!((bare.key, bare.payload), (None, None));
    assert_eq!(header(&bare, "projectionist.source.offset"), Some("9"));
    assert_eq!(header(&bare, ORIGINAL_SIZE), Some("3000000"));
    assert!(header(&bare, "ce_type").is_none());
}

#[test]
fn a_long_error_is_cut_at_a_character_boundary_in_a_cut_letter() {
    let mut big = letter(10, "ord-4", vec![b'x'; 10]);
    big.error = "é".repeat(5_000);
    let encoded = letter::encode(&big, Form::Bare);
    let error = header(&encoded, "projectionist.error").unwrap();
    assert!(
        error.len() <= 1024 && error.len() >= 1022,
        "{}",
        error.len()
    );
}

/// The mock cluster, its dead-letter topic, and a sink writing to it.
fn sink(
    cluster: &MockCluster<'_, impl rdkafka::ClientContext>,
    partitions: i32,
) -> KafkaDeadLetters {
    let topic = "dead-letters";
    cluster.create_topic(topic, partitions, 1).unwrap();
    let mut kafka = Settings::defaults().kafka;
    kafka.brokers = cluster.bootstrap_servers();
    for (name, value) in [
        ("message.timeout.ms", "1500"),
        ("reconnect.backoff.max.ms", "200"),
        ("linger.ms", "5"),
    ] {
        kafka.properties.insert(name.to_owned(), value.to_owned());
    }
    KafkaDeadLetters::new(&kafka, topic, Metrics::new()).unwrap()
}

/// Every record of the topic, read until `expected` arrived and one more
/// second passed (so a duplicate would be seen too).
fn read_back(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Vec<RawRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "dead-letter-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut records = Vec::new();
    let mut deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.unwrap();
        let headers = message.headers().map_or_else(Vec::new, |headers| {
            headers
                .iter()
                .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                .collect()
        });
        records.push(RawRecord {
            position: Position {
                topic: topic.into(),
                partition: message.partition(),
                offset: message.offset(),
            },
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: None,
        });
        if records.len() == expected {
            deadline = Instant::now() + Duration::from_secs(1);
        }
    }
    records
}

fn text<'r>(record: &'r RawRecord, name: &str) -> Option<&'r str> {
    record
        .headers
        .iter()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| value.as_deref())
        .map(|value| std::str::from_utf8(value).unwrap())
}

#[tokio::test]
async fn a_letter_over_the_producer_limit_lands_cut_beside_a_whole_one() {
    let cluster = MockCluster::new(1).unwrap();
    let sink = sink(&cluster, 1);
    let letters = [
        letter(1, "ord-1", vec![b'x'; 1_500_000]),
        letter(2, "ord-2", b"{not json".to_vec()),
    ];
    sink.send(&letters).await.unwrap();
    let records = read_back(&cluster.bootstrap_servers(), "dead-letters", 1, 2);
    assert_eq!(records.len(), 2);
    let cut = records
        .iter()
        .find(|r| text(r, "projectionist.source.offset") == Some("1"));
    let cut = cut.expect("the big letter landed");
    assert_eq!(text(cut, TRUNCATED), Some("true"));
    assert_eq!(text(cut, ORIGINAL_SIZE), Some("1500000"));
    let kept = cut.payload.as_ref().unwrap().len();
    assert!((990_000..1_000_000).contains(&kept), "{kept} bytes kept");
    let whole = records
        .iter()
        .find(|r| text(r, "projectionist.source.offset") == Some("2"));
    let whole = whole.expect("the small letter landed");
    assert_eq!(whole.payload.as_deref(), Some(&b"{not json"[..]));
    assert_eq!(text(whole, TRUNCATED), None);
    assert_eq!(sink.metrics.dead_letters_truncated.get(), 1);
}

#[tokio::test]
async fn a_broker_limit_below_the_producer_limit_is_found_by_halving() {
    let cluster = MockCluster::new(1).unwrap();
    let sink = sink(&cluster, 1);
    // The broker refuses the letter three times: in its first batch, alone,
    // and cut to half; cut to a quarter, it passes.
    let too_large = RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
    cluster.request_errors(RDKafkaApiKey::Produce, &[too_large; 3]);
    let payload = vec![b'y'; 400_000];
    sink.send(&[letter(5, "ord-5", payload)]).await.unwrap();
    let records = read_back(&cluster.bootstrap_servers(), "dead-letters", 1, 1);
    assert_eq!(records.len(), 1);
    let kept = records[0].payload.as_ref().unwrap().len();
    assert!((90_000..100_000).contains(&kept), "{kept} bytes kept");
    assert_eq!(text(&records[0], ORIGINAL_SIZE), Some("400000"));
    assert_eq!(sink.metrics.dead_letters_truncated.get(), 1);
}

#[tokio::test]
async fn a_topic_that_refuses_even_a_bare_letter_is_a_permanent_error() {
    let cluster = MockCluster::new(1).unwrap();
    let sink = sink(&cluster, 1);
    let too_large = RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
    cluster.request_errors(RDKafkaApiKey::Produce, &[too_large; 40]);
    let error = sink
        .send(&[letter(6, "ord-6", vec![b'z'; 400_000])])
        .await
        .unwrap_err();
    assert!(!error.is_transient(), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("\"dead-letters\"") && message.contains("bytes"),
        "{message}"
    );
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
}

#[tokio::test]
async fn a_retry_after_a_partial_failure_sends_only_the_undelivered_letters() {
    let cluster = MockCluster::new(2).unwrap();
    let sink = sink(&cluster, 2);
    cluster
        .partition_leader("dead-letters", 0, Some(1))
        .unwrap();
    cluster
        .partition_leader("dead-letters", 1, Some(2))
        .unwrap();
    let letters: Vec<DeadLetter> = (0..12)
        .map(|offset| letter(offset, &format!("key-{offset}"), b"garbage".to_vec()))
        .collect();
    cluster.broker_down(2).unwrap();
    let error = sink.send(&letters).await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    let delivered_while_down: usize = sink.delivered().values().sum();
    assert!(
        (1..12).contains(&delivered_while_down),
        "the premise: some letters went to the live broker ({delivered_while_down})"
    );
    cluster.broker_up(2).unwrap();
    let mut calls = 1;
    while let Err(error) = sink.send(&letters).await {
        assert!(error.is_transient(), "{error}");
        calls += 1;
        assert!(calls < 20, "the broker never came back: {error}");
    }
    let records = read_back(&cluster.bootstrap_servers(), "dead-letters", 2, 12);
    let mut per_offset: BTreeMap<String, usize> = BTreeMap::new();
    for record in &records {
        let offset = text(record, "projectionist.source.offset").unwrap();
        *per_offset.entry(offset.to_owned()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = (0..12).map(|o| (o.to_string(), 1)).collect();
    assert_eq!(per_offset, expected, "each letter exactly once");
    assert!(sink.delivered().is_empty(), "a finished call forgets");
}
