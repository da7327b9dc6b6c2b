//! The ledger: the library's public face. Open a directory, append through the sequencer,
//! read events and order states (now or at any point in time), verify, import and export.
//! The CLI and the (later) HTTP server are thin layers over this.

mod import;
mod input;
pub mod json;
pub mod params;
pub mod proof;
mod verify;
mod whole_ledger;
mod write;

use std::path::Path;
use std::sync::Arc;

pub use crate::domain::Filter;
pub use crate::progress::{NoProgress, Progress};
pub use import::{BATCH_EVENTS_DEFAULT, BatchResult, ImportOptions, export, import};
pub use input::{
    LINE_BYTES_MAX, Lines, NewEvent, Preserved, parse_envelope, parse_event, parse_event_direct,
    parse_event_id, parse_event_value,
};
pub use verify::VerifyReport;
pub use whole_ledger::{RebuildReport, SnapshotInfo};
pub use write::stage::AppendResult;
pub use write::{BATCH_EVENTS_MAX, COMMIT_EVENTS_MAX, Sequencer, WriterStats};

use crate::domain::{Event, Hash, OrderId, OrderState, Position, apply};
use crate::error::{Error, Result};
use crate::projection::{PROJECTION_VERSION, Totals, tables};
use crate::store::{Access, Durability, Head, Projections, Store};

/// What snapshots record of the projections, which the store copies as bytes.
pub(crate) const PROJECTIONS: Projections = Projections {
    version: PROJECTION_VERSION,
    empty_totals,
    max_occurred_at,
};

fn empty_totals() -> Vec<u8> {
    crate::format::codec::encode_record(&Totals::default())
}

fn max_occurred_at(totals: &[u8]) -> Result<Option<crate::domain::Timestamp>> {
    Ok(tables::decode_totals("totals", totals)?.max_occurred_at)
}

/// An open ledger. Opened for writing it owns the directory's lock and the sequencer.
pub struct Ledger {
    store: Arc<Store>,
    sequencer: Option<Sequencer>,
    /// The leader this ledger is a read replica of (`ordo follow`), read at open: its own
    /// appends are refused, naming it.
    replica_of: Option<String>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.store.path())
            .field("writer", &self.sequencer.is_some())
            .finish()
    }
}

/// What `ordo stats` reports.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Events stored.
    pub events: u64,
    /// Orders (streams).
    pub orders: u64,
    /// Position of the last event.
    pub head_position: Position,
    /// Hash of the last event.
    pub head_hash: String,
    /// Snapshots stored.
    pub snapshots: u64,
    /// Bytes of the ledger's files on disk.
    pub bytes: u64,
}

impl Ledger {
    /// Opens the ledger in `path`, with fsync'ed commits when writing.
    pub fn open(path: &Path, access: Access) -> Result<Ledger> {
        Ledger::open_with(path, access, Durability::Sync)
    }

    /// Opens the ledger in `path` with the given commit durability.
    pub fn open_with(path: &Path, access: Access, durability: Durability) -> Result<Ledger> {
        Ledger::open_reporting(path, access, durability, &crate::progress::NoProgress)
    }

    /// Opens the ledger in `path`; a writer opening a ledger written before the Merkle tree
    /// was kept builds the tree first, once, reporting to `progress`.
    pub fn open_reporting(
        path: &Path,
        access: Access,
        durability: Durability,
        progress: &dyn crate::progress::Progress,
    ) -> Result<Ledger> {
        let store = Arc::new(Store::open(path, access)?);
        let sequencer = match access {
            Access::ReadWrite | Access::ReadWriteBrief => {
                let head = store.head()?;
                if !store.merkle_kept()? {
                    tracing::warn!(
                        "this ledger was written before ordo kept a Merkle tree: building it once over {} events",
                        head.position
                    );
                    progress.begin("building the Merkle tree", Some(head.position.0));
                    store.build_merkle(head.position, &mut |n| progress.advance(n))?;
                    progress.end();
                }
                Some(Sequencer::start(store.clone(), head, durability)?)
            }
            Access::ReadOnly => None,
        };
        let replica_of = store.replica_of()?;
        Ok(Ledger {
            store,
            sequencer,
            replica_of,
        })
    }

    /// The underlying store (reads only; writes go through the sequencer).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The writer, or the one error for every write asked of a ledger opened for reading
    /// (a caller's mistake, so invalid input).
    pub(super) fn sequencer(&self) -> Result<&Sequencer> {
        self.sequencer.as_ref().ok_or_else(|| {
            Error::InvalidInput(
                "the ledger was opened for reading; open it for writing (Access::ReadWrite) to change it"
                    .to_owned(),
            )
        })
    }

    /// The writer for new events: refused on a read replica, whose events come only from
    /// its leader's stream.
    pub(super) fn appender(&self) -> Result<&Sequencer> {
        if let Some(leader) = &self.replica_of {
            return Err(Error::InvalidInput(format!(
                "this ledger is a read replica following {leader}; append to its leader (or promote it: `ordo config replica_of none`)"
            )));
        }
        self.sequencer()
    }

    /// The leader this ledger is a read replica of, if it is one.
    pub fn replica_of(&self) -> Option<&str> {
        self.replica_of.as_deref()
    }

    /// Marks the ledger as a read replica of `leader` (its appends are then refused, from
    /// the next open), or with `None` promotes it to a writer of its own.
    pub fn set_replica_of(&self, leader: Option<String>) -> Result<()> {
        self.sequencer()?
            .exclusive(move |store: &Store| store.set_replica_of(leader.as_deref()))
    }

