//! Projections: the whole ledger folded into current state, as pure functions of the log.
//!
//! - orders by status, and the count per status;
//! - per-customer totals (per customer and currency);
//! - revenue by day of occurred_at (UTC) and currency.
//!
//! (The per-order state is `domain::apply`.) Every aggregate is a sum, so one event's
//! contribution is an `Effects` value that can be added to stored rows (the commit path) or to
//! an in-memory `Book` (replay). Both paths use the same `effects`, so they cannot disagree.
//! `Effects` is one event's contribution; `Delta` is the sum of a commit's `Effects`.
//! No I/O here: `tables` turns deltas and books into rows, `store` persists them and
//! `replay` drives the fold.

mod orders;
pub mod query;
pub mod tables;

pub use orders::Orders;
pub use tables::{BookRow, Table, digest};

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::{
    Currency, CustomerId, Event, EventData, OrderId, OrderState, Position, Status, Timestamp,
    apply, apply_to,
};

/// Version of the projection code. Snapshots record it; a snapshot written by another version
/// is never trusted (it is reported and ignored). Bump it whenever `effects` or `apply` change
/// what they compute, or the digest that checks a snapshot changes.
///
/// 2: snapshot and projection digests are BLAKE3 (version 1: SHA-256); docs/decisions.md.
pub const PROJECTION_VERSION: u32 = 2;

/// A UTC calendar day, as days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Day(pub i32);

const MICROS_PER_DAY: i64 = 86_400_000_000;

impl Day {
    /// The day `t` falls on.
    pub fn of(t: Timestamp) -> Day {
        let days = t.micros().div_euclid(MICROS_PER_DAY);
        Day(i32::try_from(days).expect("timestamps span years 1 to 9999, well within i32 days"))
    }

    /// Midnight UTC of the day.
    pub fn start(self) -> Timestamp {
        Timestamp::from_micros(i64::from(self.0) * MICROS_PER_DAY)
            .expect("a day derived from a timestamp is in range")
    }

    /// `YYYY-MM-DD`.
    pub fn label(self) -> String {
        self.start().to_datetime().format("%Y-%m-%d").to_string()
    }

    /// `YYYY-MM`.
    pub fn month_label(self) -> String {
        self.start().to_datetime().format("%Y-%m").to_string()
    }
}

/// Key of a per-customer totals row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CustomerKey {
    /// The customer.
    pub customer_id: CustomerId,
    /// Amounts of different currencies are never added together.
    pub currency: Currency,
}

/// Totals over one customer's orders in one currency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRow {
    /// Orders placed.
    pub orders: i64,
    /// Sum of order totals.
    pub total: i64,
    /// Sum of captures.
    pub paid: i64,
    /// Sum of refunds.
    pub refunded: i64,
}

/// Key of a revenue row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RevenueKey {
    /// The day the events occurred.
    pub day: Day,
    /// The currency.
    pub currency: Currency,
}

/// What happened on one day in one currency, by occurred_at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevenueRow {
    /// Orders placed that day.
    pub orders_placed: i64,
    /// Sum of their totals at placement.
    pub placed_total: i64,
    /// Payments captured that day.
    pub captured: i64,
    /// Refunds that day.
    pub refunded: i64,
    /// Orders cancelled that day.
    pub orders_cancelled: i64,
}

/// Adds row `b` into `a` (saturating: sums of accepted amounts cannot overflow in practice,
/// and a projection must stay total).
pub trait Add {
    /// `self += other`.
    fn add(&mut self, other: &Self);
}

impl Add for CustomerRow {
    fn add(&mut self, o: &Self) {
        self.orders = self.orders.saturating_add(o.orders);
        self.total = self.total.saturating_add(o.total);
        self.paid = self.paid.saturating_add(o.paid);
        self.refunded = self.refunded.saturating_add(o.refunded);
    }
}

impl Add for RevenueRow {
    fn add(&mut self, o: &Self) {
        self.orders_placed = self.orders_placed.saturating_add(o.orders_placed);
        self.placed_total = self.placed_total.saturating_add(o.placed_total);
        self.captured = self.captured.saturating_add(o.captured);
        self.refunded = self.refunded.saturating_add(o.refunded);
        self.orders_cancelled = self.orders_cancelled.saturating_add(o.orders_cancelled);
    }
}

