//! Snapshots: the live projection rows copied, as stored bytes, under a position; their
//! headers in `meta`; the digest of the live rows. `check` reads a snapshot
//! back against its digest. The store copies and checks bytes; what the rows mean is
//! `projection::tables`'s.

mod check;

pub use check::RowDecoder;

use rocksdb::{Snapshot, WriteBatch};
use serde::{Deserialize, Serialize};

use super::{
    Access, CF_META, CF_SNAPSHOTS, Durability, Head, Store, corrupt, decode, options, storage,
};
use crate::domain::{Hash, OrderId, OrderState, Position, Timestamp};
use crate::error::{Error, Result};
use crate::format::digest::Digester;
use crate::format::{DIGEST_TABLES, codec, keys};

/// What a snapshot covers; stored in `meta` under `snapshot/<position>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// The last position folded into it.
    pub position: Position,
    /// The latest occurred_at of any event it contains (for `--valid-at` replays).
    pub max_occurred_at: Option<Timestamp>,
    /// Digest of its content (`digest`), checked when it is loaded.
    pub digest: Hash,
    /// `projection::PROJECTION_VERSION` of the code that wrote it.
    pub projection_version: u32,
    /// Orders it holds.
    pub orders: u64,
    /// When it was taken.
    pub created_at: Timestamp,
}

/// What a snapshot records of the projections it copies, which the store cannot know: it
/// copies their bytes. The ledger gives it (`ledger::PROJECTIONS`).
#[derive(Clone, Copy, Debug)]
pub struct Projections {
    /// `projection::PROJECTION_VERSION`, recorded in each header.
    pub version: u32,
    /// The encoded totals of a ledger without events (no totals record yet).
    pub empty_totals: fn() -> Vec<u8>,
    /// The latest occurred_at recorded in an encoded totals record.
    pub max_occurred_at: fn(&[u8]) -> Result<Option<Timestamp>>,
}

/// Name prefix of the table file a snapshot is written into, in the ledger directory,
/// before RocksDB takes it in (`Store::write_snapshot`). One left by a crash holds nothing
/// the ledger needs; a writer's open removes it (`Store::remove_snapshot_leftovers`).
pub const SNAPSHOT_FILE_PREFIX: &str = ".ordo-snapshot-";

/// What `Store::live_rows` walked.
struct LiveRows {
    /// The stored totals record.
    totals: Vec<u8>,
    /// Order-state rows.
    orders: u64,
    /// Their digest.
    digest: Hash,
}

impl Store {
    /// The digest of the stored projections at the head (equal to the digest of the book
    /// they hold, `projection::digest`), computed over their stored bytes without decoding
    /// them: a rebuild compares it with the digest of the book it folded. A row whose bytes
    /// were damaged makes the digests differ (the rebuild reports it), it does not stop the
    /// rebuild.
    pub fn live_digest(&self, projections: &Projections) -> Result<Hash> {
        let point = self.read_point();
        Ok(self
            .live_rows(point.snapshot(), projections, |_, _, _| Ok(()))?
            .digest)
    }

    /// Walks every live projection row as stored, read through the RocksDB `snapshot`
    /// (consistent: it sits between two commits): the totals first, then the tables in the
    /// digest's order (`format::DIGEST_TABLES`); `visit` gets the snapshot row kind, key and
    /// value, in the order of their snapshot keys. The digest takes the totals last. The one
    /// place that hashes stored rows the way `projection::tables::book_rows` hashes a book.
    fn live_rows(
        &self,
        snapshot: &Snapshot<'_>,
        projections: &Projections,
        mut visit: impl FnMut(u8, &[u8], &[u8]) -> Result<()>,
    ) -> Result<LiveRows> {
        let at = Some(snapshot);
        let totals = self
            .get_pinned_at(CF_META, keys::META_TOTALS, at)?
            .map_or_else(|| (projections.empty_totals)(), |bytes| bytes.to_vec());
        visit(keys::SNAPSHOT_TOTALS, &[], &totals)?;
        let mut hasher = Digester::default();
        let mut orders = 0u64;
        for (live_cf, kind, hash_key) in DIGEST_TABLES {
            let rows = self.scan_at(live_cf, &[], at, |key, value| {
                if kind == keys::SNAPSHOT_ORDER {
                    orders += 1;
                }
                if hash_key {
                    hasher.update(key);
                }
                hasher.update(value);
                visit(kind, key, value)
            });
            rows.collect::<Result<()>>()?;
        }
        hasher.update(&totals);
        Ok(LiveRows {
            totals,
            orders,
            digest: hasher.finalize(),
        })
    }

