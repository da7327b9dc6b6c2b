//! What a writer does when it closes: it flushes its memtables when the write-ahead logs a
//! reader would replay have grown (`FLUSH_ON_CLOSE_*`), and it compacts level 0 of a column
//! family that has grown past `L0_FILES_MAX` tables or `L0_BYTES_MAX` bytes. Nothing here is
//! needed for durability (every acknowledged commit is in the fsync'ed log); it keeps the
//! next opens fast.

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::Ordering;

use super::{COLUMN_FAMILIES, Store, wal};

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

/// A writer closing with more level-0 tables than this in a column family compacts that
/// level first. Every open of a writer reads all of each level-0 table's index and filter
/// partitions (RocksDB prefetches them for level 0, whatever the pinning options say), and
/// brief writers start no compactions: without this, commands that each flush a few tiny
/// tables would slow every later open without bound. RocksDB compacts at 4
/// (`level0_file_num_compaction_trigger`); twice that spreads the cost over more commands.
pub const L0_FILES_MAX: u64 = 8;

/// A writer closing with more than this in level 0 of a column family compacts that level
/// first (see `L0_FILES_MAX`). A long writer (`ordo serve`, `ordo import`) flushes large
/// memtables and its compactions stop when it closes: the benchmark's ledger was left with
/// 290 MB in level 0, whose 4.5 MB of index and filter partitions took about 10 ms and
/// 1,500 page faults of every later `ordo append` (issue 25, docs/benchmarks.md).
pub const L0_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// Longest a writer's close waits for the compaction of level 0 it asked for; one cut
/// short is resumed by the next writer that compacts.
const L0_COMPACTION_SECONDS_MAX: u64 = 60;

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
        self.bound_level0();
    }
}

impl Store {
    /// A writer's close: compacts level 0 of every column family holding more than
    /// `L0_FILES_MAX` tables or `L0_BYTES_MAX` bytes there, waiting for it (at most
    /// `L0_COMPACTION_SECONDS_MAX`). Failures only cost later opens time.
    fn bound_level0(&self) {
        let level0 = match self.level0() {
            Ok(level0) => level0,
            Err(e) => {
                tracing::warn!("reading the tables of level 0 on close failed: {e}");
                return;
            }
        };
        let heavy: Vec<(&rocksdb::ColumnFamily, Level0)> = level0
            .iter()
            .filter(|(_, l0)| l0.tables > L0_FILES_MAX || l0.bytes > L0_BYTES_MAX)
            .filter_map(|(name, l0)| Some((self.db.cf_handle(name)?, *l0)))
            .collect();
        if heavy.is_empty() {
            return;
        }
        let (tables, bytes) = heavy
            .iter()
            .fold((0, 0), |(t, b), (_, l0)| (t + l0.tables, b + l0.bytes));
        tracing::info!(
            "compacting {} MiB of recently flushed tables ({tables} in level 0) before closing, so that later commands open quickly",
            bytes / (1024 * 1024)
        );
        // A compaction trigger of one table: RocksDB compacts each of these column families'
        // level 0 into the level below (a brief writer's compactions are enabled first).
        for (cf, _) in &heavy {
            if let Err(e) = self.db.set_options_cf(
                cf,
                &[
                    ("disable_auto_compactions", "false"),
                    ("level0_file_num_compaction_trigger", "1"),
                ],
            ) {
                tracing::warn!("asking for a compaction of level 0 on close failed: {e}");
                return;
            }
        }
        let mut wait = rocksdb::WaitForCompactOptions::default();
        wait.set_timeout(L0_COMPACTION_SECONDS_MAX * 1_000_000);
        if let Err(e) = self.db.wait_for_compact(&wait) {
            tracing::warn!("compacting level 0 on close did not finish: {e}");
        }
    }

