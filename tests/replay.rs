//! Projections, snapshots and replay against a naive fold of the log written here: for random
//! points in time, every query answer (stored now, replayed with and without snapshots)
//! equals the naive answer; a point-in-time copy verifies with the original's hash; a forced
//! rebuild puts back exactly the projection rows that were damaged.

use std::collections::BTreeMap;

use ordo::domain::{
    EventData, EventType, OrderId, OrderState, Position, Status, Timestamp, Version, apply,
};
use ordo::format::{codec, keys};
use ordo::generate::{GenerateOptions, generate};
use ordo::ledger::{Filter, ImportOptions, Ledger, NewEvent, NoProgress, import};
use ordo::projection::Day;
use ordo::projection::query::{self, OrderFilter, RevenueFilter};
use ordo::store::{Access, CF_CUSTOMERS, CF_ORDER_STATE, CF_REVENUE, CF_STATUS_ORDERS, Settings};
use proptest::prelude::*;
use serde_json::json;

/// The answers a naive fold gives: order states, status counts, customer rows and revenue rows.
#[derive(Debug, PartialEq)]
struct Naive {
    orders: Vec<OrderState>,
    statuses: Vec<u64>,
    customers: Vec<(String, String, [i64; 4])>,
    revenue: Vec<(String, String, [i64; 5])>,
}

fn naive(ledger: &Ledger, filter: &Filter) -> Naive {
    let mut states: BTreeMap<OrderId, OrderState> = BTreeMap::new();
    let mut revenue: BTreeMap<(i32, String), [i64; 5]> = BTreeMap::new();
    for event in ledger.store().events_from(Position(1)) {
        let event = event.expect("event reads");
        if !filter.admits(&event) {
            continue;
        }
        let Some(next) = apply(states.get(&event.order_id).cloned(), &event) else {
            continue;
        };
        let key = (
            Day::of(event.occurred_at).0,
            next.currency.as_str().to_owned(),
        );
        let row = revenue.entry(key).or_default();
        match &event.data {
            EventData::OrderPlaced(_) => {
                row[0] += 1;
                row[1] += next.total.0;
            }
            EventData::PaymentCaptured(p) => row[2] += p.amount.0,
            EventData::PaymentRefunded(r) => row[3] += r.amount.0,
            EventData::OrderCancelled(_) => row[4] += 1,
            _ => {}
        }
        states.insert(event.order_id.clone(), next);
    }
    let mut customers: BTreeMap<(String, String), [i64; 4]> = BTreeMap::new();
    for s in states.values() {
        let row = customers
            .entry((
                s.customer_id.as_str().to_owned(),
                s.currency.as_str().to_owned(),
            ))
            .or_default();
        row[0] += 1;
        row[1] += s.total.0;
        row[2] += s.paid.0;
        row[3] += s.refunded.0;
    }
    Naive {
        statuses: Status::ALL
            .iter()
            .map(|st| states.values().filter(|s| s.status == *st).count() as u64)
            .collect(),
        orders: states.into_values().collect(),
        customers: customers
            .into_iter()
            .map(|((c, cur), r)| (c, cur, r))
            .collect(),
        revenue: revenue
            .into_iter()
            .filter(|(_, r)| r[0] + r[2] + r[3] + r[4] > 0)
            .map(|((day, cur), r)| (Day(day).label(), cur, r))
            .collect(),
    }
}

