//! `order_summary`: one projection per order (`order_id`), with its lines and
//! totals in integer cents. A cancelled order is deleted.
//!
//! Redelivery-safe where it is cheap: the status only moves forward
//! (placed -> paid -> shipped), and a repeated `placed` does not wipe the lines.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fields;
use crate::event::Event;
use crate::projector::{Outcome, Projector, ProjectorError, time_text};

pub const NAME: &str = "order_summary";

#[derive(Debug, Clone, Copy, Default)]
pub struct OrderSummaryProjector;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Placed,
    Paid,
    Shipped,
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    sku: String,
    quantity: i64,
    unit_price_cents: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct OrderSummary {
    order_id: String,
    customer_id: String,
    /// Unknown until the `placed` event is seen (the projection may have
    /// expired and been restarted by a later event).
    currency: Option<String>,
    status: Status,
    lines: Vec<Line>,
    item_count: i64,
    total_cents: i64,
    placed_at: Option<String>,
    updated_at: Option<String>,
}

impl OrderSummary {
    fn start(order_id: &str, customer_id: &str) -> Self {
        OrderSummary {
            order_id: order_id.to_owned(),
            customer_id: customer_id.to_owned(),
            currency: None,
            status: Status::Placed,
            lines: Vec::new(),
            item_count: 0,
            total_cents: 0,
            placed_at: None,
            updated_at: None,
        }
    }
}

/// The order events this projection folds (cancelled deletes it instead).
enum Change {
    Placed,
    ItemAdded,
    ItemRemoved,
    Paid,
    Shipped,
}

impl Projector for OrderSummaryProjector {
    fn project(&self, current: Option<&Value>, event: &Event) -> Result<Outcome, ProjectorError> {
        let change = match event.event_type.as_str() {
            "shop.order.placed" => Change::Placed,
            "shop.order.item_added" => Change::ItemAdded,
            "shop.order.item_removed" => Change::ItemRemoved,
            "shop.order.paid" => Change::Paid,
            "shop.order.shipped" => Change::Shipped,
            "shop.order.cancelled" => return Ok(Outcome::Delete),
            _ => return Ok(Outcome::Skip),
        };
        let order_id = fields::string(event, "order_id")?;
        let customer_id = fields::string(event, "customer_id")?;
        let mut summary = fields::current::<OrderSummary>(current, NAME)?
            .unwrap_or_else(|| OrderSummary::start(order_id, customer_id));

        match change {
            Change::Placed => {
                summary.currency = Some(fields::string(event, "currency")?.to_owned());
                if summary.placed_at.is_none() {
                    summary.placed_at = time_text(event);
                }
            }
            Change::ItemAdded => add_item(&mut summary, event)?,
            Change::ItemRemoved => remove_item(&mut summary, event)?,
            Change::Paid => summary.status = summary.status.max(Status::Paid),
            Change::Shipped => summary.status = summary.status.max(Status::Shipped),
        }
        recompute_totals(&mut summary, event)?;
        // An event without a time leaves the last known time rather than erasing it.
        if let Some(time) = time_text(event) {
            summary.updated_at = Some(time);
        }
        fields::upsert(&summary)
    }
}

/// One line per sku: a repeated sku adds to its quantity, and the latest unit
/// price wins, being the one the shop quoted last.
fn add_item(summary: &mut OrderSummary, event: &Event) -> Result<(), ProjectorError> {
    let sku = fields::string(event, "sku")?;
    let quantity = fields::positive(event, "quantity")?;
    let unit_price_cents = fields::non_negative(event, "unit_price_cents")?;
    match summary.lines.iter_mut().find(|line| line.sku == sku) {
        Some(line) => {
            line.quantity = line
                .quantity
                .checked_add(quantity)
                .ok_or_else(|| fields::overflow(event, "the line quantity"))?;
            line.unit_price_cents = unit_price_cents;
        }
        None => summary.lines.push(Line {
            sku: sku.to_owned(),
            quantity,
            unit_price_cents,
        }),
    }
    Ok(())
}

/// Lowers the line's quantity and drops the line at zero. Removing more than
/// there is (or a sku never seen, e.g. after the projection expired) cannot go
/// below zero, so it empties the line at most.
fn remove_item(summary: &mut OrderSummary, event: &Event) -> Result<(), ProjectorError> {
    let sku = fields::string(event, "sku")?;
    let quantity = fields::positive(event, "quantity")?;
    if let Some(line) = summary.lines.iter_mut().find(|line| line.sku == sku) {
        line.quantity = line.quantity.saturating_sub(quantity);
    }
    summary.lines.retain(|line| line.quantity > 0);
    Ok(())
}

fn recompute_totals(summary: &mut OrderSummary, event: &Event) -> Result<(), ProjectorError> {
    let mut item_count: i64 = 0;
    let mut total_cents: i64 = 0;
    for line in &summary.lines {
        let line_cents = line
            .quantity
            .checked_mul(line.unit_price_cents)
            .ok_or_else(|| fields::overflow(event, "a line total"))?;
        item_count = item_count
            .checked_add(line.quantity)
            .ok_or_else(|| fields::overflow(event, "the item count"))?;
        total_cents = total_cents
            .checked_add(line_cents)
            .ok_or_else(|| fields::overflow(event, "the order total"))?;
    }
    summary.item_count = item_count;
    summary.total_cents = total_cents;
    Ok(())
}

#[cfg(test)]
mod tests;
