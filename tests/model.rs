//! Model test: random sequences of appends, valid and invalid, against a plain in-memory
//! reference of product.md sections 3 and 4 written here, independently of `domain::rules`.
//! After every step the ledger and the model agree on the outcome (accepted, duplicate,
//! rejected, conflict, invalid), on every order's state and version, and on the head; the
//! same holds after closing and reopening the ledger.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use ordo::domain::{EventData, EventId, EventType, OrderId, Status, Version};
use ordo::ledger::{Filter, Ledger, NewEvent, NoProgress};
use ordo::store::Access;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{Value, json};

const ORDERS: [&str; 3] = ["O-1", "O-2", "O-3"];
const SKUS: [&str; 3] = ["A", "B", "C"];

/// One step a writer may take.
#[derive(Clone, Debug)]
enum Op {
    Append {
        order: usize,
        event_type: EventType,
        /// Small numbers that the data builder turns into quantities, prices and amounts.
        knobs: [i64; 3],
        expected: Expect,
        /// `Some(k)`: use the k-th event id of a small pool, so ids get reused.
        event_id: Option<u8>,
    },
    /// Send the previous append again, unchanged (a client retrying).
    Retry,
    Reopen,
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    None,
    Current,
    Off(i8),
}

fn op() -> impl Strategy<Value = Op> {
    let append = (
        0..ORDERS.len(),
        prop_oneof![
            1 => Just(EventType::OrderPlaced),
            2 => Just(EventType::PaymentCaptured),
            4 => prop::sample::select(EventType::ALL.to_vec()),
        ],
        prop::array::uniform3(0i64..6),
        prop_oneof![
            3 => Just(Expect::None),
            2 => Just(Expect::Current),
            1 => (-2i8..3).prop_map(Expect::Off),
        ],
        prop::option::weighted(0.3, 0u8..8),
    )
        .prop_map(
            |(order, event_type, knobs, expected, event_id)| Op::Append {
                order,
                event_type,
                knobs,
                expected,
                event_id,
            },
        );
    prop_oneof![20 => append, 3 => Just(Op::Retry), 1 => Just(Op::Reopen)]
}

/// The data of an event of `event_type`, built from `knobs`; some values break the schema
/// (quantity 0, amount 0, a free order) on purpose. `order` (the model's view) only steers
/// inputs towards interesting cases: with `c == 0` a payment pays exactly what is open.
fn data_json(event_type: EventType, [a, b, c]: [i64; 3], order: Option<&ModelOrder>) -> Value {
    let sku = SKUS[(a as usize) % SKUS.len()];
    match event_type {
        EventType::OrderPlaced => {
            let mut lines = vec![json!({"sku": "A", "quantity": a.max(1), "unit_price": b * 100})];
            if c > 2 {
                lines.push(json!({"sku": "B", "quantity": 1, "unit_price": c * 50}));
            }
            json!({"customer_id": "C-1", "currency": "EUR", "lines": lines})
        }
        EventType::ItemAdded => json!({"sku": sku, "quantity": b, "unit_price": c * 100}),
        EventType::ItemRemoved => json!({"sku": sku}),
        EventType::QuantityChanged => json!({"sku": sku, "quantity": b}),
        EventType::ShippingAddressChanged => json!({"shipping_address": format!("{a} Road")}),
        EventType::PaymentCaptured => {
            let open = order.map_or(0, |o| o.total() - o.paid);
            let amount = if c == 0 && open > 0 {
                open
            } else {
                b * 100 + c * 50
            };
            json!({"payment_id": "P", "amount": amount})
        }
        EventType::PaymentRefunded => json!({"refund_id": "R", "amount": b * 100}),
        EventType::OrderShipped => json!({"shipment_id": "S"}),
        EventType::OrderDelivered => json!({}),
        EventType::OrderCancelled => json!({"reason": "changed mind"}),
        EventType::OrderReturned => json!({}),
        EventType::NoteAdded => json!({"text": "note"}),
    }
}

/// The reference state of one order: only what the rules need.
#[derive(Clone, Debug, PartialEq)]
struct ModelOrder {
    status: &'static str,
    lines: BTreeMap<String, (i64, i64)>,
    paid: i64,
    refunded: i64,
    version: u64,
}

impl ModelOrder {
    fn total(&self) -> i64 {
        self.lines.values().map(|(q, p)| q * p).sum()
    }
}

/// One append as sent to the ledger.
#[derive(Clone, Debug)]
struct Request {
    order_id: &'static str,
    event_type: EventType,
    data: Value,
    expected_version: Option<u64>,
    event_id: Option<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Appended,
    Duplicate,
    Invalid,
    Rejected,
    Conflict,
}

#[derive(Default)]
struct Model {
    orders: HashMap<String, ModelOrder>,
    /// event id -> (order, type, data) of the event stored under it.
    ids: HashMap<u8, (String, EventType, Value)>,
    position: u64,
}

