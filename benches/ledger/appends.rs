//! The concurrent-appends phase (issue 25, item 1): 1, 8 and 64 closed-loop writers, each
//! waiting for its durable acknowledgement, against raw RocksDB's single-writer fsync rate
//! (the physical limit is writers x that rate) and its own group commit with as many
//! threads; beside them the device's own group commit on a plain file (`group_commit.rs`)
//! and one thread appending batches (ordo's own CPU per event, with one wake-up per batch).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use rocksdb::WriteBatch;
use serde_json::json;

use ordo::ledger::Ledger;

use super::{
    Args, Latencies, MachineCpu, Report, Row, bench_event, cpu_seconds, cpu_us_per, group_commit,
    leak, load, peak_rss_mib, rate, raw_cf, raw_open, reset_peak_rss, round2, sync_write,
};

/// Bytes of keys and values in raw RocksDB's write per event (`appends`): a 256-byte record
/// and three 32-byte index values, each under an 8-byte key.
const RAW_WRITE_BYTES: usize = 8 + 256 + 3 * (8 + 32);

pub(super) fn appends(
    ledger: &Ledger,
    raw_dir: &Path,
    args: &Args,
    report: &mut Report,
) -> Result<()> {
    let db = raw_open(raw_dir)?;
    let cfs = ["events", "order_index", "event_ids", "order_state"]
        .map(|name| raw_cf(&db, name))
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    // What raw RocksDB does per acknowledged event: one sync write of an event-sized record
    // and its three index keys (`key` distinct per write): `RAW_WRITE_BYTES` of keys and values.
    let raw_append = |key: u64| -> Result<()> {
        let mut batch = WriteBatch::default();
        let key = key.to_be_bytes();
        batch.put_cf(cfs[0], key, [1u8; 256]);
        for &index in &cfs[1..] {
            batch.put_cf(index, key, [2u8; 32]);
        }
        db.write_opt(batch, &sync_write())?;
        Ok(())
    };
    // The physical limit: one thread of those writes; W writers can at best each have
    // theirs in every fsync.
    let raw_rate = {
        let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
        let started = Instant::now();
        let mut writes = 0u64;
        while Instant::now() < deadline {
            raw_append(u64::MAX - writes)?;
            writes += 1;
        }
        writes as f64 / started.elapsed().as_secs_f64()
    };
    let ledger = Arc::new(ledger);
    for &writers in &args.writers {
        reset_peak_rss();
        let before = ledger.writer_stats().unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
        let cpu = cpu_seconds("self")?;
        let machine = MachineCpu::start()?;
        let started = Instant::now();
        let latencies = load(writers, deadline, |thread, n| {
            // Ten events per order: placed, then nine notes.
            ledger.append(bench_event(writers, thread, n)?)?;
            Ok(())
        })?;
        let elapsed = started.elapsed();
        let cores_busy = round2((cpu_seconds("self")? - cpu) / elapsed.as_secs_f64());
        let machine_busy = machine.cores_busy()?;
        let after = ledger.writer_stats().unwrap_or_default();
        let rss = peak_rss_mib();
        // RocksDB's own group commit under the same load: W threads each making the raw
        // write above and waiting for it (what the engine reaches without ordo on top).
        let raw_deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
        let raw_machine = MachineCpu::start()?;
        let raw_started = Instant::now();
        let raw = Latencies::new(load(writers, raw_deadline, |thread, n| {
            raw_append((u64::MAX >> 1) - ((thread as u64) << 32) - n)
        })?);
        let raw_elapsed = raw_started.elapsed();
        let raw_machine_busy = raw_machine.cores_busy()?;
        let raw_concurrent_rate = rate(raw.len() as u64, raw_elapsed);
        let latency = Latencies::new(latencies);
        let events = latency.len() as u64;
        let commits = (after.commits - before.commits).max(1);
        let fsync_us = 1e6 / raw_rate;
        let ordo_rate = rate(events, elapsed);
        report.rows.push(Row {
            phase: leak(format!("concurrent appends, {writers} writers (durable)")),
            metric: "events/s",
            ordo: ordo_rate,
            baseline: Some(round2(raw_rate * writers as f64)),
            // Issue 25's goal for 8 writers; 64 writers have theirs against RocksDB's own
            // group commit (the row after the probes).
            target: (writers == 8).then_some(0.6),
            detail: json!({
                "events": events,
                "p50_us": latency.micros(0.50), "p99_us": latency.micros(0.99),
                "max_us": latency.micros(1.0),
                "p99_in_fsyncs": round2(latency.micros(0.99) / fsync_us),
                "commits": commits,
                "syncs": after.syncs - before.syncs,
                "events_per_commit": round2(events as f64 / commits as f64),
                "cores_busy": cores_busy,
                "machine_cores_busy": round2(machine_busy),
                "machine_cpu_us_per_event": cpu_us_per(machine_busy, elapsed.as_secs_f64(), events),
                "peak_rss_mib": rss,
                "baseline": {
                    "what": "writers x the rate of raw RocksDB single-thread sync writes (record + 3 index keys)",
                    "raw_sync_writes_per_second": round2(raw_rate),
                },
                "ratio_to_raw_rocksdb_same_writers": round2(ordo_rate / raw_concurrent_rate.max(1e-9)),
            }),
        });
        report.rows.push(Row {
            phase: leak(format!(
                "  raw RocksDB, {writers} threads of sync writes (same limit)"
            )),
            metric: "writes/s",
            ordo: raw_concurrent_rate,
            baseline: Some(round2(raw_rate * writers as f64)),
            target: None,
            detail: json!({
                "writes": raw.len(),
                "p50_us": raw.micros(0.50), "p99_us": raw.micros(0.99),
                "max_us": raw.micros(1.0),
                "p99_in_fsyncs": round2(raw.micros(0.99) / fsync_us),
                "machine_cores_busy": round2(raw_machine_busy),
                "machine_cpu_us_per_write": cpu_us_per(raw_machine_busy, raw_elapsed.as_secs_f64(), raw.len() as u64),
                "what": "RocksDB's own group commit under ordo's load: each thread makes the raw write of the limit above and waits for it",
            }),
        });
        // The device's ceiling for any group commit: the same writers on a plain file.
        let mut device_us_per_write = f64::INFINITY;
        for (syncers, what) in [(1, "one sync in flight"), (2, "two syncs in flight")] {
            let probe = group_commit::group_commit(
                raw_dir,
                writers,
                syncers,
                RAW_WRITE_BYTES,
                args.seconds,
            )?;
            device_us_per_write = device_us_per_write.min(probe.machine_cpu_us_per_write);
            report.rows.push(Row {
                phase: leak(format!("  raw file, {writers} threads, group commit, {what}")),
                metric: "writes/s",
                ordo: probe.rate,
                baseline: Some(round2(raw_rate * writers as f64)),
                target: None,
                detail: json!({
                    "writes": probe.latencies.len(),
                    "syncs": probe.syncs,
                    "writes_per_sync": round2(probe.latencies.len() as f64 / probe.syncs.max(1) as f64),
                    "p50_us": probe.latencies.micros(0.50), "p99_us": probe.latencies.micros(0.99),
                    "max_us": probe.latencies.micros(1.0),
                    "p99_in_fsyncs": round2(probe.latencies.micros(0.99) / fsync_us),
                    "cores_busy": probe.cores_busy,
                    "machine_cores_busy": probe.machine_cores_busy,
                    "machine_cpu_us_per_write": probe.machine_cpu_us_per_write,
                    "what": format!("the device's ceiling for group commit: closed-loop threads appending {RAW_WRITE_BYTES}-byte records to a plain file through {syncers} syncing thread(s) (write + fdatasync of all waiting)"),
                }),
            });
        }
        // What ordo's own work costs per event when no event waits alone: one thread
        // appending requests of `BATCH_FOR_WORK_EVENTS` (one wake-up and about one fsync per
        // request instead of per event).
        let (batch_rate, batch_us_per_event) = batched_appends(&ledger, writers, args.seconds)?;
        report.rows.push(Row {
            phase: leak(format!(
                "  ordo, 1 thread of {BATCH_FOR_WORK_EVENTS}-event requests (after {writers} writers)"
            )),
            metric: "events/s",
            ordo: batch_rate,
            baseline: None,
            target: None,
            detail: json!({
                "machine_cpu_us_per_event": batch_us_per_event,
                "what": "ordo's own work per event (rules, hashing, encoding, RocksDB's writes, flushes, compactions, snapshots) with one wake-up per request, not per event",
            }),
        });
        // Issue 25's goal for many writers: 3x RocksDB's own group commit. At that rate the
        // machine has `cores / rate` of CPU per event, all processes and the kernel
        // together; the plain file's probe shows what a wake-up and a share of an fsync
        // cost alone, with no database, no rules and no encoding.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let goal = 3.0;
        report.rows.push(Row {
            phase: leak(format!("  ordo vs RocksDB's own group commit, {writers} writers")),
            metric: "events/s",
            ordo: ordo_rate,
            baseline: Some(round2(raw_concurrent_rate)),
            target: (writers >= 64).then_some(goal),
            detail: json!({
                "machine_cpu_us_per_event_at_goal": round2(cores * 1e6 / (goal * raw_concurrent_rate).max(1e-9)),
                "ordo_machine_cpu_us_per_event": cpu_us_per(machine_busy, elapsed.as_secs_f64(), events),
                "plain_file_machine_cpu_us_per_write": round2(device_us_per_write),
                "ordo_batched_machine_cpu_us_per_event": batch_us_per_event,
                "what": "the CPU each event may cost the whole machine at 3x RocksDB's own group commit (cores / rate), against what ordo's, a plain file's and ordo's batched appends cost in this run",
            }),
        });
    }
    Ok(())
}

/// Events per request of `batched_appends`.
const BATCH_FOR_WORK_EVENTS: usize = 64;

/// One thread appending requests of `BATCH_FOR_WORK_EVENTS` events for `seconds` (orders
/// of their own, after the `writers` run): events/s, and the whole machine's CPU per event
/// in microseconds.
fn batched_appends(ledger: &Ledger, writers: usize, seconds: f64) -> Result<(f64, f64)> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let machine = MachineCpu::start()?;
    let started = Instant::now();
    let mut events = 0u64;
    while Instant::now() < deadline {
        let batch = (0..BATCH_FOR_WORK_EVENTS as u64)
            .map(|i| Ok((i + 1, bench_event(writers, writers, events + i)?)))
            .collect::<Result<Vec<_>>>()?;
        ledger.append_batch(batch)?;
        events += BATCH_FOR_WORK_EVENTS as u64;
    }
    let elapsed = started.elapsed();
    let busy = machine.cores_busy()?;
    Ok((
        rate(events, elapsed),
        cpu_us_per(busy, elapsed.as_secs_f64(), events),
    ))
}
