//! One table per operation: (steps, current projection, event data) ->
//! outcome, or the telling part of the error.

use serde_json::json;

use super::{Expect, run, upsert};
use crate::projector::Outcome;

#[test]
fn increment_and_decrement() {
    run(vec![
        (
            "an absent field counts from zero",
            r#"{ increment = "count", by_value = 1 }"#,
            None,
            json!({}),
            upsert(json!({"count": 1})),
        ),
        (
            "by an event value",
            r#"{ increment = "stock.available", by = ".data.quantity" }"#,
            Some(json!({"stock": {"available": 5}})),
            json!({"quantity": 3}),
            upsert(json!({"stock": {"available": 8}})),
        ),
        (
            "decrement may go below zero",
            r#"{ decrement = "available", by = ".data.quantity" }"#,
            Some(json!({"available": 2})),
            json!({"quantity": 3}),
            upsert(json!({"available": -1})),
        ),
        (
            "floats add as floats",
            r#"{ increment = "kg", by_value = 0.5 }"#,
            Some(json!({"kg": 1})),
            json!({}),
            upsert(json!({"kg": 1.5})),
        ),
        (
            "a missing amount with a default",
            r#"{ increment = "count", by = ".data.n", default = 1 }"#,
            Some(json!({"count": 1})),
            json!({}),
            upsert(json!({"count": 2})),
        ),
        (
            "a field that is not a number fails the event",
            r#"{ increment = "count", by_value = 1 }"#,
            Some(json!({"count": "many"})),
            json!({}),
            Expect::Fails("count is \"many\", not a number"),
        ),
        (
            "an amount that is not a number fails the event",
            r#"{ increment = "count", by = ".data.n" }"#,
            Some(json!({"count": 1})),
            json!({"n": "2"}),
            Expect::Fails("cannot add \"2\" to count: not a number"),
        ),
        (
            "overflow fails the event",
            r#"{ increment = "count", by = ".data.n" }"#,
            Some(json!({"count": i64::MAX})),
            json!({"n": 1}),
            Expect::Fails("count overflows"),
        ),
    ]);
}

#[test]
fn append_and_remove() {
    run(vec![
        (
            "append starts a list",
            r#"{ append = "orders", from = "{id: .data.order_id}" }"#,
            None,
            json!({"order_id": "o-1"}),
            upsert(json!({"orders": [{"id": "o-1"}]})),
        ),
        (
            "append keeps duplicates",
            r#"{ append = "tags", value = "x" }"#,
            Some(json!({"tags": ["x"]})),
            json!({}),
            upsert(json!({"tags": ["x", "x"]})),
        ),
        (
            "unique append skips an element already there",
            r#"{ append = "tags", value = "x", unique = true }"#,
            Some(json!({"tags": ["x", "y"]})),
            json!({}),
            upsert(json!({"tags": ["x", "y"]})),
        ),
        (
            "unique append adds a new one",
            r#"{ append = "tags", from = ".data.tag", unique = true }"#,
            Some(json!({"tags": ["x"]})),
            json!({"tag": "z"}),
            upsert(json!({"tags": ["x", "z"]})),
        ),
        (
            "append to a non-list fails",
            r#"{ append = "tags", value = "x" }"#,
            Some(json!({"tags": "x"})),
            json!({}),
            Expect::Fails("tags is \"x\", not a list"),
        ),
        (
            "remove drops every equal element",
            r#"{ remove = "tags", value = "x" }"#,
            Some(json!({"tags": ["a", "x", "b", "x"]})),
            json!({}),
            upsert(json!({"tags": ["a", "b"]})),
        ),
        (
            "remove from an absent list changes nothing",
            r#"{ remove = "tags", value = "x" }"#,
            Some(json!({"n": 1})),
            json!({}),
            upsert(json!({"n": 1})),
        ),
        (
            "remove by key drops the objects with that field value",
            r#"{ remove = "lines", key = "sku", from = ".data.sku" }"#,
            Some(json!({"lines": [{"sku": "a", "q": 1}, {"sku": "b", "q": 2}]})),
            json!({"sku": "a"}),
            upsert(json!({"lines": [{"sku": "b", "q": 2}]})),
        ),
    ]);
}

