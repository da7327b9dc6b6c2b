//! The store: the only module that touches RocksDB and the ledger's files. It writes the
//! bytes `format` defines into the nine column families `format` names, and knows the
//! domain's log (events, orders, heads) but not what projection rows mean: a commit's
//! projection rows and a snapshot's decoding come from the caller (`projection::tables`).
//!
//! - this file: opening (locks, WAL check, options; `open` opens RocksDB as a writer,
//!   read-only or secondary reader) and the mapping of RocksDB's errors;
//! - `log`: the events, the per-order indexes and the commit;
//! - `snapshot/`: snapshots; `reconcile`: the rebuild's comparison of stored projection
//!   rows with rebuilt ones, and its write of what differs; `meta`: settings;
//! - `merkle`: the Merkle tree's nodes, the ledger id and the checkpoint origin;
//! - `chunks`: the log read in chunks for a fold; `scratch`: import's dry-run overlay;
//! - `wal`, `recover`, `dir`: the write-ahead log check, `ordo recover`, the lock;
//! - `close`: what a writer does when it closes (flush, level 0 bounded);
//! - `read`: the generic reads (`get`, `scan`) through the view;
//! - `view`: what readers in the writer's process see (durable commits only);
//! - `options`: RocksDB tuning; `tamper`: faults and raw writes for tests.
//!
//! Every commit is one `WriteBatch`, written without a sync (`write_commit`); the writer
//! acknowledges it only after a `sync` (with `Durability::Sync`, an fsync of the WAL) that
//! began after it was written, and `publish`es it to this process's readers first.

mod chunks;
mod close;
mod dir;
mod log;
mod manifest;
mod merkle;
mod meta;
mod open;
mod options;
mod read;
mod reconcile;
mod recover;
mod scratch;
mod snapshot;
mod tamper;
mod view;
pub mod wal;

pub use crate::format::{
    CF_CUSTOMERS, CF_EVENT_IDS, CF_EVENTS, CF_META, CF_ORDER_INDEX, CF_ORDER_STATE, CF_REVENUE,
    CF_SNAPSHOTS, CF_STATUS_ORDERS, COLUMN_FAMILIES, Head, LEDGER_FORMAT_VERSION,
    LEDGER_FORMAT_VERSIONS_READ, RowWrite,
};
pub use chunks::{EventChunk, StoredEvents};
pub use close::{FLUSH_ON_CLOSE_BYTES_MIN, FLUSH_ON_CLOSE_LOGS_MAX, L0_BYTES_MAX, L0_FILES_MAX};
use dir::lock_dir;
pub use log::Commit;
pub use merkle::tree_writes;
pub use meta::Settings;
use open::open_db;
use options::{BLOCK_CACHE_BYTES, WRITE_BUFFERS_BYTES_MAX, options};
use read::{log_scan_options, prefix_upper_bound, read_options};
pub use reconcile::Reconciler;
use recover::damaged_wal;
pub use recover::{Recovered, RecoveryPlan, readable_head};
pub use scratch::{SCRATCH_DIR_PREFIX, Scratch};
pub use snapshot::{Projections, RowDecoder, SNAPSHOT_FILE_PREFIX, SnapshotHeader};
pub use tamper::Fault;
pub use view::Written;
use view::{View, Visible};
use wal::WalState;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rocksdb::{ColumnFamilyDescriptor, DB, WriteBatch, WriteOptions};

use crate::domain::Position;
use crate::error::{Error, Result};
use crate::format::{codec, keys};

/// The name of the lock file a writer holds inside the ledger directory.
pub const LOCK_FILE: &str = "ordo.lock";

/// The file in which a running `ordo serve` leaves its URL, so that a command refused the
/// lock can say where to send its writes. Only read while the lock is held by someone else.
pub const SERVER_FILE: &str = "ordo.server";

/// Longest server URL read back from `SERVER_FILE`.
const SERVER_URL_BYTES_MAX: u64 = 1024;

