//! Faults inside the write path (issue 6, item 2): a commit that fails before its write, or
//! after it (an fsync error reported for data that did reach the disk). In both cases the
//! append reports an error, nothing partial is visible, the writer's idea of the head stays
//! equal to what is on disk, the next append succeeds, and a retry with the same event id
//! never creates a second event.

use std::collections::HashSet;

use serde_json::json;

use ordo::domain::{EventData, EventType, OrderId, Position};
use ordo::ledger::{Filter, Ledger, NewEvent, NoProgress, parse_event_id};
use ordo::store::{Access, Fault};

fn placed(order: &str, id: &str) -> NewEvent {
    let data = EventData::from_json(
        EventType::OrderPlaced,
        json!({"customer_id": "C-1", "currency": "EUR",
               "lines": [{"sku": "A", "quantity": 1, "unit_price": 700}]}),
    )
    .expect("valid data");
    let mut event = NewEvent::new(OrderId::new(order).expect("id"), data);
    event.event_id = Some(parse_event_id(id).expect("uuid"));
    event
}

fn id(n: u32) -> String {
    format!("0190f5a2-0000-7000-8000-{n:012x}")
}

/// The ledger on disk is whole: verify passes, projections equal a rebuild, event ids are
/// unique.
fn assert_whole(ledger: &Ledger) {
    let report = ledger.verify(&NoProgress).expect("verify runs");
    assert!(report.ok, "{report:?}");
    let mut ids = HashSet::new();
    for event in ledger.log(Position(1), None, None) {
        let event = event.expect("readable");
        assert!(ids.insert(event.event_id), "event id stored twice");
    }
    let rebuilt = ledger
        .rebuild(false, Box::new(NoProgress))
        .expect("rebuild runs");
    assert!(rebuilt.matched, "projections differ from a fold of the log");
}

#[test]
fn a_commit_failing_before_its_write_writes_nothing_and_the_retry_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(dir.path(), Access::ReadWrite).expect("open");
    ledger.append(placed("A", &id(1))).expect("append");
    ledger.store().inject_fault(Fault::BeforeWrite);
    let error = ledger.append(placed("B", &id(2))).expect_err("the fault");
    assert_eq!(error.kind(), "storage");
    assert!(
        error.to_string().contains("retry with the same event ids"),
        "{error}"
    );
    // Nothing of it is visible, on disk or to the writer.
    assert_eq!(ledger.head().expect("head").position, Position(1));
    let b = OrderId::new("B").expect("id");
    let unseen = ledger
        .state(&b, &Filter::default())
        .expect_err("B was never stored");
    assert_eq!(unseen.kind(), "not_found", "{unseen}");
    // The retry appends it, at the next position.
    let retried = ledger.append(placed("B", &id(2))).expect("retry");
    assert_eq!((retried.position, retried.duplicate), (Position(2), false));
    // A failing batch: all or none.
    ledger.store().inject_fault(Fault::BeforeWrite);
    let batch = vec![(1, placed("C", &id(3))), (2, placed("D", &id(4)))];
    let failed = ledger
        .append_batch(batch.clone())
        .expect_err("the injected fault");
    assert_eq!(failed.kind(), "storage", "{failed}");
    assert_eq!(ledger.head().expect("head").position, Position(2));
    let results = ledger.append_batch(batch).expect("retry");
    assert_eq!(
        results.iter().map(|r| r.position.0).collect::<Vec<_>>(),
        [3, 4]
    );
    assert_whole(&ledger);
}

