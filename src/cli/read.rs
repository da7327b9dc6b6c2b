//! Reading commands: history, state, verify, stats. They open the ledger read-only, so they
//! work while another process writes.

use std::io::{IsTerminal, Write};

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use ordo::domain::OrderId;
use ordo::ledger::{Ledger, Progress};
use ordo::store::Access;

use super::{Cli, TimeArgs, output};

#[derive(Args, Debug)]
pub struct OrderArgs {
    /// The order id.
    order: String,
    #[command(flatten)]
    time: TimeArgs,
}

fn order_id(text: &str) -> Result<OrderId, ordo::Error> {
    OrderId::new(text).map_err(|e| ordo::Error::InvalidInput(format!("order id {text:?} {e}")))
}

fn open(cli: &Cli) -> Result<Ledger, ordo::Error> {
    Ledger::open(&cli.data_dir, Access::ReadOnly)
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
    let (id, filter) = (order_id(&args.order)?, args.time.filter()?);
    let events = open(cli)?.history(&id, &filter)?;
    let rows: Vec<Value> = events.iter().map(|e| e.envelope_json()).collect();
    output::rows(out, cli.format, HISTORY_COLUMNS, &rows)
}

pub fn state(cli: &Cli, args: &OrderArgs, out: &mut dyn Write) -> Result<()> {
    let (id, filter) = (order_id(&args.order)?, args.time.filter()?);
    let state = open(cli)?.state(&id, &filter)?;
    output::object(out, cli.format, &serde_json::to_value(state)?)
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
    let report = open(cli)?.verify(&Bar::new())?;
    output::object(out, cli.format, &serde_json::to_value(&report)?)?;
    match (report.first_bad_position, report.reason) {
        (Some(position), Some(reason)) => Err(ordo::Error::Corruption { position, reason }.into()),
        _ => Ok(()),
    }
}

pub fn stats(cli: &Cli, out: &mut dyn Write) -> Result<()> {
    let stats = open(cli)?.stats()?;
    output::object(out, cli.format, &serde_json::to_value(stats)?)
}
