//! The log and what is read by order: events by position, one order's stream, event ids,
//! order states and the status index, the head; and the commit that appends to them.

use std::sync::atomic::Ordering;

use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions};

use super::{
    CF_EVENT_IDS, CF_EVENTS, CF_META, CF_ORDER_INDEX, CF_ORDER_STATE, CF_STATUS_ORDERS, Durability,
    Fault, Head, RowWrite, Store, Written, corrupt, decode, log_scan_options, read_options,
    storage,
};
use crate::domain::{Event, EventId, OrderId, OrderState, Position, Status, Version};
use crate::error::{Error, Result};
use crate::format::{codec, keys};

/// What one commit writes: events in position order, the order states they produce, the
/// projection rows they change, and the new head.
pub struct Commit<'a> {
    /// New events, contiguous positions following the current head.
    pub events: &'a [Event],
    /// The state of every order those events touched.
    pub states: Vec<&'a OrderState>,
    /// The head after the commit.
    pub head: Head,
    /// The aggregate projections' rows the events change (`projection::tables::delta_writes`).
    pub rows: Vec<RowWrite>,
}

impl Store {
    /// The head: last position, its hash, its recorded_at, and the order count. Checked
    /// against the last stored event. In the writer's process both are read from its view
    /// (the last durable commit): read apart, a commit landing between the two reads made
    /// them disagree, and a busy ledger looked damaged to a concurrent reader (the relay
    /// inside `ordo serve` stopped on it). A reader's instance changes only when it catches
    /// up, and a secondary instance has no snapshots.
    pub fn head(&self) -> Result<Head> {
        let view = self.view();
        self.head_at(view.as_ref().map(|v| v.snapshot()))
    }

    /// The head as the writer last wrote it, durable or not: only for the writer, after a
    /// failed commit (what RocksDB holds is then the truth).
    pub fn written_head(&self) -> Result<Head> {
        let snapshot = self.db.snapshot();
        self.head_at(Some(&snapshot))
    }

    fn head_at(&self, snapshot: Option<&rocksdb::Snapshot<'_>>) -> Result<Head> {
        let raw = self
            .db
            .get_cf_opt(self.cf(CF_META), keys::META_HEAD, &read_options(snapshot))
            .map_err(storage)?
            .ok_or_else(|| Error::Storage("the ledger has no head record".to_owned()))?;
        let head = codec::decode_head(&raw).map_err(|reason| Error::Corruption {
            position: Position(0),
            reason: format!("head record: {reason}"),
        })?;
        let last = self.last_position(snapshot)?;
        if last != head.position {
            return Err(Error::Corruption {
                // The first position where the log and the head disagree.
                position: Position(last.min(head.position).0 + 1),
                reason: format!(
                    "the head record says position {} but the last stored event is at {last}",
                    head.position
                ),
            });
        }
        Ok(head)
    }

    fn last_position(&self, at: Option<&rocksdb::Snapshot<'_>>) -> Result<Position> {
        let mut iter =
            self.db
                .iterator_cf_opt(self.cf(CF_EVENTS), read_options(at), IteratorMode::End);
        match iter.next() {
            None => Ok(Position(0)),
            Some(item) => {
                let (key, _) = item.map_err(storage)?;
                event_key_position(&key)
            }
        }
    }

    /// The event at `position`, decoded and checked.
    pub fn event(&self, position: Position) -> Result<Option<Event>> {
        let raw = self.get_pinned(CF_EVENTS, &keys::event_key(position))?;
        raw.map(|bytes| decode_checked(position, &bytes))
            .transpose()
    }

