use chrono::{DateTime, Utc};
use jaq_json::Val;
use serde::Deserialize;
use serde_json::{Value, json};

use super::native::{GiveUp, Node};
use super::*;
use crate::event::{Event, Position};

fn event_with(data: Value) -> Event {
    Event {
        event_type: "shop.order.item_added".to_owned(),
        id: Some("evt-1".to_owned()),
        source: Some("/shop".to_owned()),
        subject: None,
        time: Some("2026-11-01T10:00:00Z".parse::<DateTime<Utc>>().unwrap()),
        data,
        position: Position {
            topic: "shop.orders".into(),
            partition: 2,
            offset: 7,
        },
        traceparent: None,
    }
}

/// `source` compiled twice: as it runs (the native evaluator first, when it
/// answers) and for jq alone. Compiled once per expression, not per input:
/// compiling is most of what the comparison would otherwise cost.
fn fast_and_slow(source: &str) -> (Expr, Expr) {
    let fast = Expr::compile(source).unwrap();
    let mut slow = Expr::compile(source).unwrap();
    slow.native = None;
    (fast, slow)
}

/// Whether the native evaluator answers by itself (without giving up).
fn answers_natively(
    source: &str,
    event: &Event,
    state: Option<&Value>,
    item: Option<&Value>,
) -> bool {
    let input = EventInput::new(event);
    let scope = Scope {
        event: &input,
        state,
        item,
    };
    Node::compile(source).is_some_and(|node| node.eval(&scope) != Err(GiveUp))
}

#[test]
fn direct_conversion_matches_jaqs_own_reader() {
    let samples = [
        json!(null),
        json!({"a": [1, -2, 3.5, "x", true, null, {"b": {}}], "big": 18446744073709551615u64}),
        json!(["é", 0, 1e300]),
    ];
    for sample in samples {
        let direct = to_val(&sample).unwrap();
        let via_serde = Val::deserialize(&sample).unwrap();
        assert_eq!(direct, via_serde, "{sample}");
        assert_eq!(from_val(&direct).unwrap(), from_val(&via_serde).unwrap());
    }
}

#[test]
fn the_native_subset_is_recognised_and_nothing_else() {
    for native in [
        ".data.order_id",
        ".time",
        "$state.status",
        "$state",
        "$item.quantity",
        "$event.data.x",
        ".",
        "$state.lines[]",
        ".a?.b",
        ".a | .b",
        ".a // 1",
        "[$state.lines[]? | .quantity * .unit_price_cents] | add // 0",
        "{quantity: (($item.quantity // 0) + .data.quantity), unit_price_cents: .data.unit_price_cents}",
        "$item // empty | .quantity -= $event.data.quantity",
        r#"if $state.status == "shipped" then "shipped" else "paid" end"#,
        "[$state.lines[]? | select(.quantity > 0)]",
        "-1, null, true, false, \"a\\\"b\"",
        ".time[:10]",
        "[.[1:]]",
    ] {
        assert!(Node::compile(native).is_some(), "{native}");
    }
    for not_native in [
        ".data[0]",
        ".data.order-id",
        "$states",
        ".1x",
        ".a / 2",
        "1.5",
        "\"\\(.a)\"",
        ".a as $x | $x",
        "def f: 1; f",
        "length",
        "$item?",
        "{a}",
        ". -= 1",
        ".data.n += 1",
        "try .a",
        ".a[-1:]",
        ".a[.n:]",
    ] {
        assert!(Node::compile(not_native).is_none(), "{not_native}");
    }
}

/// A list that is only summed is summed as it is produced, never built;
/// anything else after it keeps the list.
#[test]
fn a_summed_list_is_not_built() {
    let sum = |node: &Node| matches!(node, Node::Sum(_));
    assert!(Node::compile("[$state.lines[]?.quantity] | add").is_some_and(|node| sum(&node)));
    match Node::compile("[$state.lines[]? | .quantity * .unit_price_cents] | add // 0") {
        Some(Node::Alt(left, right)) => {
            assert!(sum(&left));
            assert!(matches!(*right, Node::Literal(_)));
        }
        other => panic!("not a sum with a default: {other:?}"),
    }
    for kept in [
        "[.a[]] | add // .b",
        "[.a[]] | length",
        "[.a[]] | add | . + 1",
    ] {
        assert!(
            !Node::compile(kept).is_some_and(|node| sum(&node)),
            "{kept}"
        );
    }
}

