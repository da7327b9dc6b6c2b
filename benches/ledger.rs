//! The macro benchmark: ordo and raw RocksDB doing the same work on the same machine, in
//! one run, with the ratio between them (raw RocksDB is ordo's physical limit).
//!
//! `cargo bench --bench ledger` (1,000,000 events), or with options after `--`:
//! `cargo bench --bench ledger -- --events 100000 --seconds 3 --out results.json`.
//! It prints a table and writes the figures as JSON. Run by `cargo test` (no `--bench`
//! argument), it does a tiny run of a few hundred events so that the code cannot rot; no
//! timing is asserted anywhere.
//!
//! Phases, each on the workload of `ordo generate`:
//! 1. bulk import (durable) vs raw RocksDB writing the same encoded records and index keys
//!    in batches of the same size, fsync'ed;
//! 2. rebuild of all projections vs a raw scan of the same records (three of each, in
//!    turns; medians);
//! 3. time travel: one order's state as of a random time; whole-ledger replays to random
//!    times with and without snapshots (`ledger/time_travel.rs`); then the Merkle tree:
//!    hashing every leaf, building the tree of the imported ledger, inclusion and
//!    consistency proofs and checkpoints at the head (`ledger/proofs.rs`); the relay's
//!    catch-up of a fresh JetStream stream with the whole ledger, against the import's
//!    rate (`ledger/relay.rs`, when `ORDO_NATS_SERVER` names a nats-server);
//! 4. concurrent appends by 1, 8, 64 threads, each waiting for its acknowledgement, vs the
//!    raw single-writer fsync rate (the physical limit is writers x that rate); beside them
//!    RocksDB's own group commit, and the same threads appending to a plain file through one
//!    and two syncing threads (the device's ceiling for any group commit,
//!    `ledger/appends.rs`, `ledger/group_commit.rs`);
//! 5. the CLI as whole processes (`ordo state`, `ordo append`);
//! 6. `ordo serve` (a child process) under 1, 16, 128 HTTP clients appending single
//!    events (keep-alive connections), vs in-process appends by as many threads
//!    (`-- --http-only` runs just this phase, on fresh ledgers);
//!
//! and the peak resident memory of each in-process phase.

use std::fs;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use rocksdb::{ColumnFamilyDescriptor, DB, DBCompressionType, IteratorMode, Options, WriteBatch};
use serde_json::{Value, json};

use ordo::domain::{EventData, EventType, OrderId, Position, Timestamp};
use ordo::format::codec::{decode_event, encode_state};
use ordo::format::keys::{event_id_key, event_key, order_index_key, order_state_key};
use ordo::generate::{GenerateOptions, generate};
use ordo::ledger::{ImportOptions, Ledger, NewEvent, NoProgress, Progress, import};
use ordo::store::Access;

#[path = "ledger/appends.rs"]
mod appends;
#[path = "ledger/cli.rs"]
mod cli;
#[path = "ledger/group_commit.rs"]
mod group_commit;
#[path = "ledger/http.rs"]
mod http;
#[path = "ledger/http_load.rs"]
mod http_load;
#[path = "ledger/proofs.rs"]
mod proofs;
#[path = "ledger/relay.rs"]
mod relay;
#[path = "ledger/time_travel.rs"]
mod time_travel;

// The binary's allocator (src/main.rs), so that in-process figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Events per generated order, measured on `ordo generate` output (used to size it; a little
/// low, so that the workload reaches `--events`).
const EVENTS_PER_ORDER: f64 = 4.54;

#[derive(Parser, Debug)]
#[command(about = "ordo's macro benchmark: ordo vs raw RocksDB, same work, same run")]
struct Args {
    /// Events in the generated workload (about; whole orders are generated).
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seconds each concurrent-append configuration runs.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Writer thread counts for concurrent appends.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    writers: Vec<usize>,
    /// Concurrent HTTP client counts for `ordo serve` appends (vs in-process appends).
    #[arg(long, value_delimiter = ',', default_value = "1,16,128")]
    http_clients: Vec<usize>,
    /// Only the HTTP load phase (on fresh ledgers; no workload import).
    #[arg(long)]
    http_only: bool,
    /// Samples of single-order time travel.
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// Whole-ledger replay targets (random times) besides the one near the end.
    #[arg(long, default_value_t = 3)]
    replays: usize,
    /// Runs of each CLI command. The p50 of 20 moved by a millisecond or two between
    /// back-to-back runs on this VM, as much as the distance to the targets; and the p99 of
    /// 20 is their slowest.
    #[arg(long, default_value_t = 100)]
    cli_runs: usize,
    /// Only import (and its baseline): for the memory check of very large imports.
    #[arg(long)]
    import_only: bool,
    /// Work directory (default: a temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where to write the JSON results.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Args {
    /// The tiny run of `cargo test`: every phase, a few hundred events.
    fn tiny() -> Args {
        Args {
            events: 400,
            seconds: 0.2,
            writers: vec![1, 4],
            http_clients: vec![1, 4],
            http_only: false,
            samples: 20,
            replays: 1,
            cli_runs: 2,
            import_only: false,
            dir: None,
            out: None,
            bench: false,
        }
    }
}

