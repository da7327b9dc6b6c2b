//! Opening the RocksDB database itself, as the writer, a read-only reader or a secondary
//! instance beside a running writer; `Store::open_with_recovery` decides the options.

use std::path::Path;
use std::time::{Duration, Instant};

use rocksdb::{ColumnFamilyDescriptor, DB, Options};

use super::dir::{Writer, writer};
use super::options::info_log_to_tracing;
use super::{Access, storage};
use crate::error::Result;

/// RocksDB's `max_open_files` for a plain read-only instance (no writer beside it) and a
/// brief writer (one `ordo append`): a table
/// cache of 10 tables (RocksDB keeps 10 of the limit for other files), the least recently
/// used closed when more are needed (tables an iterator is reading stay open). RocksDB
/// opens up to a quarter of the cache's capacity of tables (at most 16) while it opens the
/// database, and all of them with no limit (-1); so a short command opens two, then the
/// ones its reads reach. Measured on the benchmark's ledger (issue 25): `ordo state` p50
/// 13.4 to 8.8 ms; `export`, `verify` and `query orders` within noise.
const LAZY_OPEN_FILES_MAX: i32 = 20;

/// How long a reader waits for a brief writer to close before it opens beside it as a
/// secondary instance anyway. A brief writer lives for milliseconds; seconds only when it
/// compacts level 0 as it closes (`Store::bound_level0`).
const BRIEF_WRITER_WAIT_MAX: Duration = Duration::from_secs(2);

/// How often a reader looks again whether a brief writer has closed.
const BRIEF_WRITER_POLL: Duration = Duration::from_millis(1);

/// Opens the RocksDB database in `path` for `access`: the writer as the primary; a reader
/// read-only, or as a secondary instance beside a running writer (true then).
///
/// The info logger is set here, on the options as they are finally opened with:
/// `get_options_from_string` (which `Store::open_with_recovery` may call before) returns
/// options that share the logger but not the Rust callback it calls, freed with the old
/// options (rust-rocksdb 0.25), and RocksDB then called freed memory.
pub(super) fn open_db(
    path: &Path,
    access: Access,
    mut db_opts: Options,
    cfs: Vec<ColumnFamilyDescriptor>,
) -> Result<(DB, bool)> {
    Ok(match access {
        Access::ReadWrite | Access::ReadWriteBrief => {
            db_opts.create_if_missing(true);
            db_opts.create_missing_column_families(true);
            // A writer that stays opens every table at open (RocksDB's default, unlimited
            // open files) and fails on a damaged one: a reader beside it is a secondary
            // instance, which would fall back silently to an older state past a damaged
            // table, and relies on the writer having opened them all. A brief writer opens
            // tables as its reads reach them, as a reader does (4 to 5 ms of an `ordo
            // append`): no reader opens beside it, readers wait for it to close (below).
            if access == Access::ReadWriteBrief {
                db_opts.set_max_open_files(LAZY_OPEN_FILES_MAX);
                db_opts.set_info_logger(info_log_to_tracing());
                // RocksDB dumps its statistics as soon as a writer opens, then every ten
                // minutes: on a thread of its own but under the database's mutex, the
                // block cache walked and every column family's tables formatted, for an
                // info log that drops them (below a warning). A brief writer is gone long
                // before a second dump.
                db_opts.set_stats_dump_period_sec(0);
            }
            let db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(storage)?;
            (db, false)
        }
        Access::ReadOnly if waited_for_brief_writer(path) == Writer::None => {
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
            db_opts.set_max_open_files(LAZY_OPEN_FILES_MAX);
            let db =
                DB::open_cf_descriptors_read_only(&db_opts, path, cfs, false).map_err(storage)?;
            (db, false)
        }
        Access::ReadOnly => {
            // Beside a writer that stays: a secondary instance, not a read-only one: RocksDB
            // supports it beside a live primary (it follows the primary's MANIFEST and
            // WAL, and tolerates files the primary deletes meanwhile). The writer itself
            // opened every table strictly. RocksDB asks for unlimited open files so that
            // it never reopens a file the primary has deleted.
            db_opts.set_max_open_files(-1);
            // RocksDB writes a secondary instance's info log into a directory of its own
            // and nothing else there; with the info log sent to tracing it writes nothing,
            // so no directory is made for it. A temporary one each was left behind when a
            // reader was killed (20 per run of tests/relay.rs, by its kill -9).
            db_opts.set_info_logger(info_log_to_tracing());
            let db = DB::open_cf_descriptors_as_secondary(&db_opts, path, &secondary_path(), cfs)
                .map_err(storage)?;
            db.try_catch_up_with_primary().map_err(storage)?;
            (db, true)
        }
    })
}

