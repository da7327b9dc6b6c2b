//! The stager: the writer thread that owns the head. It takes every request waiting in the
//! queue as a group, stages each against the rules (a refused request is rolled back
//! alone), seals the group and has it written; the syncer answers once it is durable:
//! group commit, with the next groups staged and written while one is synced. A large group
//! is written on the committer thread while the next is staged on top of it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::store::{Head, Store};

use super::committer::Committer;
use super::queue::{COMMIT_EVENTS_MAX, Chain, Counters, Request, Work, stopped};
use super::sealed::Sealed;
use super::stage::{AppendResult, Stage};
use super::syncer::ToSync;
use crate::domain::Position;
use crate::ledger::clock_now;
use crate::ledger::input::NewEvent;

/// A request the stager accepted: where to answer, its chain, and its results.
pub(super) type Accepted = (Reply, Option<Chain>, Vec<AppendResult>);

/// Groups of at least this many events are written on the committer thread while the
/// stager stages the next group; smaller ones are written by the stager itself. Handing a
/// group to another thread and hearing back costs two thread wake-ups (handing over every
/// group nearly doubled a single writer's append latency; docs/benchmarks.md): more than
/// staging a few events, far less than staging an import's batch.
pub const PIPELINE_EVENTS_MIN: usize = 256;

/// A commit that failed: the head the store holds after it, what its requests are told
/// (the stager tells the same to a group it staged on top of it), and their answers, sent
/// once the stager has restarted.
pub(super) struct Failed {
    pub(super) head: Head,
    pub(super) message: String,
    pub(super) answers: Answers,
}

/// Where a request's answer goes: a thread blocked on a channel (`Sequencer::submit`), or
/// a task awaiting it (`Sequencer::submit_async`: the server, whose requests would
/// otherwise each hold a blocking-pool thread and cost two more thread wake-ups).
pub(super) enum Reply {
    Blocking(SyncSender<Result<Vec<AppendResult>>>),
    Async(tokio::sync::oneshot::Sender<Result<Vec<AppendResult>>>),
}

impl Reply {
    /// Sends the answer. A submitter that has gone (an HTTP client that hung up) misses
    /// it; what was committed stays committed.
    pub(super) fn send(self, answer: Result<Vec<AppendResult>>) {
        match self {
            Reply::Blocking(reply) => {
                let _ = reply.send(answer);
            }
            Reply::Async(reply) => {
                let _ = reply.send(answer);
            }
        }
    }
}

/// Answers to send once the stager knows the outcome of their commit.
pub(super) struct Answers(pub(super) Vec<(Reply, Result<Vec<AppendResult>>)>);

impl Answers {
    pub(super) fn send(self) {
        for (reply, answer) in self.0 {
            reply.send(answer);
        }
    }
}

/// What the committer thread hands back after a pipelined commit: the committer itself
/// and the outcome.
pub(super) type Returned = (Committer, std::result::Result<(), Failed>);

/// The stager: takes the queued requests as a group, stages them, and has them committed.
/// A large group is handed, with the `Committer` itself, to the committer thread, and the
/// stager stages the next group meanwhile (the handed group's states and ids stay readable
/// in the stage until it is written): the rules, the hash chain and the lookups of one
/// import batch overlap the write and fsync of the previous one.
pub(super) struct Stager {
    pub(super) store: Arc<Store>,
    pub(super) counters: Arc<Counters>,
    /// Here unless a group is in flight on the committer thread.
    pub(super) committer: Option<Committer>,
    pub(super) jobs: Option<SyncSender<(Committer, Sealed, Vec<Accepted>)>>,
    pub(super) returns: Receiver<Returned>,
    /// The committer's `snapshot_every_events`: a group ends at a multiple of it.
    pub(super) snapshot_every_events: u64,
    /// The syncer's inbox (the committer sends the groups; the stager its barriers).
    pub(super) to_sync: Option<SyncSender<ToSync>>,
    /// The durable head, as the syncer publishes it: the sealed groups up to it are
    /// released from the stage.
    pub(super) durable: tokio::sync::watch::Receiver<Position>,
}

