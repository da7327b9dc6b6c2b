//! Query answers (product.md section 5 and 6) computed from projection rows, whichever source
//! they come from: the stored projections (now) or a replayed `Book` (at a point in time).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{CustomerKey, CustomerRow, Day, RevenueKey, RevenueRow, Statuses};
use crate::domain::{Currency, CustomerId, OrderState, Status};

/// `query statuses` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusCount {
    /// The status.
    pub status: Status,
    /// Orders in it.
    pub count: u64,
}

/// Every status with its count, in life-cycle order.
pub fn statuses(counts: &Statuses) -> Vec<StatusCount> {
    Status::ALL
        .iter()
        .zip(counts)
        .map(|(status, count)| StatusCount {
            status: *status,
            count: *count,
        })
        .collect()
}

/// Filters of `query orders`.
#[derive(Clone, Debug, Default)]
pub struct OrderFilter {
    /// Only orders in this status.
    pub status: Option<Status>,
    /// Only this customer's orders.
    pub customer: Option<CustomerId>,
    /// At most this many rows.
    pub limit: Option<usize>,
}

impl OrderFilter {
    /// Whether `state` passes the status and customer filters.
    pub fn admits(&self, state: &OrderState) -> bool {
        self.status.is_none_or(|s| s == state.status)
            && self
                .customer
                .as_ref()
                .is_none_or(|c| *c == state.customer_id)
    }
}

/// `query orders`: states in order-id order, filtered and limited.
pub fn orders<'a>(
    states: impl Iterator<Item = &'a OrderState>,
    filter: &OrderFilter,
) -> Vec<OrderState> {
    states
        .filter(|s| filter.admits(s))
        .take(filter.limit.unwrap_or(usize::MAX))
        .cloned()
        .collect()
}

/// `query customers` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CustomerTotals {
    /// The customer.
    pub customer_id: CustomerId,
    /// The currency of the amounts.
    pub currency: Currency,
    /// Orders placed.
    pub orders: i64,
    /// Sum of order totals.
    pub total: i64,
    /// Sum of captures.
    pub paid: i64,
    /// Sum of refunds.
    pub refunded: i64,
}

/// `query customers`: one row per customer and currency.
pub fn customers<'a>(
    rows: impl Iterator<Item = (&'a CustomerKey, &'a CustomerRow)>,
    customer: Option<&CustomerId>,
) -> Vec<CustomerTotals> {
    rows.filter(|(key, _)| customer.is_none_or(|c| *c == key.customer_id))
        .map(|(key, row)| CustomerTotals {
            customer_id: key.customer_id.clone(),
            currency: key.currency,
            orders: row.orders,
            total: row.total,
            paid: row.paid,
            refunded: row.refunded,
        })
        .collect()
}

/// Bucket size of `query revenue`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Period {
    /// `YYYY-MM-DD`.
    #[default]
    Day,
    /// `YYYY-MM`.
    Month,
}

/// Filters of `query revenue`.
#[derive(Clone, Debug, Default)]
pub struct RevenueFilter {
    /// Bucket size.
    pub by: Period,
    /// First day included.
    pub from: Option<Day>,
    /// Last day included.
    pub to: Option<Day>,
    /// Only this currency.
    pub currency: Option<Currency>,
}

/// `query revenue` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Revenue {
    /// `YYYY-MM-DD` or `YYYY-MM`.
    pub period: String,
    /// The currency.
    pub currency: Currency,
    /// Orders placed in the period.
    pub orders_placed: i64,
    /// Their totals at placement.
    pub placed_total: i64,
    /// Captured in the period.
    pub captured: i64,
    /// Refunded in the period.
    pub refunded: i64,
    /// captured - refunded.
    pub net: i64,
    /// Orders cancelled in the period.
    pub orders_cancelled: i64,
}

/// `query revenue`: rows in period order, then currency.
pub fn revenue<'a>(
    rows: impl Iterator<Item = (&'a RevenueKey, &'a RevenueRow)>,
    filter: &RevenueFilter,
) -> Vec<Revenue> {
    let mut buckets: BTreeMap<(String, Currency), RevenueRow> = BTreeMap::new();
    for (key, row) in rows {
        if filter.from.is_some_and(|from| key.day < from)
            || filter.to.is_some_and(|to| key.day > to)
            || filter.currency.as_ref().is_some_and(|c| *c != key.currency)
        {
            continue;
        }
        let period = match filter.by {
            Period::Day => key.day.label(),
            Period::Month => key.day.month_label(),
        };
        super::Add::add(buckets.entry((period, key.currency)).or_default(), row);
    }
    buckets
        .into_iter()
        .map(|((period, currency), r)| Revenue {
            period,
            currency,
            orders_placed: r.orders_placed,
            placed_total: r.placed_total,
            captured: r.captured,
            refunded: r.refunded,
            net: r.captured.saturating_sub(r.refunded),
            orders_cancelled: r.orders_cancelled,
        })
        .collect()
}
