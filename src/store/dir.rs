//! The ledger directory beside RocksDB's files: the writer's lock (`ordo.lock`), how a
//! reader tells whether a writer holds it, and the running server's announcement
//! (`ordo.server`). docs/format.md describes both files.

use std::fs;
use std::path::Path;

use super::{LOCK_FILE, SERVER_FILE, SERVER_URL_BYTES_MAX, Store};
use crate::error::{Error, Result};

/// Creates the ledger directory (owner-only) and takes the writer's lock.
pub(super) fn lock_dir(path: &Path) -> Result<fs::File> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io(path, e))?;
    let lock_path = path.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::LedgerInUse {
            path: path.to_owned(),
            server: served_by(path),
        }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(&lock_path, e)),
    }
}

/// Whether a writer process holds the ledger's lock, read from the kernel's table of locks
/// (`/proc/locks`, matched by the lock file's inode). Looking takes no lock: a probe with a
/// lock of our own could make a writer starting at that instant fail. When it cannot tell,
/// it answers yes, the choice that works beside a writer.
pub(super) fn writer_holds_lock(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(lock) = fs::metadata(path.join(LOCK_FILE)) else {
        // A writer creates the lock file before anything else.
        return false;
    };
    let Ok(locks) = fs::read_to_string("/proc/locks") else {
        return true;
    };
    let inode = format!(":{}", lock.ino());
    locks.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK ADVISORY WRITE 4242 fd:01:1234567 0 EOF"
        fields.get(1) == Some(&"FLOCK") && fields.get(5).is_some_and(|id| id.ends_with(&inode))
    })
}

/// The URL a running `ordo serve` left in the ledger directory, if any.
fn served_by(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut url = String::new();
    fs::File::open(path.join(SERVER_FILE))
        .and_then(|f| f.take(SERVER_URL_BYTES_MAX).read_to_string(&mut url))
        .ok()?;
    let url = url.trim();
    (!url.is_empty()).then(|| url.to_owned())
}

impl Store {
    /// Leaves the server's URL in the ledger directory (owner-only), for commands refused
    /// the lock. Only the writer calls it.
    pub fn announce_server(&self, url: &str) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        assert!(self._lock.is_some(), "only the writer announces a server");
        let path = self.path.join(SERVER_FILE);
        fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(url.as_bytes()))
            .map_err(|e| Error::io(&path, e))
    }

    /// Removes the server's URL (at shutdown). A leftover after a crash is harmless: it is
    /// only read while the lock is held, and the next server overwrites it.
    pub fn withdraw_server(&self) {
        let _ = fs::remove_file(self.path.join(SERVER_FILE));
    }
}
