//! A group of staged events sealed for its commit: what the stager hands the committer,
//! and the one place that turns a group into the store's write (`Sealed::commit`).

use std::sync::Arc;

use super::dry_run::Generation;
use crate::domain::{Event, Hash};
use crate::error::Result;
use crate::projection::{Delta, tables};
use crate::store::{Commit, Head, Store};

/// A group of staged events sealed for its commit (`Stage::seal`): the stage keeps reading
/// the group's order states and ids from the same shared generation until the commit is
/// durable (`Stage::release_durable`), so the next groups can be staged meanwhile.
pub struct Sealed {
    events: Vec<Event>,
    /// The Merkle leaf hash of each event.
    leaves: Vec<Hash>,
    generation: Arc<Generation>,
    delta: Delta,
    head: Head,
}

impl Sealed {
    /// The group of `events` (each with its Merkle leaf hash in `leaves`), whose order
    /// states and ids are in `generation`, with the projection `delta` of its effects and
    /// the `head` after it.
    pub(super) fn new(
        events: Vec<Event>,
        leaves: Vec<Hash>,
        generation: Arc<Generation>,
        delta: Delta,
        head: Head,
    ) -> Sealed {
        Sealed {
            events,
            leaves,
            generation,
            delta,
            head,
        }
    }

    /// The write that stores the group: its events, their orders' states, and the
    /// projection rows its delta changes (read from `store` now: the committer calls this
    /// right before it writes, after the previous group's rows are written).
    pub fn commit(&self, store: &Store) -> Result<Commit<'_>> {
        // The rows as the previous commit wrote them, durable or not.
        let rows = tables::delta_writes(&self.delta, |cf, key| store.get_written(cf, key))?;
        Ok(Commit {
            events: &self.events,
            states: self.generation.states.values().collect(),
            head: self.head,
            rows,
        })
    }

    /// The Merkle leaf hashes of the group's events, in position order.
    pub fn leaves(&self) -> &[Hash] {
        &self.leaves
    }

    /// The head after the group.
    pub fn head(&self) -> Head {
        self.head
    }

    /// Events in the group.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when every request of the group was refused.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}
