//! `order_summary` as a table: (current projection, event) -> outcome.

use serde_json::{Value, json};

use super::*;
use crate::projector::examples::fields::testing::event;

const T0: &str = "2024-05-01T10:00:00Z";
const T1: &str = "2024-05-01T10:05:00Z";

/// `base` with the fields of `extra` added or replaced.
fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(fields), Value::Object(extra)) = (base.as_object_mut(), extra) {
        fields.extend(extra);
    }
    base
}

fn ids(extra: Value) -> Value {
    merged(json!({"order_id": "ord-1", "customer_id": "cus-1"}), extra)
}

/// A placed order with one line of 2 x `sku-a` at 250 cents.
fn with_line() -> Value {
    json!({
        "order_id": "ord-1", "customer_id": "cus-1", "currency": "EUR", "status": "placed",
        "lines": [{"sku": "sku-a", "quantity": 2, "unit_price_cents": 250}],
        "item_count": 2, "total_cents": 500, "placed_at": T0, "updated_at": T0
    })
}

fn with_line_and(changes: Value) -> Value {
    merged(with_line(), changes)
}

#[test]
fn folds_order_events() {
    let cases: Vec<(&str, Option<Value>, Event, Outcome)> = vec![
        (
            "placed starts an empty order",
            None,
            event(
                "shop.order.placed",
                Some(T0),
                ids(json!({"currency": "EUR"})),
            ),
            Outcome::Upsert(json!({
                "order_id": "ord-1", "customer_id": "cus-1", "currency": "EUR",
                "status": "placed", "lines": [], "item_count": 0, "total_cents": 0,
                "placed_at": T0, "updated_at": T0
            })),
        ),
        (
            "a new sku adds a line",
            Some(with_line()),
            event(
                "shop.order.item_added",
                Some(T1),
                ids(json!({"sku": "sku-b", "quantity": 1, "unit_price_cents": 1000})),
            ),
            Outcome::Upsert(with_line_and(json!({
                "lines": [
                    {"sku": "sku-a", "quantity": 2, "unit_price_cents": 250},
                    {"sku": "sku-b", "quantity": 1, "unit_price_cents": 1000}
                ],
                "item_count": 3, "total_cents": 1500, "updated_at": T1
            }))),
        ),
        (
            "an existing sku adds to its quantity, the latest price wins",
            Some(with_line()),
            event(
                "shop.order.item_added",
                Some(T1),
                ids(json!({"sku": "sku-a", "quantity": 3, "unit_price_cents": 200})),
            ),
            Outcome::Upsert(with_line_and(json!({
                "lines": [{"sku": "sku-a", "quantity": 5, "unit_price_cents": 200}],
                "item_count": 5, "total_cents": 1000, "updated_at": T1
            }))),
        ),
        (
            "removing lowers the quantity",
            Some(with_line()),
            event(
                "shop.order.item_removed",
                Some(T1),
                ids(json!({"sku": "sku-a", "quantity": 1})),
            ),
            Outcome::Upsert(with_line_and(json!({
                "lines": [{"sku": "sku-a", "quantity": 1, "unit_price_cents": 250}],
                "item_count": 1, "total_cents": 250, "updated_at": T1
            }))),
        ),
        (
            "removing all of a sku drops its line",
            Some(with_line()),
            event(
                "shop.order.item_removed",
                Some(T1),
                ids(json!({"sku": "sku-a", "quantity": 2})),
            ),
            Outcome::Upsert(with_line_and(json!({
                "lines": [], "item_count": 0, "total_cents": 0, "updated_at": T1
            }))),
        ),
        (
            "removing more than there is drops the line, never goes negative",
            Some(with_line()),
            event(
                "shop.order.item_removed",
                Some(T1),
                ids(json!({"sku": "sku-a", "quantity": 9})),
            ),
            Outcome::Upsert(with_line_and(json!({
                "lines": [], "item_count": 0, "total_cents": 0, "updated_at": T1
            }))),
        ),
        (
            "paid",
            Some(with_line()),
            event(
                "shop.order.paid",
                Some(T1),
                ids(json!({"amount_cents": 500})),
            ),
            Outcome::Upsert(with_line_and(json!({"status": "paid", "updated_at": T1}))),
        ),
        (
            "shipped",
            Some(with_line_and(json!({"status": "paid"}))),
            event("shop.order.shipped", Some(T1), ids(json!({}))),
            Outcome::Upsert(with_line_and(
                json!({"status": "shipped", "updated_at": T1}),
            )),
        ),
        (
            "a late paid does not move a shipped order back",
            Some(with_line_and(json!({"status": "shipped"}))),
            event(
                "shop.order.paid",
                Some(T1),
                ids(json!({"amount_cents": 500})),
            ),
            Outcome::Upsert(with_line_and(
                json!({"status": "shipped", "updated_at": T1}),
            )),
        ),
        (
            "a repeated placed keeps the lines and the first placed_at",
            Some(with_line()),
            event(
                "shop.order.placed",
                Some(T1),
                ids(json!({"currency": "EUR"})),
            ),
            Outcome::Upsert(with_line_and(json!({"updated_at": T1}))),
        ),
        (
            "an event without a time keeps updated_at",
            Some(with_line()),
            event("shop.order.paid", None, ids(json!({"amount_cents": 500}))),
            Outcome::Upsert(with_line_and(json!({"status": "paid"}))),
        ),
        (
            "an item for an absent order starts one from the event",
            None,
            event(
                "shop.order.item_added",
                Some(T1),
                ids(json!({"sku": "sku-a", "quantity": 2, "unit_price_cents": 250})),
            ),
            Outcome::Upsert(with_line_and(json!({
                "currency": null, "placed_at": null, "updated_at": T1
            }))),
        ),
        (
            "shipped for an absent order starts a shipped one",
            None,
            event("shop.order.shipped", Some(T1), ids(json!({}))),
            Outcome::Upsert(json!({
                "order_id": "ord-1", "customer_id": "cus-1", "currency": null,
                "status": "shipped", "lines": [], "item_count": 0, "total_cents": 0,
                "placed_at": null, "updated_at": T1
            })),
        ),
        (
            "cancelled deletes",
            Some(with_line()),
            event(
                "shop.order.cancelled",
                Some(T1),
                ids(json!({"reason": "changed mind"})),
            ),
            Outcome::Delete,
        ),
        (
            "cancelled deletes an absent order too",
            None,
            event(
                "shop.order.cancelled",
                Some(T1),
                ids(json!({"reason": "fraud"})),
            ),
            Outcome::Delete,
        ),
        (
            "other event types are skipped",
            Some(with_line()),
            event(
                "shop.stock.received",
                Some(T1),
                json!({"sku": "sku-a", "quantity": 5}),
            ),
            Outcome::Skip,
        ),
    ];
    for (name, current, event, expected) in cases {
        let outcome = OrderSummaryProjector.project(current.as_ref(), &event);
        assert_eq!(outcome, Ok(expected), "{name}");
    }
}

