//! The format promise (as redb keeps one): `tests/fixtures/ledger-v1`, a ledger written by
//! ledger format 1 on 2026-12-02 (tables, a snapshot, and a write-ahead log holding the last
//! append), must open with every later ordo, verify, give exactly the answers recorded in
//! `tests/fixtures/ledger-v1.expected.json`, replay from its snapshot, and take an append.
//! tests/fixtures/README.md says how it was made and why it is never regenerated.

mod common;

use std::fs;
use std::path::Path;

use serde_json::Value;

use common::{PLACED, TestLedger, copy_ledger, ordo_at};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ledger-v1");
const EXPECTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ledger-v1.expected.json"
);

fn json_of(dir: &Path, command: &str) -> Value {
    let mut args: Vec<&str> = command.split(' ').collect();
    args.extend(["--format", "json"]);
    let out = ordo_at(dir, &args).output().expect("ordo runs");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut value: Value = serde_json::from_slice(&out.stdout).expect("json");
    if let Some(summary) = value.as_object_mut() {
        summary.remove("elapsed_ms");
    }
    value
}

#[test]
fn a_ledger_written_by_format_1_answers_exactly_as_it_did_and_takes_an_append() {
    let l = TestLedger::new();
    // A copy: opening a ledger may write to it.
    copy_ledger(Path::new(FIXTURE), &l.dir());
    let expected: Value =
        serde_json::from_str(&fs::read_to_string(EXPECTED).expect("expected answers"))
            .expect("json");
    let expected = expected.as_object().expect("an object of commands");
    assert!(expected.len() >= 8);
    for (command, answer) in expected {
        assert_eq!(&json_of(&l.dir(), command), answer, "{command}");
    }
    let head = expected["verify"]["head_position"]
        .as_u64()
        .expect("position");
    let appended = l.append("AFTER-FIXTURE", "order_placed", PLACED);
    assert_eq!(appended["position"], head + 1);
    let verify = l.json(&["verify"]);
    assert_eq!(verify["ok"], true);
    assert_eq!(verify["events"], head + 1);
}