fn main() -> Result<()> {
    // ORDO_LOG=ordo=info shows what the library logs (the relay's retries, for one).
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("ORDO_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    // This binary, started again by `cli`, as the floor under a CLI command.
    let argv: Vec<String> = std::env::args().collect();
    if let [_, flag, access, ledger_dir] = argv.as_slice()
        && flag == cli::RAW_OPEN_PROCESS
    {
        return cli::raw_cli_open(Path::new(ledger_dir), access == "write");
    }
    // This binary, started again by `machine` on one core, prints its thread round trip.
    if let [_, flag] = argv.as_slice()
        && flag == ONE_CORE_ROUND_TRIPS
    {
        println!("{}", thread_round_trips(ROUND_TRIPS).micros(0.50));
        return Ok(());
    }
    // `cargo bench` passes --bench; `cargo test` runs the binary without it (possibly
    // with test-harness arguments, which are not ours): then run the tiny version.
    let args = if std::env::args().any(|a| a == "--bench") {
        Args::parse()
    } else {
        Args::tiny()
    };
    let tmp = tempfile::Builder::new().prefix("ordo-bench-").tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    fs::create_dir_all(&dir)?;
    let mut report = Report::default();
    run(&args, &dir, &mut report)?;
    report.print();
    let out = args.out.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(if args.bench {
            "ordo-bench.json"
        } else {
            "ordo-bench-tiny.json"
        })
    });
    fs::write(&out, serde_json::to_string_pretty(&report.json())?)?;
    println!("\nJSON written to {}", out.display());
    Ok(())
}