    /// Snapshots the stored projections at the head, durably, and returns the header.
    ///
    /// Rows are copied as stored bytes from one RocksDB snapshot of the live column
    /// families (consistent: it sits between two commits), hashed in the digest's order on
    /// the way, into one table file that RocksDB then takes into the `snapshots` column
    /// family as it is (synced, linked, named in its manifest): memory stays constant
    /// whatever the number of orders, commits go on meanwhile, and the rows are written
    /// once, past the write-ahead log, the memtables and their flushes. The header is
    /// written last, with fsync. Until then the snapshot does not exist for readers.
    pub fn write_snapshot(
        &self,
        projections: &Projections,
        created_at: Timestamp,
    ) -> Result<SnapshotHeader> {
        let written = self.write_snapshot_then(projections, created_at, || true)?;
        Ok(written.expect("a snapshot told to go on is written"))
    }

    /// `write_snapshot`, calling `taken` as soon as the RocksDB snapshot it copies from is
    /// taken (a writer that waits for it before its next commit fixes the position the
    /// snapshot covers), and writing only if `taken` returns true (else `None`: the view is
    /// dropped and nothing is written).
    pub fn write_snapshot_then(
        &self,
        projections: &Projections,
        created_at: Timestamp,
        taken: impl FnOnce() -> bool,
    ) -> Result<Option<SnapshotHeader>> {
        // In the writer's process, the view: the last durable commit.
        let point = self.read_point();
        let snapshot = point.snapshot();
        if !taken() {
            return Ok(None);
        }
        let head: Head = self
            .meta_record_at(keys::META_HEAD, Some(snapshot))?
            .ok_or_else(|| corrupt("meta", "the ledger has no head record"))?;
        let position = head.position;
        if self.has_snapshot_rows(position)? {
            // Rows of an earlier snapshot at this position whose header was deleted or
            // never written: deleted first, so that none of them outlives the new ones.
            let mut batch = WriteBatch::default();
            self.delete_snapshot_rows(&mut batch, position);
            self.write(batch, Durability::Sync)?;
        }
        let file = tempfile::Builder::new()
            .prefix(SNAPSHOT_FILE_PREFIX)
            .suffix(".sst")
            .tempfile_in(&self.path)
            .map_err(|e| Error::io(&self.path, e))?
            .into_temp_path();
        // The column family's own table options (compression, block size), so that the
        // file is as RocksDB would have written it.
        let table_options = options::options(
            &rocksdb::Cache::new_lru_cache(0),
            Some(CF_SNAPSHOTS),
            Access::ReadWrite,
        )?;
        let mut table = rocksdb::SstFileWriter::create(&table_options);
        table.open(&file).map_err(storage)?;
        let rows = self.live_rows(snapshot, projections, |kind, key, value| {
            table
                .put(keys::snapshot_key(position, kind, key), value)
                .map_err(storage)
        })?;
        // Synced before it returns.
        table.finish().map_err(storage)?;
        let mut ingest = rocksdb::IngestExternalFileOptions::default();
        // Linked into the database, not copied; RocksDB removes this name once it is in.
        ingest.set_move_files(true);
        self.db
            .ingest_external_file_cf_opts(self.cf(CF_SNAPSHOTS), &ingest, vec![&file])
            .map_err(storage)?;
        let header = SnapshotHeader {
            position,
            max_occurred_at: (projections.max_occurred_at)(&rows.totals)?,
            digest: rows.digest,
            projection_version: projections.version,
            orders: rows.orders,
            created_at,
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_META),
            keys::snapshot_header_key(position),
            codec::encode_record(&header),
        );
        self.write(batch, Durability::Sync)?;
        Ok(Some(header))
    }

    /// Whether rows are stored under the snapshot position `position`: in RocksDB's latest
    /// data, not through the view, which may predate an earlier attempt's file.
    fn has_snapshot_rows(&self, position: Position) -> Result<bool> {
        let prefix = keys::snapshot_prefix(position);
        let mut rows = self.db.raw_iterator_cf(self.cf(CF_SNAPSHOTS));
        rows.seek(prefix);
        if rows.valid() {
            return Ok(rows.key().is_some_and(|key| key.starts_with(&prefix)));
        }
        rows.status().map_err(storage)?;
        Ok(false)
    }

    /// Removes the table files of snapshots a crash interrupted before RocksDB took them
    /// in (`SNAPSHOT_FILE_PREFIX`). Called by a writer's open, before any snapshot of its
    /// own can be under way.
    pub(super) fn remove_snapshot_leftovers(path: &std::path::Path) -> Result<()> {
        let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(path, e))?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(SNAPSHOT_FILE_PREFIX))
            {
                tracing::warn!(
                    "removing {}: a snapshot's table file left by an interrupted snapshot",
                    entry.path().display()
                );
                std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            }
        }
        Ok(())
    }

    fn delete_snapshot_rows(&self, batch: &mut WriteBatch, position: Position) {
        let from = keys::snapshot_prefix(position);
        let to = keys::snapshot_prefix(Position(position.0.saturating_add(1)));
        batch.delete_range_cf(self.cf(CF_SNAPSHOTS), from, to);
    }

    /// Every snapshot header, oldest first.
    pub fn snapshot_headers(&self) -> Result<Vec<SnapshotHeader>> {
        self.scan(CF_META, keys::META_SNAPSHOT_PREFIX, |_, value| {
            decode("snapshot header", value)
        })
        .collect()
    }

    /// The totals row of the snapshot at `position`, as stored (checked by
    /// `verify_snapshot`).
    pub fn snapshot_totals(&self, position: Position) -> Result<Vec<u8>> {
        let what = format!("snapshot at position {position}");
        let raw = self
            .get_pinned(
                CF_SNAPSHOTS,
                &keys::snapshot_key(position, keys::SNAPSHOT_TOTALS, &[]),
            )?
            .ok_or_else(|| corrupt(&what, "no totals row"))?;
        Ok(raw.to_vec())
    }

    /// One order's state in the snapshot at `position` (not checked against the digest on
    /// its own: callers verify the snapshot first).
    pub fn snapshot_order_state(
        &self,
        position: Position,
        order_id: &OrderId,
    ) -> Result<Option<OrderState>> {
        let key = keys::snapshot_key(
            position,
            keys::SNAPSHOT_ORDER,
            keys::order_state_key(order_id),
        );
        let Some(raw) = self.get_pinned(CF_SNAPSHOTS, &key)? else {
            return Ok(None);
        };
        let what = format!("snapshot at position {position}");
        let state = codec::decode_state(&raw).map_err(|reason| corrupt(&what, reason))?;
        if &state.order_id != order_id {
            return Err(corrupt(
                &what,
                format!("the row of {order_id} holds {}", state.order_id),
            ));
        }
        Ok(Some(state))
    }

    /// Deletes the snapshot at `position`.
    pub fn delete_snapshot(&self, position: Position) -> Result<()> {
        let mut batch = WriteBatch::default();
        self.delete_snapshot_rows(&mut batch, position);
        batch.delete_cf(self.cf(CF_META), keys::snapshot_header_key(position));
        self.write(batch, Durability::Sync)
    }
}
