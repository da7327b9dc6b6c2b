//! The relay phase (issue 23): catching up a fresh JetStream stream with the whole imported
//! ledger, against the import's own rate in the same run. It runs when `ORDO_NATS_SERVER`
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

use ordo::relay::{RelayOptions, RelayStats, Source};

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
    let options = RelayOptions {
        nats: format!("nats://127.0.0.1:{port}"),
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
    let _ = server.kill();
    let _ = server.wait();
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
