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
        // Checked as `project` checks it, so a bad event fails alike.
        fields::string(event, "customer_id")?;
        let order_id = fields::string(event, "order_id")?;
        if let Some(Value::Object(customer)) = state
            && in_shape(customer)
        {
            move_order(customer, order_id, status);
            return Ok(Folding::Applied);
        }
        Ok(self.project(state.as_ref(), event)?.fold_into(state))
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
mod tests;
