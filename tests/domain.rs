//! The order rules of product.md section 3, each allowed and refused, written as
//! given(events).when(event).then(accepted | rejected), against the pure domain code.

use ordo::domain::{
    Event, EventData, EventId, EventType, Hash, OrderId, OrderState, Position, Status, Timestamp,
    Version, apply, decide,
};
use serde_json::{Value, json};

fn data(event_type: &str, value: Value) -> EventData {
    let t = EventType::parse(event_type).expect("known type");
    EventData::from_json(t, value).expect("valid data")
}

fn order() -> OrderId {
    OrderId::new("ORD-1").expect("valid id")
}

/// The state after `events`, each sequenced as the ledger would.
fn given(events: &[EventData]) -> Option<OrderState> {
    events.iter().enumerate().fold(None, |state, (i, d)| {
        let n = i as u64 + 1;
        let event = Event {
            position: Position(n),
            order_id: order(),
            version: Version(n),
            event_id: EventId(uuid::Uuid::from_u128(u128::from(n))),
            schema_version: 1,
            recorded_at: Timestamp::from_micros(n as i64).expect("in range"),
            occurred_at: Timestamp::from_micros(n as i64).expect("in range"),
            actor: None,
            correlation_id: None,
            causation_id: None,
            data: d.clone(),
            hash: Hash::default(),
        };
        let decided = decide(&order(), state.as_ref(), d);
        assert!(decided.is_ok(), "given events must be valid: {decided:?}");
        apply(state, &event)
    })
}

fn placed() -> EventData {
    data(
        "order_placed",
        json!({"customer_id": "C-1", "currency": "EUR",
        "lines": [{"sku": "A", "quantity": 2, "unit_price": 500}, {"sku": "B", "quantity": 1, "unit_price": 0}]}),
    )
}
fn capture(amount: i64) -> EventData {
    data(
        "payment_captured",
        json!({"payment_id": "P", "amount": amount}),
    )
}
fn refund(amount: i64) -> EventData {
    data(
        "payment_refunded",
        json!({"refund_id": "R", "amount": amount}),
    )
}
fn shipped() -> EventData {
    data("order_shipped", json!({"shipment_id": "S"}))
}
fn delivered() -> EventData {
    data("order_delivered", json!({}))
}
fn cancelled() -> EventData {
    data("order_cancelled", json!({"reason": "no"}))
}
fn returned() -> EventData {
    data("order_returned", json!({}))
}
fn add(sku: &str) -> EventData {
    data(
        "item_added",
        json!({"sku": sku, "quantity": 1, "unit_price": 100}),
    )
}
fn remove(sku: &str) -> EventData {
    data("item_removed", json!({"sku": sku}))
}
fn change(sku: &str, quantity: i64) -> EventData {
    data(
        "quantity_changed",
        json!({"sku": sku, "quantity": quantity}),
    )
}
fn address() -> EventData {
    data(
        "shipping_address_changed",
        json!({"shipping_address": "1 Road"}),
    )
}
fn note() -> EventData {
    data("note_added", json!({"text": "hello"}))
}

#[track_caller]
fn accepted(history: &[EventData], event: EventData) {
    let state = given(history);
    if let Err(r) = decide(&order(), state.as_ref(), &event) {
        panic!("expected {} to be accepted, got: {r}", event.event_type());
    }
}

#[track_caller]
fn rejected(history: &[EventData], event: EventData, reason_contains: &str) {
    let state = given(history);
    let r = decide(&order(), state.as_ref(), &event).expect_err("expected a rejection");
    assert_eq!(r.order_id, order());
    assert!(
        r.reason.contains(reason_contains),
        "reason {:?} lacks {reason_contains:?}",
        r.reason
    );
}

#[test]
fn order_placed_needs_a_new_order() {
    accepted(&[], placed());
    rejected(&[placed()], placed(), "already exists");
}

#[test]
fn every_other_type_needs_an_existing_order() {
    for event in [
        capture(1),
        refund(1),
        shipped(),
        delivered(),
        cancelled(),
        returned(),
        add("C"),
        remove("A"),
        change("A", 3),
        address(),
        note(),
    ] {
        rejected(&[], event, "does not exist");
    }
}

#[test]
fn lines_change_only_while_placed_and_unpaid() {
    accepted(&[placed()], add("C"));
    accepted(&[placed()], remove("B"));
    accepted(&[placed()], change("A", 5));
    rejected(&[placed(), capture(100)], add("C"), "already paid");
    rejected(&[placed(), capture(1000)], remove("B"), "status is paid");
    rejected(
        &[placed(), cancelled()],
        change("A", 5),
        "status is cancelled",
    );
}

#[test]
fn line_changes_respect_the_lines_on_the_order() {
    rejected(&[placed()], add("A"), "already on the order");
    rejected(&[placed()], remove("Z"), "not on the order");
    rejected(&[placed()], change("Z", 2), "not on the order");
    rejected(&[placed(), remove("B")], remove("A"), "last line");
}

