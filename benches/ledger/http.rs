//! The HTTP phase (issue 25, item 2): `ordo serve` as a child process under the load
//! generator's clients (`http_load`), against in-process appends by as many threads and
//! against the loopback floors (answering at once, and once durable in a plain file).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;

use ordo::ledger::Ledger;
use ordo::store::Access;

use super::http_load;
use super::{
    Args, Latencies, MachineCpu, Report, Row, bench_event, bench_order, cpu_seconds, cpu_us_per,
    leak, load, placed_data, rate, round2,
};

/// `ordo serve` (a child process) under concurrent HTTP clients appending single events
/// (each client its own keep-alive connection), against in-process appends by as many
/// threads, each on a fresh ledger, for `--seconds` each.
pub(super) fn http_appends(dir: &Path, args: &Args, report: &mut Report) -> Result<()> {
    for &clients in &args.http_clients {
        let deadline = || Instant::now() + Duration::from_secs_f64(args.seconds);
        let local = {
            let ledger = Ledger::open(&dir.join(format!("inproc-{clients}")), Access::ReadWrite)?;
            let cpu = cpu_seconds("self")?;
            let machine = MachineCpu::start()?;
            let started = Instant::now();
            let latencies = load(clients, deadline(), |thread, n| {
                ledger.append(bench_event(clients, thread, n)?)?;
                Ok(())
            })?;
            let elapsed = started.elapsed();
            (
                Latencies::new(latencies),
                elapsed,
                cpu_seconds("self")? - cpu,
                machine.cores_busy()?,
            )
        };
        let server = ServeProcess::start(&dir.join(format!("http-{clients}")))?;
        let server_pid = server.child.id().to_string();
        let url = server.url.clone();
        let (server_cpu, clients_cpu) = (cpu_seconds(&server_pid)?, cpu_seconds("self")?);
        let machine = MachineCpu::start()?;
        let started = Instant::now();
        let latencies =
            http_load::post_load(&url, "/v1/events", clients, deadline(), http_body(clients))?;
        let elapsed = started.elapsed();
        let machine_busy = machine.cores_busy()?;
        let server_cpu = cpu_seconds(&server_pid)? - server_cpu;
        let clients_cpu = cpu_seconds("self")? - clients_cpu;
        let writer = writer_counters(&url)?;
        server.stop()?;
        // The same clients against a server that does nothing but answer: what loopback
        // TCP and an HTTP exchange cost this machine per request, without a ledger.
        let (floor, floor_elapsed, floor_busy, _) = floor_load(None, clients, deadline())?;
        // And against a server that answers each request only once its body is durable in
        // a plain file (one syncing thread, group commit): what any durable HTTP server
        // can reach on this machine and device, with nothing of a ledger.
        let log = dir.join(format!("http-floor-{clients}.log"));
        let durable = floor_load(Some(&log), clients, deadline())?;
        std::fs::remove_file(&log)?;
        let http = Latencies::new(latencies);
        let (local, local_elapsed, local_cpu, local_machine_busy) = local;
        let per_event_us = |cpu: f64, events: usize| round2(cpu * 1e6 / events.max(1) as f64);
        let server_us = per_event_us(server_cpu, http.len());
        let local_us = per_event_us(local_cpu, local.len());
        report.rows.push(Row {
            phase: leak(format!("HTTP appends, {clients} clients (durable)")),
            metric: "events/s",
            ordo: rate(http.len() as u64, elapsed),
            baseline: Some(rate(local.len() as u64, local_elapsed)),
            target: None,
            detail: json!({
                "events": http.len(),
                "p50_us": http.micros(0.50), "p99_us": http.micros(0.99),
                "max_us": http.micros(1.0),
                "server_cpu_us_per_event": server_us,
                "clients_cpu_us_per_event": per_event_us(clients_cpu, http.len()),
                // Whether the two cores were the limit: server, clients, the kernel's own
                // work (loopback TCP, the journal) and everything else on the machine.
                "machine_cores_busy": round2(machine_busy),
                // How well the server's writer combined the requests (the CPU per event
                // falls as its groups grow).
                "writer": writer,
                "baseline": {
                    "what": "in-process Ledger::append by as many threads, fresh ledger",
                    "events": local.len(),
                    "p50_us": local.micros(0.50), "p99_us": local.micros(0.99),
                    "cpu_us_per_event": local_us,
                    "machine_cores_busy": round2(local_machine_busy),
                },
            }),
        });
        // The clients share the machine's cores with the server: the events/s above
        // count their CPU against the server. The CPU each process spent per event
        // separates them.
        report.rows.push(Row {
            phase: leak(format!("  HTTP server CPU per event, {clients} clients")),
            metric: "µs",
            ordo: server_us,
            baseline: Some(local_us),
            target: None,
            detail: json!({
                "what": "CPU time (user + system, /proc) of the ordo serve process per event appended, against the in-process appender's (all its threads) per event; ratio = in-process / server",
                "ratio_server_efficiency": round2(local_us / server_us.max(1e-9)),
            }),
        });
        // What the machine can do at most: each HTTP append costs at least what the floor
        // spends on a request plus what an in-process append costs, both in the whole
        // machine's CPU; with every core busy, that bounds the events/s.
        let floor_us = cpu_us_per(floor_busy, floor_elapsed.as_secs_f64(), floor.len() as u64);
        let local_machine_us = cpu_us_per(
            local_machine_busy,
            local_elapsed.as_secs_f64(),
            local.len() as u64,
        );
        let cores = report.machine["cores"].as_f64().unwrap_or(1.0);
        let local_rate = rate(local.len() as u64, local_elapsed);
        let ceiling = (cores * 1e6 / (floor_us + local_machine_us).max(1e-9))
            .min(rate(floor.len() as u64, floor_elapsed));
        // The same bound with only as many cores busy as the machine was during ordo's HTTP
        // appends: a closed loop that waits for fsyncs leaves cores idle (the durable floor
        // below, a server that does nothing else, keeps about as many busy).
        let ceiling_at_busy = machine_busy * 1e6 / (floor_us + local_machine_us).max(1e-9);
        // And with as many cores busy as during the in-process appends: then the ratio is
        // what an in-process append costs the machine over that plus the floor's request.
        let ceiling_at_in_process_busy = local_machine_us / (floor_us + local_machine_us).max(1e-9);
        report.rows.push(Row {
            phase: leak(format!(
                "  loopback HTTP floor, {clients} clients (answers 201, no ledger)"
            )),
            metric: "requests/s",
            ordo: rate(floor.len() as u64, floor_elapsed),
            baseline: None,
            target: None,
            detail: json!({
                "what": "the same clients against a server (tokio, one worker per core) that reads each request and answers a fixed 201 of the size of ordo's, nothing else",
                "p50_us": floor.micros(0.50), "p99_us": floor.micros(0.99),
                "machine_cores_busy": round2(floor_busy),
                "machine_cpu_us_per_request": floor_us,
                "in_process_machine_cpu_us_per_event": local_machine_us,
                "http_ceiling_events_per_s": round2(ceiling),
                "http_ceiling_ratio": round2(ceiling / local_rate.max(1e-9)),
                "http_ceiling": "min(the floor's requests/s, cores / (the floor's machine CPU per request + an in-process append's)) / in-process events/s",
                "http_ceiling_at_cores_busy_ratio": round2(ceiling_at_busy / local_rate.max(1e-9)),
                "http_ceiling_at_cores_busy": "the cores the machine kept busy during ordo's HTTP appends / (the floor's machine CPU per request + an in-process append's) / in-process events/s",
                "http_ceiling_at_in_process_cores_busy_ratio": round2(ceiling_at_in_process_busy),
                "http_ceiling_at_in_process_cores_busy": "an in-process append's machine CPU / (the floor's machine CPU per request + an in-process append's): the ratio if HTTP appends kept the cores as busy as in-process appends do",
            }),
        });
        let (durable, durable_elapsed, durable_busy, durable_syncs) = durable;
        let durable_rate = rate(durable.len() as u64, durable_elapsed);
        report.rows.push(Row {
            phase: leak(format!(
                "  durable HTTP floor, {clients} clients (201 once fdatasynced, no ledger)"
            )),
            metric: "requests/s",
            ordo: durable_rate,
            baseline: Some(local_rate),
            target: None,
            detail: json!({
                "what": "the same clients against the loopback floor's server that appends each request's body to a plain file and answers it once an fdatasync covers it (one syncing thread takes every body waiting: group commit), nothing else; baseline = in-process Ledger::append by as many threads",
                "p50_us": durable.micros(0.50), "p99_us": durable.micros(0.99),
                "syncs": durable_syncs,
                "requests_per_sync": round2(durable.len() as f64 / durable_syncs.max(1) as f64),
                "machine_cores_busy": round2(durable_busy),
                "machine_cpu_us_per_request": cpu_us_per(
                    durable_busy,
                    durable_elapsed.as_secs_f64(),
                    durable.len() as u64,
                ),
                "ratio_to_in_process": round2(durable_rate / local_rate.max(1e-9)),
                "ordo_http_of_durable_floor": round2(
                    rate(http.len() as u64, elapsed) / durable_rate.max(1e-9)
                ),
            }),
        });
    }
    Ok(())
}