/// The schema constraints that `data_json` can break.
fn schema_valid(event_type: EventType, data: &Value) -> bool {
    let int = |field: &str| data[field].as_i64().unwrap_or(0);
    match event_type {
        EventType::OrderPlaced => {
            let lines = data["lines"].as_array().expect("built with lines");
            lines
                .iter()
                .map(|l| {
                    l["quantity"].as_i64().unwrap_or(0) * l["unit_price"].as_i64().unwrap_or(0)
                })
                .sum::<i64>()
                > 0
        }
        EventType::ItemAdded | EventType::QuantityChanged => int("quantity") >= 1,
        EventType::PaymentCaptured | EventType::PaymentRefunded => int("amount") > 0,
        _ => true,
    }
}

impl Model {
    fn step(
        &mut self,
        order_id: &str,
        event_type: EventType,
        data: &Value,
        expected: Option<u64>,
        event_id: Option<u8>,
    ) -> Outcome {
        if !schema_valid(event_type, data) {
            return Outcome::Invalid;
        }
        if let Some(id) = event_id
            && let Some(stored) = self.ids.get(&id)
        {
            return if *stored == (order_id.to_owned(), event_type, data.clone()) {
                Outcome::Duplicate
            } else {
                Outcome::Conflict
            };
        }
        let current = self.orders.get(order_id).map_or(0, |o| o.version);
        if expected.is_some_and(|e| e != current) {
            return Outcome::Conflict;
        }
        let Some(next) = self.decide(order_id, event_type, data) else {
            return Outcome::Rejected;
        };
        self.orders.insert(order_id.to_owned(), next);
        self.position += 1;
        if let Some(id) = event_id {
            self.ids
                .insert(id, (order_id.to_owned(), event_type, data.clone()));
        }
        Outcome::Appended
    }

    /// Section 3: the order after the event, or `None` when a rule refuses it.
    fn decide(&self, order_id: &str, event_type: EventType, data: &Value) -> Option<ModelOrder> {
        let int = |field: &str| data[field].as_i64().expect("numeric field");
        let sku = || data["sku"].as_str().expect("sku").to_owned();
        let Some(order) = self.orders.get(order_id) else {
            if event_type != EventType::OrderPlaced {
                return None;
            }
            let lines = data["lines"].as_array().expect("lines");
            return Some(ModelOrder {
                status: "placed",
                lines: lines
                    .iter()
                    .map(|l| {
                        let sku = l["sku"].as_str().expect("sku").to_owned();
                        let q = l["quantity"].as_i64().expect("quantity");
                        let p = l["unit_price"].as_i64().expect("unit_price");
                        (sku, (q, p))
                    })
                    .collect(),
                paid: 0,
                refunded: 0,
                version: 1,
            });
        };
        let mut o = order.clone();
        o.version += 1;
        let editable = o.status == "placed" && o.paid == 0;
        match event_type {
            EventType::OrderPlaced => return None,
            EventType::ItemAdded => {
                if !editable || o.lines.contains_key(&sku()) {
                    return None;
                }
                o.lines.insert(sku(), (int("quantity"), int("unit_price")));
            }
            EventType::ItemRemoved => {
                if !editable || !o.lines.contains_key(&sku()) || o.lines.len() == 1 {
                    return None;
                }
                o.lines.remove(&sku());
            }
            EventType::QuantityChanged => {
                let line = o.lines.get_mut(&sku()).filter(|_| editable)?;
                line.0 = int("quantity");
            }
            EventType::ShippingAddressChanged => {
                if !["placed", "paid"].contains(&o.status) {
                    return None;
                }
            }
            EventType::PaymentCaptured => {
                if o.status != "placed" || int("amount") > o.total() - o.paid {
                    return None;
                }
                o.paid += int("amount");
                if o.paid == o.total() {
                    o.status = "paid";
                }
            }
            EventType::PaymentRefunded => {
                if int("amount") > o.paid - o.refunded {
                    return None;
                }
                o.refunded += int("amount");
            }
            EventType::OrderShipped => o.status = transition(o.status, &["paid"], "shipped")?,
            EventType::OrderDelivered => {
                o.status = transition(o.status, &["shipped"], "delivered")?
            }
            EventType::OrderCancelled => {
                o.status = transition(o.status, &["placed", "paid"], "cancelled")?
            }
            EventType::OrderReturned => {
                o.status = transition(o.status, &["delivered"], "returned")?
            }
            EventType::NoteAdded => {}
        }
        Some(o)
    }
}

fn transition(from: &'static str, allowed: &[&str], to: &'static str) -> Option<&'static str> {
    allowed.contains(&from).then_some(to)
}

fn event_id(k: u8) -> EventId {
    EventId(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_8000_0000_0000_0000 + u128::from(k),
    ))
}

fn outcome(result: ordo::Result<ordo::ledger::AppendResult>) -> Outcome {
    match result {
        Ok(r) if r.duplicate => Outcome::Duplicate,
        Ok(_) => Outcome::Appended,
        Err(e) => match e.kind() {
            "invalid_input" => Outcome::Invalid,
            "rejected" => Outcome::Rejected,
            "conflict" => Outcome::Conflict,
            other => panic!("unexpected error kind {other}: {e}"),
        },
    }
}