/// One event's contribution to the aggregate projections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effects {
    /// The order's status before (`None`: it did not exist) and after, when it changed.
    pub status: Option<(Option<Status>, Status)>,
    /// Change of the customer's totals; `None` when the event changes none of them (most
    /// events: the row exists since the placement, and adding zero is skipped).
    pub customer: Option<(CustomerKey, CustomerRow)>,
    /// Change of the day's revenue, for the types that count there.
    pub revenue: Option<(RevenueKey, RevenueRow)>,
}

/// What `event` adds to the aggregates, given the order before (`prev`) and after (`next`).
pub fn effects(prev: Option<&OrderState>, next: &OrderState, event: &Event) -> Effects {
    effects_since(prev.map(Before::of), next, event)
}

/// What `effects` needs of an order's state before an event (copied, so that the state
/// can then be changed in place).
#[derive(Clone, Copy, Debug)]
pub struct Before {
    status: Status,
    total: i64,
    paid: i64,
    refunded: i64,
}

impl Before {
    /// The parts of `state` that effects compare.
    pub fn of(state: &OrderState) -> Before {
        Before {
            status: state.status,
            total: state.total.0,
            paid: state.paid.0,
            refunded: state.refunded.0,
        }
    }
}

/// `effects` given a summary of the state before the event.
pub fn effects_since(prev: Option<Before>, next: &OrderState, event: &Event) -> Effects {
    let before = prev.map(|p| p.status);
    let status = (before != Some(next.status)).then_some((before, next.status));
    let customer = CustomerRow {
        orders: i64::from(prev.is_none()),
        total: next.total.0.saturating_sub(prev.map_or(0, |p| p.total)),
        paid: next.paid.0.saturating_sub(prev.map_or(0, |p| p.paid)),
        refunded: next
            .refunded
            .0
            .saturating_sub(prev.map_or(0, |p| p.refunded)),
    };
    let row = match &event.data {
        EventData::OrderPlaced(_) => Some(RevenueRow {
            orders_placed: 1,
            placed_total: next.total.0,
            ..RevenueRow::default()
        }),
        EventData::PaymentCaptured(p) => Some(RevenueRow {
            captured: p.amount.0,
            ..RevenueRow::default()
        }),
        EventData::PaymentRefunded(r) => Some(RevenueRow {
            refunded: r.amount.0,
            ..RevenueRow::default()
        }),
        EventData::OrderCancelled(_) => Some(RevenueRow {
            orders_cancelled: 1,
            ..RevenueRow::default()
        }),
        _ => None,
    };
    Effects {
        status,
        customer: (customer != CustomerRow::default()).then(|| {
            (
                CustomerKey {
                    customer_id: next.customer_id.clone(),
                    currency: next.currency,
                },
                customer,
            )
        }),
        revenue: row.map(|row| {
            (
                RevenueKey {
                    day: Day::of(event.occurred_at),
                    currency: next.currency,
                },
                row,
            )
        }),
    }
}

/// Count of orders per status, indexed like `Status::ALL`.
pub type Statuses = [u64; 6];

/// The sum of many events' effects: what one commit adds to the stored aggregates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Per order whose status changed: its status before the first and after the last event.
    /// (Hash maps: a commit adds one entry per event, and the commit sorts them once.)
    pub moves: HashMap<OrderId, (Option<Status>, Status)>,
    /// Added to customer rows.
    pub customers: HashMap<CustomerKey, CustomerRow>,
    /// Added to revenue rows.
    pub revenue: BTreeMap<RevenueKey, RevenueRow>,
    /// The latest occurred_at among the events.
    pub max_occurred_at: Option<Timestamp>,
}

impl Delta {
    /// Adds one event's effects.
    pub fn add(&mut self, order_id: &OrderId, occurred_at: Timestamp, effects: Effects) {
        if let Some((from, to)) = effects.status {
            self.moves
                .entry(order_id.clone())
                .and_modify(|m| m.1 = to)
                .or_insert((from, to));
        }
        if let Some((key, row)) = effects.customer {
            self.customers.entry(key).or_default().add(&row);
        }
        if let Some((key, row)) = effects.revenue {
            self.revenue.entry(key).or_default().add(&row);
        }
        self.max_occurred_at = self.max_occurred_at.max(Some(occurred_at));
    }
}