/// What the ledger's queries answer.
fn answered(ledger: &Ledger, filter: &Filter) -> Naive {
    let orders = ledger
        .query_orders(&OrderFilter::default(), filter)
        .expect("query orders");
    let statuses = ledger.query_statuses(filter).expect("query statuses");
    let customers = ledger.query_customers(None, filter).expect("customers");
    let revenue = ledger
        .query_revenue(&RevenueFilter::default(), filter)
        .expect("revenue");
    Naive {
        orders,
        statuses: statuses.iter().map(|s| s.count).collect(),
        customers: customers
            .into_iter()
            .map(|c| {
                let key = (
                    c.customer_id.as_str().to_owned(),
                    c.currency.as_str().to_owned(),
                );
                (key.0, key.1, [c.orders, c.total, c.paid, c.refunded])
            })
            .collect(),
        revenue: revenue
            .into_iter()
            .map(|r: query::Revenue| {
                let row = [
                    r.orders_placed,
                    r.placed_total,
                    r.captured,
                    r.refunded,
                    r.orders_cancelled,
                ];
                (r.period, r.currency.as_str().to_owned(), row)
            })
            .collect(),
    }
}

/// A ledger of a generated workload, imported in commits small enough that automatic
/// snapshots (every 300 events) land in the middle of the log.
fn generated_ledger(dir: &std::path::Path, seed: u64) -> Ledger {
    generated_ledger_of(dir, seed, 250)
}

fn generated_ledger_of(dir: &std::path::Path, seed: u64, orders: u64) -> Ledger {
    let file = dir.join("events.ndjson");
    let mut out = Vec::new();
    let options = GenerateOptions {
        orders,
        seed,
        start: Timestamp::parse("2026-01-01").expect("date"),
        days: 60,
    };
    generate(&options, &mut out).expect("generate");
    std::fs::write(&file, out).expect("write");
    let ledger = Ledger::open(&dir.join("ledger"), Access::ReadWrite).expect("open");
    ledger
        .set_settings(Settings {
            snapshot_every_events: 300,
        })
        .expect("settings");
    let options = ImportOptions {
        batch_events: 100,
        ..ImportOptions::default()
    };
    import(&ledger, &file, &options, &NoProgress).expect("import");
    ledger
}

#[test]
fn stored_projections_equal_a_naive_fold_and_a_rebuild() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ledger = generated_ledger(tmp.path(), 3);
    assert_eq!(
        answered(&ledger, &Filter::default()),
        naive(&ledger, &Filter::default())
    );
    let report = ledger
        .rebuild(false, Box::new(NoProgress))
        .expect("rebuild");
    assert!(report.matched, "{report:?}");
    // Not how many: one falling due while another runs waits for it (docs/decisions.md),
    // so the count depends on how fast the import commits.
    assert!(
        !ledger.snapshots().expect("list").is_empty(),
        "automatic snapshots were taken"
    );
}

