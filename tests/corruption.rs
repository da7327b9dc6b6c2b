//! Corruption is never silent (issue 21, items 1 and 2).
//!
//! The matrix: a ledger with tables on disk and acknowledged events still only in its
//! write-ahead log; for each kind of file in it (that log, the largest table, MANIFEST,
//! CURRENT, OPTIONS) and several offsets, one flipped byte in a fresh copy, then every reading
//! command and an append. Each command either fails with exit 5 (damage) or 1 (a file it
//! needs cannot be read) and a message naming what is wrong, or prints exactly what the
//! undamaged ledger prints; none exits 0 with other or fewer results. A file found damaged
//! is never deleted or changed by the commands that refused it.
//!
//! The write-ahead log story of the issue: acknowledged events, a flipped byte in the middle
//! of the log. Every open refuses (exit 5, naming the log, the byte and the way out), the log
//! stays as it was, `ordo recover --truncate-at P` keeps what can be read after a
//! confirmation and copies the damaged log aside. A torn tail (the log cut short, as a crash
//! leaves it) still opens.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{PLACED, TestLedger, copy_ledger, ordo_at};
use ordo::domain::{EventData, EventType, OrderId};
use ordo::ledger::{Ledger, NewEvent};
use ordo::store::Access;
use serde_json::json;

/// Flips one byte of `file` at `offset`.
fn flip(file: &Path, offset: u64) {
    let mut bytes = fs::read(file).expect("readable");
    bytes[offset as usize] ^= 0x5a;
    fs::write(file, bytes).expect("writable");
}

fn files(dir: &Path, matches: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .expect("readable")
        .map(|e| e.expect("entry").path())
        .filter(|p| matches(&p.file_name().expect("name").to_string_lossy()))
        .collect();
    found.sort();
    found
}

/// One command's outcome: exit code, stdout (with run-dependent fields removed), stderr.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(dir: &Path, args: &[&str]) -> Outcome {
    let out = ordo_at(dir, args).output().expect("ordo runs");
    let mut stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if args[0] == "replay" {
        // Elapsed time differs run to run; everything else must not.
        let mut summary: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
        if let Some(o) = summary.as_object_mut() {
            o.remove("elapsed_ms");
        }
        stdout = summary.to_string();
    }
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const READS: &[&[&str]] = &[
    &["verify", "--format", "json"],
    &["stats", "--format", "json"],
    &["export"],
    &["export", "--from-position", "5", "--to-position", "10"],
    &["history", "ORD-00000007", "--format", "json"],
    &["state", "ORD-00000007", "--format", "json"],
    &["audit", "ORD-00000007", "--format", "json"],
    &["query", "statuses", "--format", "json"],
    &["query", "orders", "--limit", "100", "--format", "json"],
    &["query", "revenue", "--by", "month", "--format", "json"],
    &["replay", "--at-position", "3000", "--format", "json"],
];

/// A ledger with tables and a write-ahead log holding acknowledged, unflushed events.
fn pristine() -> TestLedger {
    let l = TestLedger::new();
    let events = l.tmp.path().join("events.ndjson");
    let events = events.to_str().expect("utf-8");
    l.ok(&[
        "generate", "--orders", "4000", "--seed", "21", "--output", events,
    ]);
    l.ok(&["import", events]);
    assert!(
        !files(&l.dir(), |n| n.ends_with(".sst")).is_empty(),
        "the import left tables on disk (it flushes its memtables on close)"
    );
    append_separately(&l.dir(), "TAIL", 20);
    let wal = newest_log(&l.dir());
    assert!(
        fs::metadata(&wal).expect("log").len() > 0,
        "the tail is in the log"
    );
    l
}

