//! The dry run: a stage that keeps no events, only the order states and event ids it
//! staged, moving older generations of them to a scratch table so that `import` can check
//! a file of any size against the rules before anything is written.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::stage::StagedId;
use crate::domain::{EventId, OrderId, OrderState};
use crate::error::{Error, Result};
use crate::store::Scratch;

/// Staged states and ids of one generation of a dry run.
pub(super) struct Generation {
    pub(super) states: HashMap<OrderId, OrderState>,
    pub(super) ids: HashMap<EventId, StagedId>,
}

/// A dry run's scratch table and the thread writing a generation to it. Encoding and
/// writing a generation took a third of the validation pass on the staging thread (perf, 1M
/// import); a background thread does it while staging goes on, and lookups read the
/// generation from memory (`Stage::sealed`) until it is written.
struct Spill {
    scratch: Arc<Scratch>,
    writer: Option<JoinHandle<Result<()>>>,
}

impl Spill {
    /// Waits until the generation being written is in the scratch table.
    fn finish(&mut self) -> Result<()> {
        if let Some(writer) = self.writer.take() {
            writer.join().map_err(|_| {
                Error::Storage("the thread writing to the scratch table panicked".to_owned())
            })??;
        }
        Ok(())
    }

    /// Starts writing `generation` (the previous one must be finished).
    fn start(&mut self, generation: Arc<Generation>) -> Result<()> {
        assert!(
            self.writer.is_none(),
            "one generation at a time goes to the scratch table"
        );
        let scratch = self.scratch.clone();
        let writer = std::thread::Builder::new()
            .name("ordo-spill".to_owned())
            .spawn(move || scratch.put(generation.states.iter(), generation.ids.iter()))
            .map_err(|e| Error::Storage(format!("cannot start the spill thread: {e}")))?;
        self.writer = Some(writer);
        Ok(())
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        // An abandoned dry run (a bad line) still lets the writer end before the scratch
        // table's directory goes.
        let _ = self.finish();
    }
}

/// A dry run's part of a stage: the generations of staged states and ids beyond the
/// current one, and where they go when memory is full.
pub(super) struct DryRun {
    /// Where older generations go.
    spill: Spill,
    /// Entries (states plus ids) kept in memory at most.
    entries_max: usize,
    /// The previous generation of states and ids: the current one replaces it when full,
    /// and it moves to the scratch table. Recently used entries stay in memory.
    pub(super) older_states: HashMap<OrderId, OrderState>,
    pub(super) older_ids: HashMap<EventId, StagedId>,
}

impl DryRun {
    /// A dry run that keeps at most `entries_max` states and ids in memory and moves older
    /// ones to `scratch`.
    pub(super) fn new(scratch: Scratch, entries_max: usize) -> DryRun {
        DryRun {
            spill: Spill {
                scratch: Arc::new(scratch),
                writer: None,
            },
            entries_max: entries_max.max(1),
            older_states: HashMap::new(),
            older_ids: HashMap::new(),
        }
    }

    /// When the current generation (`states`, `ids`) holds a third of the memory bound:
    /// moves the older generation to the scratch table (in the background; `sealed` then
    /// holds it until it is written), and the current one becomes older. The scratch table
    /// so only ever receives values older than those in memory.
    pub(super) fn spill_if_full(
        &mut self,
        states: &mut HashMap<OrderId, OrderState>,
        ids: &mut HashMap<EventId, StagedId>,
        sealed: &mut Option<Arc<Generation>>,
    ) -> Result<()> {
        if states.len() + ids.len() < self.entries_max.div_ceil(3) {
            return Ok(());
        }
        self.spill.finish()?;
        *sealed = None;
        let older = Generation {
            states: std::mem::take(&mut self.older_states),
            ids: std::mem::take(&mut self.older_ids),
        };
        if !older.states.is_empty() || !older.ids.is_empty() {
            let older = Arc::new(older);
            self.spill.start(older.clone())?;
            *sealed = Some(older);
        }
        self.older_states = std::mem::take(states);
        self.older_ids = std::mem::take(ids);
        Ok(())
    }

    /// A state written to the scratch table (older than every generation in memory).
    pub(super) fn scratch_state(&self, order_id: &OrderId) -> Result<Option<OrderState>> {
        self.spill.scratch.state(order_id)
    }

    /// An id written to the scratch table (older than every generation in memory).
    pub(super) fn scratch_id(&self, event_id: &EventId) -> Result<Option<StagedId>> {
        self.spill.scratch.id(event_id)
    }
}
