//! The relay phase (issue 23): catching up a fresh JetStream stream with the whole imported
//! ledger, against the import's own rate in the same run; then a replica catching up from
//! that stream, against `import --preserve` of the same events. It runs when `ORDO_NATS_SERVER`
//! names a `nats-server` binary (scripts/nats-server installs one); the server is started on
//! a free loopback port with its store in the benchmark's directory.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use ordo::domain::Position;
use ordo::ledger::{ImportOptions, Ledger, NoProgress};
use ordo::relay::follow::{FollowOptions, FollowStats};
use ordo::relay::{RelayOptions, RelayStats, Source};
use ordo::store::Access;

use super::{Report, Row, rate};

pub(super) fn relay(ledger_dir: &Path, dir: &Path, head: u64, report: &mut Report) -> Result<()> {
    let Some(binary) = std::env::var_os("ORDO_NATS_SERVER") else {
        report.note(
            "relay: skipped (ORDO_NATS_SERVER is not set; source scripts/nats-server)".to_owned(),
        );
        return Ok(());
    };
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let store = dir.join("nats");
    let mut server = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("nats-server starts")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nats-server did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = Arc::new(RelayStats::default());
    let nats = format!("nats://127.0.0.1:{port}");
    let options = RelayOptions {
        nats: nats.clone(),
        stream: "BENCH".to_owned(),
        replicas: 1,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let relaying = runtime.spawn(ordo::relay::run(
        Source::Directory(ledger_dir.to_owned()),
        options,
        stats.clone(),
        shutdown,
    ));
    while stats.relayed.load(Ordering::Relaxed) < head {
        if relaying.is_finished() {
            bail!(
                "the relay stopped at {}",
                stats.relayed.load(Ordering::Relaxed)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    runtime.block_on(relaying)??;
    let replica = replica_catch_up(ledger_dir, dir, head, &nats, &runtime);
    let _ = server.kill();
    let _ = server.wait();
    let (preserved, followed) = replica?;
    report.rows.push(Row {
        phase: "replica catch-up from JetStream (vs import --preserve)",
        metric: "events/s",
        ordo: rate(head, followed),
        baseline: Some(rate(head, preserved)),
        target: Some(0.5),
        detail: json!({"events": head, "seconds": followed.as_secs_f64(),
            "baseline": "ordo import --preserve of the ledger's export into a fresh ledger, same run",
            "baseline_seconds": preserved.as_secs_f64()}),
    });
    let import = report
        .rows
        .iter()
        .find(|r| r.phase == "bulk import (durable)")
        .map(|r| r.ordo);
    report.rows.push(Row {
        phase: "relay catch-up into JetStream (vs import)",
        metric: "events/s",
        ordo: rate(head, elapsed),
        baseline: import,
        target: Some(0.5),
        detail: json!({"events": head, "seconds": elapsed.as_secs_f64(),
            "baseline": "ordo import's events/s in this run", "nats_server": "2.15.1, one node, file storage"}),
    });
    Ok(())
}

/// The seconds of `import --preserve` of the ledger's export into a fresh ledger, and of a
/// replica following the stream from empty into another: the same events stored the same
/// way, from a file and from JetStream.
fn replica_catch_up(
    ledger_dir: &Path,
    dir: &Path,
    head: u64,
    nats: &str,
    runtime: &tokio::runtime::Runtime,
) -> Result<(Duration, Duration)> {
    let export = dir.join("export.ndjson");
    {
        let leader = Ledger::open(ledger_dir, Access::ReadOnly)?;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&export)?);
        ordo::ledger::export(&leader, Position(1), None, None, &mut out)?;
    }
    let preserved = {
        let copy = Ledger::open(&dir.join("preserved"), Access::ReadWrite)?;
        let options = ImportOptions {
            preserve: true,
            ..ImportOptions::default()
        };
        let started = Instant::now();
        ordo::ledger::import(&copy, &export, &options, &NoProgress)?;
        started.elapsed()
    };
    std::fs::remove_file(&export)?;
    let replica = Arc::new(Ledger::open(&dir.join("replica"), Access::ReadWrite)?);
    let stats = Arc::new(FollowStats::default());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let options = FollowOptions {
        nats: nats.to_owned(),
        stream: "BENCH".to_owned(),
    };
    let started = Instant::now();
    let following = runtime.spawn(ordo::relay::follow::run(
        replica.clone(),
        options,
        stats.clone(),
        shutdown,
    ));
    while stats.consumed.load(Ordering::Relaxed) < head {
        if following.is_finished() {
            bail!(
                "the replica stopped at {}",
                stats.consumed.load(Ordering::Relaxed)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let followed = started.elapsed();
    let _ = stop.send(true);
    runtime.block_on(following)??;
    Ok((preserved, followed))
}
