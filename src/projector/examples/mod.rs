//! The shop examples: `order_summary`, `customer_orders`, `product_stock`.

use super::Registry;

pub fn register_all(registry: &mut Registry) {
    let _ = registry;
}
