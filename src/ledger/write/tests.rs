//! Tests of the write path as a whole: chains, group commit and automatic snapshots.

use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Condvar, Mutex};

use super::queue::*;
use super::snapshots::*;
use crate::domain::Position;
use crate::domain::{EventData, EventType, OrderId};
use crate::error::{Error, Result};
use crate::ledger::input::NewEvent;
use crate::store::Access;
use crate::store::{Durability, Store};

fn placed(order: &str) -> (Option<u64>, NewEvent) {
    let data = EventData::from_json(
        EventType::OrderPlaced,
        serde_json::json!({"customer_id": "C", "currency": "EUR",
                           "lines": [{"sku": "A", "quantity": 1, "unit_price": 100}]}),
    )
    .expect("valid data");
    let order = OrderId::new(order).expect("valid id");
    (Some(1), NewEvent::new(order, data))
}

#[test]
fn after_a_failed_request_of_a_chain_later_ones_are_refused_unwritten() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(tmp.path(), Access::ReadWrite).expect("store"));
    let sequencer = Sequencer::start(
        store.clone(),
        store.head().expect("head"),
        Durability::NoSync,
    )
    .expect("writer");
    let chain = Chain::default();
    let first = sequencer.submit_chained(vec![placed("A")], Some(&chain));
    // Placing A twice breaks the rules: this request fails...
    let second = sequencer.submit_chained(vec![placed("A")], Some(&chain));
    // ...so this valid one, submitted before the failure was known, is not written.
    let third = sequencer.submit_chained(vec![placed("B")], Some(&chain));
    // A request outside the chain is unaffected.
    let other = sequencer.submit(vec![placed("C")]);
    let answer = |p: Result<Pending>| p.expect("queued").recv().expect("answered");
    assert!(answer(first).is_ok());
    assert!(matches!(answer(second), Err(Error::AtLine { .. })));
    let refused = answer(third).expect_err("refused");
    assert!(refused.to_string().contains("earlier batch"), "{refused}");
    assert!(other.is_ok());
    drop(sequencer);
    assert_eq!(store.head().expect("head").position, Position(2));
    let b = OrderId::new("B").expect("valid id");
    assert_eq!(store.order_state(&b).expect("read"), None);
}

/// Waits (up to 10 s) until the ledger lists a snapshot; the automatic one is written in
/// the background.
fn snapshot_positions(store: &Store, want: usize) -> Vec<Position> {
    for _ in 0..1000 {
        let headers = store.snapshot_headers().expect("headers");
        if headers.len() >= want {
            return headers.iter().map(|h| h.position).collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no snapshot within 10 s");
}

/// A writer (no fsync) over a fresh ledger that snapshots every `events` events.
fn writer_snapshotting_every(events: u64) -> (tempfile::TempDir, Arc<Store>, Sequencer) {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(tmp.path(), Access::ReadWrite).expect("store"));
    store
        .set_settings(&crate::store::Settings {
            snapshot_every_events: events,
        })
        .expect("settings");
    let sequencer = Sequencer::start(
        store.clone(),
        store.head().expect("head"),
        Durability::NoSync,
    )
    .expect("writer");
    (tmp, store, sequencer)
}

/// Holds the writer in exclusive work, on a thread of `scope`, and returns once the
/// writer runs it: what is submitted meanwhile queues up. The returned call releases it.
fn hold_writer<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    sequencer: &'scope Sequencer,
) -> impl FnOnce() + 'scope {
    let (release, wait) = sync_channel::<()>(0);
    let (started, is_started) = sync_channel::<()>(1);
    let held = scope.spawn(move || {
        sequencer
            .exclusive(move |_| {
                let _ = started.send(());
                let _ = wait.recv();
                Ok(())
            })
            .expect("exclusive work")
    });
    is_started
        .recv()
        .expect("the writer runs the exclusive work");
    move || {
        release.send(()).expect("release the writer");
        held.join().expect("held");
    }
}

#[test]
fn queued_batches_commit_up_to_a_snapshot_multiple_and_the_snapshot_covers_exactly_it() {
    let (_tmp, store, sequencer) = writer_snapshotting_every(300);
    // Hold the writer in exclusive work until five batches of 100 are queued, so that
    // it finds them all waiting at once.
    std::thread::scope(|scope| {
        let release = hold_writer(scope, &sequencer);
        let pending: Vec<Pending> = (0..5)
            .map(|b| {
                let batch = (0..100).map(|i| placed(&format!("B{b}-{i}"))).collect();
                sequencer.submit_chained(batch, None).expect("queued")
            })
            .collect();
        release();
        let ends: Vec<Position> = pending
            .into_iter()
            .map(|p| {
                let results = p.recv().expect("answered").expect("appended");
                results.last().expect("a result").position
            })
            .collect();
        assert_eq!(ends.last(), Some(&Position(500)));
    });
    // The first group stopped at 300 (not at 500, all that was queued), and the snapshot
    // that fell due there covers exactly 300, although the rest was committed at once.
    assert_eq!(snapshot_positions(&store, 1)[0], Position(300));
    assert_eq!(sequencer.stats().commits, 2);
}

