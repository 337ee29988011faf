//! One table per operation: (steps, current projection, event data) ->
//! outcome, or the telling part of the error.

use serde_json::json;

use super::{Expect, run, upsert};
use crate::projector::Outcome;

#[test]
fn set() {
    run(vec![
        (
            "a literal",
            r#"{ set = "status", value = "placed" }"#,
            None,
            json!({}),
            upsert(json!({"status": "placed"})),
        ),
        (
            "a literal that looks like jq stays text",
            r#"{ set = "note", value = ".data.currency" }"#,
            None,
            json!({"currency": "EUR"}),
            upsert(json!({"note": ".data.currency"})),
        ),
        (
            "from the event, keeping other fields",
            r#"{ set = "currency", from = ".data.currency" }"#,
            Some(json!({"status": "placed"})),
            json!({"currency": "EUR"}),
            upsert(json!({"status": "placed", "currency": "EUR"})),
        ),
        (
            "the field itself, present, stays as it is",
            r#"{ set = "totals.lines", from = "$state.totals.lines", default = [] }"#,
            Some(json!({"totals": {"lines": [{"n": 1}]}, "status": "placed"})),
            json!({}),
            upsert(json!({"totals": {"lines": [{"n": 1}]}, "status": "placed"})),
        ),
        (
            "the field itself, absent or null, takes the default",
            r#"{ set = "totals.lines", from = "$state.totals.lines", default = [] }"#,
            Some(json!({"totals": {"lines": null}})),
            json!({}),
            upsert(json!({"totals": {"lines": []}})),
        ),
        (
            "the field itself, with a number jq rewrites, goes through jq",
            r#"{ set = "big", from = "$state.big" }"#,
            Some(json!({"big": 18446744073709551615u64})),
            json!({}),
            upsert(json!({"big": 18446744073709551615u64})),
        ),
        (
            "a missing field with a default",
            r#"{ set = "currency", from = ".data.currency", default = "EUR" }"#,
            None,
            json!({}),
            upsert(json!({"currency": "EUR"})),
        ),
        (
            "a null field with a default",
            r#"{ set = "currency", from = ".data.currency", default = "EUR" }"#,
            None,
            json!({"currency": null}),
            upsert(json!({"currency": "EUR"})),
        ),
        (
            "a missing field without a default fails the event",
            r#"{ set = "currency", from = ".data.currency" }"#,
            Some(json!({"status": "placed"})),
            json!({}),
            Expect::Fails("step 1 (set \"currency\"): \".data.currency\" produced no value"),
        ),
        (
            "a missing optional field skips the step",
            r#"{ set = "currency", from = ".data.currency", optional = true }"#,
            Some(json!({"currency": "USD"})),
            json!({}),
            upsert(json!({"currency": "USD"})),
        ),
        (
            "only skipped steps on an absent projection store nothing",
            r#"{ set = "currency", from = ".data.currency", optional = true }"#,
            None,
            json!({}),
            Expect::Is(Outcome::Skip),
        ),
        (
            "from the event over a longer text, a shorter one, a number, the same text",
            r#"{ set = "a", from = ".data.a" }, { set = "b", from = ".data.b" },
               { set = "c", from = ".data.c" }, { set = "d", from = ".data.d" }"#,
            Some(json!({"a": "a much longer text", "b": "x", "c": 7, "d": "same", "e": 1})),
            json!({"a": "short", "b": "a longer text", "c": "seven", "d": "same"}),
            upsert(json!({"a": "short", "b": "a longer text", "c": "seven", "d": "same", "e": 1})),
        ),
        (
            "from the event: an object, and a number past 64-bit integers (through jq)",
            r#"{ set = "o", from = ".data.o" }, { set = "big", from = ".data.big" }"#,
            Some(json!({"o": {"x": 1}})),
            json!({"o": {"y": [1, "z"]}, "big": 18446744073709551615u64}),
            upsert(json!({"o": {"y": [1, "z"]}, "big": 18446744073709551615u64})),
        ),
        (
            "from the event through a text on the way fails as jq does",
            r#"{ set = "x", from = ".data.sku.name" }"#,
            None,
            json!({"sku": "mug"}),
            Expect::Fails("step 1 (set \"x\"): jq \".data.sku.name\" failed"),
        ),
        (
            "a literal over an equal value and over a null parent",
            r#"{ set = "status", value = "placed" }, { set = "t.n", value = 1 }"#,
            Some(json!({"status": "placed", "t": null})),
            json!({}),
            upsert(json!({"status": "placed", "t": {"n": 1}})),
        ),
        (
            "from the event into a path through a number fails",
            r#"{ set = "totals.cents", from = ".data.cents" }"#,
            Some(json!({"totals": 3})),
            json!({"cents": 5}),
            Expect::Fails("totals is 3, not an object"),
        ),
        (
            "a dotted path creates its parents",
            r#"{ set = "totals.cents", from = ".data.cents" }"#,
            Some(json!({"totals": null})),
            json!({"cents": 5}),
            upsert(json!({"totals": {"cents": 5}})),
        ),
        (
            "a path through a number fails",
            r#"{ set = "totals.cents", value = 1 }"#,
            Some(json!({"totals": 3})),
            json!({}),
            Expect::Fails("totals is 3, not an object"),
        ),
        (
            "computed: arithmetic, strings, timestamps, attributes",
            r#"{ set = "line_cents", from = ".data.quantity * .data.unit_cents" },
               { set = "label", from = '"\(.data.sku) x\(.data.quantity)"' },
               { set = "day", from = ".time[:10]" },
               { set = "epoch", from = ".time | fromdate" },
               { set = "month", from = '.time | fromdate | strftime("%Y-%m")' },
               { set = "at", from = '"\(.topic)/\(.partition)@\(.offset) \(.id)"' }"#,
            None,
            json!({"sku": "mug", "quantity": 3, "unit_cents": 250}),
            upsert(json!({
                "line_cents": 750, "label": "mug x3", "day": "2024-05-01",
                "epoch": 1714555260, "month": "2024-05", "at": "shop.orders/3@42 evt-1"
            })),
        ),
        (
            "$state sees the steps before",
            r#"{ set = "a", value = 1 }, { set = "b", from = "$state.a + 1" }"#,
            None,
            json!({}),
            upsert(json!({"a": 1, "b": 2})),
        ),
        (
            "$event is the event too",
            r#"{ set = "n", from = "[1, 2] | map(. + $event.data.k) | add" }"#,
            None,
            json!({"k": 10}),
            upsert(json!({"n": 23})),
        ),
        (
            "several values are refused",
            r#"{ set = "x", from = ".data.list[]" }"#,
            None,
            json!({"list": [1, 2]}),
            Expect::Fails("produced more than one value"),
        ),
        (
            "a jq error fails the event, after a step that worked",
            r#"{ set = "a", value = 1 }, { set = "x", from = '.data.sku + 1' }"#,
            Some(json!({"a": 0})),
            json!({"sku": "mug"}),
            Expect::Fails("step 2 (set \"x\"): jq \".data.sku + 1\" failed"),
        ),
    ]);
}

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
