//! `ordo generate`: a deterministic, realistic order workload as NDJSON input events.
//!
//! Orders are placed at increasing times over `days`; each gets a life cycle drawn from the
//! seed (amendments before payment, partial payments, cancellations with refunds, shipping,
//! delivery, returns, goodwill refunds, notes, open orders that stop half-way), in one of
//! several currencies, by several customers and actors. About 3% of events are recorded
//! late: they are emitted after later events but keep their true (earlier) `occurred_at`,
//! so valid time and recording order differ as they do in real systems.
//!
//! Events are emitted in recording order through a heap of the orders still in progress,
//! so memory grows with the orders in flight, not with the whole workload. Every line
//! carries a deterministic `event_id`, which makes re-running an import safe.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::domain::Timestamp;
use crate::error::{Error, Result};

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct GenerateOptions {
    /// Number of orders.
    pub orders: u64,
    /// Seed: the same seed and options give the same bytes.
    pub seed: u64,
    /// occurred_at of the first placement.
    pub start: Timestamp,
    /// Placements spread over this many days.
    pub days: u32,
}

const CURRENCIES: [&str; 5] = ["EUR", "EUR", "USD", "GBP", "CHF"];
const CARRIERS: [&str; 4] = ["DHL", "UPS", "PostNL", "La Poste"];
const MICROS_PER_MINUTE: i64 = 60_000_000;
const MICROS_PER_DAY: i64 = 24 * 60 * MICROS_PER_MINUTE;

/// One generated event before it is written: when it is emitted, a tie-breaker, the line.
type Pending = Reverse<(i64, u64, String)>;

struct Builder<'r> {
    rng: &'r mut ChaCha8Rng,
    order_id: String,
    at: i64,
    events: Vec<(i64, Value)>,
}

impl Builder<'_> {
    /// Moves time forward by `min..max` minutes and records an event at the new time.
    fn push(&mut self, minutes: (i64, i64), event_type: &str, actor: &str, data: Value) {
        self.at += self.rng.random_range(minutes.0..=minutes.1) * MICROS_PER_MINUTE
            + self.rng.random_range(0..MICROS_PER_MINUTE);
        let mut id = [0u8; 16];
        self.rng.fill(&mut id);
        let event_id = uuid::Builder::from_random_bytes(id).into_uuid();
        let occurred_at = Timestamp::from_micros(self.at)
            .map(|t| t.to_string())
            .unwrap_or_default();
        self.events.push((
            self.at,
            json!({
                "order_id": self.order_id,
                "type": event_type,
                "data": data,
                "occurred_at": occurred_at,
                "event_id": event_id.to_string(),
                "actor": actor,
            }),
        ));
    }
}

/// A cart line: sku, quantity, unit price.
type Line = (String, i64, i64);

/// The life cycle of one order, as (occurred_at micros, input event) in stream order: a
/// cart placed, maybe changed, then paid, shipped and delivered, each step with a chance
/// of the order stopping there (cancelled, unpaid, in transit) or turning back (returned,
/// refunded). The draws from `rng` are in a fixed order: a seed gives one workload.
fn order_life(rng: &mut ChaCha8Rng, n: u64, customers: u64, placed_at: i64) -> Vec<(i64, Value)> {
    let currency = CURRENCIES[rng.random_range(0..CURRENCIES.len())];
    let mut lines = cart(rng);
    let mut b = Builder {
        order_id: format!("ORD-{n:08}"),
        at: placed_at,
        events: Vec::new(),
        rng,
    };
    b.place(n, customers, currency, &lines);
    b.at = placed_at;
    b.change_cart(n, &mut lines);
    let total: i64 = lines.iter().map(|l| l.1 * l.2).sum();
    b.note("Customer asked for gift wrapping.");
    if b.pay(n, total) {
        b.fulfil(n, total);
    }
    b.events
}

/// One to four lines; now and then a free item (a gift); the first line always costs
/// something.
fn cart(rng: &mut ChaCha8Rng) -> Vec<Line> {
    let mut lines = Vec::new();
    for i in 0..rng.random_range(1..=4) {
        let sku = format!("SKU-{:04}", rng.random_range(0..500) * 4 + i);
        let price = if i > 0 && rng.random_bool(0.03) {
            0
        } else {
            rng.random_range(199..=49_999)
        };
        lines.push((sku, rng.random_range(1..=3), price));
    }
    lines
}