/// The aggregate state kept beside the rows: counts per status and the latest occurred_at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Orders per status.
    pub statuses: Statuses,
    /// The latest occurred_at of any event folded.
    pub max_occurred_at: Option<Timestamp>,
}

impl Totals {
    /// An order moves from status `from` (`None`: it is new) to `to`. The one rule for the
    /// counts, in a fold, a replay's tail and a commit alike: a move out of a status that
    /// counts no order means the counts and the orders disagree, and is refused (the caller
    /// says what that is: a broken invariant, or damaged stored totals).
    pub fn move_order(&mut self, from: Option<Status>, to: Status) -> Result<(), String> {
        if let Some(from) = from {
            let count = &mut self.statuses[from.index()];
            *count = count
                .checked_sub(1)
                .ok_or_else(|| format!("no {} order to move", from.as_str()))?;
        }
        self.statuses[to.index()] += 1;
        Ok(())
    }
}

/// Every projection in memory: what a replay builds, a snapshot stores, and a rebuild
/// compares with the stored projections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Book {
    /// Every order's state.
    pub orders: Orders,
    /// Per-customer totals, unordered (`customers_in_order` sorts them). A fold looks a
    /// customer up for most events: in a `BTreeMap` the string comparisons of that search
    /// were a large share of a rebuild's profile (docs/benchmarks.md).
    pub customers: HashMap<CustomerKey, CustomerRow>,
    /// Revenue by day.
    pub revenue: BTreeMap<RevenueKey, RevenueRow>,
    /// Status counts and latest occurred_at.
    pub totals: Totals,
    /// Position of the last event folded (0: none).
    pub position: Position,
}

/// The entries of a hash map in key order: the order of stored keys, of digests and of
/// query output.
pub fn in_key_order<K: Ord, V>(map: &HashMap<K, V>) -> Vec<(&K, &V)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

impl Book {
    /// The customer rows in key order (the order of their stored keys and of the digest).
    pub fn customers_in_order(&self) -> Vec<(&CustomerKey, &CustomerRow)> {
        in_key_order(&self.customers)
    }

    /// Folds one event, in position order. Returns false (and changes nothing) for an event
    /// of an order that does not exist in this view (only in `--valid-at` views).
    pub fn apply(&mut self, event: &Event) -> bool {
        // In place: a replay folds every event into this map, and cloning each order's
        // state (lines, strings) per event cost more than the fold itself.
        let effects = match self.orders.get_mut(&event.order_id) {
            Some(state) => {
                let before = Before::of(state);
                apply_to(state, event);
                effects_since(Some(before), state, event)
            }
            None => {
                let Some(next) = apply(None, event) else {
                    return false;
                };
                let effects = effects_since(None, &next, event);
                self.orders.insert_new(event.order_id.clone(), next);
                effects
            }
        };
        if let Some((from, to)) = effects.status {
            self.totals
                .move_order(from, to)
                .expect("a book's status counts include every order it folded");
        }
        if let Some((key, row)) = effects.customer {
            self.customers.entry(key).or_default().add(&row);
        }
        if let Some((key, row)) = effects.revenue {
            self.revenue.entry(key).or_default().add(&row);
        }
        self.totals.max_occurred_at = self.totals.max_occurred_at.max(Some(event.occurred_at));
        self.position = event.position;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_out_of_an_empty_status_is_refused_and_changes_nothing() {
        let mut totals = Totals::default();
        totals.move_order(None, Status::Placed).expect("new order");
        totals
            .move_order(Some(Status::Placed), Status::Paid)
            .expect("placed -> paid");
        let before = totals;
        let refused = totals
            .move_order(Some(Status::Placed), Status::Cancelled)
            .expect_err("no placed order is left");
        assert!(refused.contains("placed"), "{refused}");
        assert_eq!(totals, before);
    }
}
