//! `customer_orders`: one projection per customer (`customer_id`), listing their
//! orders in placement order with each one's status, and how many are open.
//!
//! Keyed differently from the record key (order id), so one customer's orders
//! may arrive from several partitions: each order's status only moves forward,
//! and an order seen first through a later event is appended then.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::fields;
use crate::event::Event;
use crate::projector::{Folding, Outcome, Projector, ProjectorError};

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

impl Status {
    /// The status an event moves its order to; `None` for other events.
    fn of(event: &Event) -> Option<Status> {
        match event.event_type.as_str() {
            "shop.order.placed" => Some(Status::Placed),
            "shop.order.paid" => Some(Status::Paid),
            "shop.order.shipped" => Some(Status::Shipped),
            "shop.order.cancelled" => Some(Status::Cancelled),
            _ => None,
        }
    }

    /// As stored: the serde name.
    fn name(self) -> &'static str {
        match self {
            Status::Placed => "placed",
            Status::Paid => "paid",
            Status::Shipped => "shipped",
            Status::Cancelled => "cancelled",
        }
    }

    fn named(name: &str) -> Option<Status> {
        [
            Status::Placed,
            Status::Paid,
            Status::Shipped,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|status| status.name() == name)
    }
}

impl Projector for CustomerOrdersProjector {
    fn project(&self, current: Option<&Value>, event: &Event) -> Result<Outcome, ProjectorError> {
        let Some(status) = Status::of(event) else {
            return Ok(Outcome::Skip);
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

    /// [`Self::project`] on the stored tree itself when it has exactly the
    /// shape `project` writes: reading a customer's whole list into structs
    /// and writing it back as a new tree, per event, was a quarter of the
    /// shop stream's CPU. Any other shape goes through `project`, whose
    /// serde read says what is wrong (or drops what it does not know).
    fn apply(&self, state: &mut Option<Value>, event: &Event) -> Result<Folding, ProjectorError> {
        let Some(status) = Status::of(event) else {
            return Ok(Folding::Skipped);
        };
        fields::string(event, "customer_id")?;
        let order_id = fields::string(event, "order_id")?;
        if let Some(Value::Object(customer)) = state
            && in_shape(customer)
        {
            move_order(customer, order_id, status);
            return Ok(Folding::Applied);
        }
        match self.project(state.as_ref(), event)? {
            Outcome::Upsert(value) => *state = Some(value),
            Outcome::Delete => *state = None,
            Outcome::Skip => return Ok(Folding::Skipped),
        }
        Ok(Folding::Applied)
    }
}

/// Whether `customer` is exactly what serializing [`CustomerOrders`] gives:
/// those members only, of those types, every status one it names.
fn in_shape(customer: &Map<String, Value>) -> bool {
    let (Some(Value::String(_)), Some(Value::Array(orders)), Some(open)) = (
        customer.get("customer_id"),
        customer.get("orders"),
        customer.get("open_orders"),
    ) else {
        return false;
    };
    customer.len() == 3
        && open.is_u64()
        && orders.iter().all(|entry| {
            let Value::Object(entry) = entry else {
                return false;
            };
            entry.len() == 2
                && matches!(entry.get("order_id"), Some(Value::String(_)))
                && matches!(entry.get("status"), Some(Value::String(name)) if Status::named(name).is_some())
        })
}

/// `project`'s fold on a tree [`in_shape`]: the order moves forward (or is
/// appended), and the open ones are counted again.
fn move_order(customer: &mut Map<String, Value>, order_id: &str, status: Status) {
    let Some(Value::Array(orders)) = customer.get_mut("orders") else {
        unreachable!("checked by in_shape");
    };
    let entry = orders
        .iter_mut()
        .find(|entry| entry["order_id"].as_str() == Some(order_id));
    match entry {
        Some(entry) => {
            let stored = entry["status"].as_str().and_then(Status::named);
            if stored.is_some_and(|stored| status.progress() >= stored.progress()) {
                entry["status"] = Value::from(status.name());
            }
        }
        None => {
            let mut entry = Map::new();
            entry.insert("order_id".to_owned(), Value::from(order_id));
            entry.insert("status".to_owned(), Value::from(status.name()));
            orders.push(Value::Object(entry));
        }
    }
    let open = orders
        .iter()
        .filter_map(|entry| entry["status"].as_str().and_then(Status::named))
        .filter(|status| status.is_open())
        .count();
    customer.insert("open_orders".to_owned(), Value::from(open));
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

    /// `apply` changes the tree in place where it can: on every state, the
    /// well-formed and the odd, it must leave what `project` returns.
    #[test]
    fn apply_in_place_gives_what_project_gives() {
        let states: Vec<Option<Value>> = vec![
            None,
            Some(customer(json!([]), 0)),
            Some(customer(
                json!([{"order_id": "ord-1", "status": "placed"},
                       {"order_id": "ord-2", "status": "paid"},
                       {"order_id": "ord-3", "status": "shipped"},
                       {"order_id": "ord-4", "status": "cancelled"}]),
                2,
            )),
            // A wrong count is counted again.
            Some(customer(
                json!([{"order_id": "ord-1", "status": "paid"}]),
                7,
            )),
            // Odd shapes: serde drops an unknown member, refuses a wrong type.
            Some(json!({"customer_id": "cus-1", "orders": [], "open_orders": 0, "vip": true})),
            Some(customer(
                json!([{"order_id": "ord-1", "status": "placed", "note": "x"}]),
                1,
            )),
            Some(customer(
                json!([{"order_id": "ord-1", "status": "lost"}]),
                1,
            )),
            Some(customer(json!([{"order_id": 1, "status": "placed"}]), 1)),
            Some(json!({"customer_id": "cus-1", "orders": [], "open_orders": -1})),
            Some(json!({"customer_id": "cus-1", "orders": [], "open_orders": 1.5})),
            Some(json!({"customer_id": "cus-1", "orders": {}, "open_orders": 0})),
            Some(json!({"orders": [], "open_orders": 0})),
        ];
        let events = ["placed", "paid", "shipped", "cancelled", "item_added"]
            .into_iter()
            .flat_map(|kind| {
                ["ord-1", "ord-2", "ord-4", "ord-9"]
                    .map(|order_id| order(&format!("shop.order.{kind}"), order_id))
            });
        for event in events {
            for state in &states {
                let projected = CustomerOrdersProjector.project(state.as_ref(), &event);
                let mut applied = state.clone();
                let folding = CustomerOrdersProjector.apply(&mut applied, &event);
                let case = format!("{} on {state:?}", event.event_type);
                match projected {
                    Ok(Outcome::Upsert(value)) => {
                        assert_eq!(folding, Ok(Folding::Applied), "{case}");
                        assert_eq!(applied, Some(value), "{case}");
                    }
                    Ok(Outcome::Skip) => {
                        assert_eq!(folding, Ok(Folding::Skipped), "{case}");
                        assert_eq!(&applied, state, "{case}");
                    }
                    Ok(Outcome::Delete) => unreachable!("customer_orders never deletes"),
                    Err(error) => assert_eq!(folding, Err(error), "{case}"),
                }
            }
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
