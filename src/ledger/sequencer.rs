//! The sequencer: the ledger's single writer. One thread (the stager) owns the head;
//! callers on any thread submit requests (one event, or an atomic batch) over a bounded
//! queue and wait for the answer. The stager takes every request waiting in the queue (up
//! to `COMMIT_EVENTS_MAX` events), stages each against the rules (a refused request is
//! rolled back alone), writes all accepted ones in one `WriteBatch` with one fsync, and only
//! then answers: group commit.
//!
//! A group of `PIPELINE_EVENTS_MIN` events or more (an import's batches) is written by a
//! second thread, the committer, while the stager stages the next group on top of it. One
//! group at most is in flight, and the next is handed over only once it is written; if its
//! commit fails, the group staged on top of it is refused unwritten (its positions assumed
//! the failed one) and staging starts again from the stored head.
//!
//! The HTTP server submits through the same `Sequencer` handle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::domain::Position;
use crate::error::{Error, Result};
use crate::store::{Durability, Head, SnapshotHeader, Store};

use super::clock_now;
use super::input::NewEvent;
use super::stage::{AppendResult, Sealed, Stage};

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
    reply: Reply,
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
        let mut committer = Committer {
            store: store.clone(),
            head,
            durability,
            counters: counters.clone(),
            publish,
            snapshots: Snapshots::default(),
            snapshot_every_events: 0,
        };
        committer.read_settings();
        // One group is written while the next is staged.
        let (jobs, job_queue) = sync_channel(1);
        let (returner, returns) = sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("ordo-committer".to_owned())
            .spawn(move || commit_in_background(&job_queue, &returner))
            .map_err(|e| Error::Storage(format!("cannot start the committer thread: {e}")))?;
        let writer = Writer {
            store,
            counters: counters.clone(),
            snapshot_every_events: committer.snapshot_every_events,
            committer: Some(committer),
            jobs: Some(jobs),
            returns,
        };
        let worker = std::thread::Builder::new()
            .name("ordo-sequencer".to_owned())
            .spawn(move || writer.run(&requests, head, thread))
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

/// A request the stager accepted: where to answer, its chain, and its results.
type Accepted = (Reply, Option<Chain>, Vec<AppendResult>);

/// Groups of at least this many events are written on the committer thread while the
/// stager stages the next group; smaller ones are written by the stager itself. Handing a
/// group to another thread and hearing back costs two thread wake-ups (handing over every
/// group nearly doubled a single writer's append latency; docs/benchmarks.md): more than
/// staging a few events, far less than staging an import's batch.
pub const PIPELINE_EVENTS_MIN: usize = 256;

/// A commit that failed: the head the store holds after it, and what its requests were
/// told (the stager tells the same to a group it staged on top of it).
struct Failed {
    head: Head,
    message: String,
}

/// Where a request's answer goes.
type Reply = SyncSender<Result<Vec<AppendResult>>>;

/// Answers to send once the stager knows the outcome of their commit.
struct Answers(Vec<(Reply, Result<Vec<AppendResult>>)>);

impl Answers {
    fn send(self) {
        for (reply, answer) in self.0 {
            let _ = reply.send(answer);
        }
    }
}

/// What the committer thread hands back after a pipelined commit: the committer itself
/// and the outcome.
type Returned = (Committer, std::result::Result<(), Failed>);

/// The stager: takes the queued requests as a group, stages them, and has them committed.
/// A large group is handed, with the `Committer` itself, to the committer thread, and the
/// stager stages the next group meanwhile (the handed group's states and ids stay readable
/// in the stage until it is written): the rules, the hash chain and the lookups of one
/// import batch overlap the write and fsync of the previous one.
struct Writer {
    store: Arc<Store>,
    counters: Arc<Counters>,
    /// Here unless a group is in flight on the committer thread.
    committer: Option<Committer>,
    jobs: Option<SyncSender<(Committer, Sealed, Vec<Accepted>)>>,
    returns: Receiver<Returned>,
    /// The committer's `snapshot_every_events`: a group ends at a multiple of it.
    snapshot_every_events: u64,
}

