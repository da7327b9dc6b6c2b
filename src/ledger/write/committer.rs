//! The committer: writes a sealed group (one `WriteBatch`, not yet synced) with the tree
//! nodes it completes, and hands it to the syncer, which answers once it is durable. It
//! runs on the stager's thread for small groups and on its own thread for large ones,
//! never both at once.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender};

use crate::error::Error;
use crate::format::merkle::Frontier;
use crate::store::{Head, Store, Written, tree_writes};

use super::sealed::Sealed;
use super::stager::{Accepted, Failed, Returned, refusals};
use super::syncer::ToSync;

/// The committer thread: commits the groups it is handed and hands the committer back
/// with the outcome.
pub(super) fn commit_in_background(
    jobs: &Receiver<(Committer, Sealed, Vec<Accepted>)>,
    returns: &SyncSender<Returned>,
) {
    for (mut committer, sealed, accepted) in jobs {
        let outcome = committer.commit(&sealed, accepted);
        // The sealed group is dropped only after the stager released it from its stage:
        // either way its states are shared, never copied.
        let _ = returns.send((committer, outcome));
    }
}

/// Writes sealed groups and hands them to the syncer. Owned by the stager, or by the
/// committer thread while it writes a group for it: never both.
pub(super) struct Committer {
    pub(super) store: Arc<Store>,
    /// The written head (durable or not).
    pub(super) head: Head,
    /// The Merkle tree's frontier at the written head; `None` after a failed commit
    /// whose outcome on disk could not be re-read (commits are then refused).
    pub(super) tree: Option<Frontier>,
    /// Where written groups go, in the order they were written.
    pub(super) to_sync: SyncSender<ToSync>,
    /// The ledger's `snapshot_every_events`, read at start and after exclusive work (the
    /// only way settings change), not from RocksDB after every commit.
    pub(super) snapshot_every_events: u64,
}

impl Committer {
    /// Refreshes the cached settings. A failure is logged and turns automatic snapshots
    /// off until the next successful read: snapshots only save time.
    pub(super) fn read_settings(&mut self) {
        self.snapshot_every_events = match self.store.settings() {
            Ok(settings) => settings.snapshot_every_events,
            Err(e) => {
                tracing::warn!("cannot read the ledger settings: {e}");
                0
            }
        };
    }

    /// Re-reads the tree's frontier after exclusive work (a rebuild may have rewritten the
    /// tree; everything written is durable then). A failure is logged, and commits are
    /// refused until the writer restarts.
    pub(super) fn reload_tree(&mut self) {
        self.tree = match self.store.merkle_frontier(self.head.position.0) {
            Ok(tree) => Some(tree),
            Err(e) => {
                tracing::warn!("cannot read the Merkle tree's frontier: {e}");
                None
            }
        };
    }

    /// Writes `sealed` and hands it, with its requests, to the syncer. A failed write is
    /// returned to the stager with its requests' refusals, to send once it has restarted.
    pub(super) fn commit(
        &mut self,
        sealed: &Sealed,
        accepted: Vec<Accepted>,
    ) -> std::result::Result<(), Failed> {
        if sealed.is_empty() {
            // Only duplicates (or nothing) were accepted: nothing to write. Answered after
            // the groups before them are durable (a duplicate may be of one of theirs).
            self.send(ToSync::Nothing(accepted));
            return Ok(());
        }
        let before = self.head.position;
        match self.write(sealed) {
            Ok(written) => {
                self.head = sealed.head();
                self.send(ToSync::Written {
                    written,
                    before,
                    events: sealed.len() as u64,
                    snapshot_every_events: self.snapshot_every_events,
                    accepted,
                });
                Ok(())
            }
            Err(e) => {
                let message = self.failed(e);
                // Chains are broken before the stager hears of the failure, so that it
                // refuses their later requests; the requests hear of it only after the
                // stager has forgotten the group, so that a retry is staged afresh.
                let answers = refusals(accepted, &message);
                Err(Failed {
                    head: self.head,
                    message,
                    answers,
                })
            }
        }
    }

    fn send(&self, work: ToSync) {
        // The syncer outlives the committer (it stops once the writer closes its side);
        // a syncer that panicked drops the requests, whose callers then hear "stopped".
        let _ = self.to_sync.send(work);
    }

    /// Writes a non-empty group with the tree nodes its events complete, in one batch.
    fn write(&mut self, sealed: &Sealed) -> crate::error::Result<Written> {
        let mut tree = self.tree.clone().ok_or_else(|| {
            Error::Storage(
                "the Merkle tree's state was lost after a failed commit; restart ordo".to_owned(),
            )
        })?;
        assert_eq!(
            tree.size(),
            self.head.position.0,
            "the tree covers the written log"
        );
        let mut commit = sealed.commit(&self.store)?;
        if let Some(first) = commit.events.first() {
            assert_eq!(
                first.position,
                self.head.position.next(),
                "a commit continues the written head"
            );
        }
        commit.rows.extend(tree_writes(&mut tree, sealed.leaves()));
        assert_eq!(
            tree.size(),
            commit.head.position.0,
            "the tree grows by the group's events"
        );
        let written = self.store.write_commit(&commit)?;
        self.tree = Some(tree);
        Ok(written)
    }

    /// After a failed write: re-reads the head and returns what its requests are told.
    pub(super) fn failed(&mut self, e: Error) -> String {
        // The batch is atomic and a failed write leaves nothing of it. Should RocksDB hold
        // another head all the same, that is the truth: the next commit must chain to it
        // (never overwriting a position), but the tree's frontier for it cannot be read
        // before it is durable, so commits are refused until the writer restarts.
        match self.store.written_head() {
            Ok(stored) => {
                if stored != self.head {
                    tracing::warn!(
                        "a failed write reached RocksDB: head {} -> {}; restart ordo",
                        self.head.position,
                        stored.position
                    );
                    self.head = stored;
                    self.tree = None;
                }
            }
            Err(read) => tracing::warn!("cannot re-read the head after a failed commit: {read}"),
        }
        failure_message(&self.store, e)
    }
}

/// What the requests of a failed commit are told.
pub(super) fn failure_message(store: &Store, e: Error) -> String {
    let cause = match e {
        Error::Storage(cause) => cause,
        other => other.to_string(),
    };
    // After a failed WAL write or sync, writes are refused until the ledger is reopened;
    // say so, or every retry would get the same stale error with no way forward.
    let next = if store.writes_refused() {
        "the storage engine now refuses writes until the ledger is reopened: restart ordo, then retry"
    } else {
        "retry"
    };
    format!(
        "commit failed: {cause}; {next} with the same event ids (an event that did reach the disk is then reported as a duplicate)"
    )
}
