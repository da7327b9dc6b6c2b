//! The time-travel phase: one order's state as of random times, and whole-ledger replays
//! to random times with and without snapshots (the summary, and every order), each the
//! median of `REPLAY_RUNS`.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use ordo::domain::{OrderId, Position, Timestamp};
use ordo::ledger::{Filter, Ledger, NoProgress};

use super::{Args, Latencies, Report, Row, peak_rss_mib, reset_peak_rss, round2};

pub(super) fn time_travel(ledger: &Ledger, args: &Args, report: &mut Report) -> Result<()> {
    reset_peak_rss();
    let store = ledger.store();
    let head = ledger.head()?;
    let last = head.recorded_at.context("recorded head")?;
    let orders = head.orders;
    let mut rng = ChaCha8Rng::seed_from_u64(7);

    // One order as of a random time after it was placed.
    let mut latencies = Vec::with_capacity(args.samples);
    for _ in 0..args.samples {
        let order = OrderId::new(format!("ORD-{:08}", rng.random_range(1..=orders)))
            .map_err(anyhow::Error::msg)?;
        let placed = match ledger.history(&order, &Filter::default()) {
            Ok(events) => events[0].recorded_at,
            Err(_) => continue,
        };
        let at = rng.random_range(placed.micros()..=last.micros());
        let filter = Filter {
            as_of: Timestamp::from_micros(at),
            ..Filter::default()
        };
        let started = Instant::now();
        let state = ledger.state(&order, &filter)?;
        latencies.push(started.elapsed());
        std::hint::black_box(state);
    }
    let single = Latencies::new(latencies);
    report.rows.push(Row {
        phase: "one order as of a random time",
        metric: "p50 µs",
        ordo: single.micros(0.50),
        baseline: None,
        target: None,
        detail: json!({
            "samples": single.len(),
            "p50_us": single.micros(0.50), "p99_us": single.micros(0.99),
            "max_us": single.micros(1.0),
        }),
    });

    // Whole-ledger replays: one target near the end; the worst case for snapshots (just
    // before the newest one, so the tail is a whole interval); then random ones.
    let mut targets = vec![(
        Position(head.position.0.saturating_sub(100).max(1)),
        "near the end",
    )];
    if let Some(newest) = ledger.snapshots()?.iter().map(|s| s.position).max()
        && newest.0 > 1
    {
        targets.push((Position(newest.0 - 1), "just before the newest snapshot"));
    }
    for _ in 0..args.replays {
        targets.push((Position(rng.random_range(1..=head.position.0)), "random"));
    }
    let mut runs = Vec::new();
    for (i, (target, kind)) in targets.iter().enumerate() {
        let as_of = store.event(*target)?.context("target event")?.recorded_at;
        let filter = Filter {
            as_of: Some(as_of),
            ..Filter::default()
        };
        let (summary, summary_ms) = median_ms(
            || ordo::replay::summarize(store, &filter, true, &NoProgress),
            |s| s.elapsed_ms,
        )?;
        let (with, with_ms) = median_ms(
            || ordo::replay::replay(store, &filter, true, &NoProgress),
            |r| r.elapsed_ms,
        )?;
        let (without, without_ms) = median_ms(
            || ordo::replay::replay(store, &filter, false, &NoProgress),
            |r| r.elapsed_ms,
        )?;
        if summary.totals != without.book.totals {
            bail!("the replay summary to {target} differs from a full replay");
        }
        if with.head_hash != without.head_hash
            || ordo::projection::digest(&with.book) != ordo::projection::digest(&without.book)
        {
            bail!("replay to {target} with a snapshot differs from a full replay");
        }
        let summary_speedup = round2(without_ms as f64 / summary_ms.max(1) as f64);
        let speedup = round2(without_ms as f64 / with_ms.max(1) as f64);
        runs.push(json!({
            "as_of": as_of.to_string(), "position": with.position,
            "target": kind,
            "summary_with_snapshots_ms": summary_ms,
            "summary_speedup": summary_speedup,
            "with_snapshots_ms": with_ms,
            "snapshot_position": with.snapshot.as_ref().map(|s| s.position),
            "tail_events": with.events_applied,
            "without_snapshots_ms": without_ms,
            "speedup": speedup,
        }));
        if i == 0 {
            report.rows.push(Row {
                phase: "replay near the end, every order: with vs without snapshots",
                metric: "speedup x",
                ordo: speedup,
                baseline: None,
                target: None,
                detail: json!({}),
            });
            report.rows.push(Row {
                phase: "replay near the end, summary: with vs without snapshots",
                metric: "speedup x",
                ordo: summary_speedup,
                baseline: None,
                target: Some(10.0),
                detail: json!({}),
            });
        }
    }
    let snapshot_every = ledger.settings()?.snapshot_every_events;
    if let Some(row) = report.rows.last_mut() {
        row.detail = json!({
            "snapshot_every_events": snapshot_every,
            "runs_each_median_ms": REPLAY_RUNS,
            "replays": runs,
            "peak_rss_mib": peak_rss_mib(),
        });
    }
    Ok(())
}

/// Times each replay is run; the median is reported (a single run of a 0.1 s replay moves
/// by tens of milliseconds on a shared VM, with compaction running after the import).
const REPLAY_RUNS: usize = 3;

/// Runs `run` `REPLAY_RUNS` times; returns the last result and the median of `ms` over
/// the runs.
fn median_ms<T>(
    mut run: impl FnMut() -> ordo::Result<T>,
    ms: impl Fn(&T) -> u64,
) -> ordo::Result<(T, u64)> {
    let mut times = Vec::with_capacity(REPLAY_RUNS);
    let mut last = run()?;
    times.push(ms(&last));
    for _ in 1..REPLAY_RUNS {
        last = run()?;
        times.push(ms(&last));
    }
    times.sort_unstable();
    Ok((last, times[times.len() / 2]))
}