impl Builder<'_> {
    /// `order_placed` with `lines`, usually with a shipping address.
    fn place(&mut self, n: u64, customers: u64, currency: &str, lines: &[Line]) {
        let line_json = |l: &Line| json!({"sku": l.0, "quantity": l.1, "unit_price": l.2});
        let customer = format!("CUST-{:06}", self.rng.random_range(0..customers));
        let mut placed = json!({"customer_id": customer, "currency": currency,
            "lines": lines.iter().map(line_json).collect::<Vec<_>>()});
        if self.rng.random_bool(0.85) {
            placed["shipping_address"] =
                json!(format!("{} Market Street, Springfield", n % 997 + 1));
        }
        self.push((0, 0), "order_placed", "web", placed);
    }

    /// Changes before payment: an item added, a quantity changed, an item removed, the
    /// address changed; `lines` follows them.
    fn change_cart(&mut self, n: u64, lines: &mut Vec<Line>) {
        if self.rng.random_bool(0.25) {
            let sku = format!("SKU-{:04}", 2000 + n % 100);
            let (q, p) = (
                self.rng.random_range(1..=2),
                self.rng.random_range(499..=9_999),
            );
            let data = json!({"sku": sku, "quantity": q, "unit_price": p});
            self.push((1, 30), "item_added", "web", data);
            lines.push((sku, q, p));
        }
        if self.rng.random_bool(0.15) {
            let q = lines[0].1 + 1;
            lines[0].1 = q;
            let data = json!({"sku": lines[0].0, "quantity": q});
            self.push((1, 30), "quantity_changed", "web", data);
        }
        if lines.len() > 1 && self.rng.random_bool(0.1) {
            let removed = lines.pop().map(|l| l.0).unwrap_or_default();
            self.push((1, 30), "item_removed", "web", json!({"sku": removed}));
        }
        if self.rng.random_bool(0.05) {
            let address = format!("{} Harbour Road, Shelbyville", n % 661 + 1);
            let data = json!({"shipping_address": address});
            self.push((1, 60), "shipping_address_changed", "support:alice", data);
        }
    }

    /// Sometimes a support note.
    fn note(&mut self, text: &str) {
        if self.rng.random_bool(0.1) {
            self.push((5, 600), "note_added", "support:bob", json!({"text": text}));
        }
    }

    /// Payment of `total`, in one or two captures; false when the order's life ends here
    /// (cancelled, unpaid or partly paid, cancelled and refunded, paid and waiting).
    fn pay(&mut self, n: u64, total: i64) -> bool {
        if total == 0 || self.rng.random_bool(0.06) {
            if total > 0 && self.rng.random_bool(0.5) {
                let data = json!({"reason": "customer changed their mind"});
                self.push((5, 2_000), "order_cancelled", "web", data);
            }
            return false; // cancelled, or left open and unpaid
        }
        let capture = |b: &mut Self, minutes, id: String, amount: i64| {
            let data = json!({"payment_id": id, "amount": amount});
            b.push(minutes, "payment_captured", "payments-svc", data);
        };
        if self.rng.random_bool(0.15) && total > 1 {
            let first = self.rng.random_range(1..total);
            capture(self, (5, 120), format!("PAY-{n}-1"), first);
            if self.rng.random_bool(0.3) {
                return false; // still partly paid
            }
            capture(self, (60, 4_000), format!("PAY-{n}-2"), total - first);
        } else {
            capture(self, (5, 120), format!("PAY-{n}"), total);
        }
        if self.rng.random_bool(0.04) {
            let data = json!({"reason": "out of stock"});
            self.push((30, 1_440), "order_cancelled", "support:alice", data);
            let data = json!({"refund_id": format!("REF-{n}"), "amount": total, "reason": "order cancelled"});
            self.push((10, 600), "payment_refunded", "payments-svc", data);
            return false;
        }
        // Else paid; sometimes still waiting to ship.
        !self.rng.random_bool(0.05)
    }

    /// Shipping and delivery, then now and then a return or a goodwill refund.
    fn fulfil(&mut self, n: u64, total: i64) {
        let carrier = CARRIERS[self.rng.random_range(0..CARRIERS.len())];
        let tracking = format!("TRK{:010}", n * 7919 % 10_000_000_000);
        let data = json!({"shipment_id": format!("SHP-{n}"), "carrier": carrier, "tracking_number": tracking});
        self.push((600, 4_000), "order_shipped", "warehouse", data);
        self.note("Carrier reported a delay.");
        if self.rng.random_bool(0.05) {
            return; // in transit
        }
        self.push((1_000, 7_000), "order_delivered", "carrier-bot", json!({}));
        if self.rng.random_bool(0.05) {
            let data = json!({"reason": "damaged in transit"});
            self.push((2_000, 20_000), "order_returned", "support:bob", data);
            let data = json!({"refund_id": format!("REF-{n}"), "amount": total});
            self.push((60, 2_000), "payment_refunded", "payments-svc", data);
        } else if self.rng.random_bool(0.03) {
            let data = json!({"refund_id": format!("REF-{n}"), "amount": (total + 9) / 10, "reason": "goodwill"});
            self.push((500, 10_000), "payment_refunded", "support:alice", data);
        }
    }
}

/// Writes the workload to `out`; returns the number of events written.
pub fn generate(options: &GenerateOptions, out: &mut dyn Write) -> Result<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let customers = (options.orders / 3).max(1);
    let span = i64::from(options.days.max(1)) * MICROS_PER_DAY;
    let gap = (span / i64::try_from(options.orders.max(1)).unwrap_or(i64::MAX)).max(1);
    let mut heap: BinaryHeap<Pending> = BinaryHeap::new();
    let mut tie = 0u64;
    let mut written = 0u64;
    let mut placed_at = options.start.micros();
    let mut emit = |line: &str, written: &mut u64| -> Result<()> {
        out.write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| Error::Storage(format!("writing the workload: {e}")))?;
        *written += 1;
        Ok(())
    };
    for n in 1..=options.orders {
        placed_at += rng.random_range(0..=2 * gap);
        while let Some(Reverse((at, _, _))) = heap.peek() {
            if *at > placed_at {
                break;
            }
            let Reverse((_, _, line)) = heap.pop().expect("peeked");
            emit(&line, &mut written)?;
        }
        let mut emitted_at = placed_at;
        for (occurred, event) in order_life(&mut rng, n, customers, placed_at) {
            // A late event is recorded hours to weeks after it happened; later events of the
            // same order can only be recorded after it.
            let delay = if rng.random_bool(0.03) {
                rng.random_range(60..=20_000) * MICROS_PER_MINUTE
            } else {
                0
            };
            emitted_at = emitted_at.max(occurred + delay);
            tie += 1;
            heap.push(Reverse((emitted_at, tie, event.to_string())));
        }
    }
    while let Some(Reverse((_, _, line))) = heap.pop() {
        emit(&line, &mut written)?;
    }
    out.flush()
        .map_err(|e| Error::Storage(format!("writing the workload: {e}")))?;
    Ok(written)
}