    /// Appends events a replica received from its leader's stream, in one durable commit:
    /// each carries its position, times and hash (`import --preserve`), and the batch is
    /// refused whole unless it continues this ledger exactly.
    pub fn replicate(&self, events: Vec<(u64, NewEvent)>) -> Result<Vec<AppendResult>> {
        assert!(
            events.iter().all(|(_, e)| e.preserved.is_some()),
            "a replica stores its leader's events as they are"
        );
        self.sequencer()?.submit(
            events
                .into_iter()
                .map(|(line, e)| (Some(line), e))
                .collect(),
        )
    }

    /// Appends one event and waits until it is durable.
    pub fn append(&self, event: NewEvent) -> Result<AppendResult> {
        let mut results = self.appender()?.submit(vec![(None, event)])?;
        Ok(results.pop().expect("one event submitted, one result"))
    }

    /// Appends a batch atomically (all or none) in one durable commit. Each event carries
    /// its input line number for error messages.
    pub fn append_batch(&self, events: Vec<(u64, NewEvent)>) -> Result<Vec<AppendResult>> {
        self.appender()?.submit(numbered(events))
    }

    /// `append` for async callers (the server): the same durable commit, awaited.
    pub async fn append_async(&self, event: NewEvent) -> Result<AppendResult> {
        let mut results = self.appender()?.submit_async(vec![(None, event)]).await?;
        Ok(results.pop().expect("one event submitted, one result"))
    }

    /// `append_batch` for async callers (the server): the same durable commit, awaited.
    pub async fn append_batch_async(
        &self,
        events: Vec<(u64, NewEvent)>,
    ) -> Result<Vec<AppendResult>> {
        self.appender()?.submit_async(numbered(events)).await
    }

    /// What the writer has committed since the ledger was opened (`None` when read-only).
    pub fn writer_stats(&self) -> Option<WriterStats> {
        self.sequencer.as_ref().map(Sequencer::stats)
    }

    /// The position of the last durable commit, updated after every commit (`None` when
    /// read-only).
    pub fn committed(&self) -> Option<tokio::sync::watch::Receiver<Position>> {
        self.sequencer.as_ref().map(Sequencer::committed)
    }

    /// The head of the log.
    pub fn head(&self) -> Result<Head> {
        self.store.head()
    }

    /// The log from position `from` (inclusive) to `to` (inclusive), stopping before the
    /// first event recorded after `as_of`: what `export` writes and the server's
    /// `GET /v1/events` pages through.
    pub fn log(
        &self,
        from: Position,
        to: Option<Position>,
        as_of: Option<crate::domain::Timestamp>,
    ) -> impl Iterator<Item = Result<Event>> + '_ {
        self.store
            .events_from(Position(from.0.max(1)))
            // recorded_at increases with position, so the first event past either bound
            // ends it.
            .take_while(move |event| {
                event.as_ref().map_or(true, |e| {
                    to.is_none_or(|to| e.position <= to) && as_of.is_none_or(|t| e.recorded_at <= t)
                })
            })
    }

    /// The events of one order that pass `filter`, in version order. `NotFound` if the
    /// order has no events at all.
    pub fn history(&self, order_id: &OrderId, filter: &Filter) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        let mut any = false;
        for event in self.store.order_events(order_id) {
            let event = event?;
            any = true;
            if filter.admits(&event) {
                events.push(event);
            }
        }
        if !any {
            return Err(order_not_found(order_id));
        }
        Ok(events)
    }

    /// The state of one order as `filter` sees it: a fold of the events it admits. Without
    /// a filter, the `order_state` projection (which always equals that fold).
    pub fn state(&self, order_id: &OrderId, filter: &Filter) -> Result<OrderState> {
        if filter.is_unfiltered() {
            return self
                .store
                .order_state(order_id)?
                .ok_or_else(|| order_not_found(order_id));
        }
        let state = self.history(order_id, filter)?.iter().fold(None, apply);
        state.ok_or_else(|| {
            Error::NotFound(format!(
                "order {order_id} had not been placed at that point ({})",
                filter.describe()
            ))
        })
    }

    /// Checks every stored event: checksums, decoding, gapless positions and versions, the
    /// indexes and the hash chain. `progress` is told of each event checked.
    pub fn verify(&self, progress: &dyn Progress) -> Result<VerifyReport> {
        verify::verify(&self.store, progress)
    }

    /// Counts and sizes.
    pub fn stats(&self) -> Result<Stats> {
        let head = self.store.head()?;
        Ok(Stats {
            events: head.position.0,
            orders: head.orders,
            head_position: head.position,
            head_hash: head.hash.to_hex(),
            snapshots: self.store.snapshot_headers()?.len() as u64,
            bytes: self.store.disk_bytes()?,
        })
    }

    /// The hash of the event at `position` (the genesis value for 0).
    pub fn hash_at(&self, position: Position) -> Result<Hash> {
        if position.0 == 0 {
            return Ok(crate::format::chain::GENESIS);
        }
        self.store
            .event(position)?
            .map(|e| e.hash)
            .ok_or_else(|| Error::NotFound(format!("no event at position {position}")))
    }
}

/// The system clock as a ledger timestamp: the one place the ledger reads the time.
pub(crate) fn clock_now() -> crate::domain::Timestamp {
    crate::domain::Timestamp::from_datetime(chrono::Utc::now())
        .expect("the system clock is between the years 1 and 9999")
}

fn order_not_found(order_id: &OrderId) -> Error {
    Error::NotFound(format!("order {order_id} not found"))
}

/// A batch's events with their input line numbers, as the writer takes them (events
/// without a line are single appends).
fn numbered(events: Vec<(u64, NewEvent)>) -> Vec<(Option<u64>, NewEvent)> {
    events
        .into_iter()
        .map(|(line, e)| (Some(line), e))
        .collect()
}