impl Stager {
    pub(super) fn run(
        mut self,
        requests: &Receiver<Work>,
        head: Head,
        (thread, syncer): (JoinHandle<()>, JoinHandle<()>),
    ) {
        let store = self.store.clone();
        let mut stage = Stage::for_commits(&store, head);
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
                    // Nothing may be in flight or waiting for its sync: the work sees (and
                    // may replace) the store between two durable commits, and the stage
                    // reads from the store afterwards.
                    let _ = self.settle(&mut stage, true);
                    self.wait_durable(&mut stage);
                    job(&self.store);
                    if let Some(committer) = &mut self.committer {
                        committer.read_settings();
                        committer.reload_tree();
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
        // Closing the committer thread's queue stops it; closing the syncer's (the
        // committer's sender and ours) stops the syncer once it has answered everything,
        // and it waits for the snapshots.
        self.jobs.take();
        let _ = thread.join();
        self.committer.take();
        self.to_sync.take();
        let _ = syncer.join();
    }

    /// Waits until every written group is durable and answered, and releases them all
    /// from the stage.
    fn wait_durable(&mut self, stage: &mut Stage<'_>) {
        if let Some(to_sync) = &self.to_sync {
            let (done, wait) = std::sync::mpsc::sync_channel(1);
            if to_sync.send(ToSync::Barrier(done)).is_ok() {
                let _ = wait.recv();
            }
        }
        stage.release_durable(*self.durable.borrow());
    }

    /// Waits until the group in flight is written (or, with `wait` false, looks whether it
    /// is). If its commit failed, the stage starts again from the head the store holds, and
    /// the failure is returned: whatever was staged on top of that group must not be
    /// written.
    pub(super) fn settle(
        &mut self,
        stage: &mut Stage<'_>,
        wait: bool,
    ) -> std::result::Result<(), String> {
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
                    Ok(()) => return Ok(()),
                    Err(failed) => failed,
                }
            }
            // The committer thread panicked; the stage is left as it is, and every later
            // request is refused (there is no committer any more).
            Err(TryRecvError::Disconnected) => return Err(stopped().to_string()),
        };
        stage.restart(failed.head);
        failed.answers.send();
        Err(failed.message)
    }

    /// Stages each request (a refused one is rolled back alone and answered at once), waits
    /// for the group in flight, and commits this one: on the committer thread when it is
    /// large, here otherwise.
    pub(super) fn stage_group(&mut self, stage: &mut Stage<'_>, group: Vec<Request>) {
        self.counters
            .requests
            .fetch_add(group.len() as u64, Ordering::Relaxed);
        // A commit that failed before this group was staged must not take it down too (the
        // committer thread hands back a failure before anyone is answered, so a retry
        // always lands here after the failure is known); nothing is staged yet, so there is
        // nothing to refuse.
        let _ = self.settle(stage, false);
        stage.release_durable(*self.durable.borrow());
        let mut accepted = Vec::with_capacity(group.len());
        for request in group {
            if request.chain.as_ref().is_some_and(Chain::broken) {
                request.reply.send(Err(Error::Storage(
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
                    request.reply.send(Err(e));
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
    pub(super) fn commit_here(
        &mut self,
        stage: &mut Stage<'_>,
        mut committer: Committer,
        sealed: Sealed,
        accepted: Vec<Accepted>,
    ) {
        let outcome = committer.commit(&sealed, accepted);
        self.committer = Some(committer);
        if let Err(failed) = outcome {
            stage.restart(failed.head);
            failed.answers.send();
        }
    }
}

/// Answers accepted requests that will not be written.
pub(super) fn refuse(accepted: Vec<Accepted>, message: &str) {
    refusals(accepted, message).send();
}

/// The answers of accepted requests that will not be written, their chains broken now
/// (before anyone hears of it, so that later requests of a chain are refused too).
pub(super) fn refusals(accepted: Vec<Accepted>, message: &str) -> Answers {
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

pub(super) fn stage_request(
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