fn newest_log(dir: &Path) -> PathBuf {
    files(dir, |n| n.ends_with(".log"))
        .into_iter()
        .rfind(|p| fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .expect("a write-ahead log")
}

/// The damaged file of each kind in a ledger.
fn targets(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let largest_table = files(dir, |n| n.ends_with(".sst"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).expect("table").len())
        .expect("a table");
    vec![
        ("WAL", newest_log(dir)),
        ("SST", largest_table),
        (
            "MANIFEST",
            files(dir, |n| n.starts_with("MANIFEST-"))[0].clone(),
        ),
        ("CURRENT", dir.join("CURRENT")),
        (
            "OPTIONS",
            files(dir, |n| n.starts_with("OPTIONS-"))
                .pop()
                .expect("options"),
        ),
    ]
}

fn names_the_damage(stderr: &str) -> bool {
    [
        "damaged",
        "Corruption",
        "verification failed",
        "No such file",
        "corrupt",
    ]
    .iter()
    .any(|word| stderr.contains(word))
}

#[test]
fn one_flipped_byte_in_any_file_fails_loudly_or_changes_nothing() {
    let l = pristine();
    let expected: Vec<Outcome> = READS.iter().map(|args| run(&l.dir(), args)).collect();
    for (args, outcome) in READS.iter().zip(&expected) {
        assert_eq!(outcome.code, 0, "undamaged {args:?}: {}", outcome.stderr);
    }
    let head = run(&l.dir(), &["stats", "--format", "json"]).stdout;
    let head: serde_json::Value = serde_json::from_str(&head).expect("stats");
    let next = head["head_position"].as_u64().expect("head") + 1;

    let mut tally = std::collections::BTreeMap::<(&str, &str), u32>::new();
    for (kind, file) in targets(&l.dir()) {
        let length = fs::metadata(&file).expect("file").len();
        let mut offsets = vec![length / 10, length / 2, length * 9 / 10, length - 1];
        if kind == "WAL" {
            // The log's last record: see `a_flipped_byte_in_the_last_record_costs_that_commit_only`.
            offsets.pop();
        }
        offsets.dedup();
        for offset in offsets {
            let case = tempfile::tempdir().expect("tmp");
            let dir = case.path().join("ledger");
            copy_ledger(&l.dir(), &dir);
            let damaged = dir.join(file.file_name().expect("name"));
            flip(&damaged, offset);
            let damaged_bytes = fs::read(&damaged).expect("damaged file");
            let mut refused = false;
            for (args, want) in READS.iter().zip(&expected) {
                let got = run(&dir, args);
                let what = format!("{kind} byte {offset}, {args:?}");
                match got.code {
                    0 => {
                        assert!(
                            got.stdout == want.stdout,
                            "{what}: exit 0 with other output ({} bytes, {} lines instead of {} bytes, {} lines)",
                            got.stdout.len(),
                            got.stdout.lines().count(),
                            want.stdout.len(),
                            want.stdout.lines().count()
                        );
                        *tally.entry((kind, "same output")).or_default() += 1;
                    }
                    1 | 5 => {
                        assert!(names_the_damage(&got.stderr), "{what}: {}", got.stderr);
                        refused = true;
                        *tally
                            .entry((kind, if got.code == 5 { "exit 5" } else { "exit 1" }))
                            .or_default() += 1;
                    }
                    other => panic!("{what}: exit {other}: {}", got.stderr),
                }
            }
            let append = run(
                &dir,
                &[
                    "append",
                    "--order",
                    "NEW-1",
                    "--type",
                    "order_placed",
                    "--data",
                    PLACED,
                    "--format",
                    "json",
                ],
            );
            match append.code {
                0 => {
                    let result: serde_json::Value =
                        serde_json::from_str(&append.stdout).expect("json");
                    assert_eq!(
                        result["position"], next,
                        "{kind} byte {offset}: appended after a shorter log"
                    );
                    *tally.entry((kind, "append ok")).or_default() += 1;
                }
                1 | 5 => {
                    assert!(
                        names_the_damage(&append.stderr),
                        "{kind} byte {offset}: {}",
                        append.stderr
                    );
                    refused = true;
                    *tally.entry((kind, "append refused")).or_default() += 1;
                }
                other => panic!(
                    "{kind} byte {offset}: append exit {other}: {}",
                    append.stderr
                ),
            }
            if refused {
                assert_eq!(
                    fs::read(&damaged).ok().as_ref(),
                    Some(&damaged_bytes),
                    "{kind} byte {offset}: the damaged file was deleted or changed"
                );
            }
        }
    }
    // docs/reliability.md records these figures.
    for ((kind, outcome), n) in &tally {
        eprintln!("matrix: {kind:8} {outcome:14} {n}");
    }
    assert!(tally.keys().any(|(k, o)| *k == "WAL" && *o == "exit 5"));
    assert!(tally.keys().any(|(k, o)| *k == "SST" && *o == "exit 5"));
}

/// Appends `n` orders `PREFIX-i`, each in its own commit, in one process that closes
/// without flushing (its log is small): the events stay in the write-ahead log only, as
/// after a SIGKILL.
fn append_separately(dir: &Path, prefix: &str, n: usize) {
    let ledger = Ledger::open(dir, Access::ReadWrite).expect("open");
    for i in 0..n {
        let data = EventData::from_json(
            EventType::OrderPlaced,
            serde_json::from_str(PLACED).expect("json"),
        )
        .expect("valid data");
        let order = OrderId::new(format!("{prefix}-{i}")).expect("id");
        ledger.append(NewEvent::new(order, data)).expect("append");
    }
}

fn ledger_of_separate_commits(l: &TestLedger, n: usize) {
    append_separately(&l.dir(), "W", n);
}

#[test]
fn a_flipped_byte_in_the_middle_of_the_log_is_refused_until_an_explicit_recover() {
    let l = TestLedger::new();
    ledger_of_separate_commits(&l, 64);
    let dir = l.dir();
    let wal = newest_log(&dir);
    let length = fs::metadata(&wal).expect("log").len();
    flip(&wal, length / 2);
    let damaged = fs::read(&wal).expect("log");

    for args in [&["verify"][..], &["stats"], &["export"], &["state", "W-1"]] {
        let out = ordo_at(&dir, args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {stderr}");
        let name = wal
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            stderr.contains(&name) && stderr.contains("byte"),
            "{stderr}"
        );
        assert!(stderr.contains("ordo recover --truncate-at"), "{stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed a result");
    }
    let out = ordo_at(
        &dir,
        &[
            "append",
            "--order",
            "X",
            "--type",
            "order_placed",
            "--data",
            PLACED,
        ],
    )
    .output()
    .expect("runs");
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(fs::read(&wal).expect("the log is still there"), damaged);

    // The way out: what can be read is named, and kept only when asked twice.
    let out = ordo_at(&dir, &["verify"]).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let keep: u64 = stderr
        .split("--truncate-at ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .and_then(|p| p.parse().ok())
        .expect("the error names a position");
    assert!(keep > 0 && keep < 64, "{keep}");
    let unconfirmed = ordo_at(&dir, &["recover", "--truncate-at", &keep.to_string()])
        .output()
        .expect("runs");
    assert_eq!(unconfirmed.status.code(), Some(2), "no terminal, no --yes");
    let wrong = ordo_at(
        &dir,
        &["recover", "--truncate-at", &(keep + 1).to_string(), "--yes"],
    )
    .output()
    .expect("runs");
    assert_eq!(wrong.status.code(), Some(2));
    assert_eq!(fs::read(&wal).expect("the log is still there"), damaged);

    let recovered = l.json(&["recover", "--truncate-at", &keep.to_string(), "--yes"]);
    assert_eq!(recovered["head_position"], keep);
    let copies = PathBuf::from(recovered["logs_copied_to"].as_str().expect("dir"));
    let copy = copies.join(wal.file_name().expect("name"));
    assert_eq!(fs::read(copy).expect("the damaged log was copied"), damaged);
    let verify = l.json(&["verify"]);
    assert_eq!(verify["ok"], true);
    assert_eq!(verify["events"], keep);
    // Recovery is for damaged logs only: a healthy ledger is never cut.
    let again = l
        .ordo(&["recover", "--truncate-at", "1", "--yes"])
        .output()
        .expect("runs");
    assert_eq!(again.status.code(), Some(2));
}

/// 16 orders placed in separate commits, all only in the log: the log and its length.
fn sixteen_commits_in_the_log(l: &TestLedger) -> (PathBuf, u64) {
    ledger_of_separate_commits(l, 16);
    let wal = newest_log(&l.dir());
    let length = fs::metadata(&wal).expect("log").len();
    (wal, length)
}

#[test]
fn a_log_cut_short_by_a_crash_still_opens_with_every_whole_record() {
    let l = TestLedger::new();
    let (wal, length) = sixteen_commits_in_the_log(&l);
    let file = fs::OpenOptions::new().write(true).open(&wal).expect("log");
    file.set_len(length - 5).expect("truncate");
    drop(file);
    let verify = l.json(&["verify"]);
    assert_eq!(verify["ok"], true);
    // The last commit was torn; the 15 before it are whole.
    assert_eq!(verify["events"], 15);
    // The writer that opens next retires the torn log (a writer keeps whole logs it
    // recovered, never a torn one): were it kept, the records of later logs would make its
    // tear look like damage at the open after.
    l.append("AFTER", "order_placed", PLACED);
    l.append("LATER", "order_placed", PLACED);
    let verify = l.json(&["verify"]);
    assert_eq!(
        (&verify["ok"], &verify["events"]),
        (&json!(true), &json!(17))
    );
}

/// A power cut during RocksDB's sync of a MANIFEST edit can leave the edit's header on disk
/// with zeros where its payload should be (met once by the power-loss tests;
/// src/store/manifest.rs): RocksDB alone refuses the whole ledger. The next writer copies the
/// MANIFEST aside, cuts the torn edit off (RocksDB then writes a new MANIFEST, as at every
/// open), and every acknowledged event is there. Readers before it change nothing and say
/// so (exit 1, not damage).
#[test]
fn a_manifest_edit_torn_by_a_power_cut_is_cut_off_and_loses_nothing() {
    let l = TestLedger::new();
    ledger_of_separate_commits(&l, 4);
    let current = fs::read_to_string(l.dir().join("CURRENT")).expect("CURRENT");
    let manifest = l.dir().join(current.trim_end());
    let whole = fs::read(&manifest).expect("MANIFEST");
    // A full record's header (checksum, length 1,000, type 1) and its payload, whose sectors
    // from the first boundary inside it never reached the disk: zeros.
    let mut torn = whole.clone();
    torn.extend([0x5a, 0x17, 0xc3, 0x08, 0xe8, 0x03, 1]);
    torn.extend([0x33u8; 1000]);
    let unwritten = (whole.len() + 8).div_ceil(512) * 512;
    torn[unwritten..].fill(0);
    fs::write(&manifest, &torn).expect("tear the MANIFEST");
    // A reader writes nothing: it names the tear and the way out (a command that writes),
    // as an operational error, not as damage (RocksDB alone says "Corruption", exit 5).
    for args in [&["verify"][..], &["state", "W-1"]] {
        let out = ordo_at(&l.dir(), args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("torn by a power cut")
                && stderr.contains(current.trim_end())
                && stderr.contains("ordo rebuild"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?} printed a result");
    }
    assert_eq!(
        fs::read(&manifest).expect("MANIFEST"),
        torn,
        "readers changed it"
    );
    // The way out the readers name: a command that opens for writing.
    l.ok(&["rebuild"]);
    l.append("AFTER", "order_placed", PLACED);
    let copy = l
        .dir()
        .join(format!("torn-{}-at-{}", current.trim_end(), whole.len()));
    assert_eq!(
        fs::read(&copy).expect("the copy"),
        torn,
        "kept whole beside the ledger"
    );
    let verify = l.json(&["verify"]);
    assert_eq!(
        (&verify["ok"], &verify["events"]),
        (&json!(true), &json!(5))
    );
}

/// A writer keeps the logs it recovered instead of flushing them into new tables at every
/// open: separate `ordo append` processes add no table each, and everything they
/// acknowledged is there, until a close with many logs flushes them.
#[test]
fn separate_appends_keep_their_logs_and_lose_nothing() {
    let l = TestLedger::new();
    l.append("FIRST", "order_placed", PLACED);
    let tables = files(&l.dir(), |n| n.ends_with(".sst")).len();
    for i in 0..8 {
        l.append(&format!("ORD-{i}"), "order_placed", PLACED);
    }
    assert_eq!(files(&l.dir(), |n| n.ends_with(".sst")).len(), tables);
    assert!(files(&l.dir(), |n| n.ends_with(".log")).len() > 1);
    for i in 8..40 {
        l.append(&format!("ORD-{i}"), "order_placed", PLACED);
    }
    let logs = files(&l.dir(), |n| n.ends_with(".log")).len();
    assert!(
        logs <= ordo::store::FLUSH_ON_CLOSE_LOGS_MAX + 1,
        "a close with many logs flushes them: {logs} logs"
    );
    let verify = l.json(&["verify"]);
    assert_eq!(
        (&verify["ok"], &verify["events"]),
        (&json!(true), &json!(41))
    );
}

/// The limit of the check, pinned: a flipped byte in the newest log's last record looks
/// exactly like a tail torn by a crash (nothing follows it), so the ledger opens without that
/// one commit, as it would after a crash at that moment. docs/reliability.md says so.
#[test]
fn a_flipped_byte_in_the_last_record_costs_that_commit_only() {
    let l = TestLedger::new();
    let (wal, length) = sixteen_commits_in_the_log(&l);
    flip(&wal, length - 1);
    let verify = l.json(&["verify"]);
    assert_eq!(verify["ok"], true);
    assert_eq!(verify["events"], 15);
}