#[test]
fn a_commit_failing_after_its_write_is_found_again_and_never_duplicated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(dir.path(), Access::ReadWrite).expect("open");
    ledger.append(placed("A", &id(1))).expect("append");
    ledger.store().inject_fault(Fault::AfterWrite);
    let error = ledger.append(placed("B", &id(2))).expect_err("the fault");
    assert_eq!(error.kind(), "storage");
    // The batch did reach the disk; the writer knows it (its head was re-read).
    assert_eq!(ledger.head().expect("head").position, Position(2));
    assert_eq!(
        ledger.committed().map(|c| *c.borrow()),
        Some(Position(2)),
        "subscribers are told of the stored event"
    );
    // The client, told of a failure, retries with the same id: a duplicate, not a second B.
    let retried = ledger.append(placed("B", &id(2))).expect("retry");
    assert_eq!((retried.position, retried.duplicate), (Position(2), true));
    // The next append chains after it: nothing stored is overwritten.
    let next = ledger.append(placed("C", &id(3))).expect("append");
    assert_eq!(next.position, Position(3));
    // The same for a batch, and a retry of a batch that partly overlaps.
    ledger.store().inject_fault(Fault::AfterWrite);
    let batch = vec![(1, placed("D", &id(4))), (2, placed("E", &id(5)))];
    let failed = ledger.append_batch(batch).expect_err("the injected fault");
    assert_eq!(failed.kind(), "storage", "{failed}");
    let retry = vec![
        (1, placed("D", &id(4))),
        (2, placed("E", &id(5))),
        (3, placed("F", &id(6))),
    ];
    let results = ledger.append_batch(retry).expect("retry");
    let seen: Vec<(u64, bool)> = results
        .iter()
        .map(|r| (r.position.0, r.duplicate))
        .collect();
    assert_eq!(seen, [(4, true), (5, true), (6, false)]);
    assert_whole(&ledger);
    drop(ledger);
    // And after a restart, the same.
    let reopened = Ledger::open(dir.path(), Access::ReadWrite).expect("reopen");
    assert_eq!(reopened.head().expect("head").position, Position(6));
    assert_whole(&reopened);
}

/// The writer stages the next group while the previous one is written. When a commit
/// fails, the group staged on top of it is refused unwritten (its positions assumed the
/// failed one). Whatever the interleaving, every answer must be true: an acknowledged event
/// is stored where it was said to be, a failed one can be retried, and nothing is stored
/// twice or skipped.
#[test]
fn a_commit_failing_among_concurrent_appends_leaves_every_answer_true() {
    const WRITERS: u32 = 8;
    const EACH: u32 = 40;
    for fault in [Fault::BeforeWrite, Fault::AfterWrite] {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(dir.path(), Access::ReadWrite).expect("open");
        type Answer = (
            String,
            String,
            Result<ordo::ledger::AppendResult, ordo::Error>,
        );
        let answers: Vec<Answer> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let ledger = &ledger;
                    scope.spawn(move || {
                        (0..EACH)
                            .map(|i| {
                                if w == 0 && i == EACH / 2 {
                                    ledger.store().inject_fault(fault);
                                }
                                let n = w * 1000 + i;
                                let order = format!("W{w}-{i}");
                                let answer = ledger.append(placed(&order, &id(n)));
                                (order, id(n), answer)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("writer thread"))
                .collect()
        });
        assert!(
            answers.iter().any(|(_, _, answer)| answer.is_err()),
            "{fault:?}: the injected fault fails a commit"
        );
        for (_, event_id, answer) in &answers {
            match answer {
                Ok(result) => {
                    let stored = ledger
                        .log(result.position, Some(result.position), None)
                        .next()
                        .expect("an acknowledged event is stored")
                        .expect("readable");
                    assert_eq!(stored.event_id.to_string(), *event_id, "{fault:?}");
                }
                Err(e) => assert_eq!(e.kind(), "storage", "{fault:?}: {e}"),
            }
        }
        // Every failed append is retried with its id: each ends up stored exactly once.
        for (order, event_id, answer) in &answers {
            if answer.is_err() {
                ledger
                    .append(placed(order, event_id))
                    .expect("the retry succeeds");
            }
        }
        let head = ledger.head().expect("head").position;
        assert_eq!(head, Position(u64::from(WRITERS * EACH)), "{fault:?}");
        assert_whole(&ledger);
    }
}
