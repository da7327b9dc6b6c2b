//! What readers in the writer's process see: the ledger as of its last durable commit.
//!
//! The writer writes a group into RocksDB before its write-ahead log is synced: a syncer
//! thread syncs while the next group is staged and written (`ledger::write`). RocksDB makes
//! a write readable at once, so in the writer's process every read goes through a *view*:
//! a RocksDB snapshot that holds durable commits only. Writing a commit takes a snapshot
//! just after it (`Written`); once the sync that covers the commit returns, `publish` makes
//! that snapshot the view, and only then is anyone answered or told. When no commit is
//! waiting for a sync, the view is a fresh snapshot, so that the settings, snapshots and
//! rebuilds written beside the commits become visible too.
//!
//! A reader instance (read-only or secondary) has no view: it sees what it opened or caught
//! up with. RocksDB writes a commit into the log file when the syncer flushes it
//! (`manual_wal_flush`), or earlier when what was written since the last sync overflows its
//! 1 MiB log buffer (a large group, or snapshot rows beside commits): a secondary instance
//! reads a group once its sync has started or that buffer overflowed, possibly before the
//! fsync returns; nobody is answered or told before it does.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rocksdb::{DB, Snapshot};

use super::Store;
use crate::domain::Position;

self_cell::self_cell!(
    /// A RocksDB snapshot that holds a handle on its database, so that it can be shared
    /// between threads and kept between calls.
    pub(super) struct View {
        owner: Arc<DB>,
        #[covariant]
        dependent: Snapshot,
    }
);

impl View {
    /// A snapshot of everything `db` holds now.
    fn now(db: &Arc<DB>) -> Arc<View> {
        Arc::new(View::new(db.clone(), |db| db.snapshot()))
    }

    /// The RocksDB snapshot.
    pub(super) fn snapshot(&self) -> &Snapshot<'_> {
        self.borrow_dependent()
    }
}

/// A consistent point in time to read at: this process's view, or a reader instance's own
/// RocksDB snapshot.
pub(super) enum ReadPoint<'s> {
    View(Arc<View>),
    Own(Snapshot<'s>),
}

impl ReadPoint<'_> {
    pub(super) fn snapshot(&self) -> &Snapshot<'_> {
        match self {
            ReadPoint::View(view) => view.snapshot(),
            ReadPoint::Own(snapshot) => snapshot,
        }
    }
}

/// The view of a writer's store and the commits written but not yet published.
#[derive(Default)]
pub(super) struct Visible {
    state: Mutex<VisibleState>,
}

#[derive(Default)]
struct VisibleState {
    /// `None` in a reader instance.
    view: Option<Arc<View>>,
    /// Commits being written, or written and not yet published.
    unpublished: u64,
}

impl Visible {
    fn lock(&self) -> MutexGuard<'_, VisibleState> {
        // The state stays meaningful if a holder panicked: an `Arc` and a counter.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A commit written into RocksDB and not yet durable: `Store::publish` makes it visible
/// once a sync has covered it.
pub struct Written {
    /// The ledger right after the commit.
    view: Arc<View>,
    /// The commit's last position.
    pub head: Position,
    /// A test's fault: the sync is to be reported as failed although it succeeded
    /// (`Fault::AfterWrite`).
    pub fail_after_sync: bool,
}

impl std::fmt::Debug for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Written")
            .field("head", &self.head)
            .field("fail_after_sync", &self.fail_after_sync)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// What a read in this process sees (`None`: a reader instance, which reads the latest
    /// data it has).
    pub(super) fn view(&self) -> Option<Arc<View>> {
        self.visible.lock().view.clone()
    }