/// The load generator's `clients` against a `FloorServer` (durable in `log` when given)
/// until `deadline`: the latencies, the time taken, the cores the machine kept busy, and
/// the server's fdatasync calls.
fn floor_load(
    log: Option<&Path>,
    clients: usize,
    deadline: Instant,
) -> Result<(Latencies, Duration, f64, u64)> {
    let server = http_load::FloorServer::start(log)?;
    let machine = MachineCpu::start()?;
    let started = Instant::now();
    let latencies = http_load::post_load(
        &server.url,
        "/v1/events",
        clients,
        deadline,
        http_body(clients),
    )?;
    let elapsed = started.elapsed();
    let syncs = server.stop()?;
    Ok((
        Latencies::new(latencies),
        elapsed,
        machine.cores_busy()?,
        syncs,
    ))
}

/// The server's writer counters (`/metrics`): commits, syncs and events, and the events
/// each commit and each sync carried.
fn writer_counters(url: &str) -> Result<serde_json::Value> {
    let metrics = http_load::get(url, "/metrics")?;
    let counter = |name: &str| -> Result<f64> {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .with_context(|| format!("no {name} in /metrics"))
    };
    let commits = counter("ordo_commits_total")?;
    let syncs = counter("ordo_wal_syncs_total")?;
    let events = counter("ordo_committed_events_total")?;
    Ok(json!({
        "commits": commits, "syncs": syncs, "events": events,
        "events_per_commit": round2(events / commits.max(1.0)),
        "events_per_sync": round2(events / syncs.max(1.0)),
    }))
}

