//! The write path, in the order a request travels: `queue` (the `Sequencer` handle and its
//! bounded queue) -> `stager` (the single writer thread: groups requests and stages them
//! with `stage`, the rules and sequencing over an overlay of the store) -> `committer` (one
//! `WriteBatch` and one fsync per group, on the stager's thread or its own) -> `snapshots`
//! (automatic snapshots in the background). A stage's other use is `import`'s dry run,
//! which checks a whole file before anything is written.
//!
//! The sequencer is the ledger's single writer. One thread (the stager) owns the head;
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

mod committer;
mod dry_run;
mod queue;
mod sequence;
mod snapshots;
pub(super) mod stage;
mod stager;
#[cfg(test)]
mod tests;

pub use queue::{BATCH_EVENTS_MAX, COMMIT_EVENTS_MAX, Chain, Pending, Sequencer, WriterStats};
pub(crate) use snapshots::snapshot;
