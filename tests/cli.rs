//! The CLI against product.md sections 4 to 7: every command of the ledger core, every output
//! format, every exit code. Each test runs the real `ordo` binary on a temporary ledger.

mod common;

use common::{PLACED, TestLedger, ordo_at};
use predicates::prelude::*;
use serde_json::Value;

#[test]
fn append_returns_the_append_result_and_state_shows_the_order() {
    let l = TestLedger::new();
    let r = l.append("ORD-1", "order_placed", PLACED);
    assert_eq!(r["position"], 1);
    assert_eq!(r["order_id"], "ORD-1");
    assert_eq!(r["version"], 1);
    assert_eq!(r["duplicate"], false);
    let recorded = r["recorded_at"].as_str().expect("time");
    assert!(
        recorded.ends_with('Z') && recorded.len() == 27,
        "{recorded}"
    );
    let s = l.json(&["state", "ORD-1"]);
    assert_eq!(s["status"], "placed");
    assert_eq!(s["total"], 1000);
    assert_eq!(s["lines"][0]["sku"], "A");
    let keys = object_keys(&s);
    assert_eq!(
        keys,
        [
            "order_id",
            "customer_id",
            "status",
            "currency",
            "lines",
            "total",
            "paid",
            "refunded",
            "shipping_address",
            "placed_at",
            "updated_at",
            "version",
            "position"
        ]
    );
}

#[test]
fn append_with_every_flag_stores_them_in_the_envelope() {
    let l = TestLedger::new();
    let id = "0190f5a2-0000-7000-8000-000000000001";
    l.json(&[
        "append",
        "--order",
        "ORD-1",
        "--type",
        "order_placed",
        "--data",
        PLACED,
        "--expected-version",
        "0",
        "--event-id",
        id,
        "--occurred-at",
        "2026-03-01",
        "--actor",
        "alice",
        "--correlation-id",
        "corr-1",
        "--causation-id",
        "cause-1",
    ]);
    let h = l.json(&["history", "ORD-1"]);
    let e = &h[0];
    let keys = object_keys(e);
    assert_eq!(
        keys,
        [
            "position",
            "order_id",
            "version",
            "event_id",
            "type",
            "schema_version",
            "recorded_at",
            "occurred_at",
            "actor",
            "correlation_id",
            "causation_id",
            "data",
            "hash"
        ]
    );
    assert_eq!(e["event_id"], id);
    assert_eq!(e["occurred_at"], "2026-03-01T00:00:00.000000Z");
    assert_eq!(e["actor"], "alice");
    assert_eq!(e["correlation_id"], "corr-1");
    assert_eq!(e["causation_id"], "cause-1");
    assert_eq!(e["schema_version"], 1);
    assert_eq!(e["hash"].as_str().expect("hash").len(), 64);
}

#[test]
fn data_can_come_from_a_file_or_standard_input() {
    let l = TestLedger::new();
    let file = l.file("placed.json", PLACED);
    l.ok(&[
        "append",
        "--order",
        "ORD-1",
        "--type",
        "order_placed",
        "--data",
        &format!("@{}", file.display()),
    ]);
    l.ordo(&[
        "append",
        "--order",
        "ORD-1",
        "--type",
        "note_added",
        "--data",
        "-",
    ])
    .write_stdin(r#"{"text":"from stdin"}"#)
    .assert()
    .success();
    assert_eq!(l.json(&["state", "ORD-1"])["version"], 2);
}

#[test]
fn a_repeated_event_id_with_the_same_content_is_a_duplicate_and_writes_nothing() {
    let l = TestLedger::new();
    let args = [
        "append",
        "--order",
        "ORD-1",
        "--type",
        "order_placed",
        "--data",
        PLACED,
        "--event-id",
        "0190f5a2-0000-7000-8000-000000000009",
    ];
    let first = l.json(&args);
    let head = l.head();
    let again = l.json(&args);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["position"], first["position"]);
    assert_eq!(again["recorded_at"], first["recorded_at"]);
    assert_eq!(l.head(), head);
}

#[test]
fn a_batch_is_appended_atomically_in_one_command() {
    let l = TestLedger::new();
    let batch = l.file("batch.ndjson", format!(
        "{{\"order_id\":\"ORD-1\",\"type\":\"order_placed\",\"data\":{PLACED}}}\n\n{{\"order_id\":\"ORD-1\",\"type\":\"payment_captured\",\"data\":{{\"payment_id\":\"P1\",\"amount\":1000}}}}\n"
    ));
    let r = l.json(&["append", "--file", batch.to_str().expect("utf-8 path")]);
    assert_eq!(
        r,
        serde_json::json!({"appended": 2, "duplicates": 0, "first_position": 1, "last_position": 2})
    );
    assert_eq!(l.json(&["state", "ORD-1"])["status"], "paid");
}

