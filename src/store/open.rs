//! Opening the RocksDB database itself, as the writer, a read-only reader or a secondary
//! instance beside a running writer; `Store::open_with_recovery` decides the options.

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, DB, Options};

use super::dir::writer_holds_lock;
use super::{Access, storage};
use crate::error::{Error, Result};

/// RocksDB's `max_open_files` for a plain read-only instance (no writer beside it): a table
/// cache of 10 tables (RocksDB keeps 10 of the limit for other files), the least recently
/// used closed when more are needed (tables an iterator is reading stay open). RocksDB
/// opens up to a quarter of the cache's capacity of tables (at most 16) while it opens the
/// database, and all of them with no limit (-1); so a short command opens two, then the
/// ones its reads reach. Measured on the benchmark's ledger (issue 25): `ordo state` p50
/// 13.4 to 8.8 ms; `export`, `verify` and `query orders` within noise.
const READER_OPEN_FILES_MAX: i32 = 20;

/// Opens the RocksDB database in `path` for `access`: the writer as the primary; a reader
/// read-only, or as a secondary instance beside a running writer (its directory returned
/// with it, to be removed after the database closes).
pub(super) fn open_db(
    path: &Path,
    access: Access,
    mut db_opts: Options,
    cfs: Vec<ColumnFamilyDescriptor>,
) -> Result<(DB, Option<tempfile::TempDir>)> {
    Ok(match access {
        Access::ReadWrite | Access::ReadWriteBrief => {
            db_opts.create_if_missing(true);
            db_opts.create_missing_column_families(true);
            // Every writer, brief ones included, opens every table at open (RocksDB's
            // default, unlimited open files) and fails on a damaged one: a reader beside it
            // is a secondary instance, which would fall back silently to an older state
            // past a damaged table, and relies on the writer having opened them all.
            // (Opening them lazily took 4 ms off `ordo append`; not worth that.)
            let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(storage)?;
            (db, None)
        }
        Access::ReadOnly if !writer_holds_lock(path) => {
            // No writer: a plain read-only instance. It fails on a damaged table it opens
            // (footer, index, checksums); a secondary instance instead falls back,
            // silently, to the last state whose tables all open (RocksDB's
            // ManifestTailer), and a read answered for that older ledger with exit 0. It
            // writes nothing in the directory (no info log either).
            //
            // Tables are opened as reads reach them, not all at open: with unlimited open
            // files RocksDB opens every table of every column family first (reading each
            // footer, properties, index and filter), half the time of `ordo state` on a
            // ledger of a million events (issue 25). A read still fails on any damaged
            // table its keys may be in, so no answer comes from a partial ledger; a
            // command that reads no key of a damaged table answers without noticing it,
            // and `ordo verify` reads them all.
            db_opts.set_max_open_files(READER_OPEN_FILES_MAX);
            let db =
                DB::open_cf_descriptors_read_only(&db_opts, path, cfs, false).map_err(storage)?;
            (db, None)
        }
        Access::ReadOnly => {
            // Beside a writer: a secondary instance, not a read-only one: RocksDB
            // supports it beside a live primary (it follows the primary's MANIFEST and
            // WAL, and tolerates files the primary deletes meanwhile). The writer itself
            // opened every table strictly. RocksDB asks for unlimited open files so that
            // it never reopens a file the primary has deleted.
            let dir = tempfile::Builder::new()
                .prefix("ordo-reader-")
                .tempdir()
                .map_err(|e| Error::io(std::env::temp_dir(), e))?;
            db_opts.set_max_open_files(-1);
            let db = DB::open_cf_descriptors_as_secondary(&db_opts, path, dir.path(), cfs)
                .map_err(storage)?;
            db.try_catch_up_with_primary().map_err(storage)?;
            (db, Some(dir))
        }
    })
}