/// How a ledger is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reading only: works while another process (a writer, `ordo serve`) holds the ledger
    /// (then as a RocksDB secondary instance; beside a brief writer, once it has closed), and
    /// sees everything committed before the open. Fails if the ledger does not exist.
    ReadOnly,
    /// The single writer; creates the ledger on first use.
    ReadWrite,
    /// The single writer, for one short command that commits a few events and closes
    /// (`ordo append`). As `ReadWrite`, without what pays off only over many commits and
    /// costs every open: memtable bloom filters (megabytes zeroed per open) and automatic
    /// compactions (a compaction started by a process that lives 20 ms is cancelled when
    /// it closes, its work lost). Level 0 is kept bounded at close instead
    /// (`L0_FILES_MAX`). Its tables are opened as reads reach them, not all at open; readers
    /// wait for it to close instead of opening beside it (`ordo.lock`, docs/format.md).
    ReadWriteBrief,
}

impl Access {
    /// True for the writer's accesses.
    pub fn writes(self) -> bool {
        self != Access::ReadOnly
    }
}

/// Whether a commit waits for the WAL to reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync the WAL before returning: an acknowledged commit survives a crash or power cut.
    Sync,
    /// Return once the write is in the OS page cache: survives a process crash, not a power
    /// cut. Only for tests and benchmarks that need a negative control.
    NoSync,
}

/// An open ledger database.
pub struct Store {
    /// What readers in a writer's process see (`view`). Declared before `db`: its
    /// snapshots are released before the database closes.
    visible: Visible,
    /// Shared with the views, which hold a snapshot of it.
    db: Arc<DB>,
    path: PathBuf,
    /// Held for a writer's lifetime: the OS releases the lock when the process dies.
    _lock: Option<fs::File>,
    /// A reader opened as a secondary instance, beside a writer that stays.
    secondary: bool,
    /// A fault the next commit suffers (tests of the write path); `Fault::None` normally.
    fault: std::sync::atomic::AtomicU8,
    /// A sync of the write-ahead log failed: what was written since may not be on disk,
    /// and the page cache may have dropped it (so a later sync would not tell). Every
    /// later commit is refused until the ledger is reopened.
    sync_failed: AtomicBool,
}

/// RocksDB's info logs kept (`LOG.old.*`): each open of a writer that stays starts a new
/// one (a brief writer logs to tracing: `options::info_log_to_tracing`), and every open
/// lists the directory.
const INFO_LOGS_KEPT: usize = 10;

/// Why a reader cannot open a ledger whose MANIFEST ends in an edit torn by a power cut:
/// a writer cuts that edit off before it opens (`manifest`), a reader writes nothing. Not
/// damage (exit 5) but a step to take (exit 1). Looked for only once RocksDB has refused
/// the open, so a reader's open reads nothing more when the ledger is whole; if the look
/// itself cannot read the file, RocksDB's refusal stands.
fn torn_manifest_for_reader(path: &Path) -> Option<Error> {
    let torn = manifest::torn_tail(path).ok()??;
    Some(Error::Storage(format!(
        "the last edit of {} (from byte {}: {}) was torn by a power cut and never took effect; a reader changes nothing, so it cannot set it aside: run a command that opens the ledger for writing (`ordo rebuild` does, and writes nothing else when the projections are right), which keeps a copy of the file, cuts the edit off and loses nothing acknowledged (docs/reliability.md)",
        torn.path.display(),
        torn.offset,
        torn.reason
    )))
}

fn storage(e: rocksdb::Error) -> Error {
    if e.kind() == rocksdb::ErrorKind::Corruption {
        // A block, table or log checksum failed: the ledger's files are damaged, which is
        // verification's business (exit 5), not an operational error to retry.
        return Error::Damaged(format!(
            "{}; ordo changed nothing (docs/reliability.md says how to recover)",
            e.into_string()
        ));
    }
    let message = e.into_string();
    // RocksDB's wording buries the one fact the operator needs first.
    if message.contains("No space left on device") {
        return Error::Storage(format!(
            "the disk holding the ledger is full; free space, then retry ({message})"
        ));
    }
    Error::Storage(message)
}

