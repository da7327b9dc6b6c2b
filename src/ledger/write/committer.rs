//! The committer: writes a sealed group (one `WriteBatch`, one fsync), publishes the new
//! head, and hands due snapshots to `snapshots`. It runs on the stager's thread for small
//! groups and on its own thread for large ones, never both at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};

use crate::domain::Position;
use crate::error::Error;
use crate::format::merkle::Frontier;
use crate::store::{Durability, Head, Store, tree_writes};

use super::queue::Counters;
use super::snapshots::Snapshots;
use super::stage::Sealed;
use super::stager::{Accepted, Answers, Failed, Returned, refusals};

/// The committer thread: commits the groups it is handed and hands the committer back
/// with the outcome before anyone is answered.
pub(super) fn commit_in_background(
    jobs: &Receiver<(Committer, Sealed, Vec<Accepted>)>,
    returns: &SyncSender<Returned>,
) {
    for (mut committer, sealed, accepted) in jobs {
        let (outcome, answers) = committer.commit(&sealed, accepted);
        // The sealed group is dropped only after the stager released it from its stage:
        // either way its states are shared, never copied.
        let _ = returns.send((committer, outcome));
        answers.send();
    }
}

/// Writes sealed groups (one `WriteBatch`, one fsync each), publishes the new head, and
/// starts automatic snapshots. Owned by the stager, or by the committer thread while it
/// writes a group for it: never both.
pub(super) struct Committer {
    pub(super) store: Arc<Store>,
    /// The committed head.
    pub(super) head: Head,
    /// The Merkle tree's frontier at the committed head; `None` after a failed commit
    /// whose outcome on disk could not be re-read (commits are then refused).
    pub(super) tree: Option<Frontier>,
    pub(super) durability: Durability,
    pub(super) counters: Arc<Counters>,
    pub(super) publish: tokio::sync::watch::Sender<Position>,
    /// The automatic snapshots being written or waiting in the background.
    pub(super) snapshots: Snapshots,
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
    /// tree). A failure is logged, and commits are refused until the writer restarts.
    pub(super) fn reload_tree(&mut self) {
        self.tree = match self.store.merkle_frontier(self.head.position.0) {
            Ok(tree) => Some(tree),
            Err(e) => {
                tracing::warn!("cannot read the Merkle tree's frontier: {e}");
                None
            }
        };
    }

    /// Writes `sealed`; returns the outcome and the answers to its requests, to send once
    /// the stager knows the outcome.
    pub(super) fn commit(
        &mut self,
        sealed: &Sealed,
        accepted: Vec<Accepted>,
    ) -> (std::result::Result<(), Failed>, Answers) {
        let before = self.head.position;
        let written = if sealed.is_empty() {
            // Only duplicates (or nothing) were accepted: nothing to write, and their
            // originals are durable (the stager settled the group in flight first).
            Ok(())
        } else {
            self.write(sealed)
        };
        match written {
            Ok(()) => {
                if !sealed.is_empty() {
                    self.counters.commits.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .events
                        .fetch_add(sealed.len() as u64, Ordering::Relaxed);
                    self.head = sealed.head();
                    // Published before answering: a client that saw its append acknowledged
                    // and then subscribes finds the head at least there.
                    self.publish.send_replace(self.head.position);
                    self.snapshot_if_due(before);
                }
                let answers = accepted
                    .into_iter()
                    .map(|(reply, _, results)| (reply, Ok(results)))
                    .collect();
                (Ok(()), Answers(answers))
            }
            Err(e) => {
                let message = self.failed(e);
                // Chains are broken before the stager hears of the failure, so that it
                // refuses their later requests.
                let answers = refusals(accepted, &message);
                let failed = Failed {
                    head: self.head,
                    message,
                };
                (Err(failed), answers)
            }
        }
    }

    /// Writes a non-empty group with the tree nodes its events complete, in one batch.
    fn write(&mut self, sealed: &Sealed) -> crate::error::Result<()> {
        let mut tree = self.tree.clone().ok_or_else(|| {
            Error::Storage(
                "the Merkle tree's state was lost after a failed commit; restart ordo".to_owned(),
            )
        })?;
        assert_eq!(
            tree.size(),
            self.head.position.0,
            "the tree covers the committed log"
        );
        let mut commit = sealed.commit(&self.store)?;
        if let Some(first) = commit.events.first() {
            assert_eq!(
                first.position,
                self.head.position.next(),
                "a commit continues the committed head"
            );
        }
        commit.rows.extend(tree_writes(&mut tree, sealed.leaves()));
        assert_eq!(
            tree.size(),
            commit.head.position.0,
            "the tree grows by the group's events"
        );
        self.store.commit(&commit, self.durability)?;
        self.tree = Some(tree);
        Ok(())
    }

    /// After a failed commit: re-reads the head and returns what its requests are told.
    pub(super) fn failed(&mut self, e: Error) -> String {
        // The batch is atomic, but a failure reported after the write (an fsync error for
        // data that reached the disk) may leave all of it stored: the head on disk, not the
        // cached one, is the truth. Re-read it, so that the next commit chains to what is
        // stored (never overwriting a position), and a retry with the same event ids finds
        // them as duplicates.
        match self.store.head() {
            Ok(stored) => {
                if stored != self.head {
                    tracing::warn!(
                        "a failed commit reached the disk: head {} -> {}",
                        self.head.position,
                        stored.position
                    );
                    self.head = stored;
                    self.reload_tree();
                    self.publish.send_replace(stored.position);
                }
            }
            Err(read) => tracing::warn!("cannot re-read the head after a failed commit: {read}"),
        }
        let cause = match e {
            Error::Storage(cause) => cause,
            other => other.to_string(),
        };
        // After a failed WAL write RocksDB refuses all writes until reopened; say so, or
        // every retry would get the same stale error with no way forward.
        let next = if self.store.writes_refused() {
            "the storage engine now refuses writes until the ledger is reopened: restart ordo, then retry"
        } else {
            "retry"
        };
        format!(
            "commit failed: {cause}; {next} with the same event ids (an event that did reach the disk is then reported as a duplicate)"
        )
    }

    /// Closing: lets the background snapshots finish (the one being written, then the one
    /// waiting) before the store closes.
    pub(super) fn close_snapshots(&mut self) {
        self.snapshots.join_all();
    }

    /// Starts the automatic snapshot when the last commit crossed a multiple of
    /// `snapshot_every_events` (see `Snapshots`).
    pub(super) fn snapshot_if_due(&mut self, before: Position) {
        let every = self.snapshot_every_events;
        if every > 0 && before.0 / every != self.head.position.0 / every {
            self.snapshots.start(&self.store);
        }
    }
}
