//! The generic reads: point reads and scans of any column family, each through this
//! process's view (`view`) unless a caller passes its own RocksDB snapshot, and the writer's
//! own read of what it last wrote.

use std::sync::Arc;

use rocksdb::{DBRawIterator, ReadOptions, Snapshot};

use super::{Store, View, storage};
use crate::error::Result;

impl Store {
    /// Rows of column family `cf` from key `from` on (bounded by `opts`) as of `at` (`None`:
    /// through the view), each mapped by `map` from the key and value borrowed from
    /// RocksDB's buffers: no allocation or copy per row (RocksDB's allocating iterator boxes
    /// every key and value it yields).
    pub(super) fn raw_scan<'s, T, F: FnMut(&[u8], &[u8]) -> Result<T> + 's>(
        &'s self,
        cf: &str,
        opts: ReadOptions,
        at: Option<&Snapshot<'_>>,
        from: &[u8],
        map: F,
    ) -> impl Iterator<Item = Result<T>> + use<'s, T, F> {
        let mut opts = opts;
        let view = self.read_at(&mut opts, at);
        let mut rows = self.db.raw_iterator_cf_opt(self.cf(cf), opts);
        rows.seek(from);
        RawScan {
            rows,
            map,
            started: false,
            done: false,
            _view: view,
        }
    }

    /// Sets `opts` to read as of `at`, or else through this process's view (`view`);
    /// returns the view, to keep while the read lasts.
    pub(super) fn read_at(
        &self,
        opts: &mut ReadOptions,
        at: Option<&Snapshot<'_>>,
    ) -> Option<Arc<View>> {
        if let Some(snapshot) = at {
            opts.set_snapshot(snapshot);
            return None;
        }
        let view = self.view();
        if let Some(view) = &view {
            opts.set_snapshot(view.snapshot());
        }
        view
    }

    /// The value of `key` in column family `cf`, if it is stored.
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.get_pinned(cf, key)?.map(|value| value.to_vec()))
    }

    /// The value of `key` in `cf` as the writer last wrote it, durable or not: only for the
    /// writer, which builds each commit on the one before.
    pub fn get_written(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(cf), key).map_err(storage)
    }

    /// A point read of `key` in `cf` through this process's view (`view`).
    pub(super) fn get_pinned(
        &self,
        cf: &str,
        key: &[u8],
    ) -> Result<Option<rocksdb::DBPinnableSlice<'_>>> {
        self.get_pinned_at(cf, key, None)
    }

    /// A point read of `key` in `cf` as of `at` (`None`: through the view).
    pub(super) fn get_pinned_at(
        &self,
        cf: &str,
        key: &[u8],
        at: Option<&Snapshot<'_>>,
    ) -> Result<Option<rocksdb::DBPinnableSlice<'_>>> {
        let mut opts = ReadOptions::default();
        // The value is pinned apart from the snapshot: the view may go once it is read.
        let _view = self.read_at(&mut opts, at);
        self.db
            .get_pinned_cf_opt(self.cf(cf), key, &opts)
            .map_err(storage)
    }

    /// Every row of a column family under `prefix`, in key order, mapped by `map` from its
    /// key and value (borrowed: see `raw_scan`).
    pub fn scan<'s, T, F: FnMut(&[u8], &[u8]) -> Result<T> + 's>(
        &'s self,
        cf: &str,
        prefix: &[u8],
        map: F,
    ) -> impl Iterator<Item = Result<T>> + use<'s, T, F> {
        self.scan_at(cf, prefix, None, map)
    }

    /// Rows of `cf` with keys in `from..to` (`None`: to the end) as of `at` (`None`: the view),
    /// mapped as by `scan`.
    pub(super) fn scan_range<'s, T, F: FnMut(&[u8], &[u8]) -> Result<T> + 's>(
        &'s self,
        cf: &str,
        (from, to): (&[u8], Option<&[u8]>),
        at: Option<&Snapshot<'_>>,
        map: F,
    ) -> impl Iterator<Item = Result<T>> + use<'s, T, F> {
        let mut opts = ReadOptions::default();
        // Scans read whole column families (snapshots, live projections): see `events_from`.
        opts.fill_cache(false);
        if let Some(to) = to {
            opts.set_iterate_upper_bound(to.to_vec());
        }
        self.raw_scan(cf, opts, at, from, map)
    }

    /// `scan` as of a RocksDB snapshot (`None`: the view).
    pub(super) fn scan_at<'s, T, F: FnMut(&[u8], &[u8]) -> Result<T> + 's>(
        &'s self,
        cf: &str,
        prefix: &[u8],
        at: Option<&Snapshot<'_>>,
        map: F,
    ) -> impl Iterator<Item = Result<T>> + use<'s, T, F> {
        let upper = prefix_upper_bound(prefix);
        self.scan_range(cf, (prefix, upper.as_deref()), at, map)
    }
}

/// The iterator of `Store::raw_scan`.
struct RawScan<'s, F> {
    rows: DBRawIterator<'s>,
    map: F,
    /// Whether the first row was returned (the seek placed the iterator on it).
    started: bool,
    /// The end or an error was reached.
    done: bool,
    /// The view the rows are read through, kept while they are.
    _view: Option<Arc<View>>,
}

impl<T, F: FnMut(&[u8], &[u8]) -> Result<T>> Iterator for RawScan<'_, F> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if self.done {
            return None;
        }
        if self.started {
            self.rows.next();
        }
        self.started = true;
        match self.rows.item() {
            Some((key, value)) => Some((self.map)(key, value)),
            None => {
                // Not valid: the end, or a read error that ended the iteration.
                self.done = true;
                self.rows.status().err().map(|e| Err(storage(e)))
            }
        }
    }
}

/// Read options of a scan of the log: it reads each block once, so caching the blocks would
/// only evict hot ones (and freeing a full cache made closing the store slow).
pub(super) fn log_scan_options() -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.fill_cache(false);
    opts
}

/// The smallest key greater than every key starting with `prefix` (None: no bound).
pub(super) fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < 0xFF {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

/// Read options as of `at` (`None`: the latest data).
pub(super) fn read_options(at: Option<&Snapshot<'_>>) -> ReadOptions {
    let mut opts = ReadOptions::default();
    if let Some(snapshot) = at {
        opts.set_snapshot(snapshot);
    }
    opts
}
