//! Import's validation pass in bounded memory: with a tiny in-memory limit, states and event
//! ids move to the scratch table on disk, and the import still catches every bad line (rules,
//! duplicates, conflicts) that depends on spilled data, writes the same ledger, and leaves
//! no scratch directory behind.

use std::io::Write;
use std::path::{Path, PathBuf};

use ordo::Error;
use ordo::domain::{Position, Timestamp};
use ordo::generate::{GenerateOptions, generate};
use ordo::ledger::{ImportOptions, Ledger, NoProgress, export, import};
use ordo::store::{Access, Durability, SCRATCH_DIR_PREFIX};
use serde_json::{Value, json};

fn workload(dir: &Path, orders: u64) -> PathBuf {
    let path = dir.join("workload.ndjson");
    let options = GenerateOptions {
        orders,
        seed: 11,
        start: Timestamp::parse("2026-02-01").expect("date"),
        days: 20,
    };
    let mut file = std::fs::File::create(&path).expect("writable temp dir");
    generate(&options, &mut file).expect("generate");
    path
}

fn open(dir: &Path) -> Ledger {
    Ledger::open_with(dir, Access::ReadWrite, Durability::NoSync).expect("ledger opens")
}

fn spilling(memory_entries_max: usize, preserve: bool) -> ImportOptions {
    ImportOptions {
        preserve,
        batch_events: 250,
        memory_entries_max,
    }
}

fn scratch_dirs(ledger_dir: &Path) -> Vec<String> {
    std::fs::read_dir(ledger_dir)
        .expect("ledger dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(SCRATCH_DIR_PREFIX))
        .collect()
}

/// The export with what differs between two imports of the same input removed.
fn content(ledger: &Ledger) -> Vec<Value> {
    let mut out = Vec::new();
    export(ledger, Position(1), None, None, &mut out).expect("export");
    String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).expect("json");
            let object = v.as_object_mut().expect("object");
            object.remove("recorded_at");
            object.remove("hash");
            // Events without occurred_at in the input take the recording time.
            object.remove("occurred_at");
            v
        })
        .collect()
}

fn append_lines(path: &Path, lines: &[Value]) -> PathBuf {
    let target = path.with_extension("extra.ndjson");
    std::fs::copy(path, &target).expect("copy");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&target)
        .expect("open");
    for line in lines {
        writeln!(file, "{line}").expect("write");
    }
    target
}

fn first_line(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read");
    serde_json::from_str(text.lines().next().expect("a line")).expect("json")
}

#[test]
fn a_spilling_import_writes_the_same_ledger_and_removes_its_scratch_table() {
    let tmp = tempfile::tempdir().expect("tmp");
    let input = workload(tmp.path(), 300);

    let spilled_dir = tmp.path().join("spilled");
    let spilled = open(&spilled_dir);
    let result = import(&spilled, &input, &spilling(7, false), &NoProgress).expect("import");
    assert!(result.appended > 1000, "{result:?}");
    assert!(scratch_dirs(&spilled_dir).is_empty());

    let plain = open(&tmp.path().join("plain"));
    import(&plain, &input, &ImportOptions::default(), &NoProgress).expect("import");
    assert_eq!(content(&spilled), content(&plain));

    // A preserved import (positions, times, hashes checked) also spills and reproduces the
    // original's hash chain exactly.
    let exported = tmp.path().join("export.ndjson");
    let mut out = Vec::new();
    export(&spilled, Position(1), None, None, &mut out).expect("export");
    std::fs::write(&exported, out).expect("write");
    let copy = open(&tmp.path().join("copy"));
    import(&copy, &exported, &spilling(5, true), &NoProgress).expect("import");
    assert_eq!(copy.head().expect("head"), spilled.head().expect("head"));
}

#[test]
fn rules_that_depend_on_spilled_states_still_reject_the_line_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let input = workload(tmp.path(), 200);
    let lines = std::fs::read_to_string(&input)
        .expect("read")
        .lines()
        .count() as u64;
    // The first order was placed on line 1, long since spilled: placing it again breaks the
    // rules, and only its spilled state can tell.
    let mut again = first_line(&input);
    again.as_object_mut().expect("object").remove("event_id");
    let bad = append_lines(&input, &[again]);
    let dir = tmp.path().join("ledger");
    let ledger = open(&dir);
    let err = import(&ledger, &bad, &spilling(3, false), &NoProgress).expect_err("rejected");
    match &err {
        Error::AtLine { line, error } => {
            assert_eq!(*line, lines + 1);
            assert!(matches!(**error, Error::Rejected(_)), "{error:?}");
        }
        other => panic!("expected a rejection at a line, got {other:?}"),
    }
    assert_eq!(ledger.head().expect("head").position, Position(0));
    assert!(scratch_dirs(&dir).is_empty());
}

#[test]
fn event_ids_seen_before_a_spill_are_still_duplicates_or_conflicts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let input = workload(tmp.path(), 200);
    let first = first_line(&input);

    // The same line again at the end: a duplicate, written once.
    let repeated = append_lines(&input, std::slice::from_ref(&first));
    let ledger = open(&tmp.path().join("a"));
    let result = import(&ledger, &repeated, &spilling(3, false), &NoProgress).expect("import");
    assert_eq!(result.duplicates, 1);

    // The same id with other content: a conflict naming the line; nothing written.
    let mut changed = first.clone();
    changed["data"]["customer_id"] = json!("SOMEONE-ELSE");
    let conflicting = append_lines(&input, &[changed]);
    let ledger = open(&tmp.path().join("b"));
    let err =
        import(&ledger, &conflicting, &spilling(3, false), &NoProgress).expect_err("conflict");
    assert!(err.to_string().contains("already used"), "{err}");
    assert_eq!(ledger.head().expect("head").position, Position(0));
}

#[test]
fn a_scratch_directory_left_by_a_crash_is_removed_by_the_next_import() {
    let tmp = tempfile::tempdir().expect("tmp");
    let input = workload(tmp.path(), 20);
    let dir = tmp.path().join("ledger");
    let ledger = open(&dir);
    let stale = dir.join(format!("{SCRATCH_DIR_PREFIX}left-by-a-crash"));
    std::fs::create_dir(&stale).expect("mkdir");
    std::fs::write(stale.join("000001.log"), b"junk").expect("write");
    import(&ledger, &input, &ImportOptions::default(), &NoProgress).expect("import");
    assert!(!stale.exists());
}
