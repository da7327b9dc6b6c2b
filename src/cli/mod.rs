//! The command line: parses arguments into validated values, calls the library, prints.
//! No business logic lives here (ripgrep's "low args -> high args" split: clap parses
//! strings; `TimeArgs::filter` and friends turn them into domain values once).

mod backend;
mod follow;
mod output;
mod proof;
mod read;
mod recover;
mod relay;
mod remote;
mod serve;
mod whole_ledger;
mod write;

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use ordo::ledger::Filter;
use ordo::ledger::params::{self, Naming};

pub use output::Format;

/// ordo: an event-sourced order ledger. Append order events, read any order as it was at any
/// time, and prove that history was not rewritten.
#[derive(Parser, Debug)]
#[command(name = "ordo", version, about, max_term_width = 100)]
pub struct Cli {
    /// The ledger directory.
    #[arg(
        long,
        global = true,
        env = "ORDO_DATA_DIR",
        default_value = "./ordo-data"
    )]
    pub data_dir: PathBuf,

    /// Talk to this `ordo serve` instead of opening the directory (write commands need it
    /// while a server holds the ledger).
    #[arg(long, global = true, env = "ORDO_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// A file holding the bearer token: `serve` requires it on every request, the client
    /// (`--server`) sends it.
    #[arg(long, global = true, env = "ORDO_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// Output format of reading commands.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Append one event, or an NDJSON batch atomically (--file).
    Append(write::AppendArgs),
    /// Bulk-load NDJSON of any size: validated first, then committed in durable batches.
    Import(write::ImportArgs),
    /// Write stored events as NDJSON envelopes.
    Export(write::ExportArgs),
    /// Generate a deterministic, realistic NDJSON workload.
    Generate(write::GenerateArgs),
    /// An order's events.
    History(read::OrderArgs),
    /// An order's state.
    State(read::OrderArgs),
    /// Re-read every event and check checksums, positions, versions and the hash chain.
    Verify,
    /// Counts, head and size of the ledger.
    Stats,
    /// Query the projections, now or at a point in time.
    #[command(subcommand)]
    Query(whole_ledger::Query),
    /// The whole ledger as it was at a point: a summary, every order (--format ndjson), or a
    /// copy (--into DIR).
    Replay(whole_ledger::ReplayArgs),
    /// An order's timeline with the state after each event, or everything an actor recorded.
    Audit(whole_ledger::AuditArgs),
    /// Create, list and prune snapshots of the projections.
    #[command(subcommand)]
    Snapshot(whole_ledger::Snapshot),
    /// Show or change a ledger setting (snapshot_every, origin, replica_of).
    Config(whole_ledger::ConfigArgs),
    /// Rebuild every projection from the log, compare it with the stored one row by row (and
    /// by digest); --force rewrites the rows that differ, atomically.
    Rebuild(whole_ledger::RebuildArgs),
    /// Create a signing key for checkpoints (Ed25519, signed-note format); prints its
    /// verifier key.
    Keygen(proof::KeygenArgs),
    /// The ledger's tree head as a tlog checkpoint, signed with --key.
    Checkpoint(proof::CheckpointArgs),
    /// Merkle proofs for auditors: inclusion, consistency, an order's evidence, and an
    /// offline check of any of them.
    #[command(subcommand)]
    Prove(proof::Prove),
    /// Relay every committed event, exactly once and in position order, into a NATS
    /// JetStream stream (sequence = position) for replicas and other services.
    Relay(relay::RelayArgs),
    /// Be a read replica: follow a leader's JetStream stream into this ledger directory
    /// (same positions, times and hashes), optionally serving the read API.
    Follow(follow::FollowArgs),
    /// Serve the ledger over HTTP: appends, reads, queries, live subscriptions, metrics.
    Serve(serve::ServeArgs),
    /// Open a ledger whose write-ahead log is damaged, keeping what can be read up to the
    /// damage (after confirmation; the damaged logs are copied aside first).
    Recover(recover::RecoverArgs),
    /// Print a completion script for SHELL (e.g. `ordo completions bash >
    /// /etc/bash_completion.d/ordo`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff: `ordo man > ordo.1; man ./ordo.1`).
    Man,
}

