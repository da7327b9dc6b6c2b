//! The replay engine: the whole ledger as it was at a point (`--as-of`, `--valid-at`,
//! `--at-position`), built from the nearest usable snapshot plus a fold of the tail.
//!
//! 1. The target position P is the head, lowered to `--at-position` and to the last event
//!    recorded at or before `--as-of` (recorded_at increases with position, so a binary
//!    search over positions finds it).
//! 2. A snapshot is usable when it was written by this projection code, covers a position
//!    at or before P, and, with `--valid-at V`, holds only events that occurred at or before
//!    V (its `max_occurred_at <= V`): then the filter would have admitted every event in it,
//!    so it equals the filtered fold of its prefix. The newest usable one is loaded (its
//!    digest is checked).
//! 3. Events after the snapshot up to P are folded in position order, skipping those that
//!    occurred after V.
//!
//!
//! `summarize` is the same walk for a summary: it verifies the snapshot by its digest
//! without decoding it and reads only the order states the tail touches.
//!
//! Only reads through the store API; the fold itself is `projection::Book::apply`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::domain::Filter;
use crate::domain::{Event, Hash, OrderId, OrderState, Position, apply, apply_to};
use crate::error::{Error, Result};
use crate::format::chain;
use crate::progress::Progress;
use crate::projection::{Book, Orders, PROJECTION_VERSION, Totals, tables};
use crate::store::{EventChunk, SnapshotHeader, Store};

/// A replayed ledger.
#[derive(Debug)]
pub struct Replay {
    /// Every projection at the target.
    pub book: Book,
    /// The target position reached.
    pub position: Position,
    /// The hash of the event at `position` (identifies the history replayed).
    pub head_hash: Hash,
    /// Events folded from the log (after the snapshot, if one was used).
    pub events_applied: u64,
    /// The snapshot started from.
    pub snapshot: Option<SnapshotHeader>,
    /// Milliseconds spent.
    pub elapsed_ms: u64,
}

/// The last position admitted by the filter's `--as-of` and `--at-position`.
pub fn target_position(store: &Store, filter: &Filter) -> Result<Position> {
    let head = store.head()?.position;
    let mut target = filter.at_position.map_or(head, |p| p.min(head));
    if let Some(as_of) = filter.as_of {
        // Largest p in [0, target] with recorded_at(p) <= as_of; position 0 always qualifies.
        let (mut low, mut high) = (0u64, target.0);
        while low < high {
            let mid = low + (high - low).div_ceil(2);
            let event = store
                .event(Position(mid))?
                .ok_or_else(|| Error::Corruption {
                    position: Position(mid),
                    reason: "missing event below the head".to_owned(),
                })?;
            if event.recorded_at <= as_of {
                low = mid;
            } else {
                high = mid - 1;
            }
        }
        target = Position(low);
    }
    Ok(target)
}

/// Whether the snapshot can start a replay to `target` under `filter`.
pub fn usable(header: &SnapshotHeader, target: Position, filter: &Filter) -> bool {
    header.projection_version == PROJECTION_VERSION
        && header.position <= target
        && filter
            .valid_at
            .is_none_or(|v| header.max_occurred_at.is_none_or(|latest| latest <= v))
}

/// The snapshot `header` as a book, every row checked against its digest.
pub fn load_snapshot(store: &Store, header: &SnapshotHeader) -> Result<Book> {
    let (totals, rows) = store.load_snapshot(header, &tables::decode_snapshot_row)?;
    let what = format!("snapshot at position {}", header.position);
    let book = Book::from_rows(
        rows,
        tables::decode_totals(&what, &totals)?,
        header.position,
    );
    debug_assert!(
        crate::projection::digest(&book) == header.digest,
        "stored bytes are canonical"
    );
    Ok(book)
}

/// Replays the ledger to `filter`'s point; `use_snapshots` false folds from position 1.
pub fn replay(
    store: &Store,
    filter: &Filter,
    use_snapshots: bool,
    progress: &dyn Progress,
) -> Result<Replay> {
    let started = Instant::now();
    let target = target_position(store, filter)?;
    let snapshot = newest_usable(store, target, filter, use_snapshots)?;
    let mut book = match &snapshot {
        Some(header) => load_snapshot(store, header)?,
        // Sized for every order up to the target, as far as the head tells.
        None => Book {
            orders: Orders::with_capacity(order_capacity(store.head()?.orders, target)),
            ..Book::default()
        },
    };
    let events_applied = fold_tail(store, book.position, target, filter, progress, |event| {
        book.apply(event);
        Ok(())
    })?;
    book.position = target;
    Ok(Replay {
        book,
        position: target,
        head_hash: hash_at(store, target)?,
        events_applied,
        snapshot,
        elapsed_ms: elapsed_ms(started),
    })
}

