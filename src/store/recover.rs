//! `ordo recover`: the one explicit way to open a ledger whose write-ahead log is damaged,
//! keeping what can be read up to the first damaged record. It is never done implicitly:
//! an ordinary open refuses such a ledger (`Recovery::Strict`).
//!
//! The damaged logs are first copied, whole and fsynced, into `damaged-<time>/` inside the
//! ledger directory; only then is RocksDB let to replay them up to the damage and retire
//! them, so ordo deletes no byte of what it found.

use std::fs;
use std::path::{Path, PathBuf};

use super::wal::{self, WalDamage};
use rocksdb::{ColumnFamilyDescriptor, DB};

use super::{
    Access, CF_META, COLUMN_FAMILIES, Recovery, Store, lock_dir,
    options::{BLOCK_CACHE_BYTES, options},
};
use crate::domain::Position;
use crate::error::{Error, Result};
use crate::format::{codec, keys};

/// What a recovery would keep and where the damage is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// The first damaged record.
    pub damage: WalDamage,
    /// The last position that can be read: the ledger's head after the recovery.
    pub head: Position,
}

/// What a recovery did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovered {
    /// The plan it carried out.
    pub plan: RecoveryPlan,
    /// Where the damaged logs were copied before anything changed.
    pub kept_in: PathBuf,
}

impl Store {
    /// What `recover` would do for the ledger in `path`; changes nothing. `InvalidInput`
    /// when no write-ahead log is damaged (a ledger that opens is never cut).
    pub fn recovery_plan(path: &Path) -> Result<RecoveryPlan> {
        if !Store::exists(path) {
            return Err(Error::NotFound(format!("no ledger at {}", path.display())));
        }
        let damage = wal::check_dir(path)
            .map_err(|e| Error::io(path, e))?
            .damage()
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "no write-ahead log of {} is damaged; `ordo recover` only cuts a damaged log \
                     (`ordo verify` checks the rest)",
                    path.display()
                ))
            })?;
        let head = readable_head(path).ok_or_else(|| {
            Error::Damaged(format!(
                "{damage}, and the ledger cannot be read even up to it; restore it from a \
                 replica or an export"
            ))
        })?;
        Ok(RecoveryPlan { damage, head })
    }

    /// Recovers the ledger in `path`, keeping positions 1 to `keep`, which must be the plan's
    /// head: copies the damaged logs aside, then replays them up to their first damage.
    pub fn recover(path: &Path, keep: Position) -> Result<Recovered> {
        let lock = lock_dir(path, false)?;
        let plan = Store::recovery_plan(path)?;
        if keep != plan.head {
            return Err(Error::InvalidInput(format!(
                "positions 1 to {head} can be recovered: --truncate-at must name {head} (it was \
                 {keep})",
                head = plan.head
            )));
        }
        let kept_in = copy_logs_aside(path)?;
        drop(lock);
        let store = Store::open_with_recovery(path, Access::ReadWrite, Recovery::DropAfterDamage)?;
        let head = store.head()?;
        if head.position != plan.head {
            return Err(Error::Damaged(format!(
                "the recovery reached position {} where {} was readable; nothing more was changed, and the damaged logs are in {}",
                head.position,
                plan.head,
                kept_in.display()
            )));
        }
        Ok(Recovered { plan, kept_in })
    }
}

/// Copies every write-ahead log of `path` into a new `damaged-<time>` directory inside it,
/// fsynced; returns that directory.
fn copy_logs_aside(path: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    let dir = path.join(format!("damaged-{stamp}"));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::io(&dir, e))?;
    for log in wal::log_files(path).map_err(|e| Error::io(path, e))? {
        let name = log.file_name().expect("a log file has a name");
        let copy = dir.join(name);
        fs::copy(&log, &copy).map_err(|e| Error::io(&copy, e))?;
        fs::File::open(&copy)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&copy, e))?;
    }
    for synced in [&dir, &path.to_path_buf()] {
        fs::File::open(synced)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(synced, e))?;
    }
    Ok(dir)
}

/// The error for a damaged write-ahead log: where, what can still be read, what to do.
pub(super) fn damaged_wal(path: &Path, damage: &wal::WalDamage) -> Error {
    let advice = match readable_head(path) {
        Some(head) => format!(
            "events up to position {head} can be read, and any acknowledged after it are in \
             the damaged log. ordo changed nothing: restore the ledger from a replica or an \
             export, or keep positions 1 to {head} with `ordo recover --truncate-at {head}` \
             (docs/reliability.md)"
        ),
        None => "ordo changed nothing: restore the ledger from a replica or an export \
                 (docs/reliability.md)"
            .to_owned(),
    };
    Error::Damaged(format!("{damage}; {advice}"))
}

/// The head position a replay of the logs up to their first damage reaches, from a
/// read-only open (which writes, deletes and cuts nothing), or `None` if even that fails.
pub fn readable_head(path: &Path) -> Option<Position> {
    let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
    let mut opts = options(&cache, None, Access::ReadWrite).ok()?;
    opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
    let cfs = COLUMN_FAMILIES
        .iter()
        .map(|name| {
            options(&cache, Some(name), Access::ReadWrite)
                .map(|opts| ColumnFamilyDescriptor::new(*name, opts))
        })
        .collect::<crate::error::Result<Vec<_>>>()
        .ok()?;
    let db = DB::open_cf_descriptors_read_only(&opts, path, cfs, false).ok()?;
    let raw = db.get_cf(db.cf_handle(CF_META)?, keys::META_HEAD).ok()??;
    codec::decode_head(&raw).ok().map(|head| head.position)
}