#[test]
fn a_line_change_that_would_overflow_the_total_is_rejected() {
    let huge = data(
        "item_added",
        json!({"sku": "H", "quantity": i64::MAX, "unit_price": 2}),
    );
    rejected(&[placed()], huge, "64-bit");
    rejected(&[placed()], change("A", i64::MAX), "64-bit");
}

#[test]
fn the_address_changes_while_placed_or_paid() {
    accepted(&[placed()], address());
    accepted(&[placed(), capture(1000)], address());
    rejected(
        &[placed(), capture(1000), shipped()],
        address(),
        "status is shipped",
    );
}

#[test]
fn payments_are_captured_while_placed_up_to_the_unpaid_amount() {
    accepted(&[placed()], capture(1000));
    accepted(&[placed(), capture(400)], capture(600));
    rejected(&[placed(), capture(400)], capture(601), "only 600");
    rejected(&[placed(), capture(1000)], capture(1), "status is paid");
}

#[test]
fn an_order_becomes_paid_when_captures_reach_the_total() {
    let state = given(&[placed(), capture(400)]).expect("exists");
    assert_eq!(
        (state.status, state.paid.0, state.total.0),
        (Status::Placed, 400, 1000)
    );
    let state = given(&[placed(), capture(400), capture(600)]).expect("exists");
    assert_eq!(state.status, Status::Paid);
}

#[test]
fn refunds_are_bounded_by_what_was_paid_and_not_refunded_in_any_status() {
    accepted(&[placed(), capture(1000)], refund(1000));
    accepted(
        &[placed(), capture(1000), shipped(), delivered(), returned()],
        refund(10),
    );
    rejected(
        &[placed(), capture(1000), refund(900)],
        refund(101),
        "only 100",
    );
    rejected(&[placed()], refund(1), "only 0");
    let state = given(&[placed(), capture(1000), refund(300)]).expect("exists");
    assert_eq!(state.refunded.0, 300);
}

#[test]
fn shipping_delivery_and_return_follow_the_life_cycle() {
    accepted(&[placed(), capture(1000)], shipped());
    rejected(&[placed()], shipped(), "status is placed");
    accepted(&[placed(), capture(1000), shipped()], delivered());
    rejected(&[placed(), capture(1000)], delivered(), "status is paid");
    accepted(
        &[placed(), capture(1000), shipped(), delivered()],
        returned(),
    );
    rejected(
        &[placed(), capture(1000), shipped()],
        returned(),
        "status is shipped",
    );
    let state =
        given(&[placed(), capture(1000), shipped(), delivered(), returned()]).expect("exists");
    assert_eq!(state.status, Status::Returned);
}

#[test]
fn cancellation_is_allowed_while_placed_or_paid() {
    accepted(&[placed()], cancelled());
    accepted(&[placed(), capture(1000)], cancelled());
    rejected(
        &[placed(), capture(1000), shipped()],
        cancelled(),
        "status is shipped",
    );
    rejected(&[placed(), cancelled()], cancelled(), "status is cancelled");
}

#[test]
fn notes_are_always_allowed_on_an_existing_order() {
    accepted(&[placed()], note());
    accepted(&[placed(), cancelled()], note());
    accepted(
        &[placed(), capture(1000), shipped(), delivered(), returned()],
        note(),
    );
}

#[test]
fn apply_folds_lines_and_totals() {
    let state = given(&[placed(), add("C"), change("A", 3), remove("B")]).expect("exists");
    let skus: Vec<&str> = state.lines.iter().map(|l| l.sku.as_str()).collect();
    assert_eq!(skus, ["A", "C"]);
    assert_eq!(state.total.0, 3 * 500 + 100);
    assert_eq!(state.version, Version(4));
}

#[test]
fn invalid_data_is_refused_with_the_field_path() {
    let cases = [
        (
            "order_placed",
            json!({"customer_id": "C", "currency": "EUR", "lines": [{"sku": "A", "quantity": 0, "unit_price": 1}]}),
            "data.lines[0].quantity",
        ),
        (
            "order_placed",
            json!({"customer_id": "C", "currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "unit_price": 0}]}),
            "data.lines",
        ),
        (
            "order_placed",
            json!({"customer_id": "C", "currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "unit_price": 1}, {"sku": "A", "quantity": 1, "unit_price": 1}]}),
            "data.lines[1].sku",
        ),
        (
            "order_placed",
            json!({"customer_id": "C", "currency": "eur", "lines": [{"sku": "A", "quantity": 1, "unit_price": 1}]}),
            "data.currency",
        ),
        (
            "payment_captured",
            json!({"payment_id": "P", "amount": 0}),
            "data.amount",
        ),
        (
            "payment_refunded",
            json!({"refund_id": "R", "amount": -5}),
            "data.amount",
        ),
        (
            "item_added",
            json!({"sku": "A", "quantity": 1, "unit_price": -1}),
            "data.unit_price",
        ),
        ("note_added", json!({"text": ""}), "data.text"),
        ("order_cancelled", json!({}), "data"),
    ];
    for (t, value, path) in cases {
        let err =
            EventData::from_json(EventType::parse(t).expect("known"), value).expect_err("invalid");
        assert_eq!(err.path, path, "{t}: {err}");
    }
}