#[test]
fn a_full_replay_is_exact_at_every_edge_of_its_read_ahead_chunks() {
    // The fold reads the log on a second thread in chunks of 1,024 events: targets on,
    // before and after chunk edges must stop exactly there.
    let tmp = tempfile::tempdir().expect("temp dir");
    let ledger = generated_ledger_of(tmp.path(), 11, 600);
    let head = ledger.head().expect("head").position.0;
    assert!(head > 2_100, "the log spans three chunks: {head} events");
    for target in [1, 1_023, 1_024, 1_025, 2_047, 2_048, 2_049, head - 1, head] {
        let filter = Filter {
            at_position: Some(Position(target)),
            ..Filter::default()
        };
        let replayed =
            ordo::replay::replay(ledger.store(), &filter, false, &NoProgress).expect("replay");
        assert_eq!(replayed.position, Position(target));
        assert_eq!(
            replayed.events_applied, target,
            "every event up to the target"
        );
        let expected = naive(&ledger, &filter);
        let orders: Vec<OrderState> = replayed.book.orders.values().cloned().collect();
        assert_eq!(orders, expected.orders, "order states at {target}");
        assert_eq!(replayed.book.totals.statuses.to_vec(), expected.statuses);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn replay_at_any_point_equals_a_naive_fold(
        seed in 0u64..1000,
        points in prop::collection::vec((0.0f64..1.1, prop::option::of(0.0f64..1.0), any::<bool>()), 4),
    ) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let ledger = generated_ledger(tmp.path(), seed);
        let head = ledger.head().expect("head").position.0;
        let events: Vec<_> = ledger.store().events_from(Position(1)).map(|e| e.expect("event")).collect();
        let (first, last) = (events[0].recorded_at.micros(), events[events.len() - 1].recorded_at.micros());
        let (min_occ, max_occ) = events.iter().fold((i64::MAX, i64::MIN), |(lo, hi), e| {
            (lo.min(e.occurred_at.micros()), hi.max(e.occurred_at.micros()))
        });
        for (at, valid, by_time) in points {
            let mut filter = Filter::default();
            if by_time {
                let t = first + ((last - first) as f64 * at) as i64;
                filter.as_of = Timestamp::from_micros(t);
            } else {
                filter.at_position = Some(Position((head as f64 * at) as u64));
            }
            filter.valid_at = valid.map(|v| {
                Timestamp::from_micros(min_occ + ((max_occ - min_occ) as f64 * v) as i64).expect("in range")
            });
            let expected = naive(&ledger, &filter);
            prop_assert_eq!(&answered(&ledger, &filter), &expected, "{:?}", filter);
            let with = ledger.replay(&filter, &NoProgress).expect("replay");
            let without = ordo::replay::replay(ledger.store(), &filter, false, &NoProgress).expect("full replay");
            prop_assert!(without.snapshot.is_none());
            prop_assert_eq!(&with.book.orders, &without.book.orders);
            prop_assert_eq!(&with.book.customers, &without.book.customers);
            prop_assert_eq!(&with.book.revenue, &without.book.revenue);
            prop_assert_eq!(with.book.totals.statuses, without.book.totals.statuses);
            prop_assert_eq!(with.head_hash, ledger.hash_at(with.position).expect("hash"));
            // The summary reads only the orders the tail touches, yet agrees.
            for (use_snapshots, replayed) in [(true, &with), (false, &without)] {
                let summary = ordo::replay::summarize(ledger.store(), &filter, use_snapshots, &NoProgress)
                    .expect("summary");
                prop_assert_eq!(summary.totals.statuses.to_vec(), expected.statuses.clone());
                prop_assert_eq!(summary.totals, replayed.book.totals);
                prop_assert_eq!(summary.position, replayed.position);
                prop_assert_eq!(summary.head_hash, replayed.head_hash);
                prop_assert_eq!(summary.events_applied, replayed.events_applied);
                prop_assert_eq!(&summary.snapshot, &replayed.snapshot);
            }
        }
    }
}

#[test]
fn a_rebuild_of_a_ledger_without_events_matches_and_writes_nothing() {
    // No totals record is stored before the first commit: it holds the empty totals.
    let tmp = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(&tmp.path().join("l"), Access::ReadWrite).expect("open");
    let report = ledger
        .rebuild(false, Box::new(NoProgress))
        .expect("rebuild");
    assert!(report.matched, "{report:?}");
    assert_eq!((report.events, report.rows_rewritten), (0, 0));
    assert!(projection_rows(&ledger).is_empty());
}

/// The raw rows of every column family a rebuild compares, by table and key.
fn projection_rows(ledger: &Ledger) -> BTreeMap<(&'static str, Vec<u8>), Vec<u8>> {
    let mut rows = BTreeMap::new();
    for cf in REBUILT {
        for (key, value) in ledger.store().raw_rows(cf).expect("reads") {
            rows.insert((cf, key), value);
        }
    }
    rows
}

