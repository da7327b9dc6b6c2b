//! The order rules of product.md section 3: `decide` says whether an event may be appended to
//! an order in a given state. A refusal is a value (`Rejection`), never a panic or an I/O
//! error.

use std::fmt;

use super::event::EventData;
use super::ids::OrderId;
use super::money::Amount;
use super::state::{OrderState, Status};

/// An event refused by an order rule: the order and the reason, as a sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The order the event was for.
    pub order_id: OrderId,
    /// Why it was refused.
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "order {}: {}", self.order_id, self.reason)
    }
}

/// Checks `data` against the rules for an order whose current state is `state` (`None`: the
/// order does not exist). `Ok(())` means the event may be appended.
pub fn decide(
    order_id: &OrderId,
    state: Option<&OrderState>,
    data: &EventData,
) -> Result<(), Rejection> {
    let event_type = data.event_type();
    let reason = match (state, data) {
        (None, EventData::OrderPlaced(_)) => return Ok(()),
        (Some(_), EventData::OrderPlaced(_)) => {
            "cannot place the order: it already exists".to_owned()
        }
        (None, _) => format!("cannot apply {event_type}: the order does not exist"),
        (Some(s), _) => match decide_on(s, data) {
            Ok(()) => return Ok(()),
            Err(reason) => reason,
        },
    };
    Err(Rejection {
        order_id: order_id.clone(),
        reason,
    })
}

/// The rules for an event (not a placement) of an existing order in state `s`: the reason
/// when it is refused.
fn decide_on(s: &OrderState, data: &EventData) -> Result<(), String> {
    let event_type = data.event_type();
    let status_is = |allowed: &[Status], what: &str| {
        if allowed.contains(&s.status) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
        Err(format!(
            "cannot apply {event_type}: status is {}; {what} only when {}",
            s.status.as_str(),
            names.join(" or ")
        ))
    };
    match data {
        EventData::OrderPlaced(_) => unreachable!("`decide` answers placements"),
        EventData::ItemAdded(_) | EventData::ItemRemoved(_) | EventData::QuantityChanged(_) => {
            status_is(&[Status::Placed], "lines can change")?;
            if s.paid != Amount::ZERO {
                return Err(format!(
                    "cannot apply {event_type}: {} is already paid; lines can change only before any payment",
                    s.paid
                ));
            }
            decide_lines(s, data).map_err(|reason| format!("cannot apply {event_type}: {reason}"))
        }
        EventData::ShippingAddressChanged(_) => {
            status_is(&[Status::Placed, Status::Paid], "the address can change")
        }
        EventData::PaymentCaptured(p) => {
            status_is(&[Status::Placed], "a payment can be captured")?;
            let open = s.total.checked_sub(s.paid).unwrap_or(Amount::ZERO);
            if p.amount > open {
                return Err(format!(
                    "cannot capture {}: only {open} of the total {} is unpaid",
                    p.amount, s.total
                ));
            }
            Ok(())
        }
        EventData::PaymentRefunded(r) => {
            let refundable = s.paid.checked_sub(s.refunded).unwrap_or(Amount::ZERO);
            if r.amount > refundable {
                return Err(format!(
                    "cannot refund {}: only {refundable} of the {} paid is not yet refunded",
                    r.amount, s.paid
                ));
            }
            Ok(())
        }
        EventData::OrderShipped(_) => status_is(&[Status::Paid], "an order can ship"),
        EventData::OrderDelivered(_) => status_is(&[Status::Shipped], "an order can be delivered"),
        EventData::OrderCancelled(_) => {
            status_is(&[Status::Placed, Status::Paid], "an order can be cancelled")
        }
        EventData::OrderReturned(_) => status_is(&[Status::Delivered], "an order can be returned"),
        EventData::NoteAdded(_) => Ok(()),
    }
}

/// The line rules of an unpaid, placed order: the sku must (or must not) be on it, the last
/// line stays, and the new total fits in i64.
fn decide_lines(s: &OrderState, data: &EventData) -> Result<(), String> {
    let total_after = |replaced: Option<&super::ids::Sku>, added: Option<Amount>| {
        let mut total = Amount::ZERO;
        for line in s.lines.iter().filter(|l| Some(&l.sku) != replaced) {
            total = line.total().and_then(|t| total.checked_add(t))?;
        }
        match added {
            Some(a) => total.checked_add(a),
            None => Some(total),
        }
    };
    let overflow = || "the order total would not fit in a 64-bit integer".to_owned();
    match data {
        EventData::ItemAdded(a) => {
            if s.line(&a.sku).is_some() {
                return Err(format!("sku {} is already on the order", a.sku));
            }
            let line_total = a.quantity.0.checked_mul(a.unit_price.0).map(Amount);
            line_total
                .and_then(|t| total_after(None, Some(t)))
                .map(|_| ())
                .ok_or_else(overflow)
        }
        EventData::ItemRemoved(r) => {
            if s.line(&r.sku).is_none() {
                return Err(format!("sku {} is not on the order", r.sku));
            }
            if s.lines.len() == 1 {
                return Err(format!(
                    "sku {} is the last line; cancel the order instead",
                    r.sku
                ));
            }
            Ok(())
        }
        EventData::QuantityChanged(q) => {
            let Some(line) = s.line(&q.sku) else {
                return Err(format!("sku {} is not on the order", q.sku));
            };
            let line_total = q.quantity.0.checked_mul(line.unit_price.0).map(Amount);
            line_total
                .and_then(|t| total_after(Some(&q.sku), Some(t)))
                .map(|_| ())
                .ok_or_else(overflow)
        }
        _ => Ok(()),
    }
}