impl Writer {
    fn run(mut self, requests: &Receiver<Work>, head: Head, thread: JoinHandle<()>) {
        let store = self.store.clone();
        let mut stage = Stage::new(&store, head, true);
        let mut carried: Option<Work> = None;
        loop {
            let first = match carried.take() {
                Some(work) => work,
                None => match requests.recv() {
                    Ok(work) => work,
                    Err(_) => break,
                },
            };
            let first = match first {
                Work::Append(request) => request,
                Work::Exclusive(job) => {
                    // Nothing may be in flight: the work sees (and may replace) the store
                    // between two commits, and the stage reads from the store afterwards.
                    let _ = self.settle(&mut stage, true);
                    job(&self.store);
                    if let Some(committer) = &mut self.committer {
                        committer.read_settings();
                        self.snapshot_every_events = committer.snapshot_every_events;
                    }
                    continue;
                }
            };
            let mut events = first.events.len();
            let mut group = vec![first];
            // A group that reaches a multiple of `snapshot_every_events` ends there, so that
            // the automatic snapshot due at its commit covers exactly that position when the
            // requests allow (an import's batches do).
            let every = self.snapshot_every_events;
            let base = stage.head().position.0;
            let reached =
                |events: usize| every > 0 && (base + events as u64) / every != base / every;
            while events < COMMIT_EVENTS_MAX && !reached(events) {
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
            self.stage_group(&mut stage, group);
        }
        let _ = self.settle(&mut stage, true);
        // Closing the committer thread's queue stops it.
        self.jobs.take();
        let _ = thread.join();
        if let Some(committer) = &mut self.committer {
            committer.close_snapshots();
        }
    }

    /// Waits until the group in flight is written (or, with `wait` false, looks whether it
    /// is). If its commit failed, the stage starts again from the head the store holds, and
    /// the failure is returned: whatever was staged on top of that group must not be
    /// written.
    fn settle(&mut self, stage: &mut Stage<'_>, wait: bool) -> std::result::Result<(), String> {
        if self.committer.is_some() {
            return Ok(());
        }
        let returned = if wait {
            self.returns.recv().map_err(|_| TryRecvError::Disconnected)
        } else {
            self.returns.try_recv()
        };
        let failed = match returned {
            Err(TryRecvError::Empty) => return Ok(()),
            Ok((committer, outcome)) => {
                self.committer = Some(committer);
                match outcome {
                    Ok(()) => {
                        stage.release_sealed();
                        return Ok(());
                    }
                    Err(failed) => failed,
                }
            }
            // The committer thread panicked; the stage is left as it is, and every later
            // request is refused (there is no committer any more).
            Err(TryRecvError::Disconnected) => return Err(stopped().to_string()),
        };
        stage.restart(failed.head);
        Err(failed.message)
    }

    /// Stages each request (a refused one is rolled back alone and answered at once), waits
    /// for the group in flight, and commits this one: on the committer thread when it is
    /// large, here otherwise.
    fn stage_group(&mut self, stage: &mut Stage<'_>, group: Vec<Request>) {
        self.counters
            .requests
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        // A commit that failed before this group was staged must not take it down too (the
        // committer thread hands back a failure before anyone is answered, so a retry
        // always lands here after the failure is known); nothing is staged yet, so there is
        // nothing to refuse.
        let _ = self.settle(stage, false);
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
            match stage_request(stage, request.events) {
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
        if let Err(message) = self.settle(stage, true) {
            // Staged on top of a group whose commit failed: its positions and states
            // assume that group; the stage was reset, and nothing of this one is written.
            refuse(accepted, &message);
            return;
        }
        let Some(mut committer) = self.committer.take() else {
            refuse(accepted, &stopped().to_string());
            return;
        };
        let sealed = stage.seal();
        if sealed.len() >= PIPELINE_EVENTS_MIN
            && let Some(jobs) = &self.jobs
        {
            match jobs.send((committer, sealed, accepted)) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError((back, sealed, accepted))) => {
                    // The committer thread is gone: commit here instead.
                    committer = back;
                    self.commit_here(stage, committer, sealed, accepted);
                    return;
                }
            }
        }
        self.commit_here(stage, committer, sealed, accepted);
    }

    /// Commits a sealed group on this thread.
    fn commit_here(
        &mut self,
        stage: &mut Stage<'_>,
        mut committer: Committer,
        sealed: Sealed,
        accepted: Vec<Accepted>,
    ) {
        let (outcome, answers) = committer.commit(&sealed, accepted);
        self.committer = Some(committer);
        match outcome {
            Ok(()) => stage.release_sealed(),
            Err(failed) => stage.restart(failed.head),
        }
        answers.send();
    }
}

