//! The shop examples written in Rust: `customer_orders`, and `order_summary`,
//! the twin of the declarative definition in `projections/order_summary.toml`
//! (a benchmark compares the two).
//!
//! They fold the shop's CloudEvents (`shop.order.*` on topic `shop.orders`, keyed
//! by order id; `shop.stock.received` on `shop.inventory`, keyed by sku). Amounts
//! are integer cents. `projections/fixtures/<name>/` holds a story per projection
//! and the projections it must produce; `tests/fixtures.rs` keeps them in step.

pub mod customer_orders;
mod fields;
pub mod order_summary;

use super::Registry;

pub use customer_orders::CustomerOrdersProjector;
pub use order_summary::OrderSummaryProjector;

pub fn register_all(registry: &mut Registry) {
    registry.register(order_summary::NAME, OrderSummaryProjector);
    registry.register(customer_orders::NAME, CustomerOrdersProjector);
}
