//! Bulk import and export of NDJSON.
//!
//! `import` reads its file twice. Pass 1 parses and stages every line in a dry run (schema,
//! rules, idempotency, times) without writing, so a bad line anywhere means nothing is
//! written and the error names the line. Pass 2 appends in durable batches through the
//! sequencer. If pass 2 is interrupted, re-running the import is safe when lines carry
//! event ids: what was stored is reported as duplicates.
//!
//! Memory is bounded whatever the file's size: pass 1 keeps the states of the orders it has
//! staged and the ids of staged events in memory up to `memory_entries_max`, then
//! moves them to a scratch table on disk (`store::Scratch`, deleted afterwards); pass 2
//! holds one batch.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, sync_channel};

use serde::Serialize;

use crate::domain::{Position, Timestamp};
use crate::error::{Error, Result};
use crate::store::Scratch;

use super::Ledger;
use super::input::{Lines, NewEvent, parse_envelope, parse_event};
use super::write::stage::{AppendResult, DRY_RUN_ENTRIES_MAX, Stage};
use super::write::{BATCH_EVENTS_MAX, Chain, Pending};
use crate::progress::Progress;

/// Events per durable commit of an import (and of `replay --into`).
pub const BATCH_EVENTS_DEFAULT: usize = 5_000;

/// How to import.
#[derive(Clone, Copy, Debug)]
pub struct ImportOptions {
    /// Lines are exported envelopes; keep their positions, timestamps and hashes.
    pub preserve: bool,
    /// Events per durable commit, 1 to `BATCH_EVENTS_MAX`.
    pub batch_events: usize,
    /// Order states plus event ids the validation pass keeps in memory before it moves
    /// them to a scratch table on disk (the bound on the import's memory).
    pub memory_entries_max: usize,
}

impl Default for ImportOptions {
    fn default() -> ImportOptions {
        ImportOptions {
            preserve: false,
            batch_events: BATCH_EVENTS_DEFAULT,
            memory_entries_max: DRY_RUN_ENTRIES_MAX,
        }
    }
}

/// The product.md "batch and import result".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BatchResult {
    /// Events written.
    pub appended: u64,
    /// Events whose id was already stored with the same content (not written again).
    pub duplicates: u64,
    /// Position of the first event written.
    pub first_position: Option<Position>,
    /// Position of the last event written.
    pub last_position: Option<Position>,
}

impl BatchResult {
    /// Adds the results of one append or batch.
    pub fn add(&mut self, results: &[AppendResult]) {
        for r in results {
            if r.duplicate {
                self.duplicates += 1;
            } else {
                self.appended += 1;
                self.first_position.get_or_insert(r.position);
                self.last_position = Some(r.position);
            }
        }
    }
}

fn open_lines(path: &Path) -> Result<Lines<BufReader<File>>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    Ok(Lines::new(BufReader::with_capacity(1 << 20, file)))
}

fn parse(line: u64, text: &str, preserve: bool) -> Result<NewEvent> {
    let parsed = if preserve {
        parse_envelope(text)
    } else {
        parse_event(text)
    };
    parsed.map_err(|e| e.at_line(line))
}

/// Imports the NDJSON file at `path` (see the module docs).
pub fn import(
    ledger: &Ledger,
    path: &Path,
    options: &ImportOptions,
    progress: &dyn Progress,
) -> Result<BatchResult> {
    if options.batch_events == 0 || options.batch_events > BATCH_EVENTS_MAX {
        return Err(Error::InvalidInput(format!(
            "the import batch size must be 1 to {BATCH_EVENTS_MAX}, got {}",
            options.batch_events
        )));
    }
    ledger.appender()?;
    let lines = validate(ledger, path, options, progress)?;
    let sequencer = ledger.appender()?;
    let chain = Chain::default();
    let mut result = BatchResult::default();
    // Batches submitted and not yet acknowledged: while the writer commits one, this thread
    // waits for the parser to hand over the next.
    let mut in_flight: VecDeque<(u64, Pending)> = VecDeque::new();
    let mut acknowledge = |(n, pending): (u64, Pending)| -> Result<()> {
        let results = pending
            .recv()
            .map_err(|_| Error::Storage("the ledger's writer thread has stopped".to_owned()))??;
        result.add(&results);
        progress.advance(n);
        Ok(())
    };
    progress.begin("importing", Some(lines));
    for batch in parse_in_background(path, options)? {
        let batch = batch?;
        let n = batch.len() as u64;
        let events = batch.into_iter().map(|(line, e)| (Some(line), e)).collect();
        in_flight.push_back((n, sequencer.submit_chained(events, Some(&chain))?));
        if in_flight.len() > IN_FLIGHT_BATCHES_MAX
            && let Some(oldest) = in_flight.pop_front()
        {
            acknowledge(oldest)?;
        }
    }
    for pending in in_flight.drain(..) {
        acknowledge(pending)?;
    }
    progress.end();
    Ok(result)
}

