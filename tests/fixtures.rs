//! The format promise (as redb keeps one): `tests/fixtures/ledger-v1`, a ledger written by
//! ledger format 1 on 2026-12-02 (tables, a snapshot, and a write-ahead log holding the last
//! append), and `tests/fixtures/ledger-v2`, written by format 2 (with its Merkle tree) the
//! same day, must open with every later ordo, verify, give exactly the answers recorded in
//! their `.expected.json` (checkpoints and proofs too, for v2), replay from their snapshot,
//! and take an append.
//! tests/fixtures/README.md says how it was made and why it is never regenerated.

mod common;

use std::fs;
use std::path::Path;

use serde_json::Value;

use common::{PLACED, TestLedger, copy_ledger, ordo_at};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

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

/// Copies the fixture `name` (a copy: opening a ledger may write to it), checks every
/// recorded answer, appends once and verifies.
fn answers_exactly_as_it_did_and_takes_an_append(name: &str) {
    let fixtures = Path::new(FIXTURES);
    let l = TestLedger::new();
    copy_ledger(&fixtures.join(name), &l.dir());
    let expected = fixtures.join(format!("{name}.expected.json"));
    let expected: Value =
        serde_json::from_str(&fs::read_to_string(expected).expect("expected answers"))
            .expect("json");
    let expected = expected.as_object().expect("an object of commands");
    assert!(expected.len() >= 8);
    for (command, answer) in expected {
        assert_eq!(&json_of(&l.dir(), command), answer, "{name}: {command}");
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

#[test]
fn a_ledger_written_by_format_1_answers_exactly_as_it_did_and_takes_an_append() {
    answers_exactly_as_it_did_and_takes_an_append("ledger-v1");
}

#[test]
fn a_ledger_written_by_format_2_answers_and_proves_exactly_as_it_did_and_takes_an_append() {
    // Its answers include checkpoints and proofs: the stored tree's bytes are held too.
    answers_exactly_as_it_did_and_takes_an_append("ledger-v2");
}