fn run(args: &Args, dir: &Path, report: &mut Report) -> Result<()> {
    let started = Instant::now();
    let phase = |name: &str| eprintln!("[{:>6.1} s] {name}", started.elapsed().as_secs_f64());
    phase("machine: cores, memory, fsync latency");
    machine(dir, report)?;
    if args.http_only {
        phase("HTTP appends vs in-process appends");
        return http::http_appends(dir, args, report);
    }
    let workload = dir.join("workload.ndjson");
    phase("generating the workload");
    let events = generate_workload(args, &workload, report)?;
    let ledger_dir = dir.join("ordo");
    let raw_dir = dir.join("raw");
    let ledger = Ledger::open(&ledger_dir, Access::ReadWrite)?;
    phase("bulk import: ordo");
    bulk_import(&ledger, &workload, events, report)?;
    settle(&ledger, dir)?;
    phase("bulk import: raw RocksDB");
    raw_import(&ledger, &raw_dir, report)?;
    fs::remove_file(&workload)?;
    if args.import_only {
        return Ok(());
    }
    settle(&ledger, dir)?;
    phase("rebuild vs raw scan");
    rebuild(&ledger, dir, &raw_dir, report)?;
    phase("time travel");
    time_travel::time_travel(&ledger, args, report)?;
    phase("Merkle tree and proofs");
    proofs::proofs(&ledger, args.samples, report)?;
    phase("relay into NATS JetStream");
    relay::relay(&ledger_dir, dir, ledger.head()?.position.0, report)?;
    settle(&ledger, dir)?;
    phase("concurrent appends");
    appends::appends(&ledger, &raw_dir, args, report)?;
    drop(ledger);
    phase("CLI processes");
    cli::cli(&ledger_dir, args, report)?;
    phase("HTTP appends vs in-process appends");
    http::http_appends(dir, args, report)?;
    let clients = args.http_clients.iter().copied().max().unwrap_or(1).min(64);
    phase("relay and replica lag under HTTP appends");
    relay::lag_under_load(dir, clients, args.seconds, report)?;
    phase("done");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Phases

/// Waits, untimed, until the work the phase before left is done, so that the next timed
/// phase (ordo's or raw RocksDB's) finds the ledger as a command would (the writer before it
/// flushed and compacted as it closed) and has the machine to itself: the ledger's
/// memtables flushed and its compactions done, then the file system's dirty pages written
/// (`syncfs` of `dir`; 274 to 1,181 MiB after the import, the generated workload among
/// them, which the kernel would write back 30 s later in the middle of whatever ran then).
/// Leftovers move a phase: a rebuild started 40 s after the raw import took 1.44 s, one
/// started at once 1.83 s; a rebuild into memtables still holding the previous rebuild's
/// rows took 1.05 to 1.22 s, one into empty memtables 0.82 s (2026-12-03).
fn settle(ledger: &Ledger, dir: &Path) -> Result<()> {
    let started = Instant::now();
    ledger.store().settle()?;
    let compacted = started.elapsed();
    let dirty_kib = field_kib(&fs::read_to_string("/proc/meminfo")?, "Dirty:").unwrap_or(0);
    rustix::fs::syncfs(fs::File::open(dir)?)?;
    eprintln!(
        "         (waited {:.1} s for the ledger's flushes and compactions, {:.1} s for {} MiB of dirty pages)",
        compacted.as_secs_f64(),
        (started.elapsed() - compacted).as_secs_f64(),
        dirty_kib / 1024
    );
    Ok(())
}

fn machine(dir: &Path, report: &mut Report) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib = field_kib(&meminfo, "MemTotal:").unwrap_or(0);
    // The disk's fsync latency as the ledger will see it: 4 KiB appended, then fdatasync.
    let latency = fsync_probe(&dir.join("fsync-probe"), false)?;
    // And when the write lands inside the file: without a journal (this VM's ext4), an
    // fdatasync after an append also writes the inode, for the file's new size.
    let overwrite = fsync_probe(&dir.join("fsync-probe"), true)?;
    let round_trip = thread_round_trips(ROUND_TRIPS);
    let one_core = one_core_round_trip_us();
    report.machine = json!({
        "cores": cores,
        "memory_gib": round2(memory_kib as f64 / 1024.0 / 1024.0),
        "fsync_p50_us": latency.micros(0.50),
        "fsync_p99_us": latency.micros(0.99),
        "fsync_per_second": round2(1e6 / latency.micros(0.50).max(1.0)),
        "fsync_overwrite_p50_us": overwrite.micros(0.50),
        "thread_round_trip_p50_us": round_trip.micros(0.50),
        "thread_round_trip_p99_us": round_trip.micros(0.99),
        "thread_round_trip_one_core_p50_us": one_core,
        "date": ordo_now(),
    });
    Ok(())
}

/// Times 200 writes of 4 KiB, each followed by `fdatasync`, appended to a new file at
/// `path` or (`overwrite`) written over what the file already holds; removes the file.
fn fsync_probe(path: &Path, overwrite: bool) -> Result<Latencies> {
    const WRITES: usize = 200;
    let mut file = fs::File::create(path)?;
    if overwrite {
        file.write_all(&vec![0u8; WRITES * 4096])?;
        file.sync_all()?;
        file.seek(std::io::SeekFrom::Start(0))?;
    }
    let mut latencies = Vec::with_capacity(WRITES);
    for _ in 0..WRITES {
        let started = Instant::now();
        file.write_all(&[7u8; 4096])?;
        file.sync_data()?;
        latencies.push(started.elapsed());
    }
    fs::remove_file(path)?;
    Ok(Latencies::new(latencies))
}

/// Turns taken by `thread_round_trips` for the machine's figures.
const ROUND_TRIPS: usize = 10_000;

/// The flag that makes this binary print its thread round trip's p50 and exit.
const ONE_CORE_ROUND_TRIPS: &str = "--one-core-round-trips";