/// Answers accepted requests that will not be written.
fn refuse(accepted: Vec<Accepted>, message: &str) {
    refusals(accepted, message).send();
}

/// The answers of accepted requests that will not be written, their chains broken now
/// (before anyone hears of it, so that later requests of a chain are refused too).
fn refusals(accepted: Vec<Accepted>, message: &str) -> Answers {
    let answers = accepted
        .into_iter()
        .map(|(reply, chain, _)| {
            if let Some(chain) = chain {
                chain.break_off();
            }
            (reply, Err(Error::Storage(message.to_owned())))
        })
        .collect();
    Answers(answers)
}

/// The committer thread: commits the groups it is handed and hands the committer back
/// with the outcome before anyone is answered.
fn commit_in_background(
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
struct Committer {
    store: Arc<Store>,
    /// The committed head.
    head: Head,
    durability: Durability,
    counters: Arc<Counters>,
    publish: tokio::sync::watch::Sender<Position>,
    /// The automatic snapshots being written or waiting in the background.
    snapshots: Snapshots,
    /// The ledger's `snapshot_every_events`, read at start and after exclusive work (the
    /// only way settings change), not from RocksDB after every commit.
    snapshot_every_events: u64,
}

impl Committer {
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

    /// Writes `sealed`; returns the outcome and the answers to its requests, to send once
    /// the stager knows the outcome.
    fn commit(
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
            sealed.commit(&self.store).and_then(|commit| {
                if let Some(first) = commit.events.first() {
                    assert_eq!(
                        first.position,
                        self.head.position.next(),
                        "a commit continues the committed head"
                    );
                }
                self.store.commit(&commit, self.durability)
            })
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

    /// After a failed commit: re-reads the head and returns what its requests are told.
    fn failed(&mut self, e: Error) -> String {
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
    fn close_snapshots(&mut self) {
        self.snapshots.join_all();
    }

    /// Starts the automatic snapshot when the last commit crossed a multiple of
    /// `snapshot_every_events` (see `Snapshots`).
    fn snapshot_if_due(&mut self, before: Position) {
        let every = self.snapshot_every_events;
        if every > 0 && before.0 / every != self.head.position.0 / every {
            self.snapshots.start(&self.store);
        }
    }
}

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
struct Snapshots {
    turns: Arc<(Mutex<Turns>, Condvar)>,
    /// Threads started and not yet seen finished.
    threads: Vec<JoinHandle<()>>,
}

/// Whose turn it is to write a snapshot.
#[derive(Default)]
struct Turns {
    /// A snapshot is being written.
    writing: bool,
    /// The number of the newest snapshot that fell due; a waiting one with a smaller number
    /// was superseded.
    newest: u64,
}

impl Snapshots {
    /// Starts a snapshot of `store`'s head; returns once its view is taken.
    fn start(&mut self, store: &Arc<Store>) {
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
                let written = store.write_snapshot_then(&super::PROJECTIONS, clock_now(), || {
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
    fn join_all(&mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The right to write a snapshot, given back when dropped (also when its thread panics,
/// so that the next snapshot and closing never wait for it forever).
struct Turn<'a>(&'a (Mutex<Turns>, Condvar));

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        lock(&self.0.0).writing = false;
        self.0.1.notify_all();
    }
}

/// Waits until snapshot `number` may be written, or until a newer one superseded it
/// (`None`).
fn wait_for_turn(turns: &(Mutex<Turns>, Condvar), number: u64) -> Option<Turn<'_>> {
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
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Snapshots the stored projections at the head (read through a RocksDB snapshot, so
/// commits may go on meanwhile).
pub(crate) fn snapshot(store: &Store) -> Result<SnapshotHeader> {
    store.write_snapshot(&super::PROJECTIONS, clock_now())
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

    /// Waits (up to 10 s) until the ledger lists a snapshot; the automatic one is written in
    /// the background.
    fn snapshot_positions(store: &Store, want: usize) -> Vec<Position> {
        for _ in 0..1000 {
            let headers = store.snapshot_headers().expect("headers");
            if headers.len() >= want {
                return headers.iter().map(|h| h.position).collect();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("no snapshot within 10 s");
    }

    /// A writer (no fsync) over a fresh ledger that snapshots every `events` events.
    fn writer_snapshotting_every(events: u64) -> (tempfile::TempDir, Arc<Store>, Sequencer) {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Arc::new(Store::open(tmp.path(), Access::ReadWrite).expect("store"));
        store
            .set_settings(&crate::store::Settings {
                snapshot_every_events: events,
            })
            .expect("settings");
        let sequencer = Sequencer::start(
            store.clone(),
            store.head().expect("head"),
            Durability::NoSync,
        )
        .expect("writer");
        (tmp, store, sequencer)
    }

    #[test]
    fn queued_batches_commit_up_to_a_snapshot_multiple_and_the_snapshot_covers_exactly_it() {
        let (_tmp, store, sequencer) = writer_snapshotting_every(300);
        // Hold the writer in exclusive work until five batches of 100 are queued, so that
        // it finds them all waiting at once.
        let (release, wait) = sync_channel::<()>(0);
        let (started, is_started) = sync_channel::<()>(1);
        std::thread::scope(|scope| {
            let held = scope.spawn(|| {
                sequencer
                    .exclusive(move |_| {
                        let _ = started.send(());
                        let _ = wait.recv();
                        Ok(())
                    })
                    .expect("exclusive work")
            });
            is_started
                .recv()
                .expect("the writer runs the exclusive work");
            let pending: Vec<Pending> = (0..5)
                .map(|b| {
                    let batch = (0..100).map(|i| placed(&format!("B{b}-{i}"))).collect();
                    sequencer.submit_chained(batch, None).expect("queued")
                })
                .collect();
            release.send(()).expect("release the writer");
            held.join().expect("held");
            let ends: Vec<Position> = pending
                .into_iter()
                .map(|p| {
                    let results = p.recv().expect("answered").expect("appended");
                    results.last().expect("a result").position
                })
                .collect();
            assert_eq!(ends.last(), Some(&Position(500)));
        });
        // The first group stopped at 300 (not at 500, all that was queued), and the snapshot
        // that fell due there covers exactly 300, although the rest was committed at once.
        assert_eq!(snapshot_positions(&store, 1)[0], Position(300));
        assert_eq!(sequencer.stats().commits, 2);
    }

    #[test]
    fn every_automatic_snapshot_sits_at_a_multiple_and_the_last_due_one_is_written_at_close() {
        let (_tmp, store, sequencer) = writer_snapshotting_every(100);
        // Batches of 100 in a row make a snapshot due at every commit, often while the
        // previous one is still being written; the last batch leaves the head off a multiple.
        let sizes = [100; 30].into_iter().chain([50]);
        for (b, size) in sizes.enumerate() {
            let batch = (0..size).map(|i| placed(&format!("B{b}-{i}"))).collect();
            sequencer
                .submit_chained(batch, None)
                .expect("queued")
                .recv()
                .expect("answered")
                .expect("appended");
        }
        drop(sequencer);
        let positions: Vec<u64> = store
            .snapshot_headers()
            .expect("headers")
            .iter()
            .map(|h| h.position.0)
            .collect();
        assert!(
            positions.iter().all(|p| p % 100 == 0),
            "off a multiple: {positions:?}"
        );
        assert_eq!(
            positions.last(),
            Some(&3000),
            "the last one due: {positions:?}"
        );
    }

    #[test]
    fn a_waiting_snapshot_is_superseded_by_a_newer_one_which_writes_after_the_current() {
        let turns = Arc::new((Mutex::new(Turns::default()), Condvar::new()));
        let due = |turns: &(Mutex<Turns>, Condvar)| {
            let mut state = lock(&turns.0);
            state.newest += 1;
            state.newest
        };
        let first = due(&turns);
        let writing = wait_for_turn(&turns, first).expect("nothing is being written");
        std::thread::scope(|scope| {
            let second = due(&turns);
            let turns = &turns;
            let waiting = scope.spawn(move || wait_for_turn(turns, second).is_some());
            // The second waits while the first is written, until a third supersedes it.
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!waiting.is_finished(), "the second waits for the first");
            let third = due(turns);
            turns.1.notify_all();
            assert!(!waiting.join().expect("joined"), "the second is superseded");
            let newest = scope.spawn(move || wait_for_turn(turns, third).is_some());
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!newest.is_finished(), "the third waits for the first");
            drop(writing);
            assert!(newest.join().expect("joined"), "the third is written next");
        });
        assert!(!lock(&turns.0).writing, "its turn was given back");
    }
}