const REBUILT: [&str; 4] = [CF_ORDER_STATE, CF_STATUS_ORDERS, CF_CUSTOMERS, CF_REVENUE];

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn a_forced_rebuild_rewrites_exactly_the_damaged_rows_and_restores_them(
        seed in 0u64..1000,
        damage in prop::collection::vec((0usize..4, any::<prop::sample::Index>(), 0u8..3), 1..6),
    ) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let ledger = generated_ledger_of(tmp.path(), seed, 40);
        let whole = projection_rows(&ledger);
        for (table, index, how) in damage {
            let cf = REBUILT[table];
            let rows = ledger.store().raw_rows(cf).expect("reads");
            if rows.is_empty() {
                continue;
            }
            let (key, value) = &rows[index.index(rows.len())];
            let store = ledger.store();
            match how {
                0 => store.tamper_raw(cf, key, None),
                1 => {
                    let mut flipped = value.clone();
                    match flipped.first_mut() {
                        Some(byte) => *byte ^= 0x80,
                        None => flipped.push(1),
                    }
                    store.tamper_raw(cf, key, Some(&flipped))
                }
                _ => store.tamper_raw(cf, &[key.as_slice(), b"~stray"].concat(), Some(value)),
            }
            .expect("tampers");
        }
        let damaged = projection_rows(&ledger);
        let differing = whole
            .keys()
            .chain(damaged.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|key| whole.get(*key) != damaged.get(*key))
            .count() as u64;
        if differing > 0 {
            let refused = ledger.rebuild(false, Box::new(NoProgress));
            prop_assert!(matches!(refused, Err(ordo::Error::Corruption { .. })), "{:?}", refused);
            prop_assert_eq!(&projection_rows(&ledger), &damaged, "a refused rebuild writes nothing");
        }
        let forced = ledger.rebuild(true, Box::new(NoProgress)).expect("rebuild --force");
        prop_assert_eq!(forced.matched, differing == 0);
        prop_assert_eq!(forced.rows_rewritten, differing);
        prop_assert_eq!(&projection_rows(&ledger), &whole, "every stored row as before the damage");
        let again = ledger.rebuild(false, Box::new(NoProgress)).expect("rebuild");
        prop_assert!(again.matched && again.rows_rewritten == 0, "{:?}", again);
    }
}

fn event(order: &str, event_type: EventType, data: serde_json::Value) -> NewEvent {
    NewEvent::new(
        OrderId::new(order).expect("id"),
        EventData::from_json(event_type, data).expect("valid data"),
    )
}