/// The thread round trip's p50 with both threads on one core (this binary again, under
/// `taskset -c 0`): against the figure across cores, what a wake-up of another core costs
/// here (a virtual machine's idle vCPU halts and is woken through the host). `None` when
/// `taskset` cannot run it.
fn one_core_round_trip_us() -> Option<f64> {
    let this = std::env::current_exe().ok()?;
    let output = std::process::Command::new("taskset")
        .args(["-c", "0"])
        .arg(this)
        .arg(ONE_CORE_ROUND_TRIPS)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// What handing work to another thread and back costs here: two threads take turns on a
/// mutex and condition variable, `n` times; each turn is two wake-ups. Every append crosses
/// threads (caller, stager, syncer, and for HTTP the server's workers), so this is part of
/// every latency below.
fn thread_round_trips(n: usize) -> Latencies {
    let turn = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let other = {
        let turn = turn.clone();
        std::thread::spawn(move || {
            let (lock, ready) = &*turn;
            for _ in 0..n {
                let mut theirs = ready
                    .wait_while(lock.lock().unwrap_or_else(|e| e.into_inner()), |t| !*t)
                    .unwrap_or_else(|e| e.into_inner());
                *theirs = false;
                ready.notify_one();
            }
        })
    };
    let (lock, ready) = &*turn;
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let mut mine = lock.lock().unwrap_or_else(|e| e.into_inner());
        *mine = true;
        ready.notify_one();
        let _back = ready
            .wait_while(mine, |t| *t)
            .unwrap_or_else(|e| e.into_inner());
        latencies.push(started.elapsed());
    }
    let _ = other.join();
    Latencies::new(latencies)
}

fn generate_workload(args: &Args, path: &Path, report: &mut Report) -> Result<u64> {
    let orders = ((args.events as f64 / EVENTS_PER_ORDER).ceil() as u64).max(1);
    let options = GenerateOptions {
        orders,
        seed: 42,
        start: Timestamp::parse("2026-01-01").map_err(anyhow::Error::msg)?,
        days: 180,
    };
    let started = Instant::now();
    let mut out = BufWriter::new(fs::File::create(path)?);
    let events = generate(&options, &mut out)?;
    out.flush()?;
    report.note(format!(
        "workload: `ordo generate --orders {orders} --seed 42`: {events} events, {} MiB of NDJSON, generated in {:.1} s",
        fs::metadata(path)?.len() / (1 << 20),
        started.elapsed().as_secs_f64()
    ));
    report.events = events;
    Ok(events)
}

/// Records when each phase of an import begins.
struct PhaseClock(std::sync::Mutex<Vec<(String, Instant)>>);

impl Progress for PhaseClock {
    fn begin(&self, phase: &str, _total: Option<u64>) {
        if let Ok(mut phases) = self.0.lock() {
            phases.push((phase.to_owned(), Instant::now()));
        }
    }
}

fn bulk_import(ledger: &Ledger, workload: &Path, events: u64, report: &mut Report) -> Result<()> {
    reset_peak_rss();
    let clock = PhaseClock(std::sync::Mutex::new(Vec::new()));
    let before = ledger.writer_stats().unwrap_or_default();
    let started = Instant::now();
    let result = import(ledger, workload, &ImportOptions::default(), &clock)?;
    let elapsed = started.elapsed();
    let after = ledger.writer_stats().unwrap_or_default();
    if result.appended != events {
        bail!("imported {} of {events} events", result.appended);
    }
    let phases = clock.0.into_inner().unwrap_or_default();
    let validated = phases
        .iter()
        .find(|(p, _)| p == "importing")
        .map_or(Duration::ZERO, |(_, at)| at.duration_since(started));
    report.rows.push(Row {
        phase: "bulk import (durable)",
        metric: "events/s",
        ordo: rate(events, elapsed),
        baseline: None,
        target: Some(0.5),
        detail: json!({
            "events": events,
            "seconds": round2(elapsed.as_secs_f64()),
            "validate_pass_seconds": round2(validated.as_secs_f64()),
            "commits": after.commits - before.commits,
            "snapshots": ledger.snapshots()?.len(),
            "disk_bytes": ledger.stats()?.bytes,
            "peak_rss_mib": peak_rss_mib(),
        }),
    });
    Ok(())
}

fn raw_options() -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts
}

const RAW_CFS: [&str; 4] = ["events", "order_index", "event_ids", "order_state"];

fn raw_open(dir: &Path) -> Result<DB> {
    let cfs = RAW_CFS.map(|name| ColumnFamilyDescriptor::new(name, raw_options()));
    Ok(DB::open_cf_descriptors(&raw_options(), dir, cfs)?)
}

fn raw_cf<'a>(db: &'a DB, name: &str) -> Result<&'a rocksdb::ColumnFamily> {
    db.cf_handle(name).context("raw column family")
}

