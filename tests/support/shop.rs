//! A deterministic shop story of any size, and the reference fold of it: what
//! the projections must be once every event is applied exactly once.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use projectionist::config::Settings;
use projectionist::event::{Event, Position};
use projectionist::projection::load_dir;
use projectionist::projector::{Outcome, Registry};

/// One record to produce: topic, key, CloudEvent (structured mode).
#[derive(Debug, Clone)]
pub struct ShopRecord {
    pub topic: String,
    pub key: String,
    pub event: Value,
}

impl ShopRecord {
    pub fn payload(&self) -> Vec<u8> {
        self.event.to_string().into_bytes()
    }

    /// As a line of an event file, for the offline pipeline.
    pub fn to_fixture(&self) -> projectionist::fixtures::FixtureRecord {
        projectionist::fixtures::FixtureRecord {
            topic: self.topic.clone(),
            key: Some(self.key.clone()),
            partition: None,
            event: self.event.clone(),
        }
    }
}

/// A tiny deterministic generator (no `rand` needed for a story).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// `orders` orders from `customers` customers over 5 skus, interleaved the way
/// a live shop would produce them; stock arrives on the inventory topic.
pub fn story(
    orders_topic: &str,
    inventory_topic: &str,
    orders: usize,
    customers: usize,
) -> Vec<ShopRecord> {
    story_with_items(orders_topic, inventory_topic, orders, customers, 3)
}

/// [`story`] with `items` item events per order (about `items + 3` events each).
pub fn story_with_items(
    orders_topic: &str,
    inventory_topic: &str,
    orders: usize,
    customers: usize,
    items: u32,
) -> Vec<ShopRecord> {
    let skus = ["sku-mug", "sku-tee", "sku-cap", "sku-pen", "sku-bag"];
    let mut rng = Lcg(42);
    let mut records = Vec::new();
    let mut next_id = 0u64;
    let mut event = |topic: &str,
                     key: &str,
                     kind: &str,
                     data: Value,
                     records: &mut Vec<ShopRecord>| {
        next_id += 1;
        let minute = next_id;
        records.push(ShopRecord {
            topic: topic.to_owned(),
            key: key.to_owned(),
            event: json!({
                "specversion": "1.0",
                "type": kind,
                "id": format!("evt-{next_id}"),
                "source": "/shop",
                "time": format!("2026-11-{:02}T{:02}:{:02}:00Z", 1 + (minute / 1440) % 28, (minute / 60) % 24, minute % 60),
                "data": data,
            }),
        });
    };
    for sku in skus {
        event(
            inventory_topic,
            sku,
            "shop.stock.received",
            json!({"sku": sku, "quantity": 1000}),
            &mut records,
        );
    }
    // Each order walks through its life in steps; orders advance round-robin so
    // that consecutive records belong to different orders and partitions.
    let mut active: Vec<(usize, u32)> = Vec::new();
    let mut started = 0;
    while started < orders || !active.is_empty() {
        if started < orders && (active.len() < 50 || started % 3 == 0) {
            active.push((started, 0));
            started += 1;
        }
        let slot = rng.next(active.len() as u64) as usize;
        let (order, step) = active[slot];
        let order_id = format!("ord-{order}");
        let customer_id = format!("cus-{}", order % customers);
        let base = json!({"order_id": order_id, "customer_id": customer_id});
        let with = |extra: Value| {
            let mut data = base.clone();
            data.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            data
        };
        let sku = skus[(order + step as usize) % skus.len()];
        let done = match step {
            0 => {
                event(
                    orders_topic,
                    &order_id,
                    "shop.order.placed",
                    with(json!({"currency": "EUR"})),
                    &mut records,
                );
                false
            }
            step if step <= items => {
                let quantity = 1 + rng.next(3);
                event(
                    orders_topic,
                    &order_id,
                    "shop.order.item_added",
                    with(
                        json!({"sku": sku, "quantity": quantity, "unit_price_cents": 250 * (1 + rng.next(8))}),
                    ),
                    &mut records,
                );
                false
            }
            step if step == items + 1 && order % 4 == 0 => {
                event(
                    orders_topic,
                    &order_id,
                    "shop.order.item_removed",
                    with(json!({"sku": skus[(order + 1) % skus.len()], "quantity": 1})),
                    &mut records,
                );
                false
            }
            step if step == items + 1 => false,
            step if step == items + 2 => {
                event(
                    orders_topic,
                    &order_id,
                    "shop.order.paid",
                    with(json!({"amount_cents": 1})),
                    &mut records,
                );
                false
            }
            _ => {
                if order % 10 == 7 {
                    event(
                        orders_topic,
                        &order_id,
                        "shop.order.cancelled",
                        with(json!({"reason": "changed mind"})),
                        &mut records,
                    );
                } else {
                    event(
                        orders_topic,
                        &order_id,
                        "shop.order.shipped",
                        with(json!({})),
                        &mut records,
                    );
                }
                true
            }
        };
        if done {
            active.swap_remove(slot);
        } else {
            active[slot].1 = step + 1;
        }
    }
    records
}

