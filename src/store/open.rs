//! Opening the RocksDB database itself, as the writer, a read-only reader or a secondary
//! instance beside a running writer; `Store::open_with_recovery` decides the options.

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, DB, Options};

use super::dir::writer_holds_lock;
use super::{Access, COLUMN_FAMILIES, storage};
use crate::error::{Error, Result};

/// Opens the RocksDB database in `path` for `access`: the writer as the primary; a reader
/// read-only, or as a secondary instance beside a running writer (its directory returned
/// with it, to be removed after the database closes).
pub(super) fn open_db(
    path: &Path,
    access: Access,
    mut db_opts: Options,
    cfs: [ColumnFamilyDescriptor; COLUMN_FAMILIES.len()],
) -> Result<(DB, Option<tempfile::TempDir>)> {
    Ok(match access {
        Access::ReadWrite | Access::ReadWriteBrief => {
            db_opts.create_if_missing(true);
            db_opts.create_missing_column_families(true);
            let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(storage)?;
            (db, None)
        }
        Access::ReadOnly if !writer_holds_lock(path) => {
            // No writer: a plain read-only instance. It checks every table the MANIFEST
            // names when it opens them (all of them, with unlimited open files), and
            // fails on a damaged one; a secondary instance instead falls back, silently,
            // to the last state whose tables all open (RocksDB's ManifestTailer), and a
            // read answered for that older ledger with exit 0. It writes nothing in the
            // directory (no info log either).
            db_opts.set_max_open_files(-1);
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