fn sync_write() -> rocksdb::WriteOptions {
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    opts
}

/// Raw RocksDB writes what ordo's import wrote: every stored event record under its
/// position, its order-index and event-id keys, and an order-state record, in batches of
/// the import's size with sync on. Only the `write` calls are timed.
fn raw_import(ledger: &Ledger, raw_dir: &Path, report: &mut Report) -> Result<()> {
    reset_peak_rss();
    let db = raw_open(raw_dir)?;
    let store = ledger.store();
    let head = ledger.head()?.position.0;
    let batch_events = ImportOptions::default().batch_events as u64;
    let (events_cf, index_cf, ids_cf, state_cf) = (
        raw_cf(&db, "events")?,
        raw_cf(&db, "order_index")?,
        raw_cf(&db, "event_ids")?,
        raw_cf(&db, "order_state")?,
    );
    let mut timed = Duration::ZERO;
    let mut bytes = 0u64;
    let mut position = 1;
    while position <= head {
        let mut batch = WriteBatch::default();
        let end = (position + batch_events).min(head + 1);
        for p in position..end {
            let record = store
                .raw_event(Position(p))?
                .context("event below the head")?;
            let event = decode_event(&record).map_err(anyhow::Error::msg)?;
            let state = store
                .order_state(&event.order_id)?
                .context("state of a stored order")?;
            let state = encode_state(&state);
            bytes += (record.len() + state.len() + 16) as u64;
            batch.put_cf(events_cf, event_key(Position(p)), &record);
            batch.put_cf(
                index_cf,
                order_index_key(&event.order_id, event.version),
                p.to_be_bytes(),
            );
            batch.put_cf(ids_cf, event_id_key(&event.event_id), p.to_be_bytes());
            batch.put_cf(state_cf, order_state_key(&event.order_id), state);
        }
        let started = Instant::now();
        db.write_opt(batch, &sync_write())?;
        timed += started.elapsed();
        position = end;
    }
    let row = report
        .rows
        .last_mut()
        .context("the import row comes first")?;
    row.baseline = Some(rate(head, timed));
    row.detail["baseline"] = json!({
        "what": "raw RocksDB: the same event records + order-index, event-id and order-state keys (4 keys/event), same batch size, sync",
        "bytes_per_event": bytes / head.max(1),
        "seconds": round2(timed.as_secs_f64()),
        "peak_rss_mib": peak_rss_mib(),
    });
    // Untimed, as for the ledger (`settle`): the raw scan then reads a database at rest,
    // its memtables flushed.
    let mut rest = rocksdb::WaitForCompactOptions::default();
    rest.set_flush(true);
    db.wait_for_compact(&rest)?;
    Ok(())
}

/// Rebuilds and raw scans, taken in turns; the median of each is reported. One of each
/// moved by 1.7x between runs on this VM (the scan from 0.25 to 0.43 s), more than any
/// change to the rebuild did.
const REBUILD_RUNS: usize = 3;

fn rebuild(ledger: &Ledger, dir: &Path, raw_dir: &Path, report: &mut Report) -> Result<()> {
    reset_peak_rss();
    let db = raw_open(raw_dir)?;
    let (mut rebuilds, mut scans) = (Vec::new(), Vec::new());
    let (mut rebuilt, mut rows, mut bytes) = (None, 0u64, 0u64);
    for _ in 0..REBUILD_RUNS {
        let started = Instant::now();
        (rows, bytes) = (0, 0);
        for item in db.iterator_cf(raw_cf(&db, "events")?, IteratorMode::Start) {
            let (key, value) = item?;
            rows += 1;
            bytes += (key.len() + value.len()) as u64;
        }
        scans.push(started.elapsed());
        let started = Instant::now();
        let report = ledger.rebuild(false, Box::new(NoProgress))?;
        rebuilds.push(started.elapsed());
        if !report.matched {
            bail!("rebuild digest differs from the live projections");
        }
        rebuilt = Some(report);
        // The rebuild's write (about 700,000 rows) is flushed before the next turn, as the
        // close of an `ordo rebuild` would.
        settle(ledger, dir)?;
    }
    let rebuilt = rebuilt.context("the rebuild ran")?;
    let rss = peak_rss_mib();
    let seconds = |times: &[Duration]| -> Vec<f64> {
        times.iter().map(|t| round2(t.as_secs_f64())).collect()
    };
    let (rebuild_times, scan_times) = (seconds(&rebuilds), seconds(&scans));
    rebuilds.sort_unstable();
    scans.sort_unstable();
    let (elapsed, raw_elapsed) = (rebuilds[REBUILD_RUNS / 2], scans[REBUILD_RUNS / 2]);
    report.rows.push(Row {
        phase: "rebuild all projections",
        metric: "events/s",
        ordo: rate(rebuilt.events, elapsed),
        baseline: Some(rate(rows, raw_elapsed)),
        target: Some(0.3),
        detail: json!({
            "events": rebuilt.events,
            "seconds": round2(elapsed.as_secs_f64()),
            "seconds_each_run": rebuild_times,
            "digest_matched": rebuilt.matched,
            "peak_rss_mib": rss,
            "baseline": {
                "what": "raw RocksDB: full scan of the same event records (median of as many, taken in turns with the rebuilds)",
                "rows": rows, "bytes": bytes, "seconds": round2(raw_elapsed.as_secs_f64()),
                "seconds_each_run": scan_times,
            },
        }),
    });
    Ok(())
}

