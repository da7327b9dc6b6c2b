//! Concurrent appends through the library: threads of one process share the sequencer, every
//! acknowledged event gets its own gapless position, and conditional appends to one order
//! have exactly one winner per expected version.

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use ordo::domain::{EventData, EventType, OrderId, Position, Version};
use ordo::ledger::{Filter, Ledger, NewEvent, NoProgress};
use ordo::store::Access;
use serde_json::json;

fn placed() -> EventData {
    EventData::from_json(
        EventType::OrderPlaced,
        json!({"customer_id": "C-1", "currency": "EUR",
               "lines": [{"sku": "A", "quantity": 1, "unit_price": 1000}]}),
    )
    .expect("valid order_placed")
}

fn note(text: &str) -> EventData {
    EventData::from_json(EventType::NoteAdded, json!({"text": text})).expect("valid note")
}

fn order(name: String) -> OrderId {
    OrderId::new(name).expect("valid order id")
}

#[test]
fn threads_appending_at_once_get_gapless_unique_positions() {
    const THREADS: u64 = 16;
    const EACH: u64 = 25;
    let tmp = tempfile::tempdir().expect("temp dir");
    let ledger = Arc::new(Ledger::open(&tmp.path().join("l"), Access::ReadWrite).expect("open"));
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (ledger, barrier) = (Arc::clone(&ledger), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let id = order(format!("T-{t}"));
                let mut positions = Vec::new();
                let first = ledger
                    .append(NewEvent::new(id.clone(), placed()))
                    .expect("place");
                positions.push(first.position);
                for i in 1..EACH {
                    let mut new = NewEvent::new(id.clone(), note(&format!("note {i}")));
                    new.expected_version = Some(Version(i));
                    let r = ledger.append(new).expect("own order, right version");
                    assert_eq!(r.version, Version(i + 1));
                    positions.push(r.position);
                }
                positions
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for handle in handles {
        let positions = handle.join().expect("writer thread");
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "one writer's positions increase"
        );
        for p in positions {
            assert!(all.insert(p), "position {p} acknowledged twice");
        }
    }
    let expected: BTreeSet<Position> = (1..=THREADS * EACH).map(Position).collect();
    assert_eq!(all, expected, "acknowledged positions are exactly 1..=N");
    assert_eq!(
        ledger.head().expect("head").position,
        Position(THREADS * EACH)
    );
    for t in 0..THREADS {
        let state = ledger
            .state(&order(format!("T-{t}")), &Filter::default())
            .expect("state");
        assert_eq!(state.version, Version(EACH));
    }
    assert!(ledger.verify(&NoProgress).expect("verify").ok);
}

#[test]
fn racing_conditional_appends_to_one_order_have_one_winner_per_version() {
    const THREADS: usize = 8;
    const ROUNDS: u64 = 20;
    let tmp = tempfile::tempdir().expect("temp dir");
    let ledger = Arc::new(Ledger::open(&tmp.path().join("l"), Access::ReadWrite).expect("open"));
    let id = order("HOT-1".to_owned());
    ledger
        .append(NewEvent::new(id.clone(), placed()))
        .expect("place");
    for round in 1..=ROUNDS {
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (ledger, barrier, id) = (Arc::clone(&ledger), Arc::clone(&barrier), id.clone());
                std::thread::spawn(move || {
                    let mut new = NewEvent::new(id, note(&format!("round {round} thread {t}")));
                    new.expected_version = Some(Version(round));
                    barrier.wait();
                    ledger.append(new)
                })
            })
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect();
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one append wins");
        assert_eq!(winners[0].version, Version(round + 1));
        for loser in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(loser.kind(), "conflict", "round {round}: {loser}");
            assert_eq!(loser.exit_code(), 4);
        }
    }
    let history = ledger.history(&id, &Filter::default()).expect("history");
    let versions: Vec<u64> = history.iter().map(|e| e.version.0).collect();
    assert_eq!(
        versions,
        (1..=ROUNDS + 1).collect::<Vec<_>>(),
        "no duplicate or missing versions"
    );
    assert_eq!(ledger.head().expect("head").position, Position(ROUNDS + 1));
}

#[test]
fn a_second_open_for_writing_is_refused_while_the_first_is_open() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = tmp.path().join("l");
    let first = Ledger::open(&path, Access::ReadWrite).expect("open");
    let err = Ledger::open(&path, Access::ReadWrite).expect_err("the ledger is locked");
    assert_eq!(err.kind(), "ledger_in_use");
    assert_eq!(err.exit_code(), 1);
    // Readers are not locked out while the writer works.
    first
        .append(NewEvent::new(order("R-1".to_owned()), placed()))
        .expect("append");
    let reader = Ledger::open(&path, Access::ReadOnly).expect("a reader opens beside the writer");
    assert_eq!(reader.head().expect("head").position, Position(1));
    drop(first);
    Ledger::open(&path, Access::ReadWrite).expect("free again once the writer closes");
}