#[test]
fn refuses_bad_events() {
    let cases: Vec<(&str, Option<Value>, Event, &str)> = vec![
        (
            "order_id missing",
            None,
            event(
                "shop.order.placed",
                Some(T0),
                json!({"customer_id": "cus-1", "currency": "EUR"}),
            ),
            "shop.order.placed: data field `order_id` is missing",
        ),
        (
            "customer_id null",
            None,
            event(
                "shop.order.paid",
                Some(T0),
                json!({"order_id": "ord-1", "customer_id": null}),
            ),
            "shop.order.paid: data field `customer_id` is missing",
        ),
        (
            "currency missing on placed",
            None,
            event("shop.order.placed", Some(T0), ids(json!({}))),
            "shop.order.placed: data field `currency` is missing",
        ),
        (
            "quantity as text",
            Some(with_line()),
            event(
                "shop.order.item_added",
                Some(T1),
                ids(json!({"sku": "sku-a", "quantity": "2", "unit_price_cents": 250})),
            ),
            "shop.order.item_added: data field `quantity` must be a positive integer, got \"2\"",
        ),
        (
            "quantity zero",
            Some(with_line()),
            event(
                "shop.order.item_removed",
                Some(T1),
                ids(json!({"sku": "sku-a", "quantity": 0})),
            ),
            "shop.order.item_removed: data field `quantity` must be a positive integer, got 0",
        ),
        (
            "negative price",
            Some(with_line()),
            event(
                "shop.order.item_added",
                Some(T1),
                ids(json!({"sku": "sku-a", "quantity": 1, "unit_price_cents": -5})),
            ),
            "shop.order.item_added: data field `unit_price_cents` must be a non-negative \
             integer, got -5",
        ),
        (
            "sku is a number",
            Some(with_line()),
            event(
                "shop.order.item_removed",
                Some(T1),
                ids(json!({"sku": 7, "quantity": 1})),
            ),
            "shop.order.item_removed: data field `sku` must be a string, got 7",
        ),
        (
            "a total that overflows",
            Some(with_line()),
            event(
                "shop.order.item_added",
                Some(T1),
                ids(json!({"sku": "sku-b", "quantity": 2, "unit_price_cents": i64::MAX})),
            ),
            "shop.order.item_added: a line total overflows",
        ),
        (
            "a current projection of another shape",
            Some(json!({"sku": "sku-a", "available": 3})),
            event("shop.order.paid", Some(T1), ids(json!({}))),
            "the current projection does not have the order_summary shape: \
             missing field `order_id`",
        ),
    ];
    for (name, current, event, message) in cases {
        let outcome = OrderSummaryProjector.project(current.as_ref(), &event);
        assert_eq!(outcome, Err(ProjectorError::new(message)), "{name}");
    }
}
