//! Order state and the pure fold `apply` that builds it from events.

use serde::{Deserialize, Serialize};

use super::event::{Address, Event, EventData, Line, OrderPlaced};
use super::ids::{CustomerId, OrderId, Position, Version};
use super::money::{Amount, Currency};
use super::time::Timestamp;

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Placed, not fully paid.
    Placed,
    /// Fully paid.
    Paid,
    /// Left the warehouse.
    Shipped,
    /// Reached the customer.
    Delivered,
    /// Cancelled before shipping.
    Cancelled,
    /// Sent back after delivery.
    Returned,
}

impl Status {
    /// Every status, in life-cycle order.
    pub const ALL: [Status; 6] = [
        Status::Placed,
        Status::Paid,
        Status::Shipped,
        Status::Delivered,
        Status::Cancelled,
        Status::Returned,
    ];

    /// The status's index in `Status::ALL` (its byte in `status_orders` keys).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The status as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Placed => "placed",
            Status::Paid => "paid",
            Status::Shipped => "shipped",
            Status::Delivered => "delivered",
            Status::Cancelled => "cancelled",
            Status::Returned => "returned",
        }
    }

    /// Parses a status name.
    pub fn parse(name: &str) -> Result<Status, String> {
        Status::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "unknown status {name:?}; known statuses: placed, paid, shipped, delivered, cancelled, returned"
                )
            })
    }
}

/// Count of orders per status.
pub type StatusCounts = [u64; 6];

/// The state of one order after a prefix of its stream (product.md section 6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    /// The order.
    pub order_id: OrderId,
    /// Who ordered.
    pub customer_id: CustomerId,
    /// Where the order is in its life.
    pub status: Status,
    /// Currency of every amount.
    pub currency: Currency,
    /// Current lines.
    pub lines: Vec<Line>,
    /// Sum of quantity x unit_price over lines.
    pub total: Amount,
    /// Sum of captures.
    pub paid: Amount,
    /// Sum of refunds.
    pub refunded: Amount,
    /// Current shipping address.
    pub shipping_address: Option<Address>,
    /// occurred_at of `order_placed`.
    pub placed_at: Timestamp,
    /// recorded_at of the last applied event.
    pub updated_at: Timestamp,
    /// Version of the last applied event.
    pub version: Version,
    /// Position of the last applied event.
    pub position: Position,
}

impl OrderState {
    fn placed(event: &Event, placed: &OrderPlaced) -> OrderState {
        OrderState {
            order_id: event.order_id.clone(),
            customer_id: placed.customer_id.clone(),
            status: Status::Placed,
            currency: placed.currency,
            lines: placed.lines.clone(),
            total: lines_total(&placed.lines),
            paid: Amount::ZERO,
            refunded: Amount::ZERO,
            shipping_address: placed.shipping_address.clone(),
            placed_at: event.occurred_at,
            updated_at: event.recorded_at,
            version: event.version,
            position: event.position,
        }
    }

    /// The line for `sku`, if the order has one.
    pub fn line(&self, sku: &super::ids::Sku) -> Option<&Line> {
        self.lines.iter().find(|l| &l.sku == sku)
    }
}

/// Sum of line totals, saturating: only for lines the rules accepted, where it cannot
/// overflow; `apply` must stay total.
fn lines_total(lines: &[Line]) -> Amount {
    lines.iter().fold(Amount::ZERO, |sum, line| {
        sum.saturating_add(Amount(line.quantity.0.saturating_mul(line.unit_price.0)))
    })
}

/// Folds one event into an order's state. Pure and total: it never fails and never checks a
/// rule (the rules were checked at append; replay never re-checks).
///
/// An event for an order that does not exist in `state` leaves it absent. That only happens
/// in filtered views (`--valid-at` can select a back-dated change to an order whose placement
/// occurred later), never on the full log.
pub fn apply(state: Option<OrderState>, event: &Event) -> Option<OrderState> {
    match (state, &event.data) {
        (None, EventData::OrderPlaced(placed)) => Some(OrderState::placed(event, placed)),
        (None, _) => None,
        (Some(mut s), _) => {
            apply_to(&mut s, event);
            Some(s)
        }
    }
}

/// Folds one event into an existing order's state in place: `apply` without moving the
/// state (replays fold millions of events into a map of states).
pub fn apply_to(s: &mut OrderState, event: &Event) {
    match &event.data {
        // A second placement never passes the rules; nothing to fold.
        EventData::OrderPlaced(_) | EventData::NoteAdded(_) => {}
        EventData::ItemAdded(a) => {
            s.lines.push(Line {
                sku: a.sku.clone(),
                quantity: a.quantity,
                unit_price: a.unit_price,
            });
            s.total = lines_total(&s.lines);
        }
        EventData::ItemRemoved(r) => {
            s.lines.retain(|l| l.sku != r.sku);
            s.total = lines_total(&s.lines);
        }
        EventData::QuantityChanged(q) => {
            if let Some(line) = s.lines.iter_mut().find(|l| l.sku == q.sku) {
                line.quantity = q.quantity;
            }
            s.total = lines_total(&s.lines);
        }
        EventData::ShippingAddressChanged(c) => {
            s.shipping_address = Some(c.shipping_address.clone());
        }
        EventData::PaymentCaptured(p) => {
            s.paid = s.paid.saturating_add(p.amount);
            if s.status == Status::Placed && s.paid >= s.total {
                s.status = Status::Paid;
            }
        }
        EventData::PaymentRefunded(r) => s.refunded = s.refunded.saturating_add(r.amount),
        EventData::OrderShipped(_) => s.status = Status::Shipped,
        EventData::OrderDelivered(_) => s.status = Status::Delivered,
        EventData::OrderCancelled(_) => s.status = Status::Cancelled,
        EventData::OrderReturned(_) => s.status = Status::Returned,
    }
    s.version = event.version;
    s.position = event.position;
    s.updated_at = event.recorded_at;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_index_names_its_place_in_all() {
        for (i, status) in Status::ALL.into_iter().enumerate() {
            assert_eq!(status.index(), i);
        }
    }
}
