//! The ledger directory beside RocksDB's files: the writer's lock (`ordo.lock`, an
//! open-file-description lock), how a reader tells whether a writer holds it, and the
//! running server's announcement (`ordo.server`). docs/format.md describes both files.

use std::fs;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

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
    match fcntl(&file, FcntlArg::F_OFD_SETLK(&whole_file(LockKind::Write))) {
        Ok(_) => Ok(file),
        Err(Errno::EAGAIN | Errno::EACCES) => Err(Error::LedgerInUse {
            path: path.to_owned(),
            server: served_by(path),
        }),
        Err(e) => Err(Error::io(&lock_path, e.into())),
    }
}

/// The two kinds of lock a whole-file `flock` record can describe.
#[derive(Clone, Copy)]
enum LockKind {
    Read,
    Write,
}

/// A whole-file lock record for `fcntl` (length 0: to the end of the file, however long).
fn whole_file(kind: LockKind) -> libc::flock {
    let l_type = match kind {
        LockKind::Read => libc::F_RDLCK,
        LockKind::Write => libc::F_WRLCK,
    };
    libc::flock {
        l_type: l_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// Whether a writer holds the ledger's lock, in this process or another: `F_OFD_GETLK`
/// asks whether a read lock could be placed, and places none. Looking must take no lock: a
/// probe with a lock of our own could make a writer starting at that instant fail. (It used
/// to read the kernel's table of locks, `/proc/locks`, which took 5 to 14 ms on the machine
/// of docs/benchmarks.md, most of an `ordo state`.) Open-file-description locks conflict
/// with each other whichever process holds them, unlike classic POSIX record locks, so a
/// writer in this same process is seen too. When it cannot tell, it answers yes, the
/// choice that works beside a writer.
pub(super) fn writer_holds_lock(path: &Path) -> bool {
    let file = match fs::File::open(path.join(LOCK_FILE)) {
        Ok(file) => file,
        // A writer creates the lock file before anything else.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(_) => return true,
    };
    let mut probe = whole_file(LockKind::Read);
    match fcntl(&file, FcntlArg::F_OFD_GETLK(&mut probe)) {
        Ok(_) => probe.l_type != libc::F_UNLCK as libc::c_short,
        Err(_) => true,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_the_writers_lock_only_while_it_is_held_and_takes_none() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ledger");
        assert!(!writer_holds_lock(&dir), "no directory, no writer");
        let lock = lock_dir(&dir).expect("first writer");
        // In this same process too: open-file-description locks conflict across opens.
        assert!(writer_holds_lock(&dir));
        // Probing took no lock: the writer keeps it, and a second writer is still refused.
        assert!(writer_holds_lock(&dir));
        assert!(matches!(lock_dir(&dir), Err(Error::LedgerInUse { .. })));
        drop(lock);
        assert!(!writer_holds_lock(&dir), "released with its file");
        let again = lock_dir(&dir).expect("a new writer after the first closed");
        drop(again);
    }
}
