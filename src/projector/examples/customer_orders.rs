//! `customer_orders`: one projection per customer (`customer_id`), listing their
//! orders in placement order with each one's status, and how many are open.
//!
//! Keyed differently from the record key (order id), so one customer's orders
//! may arrive from several partitions: each order's status only moves forward,
//! and an order seen first through a later event is appended then.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fields;
use crate::event::Event;
use crate::projector::{Outcome, Projector, ProjectorError};

pub const NAME: &str = "customer_orders";

#[derive(Debug, Clone, Copy, Default)]
pub struct CustomerOrdersProjector;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Placed,
    Paid,
    Shipped,
    Cancelled,
}

impl Status {
    /// How far along the order is; shipped and cancelled are both final.
    fn progress(self) -> u8 {
        match self {
            Status::Placed => 0,
            Status::Paid => 1,
            Status::Shipped | Status::Cancelled => 2,
        }
    }

    fn is_open(self) -> bool {
        self.progress() < 2
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct OrderEntry {
    order_id: String,
    status: Status,
}

#[derive(Debug, Serialize, Deserialize)]
struct CustomerOrders {
    customer_id: String,
    orders: Vec<OrderEntry>,
    open_orders: usize,
}

impl Projector for CustomerOrdersProjector {
    fn project(&self, current: Option<&Value>, event: &Event) -> Result<Outcome, ProjectorError> {
        let status = match event.event_type.as_str() {
            "shop.order.placed" => Status::Placed,
            "shop.order.paid" => Status::Paid,
            "shop.order.shipped" => Status::Shipped,
            "shop.order.cancelled" => Status::Cancelled,
            _ => return Ok(Outcome::Skip),
        };
        let customer_id = fields::string(event, "customer_id")?;
        let order_id = fields::string(event, "order_id")?;
        let mut customer =
            fields::current::<CustomerOrders>(current, NAME)?.unwrap_or_else(|| CustomerOrders {
                customer_id: customer_id.to_owned(),
                orders: Vec::new(),
                open_orders: 0,
            });

        match customer
            .orders
            .iter_mut()
            .find(|entry| entry.order_id == order_id)
        {
            Some(entry) if status.progress() >= entry.status.progress() => entry.status = status,
            Some(_) => {}
            None => customer.orders.push(OrderEntry {
                order_id: order_id.to_owned(),
                status,
            }),
        }
        customer.open_orders = customer
            .orders
            .iter()
            .filter(|entry| entry.status.is_open())
            .count();
        fields::upsert(&customer)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::projector::examples::fields::testing::event;

    const T: Option<&str> = Some("2024-05-01T10:00:00Z");

    fn order(event_type: &str, order_id: &str) -> Event {
        event(
            event_type,
            T,
            json!({"order_id": order_id, "customer_id": "cus-1", "currency": "EUR",
                   "amount_cents": 100, "reason": "r"}),
        )
    }

    fn customer(orders: Value, open_orders: usize) -> Value {
        json!({"customer_id": "cus-1", "orders": orders, "open_orders": open_orders})
    }

    #[test]
    fn folds_order_events() {
        let two_open = customer(
            json!([{"order_id": "ord-1", "status": "placed"},
                   {"order_id": "ord-2", "status": "paid"}]),
            2,
        );
        let cases: Vec<(&str, Option<Value>, Event, Outcome)> = vec![
            (
                "the first order starts the customer",
                None,
                order("shop.order.placed", "ord-1"),
                Outcome::Upsert(customer(
                    json!([{"order_id": "ord-1", "status": "placed"}]),
                    1,
                )),
            ),
            (
                "a new order is appended, open count goes up",
                Some(two_open.clone()),
                order("shop.order.placed", "ord-3"),
                Outcome::Upsert(customer(
                    json!([{"order_id": "ord-1", "status": "placed"},
                           {"order_id": "ord-2", "status": "paid"},
                           {"order_id": "ord-3", "status": "placed"}]),
                    3,
                )),
            ),
            (
                "a repeated placed changes nothing",
                Some(two_open.clone()),
                order("shop.order.placed", "ord-2"),
                Outcome::Upsert(two_open.clone()),
            ),
            (
                "paid keeps the order open",
                Some(two_open.clone()),
                order("shop.order.paid", "ord-1"),
                Outcome::Upsert(customer(
                    json!([{"order_id": "ord-1", "status": "paid"},
                           {"order_id": "ord-2", "status": "paid"}]),
                    2,
                )),
            ),
            (
                "shipped closes it, open count goes down",
                Some(two_open.clone()),
                order("shop.order.shipped", "ord-2"),
                Outcome::Upsert(customer(
                    json!([{"order_id": "ord-1", "status": "placed"},
                           {"order_id": "ord-2", "status": "shipped"}]),
                    1,
                )),
            ),
            (
                "cancelled closes it and keeps it listed",
                Some(two_open.clone()),
                order("shop.order.cancelled", "ord-1"),
                Outcome::Upsert(customer(
                    json!([{"order_id": "ord-1", "status": "cancelled"},
                           {"order_id": "ord-2", "status": "paid"}]),
                    1,
                )),
            ),
            (
                "a late paid does not reopen a cancelled order",
                Some(customer(
                    json!([{"order_id": "ord-1", "status": "cancelled"}]),
                    0,
                )),
                order("shop.order.paid", "ord-1"),
                Outcome::Upsert(customer(
                    json!([{"order_id": "ord-1", "status": "cancelled"}]),
                    0,
                )),
            ),
            (
                "an order first seen shipped, for an absent customer",
                None,
                order("shop.order.shipped", "ord-9"),
                Outcome::Upsert(customer(
                    json!([{"order_id": "ord-9", "status": "shipped"}]),
                    0,
                )),
            ),
            (
                "item events are skipped",
                Some(two_open.clone()),
                order("shop.order.item_added", "ord-1"),
                Outcome::Skip,
            ),
            (
                "stock events are skipped",
                None,
                event(
                    "shop.stock.received",
                    T,
                    json!({"sku": "sku-a", "quantity": 1}),
                ),
                Outcome::Skip,
            ),
        ];
        for (name, current, event, expected) in cases {
            let outcome = CustomerOrdersProjector.project(current.as_ref(), &event);
            assert_eq!(outcome, Ok(expected), "{name}");
        }
    }

    #[test]
    fn refuses_bad_events() {
        let cases: Vec<(&str, Event, &str)> = vec![
            (
                "customer_id missing",
                event("shop.order.placed", T, json!({"order_id": "ord-1"})),
                "shop.order.placed: data field `customer_id` is missing",
            ),
            (
                "order_id is a number",
                event(
                    "shop.order.paid",
                    T,
                    json!({"order_id": 1, "customer_id": "cus-1"}),
                ),
                "shop.order.paid: data field `order_id` must be a string, got 1",
            ),
        ];
        for (name, event, message) in cases {
            let outcome = CustomerOrdersProjector.project(None, &event);
            assert_eq!(outcome, Err(ProjectorError::new(message)), "{name}");
        }
    }
}