    /// Level 0 of each column family that has tables there, by name.
    fn level0(&self) -> Result<HashMap<String, Level0>, rocksdb::Error> {
        let mut level0: HashMap<String, Level0> = HashMap::new();
        for file in self.db.live_files()? {
            if file.level == 0 {
                let l0 = level0.entry(file.column_family_name).or_default();
                l0.tables += 1;
                l0.bytes += file.size as u64;
            }
        }
        Ok(level0)
    }
}

/// The tables of one column family's level 0.
#[derive(Clone, Copy, Debug, Default)]
struct Level0 {
    tables: u64,
    bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventData, EventType, OrderId};
    use crate::ledger::{Ledger, NewEvent};
    use std::path::Path;

    use crate::store::{Access, Durability};

    fn level0(path: &Path) -> HashMap<String, Level0> {
        let store = Store::open(path, Access::ReadOnly).expect("reader");
        store.level0().expect("live files")
    }

    fn level0_tables_most(path: &Path) -> u64 {
        level0(path).values().map(|l0| l0.tables).max().unwrap_or(0)
    }

    fn placed() -> EventData {
        EventData::from_json(
            EventType::OrderPlaced,
            serde_json::json!({"customer_id": "C-1", "currency": "EUR",
                               "lines": [{"sku": "A", "quantity": 1, "unit_price": 100}]}),
        )
        .expect("placed")
    }

    #[test]
    fn a_writer_closing_with_megabytes_in_level_0_compacts_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let order = OrderId::new("ORD-1").expect("id");
        let ledger =
            Ledger::open_with(tmp.path(), Access::ReadWrite, Durability::NoSync).expect("writer");
        ledger
            .append(NewEvent::new(order.clone(), placed()))
            .expect("placed");
        // Notes of 1,000 characters that do not compress (six bits of noise each): about
        // 11 MB of log records in all.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut noise = 0x9E37_79B9_7F4A_7C15_u64;
        let mut text = || {
            (0..1_000)
                .map(|_| {
                    noise ^= noise << 13;
                    noise ^= noise >> 7;
                    noise ^= noise << 17;
                    char::from(ALPHABET[(noise % 64) as usize])
                })
                .collect::<String>()
        };
        let batches = 14;
        for _ in 0..batches {
            let events = (0..1_000)
                .map(|i| {
                    let data = EventData::from_json(
                        EventType::NoteAdded,
                        serde_json::json!({ "text": text() }),
                    )
                    .expect("note");
                    (i, NewEvent::new(order.clone(), data))
                })
                .collect();
            ledger.append_batch(events).expect("batch");
        }
        // What a long writer leaves when its compactions stop at close: the memtables
        // flushed into level 0.
        let store = ledger.store();
        let cfs: Vec<&rocksdb::ColumnFamily> = COLUMN_FAMILIES
            .iter()
            .filter_map(|name| store.db.cf_handle(name))
            .collect();
        store
            .db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())
            .expect("flush");
        let before = store.level0().expect("live files");
        let events = before
            .get(crate::store::CF_EVENTS)
            .copied()
            .unwrap_or_default();
        assert!(
            events.bytes > L0_BYTES_MAX,
            "the setup leaves {} bytes in level 0 of the log",
            events.bytes
        );
        drop(ledger);
        for (cf, l0) in level0(tmp.path()) {
            assert!(
                l0.bytes <= L0_BYTES_MAX && l0.tables <= L0_FILES_MAX,
                "{cf}: {l0:?} in level 0 after the close"
            );
        }
        let reader = Ledger::open(tmp.path(), Access::ReadOnly).expect("reader");
        assert_eq!(
            reader.head().expect("head").position.0,
            1 + batches * 1_000,
            "nothing lost"
        );
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
        let placed = placed();
        let mut most_seen = 0;
        // Every (FLUSH_ON_CLOSE_LOGS_MAX + 1)th close flushes: about 12 flushes, each a
        // level-0 table per column family written to, more than L0_FILES_MAX.
        let opens = (FLUSH_ON_CLOSE_LOGS_MAX + 1) * (L0_FILES_MAX as usize + 4);
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
                    most <= L0_FILES_MAX,
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
