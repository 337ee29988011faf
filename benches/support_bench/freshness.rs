//! Freshness from outside: events produced at a steady rate, each timed from
//! just before it is handed to the producer until a reader sees it: in Redis
//! (its keyspace notifications) for the daemon, and on a plain consumer with
//! the daemon's fetch settings (the broker's own floor), both on the same
//! events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use super::support::kafka::{Broker, unique};

/// When each event was produced, by order id.
type Sent = Arc<Mutex<HashMap<String, Instant>>>;

/// Milliseconds from production to being seen, of every event seen.
pub struct Latencies(Vec<f64>);

impl Latencies {
    fn quantile(&self, q: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let at = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(at).copied().unwrap_or(f64::NAN)
    }

    pub fn line(&self, what: &str) -> String {
        format!(
            "{what}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} events)",
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(1.0),
            self.0.len()
        )
    }

    pub fn p99(&self) -> f64 {
        self.quantile(0.99)
    }
}

/// Produce `rate` events per second for `seconds` to `topic` (new orders, so
/// each makes an `order_summary:::{id}`), while the daemon already runs, and
/// time each until it is in Redis at `redis_url` and on a plain consumer.
pub async fn measure(
    broker: &Broker,
    topic: &str,
    redis_url: &str,
    rate: u32,
    seconds: u32,
) -> (Latencies, Latencies) {
    let total = (rate * seconds) as usize;
    let sent: Sent = Arc::default();
    let floor = {
        let (sent, config, topic) = (
            Arc::clone(&sent),
            super::daemon::fetching_as_the_daemon(broker.consumer_config(&unique("floor"))),
            topic.to_owned(),
        );
        std::thread::spawn(move || consume_floor(config, &topic, &sent, total))
    };
    let watcher = {
        let (sent, url) = (Arc::clone(&sent), redis_url.to_owned());
        tokio::spawn(async move { watch_redis(&url, &sent, total).await })
    };
    // The floor consumer's group joins first, so it sees every event.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let producing = {
        let (sent, config, topic) = (Arc::clone(&sent), broker.client_config(), topic.to_owned());
        std::thread::spawn(move || produce_steadily(config, &topic, &sent, rate, total))
    };
    let daemon = watcher.await.expect("the redis watcher");
    producing.join().expect("the producer thread");
    let floor = floor.join().expect("the floor consumer thread");
    (daemon, floor)
}

fn produce_steadily(
    mut config: rdkafka::ClientConfig,
    topic: &str,
    sent: &Sent,
    rate: u32,
    total: usize,
) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        // A couple of milliseconds of batching: tansu takes one produce
        // request at a time per connection (a few thousand a second), so
        // unbatched sends at 20,000/s would queue for seconds in the producer
        // and the figures would be the producer's.
        config.set("linger.ms", "2").create().expect("a producer");
    let run = unique("fresh");
    let started = Instant::now();
    for n in 0..total {
        let due = started + Duration::from_secs_f64(n as f64 / f64::from(rate));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let id = format!("{run}-{n}");
        // Customers spread as a shop's are: `customer_orders` lists each
        // customer's orders, and one customer with every order would make
        // each event rewrite a list of them all. They are this run's own:
        // each event rewrites its customer's whole list, so customers shared
        // with an earlier run (another build's, the catch-up's) would make
        // every event cost more than the same event did then, and whichever
        // build ran second looked slower.
        let customer = format!("{run}-cus-{}", n % 10_000);
        let event = serde_json::json!({"specversion": "1.0", "type": "shop.order.placed",
            "id": id, "source": "/bench", "time": chrono::Utc::now().to_rfc3339(),
            "data": {"order_id": id, "customer_id": customer, "currency": "EUR"}})
        .to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some("application/cloudevents+json"),
        });
        sent.lock().unwrap().insert(id.clone(), Instant::now());
        let mut record = BaseRecord::to(topic)
            .key(&id)
            .payload(&event)
            .headers(headers);
        while let Err((_, back)) = producer.send(record) {
            record = back;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("every event delivered");
}

fn consume_floor(
    config: rdkafka::ClientConfig,
    topic: &str,
    sent: &Sent,
    total: usize,
) -> Latencies {
    let mut config = config;
    let consumer: BaseConsumer = config
        .set("auto.offset.reset", "latest")
        .create()
        .expect("a consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = Vec::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < total && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let now = Instant::now();
        let Some(id) = message.key().and_then(|key| std::str::from_utf8(key).ok()) else {
            continue;
        };
        if let Some(at) = sent.lock().unwrap().get(id) {
            seen.push(now.duration_since(*at).as_secs_f64() * 1000.0);
        }
    }
    Latencies(seen)
}

/// Watch Redis for the events produced: keyspace notifications tell the
/// moment each `order_summary` key is written, without the load that polling
/// for tens of thousands of keys every millisecond would put on Redis (and so
/// on the daemon being measured).
async fn watch_redis(url: &str, sent: &Sent, total: usize) -> Latencies {
    let client = redis::Client::open(url).expect("a redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis answers");
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "notify-keyspace-events", "K$"])
        .query_async(&mut connection)
        .await
        .expect("CONFIG SET notify-keyspace-events");
    let mut pubsub = client
        .get_async_pubsub()
        .await
        .expect("a pubsub connection");
    pubsub
        .psubscribe("__keyspace@*__:order_summary:::*")
        .await
        .expect("PSUBSCRIBE");
    let mut messages = pubsub.into_on_message();
    let mut seen = Vec::with_capacity(total);
    let mut found = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < total {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, messages.next()).await else {
            break;
        };
        let now = Instant::now();
        let channel = message.get_channel_name();
        let Some(id) = channel.split_once(":::").map(|(_, id)| id) else {
            continue;
        };
        if found.contains(id) {
            continue;
        }
        if let Some(at) = sent.lock().unwrap().get(id) {
            seen.push(now.duration_since(*at).as_secs_f64() * 1000.0);
            found.insert(id.to_owned());
        }
    }
    Latencies(seen)
}
