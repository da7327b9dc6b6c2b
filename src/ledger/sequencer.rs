//! The sequencer: the ledger's single writer. One thread owns the head; callers on any
//! thread submit requests (one event, or an atomic batch) over a bounded queue and wait for
//! the answer. The thread takes every request waiting in the queue (up to
//! `COMMIT_EVENTS_MAX` events), stages each against the rules (a refused request is rolled
//! back alone), writes all accepted ones in one `WriteBatch` with one fsync, and only then
//! answers: group commit.
//!
//! The HTTP server of a later issue submits through the same `Sequencer` handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

use crate::domain::Position;
use crate::error::{Error, Result};
use crate::store::{Commit, Durability, Head, SnapshotHeader, Store};

use super::clock_now;
use super::input::NewEvent;
use super::stage::{AppendResult, Stage};

/// Most events in one request (`append --file`, an HTTP batch): product.md section 4.
pub const BATCH_EVENTS_MAX: usize = 10_000;
/// Most events in one commit; requests beyond it wait for the next commit.
pub const COMMIT_EVENTS_MAX: usize = 10_000;
/// Most requests waiting for the writer; submitters block beyond it (back-pressure).
pub const QUEUE_REQUESTS_MAX: usize = 4096;

/// One submission: events (with the input line each came from, for messages) and where to
/// send the answer.
struct Request {
    events: Vec<(Option<u64>, NewEvent)>,
    reply: SyncSender<Result<Vec<AppendResult>>>,
    chain: Option<Chain>,
}

/// Links requests that must land in order, all or a prefix: once one fails, every later
/// request of the chain is refused unwritten. An import submits its next batch before the
/// previous one is acknowledged (so parsing overlaps committing); without the chain, a
/// failed batch could leave a gap with later batches written after it.
#[derive(Clone, Debug, Default)]
pub struct Chain(Arc<std::sync::atomic::AtomicBool>);

