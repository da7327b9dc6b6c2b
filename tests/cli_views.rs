//! CLI tests of the whole-ledger commands: query, replay, audit, snapshot, config, rebuild.

mod common;

use common::{PLACED, TestLedger};

/// A ledger with two orders: ORD-1 placed and paid by alice, ORD-2 placed by bob.
fn two_orders() -> TestLedger {
    let t = TestLedger::new();
    t.ok(&[
        "append",
        "--order",
        "ORD-1",
        "--type",
        "order_placed",
        "--actor",
        "alice",
        "--data",
        PLACED,
    ]);
    t.ok(&[
        "append",
        "--order",
        "ORD-2",
        "--type",
        "order_placed",
        "--actor",
        "bob",
        "--data",
        PLACED,
    ]);
    t.ok(&[
        "append",
        "--order",
        "ORD-1",
        "--type",
        "payment_captured",
        "--actor",
        "alice",
        "--data",
        r#"{"payment_id":"P-1","amount":1000}"#,
    ]);
    t
}

#[test]
fn query_answers_now_and_at_a_position_in_every_format() {
    let t = two_orders();
    let statuses = t.json(&["query", "statuses"]);
    assert_eq!(statuses[0]["status"], "placed");
    assert_eq!(statuses[0]["count"], 1);
    assert_eq!(statuses[1]["status"], "paid");
    assert_eq!(statuses[1]["count"], 1);
    let then = t.json(&["query", "statuses", "--at-position", "2"]);
    assert_eq!(then[0]["count"], 2);
    assert_eq!(then[1]["count"], 0);

    let orders = t.json(&["query", "orders", "--status", "paid"]);
    assert_eq!(orders.as_array().map(Vec::len), Some(1));
    assert_eq!(orders[0]["order_id"], "ORD-1");
    let customers = t.json(&["query", "customers", "--customer", "C-1"]);
    assert_eq!(customers[0]["orders"], 2);
    assert_eq!(customers[0]["total"], 2000);
    assert_eq!(customers[0]["paid"], 1000);

    let csv = t.ok(&["query", "revenue", "--by", "month", "--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("period,currency,orders_placed,placed_total,captured,refunded,net,orders_cancelled")
    );
    let row = lines.next().expect("one revenue row");
    assert!(row.ends_with(",EUR,2,2000,1000,0,1000,0"), "{row}");
    let table = t.ok(&["query", "orders"]);
    assert!(
        table.contains("ORD-2") && table.contains("2 rows"),
        "{table}"
    );
    let ndjson = t.ok(&["query", "orders", "--limit", "1", "--format", "ndjson"]);
    assert_eq!(ndjson.lines().count(), 1);
}

#[test]
fn a_query_without_a_ledger_exits_1_saying_there_is_none() {
    // The refusals on an existing ledger are in tests/cli_errors.rs's table, which also
    // checks that each leaves the ledger unchanged; this one has no ledger at all.
    TestLedger::new()
        .ordo(&["query", "statuses"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("no ledger"));
}

#[test]
fn replay_prints_a_summary_every_order_or_writes_a_copy() {
    let t = two_orders();
    let summary = t.json(&["replay", "--at-position", "2"]);
    assert_eq!(summary["position"], 2);
    assert_eq!(summary["statuses"]["placed"], 2);
    assert_eq!(summary["events_applied"], 2);
    let hash_2 = t.json(&["history", "ORD-2"])[0]["hash"].clone();
    assert_eq!(summary["head_hash"], hash_2);

    let states = t.ok(&["replay", "--at-position", "3", "--format", "ndjson"]);
    assert_eq!(states.lines().count(), 2);

    let copy = t.tmp.path().join("copy");
    let copy_str = copy.to_str().expect("utf-8 path");
    t.ok(&["replay", "--at-position", "2", "--into", copy_str]);
    let verified = common::ordo_at(&copy, &["verify", "--format", "json"])
        .output()
        .expect("runs");
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).expect("json");
    assert_eq!(report["head_position"], 2);
    assert_eq!(report["head_hash"], hash_2);
    t.ordo(&["replay", "--valid-at", "2030-01-01", "--into", copy_str])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("not a prefix"));
    // Built beside its destination and renamed into place: nothing else is left there.
    let beside: Vec<String> = std::fs::read_dir(t.tmp.path())
        .expect("readable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".ordo-replay-"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
    // An existing empty directory is a fine destination.
    let empty = t.tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    t.ok(&[
        "replay",
        "--at-position",
        "1",
        "--into",
        empty.to_str().expect("utf-8"),
    ]);
    let stats = common::ordo_at(&empty, &["stats", "--format", "json"])
        .output()
        .expect("runs");
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("json");
    assert_eq!(stats["head_position"], 1);
}

#[test]
fn audit_shows_each_event_with_the_state_after_it_and_a_verified_hash() {
    let t = two_orders();
    let audit = t.json(&["audit", "ORD-1"]);
    assert_eq!(audit.as_array().map(Vec::len), Some(2));
    assert_eq!(audit[0]["state_after"]["status"], "placed");
    assert_eq!(audit[1]["state_after"]["status"], "paid");
    assert_eq!(audit[1]["state_after"]["paid"], 1000);
    assert_eq!(audit[1]["actor"], "alice");
    assert_eq!(audit[1]["verified"], true);
    let by_alice = t.json(&["audit", "--actor", "alice"]);
    assert_eq!(by_alice.as_array().map(Vec::len), Some(2));
    let by_bob = t.json(&["audit", "--actor", "bob", "--to", "2000-01-01"]);
    assert_eq!(by_bob.as_array().map(Vec::len), Some(0));
}

#[test]
fn snapshots_are_created_listed_pruned_and_taken_automatically() {
    let t = two_orders();
    let created = t.json(&["snapshot", "create"]);
    assert_eq!(created["position"], 3);
    assert_eq!(created["usable"], true);
    assert_eq!(t.json(&["config"])["snapshot_every"], 100_000);
    assert_eq!(
        t.json(&["config", "snapshot_every", "2"])["snapshot_every"],
        2
    );
    t.ok(&[
        "append",
        "--order",
        "ORD-3",
        "--type",
        "order_placed",
        "--data",
        PLACED,
    ]);
    let list = t.json(&["snapshot", "list"]);
    let positions: Vec<u64> = list
        .as_array()
        .expect("rows")
        .iter()
        .map(|s| s["position"].as_u64().expect("position"))
        .collect();
    assert_eq!(positions, vec![3, 4], "an automatic snapshot at position 4");
    assert_eq!(t.json(&["stats"])["snapshots"], 2);
    let summary = t.json(&["replay", "--at-position", "4"]);
    assert_eq!(summary["snapshot_position"], 4);
    assert_eq!(summary["events_applied"], 0);
    assert_eq!(summary["statuses"]["placed"], 2);
    let pruned = t.json(&["snapshot", "prune", "--keep", "1"]);
    assert_eq!(pruned["deleted"], serde_json::json!([3]));
}

#[test]
fn rebuild_matches_the_live_projections_and_swaps_them() {
    let t = two_orders();
    let report = t.json(&["rebuild"]);
    assert_eq!(report["matched"], true);
    assert_eq!(report["swapped"], true);
    assert_eq!(
        report["rows_rewritten"], 0,
        "equal rows are left as they are"
    );
    assert_eq!(report["events"], 3);
    assert_eq!(report["rebuilt_digest"], report["live_digest"]);
    // Queries still answer the same after the swap.
    assert_eq!(t.json(&["query", "statuses"])[1]["count"], 1);
}

/// Opens `t`'s ledger directly and hands `damage` the store and the stored row of `cf` (key,
/// value) whose key `wanted` picks.
fn damage_row(
    t: &TestLedger,
    cf: &str,
    wanted: impl Fn(&[u8]) -> bool,
    damage: impl FnOnce(&ordo::store::Store, Vec<u8>, Vec<u8>),
) {
    let store = ordo::store::Store::open(&t.dir(), ordo::store::Access::ReadWrite).expect("opens");
    let (key, value) = store
        .raw_rows(cf)
        .expect("reads")
        .into_iter()
        .find(|(key, _)| wanted(key))
        .expect("the row is stored");
    damage(&store, key, value);
}

/// `ordo rebuild` refused with exit 5 (a mismatch is corruption); what it said.
fn refused_rebuild(t: &TestLedger) -> String {
    let refused = t.ordo(&["rebuild"]).output().expect("runs");
    assert_eq!(refused.status.code(), Some(5), "a mismatch is corruption");
    String::from_utf8_lossy(&refused.stderr).into_owned()
}

/// `ordo rebuild --force` after a refused rebuild: it rewrites `rows` rows; its report.
fn forced_rebuild(t: &TestLedger, rows: u64) -> serde_json::Value {
    let forced = t.json(&["rebuild", "--force"]);
    assert_eq!(forced["matched"], false);
    assert_eq!(
        forced["rows_rewritten"], rows,
        "only the damaged rows are written"
    );
    forced
}

#[test]
fn rebuild_reports_a_damaged_projection_row_and_force_repairs_it() {
    let t = two_orders();
    let before = t.json(&["state", "ORD-1"]);
    // Flip one byte of ORD-1's stored state: the live digest no longer matches the log.
    damage_row(
        &t,
        ordo::store::CF_ORDER_STATE,
        |key| key == b"ORD-1",
        |store, key, mut value| {
            let middle = value.len() / 2;
            value[middle] ^= 0x01;
            store
                .tamper_raw(ordo::store::CF_ORDER_STATE, &key, Some(&value))
                .expect("writes");
        },
    );
    let message = refused_rebuild(&t);
    assert!(
        message.contains("differ") && message.contains("--force"),
        "{message}"
    );
    let forced = forced_rebuild(&t, 1);
    assert_eq!(forced["swapped"], true);
    assert_ne!(forced["rebuilt_digest"], forced["live_digest"]);
    // The row is whole again: the next rebuild matches and the state reads as before.
    assert_eq!(t.json(&["rebuild"])["matched"], true);
    assert_eq!(t.json(&["state", "ORD-1"]), before);
}

#[test]
fn rebuild_finds_a_damaged_status_index_which_the_digest_does_not_cover() {
    let t = two_orders();
    let paid = t.json(&["query", "orders", "--status", "paid"]);
    assert_eq!(paid[0]["order_id"], "ORD-1", "{paid}");
    // ORD-1's row in the status index is lost and a stray row appears: the digest covers
    // neither, the row-by-row comparison both.
    damage_row(
        &t,
        ordo::store::CF_STATUS_ORDERS,
        |key| key.ends_with(b"ORD-1"),
        |store, key, _| {
            store
                .tamper_raw(ordo::store::CF_STATUS_ORDERS, &key, None)
                .expect("deletes");
            let stray = [key.as_slice(), b"-STRAY"].concat();
            store
                .tamper_raw(ordo::store::CF_STATUS_ORDERS, &stray, Some(&[]))
                .expect("writes");
        },
    );
    let damaged = t
        .ordo(&["query", "orders", "--status", "paid"])
        .output()
        .expect("runs");
    assert_eq!(damaged.status.code(), Some(5), "the stray row is reported");
    let message = refused_rebuild(&t);
    assert!(
        message.contains("2 stored projection rows differ") && message.contains("--force"),
        "{message}"
    );
    let forced = forced_rebuild(&t, 2);
    assert_eq!(
        forced["rebuilt_digest"], forced["live_digest"],
        "the digest does not cover the status index"
    );
    let again = t.json(&["rebuild"]);
    assert_eq!(
        (&again["matched"], &again["rows_rewritten"]),
        (&true.into(), &0.into())
    );
    assert_eq!(t.json(&["query", "orders", "--status", "paid"]), paid);
}