/// How an open treats a write-ahead log that cannot be replayed whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Refuse to open (`Error::Damaged`, naming the file and offset). A tail torn by a
    /// crash is still replayed up to the tear: it holds nothing that was acknowledged.
    Strict,
    /// Replay every log up to its first damaged record and drop the rest. Only
    /// `ordo recover`, after copying the damaged logs aside, opens this way.
    DropAfterDamage,
}

impl Store {
    /// Opens the ledger in `path`, refusing damaged write-ahead logs.
    pub fn open(path: &Path, access: Access) -> Result<Store> {
        Store::open_with_recovery(path, access, Recovery::Strict)
    }

    /// Opens the ledger in `path`, treating damaged write-ahead logs as `recovery` says.
    pub fn open_with_recovery(path: &Path, access: Access, recovery: Recovery) -> Result<Store> {
        let lock = match access {
            Access::ReadWrite => Some(lock_dir(path, false)?),
            Access::ReadWriteBrief => Some(lock_dir(path, true)?),
            Access::ReadOnly => {
                if !Store::exists(path) {
                    return Err(Error::NotFound(format!(
                        "no ledger at {} (a ledger is created by the first write; pass --data-dir or set ORDO_DATA_DIR)",
                        path.display()
                    )));
                }
                None
            }
        };
        // `None`: not checked (`ordo recover` replays up to known damage).
        let logs = match recovery {
            Recovery::Strict => match wal::check_dir(path).map_err(|e| Error::io(path, e))? {
                WalState::Damaged(damage) => return Err(damaged_wal(path, &damage)),
                state => Some(state),
            },
            Recovery::DropAfterDamage => None,
        };
        if access.writes() {
            // An edit torn by a power cut would make RocksDB refuse the whole ledger
            // (`manifest` says why cutting it off loses nothing that was relied on).
            manifest::cut_torn_tail(path).map_err(|e| Error::io(path, e))?;
        }
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut db_opts = options(&cache, None, access)?;
        // All column families' memtables together; bounds the writer's memory.
        db_opts.set_db_write_buffer_size(WRITE_BUFFERS_BYTES_MAX);
        // Replay each log up to its first unreadable record (a tail torn by a crash); the
        // check above has made sure nothing whole follows one (`wal` says why a stricter
        // RocksDB mode would refuse some crashes).
        db_opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        // Tables are opened one after the other: by default RocksDB starts 16 threads per
        // column family to open them, 144 thread starts for a command that reads one order.
        db_opts.set_max_file_opening_threads(1);
        // Compaction's size estimates are not read from every table at open (RocksDB
        // builds them as it goes): an open reads what it needs to answer.
        db_opts.set_skip_stats_update_on_db_open(true);
        db_opts.set_keep_log_file_num(INFO_LOGS_KEPT);
        if access.writes() {
            // Commits are written into RocksDB's log buffer and reach the log file when the
            // syncer flushes and syncs them (`Store::sync`): one write(2) and one fsync for
            // every group written meanwhile. A secondary instance (a reader beside the
            // writer) finds a group in the file once its sync has begun, or earlier when
            // what was written since the last sync overflows the buffer (RocksDB writes it
            // out when a record does not fit: `writable_file_max_buffer_size`, 1 MiB).
            db_opts.set_manual_wal_flush(true);
        }
        if access.writes() && logs == Some(WalState::Whole) {
            // A writer keeps the logs it recovered instead of flushing them into tiny
            // tables at every open (five or so per `ordo append`, which piled up in level 0
            // for every later open to read): the logs stay until a close flushes
            // (`FLUSH_ON_CLOSE_BYTES_MIN`, `FLUSH_ON_CLOSE_LOGS_MAX`). Only when every log
            // is whole: RocksDB does not cut a torn tail off a log it keeps, and a torn log
            // followed by later records is damage (`wal`), so a log torn by a crash is
            // flushed and retired at the next open, as before. The Rust binding has no
            // setter for this option; RocksDB's option string sets it.
            db_opts = db_opts
                .get_options_from_string("avoid_flush_during_recovery=true")
                .map_err(storage)?;
        }
        let cfs = COLUMN_FAMILIES
            .iter()
            .map(|name| {
                Ok(ColumnFamilyDescriptor::new(
                    *name,
                    options(&cache, Some(name), access)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        if access.writes() {
            // Held by the lock above: no snapshot of another process is under way.
            Store::remove_snapshot_leftovers(path)?;
        }
        let (db, secondary) = match open_db(path, access, db_opts, cfs) {
            Ok(opened) => opened,
            Err(Error::Damaged(refusal)) if !access.writes() => {
                return Err(torn_manifest_for_reader(path).unwrap_or(Error::Damaged(refusal)));
            }
            Err(e) => return Err(e),
        };
        let store = Store {
            visible: Visible::default(),
            db: Arc::new(db),
            path: path.to_owned(),
            _lock: lock,
            secondary,
            fault: std::sync::atomic::AtomicU8::new(Fault::None as u8),
            sync_failed: AtomicBool::new(false),
        };
        if access.writes() {
            store.start_view();
        }
        store.check_format(access)?;
        Ok(store)
    }

    /// True when RocksDB has latched a write error (a failed WAL write or sync, a full
    /// disk): it then refuses every write until the ledger is reopened. Probed with a
    /// write-ahead-log note that changes no key (RocksDB exposes no getter for the latch).
    pub fn writes_refused(&self) -> bool {
        if self.sync_failed.load(Ordering::SeqCst) {
            return true;
        }
        let mut probe = WriteBatch::default();
        probe.put_log_data(b"ordo: write probe after a failed commit");
        self.db.write(probe).is_err()
    }

    /// Catches a reader up with the commits its writer made since it opened: true for a
    /// secondary instance (opened beside a writer); false for a read-only instance, which
    /// keeps seeing the ledger as it was when it opened (reopen it instead).
    pub fn catch_up(&self) -> Result<bool> {
        if !self.secondary {
            return Ok(false);
        }
        self.db.try_catch_up_with_primary().map_err(storage)?;
        Ok(true)
    }

    /// Whether `path` holds a ledger (a RocksDB database: its `CURRENT` file).
    pub fn exists(path: &Path) -> bool {
        path.join("CURRENT").is_file()
    }

    /// The ledger directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is created when the ledger is opened")
    }

    fn check_format(&self, access: Access) -> Result<()> {
        let meta = self.cf(CF_META);
        match self.db.get_cf(meta, keys::META_FORMAT).map_err(storage)? {
            Some(v) if matches!(v.as_slice(), [version] if LEDGER_FORMAT_VERSIONS_READ.contains(version)) => {
                Ok(())
            }
            Some(v) => Err(Error::Storage(format!(
                "ledger {} has format version {:?}; this ordo reads versions {LEDGER_FORMAT_VERSIONS_READ:?} (a newer ordo wrote it)",
                self.path.display(),
                v
            ))),
            None if access.writes() => {
                let mut batch = WriteBatch::default();
                batch.put_cf(meta, keys::META_FORMAT, [LEDGER_FORMAT_VERSION]);
                batch.put_cf(meta, keys::META_HEAD, codec::encode_head(&Head::genesis()));
                // A new ledger keeps its Merkle tree from the first event.
                batch.put_cf(meta, keys::META_MERKLE_KEPT, [1u8]);
                batch.put_cf(meta, keys::META_LEDGER_ID, merkle::new_ledger_id()?);
                self.write(batch, Durability::Sync)
            }
            None => Err(Error::Storage(format!(
                "{} is not an ordo ledger (no format version)",
                self.path.display()
            ))),
        }
    }

    /// Writes a batch beside the commits (settings, snapshots, tree nodes, a rebuild) and
    /// shows it to readers (`refresh_view`). With `NoSync` it stays in RocksDB's buffer
    /// until the next synced write or commit (the log is flushed by hand).
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(durability == Durability::Sync);
        self.db.write_opt(batch, &opts).map_err(storage)?;
        self.refresh_view();
        Ok(())
    }

    /// Writes rows outside a commit, in one write (the tree of an older ledger, what a
    /// rebuild found differing).
    fn write_rows(&self, rows: &[RowWrite], durability: Durability) -> Result<()> {
        let mut batch = WriteBatch::default();
        for row in rows {
            match &row.value {
                Some(value) => batch.put_cf(self.cf(row.cf), &row.key, value),
                None => batch.delete_cf(self.cf(row.cf), &row.key),
            }
        }
        self.write(batch, durability)
    }

    /// Bytes used by the ledger's files.
    pub fn disk_bytes(&self) -> Result<u64> {
        let mut total = 0;
        let entries = fs::read_dir(&self.path).map_err(|e| Error::io(&self.path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.path, e))?;
            let meta = entry.metadata().map_err(|e| Error::io(entry.path(), e))?;
            if meta.is_file() {
                total += meta.len();
            }
        }
        Ok(total)
    }

    /// Flushes every memtable, then waits until RocksDB has no flush or compaction running
    /// or due, at most `SETTLE_SECONDS_MAX`. The benchmark starts each timed phase this way:
    /// a command finds a ledger so (the writer before it flushed and compacted level 0 as it
    /// closed), while in one process the phase before leaves its rows in the memtables and
    /// its compactions running.
    pub fn settle(&self) -> Result<()> {
        let mut wait = rocksdb::WaitForCompactOptions::default();
        wait.set_flush(true);
        wait.set_timeout(SETTLE_SECONDS_MAX * 1_000_000);
        self.db.wait_for_compact(&wait).map_err(storage)
    }
}

/// Longest `Store::settle` waits.
pub const SETTLE_SECONDS_MAX: u64 = 600;

/// A corruption error about `what` (position unknown).
fn corrupt(what: &str, reason: impl std::fmt::Display) -> Error {
    Error::Corruption {
        position: Position(0),
        reason: format!("{what}: {reason}"),
    }
}

/// Decodes a stored record; `what` names it in an error.
fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    codec::decode_record(bytes).map_err(|reason| corrupt(what, reason))
}

/// A ledger on a temporary directory holding `orders` placed orders (`ORD-00000`, ...) of
/// `customers` customers, one event each, for the store's tests.
#[cfg(test)]
pub(crate) fn ledger_of_placed_orders(
    orders: usize,
    customers: usize,
) -> (tempfile::TempDir, crate::ledger::Ledger) {
    use crate::domain::{EventData, EventType, OrderId};
    use crate::ledger::{Ledger, NewEvent};
    let tmp = tempfile::tempdir().expect("tmp");
    let ledger =
        Ledger::open_with(tmp.path(), Access::ReadWrite, Durability::NoSync).expect("open");
    for i in 0..orders {
        let data = EventData::from_json(
            EventType::OrderPlaced,
            serde_json::json!({"customer_id": format!("C-{}", i % customers), "currency": "EUR",
                               "lines": [{"sku": "A", "quantity": 1, "unit_price": 100 + i}]}),
        )
        .expect("valid data");
        let order = OrderId::new(format!("ORD-{i:05}")).expect("valid id");
        ledger.append(NewEvent::new(order, data)).expect("append");
    }
    (tmp, ledger)
}
