//! Helpers shared by the integration tests: a temporary ledger and the `ordo` binary on it.
#![allow(dead_code)] // each test binary uses a different subset

pub mod in_process;
pub mod nats;
pub mod served;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

pub const PLACED: &str =
    r#"{"customer_id":"C-1","currency":"EUR","lines":[{"sku":"A","quantity":2,"unit_price":500}]}"#;

/// A temporary directory holding a ledger at `dir/ledger`.
pub struct TestLedger {
    pub tmp: tempfile::TempDir,
}

impl TestLedger {
    pub fn new() -> TestLedger {
        TestLedger {
            tmp: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("ledger")
    }

    /// A file in the temporary directory (outside the ledger).
    pub fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, contents).expect("writable temp dir");
        path
    }

    /// `ordo --data-dir <ledger> ARGS...`
    pub fn ordo(&self, args: &[&str]) -> Command {
        ordo_at(&self.dir(), args)
    }

    /// Runs a command that must succeed and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ordo(args).output().expect("ordo runs");
        assert!(
            out.status.success(),
            "ordo {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs a command with `--format json` and parses its stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("JSON output")
    }

    pub fn append(&self, order: &str, event_type: &str, data: &str) -> Value {
        self.json(&[
            "append", "--order", order, "--type", event_type, "--data", data,
        ])
    }

    /// (head position, head hash), or None when no ledger exists.
    pub fn head(&self) -> Option<(u64, String)> {
        if !self.dir().join("CURRENT").exists() {
            return None;
        }
        let stats = self.json(&["stats"]);
        Some((
            stats["head_position"].as_u64().expect("position"),
            stats["head_hash"].as_str().expect("hash").to_owned(),
        ))
    }
}

pub fn ordo_at(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("ordo").expect("the ordo binary is built");
    cmd.env_remove("ORDO_DATA_DIR")
        .env_remove("ORDO_SERVER")
        .env_remove("ORDO_TOKEN_FILE")
        .arg("--data-dir")
        .arg(dir)
        .args(args);
    cmd
}

/// Copies a ledger directory's files (RocksDB keeps no subdirectories that matter) into `to`,
/// created if missing.
pub fn copy_ledger(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}
