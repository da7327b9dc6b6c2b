//! Reading commands: history, state, verify, stats, and the progress bar of long work. They
//! open the ledger read-only, so they work while another process writes.

use std::io::{IsTerminal, Write};

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use ordo::domain::Position;
use ordo::ledger::Progress;
use ordo::ledger::params;

use super::backend::{Ask, Backend};
use super::{Cli, TimeArgs, output};

#[derive(Args, Debug)]
pub struct OrderArgs {
    /// The order id.
    order: String,
    #[command(flatten)]
    time: TimeArgs,
}

/// Columns a person sees in `history`.
const HISTORY_COLUMNS: &[&str] = &[
    "position",
    "version",
    "type",
    "recorded_at",
    "occurred_at",
    "actor",
    "data",
];

pub fn history(cli: &Cli, args: &OrderArgs, out: &mut dyn Write) -> Result<()> {
    let (id, filter) = (params::order_id(&args.order)?, args.time.filter()?);
    let ask = Ask::History(id, filter, args.time.query());
    let rows = Backend::of(cli)?.rows(ask)?;
    output::rows(out, cli.format, HISTORY_COLUMNS, &rows)
}

pub fn state(cli: &Cli, args: &OrderArgs, out: &mut dyn Write) -> Result<()> {
    let (id, filter) = (params::order_id(&args.order)?, args.time.filter()?);
    let state = Backend::of(cli)?.answer(Ask::State(id, filter, args.time.query()))?;
    output::object(out, cli.format, &state)
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
pub struct Bar(ProgressBar);

impl Bar {
    pub fn new() -> Bar {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bar(ProgressBar::with_draw_target(None, target))
    }
}

impl Progress for Bar {
    fn begin(&self, phase: &str, total: Option<u64>) {
        self.0.reset();
        self.0.set_length(total.unwrap_or(0));
        let template = if total.is_some() {
            "{msg:>10} [{bar:40}] {pos}/{len} events ({per_sec}, {eta} left)"
        } else {
            "{msg:>10} {spinner} {pos} events ({per_sec})"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.0.set_style(style.progress_chars("=> "));
        }
        self.0.set_message(phase.to_owned());
    }
    fn advance(&self, units: u64) {
        self.0.inc(units);
    }
    fn end(&self) {
        self.0.finish_and_clear();
    }
}

pub fn verify(cli: &Cli, out: &mut dyn Write) -> Result<()> {
    let report = Backend::of(cli)?.answer(Ask::Verify)?;
    output::object(out, cli.format, &report)?;
    match (
        report["first_bad_position"].as_u64(),
        report["reason"].as_str(),
    ) {
        (Some(position), Some(reason)) => Err(ordo::Error::Corruption {
            position: Position(position),
            reason: reason.to_owned(),
        }
        .into()),
        _ => Ok(()),
    }
}

pub fn stats(cli: &Cli, out: &mut dyn Write) -> Result<()> {
    let stats = Backend::of(cli)?.answer(Ask::Stats)?;
    output::object(out, cli.format, &stats)
}
