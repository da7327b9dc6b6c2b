//! The write path, in the order a request travels: `queue` (the `Sequencer` handle and its
//! bounded queue) -> `stager` (the single writer thread: groups requests and stages them
//! with `stage`, the rules and sequencing over an overlay of the store, and seals each
//! group: `sealed`) -> `committer` (one `WriteBatch` per group, not yet synced, on the
//! stager's thread or its own) -> `syncer`
//! (one fsync for every group written meanwhile, then the view, the durable head, the
//! answers) -> `snapshots` (automatic snapshots in the background). A stage's other use is
//! `import`'s dry run, which checks a whole file before anything is written.
//!
//! The sequencer is the ledger's single writer. One thread (the stager) owns the head;
//! callers on any thread submit requests (one event, or an atomic batch) over a bounded
//! queue and wait for the answer. The stager takes every request waiting in the queue (up
//! to `COMMIT_EVENTS_MAX` events), stages each against the rules (a refused request is
//! rolled back alone), and writes all accepted ones in one `WriteBatch`. The syncer thread
//! syncs the write-ahead log once for every group written since its last sync, and only
//! then publishes and answers them: group commit, with one group's fsync overlapping the
//! staging and writing of the next ones. Until a group is durable no reader in the process
//! sees it (`store`'s view) and the stage keeps its states and ids in its overlay.
//!
//! A group of `PIPELINE_EVENTS_MIN` events or more (an import's batches) is written by a
//! second thread, the committer, while the stager stages the next group on top of it. One
//! group at most is being written, and the next is handed over only once it is written; if
//! its write fails, the group staged on top of it is refused unwritten (its positions
//! assumed the failed one) and staging starts again from the written head.
//!
//! The HTTP server submits through the same `Sequencer` handle.

mod committer;
mod dry_run;
mod queue;
mod sealed;
mod sequence;
mod snapshots;
pub(super) mod stage;
mod stager;
mod syncer;
#[cfg(test)]
mod tests;

pub use queue::{BATCH_EVENTS_MAX, COMMIT_EVENTS_MAX, Chain, Pending, Sequencer, WriterStats};
pub(crate) use snapshots::snapshot;