    /// Events from position `from` (inclusive) on, in position order, each decoded and
    /// checked against its key.
    pub fn events_from(&self, from: Position) -> impl Iterator<Item = Result<Event>> + '_ {
        self.raw_scan(
            CF_EVENTS,
            log_scan_options(),
            None,
            &keys::event_key(from),
            |key, value| decode_checked(event_key_position(key)?, value),
        )
    }

    /// Positions of one order's events, in version order, with their versions.
    pub fn order_positions(
        &self,
        order_id: &OrderId,
    ) -> impl Iterator<Item = Result<(Version, Position)>> + '_ {
        let prefix = keys::order_prefix(order_id);
        let mut upper = prefix.clone();
        *upper.last_mut().expect("the prefix ends with 0x00") = 1;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(upper);
        let view = self.read_at(&mut opts, None);
        let prefix_len = prefix.len();
        self.db
            .iterator_cf_opt(
                self.cf(CF_ORDER_INDEX),
                opts,
                IteratorMode::From(&prefix, Direction::Forward),
            )
            .map(move |item| {
                // The view the index is read through lives as long as the iterator.
                let _view = &view;
                let (key, value) = item.map_err(storage)?;
                let version = key
                    .get(prefix_len..)
                    .and_then(|v| <[u8; 8]>::try_from(v).ok())
                    .map(|v| Version(u64::from_be_bytes(v)));
                match (version, keys::decode_position(&value)) {
                    (Some(version), Some(position)) => Ok((version, position)),
                    _ => Err(Error::Corruption {
                        position: Position(0),
                        reason: "malformed order index entry".to_owned(),
                    }),
                }
            })
    }

    /// The events of one order, in version order.
    pub fn order_events(&self, order_id: &OrderId) -> impl Iterator<Item = Result<Event>> + '_ {
        self.order_positions(order_id).map(move |item| {
            let (version, position) = item?;
            let event = self.event(position)?.ok_or_else(|| Error::Corruption {
                position,
                reason: "the order index points to a missing event".to_owned(),
            })?;
            if event.version != version {
                return Err(Error::Corruption {
                    position,
                    reason: format!(
                        "the order index says version {version}, the event says {}",
                        event.version
                    ),
                });
            }
            Ok(event)
        })
    }

    /// The position stored for (order, version), if any.
    pub fn version_position(
        &self,
        order_id: &OrderId,
        version: Version,
    ) -> Result<Option<Position>> {
        let raw = self.get_pinned(CF_ORDER_INDEX, &keys::order_index_key(order_id, version))?;
        Ok(raw.and_then(|v| keys::decode_position(&v)))
    }

    /// The current state of one order, from the `order_state` projection.
    pub fn order_state(&self, order_id: &OrderId) -> Result<Option<OrderState>> {
        self.order_state_at(order_id, None)
    }

    /// `order_state` as of `at` (`None`: through the view).
    fn order_state_at(
        &self,
        order_id: &OrderId,
        at: Option<&rocksdb::Snapshot<'_>>,
    ) -> Result<Option<OrderState>> {
        let raw = self.get_pinned_at(CF_ORDER_STATE, keys::order_state_key(order_id), at)?;
        raw.map(|bytes| {
            let state = codec::decode_state(&bytes).map_err(|reason| Error::Corruption {
                position: Position(0),
                reason: format!("state of order {order_id}: {reason}"),
            })?;
            assert_eq!(
                &state.order_id, order_id,
                "an order_state row is keyed by its own order id"
            );
            Ok(state)
        })
        .transpose()
    }

    /// The position of the event with this id, if it is stored.
    pub fn event_position(&self, event_id: &EventId) -> Result<Option<Position>> {
        let raw = self.get_pinned(CF_EVENT_IDS, &keys::event_id_key(event_id))?;
        Ok(raw.and_then(|v| keys::decode_position(&v)))
    }

    /// Writes one commit atomically: events, index entries, event ids, order states, the
    /// aggregate projections and the head, in one `WriteBatch`, without waiting for the disk.
    /// Readers see none of it (`view`) until `publish`, which is for after a `sync` that
    /// began once this returned. Refused after a failed sync.
    pub fn write_commit(&self, commit: &Commit<'_>) -> Result<Written> {
        if let (Some(first), Some(last)) = (commit.events.first(), commit.events.last()) {
            assert_eq!(
                last.position.0 - first.position.0 + 1,
                commit.events.len() as u64,
                "a commit's positions are contiguous"
            );
            assert_eq!(
                last.position, commit.head.position,
                "the head is the last event"
            );
            assert_eq!(
                last.hash, commit.head.hash,
                "the head hash is the last event's"
            );
        }
        if self.sync_failed.load(Ordering::SeqCst) {
            return Err(Error::Storage(
                "an earlier sync of the write-ahead log failed".to_owned(),
            ));
        }
        let batch = self.commit_batch(commit);
        let fault = self.fault.swap(Fault::None as u8, Ordering::SeqCst);
        if fault == Fault::BeforeWrite as u8 {
            return Err(Error::Storage("injected fault before the write".to_owned()));
        }
        self.writing();
        // Not synced here, and (`manual_wal_flush`) not handed to the OS either unless
        // RocksDB's 1 MiB log buffer overflows: `sync` does both for every commit written
        // before it.
        let mut opts = WriteOptions::default();
        opts.set_sync(false);
        if let Err(e) = self.db.write_opt(batch, &opts) {
            self.unwritten();
            return Err(storage(e));
        }
        Ok(self.written(commit.head.position, fault == Fault::AfterWrite as u8))
    }

    /// Makes every commit written so far durable: flushes RocksDB's log buffer and, with
    /// `Durability::Sync`, fsyncs the log. A failed sync is final for this process: what
    /// was written since the last good one may be lost, and the page cache may have dropped
    /// it (a later sync would not say so), so every later commit is refused.
    pub fn sync(&self, durability: Durability) -> Result<()> {
        match self.db.flush_wal(durability == Durability::Sync) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.sync_failed.store(true, Ordering::SeqCst);
                Err(storage(e))
            }
        }
    }

    /// The `WriteBatch` of `commit`.
    fn commit_batch(&self, commit: &Commit<'_>) -> WriteBatch {
        let (events, index, ids, states, meta) = (
            self.cf(CF_EVENTS),
            self.cf(CF_ORDER_INDEX),
            self.cf(CF_EVENT_IDS),
            self.cf(CF_ORDER_STATE),
            self.cf(CF_META),
        );
        let mut batch = WriteBatch::default();
        for event in commit.events {
            batch.put_cf(
                events,
                keys::event_key(event.position),
                codec::encode_event(event),
            );
        }
        // The other keys go into the batch sorted, column family by column family: RocksDB
        // inserts them into its memtables in batch order, and a search for a key close to
        // the previous one finds the skip list's nodes on its way still in the CPU cache.
        let mut index_keys: Vec<_> = commit
            .events
            .iter()
            .map(|e| (keys::order_index_key(&e.order_id, e.version), e.position))
            .collect();
        index_keys.sort_unstable();
        for (key, position) in index_keys {
            batch.put_cf(index, key, keys::encode_position(position));
        }
        let mut id_keys: Vec<_> = commit
            .events
            .iter()
            .map(|e| (keys::event_id_key(&e.event_id), e.position))
            .collect();
        id_keys.sort_unstable();
        for (key, position) in id_keys {
            batch.put_cf(ids, key, keys::encode_position(position));
        }
        let mut sorted_states = commit.states.clone();
        sorted_states.sort_unstable_by_key(|s| keys::order_state_key(&s.order_id));
        for state in sorted_states {
            batch.put_cf(
                states,
                keys::order_state_key(&state.order_id),
                codec::encode_state(state),
            );
        }
        // Already in key order, table by table.
        for row in &commit.rows {
            match &row.value {
                Some(value) => batch.put_cf(self.cf(row.cf), &row.key, value),
                None => batch.delete_cf(self.cf(row.cf), &row.key),
            }
        }
        batch.put_cf(meta, keys::META_HEAD, codec::encode_head(&commit.head));
        batch
    }

    /// Every order's current state, in order-id order.
    pub fn order_states(&self) -> impl Iterator<Item = Result<OrderState>> + '_ {
        self.scan(CF_ORDER_STATE, &[], |_, value| decode("order_state", value))
    }

    /// The current state of every order in `status`, in order-id order. The index and the
    /// states are read at one point (in the writer's process, one view): read apart, a
    /// commit changing an order's status in between made the index look wrong.
    pub fn orders_in_status(
        &self,
        status: Status,
    ) -> impl Iterator<Item = Result<OrderState>> + '_ {
        let prefix = [keys::status_byte(status)];
        // A reader instance has no view; it changes only when it catches up.
        let view = self.view();
        let upper = super::prefix_upper_bound(&prefix);
        let at = view.as_ref().map(|v| v.snapshot());
        let mut opts = ReadOptions::default();
        opts.fill_cache(false);
        if let Some(upper) = upper {
            opts.set_iterate_upper_bound(upper);
        }
        let view_kept = view.clone();
        self.raw_scan(CF_STATUS_ORDERS, opts, at, &prefix, move |key, _| {
            let (_, order_id) = keys::decode_status_order_key(key)
                .ok_or_else(|| corrupt("status_orders", "malformed key"))?;
            let at = view_kept.as_ref().map(|v| v.snapshot());
            let state = self.order_state_at(&order_id, at)?.ok_or_else(|| {
                corrupt("status_orders", format!("order {order_id} has no state"))
            })?;
            if state.status != status {
                return Err(corrupt(
                    "status_orders",
                    format!(
                        "order {order_id} is listed as {} but is {}",
                        status.as_str(),
                        state.status.as_str()
                    ),
                ));
            }
            Ok(state)
        })
    }
}

/// The position an event key names, or corruption.
pub(super) fn event_key_position(key: &[u8]) -> Result<Position> {
    keys::decode_event_key(key).ok_or_else(|| Error::Corruption {
        position: Position(0),
        reason: format!("malformed event key of {} bytes", key.len()),
    })
}

/// Decodes an event read at `position` and checks it claims that position.
pub(super) fn decode_checked(position: Position, bytes: &[u8]) -> Result<Event> {
    let event =
        codec::decode_event(bytes).map_err(|reason| Error::Corruption { position, reason })?;
    if event.position != position {
        return Err(Error::Corruption {
            position,
            reason: format!(
                "the record stored at position {position} says position {}",
                event.position
            ),
        });
    }
    Ok(event)
}