#[test]
fn automatic_snapshots_taken_while_threads_append_equal_a_full_replay_at_their_position() {
    const THREADS: u64 = 8;
    const EACH: u64 = 60;
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("l");
    let ledger = Arc::new(
        Ledger::open_with(&dir, Access::ReadWrite, ordo::store::Durability::NoSync).expect("open"),
    );
    ledger
        .set_settings(ordo::store::Settings {
            snapshot_every_events: 37,
        })
        .expect("settings");
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let id = order(format!("SNAP-{t}-{}", i / 6));
                    let data = if i % 6 == 0 { placed() } else { note("n") };
                    ledger.append(NewEvent::new(id, data)).expect("append");
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("appender");
    }
    drop(ledger); // waits for a snapshot still being written
    let ledger = Ledger::open(&dir, Access::ReadOnly).expect("reopen");
    let snapshots = ledger.store().snapshot_headers().expect("headers");
    // Every automatic snapshot sits at a multiple of the setting, and the newest one due
    // (480 events, every 37: at 444) was written, whichever were superseded on the way.
    let positions: Vec<u64> = snapshots.iter().map(|h| h.position.0).collect();
    assert!(positions.iter().all(|p| p % 37 == 0), "{positions:?}");
    assert_eq!(positions.last(), Some(&(37 * 12)), "{positions:?}");
    for header in snapshots {
        // Loading checks the digest; the content must equal a fold of the log up to it.
        let book = ordo::replay::load_snapshot(ledger.store(), &header).expect("snapshot loads");
        let filter = Filter {
            at_position: Some(header.position),
            ..Filter::default()
        };
        let full =
            ordo::replay::replay(ledger.store(), &filter, false, &NoProgress).expect("full replay");
        assert_eq!(book.orders, full.book.orders, "at {}", header.position);
        assert_eq!(book.customers, full.book.customers);
        assert_eq!(book.revenue, full.book.revenue);
        assert_eq!(book.totals, full.book.totals);
    }
}

#[test]
fn a_snapshot_whose_rows_were_changed_is_refused_by_its_digest() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(&tmp.path().join("l"), Access::ReadWrite).expect("open");
    for name in ["A", "B"] {
        ledger
            .append(NewEvent::new(order(name.to_owned()), placed()))
            .expect("append");
    }
    let header = ledger.snapshot_create().expect("snapshot");
    let store = ledger.store();
    assert!(ordo::replay::load_snapshot(store, &header).is_ok());
    // Swap the two orders' rows: each still decodes, the content is wrong.
    let rows = store
        .raw_rows(ordo::store::CF_SNAPSHOTS)
        .expect("rows")
        .into_iter()
        .filter(|(key, _)| key.get(8) == Some(&ordo::format::keys::SNAPSHOT_ORDER))
        .collect::<Vec<_>>();
    assert_eq!(rows.len(), 2);
    store
        .tamper_raw(ordo::store::CF_SNAPSHOTS, &rows[0].0, Some(&rows[1].1))
        .expect("tamper");
    let err = ordo::replay::load_snapshot(store, &header).expect_err("refused");
    assert!(
        err.to_string().contains("does not match its digest"),
        "{err}"
    );
    // The summary, which reads only what the tail needs, still checks the whole snapshot.
    let err =
        ordo::replay::summarize(store, &Filter::default(), true, &NoProgress).expect_err("refused");
    assert!(
        err.to_string().contains("does not match its digest"),
        "{err}"
    );
}

#[test]
fn the_head_read_while_commits_land_is_always_consistent() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ledger = Arc::new(Ledger::open(&tmp.path().join("l"), Access::ReadWrite).expect("open"));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (ledger, done) = (ledger.clone(), done.clone());
            std::thread::spawn(move || {
                for n in 0..150 {
                    ledger
                        .append(NewEvent::new(order(format!("H-{w}-{n}")), placed()))
                        .expect("appends");
                }
                done.store(true, std::sync::atomic::Ordering::Relaxed);
            })
        })
        .collect();
    // Reads of the head (its record and the last event, which a commit changes together)
    // never disagree, however the commits interleave with them.
    let mut reads = 0u64;
    let mut last = Position(0);
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let head = ledger.head().expect("a consistent head while commits land");
        assert!(head.position >= last, "the head never moves back");
        last = head.position;
        reads += 1;
    }
    for writer in writers {
        writer.join().expect("writer");
    }
    assert!(reads > 10, "{reads} reads raced the commits");
    assert_eq!(ledger.head().expect("head").position, Position(600));
}
