//! Writing commands (append, import) and the NDJSON producers (export, generate).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use serde_json::{Map, Value};

use ordo::Error;
use ordo::domain::Position;
use ordo::generate::GenerateOptions;
use ordo::ledger::params::{self, Naming};
use ordo::ledger::{self, BATCH_EVENTS_MAX, ImportOptions, LINE_BYTES_MAX, Ledger, Lines};
use ordo::store::Access;

use super::backend::{Ask, Backend};
use super::read::Bar;
use super::remote::Remote;
use super::{Cli, output};

#[derive(Args, Debug)]
pub struct AppendArgs {
    /// The order id.
    #[arg(long, required_unless_present = "file", conflicts_with = "file")]
    order: Option<String>,
    /// The event type (order_placed, item_added, ...).
    #[arg(
        long = "type",
        value_name = "TYPE",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    event_type: Option<String>,
    /// The event's data: JSON text, @FILE, or - for standard input.
    #[arg(
        long,
        value_name = "JSON|@FILE|-",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    data: Option<String>,
    /// Append only if the order's last version is N (0: the order must not exist).
    #[arg(long, value_name = "N", conflicts_with = "file")]
    expected_version: Option<u64>,
    /// Idempotency key (a UUID); assigned when absent.
    #[arg(long, value_name = "UUID", conflicts_with = "file")]
    event_id: Option<String>,
    /// When it happened in the business (RFC 3339 or a date); defaults to now.
    #[arg(long, value_name = "TIME", conflicts_with = "file")]
    occurred_at: Option<String>,
    /// Who records the event.
    #[arg(long, value_name = "NAME", conflicts_with = "file")]
    actor: Option<String>,
    /// Correlation id.
    #[arg(long, value_name = "X", conflicts_with = "file")]
    correlation_id: Option<String>,
    /// Causation id.
    #[arg(long, value_name = "X", conflicts_with = "file")]
    causation_id: Option<String>,
    /// An NDJSON batch (FILE, or - for standard input), appended atomically in one commit.
    #[arg(long, value_name = "FILE|-")]
    file: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The NDJSON file, or - for standard input.
    input: String,
    /// The input is an `ordo export`: keep its positions, timestamps and hashes.
    #[arg(long)]
    preserve: bool,
    /// Events per durable commit.
    #[arg(long, value_name = "N", default_value_t = 5_000)]
    batch_events: usize,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// First position to export.
    #[arg(long, value_name = "P", default_value_t = 1)]
    from_position: u64,
    /// Last position to export.
    #[arg(long, value_name = "P")]
    to_position: Option<u64>,
    /// Only events recorded at or before TIME.
    #[arg(long, value_name = "TIME")]
    as_of: Option<String>,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Number of orders (about 6 events each).
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    orders: u64,
    /// Seed: the same seed gives the same workload.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
    /// When the first order is placed.
    #[arg(long, value_name = "DATE", default_value = "2026-01-01")]
    start: String,
    /// Placements spread over this many days.
    #[arg(long, value_name = "N", default_value_t = 180)]
    days: u32,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Reads at most `LINE_BYTES_MAX` bytes of text: from a file (`@FILE`), standard input
/// (`-`), or the argument itself.
fn read_data(arg: &str) -> Result<String, Error> {
    let limit = LINE_BYTES_MAX as u64 + 1;
    let mut text = String::new();
    let read = match arg {
        "-" => std::io::stdin()
            .lock()
            .take(limit)
            .read_to_string(&mut text)
            .map_err(|e| Error::io("<stdin>", e)),
        _ if arg.starts_with('@') => {
            let path = &arg[1..];
            File::open(path)
                .and_then(|f| f.take(limit).read_to_string(&mut text))
                .map_err(|e| Error::io(path, e))
        }
        _ => return Ok(arg.to_owned()),
    };
    read?;
    if text.len() > LINE_BYTES_MAX {
        return Err(Error::InvalidInput(format!(
            "--data is longer than {LINE_BYTES_MAX} bytes"
        )));
    }
    Ok(text)
}

/// Builds the input event from flags, so that flags and NDJSON share one parser and one set
/// of messages. Returns it checked, and as the JSON a server takes.
fn event_from_flags(args: &AppendArgs) -> Result<(ledger::NewEvent, Value), Error> {
    let data_text = read_data(args.data.as_deref().unwrap_or_default())?;
    let data: Value = ledger::json::parse_value(&data_text)
        .map_err(|e| Error::InvalidInput(format!("field `data`: not valid JSON ({e})")))?;
    let mut event = Map::new();
    event.insert("order_id".into(), args.order.clone().into());
    event.insert("type".into(), args.event_type.clone().into());
    event.insert("data".into(), data);
    let optional = [
        ("occurred_at", &args.occurred_at),
        ("event_id", &args.event_id),
        ("actor", &args.actor),
        ("correlation_id", &args.correlation_id),
        ("causation_id", &args.causation_id),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            event.insert(key.into(), v.clone().into());
        }
    }
    if let Some(v) = args.expected_version {
        event.insert("expected_version".into(), v.into());
    }
    let event = Value::Object(event);
    Ok((ledger::parse_event(&event.to_string())?, event))
}

