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

    const ALL: [Status; 4] = [
        Status::Placed,
        Status::Paid,
        Status::Shipped,
        Status::Cancelled,
    ];

    /// As stored: the serde name (a test holds the two together), without
    /// serde's machinery on the in-place path.
    fn name(self) -> &'static str {
        match self {
            Status::Placed => "placed",
            Status::Paid => "paid",
            Status::Shipped => "shipped",
            Status::Cancelled => "cancelled",
        }
    }

    fn named(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.name() == name)
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
            && fold_in_place(customer, order_id, status)
        {
            return Ok(Folding::Applied);
        }
        Ok(self.project(state.as_ref(), event)?.fold_into(state))
    }
}

/// `project`'s fold on the stored tree itself, in one walk of its orders:
/// the order moves forward (or is appended) and the open ones are counted
/// again. Only when the tree is exactly what serializing [`CustomerOrders`]
/// gives (those members only, of those types, every status one it names);
/// otherwise `false`, with the tree untouched.
fn fold_in_place(customer: &mut Map<String, Value>, order_id: &str, status: Status) -> bool {
    let in_shape = customer.len() == 3
        && matches!(customer.get("customer_id"), Some(Value::String(_)))
        && customer.get("open_orders").is_some_and(Value::is_u64);
    let Some(Value::Array(orders)) = customer.get_mut("orders").filter(|_| in_shape) else {
        return false;
    };
    let mut open = 0;
    // The first entry for the order, as `project` finds it.
    let mut found = None;
    for (index, entry) in orders.iter().enumerate() {
        let Some((id, stored)) = stored_entry(entry) else {
            return false;
        };
        open += usize::from(stored.is_open());
        if found.is_none() && id == order_id {
            found = Some((index, stored));
        }
    }
    match found {
        Some((index, stored)) if status.progress() >= stored.progress() => {
            orders[index]["status"] = Value::from(status.name());
            open = open - usize::from(stored.is_open()) + usize::from(status.is_open());
        }
        Some(_) => {}
        None => {
            let mut entry = Map::new();
            entry.insert("order_id".to_owned(), Value::from(order_id));
            entry.insert("status".to_owned(), Value::from(status.name()));
            orders.push(Value::Object(entry));
            open += usize::from(status.is_open());
        }
    }
    customer.insert("open_orders".to_owned(), Value::from(open));
    true
}

/// An order entry as [`OrderEntry`] serializes: its id and status.
fn stored_entry(entry: &Value) -> Option<(&str, Status)> {
    let Value::Object(entry) = entry else {
        return None;
    };
    if entry.len() != 2 {
        return None;
    }
    let id = entry.get("order_id")?.as_str()?;
    let status = Status::named(entry.get("status")?.as_str()?)?;
    Some((id, status))
}

#[cfg(test)]
mod tests;