#[test]
fn every_automatic_snapshot_sits_at_a_multiple_and_the_last_due_one_is_written_at_close() {
    let (_tmp, store, sequencer) = writer_snapshotting_every(100);
    // Batches of 100 in a row make a snapshot due at every commit, often while the
    // previous one is still being written; the last batch leaves the head off a multiple.
    let sizes = [100; 30].into_iter().chain([50]);
    for (b, size) in sizes.enumerate() {
        let batch = (0..size).map(|i| placed(&format!("B{b}-{i}"))).collect();
        sequencer
            .submit_chained(batch, None)
            .expect("queued")
            .recv()
            .expect("answered")
            .expect("appended");
    }
    drop(sequencer);
    let positions: Vec<u64> = store
        .snapshot_headers()
        .expect("headers")
        .iter()
        .map(|h| h.position.0)
        .collect();
    assert!(
        positions.iter().all(|p| p % 100 == 0),
        "off a multiple: {positions:?}"
    );
    assert_eq!(
        positions.last(),
        Some(&3000),
        "the last one due: {positions:?}"
    );
}

#[test]
fn a_waiting_snapshot_is_superseded_by_a_newer_one_which_writes_after_the_current() {
    let turns = Arc::new((Mutex::new(Turns::default()), Condvar::new()));
    let due = |turns: &(Mutex<Turns>, Condvar)| {
        let mut state = lock(&turns.0);
        state.newest += 1;
        state.newest
    };
    let first = due(&turns);
    let writing = wait_for_turn(&turns, first).expect("nothing is being written");
    std::thread::scope(|scope| {
        let second = due(&turns);
        let turns = &turns;
        let waiting = scope.spawn(move || wait_for_turn(turns, second).is_some());
        // The second waits while the first is written, until a third supersedes it.
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiting.is_finished(), "the second waits for the first");
        let third = due(turns);
        turns.1.notify_all();
        assert!(!waiting.join().expect("joined"), "the second is superseded");
        let newest = scope.spawn(move || wait_for_turn(turns, third).is_some());
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!newest.is_finished(), "the third waits for the first");
        drop(writing);
        assert!(newest.join().expect("joined"), "the third is written next");
    });
    assert!(!lock(&turns.0).writing, "its turn was given back");
}

#[test]
fn async_submitters_beyond_a_full_queue_are_all_answered_once_their_events_are_committed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(tmp.path(), Access::ReadWrite).expect("store"));
    let sequencer = Arc::new(
        Sequencer::start(
            store.clone(),
            store.head().expect("head"),
            Durability::NoSync,
        )
        .expect("writer"),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // The writer is held in exclusive work while more requests than the queue holds are
    // submitted: the first QUEUE_REQUESTS_MAX fill it, the rest wait on the blocking pool.
    let requests = QUEUE_REQUESTS_MAX + 100;
    let tasks: Vec<_> = std::thread::scope(|scope| {
        let release = hold_writer(scope, &sequencer);
        let tasks: Vec<_> = (0..requests)
            .map(|i| {
                let sequencer = sequencer.clone();
                runtime.spawn(async move {
                    sequencer.submit_async(vec![placed(&format!("A{i}"))]).await
                })
            })
            .collect();
        // Nothing is answered while the writer is held: no answer before the commit.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            tasks.iter().all(|t| !t.is_finished()),
            "answered before commit"
        );
        release();
        tasks
    });
    let mut positions: Vec<u64> = runtime.block_on(async {
        let mut positions = Vec::new();
        for task in tasks {
            let results = task.await.expect("task").expect("appended");
            assert_eq!(results.len(), 1);
            positions.push(results[0].position.0);
        }
        positions
    });
    positions.sort_unstable();
    assert_eq!(positions, (1..=requests as u64).collect::<Vec<_>>());
    assert_eq!(
        store.head().expect("head").position,
        Position(requests as u64)
    );
    let too_many = (0..=BATCH_EVENTS_MAX)
        .map(|i| placed(&format!("B{i}")))
        .collect();
    let refused = runtime
        .block_on(sequencer.submit_async(too_many))
        .expect_err("refused");
    assert!(matches!(refused, Error::InvalidInput(_)), "{refused}");
}
