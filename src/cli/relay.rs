//! `ordo relay`: the ledger's committed events into a NATS JetStream stream, exactly once,
//! until SIGINT or SIGTERM. The relay itself is `ordo::relay`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;
use clap::Args;

use ordo::Error;
use ordo::relay::{RelayOptions, RelayStats, STREAM_DEFAULT, Source};

use super::Cli;

/// Most replicas a JetStream stream can have.
const REPLICAS_MAX: usize = 5;

#[derive(Args, Debug)]
pub struct RelayArgs {
    /// The NATS server URL (several, comma-separated, for a cluster).
    #[arg(long, env = "ORDO_NATS", value_name = "URL")]
    nats: String,
    /// The JetStream stream (created when missing).
    #[arg(long, default_value = STREAM_DEFAULT, value_name = "NAME")]
    stream: String,
    /// Replicas of the stream when it is created (1 to 5; a cluster needs 3 to survive the
    /// loss of a server).
    #[arg(long, default_value_t = 1, value_name = "R")]
    replicas: usize,
}

/// The relay's options, checked (`ordo relay` and `ordo serve --relay`).
pub fn options(nats: &str, stream: &str, replicas: usize) -> Result<RelayOptions, Error> {
    check_stream_name(stream)?;
    if !(1..=REPLICAS_MAX).contains(&replicas) {
        return Err(Error::InvalidInput(format!(
            "--replicas {replicas} must be 1 to {REPLICAS_MAX}"
        )));
    }
    Ok(RelayOptions {
        nats: nats.to_owned(),
        stream: stream.to_owned(),
        replicas,
    })
}

/// A JetStream stream name: 1 to 64 characters, none of them whitespace, `.`, `*`, `>`,
/// `/` or `\`.
pub fn check_stream_name(name: &str) -> Result<(), Error> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || ".*>/\\".contains(c);
    if name.is_empty() || name.len() > 64 || name.chars().any(bad) {
        return Err(Error::InvalidInput(format!(
            "--stream {name:?} is not a stream name: 1 to 64 characters without spaces or . * > / \\"
        )));
    }
    Ok(())
}

pub fn relay(cli: &Cli, args: &RelayArgs) -> Result<()> {
    if cli.server.is_some() {
        return Err(Error::InvalidInput(
            "relay reads a ledger directory; it cannot be combined with --server (use `ordo serve --relay` to relay from the server)".to_owned(),
        )
        .into());
    }
    let options = options(&args.nats, &args.stream, args.replicas)?;
    if !ordo::store::Store::exists(&cli.data_dir) {
        return Err(Error::NotFound(format!("no ledger at {}", cli.data_dir.display())).into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("ordo-relay")
        .build()
        .map_err(|e| Error::Storage(format!("cannot start the relay runtime: {e}")))?;
    let stats = Arc::new(RelayStats::default());
    let result = runtime.block_on(async {
        // Installed before the line below says the relay is running.
        let signalled = ordo::server::shutdown_signal();
        let _ = writeln!(
            std::io::stderr(),
            "ordo relay: {} to stream {} at {}",
            cli.data_dir.display(),
            options.stream,
            options.nats
        );
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            signalled.await;
            let _ = stop.send(true);
        });
        ordo::relay::run(
            Source::Directory(cli.data_dir.clone()),
            options,
            stats.clone(),
            shutdown,
        )
        .await
    });
    let _ = writeln!(
        std::io::stderr(),
        "ordo relay: stopped; the stream holds positions 1 to {} ({} published by this run)",
        stats.relayed.load(Ordering::Relaxed),
        stats.published.load(Ordering::Relaxed)
    );
    Ok(result?)
}
