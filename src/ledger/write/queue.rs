//! The sequencer's queue: the `Sequencer` handle callers submit requests to (one event or
//! an atomic batch, optionally chained), bounded so that submitters feel back-pressure, and
//! the counters of what the writer did. Starting it starts the stager and committer threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use crate::domain::Position;
use crate::error::{Error, Result};
use crate::store::{Durability, Head, Store};

use super::committer::{Committer, commit_in_background};
use super::snapshots::Snapshots;
use super::stage::AppendResult;
use super::stager::{Reply, Stager};
use super::syncer::Syncer;
use crate::ledger::input::NewEvent;

/// Most events in one request (`append --file`, an HTTP batch): product.md section 4.
pub const BATCH_EVENTS_MAX: usize = 10_000;
/// Most events in one commit; requests beyond it wait for the next commit.
pub const COMMIT_EVENTS_MAX: usize = 10_000;
/// Most requests waiting for the writer; submitters block beyond it (back-pressure).
pub const QUEUE_REQUESTS_MAX: usize = 4096;
/// Most written groups waiting for the syncer; the writer waits beyond it (and the staged
/// states of each stay in memory until it is durable).
pub const SYNC_QUEUE_GROUPS_MAX: usize = 64;

/// One submission: events (with the input line each came from, for messages) and where to
/// send the answer.
pub(super) struct Request {
    pub(super) events: Vec<(Option<u64>, NewEvent)>,
    pub(super) reply: Reply,
    pub(super) chain: Option<Chain>,
}

/// Links requests that must land in order, all or a prefix: once one fails, every later
/// request of the chain is refused unwritten. An import submits its next batch before the
/// previous one is acknowledged (so parsing overlaps committing); without the chain, a
/// failed batch could leave a gap with later batches written after it.
#[derive(Clone, Debug, Default)]
pub struct Chain(Arc<std::sync::atomic::AtomicBool>);

impl Chain {
    pub(super) fn broken(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub(super) fn break_off(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The answer to a submitted request, to wait for later.
pub type Pending = Receiver<Result<Vec<AppendResult>>>;

/// Work for the writer thread.
pub(super) enum Work {
    Append(Request),
    /// Work that needs the store to itself between two commits (snapshots, rebuilds).
    Exclusive(Box<dyn FnOnce(&Store) + Send>),
}

/// A handle to the writer thread. Dropping it lets the thread finish the queue and stop.
pub struct Sequencer {
    pub(super) queue: Option<SyncSender<Work>>,
    pub(super) worker: Option<JoinHandle<()>>,
    pub(super) counters: Arc<Counters>,
    /// The durable head position, published after every durable commit: live readers
    /// (the server's subscriptions) wait on it instead of polling the store.
    pub(super) committed: tokio::sync::watch::Receiver<Position>,
}

/// What the writer has done since it started: read by benchmarks and metrics to see how
/// well group commit combines requests (events per commit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriterStats {
    /// Successful commits (one `WriteBatch` each).
    pub commits: u64,
    /// Successful syncs of the write-ahead log (fsyncs when durable), each covering every
    /// commit written before it: fewer than `commits` when groups were written while a
    /// sync was under way.
    pub syncs: u64,
    /// Events written by those commits.
    pub events: u64,
    /// Requests answered (appended, refused or failed).
    pub requests: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) commits: AtomicU64,
    pub(super) syncs: AtomicU64,
    pub(super) events: AtomicU64,
    pub(super) requests: AtomicU64,
}

pub(super) fn stopped() -> Error {
    Error::Storage("the ledger's writer thread has stopped".to_owned())
}

impl Sequencer {
    /// Starts the writer over `store`, whose committed head is `head`.
    pub fn start(store: Arc<Store>, head: Head, durability: Durability) -> Result<Sequencer> {
        let (queue, requests) = sync_channel(QUEUE_REQUESTS_MAX);
        let counters = Arc::new(Counters::default());
        let (publish, committed) = tokio::sync::watch::channel(head.position);
        let tree = Some(store.merkle_frontier(head.position.0)?);
        let (to_sync, inbox) = sync_channel(SYNC_QUEUE_GROUPS_MAX);
        let mut committer = Committer {
            store: store.clone(),
            head,
            tree,
            to_sync: to_sync.clone(),
            snapshot_every_events: 0,
        };
        committer.read_settings();
        let syncer = Syncer {
            store: store.clone(),
            durability,
            counters: counters.clone(),
            publish,
            snapshots: Snapshots::default(),
            failed: None,
        };
        let syncer = std::thread::Builder::new()
            .name("ordo-syncer".to_owned())
            .spawn(move || syncer.run(&inbox))
            .map_err(|e| Error::Storage(format!("cannot start the syncer thread: {e}")))?;
        // One group is written while the next is staged.
        let (jobs, job_queue) = sync_channel(1);
        let (returner, returns) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("ordo-committer".to_owned())
            .spawn(move || commit_in_background(&job_queue, &returner))
            .map_err(|e| Error::Storage(format!("cannot start the committer thread: {e}")))?;
        let stager = Stager {
            store,
            counters: counters.clone(),
            snapshot_every_events: committer.snapshot_every_events,
            committer: Some(committer),
            jobs: Some(jobs),
            returns,
            to_sync: Some(to_sync),
            durable: committed.clone(),
        };
        let worker = std::thread::Builder::new()
            .name("ordo-sequencer".to_owned())
            .spawn(move || stager.run(&requests, head, (thread, syncer)))
            .map_err(|e| Error::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(Sequencer {
            queue: Some(queue),
            worker: Some(worker),
            counters,
            committed,
        })
    }

    /// The position of the last durable commit, updated after each one (a `watch`: a
    /// receiver sees the newest value, never a backlog).
    pub fn committed(&self) -> tokio::sync::watch::Receiver<Position> {
        self.committed.clone()
    }

    /// Commits, events and requests so far.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            events: self.counters.events.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
        }
    }