/// Only a path of keys on the event is read in place; the value is the
/// event's own, not a copy.
#[test]
fn event_paths_are_borrowed() {
    let event = event_with(json!({"order_id": "o-1", "big": 18446744073709551615u64, "n": null}));
    let input = EventInput::new(&event);
    let scope = Scope {
        event: &input,
        state: Some(&json!({"status": "placed"})),
        item: None,
    };
    let borrowed = |source: &str| Expr::compile(source).unwrap().event_value(&scope).cloned();
    assert_eq!(borrowed(".data.order_id"), Some(json!("o-1")));
    assert!(std::ptr::eq(
        Expr::compile(".data.order_id")
            .unwrap()
            .event_value(&scope)
            .unwrap(),
        &event.data["order_id"]
    ));
    assert_eq!(borrowed("$event.data.order_id"), Some(json!("o-1")));
    for none in [
        "$state.status",
        ".data.n",
        ".data.missing",
        ".data.order_id.x",
        ".data.big",
        ".data.order_id[0:1]",
        "[.data.order_id]",
    ] {
        assert_eq!(borrowed(none), None, "{none}");
    }
    assert!(borrowed(".time").is_some());
}

/// Expressions over data that makes jq fail, overflow, produce floats,
/// several values or none: the native evaluator must answer what jq answers
/// (by giving up where it does not know).
#[test]
fn the_native_evaluator_answers_exactly_what_jq_answers() {
    let events = [
        event_with(
            json!({"order_id": "o-1", "n": 3, "nested": {"x": null}, "text": "s", "sku": "sku-b", "quantity": 2, "unit_price_cents": 250}),
        ),
        event_with(json!({"n": 9223372036854775807i64, "quantity": 1.5, "text": 7, "sku": ["x"]})),
        event_with(json!(null)),
        event_with(json!("text")),
        // Text that is not ASCII: a slice of it is jaq's to answer.
        event_with(json!({"text": "h\u{e9}llo", "order_id": "\u{f6}-1"})),
        // Decimals, as prices are written.
        event_with(json!({"n": 5.0, "quantity": 3, "unit_price": 19.99, "text": 0.1, "sku": 2.5})),
    ];
    let states = [
        json!({"status": "paid", "lines": []}),
        json!({"status": "shipped", "lines": [
            {"sku": "sku-a", "quantity": 2, "unit_price_cents": 300},
            {"sku": "sku-b", "quantity": 0, "unit_price_cents": 250},
            {"sku": "sku-c", "quantity": 5, "unit_price_cents": 9223372036854775807i64}]}),
        json!({"status": 3, "lines": [{"quantity": 1.5, "unit_price_cents": 2}, {"quantity": "x"}], "total": 1e300}),
        json!({"lines": {"b": {"quantity": 1, "unit_price_cents": 1}, "a": {"quantity": 2, "unit_price_cents": 2}}}),
        json!({"lines": null, "status": null, "placed_at": false}),
        json!({"status": "open", "total": 0.2, "lines": [{"quantity": 2, "unit_price_cents": 0.1}]}),
        json!([1, 2]),
    ];
    let items = [
        json!({"sku": "sku-b", "quantity": 3, "unit_price_cents": 100}),
        json!({"quantity": -9223372036854775807i64}),
        json!({"quantity": null}),
        json!(7),
    ];
    let sources = [
        ".data.order_id",
        ".data.n",
        ".data.missing",
        ".data.nested.x",
        ".nothing.deeper",
        "$state.status",
        "$state.absent",
        "$state",
        "$event.type",
        ".data.text.deeper",
        ".time",
        ".",
        ".offset + .partition",
        ".data",
        ".data[]",
        ".data[]?",
        "[.data[]?]",
        "$state.placed_at // .time",
        "$state.lines[]?.quantity",
        "[$state.lines[]?.quantity] | add // 0",
        "[$state.lines[]? | .quantity * .unit_price_cents] | add // 0",
        "[$state.lines[]? | select(.quantity > 0)]",
        "[$state.lines[] | select(.quantity > 0)]",
        "{quantity: (($item.quantity // 0) + .data.quantity), unit_price_cents: .data.unit_price_cents}",
        "$item // empty | .quantity -= $event.data.quantity",
        "$item | .quantity += 1",
        "$item | .a.b += 1",
        r#"if $state.status == "shipped" then "shipped" else "paid" end"#,
        r#"if $state.status == "shipped" then "shipped" elif $state.status then "other" end"#,
        "$state.status < 1, $state.status >= \"a\", $state.status != null",
        "$state.lines | add",
        "[$state.lines[]? | .sku] | add",
        ".data.n + 1",
        ".data.n * 2",
        "-1 - .data.n",
        "(1, 2) + 1",
        "1 + (1, 2)",
        "empty + 1",
        "[.data.text + \"x\", null + .data.text]",
        "$item | not",
        ".data.sku == \"sku-b\" and true",
        "{a: .data.n, b: empty}",
        "{a: (1, 2)}",
        ".data.order_id, .data.sku",
        "$state.total // 0",
        "[$state.total]",
        "$state.total + .data.quantity * .data.unit_price",
        ".data.unit_price * 1.5",
        ".data.n + 1, .data.n - 0.5, .data.sku * .data.sku",
        ".data.text + $state.total",
        "$state.total * 1e308 * 10",
        "$state != null",
        "$state != null and $state.status == \"open\"",
        "$state == null, $state < 1, $state > \"a\", $state.lines > $state.status",
        ".data.unit_price < 20, .data.unit_price >= .data.n, .data.text == 0.1",
        "$state.lines == $state.lines",
        "$state.status or .data.n",
        "(true, false) and (1, null)",
        "(null, 1) or (false, 2)",
        "$state.lines or empty",
        "empty and true",
        ".data.unit_price",
        ".time[:10]",
        ".time[3:100]",
        ".data.text[1:]",
        ".data.order_id[0:2]",
        ".data.order_id[5:2]",
        ".data.text[:0]",
        ".data.sku[1:3]",
        ".data.missing[:2]",
        "$state.status[1:]?",
        "[.data[]?] | add",
        "[.data[]?] | add // 0",
        "[$state.lines[]?.quantity] | add // null",
        "[$state.lines[]?.sku] | add // \"none\"",
        "[.data.n, .data.text] | add // 0",
        "[empty] | add // 7",
        "[.data.n, .data.unit_price] | add",
        "[(1, 2) | . * .data.n?] | add // 0",
    ];
    for source in sources {
        let (fast_expr, slow_expr) = fast_and_slow(source);
        for event in &events {
            for state in states.iter().map(Some).chain([None]) {
                for item in items.iter().map(Some).chain([None]) {
                    let run = |expr: &Expr| {
                        let input = EventInput::new(event);
                        expr.eval(&Scope {
                            event: &input,
                            state,
                            item,
                        })
                    };
                    let (fast, slow) = (run(&fast_expr), run(&slow_expr));
                    // A value borrowed from the event is the value jq gives.
                    let input = EventInput::new(event);
                    let scope = Scope {
                        event: &input,
                        state,
                        item,
                    };
                    if let Some(borrowed) = fast_expr.event_value(&scope) {
                        assert_eq!(Ok(Some(borrowed.clone())), slow, "{source} borrowed");
                    }
                    assert_eq!(
                        fast, slow,
                        "{source} with data {}, state {state:?}, item {item:?}",
                        event.data
                    );
                }
            }
        }
    }
}

