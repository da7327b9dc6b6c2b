//! The sequencer: the ledger's single writer. One thread owns the head; callers on any
//! thread submit requests (one event, or an atomic batch) over a bounded queue and wait for
//! the answer. The thread takes every request waiting in the queue (up to
//! `COMMIT_EVENTS_MAX` events), stages each against the rules (a refused request is rolled
//! back alone), writes all accepted ones in one `WriteBatch` with one fsync, and only then
//! answers: group commit.
//!
//! The HTTP server of a later issue submits through the same `Sequencer` handle.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::{Commit, Durability, Head, Store};

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
}

/// A handle to the writer thread. Dropping it lets the thread finish the queue and stop.
pub struct Sequencer {
    queue: Option<SyncSender<Request>>,
    worker: Option<JoinHandle<()>>,
}

fn stopped() -> Error {
    Error::Storage("the ledger's writer thread has stopped".to_owned())
}

impl Sequencer {
    /// Starts the writer over `store`, whose committed head is `head`.
    pub fn start(store: Arc<Store>, head: Head, durability: Durability) -> Result<Sequencer> {
        let (queue, requests) = sync_channel(QUEUE_REQUESTS_MAX);
        let worker = std::thread::Builder::new()
            .name("ordo-sequencer".to_owned())
            .spawn(move || {
                Writer {
                    store,
                    head,
                    durability,
                }
                .run(&requests)
            })
            .map_err(|e| Error::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(Sequencer {
            queue: Some(queue),
            worker: Some(worker),
        })
    }

    /// Appends events atomically (all or none) and waits until they are durable. Each event
    /// may carry the input line it came from; errors then name it.
    pub fn submit(&self, events: Vec<(Option<u64>, NewEvent)>) -> Result<Vec<AppendResult>> {
        if events.len() > BATCH_EVENTS_MAX {
            return Err(Error::InvalidInput(format!(
                "a batch holds at most {BATCH_EVENTS_MAX} events, this one has {}; use `ordo import` for more",
                events.len()
            )));
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = sync_channel(1);
        self.queue
            .as_ref()
            .ok_or_else(stopped)?
            .send(Request { events, reply })
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
}

impl Writer {
    fn run(mut self, requests: &Receiver<Request>) {
        let mut carried: Option<Request> = None;
        loop {
            let first = match carried.take() {
                Some(request) => request,
                None => match requests.recv() {
                    Ok(request) => request,
                    Err(_) => return,
                },
            };
            let mut events = first.events.len();
            let mut group = vec![first];
            while events < COMMIT_EVENTS_MAX {
                match requests.try_recv() {
                    Ok(request) if events + request.events.len() > COMMIT_EVENTS_MAX => {
                        carried = Some(request);
                        break;
                    }
                    Ok(request) => {
                        events += request.events.len();
                        group.push(request);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.commit_group(group);
        }
    }

    /// Stages each request, commits the accepted ones together, then answers everyone.
    fn commit_group(&mut self, group: Vec<Request>) {
        let mut stage = Stage::new(&self.store, self.head, true);
        let mut accepted = Vec::with_capacity(group.len());
        for request in group {
            let checkpoint = stage.checkpoint();
            match stage_request(&mut stage, request.events) {
                Ok(results) => accepted.push((request.reply, results)),
                Err(e) => {
                    stage.rollback(checkpoint);
                    let _ = request.reply.send(Err(e));
                }
            }
        }
        let head = stage.head();
        let (events, states) = stage.take();
        let outcome = if events.is_empty() {
            Ok(())
        } else {
            let commit = Commit {
                events: &events,
                states: states.values().collect(),
                head,
            };
            self.store.commit(&commit, self.durability)
        };
        match outcome {
            Ok(()) => {
                self.head = head;
                for (reply, results) in accepted {
                    let _ = reply.send(Ok(results));
                }
            }
            Err(e) => {
                // The batch is atomic: nothing of it is on disk, so the head stays as it was.
                let message = e.to_string();
                for (reply, _) in accepted {
                    let _ = reply.send(Err(Error::Storage(format!(
                        "commit failed, nothing was written: {message}"
                    ))));
                }
            }
        }
    }
}

fn stage_request(
    stage: &mut Stage<'_>,
    events: Vec<(Option<u64>, NewEvent)>,
) -> Result<Vec<AppendResult>> {
    let now = Timestamp::from_datetime(chrono::Utc::now())
        .expect("the system clock is between the years 1 and 9999");
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