#[test]
fn upsert_by_key() {
    let lines = json!({"lines": [{"sku": "a", "q": 1}, {"sku": "b", "q": 2}]});
    run(vec![
        (
            "a new key is appended",
            r#"{ upsert = "lines", key = "sku", from = "{sku: .data.sku, q: .data.q}" }"#,
            Some(lines.clone()),
            json!({"sku": "c", "q": 5}),
            upsert(
                json!({"lines": [{"sku": "a", "q": 1}, {"sku": "b", "q": 2}, {"sku": "c", "q": 5}]}),
            ),
        ),
        (
            "a known key is replaced in place",
            r#"{ upsert = "lines", key = "sku", from = "{sku: .data.sku, q: .data.q}" }"#,
            Some(lines.clone()),
            json!({"sku": "a", "q": 5}),
            upsert(json!({"lines": [{"sku": "a", "q": 5}, {"sku": "b", "q": 2}]})),
        ),
        (
            "$item is the matched element, and the key is filled in",
            r#"{ upsert = "lines", key = "sku", match = ".data.sku", from = "{q: (($item.q // 0) + .data.q)}" }"#,
            Some(lines.clone()),
            json!({"sku": "b", "q": 5}),
            upsert(json!({"lines": [{"sku": "a", "q": 1}, {"sku": "b", "q": 7}]})),
        ),
        (
            "$item is null without a match",
            r#"{ upsert = "lines", key = "sku", match = ".data.sku", from = "{q: (($item.q // 0) + .data.q)}" }"#,
            None,
            json!({"sku": "b", "q": 5}),
            upsert(json!({"lines": [{"q": 5, "sku": "b"}]})),
        ),
        (
            "an optional element that produces nothing changes nothing",
            r#"{ upsert = "lines", key = "sku", match = ".data.sku", from = "$item // empty | .q += 1", optional = true }"#,
            Some(lines.clone()),
            json!({"sku": "z"}),
            upsert(lines.clone()),
        ),
        (
            "an element that is not an object fails",
            r#"{ upsert = "lines", key = "sku", from = ".data.sku" }"#,
            Some(lines.clone()),
            json!({"sku": "a"}),
            Expect::Fails("upsert needs an object, got \"a\""),
        ),
        (
            "an element without its key fails",
            r#"{ upsert = "lines", key = "sku", from = "{q: 1}" }"#,
            Some(lines.clone()),
            json!({}),
            Expect::Fails("has no sku"),
        ),
    ]);
}

#[test]
fn merge_unset_and_delete() {
    run(vec![
        (
            "merge into an absent field",
            r#"{ merge = "address", from = ".data.address" }"#,
            None,
            json!({"address": {"city": "Lyon"}}),
            upsert(json!({"address": {"city": "Lyon"}})),
        ),
        (
            "merge overwrites the keys it has and keeps the rest",
            r#"{ merge = "address", value = { city = "Paris", zip = "75001" } }"#,
            Some(json!({"address": {"city": "Lyon", "street": "Rue A"}})),
            json!({}),
            upsert(json!({"address": {"city": "Paris", "street": "Rue A", "zip": "75001"}})),
        ),
        (
            "merge of a non-object fails",
            r#"{ merge = "address", from = ".data.address" }"#,
            None,
            json!({"address": "Lyon"}),
            Expect::Fails("merge needs an object"),
        ),
        (
            "unset removes a field",
            r#"{ unset = "draft.note" }"#,
            Some(json!({"draft": {"note": "x", "keep": 1}})),
            json!({}),
            upsert(json!({"draft": {"keep": 1}})),
        ),
        (
            "unset of an absent field changes nothing",
            r#"{ unset = "draft.note" }"#,
            Some(json!({"n": 1})),
            json!({}),
            upsert(json!({"n": 1})),
        ),
        (
            "delete removes the projection",
            r#"{ delete = true }"#,
            Some(json!({"n": 1})),
            json!({}),
            Expect::Is(Outcome::Delete),
        ),
        (
            "delete of an absent projection is a harmless delete",
            r#"{ set = "n", value = 1 }, { delete = true }"#,
            None,
            json!({}),
            Expect::Is(Outcome::Delete),
        ),
    ]);
}