    /// Appends events atomically (all or none) and waits until they are durable. Each event
    /// may carry the input line it came from; errors then name it.
    pub fn submit(&self, events: Vec<(Option<u64>, NewEvent)>) -> Result<Vec<AppendResult>> {
        self.submit_chained(events, None)?
            .recv()
            .map_err(|_| stopped())?
    }

    /// Queues events like `submit` without waiting; the answer arrives on the returned
    /// receiver. With a `chain`, the request is refused if an earlier one of it failed.
    pub fn submit_chained(
        &self,
        events: Vec<(Option<u64>, NewEvent)>,
        chain: Option<&Chain>,
    ) -> Result<Pending> {
        check_batch(&events)?;
        let (reply, answer) = sync_channel(1);
        if events.is_empty() {
            let _ = reply.send(Ok(Vec::new()));
            return Ok(answer);
        }
        self.queue
            .as_ref()
            .ok_or_else(stopped)?
            .send(Work::Append(Request {
                events,
                reply: Reply::Blocking(reply),
                chain: chain.cloned(),
            }))
            .map_err(|_| stopped())?;
        Ok(answer)
    }

    /// `submit` for async callers: the same request and answer (after the commit is
    /// durable), awaited without holding a thread. A full queue is waited for on the
    /// blocking pool, never on the caller's async thread.
    pub async fn submit_async(
        &self,
        events: Vec<(Option<u64>, NewEvent)>,
    ) -> Result<Vec<AppendResult>> {
        check_batch(&events)?;
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        let work = Work::Append(Request {
            events,
            reply: Reply::Async(reply),
            chain: None,
        });
        match queue.try_send(work) {
            Ok(()) => {}
            Err(TrySendError::Full(work)) => {
                let queue = queue.clone();
                tokio::task::spawn_blocking(move || queue.send(work))
                    .await
                    .map_err(|_| stopped())?
                    .map_err(|_| stopped())?;
            }
            Err(TrySendError::Disconnected(_)) => return Err(stopped()),
        }
        answer.await.map_err(|_| stopped())?
    }

    /// Runs `work` on the writer thread between two commits: no event is committed while it
    /// runs, so it sees and may replace the projections consistently.
    pub fn exclusive<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = sync_channel(1);
        let job = Box::new(move |store: &Store| {
            let _ = reply.send(work(store));
        });
        self.queue
            .as_ref()
            .ok_or_else(stopped)?
            .send(Work::Exclusive(job))
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

impl Drop for Sequencer {
    fn drop(&mut self) {
        // Closing the queue ends the writer's loop once it has answered everything queued.
        self.queue.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Refuses a request of more than `BATCH_EVENTS_MAX` events.
fn check_batch(events: &[(Option<u64>, NewEvent)]) -> Result<()> {
    if events.len() > BATCH_EVENTS_MAX {
        return Err(Error::InvalidInput(format!(
            "a batch holds at most {BATCH_EVENTS_MAX} events, this one has {}; use `ordo import` for more",
            events.len()
        )));
    }
    Ok(())
}
