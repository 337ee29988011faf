//! The shop examples: `order_summary`, `customer_orders`, `product_stock`.
//!
//! They fold the shop's CloudEvents (`shop.order.*` on topic `shop.orders`, keyed
//! by order id; `shop.stock.received` on `shop.inventory`, keyed by sku). Amounts
//! are integer cents. `projections/fixtures/<name>/` holds a story per projector
//! and the projections it must produce; a test here keeps them in step.

pub mod customer_orders;
mod fields;
#[cfg(test)]
mod fixtures;
pub mod order_summary;
pub mod product_stock;

use super::Registry;

pub use customer_orders::CustomerOrdersProjector;
pub use order_summary::OrderSummaryProjector;
pub use product_stock::ProductStockProjector;

pub fn register_all(registry: &mut Registry) {
    registry.register(order_summary::NAME, OrderSummaryProjector);
    registry.register(customer_orders::NAME, CustomerOrdersProjector);
    registry.register(product_stock::NAME, ProductStockProjector);
}