    /// A consistent point to read several things at: the view, or in a reader instance a
    /// snapshot of now.
    pub(super) fn read_point(&self) -> ReadPoint<'_> {
        match self.view() {
            Some(view) => ReadPoint::View(view),
            None => ReadPoint::Own(self.db.snapshot()),
        }
    }

    /// Starts the view of a writer's store (everything on disk at open is durable).
    pub(super) fn start_view(&self) {
        self.visible.lock().view = Some(View::now(&self.db));
    }

    /// After a write beside the commits (settings, snapshots, a rebuild; each synced):
    /// shows it to readers at once unless a commit is waiting for its sync (its snapshot
    /// would show that commit too early; the write shows with the next published commit).
    pub(super) fn refresh_view(&self) {
        let mut state = self.visible.lock();
        if state.view.is_some() && state.unpublished == 0 {
            state.view = Some(View::now(&self.db));
        }
    }

    /// Counts a commit about to be written; `written` or `unwritten` follows.
    pub(super) fn writing(&self) {
        self.visible.lock().unpublished += 1;
    }

    /// A commit whose write failed: nothing of it is in RocksDB.
    pub(super) fn unwritten(&self) {
        let mut state = self.visible.lock();
        state.unpublished = state.unpublished.saturating_sub(1);
    }

    /// A commit just written: the snapshot that includes it, to publish after its sync.
    pub(super) fn written(&self, head: Position, fail_after_sync: bool) -> Written {
        Written {
            view: View::now(&self.db),
            head,
            fail_after_sync,
        }
    }

    /// Makes a written commit visible to readers. Only once a sync that began after it was
    /// written has returned, and in the order the commits were written.
    pub fn publish(&self, written: &Written) {
        let mut state = self.visible.lock();
        assert!(state.unpublished > 0, "a published commit was written");
        state.unpublished -= 1;
        state.view = Some(if state.unpublished == 0 {
            // Nothing undurable is in RocksDB: the newest state is durable, and includes
            // what was written beside the commits since.
            View::now(&self.db)
        } else {
            written.view.clone()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Access, CF_REVENUE, Commit, Durability, Head, RowWrite, Settings, Store};

    /// A commit that changes one aggregate row and nothing else.
    fn row_commit(rows: &[RowWrite]) -> Commit<'_> {
        Commit {
            events: &[],
            states: Vec::new(),
            head: Head::genesis(),
            rows: rows.to_vec(),
        }
    }

    #[test]
    fn a_written_commit_is_invisible_to_readers_until_it_is_synced_and_published() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(tmp.path(), Access::ReadWrite).expect("open");
        let row = RowWrite {
            cf: CF_REVENUE,
            key: b"day".to_vec(),
            value: Some(b"42".to_vec()),
        };
        let written = store
            .write_commit(&row_commit(std::slice::from_ref(&row)))
            .expect("written");
        assert_eq!(store.get(CF_REVENUE, b"day").expect("read"), None);
        assert_eq!(
            store.get_written(CF_REVENUE, b"day").expect("read"),
            Some(b"42".to_vec()),
            "the writer builds on what it wrote"
        );
        // A write beside the commits waits for the commit's publication too: a fresh view
        // now would show the commit.
        store
            .set_settings(&Settings {
                snapshot_every_events: 7,
            })
            .expect("settings");
        assert_ne!(store.settings().expect("read").snapshot_every_events, 7);
        store.sync(Durability::Sync).expect("sync");
        assert_eq!(store.get(CF_REVENUE, b"day").expect("read"), None);
        store.publish(&written);
        assert_eq!(
            store.get(CF_REVENUE, b"day").expect("read"),
            Some(b"42".to_vec())
        );
        assert_eq!(store.settings().expect("read").snapshot_every_events, 7);
    }

    #[test]
    fn views_publish_in_order_and_the_last_one_shows_everything_durable() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(tmp.path(), Access::ReadWrite).expect("open");
        let row = |value: &[u8]| RowWrite {
            cf: CF_REVENUE,
            key: b"day".to_vec(),
            value: Some(value.to_vec()),
        };
        let first = store.write_commit(&row_commit(&[row(b"1")])).expect("1");
        let second = store.write_commit(&row_commit(&[row(b"2")])).expect("2");
        store.sync(Durability::Sync).expect("sync");
        store.publish(&first);
        assert_eq!(
            store.get(CF_REVENUE, b"day").expect("read"),
            Some(b"1".to_vec()),
            "the first commit's view, not the second's"
        );
        store.publish(&second);
        assert_eq!(
            store.get(CF_REVENUE, b"day").expect("read"),
            Some(b"2".to_vec())
        );
    }
}
