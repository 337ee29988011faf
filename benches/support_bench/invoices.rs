//! The second stream: invoices with decimal prices and handlers guarded by a
//! `when` condition, the two things users write that the shop stream lacks.
//! Its definition is declarative, like the ones users deploy.

/// Events per invoice: opened, eight lines, paid.
const EVENTS_PER_INVOICE: usize = 10;
/// Invoices open at once: their events interleave, as a live stream's do.
const OPEN_AT_ONCE: usize = 1_000;

/// `invoice_summary` on `topic`: a decimal total recomputed per line, each
/// handler after the first guarded by `when = "$state != null"`.
pub fn definition(topic: &str) -> String {
    format!(
        r#"name = "invoice_summary"
ttl = 86400
topics = [{topic:?}]
identifier = "{{data.invoice_id}}"

[[handler]]
on = "billing.invoice.opened"
do = [
  {{ set = "invoice_id", from = ".data.invoice_id" }},
  {{ set = "customer", from = ".data.customer" }},
  {{ set = "currency", from = ".data.currency" }},
  {{ set = "status", value = "open" }},
  {{ set = "total", from = "$state.total", default = 0 }},
  {{ set = "opened_at", from = ".time" }},
]

[[handler]]
on = "billing.line.added"
when = "$state != null"
do = [
  {{ set = "total", from = "$state.total + .data.quantity * .data.unit_price" }},
  {{ increment = "line_count", by_value = 1 }},
  {{ set = "updated_at", from = ".time" }},
]

[[handler]]
on = "billing.invoice.paid"
when = "$state != null and $state.status == \"open\""
do = [
  {{ set = "status", value = "paid" }},
  {{ set = "paid_at", from = ".time" }},
]
"#
    )
}

/// About `events` CloudEvents (key, payload), whole invoices, interleaved.
pub fn stream(events: usize) -> Vec<(String, Vec<u8>)> {
    let invoices = events.div_ceil(EVENTS_PER_INVOICE);
    let mut records = Vec::with_capacity(invoices * EVENTS_PER_INVOICE);
    for window in (0..invoices).step_by(OPEN_AT_ONCE) {
        let open = window..(window + OPEN_AT_ONCE).min(invoices);
        for step in 0..EVENTS_PER_INVOICE {
            for invoice in open.clone() {
                records.push(event(invoice, step));
            }
        }
    }
    records.truncate(events);
    records
}

fn event(invoice: usize, step: usize) -> (String, Vec<u8>) {
    let id = format!("inv-{invoice:07}");
    let (kind, data) = match step {
        0 => (
            "billing.invoice.opened",
            serde_json::json!({"invoice_id": id, "customer": format!("cus-{:05}", invoice % 20_000), "currency": "EUR"}),
        ),
        last if last == EVENTS_PER_INVOICE - 1 => (
            "billing.invoice.paid",
            serde_json::json!({"invoice_id": id, "method": "card"}),
        ),
        line => (
            "billing.line.added",
            serde_json::json!({"invoice_id": id, "sku": format!("SKU-{:04}", (invoice * 7 + line) % 5_000),
                "quantity": 1 + line % 3, "unit_price": 4.95 + (line as f64) * 1.25 + (invoice % 9) as f64 * 0.1}),
        ),
    };
    let event = serde_json::json!({
        "specversion": "1.0", "type": kind, "id": format!("{id}-{step}"),
        "source": "/billing", "time": format!("2026-05-01T10:{:02}:{:02}Z", (invoice / 60) % 60, invoice % 60),
        "data": data,
    });
    (id, serde_json::to_vec(&event).expect("json"))
}
