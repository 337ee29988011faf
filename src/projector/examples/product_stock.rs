//! `product_stock`: one projection per sku with the quantity `available`:
//! received stock adds, items put in orders take away, removed items give back.
//!
//! `available` may go negative: an oversold sku is information for the shop,
//! not a broken event.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fields;
use crate::event::Event;
use crate::projector::{Outcome, Projector, ProjectorError};

pub const NAME: &str = "product_stock";

#[derive(Debug, Clone, Copy, Default)]
pub struct ProductStockProjector;

#[derive(Debug, Serialize, Deserialize)]
struct ProductStock {
    sku: String,
    available: i64,
}

impl Projector for ProductStockProjector {
    fn project(&self, current: Option<&Value>, event: &Event) -> Result<Outcome, ProjectorError> {
        let takes_from_stock = match event.event_type.as_str() {
            "shop.stock.received" | "shop.order.item_removed" => false,
            "shop.order.item_added" => true,
            _ => return Ok(Outcome::Skip),
        };
        let sku = fields::string(event, "sku")?;
        let quantity = fields::positive(event, "quantity")?;
        let mut stock =
            fields::current::<ProductStock>(current, NAME)?.unwrap_or_else(|| ProductStock {
                sku: sku.to_owned(),
                available: 0,
            });
        let available = if takes_from_stock {
            stock.available.checked_sub(quantity)
        } else {
            stock.available.checked_add(quantity)
        };
        stock.available = available.ok_or_else(|| fields::overflow(event, "available"))?;
        fields::upsert(&stock)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::projector::examples::fields::testing::event;

    const T: Option<&str> = Some("2024-05-01T10:00:00Z");

    fn stock(available: i64) -> Value {
        json!({"sku": "sku-a", "available": available})
    }

    fn item(event_type: &str, quantity: i64) -> Event {
        event(
            event_type,
            T,
            json!({"order_id": "ord-1", "customer_id": "cus-1", "sku": "sku-a",
                   "quantity": quantity, "unit_price_cents": 250}),
        )
    }

    #[test]
    fn counts_stock_up_and_down() {
        let received = |quantity: i64| {
            event(
                "shop.stock.received",
                T,
                json!({"sku": "sku-a", "quantity": quantity}),
            )
        };
        let cases: Vec<(&str, Option<Value>, Event, Outcome)> = vec![
            (
                "first delivery",
                None,
                received(10),
                Outcome::Upsert(stock(10)),
            ),
            (
                "another delivery",
                Some(stock(10)),
                received(5),
                Outcome::Upsert(stock(15)),
            ),
            (
                "an item in an order takes from stock",
                Some(stock(10)),
                item("shop.order.item_added", 3),
                Outcome::Upsert(stock(7)),
            ),
            (
                "a removed item gives it back",
                Some(stock(7)),
                item("shop.order.item_removed", 2),
                Outcome::Upsert(stock(9)),
            ),
            (
                "overselling goes negative",
                Some(stock(1)),
                item("shop.order.item_added", 3),
                Outcome::Upsert(stock(-2)),
            ),
            (
                "an item for an unknown sku starts below zero",
                None,
                item("shop.order.item_added", 2),
                Outcome::Upsert(stock(-2)),
            ),
            (
                "other events are skipped",
                Some(stock(3)),
                event(
                    "shop.order.paid",
                    T,
                    json!({"order_id": "ord-1", "customer_id": "c"}),
                ),
                Outcome::Skip,
            ),
        ];
        for (name, current, event, expected) in cases {
            let outcome = ProductStockProjector.project(current.as_ref(), &event);
            assert_eq!(outcome, Ok(expected), "{name}");
        }
    }

    #[test]
    fn refuses_bad_events() {
        let cases: Vec<(&str, Option<Value>, Event, &str)> = vec![
            (
                "sku missing",
                None,
                event("shop.stock.received", T, json!({"quantity": 4})),
                "shop.stock.received: data field `sku` is missing",
            ),
            (
                "negative quantity",
                None,
                event(
                    "shop.stock.received",
                    T,
                    json!({"sku": "sku-a", "quantity": -4}),
                ),
                "shop.stock.received: data field `quantity` must be a positive integer, got -4",
            ),
            (
                "zero quantity",
                Some(stock(3)),
                item("shop.order.item_added", 0),
                "shop.order.item_added: data field `quantity` must be a positive integer, got 0",
            ),
            (
                "available overflows",
                Some(stock(i64::MIN + 1)),
                item("shop.order.item_added", 2),
                "shop.order.item_added: available overflows",
            ),
        ];
        for (name, current, event, message) in cases {
            let outcome = ProductStockProjector.project(current.as_ref(), &event);
            assert_eq!(outcome, Err(ProjectorError::new(message)), "{name}");
        }
    }
}
