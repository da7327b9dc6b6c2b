//! I/O errors from the operating system, not from ordo's own fault injection: fsync and
//! write failures injected into the real system calls with libfiu (`fiu-run`, `fiu-ctrl`),
//! and a full disk (a small tmpfs). Every error must reach the caller as an error (exit 1, a
//! message naming it), nothing acknowledged may be lost, and retrying with the same event
//! ids must never store an event twice, even when the failed write did reach the disk.
//!
//! Needs root (tmpfs mounts) and Debian's fiu-utils. Without them the tests print why and
//! pass, unless `ORDO_REQUIRE_FAULT_TOOLS=1` (set by `.ci/run` when it installed them).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::served::{Served, post};
use common::{PLACED, TestLedger, ordo_at};
use serde_json::{Value, json};

const FIU_PRELOAD: &str = "/usr/lib/fiu/fiu_posix_preload.so";

/// Prints why the test cannot run here, or fails when the tools were promised.
fn skip(reason: &str) {
    if std::env::var_os("ORDO_REQUIRE_FAULT_TOOLS").is_some() {
        panic!("ORDO_REQUIRE_FAULT_TOOLS is set, but {reason}");
    }
    eprintln!("skipped: {reason}");
}

fn fiu_missing() -> Option<&'static str> {
    let runs = |tool: &str| Command::new(tool).arg("-h").output().is_ok();
    if !runs("fiu-run") || !runs("fiu-ctrl") || !Path::new(FIU_PRELOAD).exists() {
        return Some("libfiu is not installed (apt-get install fiu-utils)");
    }
    None
}

fn event_id(n: u64) -> String {
    format!("0190a6f0-0000-7000-8000-{n:012}")
}

fn placed_event(order: &str, n: u64) -> Value {
    json!({"order_id": order, "type": "order_placed", "event_id": event_id(n),
           "data": serde_json::from_str::<Value>(PLACED).expect("json")})
}

/// Every event of the ledger by event id, checking ids are unique and positions gapless.
fn stored_by_event_id(dir: &Path) -> BTreeMap<String, u64> {
    let output = ordo_at(dir, &["export"]).output().expect("export runs");
    assert!(output.status.success(), "export: {output:?}");
    let mut by_id = BTreeMap::new();
    for (i, line) in String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .enumerate()
    {
        let event: Value = serde_json::from_str(line).expect("an envelope");
        let position = event["position"].as_u64().expect("position");
        assert_eq!(position, i as u64 + 1, "positions are gapless");
        let id = event["event_id"].as_str().expect("event id").to_owned();
        let previous = by_id.insert(id.clone(), position);
        assert!(previous.is_none(), "event {id} is stored twice");
    }
    by_id
}

/// `verify` is clean and the projections equal a rebuild from the log.
fn assert_sound(dir: &Path) {
    let verify = ordo_at(dir, &["verify"]).output().expect("verify runs");
    assert!(verify.status.success(), "verify: {verify:?}");
    let rebuild = ordo_at(dir, &["rebuild"]).output().expect("rebuild runs");
    assert!(rebuild.status.success(), "rebuild: {rebuild:?}");
}

fn fiu_ctrl(control: &Path, pid: u32, command: &str) {
    let status = Command::new("fiu-ctrl")
        .arg("-f")
        .arg(control)
        .args(["-c", command, &pid.to_string()])
        .status()
        .expect("fiu-ctrl runs");
    assert!(status.success(), "fiu-ctrl {command}");
}