/// The body client `thread` of `clients` posts as its `n`th append: ten events per order,
/// placed then nine notes, as `bench_event`.
pub(super) fn http_body(clients: usize) -> impl Fn(usize, u64) -> Result<String> + 'static {
    let placed = placed_data().to_string();
    move |thread, n| {
        let order = bench_order(clients, thread, n / 10)?;
        Ok(if n.is_multiple_of(10) {
            format!(r#"{{"order_id":"{order}","type":"order_placed","data":{placed}}}"#)
        } else {
            format!(
                r#"{{"order_id":"{order}","type":"note_added","data":{{"text":"benchmark note"}}}}"#
            )
        })
    }
}

/// `ordo serve` (the release binary) as a child process on a free loopback port: the
/// clients' threads then run in another process than the server, as they would in use,
/// and the server's figures are its own (both still share the machine's cores).
struct ServeProcess {
    child: std::process::Child,
    url: String,
}

impl ServeProcess {
    fn start(ledger_dir: &Path) -> Result<ServeProcess> {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .env_remove("ORDO_SERVER")
            .env_remove("ORDO_TOKEN_FILE")
            .arg("--data-dir")
            .arg(ledger_dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("the server's stderr")?;
        let mut lines = std::io::BufReader::new(stderr).lines();
        let first = lines.next().context("ordo serve printed nothing")??;
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .with_context(|| format!("no URL in {first:?}"))?
            .to_owned();
        // Drained so that the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(ServeProcess { child, url })
    }

    /// SIGTERM, and a clean exit within 60 s.
    fn stop(mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        if !Command::new("kill")
            .args(["-TERM", &pid])
            .status()?
            .success()
        {
            bail!("kill -TERM {pid} failed");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("ordo serve exited with {status}");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("ordo serve did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        // Only reached with the server still running when a phase failed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
