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

/// The byte of `ordo.lock` every writer write-locks: the writer's lock. Only one writer at a
/// time, whatever its kind.
const WRITER_BYTE: i64 = 0;

/// The byte a brief writer (`Access::ReadWriteBrief`, one `ordo append`) read-locks. A
/// brief writer opens RocksDB's tables as its reads reach them, not all at open; a reader
/// that sees it waits for it to close instead of opening beside it (`open::open_db`). A
/// read lock, so that a reader tells it from the whole-file write lock of an ordo from
/// before brief writers (`F_OFD_GETLK` names the kind of lock in the way).
const BRIEF_BYTE: i64 = 1;

/// Who holds the ledger's lock, as a reader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Writer {
    /// Nobody.
    None,
    /// A brief writer: it closes within milliseconds, usually.
    Brief,
    /// A writer that stays (`ordo serve`, an import, maintenance), or one that cannot be told
    /// apart (an ordo from before brief writers, which locked the whole file).
    Staying,
}

/// Creates the ledger directory (owner-only) and takes the writer's lock; a `brief` writer
/// read-locks `BRIEF_BYTE` first (a reader that looks in between sees no writer yet, as
/// before any writer starts).
pub(super) fn lock_dir(path: &Path, brief: bool) -> Result<fs::File> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io(path, e))?;
    let lock_path = path.join(LOCK_FILE);
    // Readable too: a read lock (`BRIEF_BYTE`) needs a file open for reading.
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    let mut locks = vec![lock_record(LockKind::Write, WRITER_BYTE, 1)];
    if brief {
        locks.insert(0, lock_record(LockKind::Read, BRIEF_BYTE, 1));
    }
    match locks
        .iter()
        .try_for_each(|lock| fcntl(&file, FcntlArg::F_OFD_SETLK(lock)).map(drop))
    {
        Ok(()) => Ok(file),
        Err(Errno::EAGAIN | Errno::EACCES) => Err(Error::LedgerInUse {
            path: path.to_owned(),
            server: served_by(path),
        }),
        Err(e) => Err(Error::io(&lock_path, e.into())),
    }
}

#[derive(Clone, Copy)]
enum LockKind {
    Read,
    Write,
}

/// A lock record for `fcntl` over `bytes` bytes of the lock file from `start` (the file is
/// empty: a lock covers bytes whether or not they exist).
fn lock_record(kind: LockKind, start: i64, bytes: i64) -> libc::flock {
    let l_type = match kind {
        LockKind::Read => libc::F_RDLCK,
        LockKind::Write => libc::F_WRLCK,
    };
    libc::flock {
        l_type: l_type as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start,
        l_len: bytes,
        l_pid: 0,
    }
}

/// Which writer holds the ledger's lock, in this process or another: `F_OFD_GETLK` asks
/// whether a read lock could be placed on a byte, and places none. Looking must take no
/// lock: a probe with a lock of our own could make a writer starting at that instant fail.
/// (It used to read the kernel's table of locks, `/proc/locks`, which took 5 to 14 ms on the
/// machine of docs/benchmarks.md, most of an `ordo state`.) Open-file-description locks
/// conflict with each other whichever process holds them, unlike classic POSIX record
/// locks, so a writer in this same process is seen too. When it cannot tell, it answers
/// `Staying`, the choice that works beside any writer.
pub(super) fn writer(path: &Path) -> Writer {
    let file = match fs::File::open(path.join(LOCK_FILE)) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Writer::None,
        Err(_) => return Writer::Staying,
    };
    // The kind of lock that would be in the way of a write lock on `byte`, if any.
    let in_the_way = |byte: i64| {
        let mut probe = lock_record(LockKind::Write, byte, 1);
        match fcntl(&file, FcntlArg::F_OFD_GETLK(&mut probe)) {
            Ok(_) => Some(probe.l_type),
            Err(_) => None,
        }
    };
    let (unlocked, read) = (
        libc::F_UNLCK as libc::c_short,
        libc::F_RDLCK as libc::c_short,
    );
    match in_the_way(WRITER_BYTE) {
        Some(kind) if kind == unlocked => Writer::None,
        Some(_) if in_the_way(BRIEF_BYTE) == Some(read) => Writer::Brief,
        _ => Writer::Staying,
    }
}

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

    /// Neither a writer nor a brief writer can take the lock of `dir` now.
    fn no_other_writer_gets_in(dir: &Path) {
        for brief in [false, true] {
            assert!(
                matches!(lock_dir(dir, brief), Err(Error::LedgerInUse { .. })),
                "a {} writer got in",
                if brief { "brief" } else { "staying" }
            );
        }
    }

    #[test]
    fn a_reader_sees_the_writers_lock_only_while_it_is_held_and_takes_none() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ledger");
        assert_eq!(writer(&dir), Writer::None, "no directory, no writer");
        let lock = lock_dir(&dir, false).expect("first writer");
        assert_eq!(writer(&dir), Writer::Staying);
        assert_eq!(writer(&dir), Writer::Staying, "looking took no lock");
        no_other_writer_gets_in(&dir);
        drop(lock);
        assert_eq!(writer(&dir), Writer::None, "released with its file");
        let brief = lock_dir(&dir, true).expect("a brief writer after the first closed");
        assert_eq!(writer(&dir), Writer::Brief);
        no_other_writer_gets_in(&dir);
        drop(brief);
        assert_eq!(writer(&dir), Writer::None);
    }

    #[test]
    fn a_whole_file_lock_of_an_older_ordo_is_a_writer_that_may_stay() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("ledger");
        drop(lock_dir(&dir, false).expect("creates the lock file"));
        let file = fs::OpenOptions::new()
            .write(true)
            .open(dir.join(LOCK_FILE))
            .expect("opens");
        fcntl(
            &file,
            FcntlArg::F_OFD_SETLK(&lock_record(LockKind::Write, 0, 0)),
        )
        .expect("locks the whole file");
        assert_eq!(writer(&dir), Writer::Staying);
        no_other_writer_gets_in(&dir);
    }
}