/// The time filters of product.md section 5.
#[derive(Args, Debug, Default)]
pub struct TimeArgs {
    /// Only events recorded at or before TIME (what the ledger knew then).
    #[arg(long, value_name = "TIME")]
    as_of: Option<String>,
    /// Only events that occurred at or before TIME (what had happened by then).
    #[arg(long, value_name = "TIME")]
    valid_at: Option<String>,
    /// Only events at or before position P.
    #[arg(long, value_name = "P")]
    at_position: Option<u64>,
}

impl TimeArgs {
    pub fn filter(&self) -> Result<Filter, ordo::Error> {
        params::filter(
            Naming::Flags,
            self.as_of.as_deref(),
            self.valid_at.as_deref(),
            self.at_position,
        )
    }

    /// The filters as query parameters for a server (after `filter` checked them).
    pub fn query(&self) -> remote::Query {
        let mut query = Vec::new();
        if let Some(t) = &self.as_of {
            query.push(("as_of", t.clone()));
        }
        if let Some(t) = &self.valid_at {
            query.push(("valid_at", t.clone()));
        }
        if let Some(p) = self.at_position {
            query.push(("at_position", p.to_string()));
        }
        query
    }
}

/// The ledger in `dir` opened for writing; a ledger written before the Merkle tree was
/// kept builds it first, with a progress bar.
pub fn open_writing(dir: &std::path::Path) -> Result<ordo::ledger::Ledger, ordo::Error> {
    open_as(dir, ordo::store::Access::ReadWrite)
}

/// The ledger in `dir` opened for one `append` (`Access::ReadWriteBrief`).
pub fn open_writing_briefly(dir: &std::path::Path) -> Result<ordo::ledger::Ledger, ordo::Error> {
    open_as(dir, ordo::store::Access::ReadWriteBrief)
}

fn open_as(
    dir: &std::path::Path,
    access: ordo::store::Access,
) -> Result<ordo::ledger::Ledger, ordo::Error> {
    ordo::ledger::Ledger::open_reporting(
        dir,
        access,
        ordo::store::Durability::Sync,
        &read::Bar::new(),
    )
}

/// Runs the parsed command.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    let out = &mut std::io::stdout().lock();
    match &cli.command {
        Command::Append(args) => write::append(cli, args, out),
        Command::Import(args) => write::import(cli, args, out),
        Command::Export(args) => write::export(cli, args, out),
        Command::Generate(args) => write::generate(args, out),
        Command::History(args) => read::history(cli, args, out),
        Command::State(args) => read::state(cli, args, out),
        Command::Verify => read::verify(cli, out),
        Command::Stats => read::stats(cli, out),
        Command::Query(q) => whole_ledger::query(cli, q, out),
        Command::Replay(args) => whole_ledger::replay(cli, args, out),
        Command::Audit(args) => whole_ledger::audit(cli, args, out),
        Command::Snapshot(cmd) => whole_ledger::snapshot(cli, cmd, out),
        Command::Config(args) => whole_ledger::config(cli, args, out),
        Command::Rebuild(args) => whole_ledger::rebuild(cli, args, out),
        Command::Keygen(args) => proof::keygen(cli, args, out),
        Command::Checkpoint(args) => proof::checkpoint(cli, args, out),
        Command::Prove(prove) => proof::prove(cli, prove, out),
        Command::Relay(args) => relay::relay(cli, args),
        Command::Follow(args) => follow::follow(cli, args),
        Command::Serve(args) => serve::serve(cli, args),
        Command::Recover(args) => recover::recover(cli, args, out),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "ordo", out);
            Ok(())
        }
        Command::Man => Ok(clap_mangen::Man::new(Cli::command()).render(out)?),
    }
}