#[test]
fn a_back_dated_payment_changes_valid_at_answers_but_not_as_of_answers() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::open(&tmp.path().join("l"), Access::ReadWrite).expect("open");
    let last_month = Timestamp::parse("2026-10-01").expect("date");
    let mut placed = event(
        "ORD-1",
        EventType::OrderPlaced,
        json!({"customer_id": "C-1", "currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "unit_price": 1000}]}),
    );
    placed.occurred_at = Some(last_month);
    let first = ledger.append(placed).expect("place");
    // Today: a payment recorded now that happened on 5 October.
    let mut paid = event(
        "ORD-1",
        EventType::PaymentCaptured,
        json!({"payment_id": "P", "amount": 1000}),
    );
    paid.occurred_at = Some(Timestamp::parse("2026-10-05").expect("date"));
    paid.expected_version = Some(Version(1));
    ledger.append(paid).expect("pay");

    let id = OrderId::new("ORD-1").expect("id");
    let valid_mid_october = Filter {
        valid_at: Some(Timestamp::parse("2026-10-15").expect("date")),
        ..Filter::default()
    };
    let as_of_before_payment = Filter {
        as_of: Some(first.recorded_at),
        ..Filter::default()
    };
    assert_eq!(
        ledger.state(&id, &valid_mid_october).expect("state").status,
        Status::Paid
    );
    assert_eq!(
        ledger
            .state(&id, &as_of_before_payment)
            .expect("state")
            .status,
        Status::Placed
    );
    let revenue = ledger
        .query_revenue(&RevenueFilter::default(), &valid_mid_october)
        .expect("revenue");
    let october_5 = revenue
        .iter()
        .find(|r| r.period == "2026-10-05")
        .expect("a row for 5 October");
    assert_eq!(october_5.captured, 1000);
    let before = ledger
        .query_revenue(&RevenueFilter::default(), &as_of_before_payment)
        .expect("revenue");
    assert!(before.iter().all(|r| r.captured == 0), "{before:?}");
    // And before 5 October, the order had not been paid even in valid time.
    let valid_october_2 = Filter {
        valid_at: Some(Timestamp::parse("2026-10-02").expect("date")),
        ..Filter::default()
    };
    assert_eq!(
        ledger.state(&id, &valid_october_2).expect("state").status,
        Status::Placed
    );
}

#[test]
fn a_point_in_time_copy_verifies_and_answers_like_the_original_did() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ledger = generated_ledger(tmp.path(), 9);
    let target = Position(ledger.head().expect("head").position.0 / 2);
    let filter = Filter {
        at_position: Some(target),
        ..Filter::default()
    };
    let copy_dir = tmp.path().join("copy");
    let head = ledger
        .replay_into(&filter, &copy_dir, &NoProgress)
        .expect("copy");
    assert_eq!(head.position, target);
    assert_eq!(head.hash, ledger.hash_at(target).expect("hash"));
    let original = answered(&ledger, &filter);
    drop(ledger);
    let copy = Ledger::open(&copy_dir, Access::ReadOnly).expect("open copy");
    let report = copy.verify(&NoProgress).expect("verify");
    assert!(report.ok);
    assert_eq!(report.head_position, target);
    assert_eq!(answered(&copy, &Filter::default()), original);
    let err = Ledger::open(&tmp.path().join("ledger"), Access::ReadOnly)
        .expect("reopen")
        .replay_into(&filter, &copy_dir, &NoProgress)
        .expect_err("the copy's directory is taken");
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn a_snapshot_written_by_other_projection_code_is_listed_unusable_and_never_replayed_from() {
    // Snapshots from before projection_version 2 were digested with SHA-256
    // (docs/decisions.md): after an upgrade they must be ignored, not refused as damaged.
    let tmp = tempfile::tempdir().expect("tempdir");
    let ledger = generated_ledger_of(tmp.path(), 21, 120);
    let head = ledger.store().head().expect("head").position;
    let taken = ledger.snapshot_create().expect("a snapshot at the head");
    assert_eq!(taken.position, head);
    let with = ledger
        .replay_summary(&Filter::default(), &NoProgress)
        .expect("replays");
    assert_eq!(with.snapshot.map(|h| h.position), Some(head));
    let expected_totals = with.totals;

    // Every snapshot header rewritten as the earlier code wrote it.
    let headers = ledger.store().snapshot_headers().expect("headers");
    assert!(headers.len() >= 2, "automatic snapshots and the one taken");
    for mut header in headers {
        header.projection_version = 1;
        ledger
            .store()
            .tamper_raw(
                ordo::store::CF_META,
                &keys::snapshot_header_key(header.position),
                Some(&codec::encode_record(&header)),
            )
            .expect("rewritten");
    }
    drop(ledger);

    let dir = tmp.path().join("ledger");
    let ledger = Ledger::open(&dir, Access::ReadOnly).expect("reopens");
    let listed = ledger.snapshots().expect("lists");
    assert!(!listed.is_empty());
    assert!(
        listed
            .iter()
            .all(|s| s.projection_version == 1 && !s.usable),
        "{listed:?}"
    );
    let without = ledger
        .replay_summary(&Filter::default(), &NoProgress)
        .expect("replays");
    assert_eq!(without.snapshot, None);
    assert_eq!(without.events_applied, head.0);
    assert_eq!(without.totals, expected_totals);
}

/// Bytes in the write-ahead logs of the ledger in `dir`.
fn log_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("ledger dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .map(|path| std::fs::metadata(path).expect("log").len())
        .sum()
}

#[test]
fn a_snapshot_s_rows_bypass_the_write_ahead_log_and_load_after_a_reopen() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("ledger");
    // Reopened so that automatic snapshots are done and the logs start afresh.
    drop(generated_ledger_of(tmp.path(), 11, 3_000));
    let ledger = Ledger::open(&dir, Access::ReadWrite).expect("reopen");
    // An event in the current log keeps it (RocksDB deletes a log once every column
    // family with rows in it is flushed, as the snapshot's is).
    ledger
        .append(event(
            "AFTER-IMPORT",
            EventType::OrderPlaced,
            json!({"customer_id": "C-1", "currency": "EUR",
                   "lines": [{"sku": "S-1", "quantity": 1, "unit_price": 100}]}),
        ))
        .expect("append");
    let logged_before = log_bytes(&dir);
    let header = ledger.snapshot_create().expect("snapshot");
    let logged = log_bytes(&dir) - logged_before;
    let snapshot_key = keys::snapshot_key(header.position, keys::SNAPSHOT_TOTALS, &[]);
    let row_bytes: u64 = ledger
        .store()
        .raw_rows(ordo::store::CF_SNAPSHOTS)
        .expect("rows")
        .iter()
        .filter(|(key, _)| key[..8] == snapshot_key[..8])
        .map(|(key, value)| (key.len() + value.len()) as u64)
        .sum();
    // Only the header is logged: the rows went into a table file of their own (before:
    // every row, written again into a table later, and fsynced beside the commits).
    assert!(
        logged * 100 < row_bytes,
        "{logged} bytes logged for a snapshot of {row_bytes} bytes"
    );
    // (That they are on disk once the header is: tests/power_loss.rs, whose snapshots
    // span several chunks.)
    drop(ledger);
    let reopened = Ledger::open(&dir, Access::ReadOnly).expect("reopen");
    let headers = reopened.store().snapshot_headers().expect("headers");
    let found = headers
        .iter()
        .find(|h| h.position == header.position && h.digest == header.digest)
        .expect("the snapshot's header");
    ordo::replay::load_snapshot(reopened.store(), found).expect("every row of it");
}

