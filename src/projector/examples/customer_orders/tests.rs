//! `customer_orders` as a table: (current projection, event) -> outcome; and
//! its in-place fold held to `project` on well-formed and odd states alike.

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
        // The first entry for an order is the one that moves.
        Some(customer(
            json!([{"order_id": "ord-1", "status": "placed"},
                   {"order_id": "ord-1", "status": "paid"}]),
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

/// The in-place path names statuses itself: as serde does, both ways.
#[test]
fn statuses_are_named_as_serde_names_them() {
    for status in Status::ALL {
        assert_eq!(serde_json::to_value(status).unwrap(), json!(status.name()));
        let read: Status = serde_json::from_value(json!(status.name())).unwrap();
        assert_eq!(read, status);
    }
}
