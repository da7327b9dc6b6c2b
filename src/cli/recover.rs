//! `ordo recover --truncate-at P`: opens a ledger whose write-ahead log is damaged by keeping
//! positions 1 to P, after saying exactly what it drops and getting a confirmation. The
//! library's `Store::recover` does the work (and copies the damaged logs aside first).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;
use clap::Args;
use serde_json::json;

use ordo::Error;
use ordo::domain::Position;
use ordo::store::Store;

use super::{Cli, output};

#[derive(Args, Debug)]
pub struct RecoverArgs {
    /// The last position to keep: the one the damage error names as readable.
    #[arg(long, value_name = "P")]
    truncate_at: u64,
    /// Do not ask for confirmation (scripts).
    #[arg(long)]
    yes: bool,
}

pub fn recover(cli: &Cli, args: &RecoverArgs, out: &mut dyn Write) -> Result<()> {
    if cli.server.is_some() {
        return Err(Error::InvalidInput(
            "recover runs on a ledger directory; it cannot be combined with --server".to_owned(),
        )
        .into());
    }
    let plan = Store::recovery_plan(&cli.data_dir)?;
    let mut stderr = std::io::stderr().lock();
    writeln!(
        stderr,
        "{}.\nRecovering keeps positions 1 to {head} and drops whatever the damaged log holds \
         after its first damaged record (any events acknowledged after position {head}). The \
         write-ahead logs are first copied to {dir}/damaged-<time>/; no file is deleted.",
        plan.damage,
        head = plan.head,
        dir = cli.data_dir.display()
    )?;
    if args.truncate_at != plan.head.0 {
        return Err(Error::InvalidInput(format!(
            "positions 1 to {head} can be recovered: --truncate-at must name {head} (it was {})",
            args.truncate_at,
            head = plan.head
        ))
        .into());
    }
    if !args.yes {
        confirm(&mut stderr, plan.head)?;
    }
    let recovered = Store::recover(&cli.data_dir, Position(args.truncate_at))?;
    output::object(
        out,
        cli.format,
        &json!({
            "head_position": recovered.plan.head.0,
            "damaged_log": recovered.plan.damage.file,
            "damaged_offset": recovered.plan.damage.offset,
            "logs_copied_to": recovered.kept_in,
        }),
    )
}

/// Asks on a terminal for the position to be typed back; refuses without a terminal.
fn confirm(stderr: &mut dyn Write, head: Position) -> Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::InvalidInput(
            "recover needs a confirmation: run it on a terminal, or pass --yes".to_owned(),
        )
        .into());
    }
    write!(stderr, "Type {head} to recover: ")?;
    stderr.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if answer.trim() != head.to_string() {
        return Err(Error::InvalidInput("not confirmed; nothing was changed".to_owned()).into());
    }
    Ok(())
}
