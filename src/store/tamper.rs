//! What tests use to break a ledger on purpose: faults injected into the next commit and
//! raw reads and writes that bypass every check. Hidden from the docs; the ledger itself
//! never calls them.

use rocksdb::{IteratorMode, WriteBatch};

use super::{CF_EVENTS, Durability, Store, storage};
use crate::domain::Position;
use crate::error::Result;
use crate::format::keys;

/// A fault injected into the next commit, to prove that the writer survives a failing
/// disk (docs/reliability.md). Only tests use it.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// No fault.
    None = 0,
    /// The commit fails before anything is written.
    BeforeWrite = 1,
    /// The batch is written (and synced), then the commit reports a failure, as when an
    /// fsync error is reported for data that did reach the disk.
    AfterWrite = 2,
}

impl Store {
    /// Makes the next commit fail at `fault`. Only for tests of the write path.
    #[doc(hidden)]
    pub fn inject_fault(&self, fault: Fault) {
        self.fault
            .store(fault as u8, std::sync::atomic::Ordering::SeqCst);
    }

    /// Test and tooling access to a raw record, for corruption tests and `verify`.
    #[doc(hidden)]
    pub fn raw_event(&self, position: Position) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.cf(CF_EVENTS), keys::event_key(position))
            .map_err(storage)
    }

    /// Overwrites a raw event record, bypassing every check. Only for tests that prove
    /// `verify` detects tampering; the ledger itself never updates an event.
    #[doc(hidden)]
    pub fn tamper_raw_event(&self, position: Position, bytes: Option<&[u8]>) -> Result<()> {
        self.tamper_raw(CF_EVENTS, &keys::event_key(position), bytes)
    }

    /// Overwrites (or deletes) any raw record, bypassing every check. Only for tests that
    /// prove corruption is detected.
    #[doc(hidden)]
    pub fn tamper_raw(&self, cf: &str, key: &[u8], bytes: Option<&[u8]>) -> Result<()> {
        let mut batch = WriteBatch::default();
        match bytes {
            Some(b) => batch.put_cf(self.cf(cf), key, b),
            None => batch.delete_cf(self.cf(cf), key),
        }
        self.write(batch, Durability::Sync)
    }

    /// Every raw (key, value) of a column family, in key order. Only for tests and tools.
    #[doc(hidden)]
    pub fn raw_rows(&self, cf: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.db
            .iterator_cf(self.cf(cf), IteratorMode::Start)
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage))
            .collect()
    }
}
