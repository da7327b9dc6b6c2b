//! The syncer: makes written groups durable, then (and only then) shows them to readers,
//! tells subscribers, answers their requests and starts due snapshots. Its own thread, so
//! that one group's fsync overlaps the staging and writing of the next ones.
//!
//! It takes every group waiting when it wakes, syncs the write-ahead log once for all of
//! them (RocksDB's log buffer is flushed by hand: a group is in no file before this), and
//! publishes them one by one in position order. A failed sync is final for the process:
//! its groups and every later one are refused (`Store::sync` says why).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};

use crate::domain::Position;
use crate::store::{Durability, Store, Written};

use super::committer::failure_message;
use super::queue::Counters;
use super::snapshots::Snapshots;
use super::stager::{Accepted, refusals};

/// Most groups one sync covers; the rest wait for the next (bounds the time between a
/// group's sync and its answer).
pub(super) const SYNC_GROUPS_MAX: usize = 64;

/// Work for the syncer, in the order the groups were written.
pub(super) enum ToSync {
    /// A group written into RocksDB, to answer once it is durable.
    Written {
        written: Written,
        /// The head before the group (a snapshot is due when the group crosses a multiple
        /// of `snapshot_every_events`).
        before: Position,
        events: u64,
        snapshot_every_events: u64,
        accepted: Vec<Accepted>,
    },
    /// Requests that wrote nothing (duplicates only): answered once the groups before them
    /// are durable, since a duplicate may be of an event among them.
    Nothing(Vec<Accepted>),
    /// Answered once every group before it is durable and published.
    Barrier(SyncSender<()>),
}

/// Owns what happens after a write: the sync, the view, the `committed` watch, the answers,
/// the counters and the automatic snapshots.
pub(super) struct Syncer {
    pub(super) store: Arc<Store>,
    pub(super) durability: Durability,
    pub(super) counters: Arc<Counters>,
    pub(super) publish: tokio::sync::watch::Sender<Position>,
    pub(super) snapshots: Snapshots,
    /// Set by a failed sync: what every later request is told.
    pub(super) failed: Option<String>,
}

impl Syncer {
    /// Runs until the writer closes its side of `inbox`, then waits for the snapshots.
    pub(super) fn run(mut self, inbox: &Receiver<ToSync>) {
        while let Ok(first) = inbox.recv() {
            let mut work = vec![first];
            while work.len() < SYNC_GROUPS_MAX {
                match inbox.try_recv() {
                    Ok(next) => work.push(next),
                    Err(_) => break,
                }
            }
            if self.failed.is_none() && work.iter().any(|w| matches!(w, ToSync::Written { .. })) {
                // Every group in `work` was written before this call: the sync covers it.
                match self.store.sync(self.durability) {
                    Ok(()) => {
                        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => self.failed = Some(failure_message(&self.store, e)),
                }
            }
            for item in work {
                self.finish(item);
            }
        }
        self.snapshots.join_all();
    }

    /// Publishes and answers one item after the sync that covers it.
    fn finish(&mut self, item: ToSync) {
        match item {
            ToSync::Barrier(done) => {
                let _ = done.send(());
            }
            ToSync::Nothing(accepted) => match &self.failed {
                Some(message) => refusals(accepted, message).send(),
                None => answer(accepted),
            },
            ToSync::Written {
                written,
                before,
                events,
                snapshot_every_events,
                accepted,
            } => {
                if let Some(message) = &self.failed {
                    refusals(accepted, message).send();
                    return;
                }
                // Readers first, then subscribers, then the clients: a client that saw its
                // append acknowledged and then reads or subscribes finds it there.
                self.store.publish(&written);
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                self.counters.events.fetch_add(events, Ordering::Relaxed);
                self.publish.send_replace(written.head);
                let every = snapshot_every_events;
                if every > 0 && before.0 / every != written.head.0 / every {
                    // Returns once the snapshot's thread has taken its view: this group's.
                    self.snapshots.start(&self.store);
                }
                if written.fail_after_sync {
                    // A test's fault: durable, and yet reported as failed.
                    let message = failure_message(
                        &self.store,
                        crate::error::Error::Storage(
                            "injected fault after the write (the batch reached the disk)"
                                .to_owned(),
                        ),
                    );
                    refusals(accepted, &message).send();
                } else {
                    answer(accepted);
                }
            }
        }
    }
}

/// Acknowledges accepted requests with their results.
fn answer(accepted: Vec<Accepted>) {
    for (reply, _, results) in accepted {
        reply.send(Ok(results));
    }
}