impl Chain {
    fn broken(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn break_off(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The answer to a submitted request, to wait for later.
pub type Pending = Receiver<Result<Vec<AppendResult>>>;

/// Work for the writer thread.
enum Work {
    Append(Request),
    /// Work that needs the store to itself between two commits (snapshots, rebuilds).
    Exclusive(Box<dyn FnOnce(&Store) + Send>),
}

/// A handle to the writer thread. Dropping it lets the thread finish the queue and stop.
pub struct Sequencer {
    queue: Option<SyncSender<Work>>,
    worker: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    /// The committed head position, published after every durable commit: live readers
    /// (the server's subscriptions) wait on it instead of polling the store.
    committed: tokio::sync::watch::Receiver<Position>,
}

/// What the writer has done since it started: read by benchmarks and metrics to see how
/// well group commit combines requests (events per commit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriterStats {
    /// Successful commits (one `WriteBatch`, one fsync each when durable).
    pub commits: u64,
    /// Events written by those commits.
    pub events: u64,
    /// Requests answered (appended, refused or failed).
    pub requests: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    events: AtomicU64,
    requests: AtomicU64,
}

fn stopped() -> Error {
    Error::Storage("the ledger's writer thread has stopped".to_owned())
}

impl Sequencer {
    /// Starts the writer over `store`, whose committed head is `head`.
    pub fn start(store: Arc<Store>, head: Head, durability: Durability) -> Result<Sequencer> {
        let (queue, requests) = sync_channel(QUEUE_REQUESTS_MAX);
        let counters = Arc::new(Counters::default());
        let (publish, committed) = tokio::sync::watch::channel(head.position);
        let writer_counters = counters.clone();
        let worker = std::thread::Builder::new()
            .name("ordo-sequencer".to_owned())
            .spawn(move || {
                Writer {
                    store,
                    head,
                    durability,
                    counters: writer_counters,
                    publish,
                    snapshotter: None,
                    snapshot_pending: false,
                    snapshot_every_events: 0,
                }
                .run(&requests)
            })
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
        if events.len() > BATCH_EVENTS_MAX {
            return Err(Error::InvalidInput(format!(
                "a batch holds at most {BATCH_EVENTS_MAX} events, this one has {}; use `ordo import` for more",
                events.len()
            )));
        }
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
                reply,
                chain: chain.cloned(),
            }))
            .map_err(|_| stopped())?;
        Ok(answer)
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

struct Writer {
    store: Arc<Store>,
    head: Head,
    durability: Durability,
    counters: Arc<Counters>,
    publish: tokio::sync::watch::Sender<Position>,
    /// The automatic snapshot being taken in the background, if any.
    snapshotter: Option<JoinHandle<()>>,
    /// A snapshot fell due while another was running: it starts when that one ends.
    snapshot_pending: bool,
    /// The ledger's `snapshot_every_events`, read at start and after exclusive work (the
    /// only way settings change), not from RocksDB after every commit.
    snapshot_every_events: u64,
}

impl Writer {
    fn run(mut self, requests: &Receiver<Work>) {
        self.read_settings();
        let mut carried: Option<Work> = None;
        loop {
            let first = match carried.take() {
                Some(work) => work,
                None => match requests.recv() {
                    Ok(work) => work,
                    Err(_) => {
                        self.close_snapshots();
                        return;
                    }
                },
            };
            let first = match first {
                Work::Append(request) => request,
                Work::Exclusive(job) => {
                    job(&self.store);
                    self.read_settings();
                    continue;
                }
            };
            let mut events = first.events.len();
            let mut group = vec![first];
            while events < COMMIT_EVENTS_MAX {
                match requests.try_recv() {
                    Ok(Work::Append(request))
                        if events + request.events.len() <= COMMIT_EVENTS_MAX =>
                    {
                        events += request.events.len();
                        group.push(request);
                    }
                    Ok(work) => {
                        carried = Some(work);
                        break;
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let before = self.head.position;
            self.commit_group(group);
            self.snapshot_if_due(before);
        }
    }

    /// Refreshes the cached settings. A failure is logged and turns automatic snapshots
    /// off until the next successful read: snapshots only save time.
    fn read_settings(&mut self) {
        self.snapshot_every_events = match self.store.settings() {
            Ok(settings) => settings.snapshot_every_events,
            Err(e) => {
                tracing::warn!("cannot read the ledger settings: {e}");
                0
            }
        };
    }

    /// Closing: lets a background snapshot finish before the store closes, and takes a
    /// pending one (so that an import's last snapshot is not lost).
    fn close_snapshots(&mut self) {
        if let Some(snapshotter) = self.snapshotter.take() {
            let _ = snapshotter.join();
        }
        if self.snapshot_pending
            && let Err(e) = snapshot(&self.store)
        {
            tracing::warn!("snapshot at close failed: {e}");
        }
    }

    /// Starts the automatic snapshot when the last commit crossed a multiple of
    /// `snapshot_every_events`, on a background thread: it reads the projections through a
    /// RocksDB snapshot (consistent between two commits), so appends do not wait for it. A
    /// failure is logged, not fatal: snapshots only save time. If the previous one is still
    /// running, this one waits (pending) and starts after a later commit once it ended.
    fn snapshot_if_due(&mut self, before: Position) {
        let every = self.snapshot_every_events;
        if every > 0 && before.0 / every != self.head.position.0 / every {
            self.snapshot_pending = true;
        }
        if !self.snapshot_pending {
            return;
        }
        if let Some(running) = self.snapshotter.take() {
            if !running.is_finished() {
                self.snapshotter = Some(running);
                return;
            }
            let _ = running.join();
        }
        self.snapshot_pending = false;
        let store = self.store.clone();
        let spawned = std::thread::Builder::new()
            .name("ordo-snapshot".to_owned())
            .spawn(move || {
                if let Err(e) = snapshot(&store) {
                    tracing::warn!("automatic snapshot failed: {e}");
                }
            });
        match spawned {
            Ok(handle) => self.snapshotter = Some(handle),
            Err(e) => tracing::warn!("cannot start the snapshot thread: {e}"),
        }
    }

    /// Stages each request, commits the accepted ones together, then answers everyone.
    fn commit_group(&mut self, group: Vec<Request>) {
        self.counters
            .requests
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        let mut stage = Stage::new(&self.store, self.head, true);
        let mut accepted = Vec::with_capacity(group.len());
        for request in group {
            if request.chain.as_ref().is_some_and(Chain::broken) {
                let _ = request.reply.send(Err(Error::Storage(
                    "an earlier batch of the same import failed; this one was not written"
                        .to_owned(),
                )));
                continue;
            }
            let checkpoint = stage.checkpoint();
            match stage_request(&mut stage, request.events) {
                Ok(results) => accepted.push((request.reply, request.chain, results)),
                Err(e) => {
                    stage.rollback(checkpoint);
                    if let Some(chain) = &request.chain {
                        chain.break_off();
                    }
                    let _ = request.reply.send(Err(e));
                }
            }
        }
        let head = stage.head();
        let (events, states, delta) = stage.take();
        let outcome = if events.is_empty() {
            Ok(())
        } else {
            let commit = Commit {
                events: &events,
                states: states.values().collect(),
                head,
                delta: &delta,
            };
            self.store.commit(&commit, self.durability).inspect(|()| {
                self.counters.commits.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .events
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
            })
        };
        match outcome {
            Ok(()) => {
                self.head = head;
                // Published before answering: a client that saw its append acknowledged and
                // then subscribes finds the head at least there.
                self.publish.send_replace(head.position);
                for (reply, _, results) in accepted {
                    let _ = reply.send(Ok(results));
                }
            }
            Err(e) => {
                // The batch is atomic, but a failure reported after the write (an fsync
                // error for data that reached the disk) may leave all of it stored: the
                // head on disk, not the cached one, is the truth. Re-read it, so that the
                // next commit chains to what is stored (never overwriting a position), and a
                // retry with the same event ids finds them as duplicates.
                match self.store.head() {
                    Ok(stored) => {
                        if stored != self.head {
                            tracing::warn!(
                                "a failed commit reached the disk: head {} -> {}",
                                self.head.position,
                                stored.position
                            );
                            self.head = stored;
                            self.publish.send_replace(stored.position);
                        }
                    }
                    Err(read) => {
                        tracing::warn!("cannot re-read the head after a failed commit: {read}")
                    }
                }
                let cause = match e {
                    Error::Storage(cause) => cause,
                    other => other.to_string(),
                };
                // After a failed WAL write RocksDB refuses all writes until reopened; say so,
                // or every retry would get the same stale error with no way forward.
                let next = if self.store.writes_refused() {
                    "the storage engine now refuses writes until the ledger is reopened: restart ordo, then retry"
                } else {
                    "retry"
                };
                for (reply, chain, _) in accepted {
                    if let Some(chain) = chain {
                        chain.break_off();
                    }
                    let _ = reply.send(Err(Error::Storage(format!(
                        "commit failed: {cause}; {next} with the same event ids (an event that did reach the disk is then reported as a duplicate)"
                    ))));
                }
            }
        }
    }
}

/// Snapshots the stored projections at the head (read through a RocksDB snapshot, so
/// commits may go on meanwhile).
pub(crate) fn snapshot(store: &Store) -> Result<SnapshotHeader> {
    store.write_snapshot(clock_now())
}

fn stage_request(
    stage: &mut Stage<'_>,
    events: Vec<(Option<u64>, NewEvent)>,
) -> Result<Vec<AppendResult>> {
    let now = clock_now();
    let mut results = Vec::with_capacity(events.len());
    for (line, event) in events {
        let result = stage.stage(event, now).map_err(|e| match line {
            Some(line) => e.at_line(line),
            None => e,
        })?;
        results.push(result);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventData, EventType, OrderId};
    use crate::store::Access;

    fn placed(order: &str) -> (Option<u64>, NewEvent) {
        let data = EventData::from_json(
            EventType::OrderPlaced,
            serde_json::json!({"customer_id": "C", "currency": "EUR",
                               "lines": [{"sku": "A", "quantity": 1, "unit_price": 100}]}),
        )
        .expect("valid data");
        let order = OrderId::new(order).expect("valid id");
        (Some(1), NewEvent::new(order, data))
    }

    #[test]
    fn after_a_failed_request_of_a_chain_later_ones_are_refused_unwritten() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Arc::new(Store::open(tmp.path(), Access::ReadWrite).expect("store"));
        let sequencer = Sequencer::start(
            store.clone(),
            store.head().expect("head"),
            Durability::NoSync,
        )
        .expect("writer");
        let chain = Chain::default();
        let first = sequencer.submit_chained(vec![placed("A")], Some(&chain));
        // Placing A twice breaks the rules: this request fails...
        let second = sequencer.submit_chained(vec![placed("A")], Some(&chain));
        // ...so this valid one, submitted before the failure was known, is not written.
        let third = sequencer.submit_chained(vec![placed("B")], Some(&chain));
        // A request outside the chain is unaffected.
        let other = sequencer.submit(vec![placed("C")]);
        let answer = |p: Result<Pending>| p.expect("queued").recv().expect("answered");
        assert!(answer(first).is_ok());
        assert!(matches!(answer(second), Err(Error::AtLine { .. })));
        let refused = answer(third).expect_err("refused");
        assert!(refused.to_string().contains("earlier batch"), "{refused}");
        assert!(other.is_ok());
        drop(sequencer);
        assert_eq!(store.head().expect("head").position, Position(2));
        let b = OrderId::new("B").expect("valid id");
        assert_eq!(store.order_state(&b).expect("read"), None);
    }
}
