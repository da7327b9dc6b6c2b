//! The CLI phase (issue 25, item 3): `ordo state` and `ordo append` as whole processes,
//! against the floors under them: RocksDB's own open of the ledger, in this process and as
//! a fresh process of this binary.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rocksdb::{DB, Options};
use serde_json::json;

use ordo::domain::OrderId;
use ordo::format::keys::order_state_key;

use super::{Args, Latencies, Report, Row, raw_options, round2};

pub(super) fn cli(ledger_dir: &Path, args: &Args, report: &mut Report) -> Result<()> {
    let ordo = env!("CARGO_BIN_EXE_ordo");
    let time = |command_args: &[&str]| {
        time_processes(args.cli_runs, &format!("ordo {command_args:?}"), || {
            let mut command = Command::new(ordo);
            command.arg("--data-dir").arg(ledger_dir).args(command_args);
            command
        })
    };
    let version = time(&["--version"])?;
    let state = time(&["state", "ORD-00000001"])?;
    let append = time(&[
        "append",
        "--order",
        "ORD-00000001",
        "--type",
        "note_added",
        "--data",
        r#"{"text":"from the CLI benchmark"}"#,
    ])?;
    // The floors under a process that writes to this ledger and one that reads an order
    // from it (`raw_cli_open`): in this process, after its first open (RocksDB's own work
    // only), and as a fresh process of this binary, which, like `ordo`, links RocksDB and
    // so pays its static initializers, the loader, the first open's page faults and the
    // exit: 1 to 1.5 ms more than a second open in the same process on this VM.
    let in_process = |write: bool| -> Result<Latencies> {
        let mut latencies = Vec::new();
        for _ in 0..args.cli_runs {
            let started = Instant::now();
            raw_cli_open(ledger_dir, write)?;
            latencies.push(started.elapsed());
        }
        Ok(Latencies::new(latencies))
    };
    let this = std::env::current_exe()?;
    let as_process = |access: &str| {
        time_processes(args.cli_runs, &format!("the raw {access} open"), || {
            let mut command = Command::new(&this);
            command.args([RAW_OPEN_PROCESS, access]).arg(ledger_dir);
            command
        })
    };
    let raw_read = in_process(false)?;
    let raw_open = in_process(true)?;
    let raw_read_process = as_process("read")?;
    let raw_open_process = as_process("write")?;
    let names = DB::list_cf(&Options::default(), ledger_dir)?;
    let fsync_ms = report.machine["fsync_p50_us"].as_f64().unwrap_or(0.0) / 1000.0;
    for (phase, latency) in [
        ("CLI: ordo state ORDER (whole process)", &state),
        ("CLI: ordo append (whole process, durable)", &append),
    ] {
        report.rows.push(Row {
            phase,
            metric: "p50 ms",
            ordo: latency.millis(0.5),
            baseline: None,
            target: None,
            detail: json!({
                "runs": latency.len(),
                "p50_ms": latency.millis(0.5),
                "p99_ms": latency.millis(0.99),
                "process_start_p50_ms (ordo --version)": version.millis(0.5),
            }),
        });
    }
    let floor_ms = version.millis(0.5) + raw_open.millis(0.5) + fsync_ms;
    let read_floor_ms = version.millis(0.5) + raw_read.millis(0.5);
    let process_floor_ms = raw_open_process.millis(0.5) + fsync_ms;
    report.rows.push(Row {
        phase: "  raw RocksDB: open + close of the same ledger for writing (in-process)",
        metric: "p50 ms",
        ordo: raw_open.millis(0.5),
        baseline: None,
        target: None,
        detail: json!({
            "runs": raw_open.len(),
            "p99_ms": raw_open.millis(0.99),
            "column_families": names.len(),
            "append_floor_ms": round2(floor_ms),
            "append_floor": "process start p50 + this p50 + one fsync p50: a process that opens RocksDB, syncs one write and closes",
            "as_a_process_p50_ms": raw_open_process.millis(0.5),
            "append_floor_as_a_process_ms": round2(process_floor_ms),
            "append_floor_as_a_process": "a fresh process of the benchmark's binary that opens and closes the ledger so (p50) + one fsync p50",
            "options": "RocksDB's defaults, LZ4, max_file_opening_threads 1, skip_stats_update_on_db_open, max_open_files 20, info log to a callback that drops it and no automatic compactions (as ordo's brief writer)",
        }),
    });
    report.rows.push(Row {
        phase: "  raw RocksDB: read-only open + one order's state + close (in-process)",
        metric: "p50 ms",
        ordo: raw_read.millis(0.5),
        baseline: None,
        target: None,
        detail: json!({
            "runs": raw_read.len(),
            "p99_ms": raw_read.millis(0.99),
            "state_floor_ms": round2(read_floor_ms),
            "state_floor": "process start p50 + this p50: a process that opens RocksDB read-only, reads one key and closes",
            "state_floor_as_a_process_ms": raw_read_process.millis(0.5),
            "state_floor_as_a_process": "a fresh process of the benchmark's binary that opens the ledger read-only, reads one order's state and closes (p50)",
            "options": "as the open for writing above",
        }),
    });
    Ok(())
}

/// `runs` runs of the process `command` makes, each timed whole; fails on a failed run.
fn time_processes(runs: usize, what: &str, command: impl Fn() -> Command) -> Result<Latencies> {
    let mut latencies = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let output = command().output()?;
        latencies.push(started.elapsed());
        if !output.status.success() {
            bail!("{what} failed: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
    Ok(Latencies::new(latencies))
}

/// The argument that makes this binary open a ledger as `raw_cli_open` does and exit.
pub(super) const RAW_OPEN_PROCESS: &str = "--raw-cli-open";

/// RocksDB's own open of a ledger, the floor under a CLI command: for writing (every
/// column family) and closed, or read-only with one point read of an order's state. With
/// RocksDB's default options but for the compression built in and the three that make an
/// open cheaper without changing what it checks: tables opened on one thread (not 16 per
/// column family), no size statistics read from them, and tables opened as reads reach
/// them (as ordo's readers and `ordo append` open them); and, as ordo's brief writers and
/// readers, no info log file (RocksDB formats and writes its options into `LOG` at every
/// open otherwise, and renames the last one aside) and no automatic compactions (with
/// level 0 at its trigger, an open starts one and the close waits for it: a raw open and
/// close took 21 ms on a copy of a benchmark ledger, 13.7 once `ordo append` had
/// compacted level 0 as it closed).
pub(super) fn raw_cli_open(ledger_dir: &Path, write: bool) -> Result<()> {
    let mut options = raw_options();
    options.set_max_file_opening_threads(1);
    options.set_skip_stats_update_on_db_open(true);
    options.set_max_open_files(20);
    options.set_disable_auto_compactions(true);
    options.set_info_logger(rocksdb::InfoLogger::new_callback_logger(
        rocksdb::LogLevel::Warn,
        |_, _| {},
    ));
    let names = DB::list_cf(&options, ledger_dir)?;
    if write {
        drop(DB::open_cf(&options, ledger_dir, &names)?);
        return Ok(());
    }
    let order = OrderId::new("ORD-00000001").map_err(anyhow::Error::msg)?;
    let db = DB::open_cf_for_read_only(&options, ledger_dir, &names, false)?;
    let cf = db
        .cf_handle(ordo::store::CF_ORDER_STATE)
        .context("the order-state column family")?;
    let state = db.get_pinned_cf(cf, order_state_key(&order))?;
    std::hint::black_box(state.map(|bytes| bytes.len()));
    Ok(())
}
