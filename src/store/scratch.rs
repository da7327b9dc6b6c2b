//! Scratch space for work larger than memory: a throw-away RocksDB in a temporary
//! directory inside the ledger directory (same disk, same permissions), written without WAL
//! or fsync, deleted when dropped. `import`'s validation pass spills the order states and
//! event ids it has staged here, so that validating a file of any size needs bounded memory.
//!
//! Nothing in it is ledger data: a crash may leave a directory behind, which the next
//! writer removes (`remove_stale`).

use std::fs;
use std::path::Path;

use rocksdb::{DB, Options, WriteBatch, WriteOptions};
use serde::{Serialize, de::DeserializeOwned};

use crate::domain::{EventId, OrderId, OrderState};
use crate::error::{Error, Result};

use super::storage;
use crate::format::{codec, keys};

/// Prefix of scratch directories inside a ledger directory.
pub const SCRATCH_DIR_PREFIX: &str = "scratch-";

const STATE_TAG: u8 = b's';
const ID_TAG: u8 = b'i';

/// About the bytes a spilled staged id takes in a write batch (key, record, lengths).
const SPILLED_ID_BYTES: usize = 128;

/// About the bytes a spilled order state takes in a write batch.
const SPILLED_STATE_BYTES: usize = 320;

/// A temporary key-value table for staged order states and event ids.
pub struct Scratch {
    db: DB,
    // Dropped after `db` (fields drop in order), so RocksDB closes before its files go.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("path", &self.db.path())
            .finish()
    }
}

fn state_key(order_id: &OrderId) -> Vec<u8> {
    let mut key = vec![STATE_TAG];
    key.extend_from_slice(keys::order_state_key(order_id));
    key
}

fn id_key(event_id: &EventId) -> Vec<u8> {
    let mut key = vec![ID_TAG];
    key.extend_from_slice(&keys::event_id_key(event_id));
    key
}

impl Scratch {
    /// Creates an empty scratch table in a new directory under `ledger_dir`.
    pub fn create(ledger_dir: &Path) -> Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix(SCRATCH_DIR_PREFIX)
            .tempdir_in(ledger_dir)
            .map_err(|e| Error::io(ledger_dir, e))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Most lookups miss (a new order, a new event id): bloom filters answer them.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        // And in the memtable, where the most recently spilled keys are (see `options`).
        opts.set_memtable_prefix_bloom_ratio(super::options::MEMTABLE_BLOOM_RATIO);
        opts.set_memtable_whole_key_filtering(true);
        let db = DB::open(&opts, dir.path()).map_err(storage)?;
        Ok(Scratch { db, _dir: dir })
    }

    /// Removes scratch directories that a crashed process left in `ledger_dir`. Only for a
    /// writer holding the ledger's lock (no one else can be using them).
    pub fn remove_stale(ledger_dir: &Path) -> Result<()> {
        let entries = fs::read_dir(ledger_dir).map_err(|e| Error::io(ledger_dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(ledger_dir, e))?;
            let is_scratch = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(SCRATCH_DIR_PREFIX));
            if is_scratch && entry.path().is_dir() {
                fs::remove_dir_all(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            }
        }
        Ok(())
    }

    /// Stores states and ids (replacing earlier values of the same keys). Not durable: the
    /// table dies with the process anyway.
    pub fn put<'a, S: Serialize + 'a>(
        &self,
        states: impl Iterator<Item = (&'a OrderId, &'a OrderState)>,
        ids: impl Iterator<Item = (&'a EventId, &'a S)>,
    ) -> Result<()> {
        // Sorted (ids before states: their tag sorts first): the memtable inserts keys in
        // batch order, and a key next to the last one is found with the skip list's nodes
        // still in the CPU cache. The callers' hash maps yield them in random order.
        let mut ids: Vec<_> = ids
            .map(|(event_id, value)| (id_key(event_id), value))
            .collect();
        ids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut states: Vec<_> = states
            .map(|(order_id, state)| (state_key(order_id), state))
            .collect();
        states.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        // Sized up front (about a staged id's and an order state's bytes each): grown by
        // doubling, a spill's batch of tens of MB was copied again at every step.
        let mut batch = WriteBatch::with_capacity_bytes(
            ids.len() * SPILLED_ID_BYTES + states.len() * SPILLED_STATE_BYTES,
        );
        for (key, value) in ids {
            batch.put(key, codec::encode_record(value));
        }
        for (key, state) in states {
            batch.put(key, codec::encode_state(state));
        }
        let mut opts = WriteOptions::default();
        opts.disable_wal(true);
        self.db.write_opt(batch, &opts).map_err(storage)
    }

    /// The state stored for `order_id`.
    pub fn state(&self, order_id: &OrderId) -> Result<Option<OrderState>> {
        self.get(&state_key(order_id), codec::decode_state)
    }

    /// The value stored for `event_id`.
    pub fn id<S: DeserializeOwned>(&self, event_id: &EventId) -> Result<Option<S>> {
        self.get(&id_key(event_id), codec::decode_record)
    }

    fn get<T>(
        &self,
        key: &[u8],
        decode: impl Fn(&[u8]) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        let Some(raw) = self.db.get_pinned(key).map_err(storage)? else {
            return Ok(None);
        };
        decode(&raw)
            .map(Some)
            .map_err(|reason| Error::Storage(format!("scratch table unreadable: {reason}")))
    }
}
