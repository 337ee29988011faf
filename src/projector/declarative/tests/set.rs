//! `set`, the most used step, as a table: (steps, current projection, event
//! data) -> outcome, or the telling part of the error. Values read from the
//! event in place and literals take their own path, so both are here over
//! every kind of field they may meet.

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
