//! What a writer does when it closes: it flushes its memtables when the write-ahead logs a
//! reader would replay have grown (`FLUSH_ON_CLOSE_*`), and a brief writer, which runs no
//! compactions, compacts when level 0 has grown past `BRIEF_L0_FILES_MAX`. Nothing here is
//! needed for durability (every acknowledged commit is in the fsync'ed log); it keeps the
//! next opens fast.

use std::fs;
use std::sync::atomic::Ordering;

use super::{Access, COLUMN_FAMILIES, Store, wal};

/// A writer closing with more than this in its write-ahead logs flushes its memtables, so
/// that later read-only opens do not replay a large write-ahead log: each replays all of
/// it, about 4 ms per MiB here (1.7 MiB took `ordo state` from 11.6 to 19.1 ms; 4 MiB, the
/// limit before issue 25, was most of the CLI row of the benchmark). Below it, the replay
/// costs less than the tables a flush would add. The single events of `ordo append`
/// (about 500 bytes of log each) are flushed by `FLUSH_ON_CLOSE_LOGS_MAX` instead.
pub const FLUSH_ON_CLOSE_BYTES_MIN: u64 = 64 * 1024;

/// A writer closing with more write-ahead logs than this flushes too: a writer keeps the
/// logs it recovered (a new one starts at each open), and every open checks and replays
/// each of them.
pub const FLUSH_ON_CLOSE_LOGS_MAX: usize = 16;

/// A brief writer (`Access::ReadWriteBrief`) closing with more level-0 tables than this
/// in a column family compacts before it closes. Brief writers start no compactions, and
/// every open reads all of each level-0 table's index and filter: without this, commands
/// that each flush a few tiny tables would slow every later open without bound. RocksDB
/// compacts at 4 (`level0_file_num_compaction_trigger`); twice that spreads the cost over
/// more commands.
pub const BRIEF_L0_FILES_MAX: u64 = 8;

/// Longest a brief writer's close waits for the compaction `BRIEF_L0_FILES_MAX` asks for;
/// one cut short is resumed by the next writer that compacts.
const BRIEF_COMPACTION_SECONDS_MAX: u64 = 60;

impl Drop for Store {
    fn drop(&mut self) {
        if self._lock.is_none() || self.sync_failed.load(Ordering::SeqCst) {
            // A reader writes nothing; after a failed sync, flushing the memtables would
            // make durable what its clients were told had failed.
            return;
        }
        // Measured by the logs a reader would replay, not by the memtables' size: that
        // counts their bloom filters' arenas too (several MiB even when empty), which made
        // every close flush, one tiny table per column family for each `ordo append`.
        let logs = wal::log_files(&self.path).unwrap_or_default();
        let log_bytes: u64 = logs
            .iter()
            .filter_map(|log| fs::metadata(log).ok())
            .map(|m| m.len())
            .sum();
        let cfs: Vec<&rocksdb::ColumnFamily> = COLUMN_FAMILIES
            .iter()
            .filter_map(|name| self.db.cf_handle(name))
            .collect();
        if (log_bytes >= FLUSH_ON_CLOSE_BYTES_MIN || logs.len() > FLUSH_ON_CLOSE_LOGS_MAX)
            && let Err(e) = self
                .db
                .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())
        {
            // Only costs the next reader time: everything is in the fsync'ed WAL.
            tracing::warn!("flushing memtables on close failed: {e}");
        }
        if self.access == Access::ReadWriteBrief {
            self.bound_level0(&cfs);
        }
    }
}

impl Store {
    /// A brief writer's close: compacts when a column family has more than
    /// `BRIEF_L0_FILES_MAX` level-0 tables, waiting for it (at most
    /// `BRIEF_COMPACTION_SECONDS_MAX`). Failures only cost later opens time.
    fn bound_level0(&self, cfs: &[&rocksdb::ColumnFamily]) {
        let most = self.level0_tables_most(cfs);
        if most <= BRIEF_L0_FILES_MAX {
            return;
        }
        tracing::info!("{most} tables in level 0: compacting before closing");
        for cf in cfs {
            if let Err(e) = self
                .db
                .set_options_cf(cf, &[("disable_auto_compactions", "false")])
            {
                tracing::warn!("enabling compactions on close failed: {e}");
                return;
            }
        }
        let mut wait = rocksdb::WaitForCompactOptions::default();
        wait.set_timeout(BRIEF_COMPACTION_SECONDS_MAX * 1_000_000);
        if let Err(e) = self.db.wait_for_compact(&wait) {
            tracing::warn!("compacting level 0 on close did not finish: {e}");
        }
    }

    /// The most level-0 tables any of `cfs` has (0 when RocksDB cannot say).
    fn level0_tables_most(&self, cfs: &[&rocksdb::ColumnFamily]) -> u64 {
        cfs.iter()
            .filter_map(|cf| {
                self.db
                    .property_int_value_cf(cf, "rocksdb.num-files-at-level0")
                    .ok()
                    .flatten()
            })
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventData, EventType, OrderId};
    use crate::ledger::{Ledger, NewEvent};
    use std::path::Path;

    use crate::store::{COLUMN_FAMILIES, Durability};

    fn level0_tables_most(path: &Path) -> u64 {
        let store = Store::open(path, Access::ReadOnly).expect("reader");
        let cfs: Vec<&rocksdb::ColumnFamily> = COLUMN_FAMILIES
            .iter()
            .filter_map(|name| store.db.cf_handle(name))
            .collect();
        store.level0_tables_most(&cfs)
    }

    #[test]
    fn brief_writers_that_each_flush_on_close_keep_level_0_bounded() {
        let tmp = tempfile::tempdir().expect("tmp");
        let order = OrderId::new("ORD-1").expect("id");
        let note = |i: usize| {
            EventData::from_json(
                EventType::NoteAdded,
                serde_json::json!({"text": format!("{i}")}),
            )
            .expect("note")
        };
        let placed = EventData::from_json(
            EventType::OrderPlaced,
            serde_json::json!({"customer_id": "C-1", "currency": "EUR",
                               "lines": [{"sku": "A", "quantity": 1, "unit_price": 100}]}),
        )
        .expect("placed");
        let mut most_seen = 0;
        // Every (FLUSH_ON_CLOSE_LOGS_MAX + 1)th close flushes: about 12 flushes, each a
        // level-0 table per column family written to, more than BRIEF_L0_FILES_MAX.
        let opens = (FLUSH_ON_CLOSE_LOGS_MAX + 1) * (BRIEF_L0_FILES_MAX as usize + 4);
        for i in 0..opens {
            let ledger = Ledger::open_with(tmp.path(), Access::ReadWriteBrief, Durability::NoSync)
                .expect("brief writer");
            let data = if i == 0 { placed.clone() } else { note(i) };
            ledger
                .append(NewEvent::new(order.clone(), data))
                .expect("append");
            drop(ledger);
            if i % (FLUSH_ON_CLOSE_LOGS_MAX + 1) == FLUSH_ON_CLOSE_LOGS_MAX {
                let most = level0_tables_most(tmp.path());
                assert!(
                    most <= BRIEF_L0_FILES_MAX,
                    "{most} level-0 tables after {} brief writers",
                    i + 1
                );
                most_seen = most_seen.max(most);
            }
        }
        assert!(
            most_seen >= 2,
            "the closes flushed tables ({most_seen} at most)"
        );
        let reader = Ledger::open(tmp.path(), Access::ReadOnly).expect("reader");
        assert_eq!(
            reader.head().expect("head").position.0,
            opens as u64,
            "nothing lost"
        );
    }
}
