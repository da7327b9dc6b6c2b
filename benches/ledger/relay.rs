//! The relay phase (issue 23): catching up a fresh JetStream stream with the whole imported
//! ledger, against the import's own rate in the same run; then a replica catching up from
//! that stream, against `import --preserve` of the same events. It runs when `ORDO_NATS_SERVER`
//! names a `nats-server` binary (scripts/nats-server installs one); the server is started on
//! a free loopback port with its store in the benchmark's directory.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

/// A `nats-server` with JetStream on a free loopback port, its store under `dir/name`.
fn start_nats(binary: &std::ffi::OsStr, dir: &Path, name: &str) -> Result<(Child, String)> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let server = Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join(name))
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
    Ok((server, format!("nats://127.0.0.1:{port}")))
}

pub(super) fn relay(ledger_dir: &Path, dir: &Path, head: u64, report: &mut Report) -> Result<()> {
    let Some(binary) = std::env::var_os("ORDO_NATS_SERVER") else {
        report.note(
            "relay: skipped (ORDO_NATS_SERVER is not set; source scripts/nats-server)".to_owned(),
        );
        return Ok(());
    };
    let (mut server, nats) = start_nats(&binary, dir, "nats")?;
    let stats = Arc::new(RelayStats::default());
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

/// One lag sample: time since the load started, the leader's committed head, the last
/// position the stream acknowledged, the replica's head.
type Sample = (Duration, u64, u64, u64);

/// Relay and replica lag under load: `ordo serve` with a relay inside, a replica following
/// the stream, and `clients` HTTP clients appending for `seconds`. Every 10 ms a sample
/// records the leader's head, the stream's relayed position and the replica's head; the lag
/// of a sample is how long the oldest event not yet relayed (or stored by the replica) has
/// been committed.
pub(super) fn lag_under_load(
    dir: &Path,
    clients: usize,
    seconds: f64,
    report: &mut Report,
) -> Result<()> {
    let Some(binary) = std::env::var_os("ORDO_NATS_SERVER") else {
        return Ok(());
    };
    let (mut nats_server, nats) = start_nats(&binary, dir, "nats-lag")?;
    let relay = Arc::new(RelayStats::default());
    let replica_stats = Arc::new(FollowStats::default());
    let leader = Ledger::open(&dir.join("lag-leader"), Access::ReadWrite)?;
    let replica = Arc::new(Ledger::open(&dir.join("lag-replica"), Access::ReadWrite)?);
    let mut options = ordo::server::ServeOptions::new("127.0.0.1:0".parse()?, None);
    options.beside.relay = Some(relay.clone());
    let runtime = tokio::runtime::Runtime::new()?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let (server, head) = runtime
        .block_on(ordo::server::Server::bind(leader, options))
        .map(|server| {
            let committed = server.ledger().committed();
            (server, committed)
        })?;
    let head = head.context("a writer")?;
    let url = server.url().to_owned();
    // The relay as `ordo serve --relay` runs it: on its own thread. The replica is another
    // process in production: its own thread here.
    let relaying = on_own_thread(ordo::relay::run(
        Source::Serving(server.ledger()),
        RelayOptions {
            nats: nats.clone(),
            stream: "LAG".to_owned(),
            replicas: 1,
        },
        relay.clone(),
        shutdown.clone(),
    ));
    let following = on_own_thread(ordo::relay::follow::run(
        replica.clone(),
        FollowOptions {
            nats,
            stream: "LAG".to_owned(),
        },
        replica_stats.clone(),
        shutdown.clone(),
    ));
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server.run(async move {
        let _ = server_stopped.await;
    }));
    let placed = super::placed_data().to_string();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let (samples, appended) = std::thread::scope(|scope| -> Result<(Vec<Sample>, usize)> {
        let sampler = scope.spawn(|| {
            let mut samples = Vec::new();
            while Instant::now() < deadline + Duration::from_secs(2) {
                samples.push((
                    started.elapsed(),
                    head.borrow().0,
                    relay.relayed.load(Ordering::Relaxed),
                    replica_stats.consumed.load(Ordering::Relaxed),
                ));
                if std::env::var_os("ORDO_BENCH_DEBUG").is_some() && samples.len() % 50 == 0 {
                    eprintln!("lag sample {:?}", samples.last());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            samples
        });
        let latencies = super::http_load::post_load(
            &url,
            "/v1/events",
            clients,
            deadline,
            move |thread, n| {
                Ok(format!(
                    r#"{{"order_id":"LAG-{thread}-{n}","type":"order_placed","data":{placed}}}"#
                ))
            },
        )?;
        let samples = sampler
            .join()
            .map_err(|_| anyhow::anyhow!("sampler panicked"))?;
        Ok((samples, latencies.len()))
    })?;
    let _ = stop.send(true);
    let _ = stop_server.send(());
    let _ = relaying.join();
    let _ = following.join();
    let _ = runtime.block_on(serving);
    let _ = nats_server.kill();
    let _ = nats_server.wait();
    // When each position was first seen committed.
    let committed_at = |position: u64| {
        samples
            .iter()
            .find(|(_, head, _, _)| *head >= position)
            .map(|(at, _, _, _)| *at)
    };
    let lags = |pick: fn(&Sample) -> u64| {
        let lags: Vec<Duration> = samples
            .iter()
            .filter(|(at, _, _, _)| *at <= Duration::from_secs_f64(seconds))
            .map(|sample| {
                let (at, head, ..) = *sample;
                let done = pick(sample);
                if done >= head {
                    return Duration::ZERO;
                }
                committed_at(done + 1).map_or(Duration::ZERO, |c| at.saturating_sub(c))
            })
            .collect();
        super::Latencies::new(lags)
    };
    for (phase, lag) in [
        ("relay lag under HTTP appends", lags(|s| s.2)),
        ("replica lag under HTTP appends", lags(|s| s.3)),
    ] {
        report.rows.push(Row {
            phase,
            metric: "p99 ms",
            ordo: lag.millis(0.99),
            baseline: None,
            target: None,
            detail: json!({"clients": clients, "appended": appended, "samples": lag.len(),
                "p50_ms": lag.millis(0.50),
                "max_ms": lag.millis(1.0),
                "target": "p99 under 1 s"}),
        });
    }
    Ok(())
}

/// Runs `work` on a thread of its own with a single-threaded runtime.
fn on_own_thread(
    work: impl std::future::Future<Output = ordo::Result<()>> + Send + 'static,
) -> std::thread::JoinHandle<ordo::Result<()>> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ordo::Error::Storage(format!("runtime: {e}")))?
            .block_on(work)
    })
}
