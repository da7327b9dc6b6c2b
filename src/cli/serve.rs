//! `ordo serve`: opens the ledger for writing and runs the HTTP server until SIGINT or
//! SIGTERM. The server itself is `ordo::server`.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Result;
use clap::Args;

use ordo::Error;
use ordo::server::{LISTEN_DEFAULT, Origins, ServeOptions, Server};

use super::Cli;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port). A non-loopback address needs
    /// --token-file.
    #[arg(long, value_name = "ADDR", default_value = LISTEN_DEFAULT)]
    listen: String,
    /// Also accept requests whose Host header names NAME (a DNS name that reaches this
    /// server). The server's own address, and localhost on a loopback address, are always
    /// accepted. Repeatable.
    #[arg(long, value_name = "NAME")]
    allow_host: Vec<String>,
    /// Also accept requests that carry `Origin: ORIGIN` (a web page at that origin may then
    /// write to the ledger). Repeatable.
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,
    /// Sign checkpoints and evidence bundles with this key (`ordo keygen`; owner-only file).
    #[arg(long, value_name = "FILE")]
    key: Option<std::path::PathBuf>,
    /// Also relay every commit into NATS JetStream at this URL (as `ordo relay` does), woken
    /// by commits.
    #[arg(long, value_name = "URL")]
    relay: Option<String>,
    /// The relay's stream.
    #[arg(long, default_value = ordo::relay::STREAM_DEFAULT, value_name = "NAME", requires = "relay")]
    relay_stream: String,
    /// The relay's stream replicas when it is created.
    #[arg(long, default_value_t = 1, value_name = "R", requires = "relay")]
    relay_replicas: usize,
}

/// The server's options from `--listen` and `--token-file` (`serve`, `follow --listen`).
pub fn serve_options(cli: &Cli, listen: &str) -> Result<ServeOptions, Error> {
    let addr: SocketAddr = listen.parse().map_err(|e| {
        Error::InvalidInput(format!(
            "--listen {listen:?} is not an IP:PORT address ({e})"
        ))
    })?;
    let token = cli
        .token_file
        .as_deref()
        .map(ordo::server::read_token)
        .transpose()?;
    Ok(ServeOptions::new(addr, token))
}

pub fn serve(cli: &Cli, args: &ServeArgs) -> Result<()> {
    if cli.server.is_some() {
        return Err(Error::InvalidInput(
            "serve runs on a ledger directory; it cannot be combined with --server".to_owned(),
        )
        .into());
    }
    let mut options = serve_options(cli, &args.listen)?;
    options.origins = Origins {
        hosts: args.allow_host.clone(),
        origins: args.allow_origin.clone(),
    };
    options.signer = args
        .key
        .as_deref()
        .map(ordo::server::read_signing_key)
        .transpose()?
        .map(std::sync::Arc::new);
    let relay = match &args.relay {
        Some(url) => {
            let relay = super::relay::options(url, &args.relay_stream, args.relay_replicas)?;
            let stats = std::sync::Arc::new(ordo::relay::RelayStats::default());
            options.beside.relay = Some(stats.clone());
            Some((relay, stats))
        }
        None => None,
    };
    // Refused before the ledger is opened (and so perhaps created).
    options.check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ordo-serve")
        .build()
        .map_err(|e| Error::Storage(format!("cannot start the server runtime: {e}")))?;
    runtime.block_on(async {
        // Installed before the line below says the server is ready.
        let stopping = ordo::server::shutdown_signal();
        let ledger = super::open_writing(&cli.data_dir)?;
        let server = Server::bind(ledger, options).await?;
        // Tests and scripts read this line for the port actually bound.
        // Written without eprintln!, which panics when stderr cannot be written.
        let _ = writeln!(
            std::io::stderr(),
            "ordo serve: listening on {} (ledger {})",
            server.url(),
            cli.data_dir.display()
        );
        let (stop_relay, relay_stopping) = tokio::sync::watch::channel(false);
        let relaying = relay.map(|(relay, stats)| {
            let source = ordo::relay::Source::Serving(server.ledger());
            tokio::spawn(async move {
                if let Err(e) = ordo::relay::run(source, relay, stats, relay_stopping).await {
                    // The server goes on serving; the relay's lag in /metrics keeps growing.
                    tracing::error!("the relay stopped: {e}");
                }
            })
        });
        server.run(stopping).await?;
        let _ = stop_relay.send(true);
        if let Some(relaying) = relaying {
            let _ = relaying.await;
        }
        let _ = writeln!(
            std::io::stderr(),
            "ordo serve: stopped; every acknowledged append is durable"
        );
        Ok(())
    })
}
