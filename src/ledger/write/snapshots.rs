//! Automatic snapshots: started by the committer when the head crosses a multiple of
//! `snapshot_every_events`, written in the background one at a time, each covering exactly
//! the head of the commit that made it due.

use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::error::Result;
use crate::store::{SnapshotHeader, Store};

use crate::ledger::clock_now;

/// The automatic snapshots, on background threads, each covering exactly the head of the
/// commit that made it due, one written at a time.
///
/// A due snapshot's thread takes its view (a RocksDB snapshot, consistent between two
/// commits) at once, and the writer waits for that (a short wait) before its next commit, so
/// appends go on while snapshots are written. The thread then waits for its turn: the
/// snapshot being written, if any, ends first. One that falls due while another is waiting
/// supersedes it (the waiting one drops its view and writes nothing): the newest is what
/// replays near the head can use, and at most one view waits. So a fast import leaves its
/// snapshots at multiples of `snapshot_every_events`, fewer of them when writing one takes
/// longer than committing the next interval.
#[derive(Default)]
pub(super) struct Snapshots {
    pub(super) turns: Arc<(Mutex<Turns>, Condvar)>,
    /// Threads started and not yet seen finished.
    pub(super) threads: Vec<JoinHandle<()>>,
}

/// Whose turn it is to write a snapshot.
#[derive(Default)]
pub(super) struct Turns {
    /// A snapshot is being written.
    pub(super) writing: bool,
    /// The number of the newest snapshot that fell due; a waiting one with a smaller number
    /// was superseded.
    pub(super) newest: u64,
}

impl Snapshots {
    /// Starts a snapshot of `store`'s head; returns once its view is taken.
    pub(super) fn start(&mut self, store: &Arc<Store>) {
        self.threads.retain(|thread| !thread.is_finished());
        let number = {
            let mut turns = lock(&self.turns.0);
            turns.newest += 1;
            turns.newest
        };
        // A waiting snapshot wakes up to find itself superseded.
        self.turns.1.notify_all();
        let (store, turns) = (store.clone(), self.turns.clone());
        let (taken, is_taken) = sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("ordo-snapshot".to_owned())
            .spawn(move || {
                let mut turn = None;
                let written =
                    store.write_snapshot_then(&crate::ledger::PROJECTIONS, clock_now(), || {
                        let _ = taken.send(());
                        turn = wait_for_turn(&turns, number);
                        turn.is_some()
                    });
                drop(turn);
                if let Err(e) = written {
                    tracing::warn!("automatic snapshot failed: {e}");
                }
            });
        match spawned {
            Ok(thread) => {
                // An error before the view is taken drops the sender and ends the wait.
                let _ = is_taken.recv();
                self.threads.push(thread);
            }
            Err(e) => tracing::warn!("cannot start the snapshot thread: {e}"),
        }
    }

    /// Waits for every snapshot thread (the waiting one writes after the one being written).
    pub(super) fn join_all(&mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The right to write a snapshot, given back when dropped (also when its thread panics,
/// so that the next snapshot and closing never wait for it forever).
pub(super) struct Turn<'a>(&'a (Mutex<Turns>, Condvar));

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        lock(&self.0.0).writing = false;
        self.0.1.notify_all();
    }
}

/// Waits until snapshot `number` may be written, or until a newer one superseded it
/// (`None`).
pub(super) fn wait_for_turn(turns: &(Mutex<Turns>, Condvar), number: u64) -> Option<Turn<'_>> {
    let (mutex, changed) = turns;
    let mut state = lock(mutex);
    while state.writing && state.newest == number {
        state = changed
            .wait(state)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
    if state.newest != number {
        return None;
    }
    state.writing = true;
    Some(Turn(turns))
}

/// Locks `mutex`, whether or not a thread panicked while holding it (the turns stay
/// meaningful: a flag and a counter).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Snapshots the stored projections at the head (read through a RocksDB snapshot, so
/// commits may go on meanwhile).
pub(crate) fn snapshot(store: &Store) -> Result<SnapshotHeader> {
    store.write_snapshot(&crate::ledger::PROJECTIONS, clock_now())
}