/// Reads and checks an `append --file` batch; each event comes with its input line (for
/// messages) and its JSON (for a server).
fn read_batch(source: &str) -> Result<Vec<(u64, ledger::NewEvent, Value)>, Error> {
    let reader: Box<dyn BufRead> = if source == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            File::open(source).map_err(|e| Error::io(source, e))?,
        ))
    };
    let mut lines = Lines::new(reader);
    let mut events = Vec::new();
    while let Some((line, text)) = lines.next_line()? {
        if events.len() == BATCH_EVENTS_MAX {
            return Err(Error::InvalidInput(format!(
                "a batch holds at most {BATCH_EVENTS_MAX} events; use `ordo import` for more"
            )));
        }
        let event = ledger::parse_event(text).map_err(|e| e.at_line(line))?;
        let json = ledger::json::parse_value(text)
            .map_err(|e| Error::InvalidInput(format!("not valid JSON ({e})")).at_line(line))?;
        events.push((line, event, json));
    }
    if events.is_empty() {
        return Err(Error::InvalidInput(format!("{source} holds no events")));
    }
    Ok(events)
}

pub fn append(cli: &Cli, args: &AppendArgs, out: &mut dyn Write) -> Result<()> {
    // Parse everything before opening (and so creating) the ledger.
    let ask = match &args.file {
        Some(source) => Ask::AppendBatch(read_batch(source)?),
        None => {
            let (event, json) = event_from_flags(args)?;
            Ask::Append(Box::new(event), json)
        }
    };
    let result = Backend::of(cli)?.answer(ask)?;
    output::object(out, cli.format, &result)
}

/// Standard input is read twice by import (validate, then write), so it is spooled to a
/// private temporary file first.
fn spool_stdin() -> Result<tempfile::NamedTempFile, Error> {
    let mut file = tempfile::NamedTempFile::new().map_err(|e| Error::io("temporary file", e))?;
    std::io::copy(&mut std::io::stdin().lock(), &mut file).map_err(|e| Error::io("<stdin>", e))?;
    Ok(file)
}

pub fn import(cli: &Cli, args: &ImportArgs, out: &mut dyn Write) -> Result<()> {
    let dir = match Backend::of(cli)? {
        Backend::Local(dir) => dir,
        Backend::Remote(server) => return import_remote(&server, args, out, cli.format),
    };

    let spooled = if args.input == "-" {
        Some(spool_stdin()?)
    } else {
        None
    };
    let path = spooled
        .as_ref()
        .map_or_else(|| Path::new(&args.input), |f| f.path());
    if !path.is_file() {
        return Err(
            Error::NotFound(format!("input file {} does not exist", path.display())).into(),
        );
    }
    let options = ImportOptions {
        preserve: args.preserve,
        batch_events: args.batch_events,
        ..ImportOptions::default()
    };
    let ledger = super::open_writing(&dir)?;
    let result = ledger::import(&ledger, path, &options, &Bar::new())?;
    output::object(out, cli.format, &serde_json::to_value(result)?)
}

/// `import` through a server, which spools the body and imports it like a local import:
/// validated first.
fn import_remote(
    server: &Remote,
    args: &ImportArgs,
    out: &mut dyn Write,
    format: output::Format,
) -> Result<()> {
    let query = vec![
        ("preserve", args.preserve.to_string()),
        ("batch_events", args.batch_events.to_string()),
    ];
    let result = if args.input == "-" {
        server.post_stream("/v1/import", &query, &mut std::io::stdin().lock())?
    } else {
        let mut file = File::open(&args.input).map_err(|e| Error::io(&args.input, e))?;
        server.post_stream("/v1/import", &query, &mut file)?
    };
    output::object(out, format, &result)
}

pub fn export(cli: &Cli, args: &ExportArgs, out: &mut dyn Write) -> Result<()> {
    let as_of = args
        .as_of
        .as_deref()
        .map(|t| params::time(Naming::Flags, "as_of", t))
        .transpose()?;
    let mut buffered = BufWriter::new(out);
    let dir = match Backend::of(cli)? {
        Backend::Local(dir) => dir,
        Backend::Remote(server) => return export_remote(&server, args, &mut buffered),
    };
    let ledger = Ledger::open(&dir, Access::ReadOnly)?;
    ledger::export(
        &ledger,
        Position(args.from_position),
        args.to_position.map(Position),
        as_of,
        &mut buffered,
    )?;
    Ok(())
}

/// `export` through a server: pages of the log, each starting after the last position of
/// the previous one, until a short page.
fn export_remote(server: &Remote, args: &ExportArgs, out: &mut dyn Write) -> Result<()> {
    const PAGE: usize = ordo::server::PAGE_EVENTS_MAX;
    let mut from = args.from_position.max(1);
    loop {
        let mut query = vec![("from", from.to_string()), ("limit", PAGE.to_string())];
        if let Some(to) = args.to_position {
            query.push(("to", to.to_string()));
        }
        if let Some(as_of) = &args.as_of {
            query.push(("as_of", as_of.clone()));
        }
        let page = server.rows("/v1/events", &query)?;
        for event in &page {
            writeln!(out, "{event}")?;
        }
        match page.last().and_then(|e| e["position"].as_u64()) {
            Some(last) if page.len() == PAGE => from = last + 1,
            _ => break,
        }
    }
    out.flush()?;
    Ok(())
}

pub fn generate(args: &GenerateArgs, out: &mut dyn Write) -> Result<()> {
    let options = GenerateOptions {
        orders: args.orders,
        seed: args.seed,
        start: params::time(Naming::Flags, "start", &args.start)?,
        days: args.days,
    };
    match &args.output {
        Some(path) => {
            let file = File::create(path).map_err(|e| Error::io(path, e))?;
            ordo::generate::generate(&options, &mut BufWriter::new(file))?;
        }
        None => {
            ordo::generate::generate(&options, &mut BufWriter::new(out))?;
        }
    }
    Ok(())
}