/// The hardest case: the server's fdatasync fails after the event's WAL record was written.
/// The client gets an error; once the fault is gone and the server restarted, the retry with
/// the same event id is reported as the event already stored, not stored twice.
#[test]
fn an_fsync_error_at_commit_reaches_the_client_and_the_retry_is_not_a_second_event() {
    if let Some(reason) = fiu_missing() {
        return skip(reason);
    }
    let l = TestLedger::new();
    l.append("O-1", "order_placed", PLACED);
    let control = l.tmp.path().join("fiu-control");
    let mut launcher = Command::new("fiu-run");
    launcher
        .arg("-x")
        .arg("-f")
        .arg(&control)
        .arg(env!("CARGO_BIN_EXE_ordo"));
    let served = Served::spawn(launcher, &l.dir(), &[]);
    let url = format!("{}/v1/events", served.url);
    let pid = served.child.id();

    // A healthy append first: the server works under fiu-run.
    let (status, _) = post(&url, &placed_event("O-2", 2)).expect("answer");
    assert_eq!(status, 201);

    fiu_ctrl(&control, pid, "enable name=posix/io/sync/*");
    let (status, body) = post(&url, &placed_event("O-3", 3)).expect("answer");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["kind"], "storage", "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("fdatasync"), "{message}");
    assert!(
        message.contains("refuses writes until the ledger is reopened: restart ordo, then retry with the same event ids"),
        "{message}"
    );
    fiu_ctrl(&control, pid, "disable name=posix/io/sync/*");

    // RocksDB latches a failed WAL sync: the writer refuses appends until the ledger is
    // reopened, and each refusal says so.
    let (status, body) = post(&url, &placed_event("O-3", 3)).expect("answer");
    assert_eq!(status, 500, "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("restart ordo"), "{message}");
    let status = served.terminate();
    assert!(status.success(), "serve stops cleanly: {status:?}");

    // After a restart the WAL record that did reach the disk is there, and the retry finds it.
    let served = Served::start(&l.dir(), &[]);
    let (status, body) = post(&url_of(&served), &placed_event("O-3", 3)).expect("answer");
    assert_eq!(status, 200, "a duplicate is answered 200: {body}");
    assert_eq!(body["duplicate"], true, "{body}");
    assert_eq!(body["position"], 3, "{body}");
    drop(served);
    let stored = stored_by_event_id(&l.dir());
    assert_eq!(stored.get(&event_id(3)), Some(&3));
    assert_eq!(stored.len(), 3);
    assert_sound(&l.dir());
}

fn url_of(served: &Served) -> String {
    format!("{}/v1/events", served.url)
}

/// Random write and fsync failures in every system call of `ordo append` (opening the
/// ledger, recovering it, committing, printing the answer). Each event is retried with its
/// event id until a run succeeds; in the end every event is stored exactly once.
#[test]
fn random_write_and_fsync_errors_fail_loudly_and_retries_never_duplicate() {
    if let Some(reason) = fiu_missing() {
        return skip(reason);
    }
    let l = TestLedger::new();
    l.append("O-0", "order_placed", PLACED);
    let events: u64 = std::env::var("ORDO_FIU_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let (mut attempts, mut failures, mut duplicates) = (0u64, 0u64, 0u64);
    let mut messages: BTreeMap<String, u64> = BTreeMap::new();
    for n in 1..=events {
        let order = format!("O-{n}");
        let id = event_id(n);
        let mut tries = 0;
        let mut last_error = String::new();
        loop {
            tries += 1;
            assert!(
                tries <= 300,
                "event {n} never got through; failures so far by message: {messages:?}; the last: {last_error}"
            );
            attempts += 1;
            let output: Output = Command::new("fiu-run")
                .args(["-x", "-f", ""])
                .args(["-c", "enable_random name=posix/io/sync/*,probability=0.05"])
                .args([
                    "-c",
                    "enable_random name=posix/io/rw/write,probability=0.01",
                ])
                .arg(env!("CARGO_BIN_EXE_ordo"))
                .arg("--data-dir")
                .arg(l.dir())
                .args(["--format", "json", "append", "--order", &order])
                .args([
                    "--type",
                    "order_placed",
                    "--event-id",
                    &id,
                    "--data",
                    PLACED,
                ])
                .env("RUST_BACKTRACE", "0")
                .output()
                .expect("fiu-run starts");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!stderr.contains("panicked"), "a panic: {stderr}");
            match output.status.code() {
                Some(0) => {
                    let answer: Value =
                        serde_json::from_slice(&output.stdout).expect("a JSON answer");
                    if answer["duplicate"] == true {
                        duplicates += 1;
                    }
                    break;
                }
                Some(1) => {
                    failures += 1;
                    // The first words of the message say what failed (stderr itself may
                    // have been cut short by an injected write failure).
                    let what: String = stderr.chars().take(40).collect();
                    *messages.entry(what).or_default() += 1;
                    last_error = stderr.into_owned();
                }
                other => panic!("exit {other:?} is not the storage error's 1: {stderr}"),
            }
        }
    }
    let stored = stored_by_event_id(&l.dir());
    assert_eq!(stored.len() as u64, events + 1, "every event once");
    for n in 1..=events {
        assert!(stored.contains_key(&event_id(n)), "event {n} stored");
    }
    assert_sound(&l.dir());
    eprintln!(
        "{events} events, {attempts} runs under random faults, {failures} failed with exit 1, {duplicates} retries found their event already stored; stored once each"
    );
    assert!(failures > 0, "no fault was injected");
}

/// A size-limited tmpfs, unmounted however the test ends.
struct SmallDisk {
    path: PathBuf,
    _tmp: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u64) -> Result<SmallDisk, String> {
        if !rustix::process::getuid().is_root() {
            return Err("not running as root (mounting a small tmpfs needs it)".into());
        }
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = tmp.path().join("disk");
        fs::create_dir(&path).map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(format!(
                "cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(SmallDisk { path, _tmp: tmp })
    }

    /// Writes a file until the disk is full.
    fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let path = self.path.join(name);
        let mut file = fs::File::create(&path).expect("filler");
        let block = vec![0xa5u8; 64 * 1024];
        loop {
            match file.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) => {
                    break;
                }
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_fails_appends_clearly_and_the_ledger_works_again_when_space_is_freed() {
    let disk = match SmallDisk::mount(256) {
        Ok(disk) => disk,
        Err(reason) => return skip(&reason),
    };
    let dir = disk.path.join("ledger");
    let append = |order: &str, n: u64| {
        ordo_at(&dir, &["--format", "json", "append", "--order", order])
            .args([
                "--type",
                "order_placed",
                "--event-id",
                &event_id(n),
                "--data",
                PLACED,
            ])
            .output()
            .expect("append runs")
    };
    for n in 1..=20 {
        let output = append(&format!("O-{n}"), n);
        assert!(output.status.success(), "{output:?}");
    }
    let before = stored_by_event_id(&dir);

    let filler = disk.fill("filler");
    let output = append("O-21", 21);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "error: storage error: the disk holding the ledger is full; free space, then retry"
        ) && stderr.contains("No space left on device"),
        "the error names the full disk: {stderr}"
    );
    // Reading needs no space on the ledger's disk: nothing acknowledged was lost.
    assert_eq!(stored_by_event_id(&dir), before);

    fs::remove_file(filler).expect("space freed");
    let output = append("O-21", 21);
    assert!(output.status.success(), "appends work again: {output:?}");
    let after = stored_by_event_id(&dir);
    assert_eq!(after.len(), before.len() + 1);
    assert_sound(&dir);
}