/// Room for the orders of a replay to `target` from nothing: no more than the ledger holds,
/// nor than the events up to `target` can place, nor than `ORDERS_RESERVED_MAX` (the room
/// is taken before the first event is read).
fn order_capacity(orders_at_head: u64, target: Position) -> usize {
    usize::try_from(orders_at_head.min(target.0))
        .unwrap_or(usize::MAX)
        .min(ORDERS_RESERVED_MAX)
}

/// The most orders a replay makes room for in advance (pages of the room are only touched
/// as orders fill it; the cap bounds what a wrong count could ask for).
const ORDERS_RESERVED_MAX: usize = 10_000_000;

/// What `ordo replay` prints by default: a replay's position, head hash and totals, without
/// every order's state.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary {
    /// The target position reached.
    pub position: Position,
    /// The hash of the event at `position`.
    pub head_hash: Hash,
    /// Orders per status and the latest occurred_at.
    pub totals: Totals,
    /// Events folded from the log (after the snapshot, if one was used).
    pub events_applied: u64,
    /// The snapshot started from.
    pub snapshot: Option<SnapshotHeader>,
    /// Milliseconds spent.
    pub elapsed_ms: u64,
}

impl Summary {
    /// The summary's fields of product.md section 6, as `ordo replay` and the server print
    /// them: `position, head_hash, statuses, events_applied, snapshot_position, elapsed_ms`.
    pub fn to_json(&self) -> serde_json::Value {
        let statuses: serde_json::Map<String, serde_json::Value> = crate::domain::Status::ALL
            .iter()
            .zip(self.totals.statuses)
            .map(|(s, n)| (s.as_str().to_owned(), n.into()))
            .collect();
        serde_json::json!({
            "position": self.position,
            "head_hash": self.head_hash.to_hex(),
            "statuses": statuses,
            "events_applied": self.events_applied,
            "snapshot_position": self.snapshot.as_ref().map(|h| h.position),
            "elapsed_ms": self.elapsed_ms,
        })
    }
}

/// `replay` for a summary, reading only what it needs: the snapshot is verified against its
/// digest (a scan of its bytes, no decoding) and only the orders the tail touches are read
/// from it. So its cost is a scan of the snapshot plus the tail, not a load of every
/// order. Its totals equal `replay`'s (tests/replay.rs).
pub fn summarize(
    store: &Store,
    filter: &Filter,
    use_snapshots: bool,
    progress: &dyn Progress,
) -> Result<Summary> {
    let started = Instant::now();
    let target = target_position(store, filter)?;
    let snapshot = newest_usable(store, target, filter, use_snapshots)?;
    let Some(header) = &snapshot else {
        return summarize_from(store, target, None, filter, progress, started);
    };
    // The snapshot's digest is checked on a second thread while this one folds the tail
    // (both only read); nothing is returned unless it holds.
    std::thread::scope(|scope| {
        let verified = scope.spawn(|| store.verify_snapshot(header));
        let summary = summarize_from(store, target, Some(header), filter, progress, started);
        verified
            .join()
            .map_err(|_| Error::Storage("the snapshot check panicked".to_owned()))??;
        let mut summary = summary?;
        summary.elapsed_ms = elapsed_ms(started);
        Ok(summary)
    })
}

/// The fold of `summarize` from `header`'s snapshot (its totals and the order states the
/// tail touches, read on demand) or from nothing.
fn summarize_from(
    store: &Store,
    target: Position,
    header: Option<&SnapshotHeader>,
    filter: &Filter,
    progress: &dyn Progress,
    started: Instant,
) -> Result<Summary> {
    let (mut totals, base) = match header {
        Some(header) => {
            let what = format!("snapshot at position {}", header.position);
            let totals = store.snapshot_totals(header.position)?;
            (tables::decode_totals(&what, &totals)?, header.position)
        }
        None => (Totals::default(), Position(0)),
    };
    // The orders the tail touched, as of the event being folded.
    let mut touched: HashMap<OrderId, OrderState> = HashMap::new();
    let events_applied = fold_tail(store, base, target, filter, progress, |event| {
        let state = match touched.entry(event.order_id.clone()) {
            Entry::Occupied(entry) => Some(entry.into_mut()),
            Entry::Vacant(entry) => match header {
                Some(header) => store
                    .snapshot_order_state(header.position, &event.order_id)?
                    .map(|state| entry.insert(state)),
                None => None,
            },
        };
        // The same status moves as `Book::apply`, on the states the tail touches.
        match state {
            Some(state) => {
                let before = state.status;
                apply_to(state, event);
                if state.status != before {
                    totals
                        .move_order(Some(before), state.status)
                        .map_err(|reason| moved_wrongly(event.position, reason))?;
                }
            }
            None => {
                let Some(placed) = apply(None, event) else {
                    return Ok(());
                };
                totals
                    .move_order(None, placed.status)
                    .map_err(|reason| moved_wrongly(event.position, reason))?;
                touched.insert(event.order_id.clone(), placed);
            }
        }
        totals.max_occurred_at = totals.max_occurred_at.max(Some(event.occurred_at));
        Ok(())
    })?;
    Ok(Summary {
        position: target,
        head_hash: hash_at(store, target)?,
        totals,
        events_applied,
        snapshot: header.cloned(),
        elapsed_ms: elapsed_ms(started),
    })
}