#[test]
fn a_snapshot_taken_again_at_a_position_drops_the_rows_an_earlier_attempt_left() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ledger = generated_ledger_of(tmp.path(), 13, 50);
    let first = ledger.snapshot_create().expect("snapshot");
    let store = ledger.store();
    // What a crash between a snapshot's table file and its header leaves: rows no header
    // names; here also a row the next snapshot will not have.
    let prefix = keys::snapshot_prefix(first.position);
    let (_, state) = store
        .raw_rows(ordo::store::CF_SNAPSHOTS)
        .expect("rows")
        .into_iter()
        .find(|(key, _)| key.starts_with(&prefix) && key[8] == keys::SNAPSHOT_ORDER)
        .expect("an order's row");
    let stale = keys::snapshot_key(first.position, keys::SNAPSHOT_ORDER, b"NO-SUCH-ORDER");
    store
        .tamper_raw(ordo::store::CF_SNAPSHOTS, &stale, Some(&state))
        .expect("stale row");
    store
        .tamper_raw(
            ordo::store::CF_META,
            &keys::snapshot_header_key(first.position),
            None,
        )
        .expect("header gone");
    let second = ledger.snapshot_create().expect("snapshot again");
    assert_eq!(
        (second.position, second.digest),
        (first.position, first.digest)
    );
    ordo::replay::load_snapshot(store, &second).expect("no row of the earlier attempt is left");
}

#[test]
fn a_writer_s_open_removes_a_snapshot_file_a_crash_left_and_a_reader_s_does_not() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("ledger");
    drop(generated_ledger_of(tmp.path(), 17, 20));
    let leftover = dir.join(format!("{}crashed.sst", ordo::store::SNAPSHOT_FILE_PREFIX));
    std::fs::write(&leftover, b"half a table").expect("leftover");
    drop(Ledger::open(&dir, Access::ReadOnly).expect("reader"));
    assert!(leftover.exists(), "a reader writes nothing");
    let ledger = Ledger::open(&dir, Access::ReadWrite).expect("writer");
    assert!(!leftover.exists(), "the writer removed it");
    assert!(ledger.verify(&NoProgress).expect("verify").ok);
}