#[test]
fn history_prints_in_every_format() {
    let l = TestLedger::new();
    l.append("ORD-1", "order_placed", PLACED);
    l.append("ORD-1", "note_added", r#"{"text":"a, \"quoted\" note"}"#);
    let table = l.ok(&["history", "ORD-1"]);
    assert!(
        table.contains("order_placed") && table.contains("note_added") && table.contains("2 rows"),
        "{table}"
    );
    let json: Value =
        serde_json::from_str(&l.ok(&["history", "ORD-1", "--format", "json"])).expect("JSON array");
    assert_eq!(json.as_array().expect("array").len(), 2);
    let ndjson = l.ok(&["history", "ORD-1", "--format", "ndjson"]);
    let lines: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).expect("one object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["type"], "note_added");
    let csv = l.ok(&["history", "ORD-1", "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().expect("header").clone();
    assert_eq!(header.get(0), Some("position"));
    assert_eq!(header.len(), 13);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[1].iter().any(|c| c.contains("\\\"quoted\\\"")),
        "{csv}"
    );
}

#[test]
fn state_prints_one_object_in_every_format() {
    let l = TestLedger::new();
    l.append("ORD-1", "order_placed", PLACED);
    assert!(l.ok(&["state", "ORD-1"]).contains("A x2 @ 500"));
    let nd: Value = serde_json::from_str(l.ok(&["state", "ORD-1", "--format", "ndjson"]).trim())
        .expect("one line");
    assert_eq!(nd["order_id"], "ORD-1");
    let csv = l.ok(&["state", "ORD-1", "--format", "csv"]);
    assert_eq!(csv.lines().count(), 2);
    assert!(csv.starts_with("order_id,customer_id,status"));
}

#[test]
fn time_filters_select_what_was_known_what_had_happened_and_a_position() {
    let l = TestLedger::new();
    l.json(&[
        "append",
        "--order",
        "ORD-1",
        "--type",
        "order_placed",
        "--data",
        PLACED,
        "--occurred-at",
        "2026-01-10T10:00:00Z",
    ]);
    let placed_recorded = l.json(&["history", "ORD-1"])[0]["recorded_at"]
        .as_str()
        .expect("t")
        .to_owned();
    // A payment recorded now but back-dated to January 20th.
    l.json(&[
        "append",
        "--order",
        "ORD-1",
        "--type",
        "payment_captured",
        "--data",
        r#"{"payment_id":"P","amount":1000}"#,
        "--occurred-at",
        "2026-01-20T00:00:00Z",
    ]);
    assert_eq!(l.json(&["state", "ORD-1"])["status"], "paid");
    assert_eq!(
        l.json(&["state", "ORD-1", "--as-of", &placed_recorded])["status"],
        "placed"
    );
    assert_eq!(
        l.json(&["state", "ORD-1", "--at-position", "1"])["status"],
        "placed"
    );
    assert_eq!(
        l.json(&["state", "ORD-1", "--valid-at", "2026-01-15"])["status"],
        "placed"
    );
    assert_eq!(
        l.json(&["state", "ORD-1", "--valid-at", "2026-01-21"])["status"],
        "paid"
    );
    assert_eq!(
        l.json(&["history", "ORD-1", "--valid-at", "2026-01-15"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // Combined filters intersect.
    assert_eq!(
        l.json(&[
            "history",
            "ORD-1",
            "--valid-at",
            "2026-01-21",
            "--at-position",
            "1"
        ])
        .as_array()
        .map(Vec::len),
        Some(1)
    );
    l.ordo(&["state", "ORD-1", "--valid-at", "2026-01-01"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("had not been placed"));
}

#[test]
fn verify_and_stats_report_the_head() {
    let l = TestLedger::new();
    l.append("ORD-1", "order_placed", PLACED);
    l.append("ORD-2", "order_placed", PLACED);
    let v = l.json(&["verify"]);
    assert_eq!(v["ok"], true);
    assert_eq!(v["events"], 2);
    assert_eq!(v["head_position"], 2);
    let s = l.json(&["stats"]);
    assert_eq!(s["events"], 2);
    assert_eq!(s["orders"], 2);
    assert_eq!(s["head_hash"], v["head_hash"]);
    assert_eq!(s["snapshots"], 0);
    assert!(s["bytes"].as_u64().expect("bytes") > 0);
}

#[test]
fn verify_exits_5_naming_the_first_bad_position_after_tampering() {
    let l = TestLedger::new();
    for i in 1..=3 {
        l.append(&format!("ORD-{i}"), "order_placed", PLACED);
    }
    {
        let store =
            ordo::store::Store::open(&l.dir(), ordo::store::Access::ReadWrite).expect("opens");
        let mut raw = store
            .raw_event(ordo::domain::Position(2))
            .expect("reads")
            .expect("exists");
        let middle = raw.len() / 2;
        raw[middle] ^= 0x01;
        store
            .tamper_raw_event(ordo::domain::Position(2), Some(&raw))
            .expect("writes");
    }
    let out = l
        .ordo(&["verify", "--format", "json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(5));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["ok"], false);
    assert_eq!(report["first_bad_position"], 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("position 2"));
}

#[test]
fn export_then_import_preserve_reproduces_positions_times_and_hashes() {
    let l = TestLedger::new();
    let workload = l.tmp.path().join("w.ndjson");
    l.ok(&[
        "generate",
        "--orders",
        "40",
        "--seed",
        "3",
        "--output",
        workload.to_str().expect("utf-8"),
    ]);
    let imported = l.json(&["import", workload.to_str().expect("utf-8")]);
    assert!(imported["appended"].as_u64().expect("count") > 40);
    let export = l.ok(&["export"]);
    let copy = TestLedger::new();
    let file = copy.file("export.ndjson", &export);
    copy.json(&["import", "--preserve", file.to_str().expect("utf-8")]);
    assert_eq!(copy.ok(&["export"]), export);
    assert_eq!(copy.head(), l.head());
    assert_eq!(copy.json(&["verify"])["ok"], true);
    // A partial export stops at the requested position.
    let part = l.ok(&["export", "--from-position", "3", "--to-position", "5"]);
    let positions: Vec<u64> = part
        .lines()
        .map(|x| {
            serde_json::from_str::<Value>(x).expect("json")["position"]
                .as_u64()
                .expect("p")
        })
        .collect();
    assert_eq!(positions, [3, 4, 5]);
}

#[test]
fn reimporting_a_file_with_event_ids_reports_duplicates_and_writes_nothing() {
    let l = TestLedger::new();
    let workload = l.tmp.path().join("w.ndjson");
    l.ok(&[
        "generate",
        "--orders",
        "20",
        "--output",
        workload.to_str().expect("utf-8"),
    ]);
    let first = l.json(&["import", workload.to_str().expect("utf-8")]);
    let head = l.head();
    let again = l.json(&["import", workload.to_str().expect("utf-8")]);
    assert_eq!(again["appended"], 0);
    assert_eq!(again["duplicates"], first["appended"]);
    assert_eq!(l.head(), head);
}

#[test]
fn import_reads_standard_input() {
    let l = TestLedger::new();
    let workload = l.ok(&["generate", "--orders", "5"]);
    let r: Value = serde_json::from_slice(
        &l.ordo(&["import", "-", "--format", "json"])
            .write_stdin(workload.clone())
            .output()
            .expect("runs")
            .stdout,
    )
    .expect("json");
    assert_eq!(
        r["appended"].as_u64(),
        Some(workload.lines().count() as u64)
    );
}

#[test]
fn generate_is_deterministic_and_covers_every_event_type() {
    let l = TestLedger::new();
    let a = l.ok(&["generate", "--orders", "300", "--seed", "11"]);
    let b = l.ok(&["generate", "--orders", "300", "--seed", "11"]);
    let c = l.ok(&["generate", "--orders", "300", "--seed", "12"]);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let types: std::collections::BTreeSet<String> = a
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("json")["type"]
                .as_str()
                .expect("type")
                .to_owned()
        })
        .collect();
    for t in ordo::domain::EventType::ALL {
        assert!(types.contains(t.as_str()), "generate never produced {t}");
    }
    let currencies: std::collections::BTreeSet<String> = a
        .lines()
        .filter_map(|line| {
            serde_json::from_str::<Value>(line).ok()?["data"]["currency"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(currencies.len() >= 3, "{currencies:?}");
}

#[test]
fn the_data_dir_comes_from_the_environment_when_not_given() {
    let l = TestLedger::new();
    let mut cmd = assert_cmd::Command::cargo_bin("ordo").expect("built");
    cmd.env("ORDO_DATA_DIR", l.dir())
        .args([
            "append",
            "--order",
            "ORD-1",
            "--type",
            "order_placed",
            "--data",
            PLACED,
        ])
        .assert()
        .success();
    assert_eq!(l.json(&["stats"])["events"], 1);
}

#[test]
fn a_second_writer_is_refused_with_a_clear_message() {
    let l = TestLedger::new();
    l.append("ORD-1", "order_placed", PLACED);
    let _writer =
        ordo::ledger::Ledger::open(&l.dir(), ordo::store::Access::ReadWrite).expect("first writer");
    l.ordo(&[
        "append",
        "--order",
        "ORD-2",
        "--type",
        "order_placed",
        "--data",
        PLACED,
    ])
    .assert()
    .code(1)
    .stderr(predicate::str::contains("is in use by another process"));
    // Readers still work while the writer holds the ledger.
    assert_eq!(l.json(&["state", "ORD-1"])["status"], "placed");
}

#[test]
fn errors_are_also_json_on_stderr_with_format_json() {
    let l = TestLedger::new();
    let out = l
        .ordo(&[
            "append",
            "--order",
            "ORD-1",
            "--type",
            "payment_captured",
            "--data",
            r#"{"payment_id":"P","amount":5}"#,
            "--format",
            "json",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let json_line = stderr
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON error line");
    let v: Value = serde_json::from_str(json_line).expect("json");
    assert_eq!(v["error"]["kind"], "rejected");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("ORD-1")
    );
}

#[test]
fn reading_a_ledger_that_does_not_exist_fails_without_creating_it() {
    let l = TestLedger::new();
    for args in [
        vec!["history", "ORD-1"],
        vec!["state", "ORD-1"],
        vec!["verify"],
        vec!["stats"],
        vec!["export"],
    ] {
        ordo_at(&l.dir(), &args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("no ledger at"));
    }
    assert!(!l.dir().exists());
}

/// The keys of a JSON object, in output order.
fn object_keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn every_file_and_directory_of_the_ledger_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let l = TestLedger::new();
    l.append("ORD-1", "order_placed", PLACED);
    let batch = l.file(
        "batch.ndjson",
        format!(
            "{}\n",
            serde_json::json!({"order_id": "ORD-2", "type": "order_placed",
                               "data": serde_json::from_str::<Value>(PLACED).expect("json")})
        ),
    );
    l.ok(&["import", batch.to_str().expect("utf-8")]);
    l.ok(&["snapshot", "create"]);
    l.ok(&["state", "ORD-1"]);
    let mut pending = vec![l.dir()];
    let mut checked = 0;
    while let Some(path) = pending.pop() {
        let meta = std::fs::metadata(&path).expect("metadata");
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        checked += 1;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("readable") {
                pending.push(entry.expect("entry").path());
            }
        }
    }
    assert!(checked > 5, "only {checked} paths");
}

#[test]
fn completions_and_a_man_page_are_printed_for_the_whole_cli() {
    let l = TestLedger::new();
    let bash = l.ok(&["completions", "bash"]);
    assert!(
        bash.contains("_ordo()") && bash.contains("recover"),
        "{bash}"
    );
    for shell in ["zsh", "fish"] {
        let script = l.ok(&["completions", shell]);
        assert!(script.contains("snapshot"), "{shell}: {script}");
    }
    let man = l.ok(&["man"]);
    assert!(man.starts_with(".ie") || man.contains(".TH ordo"), "{man}");
    assert!(man.contains("verify"), "{man}");
    l.ordo(&["completions", "tcsh"]).assert().code(2);
    assert!(!l.dir().exists(), "printing help creates no ledger");
}

#[test]
fn a_table_shortens_long_data_and_json_prints_it_whole() {
    let l = TestLedger::new();
    let note = "n".repeat(300);
    l.append("ORD-1", "order_placed", PLACED);
    l.append("ORD-1", "note_added", &format!(r#"{{"text":"{note}"}}"#));
    let table = l.ok(&["history", "ORD-1"]);
    assert!(
        table.lines().all(|line| line.chars().count() < 300),
        "{table}"
    );
    assert!(table.contains('…'), "{table}");
    let json = l.json(&["history", "ORD-1"]);
    assert_eq!(json[1]["data"]["text"], note.as_str());
}
