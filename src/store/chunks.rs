//! Reading the log in chunks whose decoding may be left to another thread.
//!
//! A whole-log fold (rebuild, replay from nothing) reads on one thread and folds on another.
//! Reading (iterator, blocks, LZ4) plus decoding costs more than folding, so a reader that
//! decodes everything makes the folder wait. A chunk is therefore either decoded by the
//! reader or handed over as the stored bytes for the folder to decode, whichever the caller
//! asks for at the start of each chunk; the bytes never leave this module undecoded.

use rocksdb::DBRawIterator;

use super::{
    CF_EVENTS, Store, log::decode_checked, log::event_key_position, log_scan_options, storage,
};
use crate::domain::{Event, Position};
use crate::error::Result;
use crate::format::keys;

/// Consecutive events of the log, in position order.
#[derive(Debug)]
pub enum EventChunk {
    /// Decoded and checked by the reader.
    Decoded(Vec<Event>),
    /// As stored: `decode` checks and decodes them.
    Stored(StoredEvents),
}

impl EventChunk {
    /// Events in the chunk.
    pub fn len(&self) -> usize {
        match self {
            EventChunk::Decoded(events) => events.len(),
            EventChunk::Stored(stored) => stored.ends.len(),
        }
    }

    /// Whether the chunk holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events, decoded and checked against their keys.
    pub fn into_events(self) -> Result<Vec<Event>> {
        match self {
            EventChunk::Decoded(events) => Ok(events),
            EventChunk::Stored(stored) => stored.decode(),
        }
    }
}

/// Event records copied from the log, not yet decoded.
#[derive(Debug, Default)]
pub struct StoredEvents {
    /// The records, one after another.
    bytes: Vec<u8>,
    /// Each record's position and where it ends in `bytes`.
    ends: Vec<(Position, usize)>,
}

impl StoredEvents {
    fn decode(&self) -> Result<Vec<Event>> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&(position, end)| {
                let record = &self.bytes[start..end];
                start = end;
                decode_checked(position, record)
            })
            .collect()
    }
}

/// Room a chunk of stored records starts with, per event (records average about 135 bytes).
const STORED_EVENT_BYTES: usize = 192;

impl Store {
    /// The events `from..=to`, in chunks of up to `chunk_events`. Before each chunk,
    /// `decode_here()` says whether this thread decodes it (`EventChunk::Decoded`) or leaves
    /// the stored bytes to whoever receives it (`EventChunk::Stored`). The first error ends
    /// the chunks.
    pub fn event_chunks<'s>(
        &'s self,
        from: Position,
        to: Position,
        chunk_events: usize,
        decode_here: impl FnMut() -> bool + 's,
    ) -> impl Iterator<Item = Result<EventChunk>> + 's {
        assert!(chunk_events > 0, "a chunk holds at least one event");
        let mut opts = log_scan_options();
        opts.set_iterate_upper_bound(keys::event_key(Position(to.0.saturating_add(1))));
        let view = self.read_at(&mut opts, None);
        let mut rows = self.db.raw_iterator_cf_opt(self.cf(CF_EVENTS), opts);
        rows.seek(keys::event_key(from));
        Chunks {
            rows,
            _view: view,
            chunk_events,
            decode_here,
            done: from > to,
        }
    }
}

struct Chunks<'s, F> {
    /// Placed on the next row to read.
    rows: DBRawIterator<'s>,
    chunk_events: usize,
    decode_here: F,
    /// The end or an error was reached.
    done: bool,
    /// The view the events are read through, kept while they are.
    _view: Option<std::sync::Arc<super::View>>,
}

impl<F: FnMut() -> bool> Chunks<'_, F> {
    fn read(&mut self) -> Result<EventChunk> {
        let n = self.chunk_events;
        let mut chunk = if (self.decode_here)() {
            EventChunk::Decoded(Vec::with_capacity(n))
        } else {
            EventChunk::Stored(StoredEvents {
                bytes: Vec::with_capacity(n * STORED_EVENT_BYTES),
                ends: Vec::with_capacity(n),
            })
        };
        while chunk.len() < n {
            let Some((key, value)) = self.rows.item() else {
                self.done = true;
                self.rows.status().map_err(storage)?;
                break;
            };
            let position = event_key_position(key)?;
            match &mut chunk {
                EventChunk::Decoded(events) => events.push(decode_checked(position, value)?),
                EventChunk::Stored(stored) => {
                    stored.bytes.extend_from_slice(value);
                    stored.ends.push((position, stored.bytes.len()));
                }
            }
            self.rows.next();
        }
        Ok(chunk)
    }
}

impl<F: FnMut() -> bool> Iterator for Chunks<'_, F> {
    type Item = Result<EventChunk>;

    fn next(&mut self) -> Option<Result<EventChunk>> {
        if self.done {
            return None;
        }
        match self.read() {
            Ok(chunk) if chunk.is_empty() => None,
            Ok(chunk) => Some(Ok(chunk)),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::store::ledger_of_placed_orders;

    /// Reads `from..=to` in chunks, decoding here as `decode_here` says for chunk i.
    fn read(
        store: &Store,
        from: u64,
        to: u64,
        chunk_events: usize,
        decode_here: fn(usize) -> bool,
    ) -> Result<Vec<Event>> {
        let mut asked = 0;
        let mut events = Vec::new();
        for chunk in store.event_chunks(Position(from), Position(to), chunk_events, move || {
            asked += 1;
            decode_here(asked - 1)
        }) {
            let chunk = chunk?;
            assert!(!chunk.is_empty() && chunk.len() <= chunk_events);
            events.extend(chunk.into_events()?);
        }
        Ok(events)
    }

    #[test]
    fn chunks_hold_the_same_events_whoever_decodes_them() {
        let (_tmp, ledger) = ledger_of_placed_orders(50, 7);
        let store = ledger.store();
        let all: Vec<Event> = store
            .events_from(Position(1))
            .collect::<Result<_>>()
            .expect("events");
        assert_eq!(all.len(), 50);
        let ways: [fn(usize) -> bool; 3] = [|_| true, |_| false, |i| i % 2 == 0];
        for decode_here in ways {
            for chunk_events in [1, 7, 50, 64] {
                for (from, to) in [(1, 50), (1, 1), (9, 33), (40, 60), (51, 60), (20, 19)] {
                    let expected: Vec<Event> = all
                        .iter()
                        .filter(|e| (from..=to).contains(&e.position.0))
                        .cloned()
                        .collect();
                    let events =
                        read(store, from, to, chunk_events, decode_here).expect("readable");
                    assert_eq!(events, expected, "{chunk_events} {from}..={to}");
                }
            }
        }
    }

    #[test]
    fn a_damaged_record_is_refused_by_whoever_decodes_it() {
        let (_tmp, ledger) = ledger_of_placed_orders(20, 7);
        let store = ledger.store();
        let mut record = store.raw_rows(CF_EVENTS).expect("rows")[11].1.clone();
        *record.last_mut().expect("a record") ^= 1;
        store
            .tamper_raw_event(Position(12), Some(&record))
            .expect("tamper");
        let ways: [fn(usize) -> bool; 2] = [|_| true, |_| false];
        for decode_here in ways {
            let err = read(store, 1, 20, 8, decode_here).expect_err("refused");
            assert!(
                matches!(
                    err,
                    Error::Corruption {
                        position: Position(12),
                        ..
                    }
                ) && err.to_string().contains("checksum"),
                "{err}"
            );
        }
    }
}