/// Apply every record once, in order, through the shipped definitions (as the
/// daemon tests deploy them, topics retargeted): the projections (by cache key)
/// a correct pipeline must end with.
pub fn reference_fold(records: &[ShopRecord], orders_topic: &str) -> BTreeMap<String, Value> {
    let mut settings = Settings::defaults();
    settings.projections_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("projections");
    let definitions = load_dir(&settings, &Registry::with_builtins()).unwrap();
    let mut state: BTreeMap<String, Value> = BTreeMap::new();
    for (offset, record) in records.iter().enumerate() {
        // The definitions name the shipped topics; the story uses fresh ones.
        let topic = if record.topic == orders_topic {
            "shop.orders"
        } else {
            "shop.inventory"
        };
        let event = Event {
            event_type: record.event["type"].as_str().unwrap().to_owned(),
            id: record.event["id"].as_str().map(str::to_owned),
            source: Some("/shop".to_owned()),
            subject: None,
            time: record.event["time"]
                .as_str()
                .map(|time| time.parse().unwrap()),
            data: record.event["data"].clone(),
            position: Position {
                topic: topic.into(),
                partition: 0,
                offset: offset as i64,
            },
            traceparent: None,
        };
        for definition in &definitions {
            if !definition.consumes(topic, &event.event_type) {
                continue;
            }
            let identifier = definition.identifier.render(&event).unwrap();
            let key = format!("{}:::{identifier}", definition.name);
            match definition
                .projector
                .project(state.get(&key), &event)
                .unwrap()
            {
                Outcome::Upsert(value) => {
                    state.insert(key, value);
                }
                Outcome::Delete => {
                    state.remove(&key);
                }
                Outcome::Skip => {}
            }
        }
    }
    state
        .into_iter()
        .map(|(key, value)| (key, normalize(value)))
        .collect()
}

/// Orders of one customer (or paid on one day) may come from several
/// partitions, so their order in `customer_orders` (and `daily_sales`) depends
/// on interleaving: compare them sorted.
pub fn normalize(mut value: Value) -> Value {
    if let Some(orders) = value.get_mut("orders").and_then(Value::as_array_mut) {
        orders.sort_by(|a, b| a["order_id"].as_str().cmp(&b["order_id"].as_str()));
    }
    if let Some(order_ids) = value.get_mut("order_ids").and_then(Value::as_array_mut) {
        order_ids.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
    value
}

/// Produce `records` as structured CloudEvents, one request each (see
/// `tests/support/kafka.rs` on tansu and batches); the last one's
/// (partition, offset).
pub async fn produce(broker: &super::kafka::Broker, records: &[ShopRecord]) -> (i32, i64) {
    let structured: [(&str, &[u8]); 1] = [("content-type", b"application/cloudevents+json")];
    let mut last = (0, 0);
    for record in records {
        last = broker
            .produce(
                &record.topic,
                &record.key,
                &record.payload(),
                &structured,
                None,
            )
            .await;
    }
    last
}