/// An order id that is certainly not in the generated workload.
fn bench_order(writers: usize, thread: usize, n: u64) -> Result<OrderId> {
    OrderId::new(format!("BENCH-{writers}-{thread}-{n}")).map_err(anyhow::Error::msg)
}

fn placed_data() -> Value {
    json!({"customer_id": "CUST-BENCH", "currency": "EUR",
           "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price": 1250}]})
}

fn event(order: OrderId, event_type: &str, data: Value) -> Result<NewEvent> {
    let event_type = EventType::parse(event_type).map_err(anyhow::Error::msg)?;
    let data = EventData::from_json(event_type, data).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(NewEvent::new(order, data))
}

/// Event `n` of writer `thread`: ten events per order, placed then nine notes.
fn bench_event(writers: usize, thread: usize, n: u64) -> Result<NewEvent> {
    let order = bench_order(writers, thread, n / 10)?;
    if n.is_multiple_of(10) {
        event(order, "order_placed", placed_data())
    } else {
        event(order, "note_added", json!({"text": "benchmark note"}))
    }
}

/// Latency samples each load thread or connection has room for before it starts (more
/// grow the vector).
const LATENCIES_PER_WRITER: usize = 16_384;

/// An empty vector for one load thread's or connection's latencies, allocated and touched
/// before the first append: growing it inside the loop faulted in fresh (huge) pages, 8% of
/// the CPU time of 64 writers. (A non-zero value: a zeroed allocation would not touch the
/// pages.)
fn latency_buffer() -> Vec<Duration> {
    let mut latencies = vec![Duration::from_nanos(1); LATENCIES_PER_WRITER];
    latencies.clear();
    latencies
}

/// Runs `writers` threads calling `append(thread, n)` until `deadline`; the latency of each
/// call.
fn load(
    writers: usize,
    deadline: Instant,
    append: impl Fn(usize, u64) -> Result<()> + Sync,
) -> Result<Vec<Duration>> {
    std::thread::scope(|scope| -> Result<Vec<Duration>> {
        let append = &append;
        let handles: Vec<_> = (0..writers)
            .map(|thread| {
                scope.spawn(move || -> Result<Vec<Duration>> {
                    let mut latencies = latency_buffer();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let at = Instant::now();
                        append(thread, n)?;
                        latencies.push(at.elapsed());
                        n += 1;
                    }
                    Ok(latencies)
                })
            })
            .collect();
        let mut all = Vec::new();
        for handle in handles {
            let thread = handle
                .join()
                .map_err(|_| anyhow::anyhow!("writer panicked"))??;
            all.extend(thread);
        }
        Ok(all)
    })
}

/// CPU seconds (user + system) a process has used so far: `pid` or "self", from
/// `/proc/PID/stat` (fields 14 and 15, in clock ticks).
fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = stat
        .rsplit_once(')')
        .with_context(|| format!("/proc/{pid}/stat: {stat:?}"))?
        .1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        let field = fields.get(i).context("/proc/PID/stat is short")?;
        Ok(field.parse::<u64>()? as f64)
    };
    // Fields 14 and 15 of the whole line are 11 and 12 after the name (field 3 is 0).
    Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_second())
}