/// The shapes `order_summary` uses are answered without jq on its documents,
/// which is what makes a declarative projection cost about what its Rust
/// twin costs.
#[test]
fn order_summary_expressions_need_no_jq() {
    let event = event_with(
        json!({"order_id": "o-1", "sku": "sku-b", "quantity": 2, "unit_price_cents": 250}),
    );
    let state = json!({"status": "paid", "lines": [
        {"sku": "sku-a", "quantity": 2, "unit_price_cents": 300},
        {"sku": "sku-b", "quantity": 1, "unit_price_cents": 250}]});
    let item = json!({"sku": "sku-b", "quantity": 1, "unit_price_cents": 250});
    for source in [
        "$state.placed_at // .time",
        "{quantity: (($item.quantity // 0) + .data.quantity), unit_price_cents: .data.unit_price_cents}",
        "[$state.lines[]? | .quantity * .unit_price_cents] | add // 0",
        "$item // empty | .quantity -= $event.data.quantity",
        "[$state.lines[]? | select(.quantity > 0)]",
        "[$state.lines[]?.quantity] | add // 0",
        r#"if $state.status == "shipped" then "shipped" else "paid" end"#,
        // `daily_sales`' date.
        ".time[:10]",
    ] {
        assert!(
            answers_natively(source, &event, Some(&state), Some(&item)),
            "{source}"
        );
    }
}

/// What users write beside the shop's integers: decimal prices and `when`
/// guards on the stored projection are answered without jq too.
#[test]
fn decimals_and_guards_need_no_jq() {
    let event = event_with(json!({"quantity": 3, "unit_price": 19.99}));
    let state = json!({"status": "open", "total": 12.5, "lines": []});
    for source in [
        "$state != null",
        r#"$state != null and $state.status == "open""#,
        "$state.total + .data.quantity * .data.unit_price",
        ".data.unit_price >= 10",
    ] {
        assert!(
            answers_natively(source, &event, Some(&state), None),
            "{source}"
        );
    }
}
