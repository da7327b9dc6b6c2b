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
//! Only reads through the store API; the fold itself is `projection::Book::apply`.

use std::time::Instant;

use crate::domain::{Hash, Position};
use crate::error::{Error, Result};
use crate::ledger::{Filter, Progress};
use crate::projection::{Book, PROJECTION_VERSION};
use crate::store::{SnapshotHeader, Store, chain};

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

/// Replays the ledger to `filter`'s point; `use_snapshots` false folds from position 1.
pub fn replay(
    store: &Store,
    filter: &Filter,
    use_snapshots: bool,
    progress: &dyn Progress,
) -> Result<Replay> {
    let started = Instant::now();
    let target = target_position(store, filter)?;
    let snapshot = if use_snapshots {
        store
            .snapshot_headers()?
            .into_iter()
            .filter(|h| usable(h, target, filter))
            .max_by_key(|h| h.position)
    } else {
        None
    };
    let mut book = match &snapshot {
        Some(header) => store.load_snapshot(header)?,
        None => Book::default(),
    };
    let start = Position(book.position.0 + 1);
    progress.begin("replaying", Some(target.0.saturating_sub(book.position.0)));
    let mut events_applied = 0;
    if target >= start {
        for event in store.events_from(start) {
            let event = event?;
            if event.position > target {
                break;
            }
            progress.advance(1);
            if filter.valid_at.is_none_or(|v| event.occurred_at <= v) {
                book.apply(&event);
                events_applied += 1;
            }
        }
    }
    progress.end();
    let head_hash = if target.0 == 0 {
        chain::GENESIS
    } else {
        store
            .event(target)?
            .map(|e| e.hash)
            .ok_or_else(|| Error::Corruption {
                position: target,
                reason: "missing event below the head".to_owned(),
            })?
    };
    book.position = target;
    Ok(Replay {
        book,
        position: target,
        head_hash,
        events_applied,
        snapshot,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