/// The directory RocksDB asks a secondary instance for, for its info log; never made,
/// since that log goes to tracing.
fn secondary_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ordo-reader-{}", std::process::id()))
}

/// Who holds the ledger's lock, once a brief writer holding it has closed (or
/// `BRIEF_WRITER_WAIT_MAX` has passed: `Brief` then, and the reader opens beside it).
fn waited_for_brief_writer(path: &Path) -> Writer {
    let started = Instant::now();
    loop {
        match writer(path) {
            Writer::Brief if started.elapsed() < BRIEF_WRITER_WAIT_MAX => {
                std::thread::sleep(BRIEF_WRITER_POLL);
            }
            Writer::Brief => {
                tracing::warn!(
                    "a brief writer (ordo append) has held {} for more than {} s; reading beside it",
                    path.display(),
                    BRIEF_WRITER_WAIT_MAX.as_secs()
                );
                return Writer::Brief;
            }
            found => return found,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    #[test]
    fn a_reader_waits_for_a_brief_writer_to_close_and_opens_read_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ledger");
        drop(Store::open(&dir, Access::ReadWrite).expect("creates the ledger"));
        let brief = Store::open(&dir, Access::ReadWriteBrief).expect("a brief writer");
        assert_eq!(writer(&dir), Writer::Brief);
        let held = Duration::from_millis(200);
        let closed = std::thread::scope(|scope| {
            let closing = scope.spawn(move || {
                std::thread::sleep(held);
                let closing = Instant::now();
                drop(brief);
                closing
            });
            let reader = Store::open(&dir, Access::ReadOnly).expect("a reader");
            let opened = Instant::now();
            let closed = closing.join().expect("closes");
            assert!(
                opened >= closed,
                "the reader opened once the brief writer was closing, not before"
            );
            assert!(
                !reader.catch_up().expect("reads"),
                "a read-only instance, not a secondary one"
            );
            closed
        });
        assert_eq!(writer(&dir), Writer::None, "{closed:?}");
    }

    #[test]
    fn a_reader_beside_a_writer_that_stays_opens_at_once_as_a_secondary_instance() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ledger");
        let staying = Store::open(&dir, Access::ReadWrite).expect("a writer");
        assert_eq!(writer(&dir), Writer::Staying);
        let started = Instant::now();
        let reader = Store::open(&dir, Access::ReadOnly).expect("a reader");
        assert!(started.elapsed() < BRIEF_WRITER_WAIT_MAX, "no wait");
        assert!(reader.catch_up().expect("reads"), "a secondary instance");
        assert!(
            !secondary_path().exists(),
            "a secondary instance writes nothing in the temporary directory"
        );
        drop(staying);
    }

    /// The info logs in the ledger directory, by name, with their contents.
    fn info_logs(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut logs: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .expect("lists the ledger")
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.starts_with("LOG"))
            .map(|name| {
                let contents = std::fs::read(dir.join(&name)).expect("reads a log");
                (name, contents)
            })
            .collect();
        logs.sort();
        logs
    }

    #[test]
    fn brief_writers_leave_the_info_log_of_the_writer_that_stays_as_it_was() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ledger");
        drop(Store::open(&dir, Access::ReadWrite).expect("creates the ledger"));
        let logs = info_logs(&dir);
        assert_eq!(logs.len(), 1, "the writer that stays wrote LOG");
        for _ in 0..3 {
            drop(Store::open(&dir, Access::ReadWriteBrief).expect("a brief writer"));
        }
        assert_eq!(info_logs(&dir), logs, "no new LOG, none renamed aside");
    }
}