/// Batches an import keeps submitted and unacknowledged: enough for the writer to stage
/// one group of them while the committer writes the previous group (four were faster than
/// two on the 1M import; docs/benchmarks.md), few enough to bound memory (a batch is a few
/// megabytes).
const IN_FLIGHT_BATCHES_MAX: usize = 4;

/// Parsed batches of `options.batch_events` lines, each with its line number.
type Parsed = Result<Vec<(u64, NewEvent)>>;

/// Parses `path` on its own thread (JSON parsing is half of an import's work) and hands
/// over batches through a bounded channel. The first error ends it; so does dropping the
/// receiver.
fn parse_in_background(path: &Path, options: &ImportOptions) -> Result<Receiver<Parsed>> {
    let mut reader = open_lines(path)?;
    let (batches, receiver) = sync_channel::<Parsed>(2);
    let (preserve, size) = (options.preserve, options.batch_events);
    std::thread::Builder::new()
        .name("ordo-import-parser".to_owned())
        .spawn(move || {
            let mut batch = Vec::with_capacity(size);
            loop {
                let parsed = match reader.next_line() {
                    Ok(Some((line, text))) => parse(line, text, preserve).map(|e| Some((line, e))),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                };
                match parsed {
                    Ok(Some(event)) => {
                        batch.push(event);
                        if batch.len() == size
                            && batches.send(Ok(std::mem::take(&mut batch))).is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => {
                        if !batch.is_empty() {
                            let _ = batches.send(Ok(batch));
                        }
                        return;
                    }
                    Err(e) => {
                        let _ = batches.send(Err(e));
                        return;
                    }
                }
            }
        })
        .map_err(|e| Error::Storage(format!("cannot start the import parser: {e}")))?;
    Ok(receiver)
}

/// Pass 1: parses and stages every line without writing. Returns the number of events.
fn validate(
    ledger: &Ledger,
    path: &Path,
    options: &ImportOptions,
    progress: &dyn Progress,
) -> Result<u64> {
    let store = ledger.store();
    Scratch::remove_stale(store.path())?;
    let mut stage = Stage::dry_run(
        store,
        ledger.head()?,
        Scratch::create(store.path())?,
        options.memory_entries_max,
    );
    let now = super::clock_now();
    let mut events = 0;
    progress.begin("validating", None);
    for batch in parse_in_background(path, options)? {
        let batch = batch?;
        let n = batch.len() as u64;
        for (line, event) in batch {
            stage.stage(event, now).map_err(|e| e.at_line(line))?;
        }
        events += n;
        progress.advance(n);
    }
    progress.end();
    Ok(events)
}

/// Writes stored events as NDJSON envelopes: positions `from` to `to` (inclusive), and only
/// those recorded at or before `as_of`. Returns the number written.
pub fn export(
    ledger: &Ledger,
    from: Position,
    to: Option<Position>,
    as_of: Option<Timestamp>,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut written = 0;
    for event in ledger.log(from, to, as_of) {
        let event = event?;
        serde_json::to_writer(&mut *out, &event.envelope_json())
            .and_then(|()| out.write_all(b"\n").map_err(serde_json::Error::io))
            .map_err(|e| Error::Storage(format!("writing the export: {e}")))?;
        written += 1;
    }
    out.flush()
        .map_err(|e| Error::Storage(format!("writing the export: {e}")))?;
    Ok(written)
}
