//! `ordo follow`: a read replica of a leader's NATS JetStream stream, optionally serving the
//! read API (`--listen`), until SIGINT or SIGTERM. The replica itself is
//! `ordo::relay::follow`.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;
use clap::Args;

use ordo::Error;
use ordo::relay::follow::{FollowOptions, FollowStats};
use ordo::server::Server;

use super::Cli;

#[derive(Args, Debug)]
pub struct FollowArgs {
    /// The NATS server URL (several, comma-separated, for a cluster).
    #[arg(long, env = "ORDO_NATS", value_name = "URL")]
    nats: String,
    /// The leader's stream.
    #[arg(long, default_value = ordo::relay::STREAM_DEFAULT, value_name = "NAME")]
    stream: String,
    /// Also serve the read API here (writes are refused, naming the leader).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
}

pub fn follow(cli: &Cli, args: &FollowArgs) -> Result<()> {
    if cli.server.is_some() {
        return Err(Error::InvalidInput(
            "follow writes its own ledger directory; it cannot be combined with --server"
                .to_owned(),
        )
        .into());
    }
    super::relay::check_stream_name(&args.stream)?;
    let options = FollowOptions {
        nats: args.nats.clone(),
        stream: args.stream.clone(),
    };
    let stats = Arc::new(FollowStats::default());
    let serve = args
        .listen
        .as_deref()
        .map(|listen| {
            let mut serve = super::serve::serve_options(cli, listen)?;
            serve.beside.replica = Some(stats.clone());
            serve.check()?;
            Ok::<_, Error>(serve)
        })
        .transpose()?;
    // Marked as a replica before anything else can write to it; reopened so that the
    // ledger refuses its own appends from now on.
    let leader = options.leader();
    {
        let ledger = super::open_writing(&cli.data_dir)?;
        if ledger.replica_of() != Some(leader.as_str()) {
            ledger.set_replica_of(Some(leader.clone()))?;
        }
    }
    let ledger = super::open_writing(&cli.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ordo-follow")
        .build()
        .map_err(|e| Error::Storage(format!("cannot start the replica's runtime: {e}")))?;
    let result: Result<(), Error> = runtime.block_on(async {
        // Installed before the line below says the follower is running.
        let signalled = ordo::server::shutdown_signal();
        let _ = writeln!(
            std::io::stderr(),
            "ordo follow: {} into {}",
            leader,
            cli.data_dir.display()
        );
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let (failed, mut failure) = tokio::sync::watch::channel(false);
        let (server, ledger) = match serve {
            Some(serve) => {
                let server = Server::bind(ledger, serve).await?;
                let _ = writeln!(
                    std::io::stderr(),
                    "ordo follow: serving reads on {}",
                    server.url()
                );
                let ledger = server.ledger();
                (Some(server), ledger)
            }
            None => (None, Arc::new(ledger)),
        };
        let following = tokio::spawn({
            let stats = stats.clone();
            async move {
                let result = ordo::relay::follow::run(ledger, options, stats, shutdown).await;
                if result.is_err() {
                    let _ = failed.send(true);
                }
                result
            }
        });
        // Stop on a signal, or when the replica stops on its own (a stream it cannot follow).
        let stopping = async move {
            tokio::select! {
                _ = signalled => {}
                _ = failure.changed() => {}
            }
        };
        match server {
            Some(server) => server.run(stopping).await?,
            None => stopping.await,
        }
        let _ = stop.send(true);
        following
            .await
            .map_err(|e| Error::Storage(format!("the replica task failed: {e}")))?
    });
    let _ = writeln!(
        std::io::stderr(),
        "ordo follow: stopped after storing {} events",
        stats.consumed.load(Ordering::Relaxed)
    );
    Ok(result?)
}