/// The newest snapshot usable for a replay to `target` under `filter`, if allowed.
fn newest_usable(
    store: &Store,
    target: Position,
    filter: &Filter,
    use_snapshots: bool,
) -> Result<Option<SnapshotHeader>> {
    if !use_snapshots {
        return Ok(None);
    }
    Ok(store
        .snapshot_headers()?
        .into_iter()
        .filter(|h| usable(h, target, filter))
        .max_by_key(|h| h.position))
}

/// Folds the events after `base` up to `target` that `filter`'s `--valid-at` admits, in
/// position order; returns how many.
fn fold_tail(
    store: &Store,
    base: Position,
    target: Position,
    filter: &Filter,
    progress: &dyn Progress,
    mut fold: impl FnMut(&Event) -> Result<()>,
) -> Result<u64> {
    let start = Position(base.0 + 1);
    progress.begin("replaying", Some(target.0.saturating_sub(base.0)));
    let mut events_applied = 0;
    if target >= start {
        // Reading and decoding the log (iterator, blocks, CRC, bincode, id checks) costs
        // more than folding; a second thread reads while this one folds, a chunk at a time,
        // and decoding is shared out between the two (see `read_ahead`).
        let queued = AtomicUsize::new(0);
        std::thread::scope(|scope| -> Result<()> {
            for chunk in read_ahead(scope, store, start, target, &queued) {
                queued.fetch_sub(1, Ordering::Relaxed);
                let events = chunk?.into_events()?;
                progress.advance(events.len() as u64);
                for event in &events {
                    if filter.valid_at.is_none_or(|v| event.occurred_at <= v) {
                        fold(event)?;
                        events_applied += 1;
                    }
                }
            }
            Ok(())
        })?;
    }
    progress.end();
    Ok(events_applied)
}

/// Events per chunk handed from the reading thread to the folding one: large enough that
/// the hand-over costs nothing per event, small enough that a short tail starts at once.
const READ_AHEAD_CHUNK_EVENTS: usize = 1_024;

/// Chunks the reader may be ahead of the fold (bounds the memory of a replay).
const READ_AHEAD_CHUNKS_MAX: usize = 4;

/// The reader decodes a chunk itself while at least this many wait for the folder (the
/// folder is the slower one); with fewer waiting, the folder is idle or about to be, and
/// decodes the next chunk itself.
const DECODE_WHILE_QUEUED_MIN: usize = 2;

/// Reads the events `start..=target` on a scoped thread, in chunks, in position order;
/// `queued` counts the chunks sent and not yet taken (the receiver decrements it). Whichever
/// thread is the slower at the moment is spared the decoding: the reader decodes a chunk
/// only when the folder has `DECODE_WHILE_QUEUED_MIN` waiting. The first error ends the
/// stream; dropping the receiver stops the reader.
fn read_ahead<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    store: &'scope Store,
    start: Position,
    target: Position,
    queued: &'scope AtomicUsize,
) -> std::sync::mpsc::Receiver<Result<EventChunk>> {
    let (chunks, receiver) = std::sync::mpsc::sync_channel(READ_AHEAD_CHUNKS_MAX);
    scope.spawn(move || {
        let decode_here = || queued.load(Ordering::Relaxed) >= DECODE_WHILE_QUEUED_MIN;
        for chunk in store.event_chunks(start, target, READ_AHEAD_CHUNK_EVENTS, decode_here) {
            queued.fetch_add(1, Ordering::Relaxed);
            if chunks.send(chunk).is_err() {
                return;
            }
        }
    });
    receiver
}

fn hash_at(store: &Store, target: Position) -> Result<Hash> {
    if target.0 == 0 {
        return Ok(chain::GENESIS);
    }
    store
        .event(target)?
        .map(|e| e.hash)
        .ok_or_else(|| Error::Corruption {
            position: target,
            reason: "missing event below the head".to_owned(),
        })
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A status count of a snapshot's totals that cannot take the tail's move: the stored totals
/// disagree with the stored orders.
fn moved_wrongly(position: Position, reason: String) -> Error {
    Error::Corruption {
        position,
        reason: format!("the snapshot's status counts: {reason}"),
    }
}