/// The kernel's clock ticks per second for /proc times (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The whole machine's CPU time since `MachineCpu::start`, from the first line of
/// `/proc/stat`: every process and the kernel's own threads and interrupts (a durable
/// append's fsync costs the journal thread and the block layer CPU that no process is
/// charged for). Time waiting for I/O and time stolen by the hypervisor are not busy.
struct MachineCpu {
    busy_ticks: u64,
    at: Instant,
}

impl MachineCpu {
    fn start() -> Result<MachineCpu> {
        Ok(MachineCpu {
            busy_ticks: machine_busy_ticks()?,
            at: Instant::now(),
        })
    }

    /// Cores kept busy since the start, on average.
    fn cores_busy(&self) -> Result<f64> {
        let ticks = machine_busy_ticks()?.saturating_sub(self.busy_ticks) as f64;
        Ok(ticks / clock_ticks_per_second() / self.at.elapsed().as_secs_f64().max(1e-9))
    }
}

/// user + nice + system + irq + softirq ticks of all CPUs together.
fn machine_busy_ticks() -> Result<u64> {
    let stat = fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("/proc/stat is empty")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let field = |i: usize| {
        fields
            .get(i)
            .copied()
            .context("/proc/stat's cpu line is short")
    };
    Ok(field(0)? + field(1)? + field(2)? + field(5)? + field(6)?)
}

/// CPU time per unit of work in microseconds: `cores` busy for `seconds` over `units`.
fn cpu_us_per(cores: f64, seconds: f64, units: u64) -> f64 {
    round2(cores * seconds * 1e6 / units.max(1) as f64)
}

// ---------------------------------------------------------------------------------------
// Measuring and reporting

struct Latencies(Vec<Duration>);

impl Latencies {
    fn new(mut samples: Vec<Duration>) -> Latencies {
        samples.sort_unstable();
        Latencies(samples)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// The `q` quantile in microseconds (nearest rank); 0 without samples.
    fn micros(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        round2(self.0[rank - 1].as_secs_f64() * 1e6)
    }

    /// The `q` quantile in milliseconds, rounded as the report prints it.
    fn millis(&self, q: f64) -> f64 {
        round2(self.micros(q) / 1000.0)
    }
}

fn rate(units: u64, elapsed: Duration) -> f64 {
    round2(units as f64 / elapsed.as_secs_f64().max(1e-9))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets the kernel's peak-RSS mark of this process (Linux: `clear_refs` 5).
fn reset_peak_rss() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory since the last reset, MiB.
fn peak_rss_mib() -> f64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    round2(field_kib(&status, "VmHWM:").unwrap_or(0) as f64 / 1024.0)
}

fn ordo_now() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// Phase names built at run time live as long as the report (the whole run).
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

struct Row {
    phase: &'static str,
    metric: &'static str,
    ordo: f64,
    baseline: Option<f64>,
    /// The goal for ordo / baseline.
    target: Option<f64>,
    detail: Value,
}

#[derive(Default)]
struct Report {
    machine: Value,
    events: u64,
    notes: Vec<String>,
    rows: Vec<Row>,
}

impl Report {
    fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    fn print(&self) {
        println!("machine: {}", self.machine);
        for note in &self.notes {
            println!("{note}");
        }
        let mut table = comfy_table::Table::new();
        table.set_header(["phase", "metric", "measured", "baseline", "ratio", "target"]);
        for row in &self.rows {
            let ratio = row.baseline.map(|b| round2(row.ordo / b.max(1e-9)));
            table.add_row([
                row.phase.to_owned(),
                row.metric.to_owned(),
                format!("{}", row.ordo),
                row.baseline.map_or(String::new(), |b| format!("{b}")),
                ratio.map_or(String::new(), |r| format!("{r}")),
                row.target.map_or(String::new(), |t| format!(">= {t}")),
            ]);
        }
        println!("{table}");
        for row in &self.rows {
            println!("{}: {}", row.phase, row.detail);
        }
    }

    fn json(&self) -> Value {
        json!({
            "machine": self.machine,
            "events": self.events,
            "notes": self.notes,
            "rows": self.rows.iter().map(|r| json!({
                "phase": r.phase, "metric": r.metric, "ordo": r.ordo,
                "baseline": r.baseline,
                "ratio": r.baseline.map(|b| round2(r.ordo / b.max(1e-9))),
                "target": r.target, "detail": r.detail,
            })).collect::<Vec<_>>(),
        })
    }
}
