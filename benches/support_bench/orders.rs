//! The projection the cache benches write: an order summary as a read model
//! holds it.

use projectionist::cache::Projection;
use serde_json::json;

/// A realistic projection: an order summary of about 300 bytes of JSON.
pub fn order(n: usize) -> Projection {
    let status = ["placed", "paid", "shipped", "delivered"][n % 4];
    let value = json!({
        "order_id": format!("ord-{n:08}"),
        "customer_id": format!("cus-{:06}", n % 50_000),
        "status": status,
        "currency": "EUR",
        "total": (n % 10_000) as f64 / 100.0 + 9.99,
        "items": [
            {"sku": format!("SKU-{:05}", n % 977), "qty": 1 + n % 3, "price": 19.95},
            {"sku": format!("SKU-{:05}", n % 613), "qty": 1, "price": 4.5},
        ],
        "shipping": {"city": "Lyon", "country": "FR", "postcode": "69001"},
        "updated_at": "2026-05-01T12:34:56Z",
        "version": n % 17,
    });
    Projection::new("order_summary", format!("ord-{n:08}"), value).expect("an object")
}