/// Every order's state and version in the ledger equals the model's, both from the
/// projection and from a fold of the order's stream; the head position agrees.
fn assert_agrees(ledger: &Ledger, model: &Model) {
    let head = ledger.head().expect("head");
    assert_eq!(head.position.0, model.position, "head position");
    assert_eq!(
        head.orders,
        model.orders.len() as u64,
        "orders counted in the head"
    );
    let fold = Filter {
        at_position: Some(head.position),
        ..Filter::default()
    };
    for order_id in ORDERS {
        let id = OrderId::new(order_id).expect("valid id");
        let Some(expected) = model.orders.get(order_id) else {
            let err = ledger
                .state(&id, &Filter::default())
                .expect_err("no such order");
            assert_eq!(err.kind(), "not_found");
            continue;
        };
        let projected = ledger.state(&id, &Filter::default()).expect("state");
        let folded = ledger.state(&id, &fold).expect("folded state");
        assert_eq!(projected, folded, "projection equals fold for {order_id}");
        assert_eq!(
            projected.version,
            Version(expected.version),
            "{order_id} version"
        );
        assert_eq!(
            projected.status.as_str(),
            expected.status,
            "{order_id} status"
        );
        assert_eq!(projected.total.0, expected.total(), "{order_id} total");
        assert_eq!(projected.paid.0, expected.paid, "{order_id} paid");
        assert_eq!(
            projected.refunded.0, expected.refunded,
            "{order_id} refunded"
        );
        let lines: BTreeMap<String, (i64, i64)> = projected
            .lines
            .iter()
            .map(|l| (l.sku.as_str().to_owned(), (l.quantity.0, l.unit_price.0)))
            .collect();
        assert_eq!(lines, expected.lines, "{order_id} lines");
        if projected.status == Status::Paid {
            assert_eq!(projected.paid, projected.total);
        }
    }
}

/// One random sequence of requests against a fresh ledger and a fresh model; `seen` collects
/// the outcomes that occurred (one bit per `Outcome`).
fn run_case(ops: Vec<Op>, seen: &Mutex<u8>) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("ledger");
    let mut ledger = Some(Ledger::open(&path, Access::ReadWrite).expect("open"));
    let mut model = Model::default();
    // The last request sent, exactly as sent, for `Op::Retry`.
    let mut last: Option<Request> = None;
    for op in ops {
        let request = match op {
            Op::Reopen => {
                drop(ledger.take());
                ledger = Some(Ledger::open(&path, Access::ReadWrite).expect("reopen"));
                assert_agrees(ledger.as_ref().expect("open"), &model);
                continue;
            }
            Op::Retry => match last.clone() {
                Some(request) => request,
                None => continue,
            },
            Op::Append {
                order,
                event_type,
                knobs,
                expected,
                event_id,
            } => {
                let order_id = ORDERS[order];
                let current = model.orders.get(order_id).map_or(0, |o| o.version);
                Request {
                    order_id,
                    event_type,
                    data: data_json(event_type, knobs, model.orders.get(order_id)),
                    expected_version: match expected {
                        Expect::None => None,
                        Expect::Current => Some(current),
                        Expect::Off(d) => Some(current.saturating_add_signed(i64::from(d))),
                    },
                    event_id,
                }
            }
        };
        let Request {
            order_id,
            event_type,
            data,
            expected_version,
            event_id: id,
        } = request.clone();
        last = Some(request);
        let want = model.step(order_id, event_type, &data, expected_version, id);
        let got = match EventData::from_json(event_type, data.clone()) {
            Err(_) => Outcome::Invalid,
            Ok(event_data) => {
                let mut new = NewEvent::new(OrderId::new(order_id).expect("valid id"), event_data);
                new.expected_version = expected_version.map(Version);
                new.event_id = id.map(event_id);
                outcome(ledger.as_ref().expect("open").append(new))
            }
        };
        prop_assert_eq!(
            &got,
            &want,
            "{:?} {} {} expected={:?} id={:?}",
            event_type,
            order_id,
            data,
            expected_version,
            id
        );
        *seen.lock().expect("not poisoned") |= 1 << (got as u8);
        assert_agrees(ledger.as_ref().expect("open"), &model);
    }
    let l = ledger.as_ref().expect("open");
    let report = l.verify(&NoProgress).expect("verify runs");
    prop_assert!(report.ok, "verify: {:?}", report.reason);
    Ok(())
}

#[test]
fn ledger_agrees_with_a_reference_model_of_the_rules() {
    let seen = Mutex::new(0u8);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 32,
        ..ProptestConfig::default()
    });
    runner
        .run(&prop::collection::vec(op(), 1..120), |ops| {
            run_case(ops, &seen)
        })
        .unwrap_or_else(|e| panic!("the ledger and the model disagree: {e}"));
    // The cases exercise every outcome, so the agreement above means something.
    assert_eq!(
        *seen.lock().expect("not poisoned"),
        0b1_1111,
        "outcomes seen (bit per Outcome)"
    );
}
