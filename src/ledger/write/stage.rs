//! Staging: turns submitted events into sequenced ones against the current state, without
//! writing. It checks idempotency (event ids), `expected_version`, the order rules and the
//! time rules; assigns position, version, recorded_at and hash; and folds the new order
//! states. It keeps an overlay over the store with an undo log, so one rejected request in a
//! group commit is rolled back without disturbing the others.
//!
//! The overlay is layered, newest first: the current group's states and ids, a dry run's
//! older generation and its spill on its way to the scratch table, the sequencer's sealed
//! groups that are not yet durable (being written, or waiting for their sync: the store's
//! reads show durable commits only), the scratch table, and the store.
//!
//! A stage has a `Purpose`: for commits (the stager's, which seals groups for the
//! committer) or a dry run (`import` stages a whole file first, keeping no events, so that
//! a bad line anywhere means nothing is written; `dry_run` holds its spill to the scratch
//! table). "Staged" means decided and sequenced, not yet written.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::dry_run::{DryRun, Generation};
use super::sealed::Sealed;
use super::sequence::sequence;
use crate::domain::{
    Event, EventData, EventId, Hash, OrderId, OrderState, Position, Timestamp, Version, apply,
    apply_to, decide,
};
use crate::error::{Error, Result};
use crate::format::codec;
use crate::projection::{Before, Delta, Effects, effects_since};
use crate::store::{Head, Scratch, Store};

/// Staged states plus ids a dry run keeps in memory before it moves them to its scratch
/// table (about 100 MB at the sizes of generated orders): three generations of a third
/// each (the current, the older, and the one being written to the scratch table).
pub const DRY_RUN_ENTRIES_MAX: usize = 200_000;

use crate::ledger::input::NewEvent;

/// What an append did: the product.md "append result".
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppendResult {
    /// Position of the event (the original's for a duplicate).
    pub position: Position,
    /// The order.
    pub order_id: OrderId,
    /// Version of the event in its order.
    pub version: Version,
    /// The event's id.
    pub event_id: EventId,
    /// When it was recorded.
    pub recorded_at: Timestamp,
    /// True when the event id was already stored with the same content: nothing was written.
    pub duplicate: bool,
}

/// The identity of an event's content, for idempotency: order, type and data.
type ContentDigest = [u8; 32];

/// SHA-256 of the order id and the typed data in the record codec's bytes. Never stored:
/// it is recomputed from stored events when needed, so it may change with the codec.
fn content_digest(order_id: &OrderId, data: &EventData) -> ContentDigest {
    Sha256::digest(codec::encode_record(&(order_id, data))).into()
}

enum Undo {
    State(OrderId, Option<OrderState>),
    Id(EventId),
}

/// A point to roll back to.
pub struct Checkpoint {
    head: Head,
    events_len: usize,
    effects_len: usize,
    undo_len: usize,
}

/// Staged id: where it went and what it carried.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct StagedId {
    result: AppendResult,
    digest: ContentDigest,
}

/// An overlay of staged events over the store: what is staged but not yet written reads as
/// if it were. Configured by its `Purpose`.
pub struct Stage<'s> {
    store: &'s Store,
    head: Head,
    /// The current generation of staged order states and event ids.
    states: HashMap<OrderId, OrderState>,
    ids: HashMap<EventId, StagedId>,
    /// A dry run's spill on its way to the scratch table.
    sealed: Option<Arc<Generation>>,
    purpose: Purpose,
}

/// What a stage is for.
enum Purpose {
    /// Staging for commits: the events are kept, with their effects and an undo log, and
    /// sealed in groups for the committer.
    Commit(Kept),
    /// `import`'s check of a whole file: nothing is kept but states and ids, which spill
    /// to a scratch table; abandoned whole on the first error.
    DryRun(DryRun),
}

/// What a stage for commits keeps besides states and ids.
#[derive(Default)]
struct Kept {
    events: Vec<Event>,
    /// The Merkle leaf hash of each kept event.
    leaves: Vec<Hash>,
    /// Each kept event's contribution to the aggregate projections.
    effects: Vec<(OrderId, Timestamp, Effects)>,
    undo: Vec<Undo>,
    /// The sealed groups not yet durable, oldest first, each with the position it ends at.
    unsynced: VecDeque<(Position, Arc<Generation>)>,
}

impl<'s> Stage<'s> {
    /// A stage for commits over `store`, whose last committed event is `head`.
    pub fn for_commits(store: &'s Store, head: Head) -> Stage<'s> {
        Stage::with_purpose(store, head, Purpose::Commit(Kept::default()))
    }

    /// A dry run over `store` that keeps at most `entries_max` staged states and ids in
    /// memory and moves them to `scratch` beyond: validation of input of any size.
    pub fn dry_run(
        store: &'s Store,
        head: Head,
        scratch: Scratch,
        entries_max: usize,
    ) -> Stage<'s> {
        let dry_run = DryRun::new(scratch, entries_max);
        Stage::with_purpose(store, head, Purpose::DryRun(dry_run))
    }

    fn with_purpose(store: &'s Store, head: Head, purpose: Purpose) -> Stage<'s> {
        Stage {
            store,
            head,
            states: HashMap::new(),
            ids: HashMap::new(),
            sealed: None,
            purpose,
        }
    }

    /// The events, effects and undo log of a stage for commits.
    fn kept(&mut self, what: &str) -> &mut Kept {
        match &mut self.purpose {
            Purpose::Commit(kept) => kept,
            Purpose::DryRun(_) => panic!("a dry run keeps no events: it cannot {what}"),
        }
    }

    /// The head after everything staged so far.
    pub fn head(&self) -> Head {
        self.head
    }

    /// Remembers the current point so that `rollback` can return to it.
    pub fn checkpoint(&mut self) -> Checkpoint {
        let head = self.head;
        let kept = self.kept("take a checkpoint");
        Checkpoint {
            head,
            events_len: kept.events.len(),
            effects_len: kept.effects.len(),
            undo_len: kept.undo.len(),
        }
    }

    /// Forgets everything staged since `checkpoint`. Only a stage that keeps events has an
    /// undo log; a dry run is abandoned whole instead.
    pub fn rollback(&mut self, checkpoint: Checkpoint) {
        let Purpose::Commit(kept) = &mut self.purpose else {
            panic!("a dry run keeps no undo log to roll back");
        };
        while kept.undo.len() > checkpoint.undo_len {
            match kept
                .undo
                .pop()
                .expect("the loop condition says it is not empty")
            {
                Undo::State(order_id, Some(previous)) => {
                    self.states.insert(order_id, previous);
                }
                Undo::State(order_id, None) => {
                    self.states.remove(&order_id);
                }
                Undo::Id(event_id) => {
                    self.ids.remove(&event_id);
                }
            }
        }
        kept.events.truncate(checkpoint.events_len);
        kept.leaves.truncate(checkpoint.events_len);
        kept.effects.truncate(checkpoint.effects_len);
        self.head = checkpoint.head;
    }

    /// Seals everything staged since the last seal for its commit: the staged events, the
    /// states of the orders they touched and their sum of projection effects. Until
    /// `release_durable`, later stages still read those states and ids from the sealed
    /// group, so they can go on while it is written and synced.
    pub fn seal(&mut self) -> Sealed {
        let head = self.head;
        let kept = self.kept("seal");
        kept.undo.clear();
        let mut delta = Delta::default();
        for (order_id, occurred_at, effects) in kept.effects.drain(..) {
            delta.add(&order_id, occurred_at, effects);
        }
        let events = std::mem::take(&mut kept.events);
        let leaves = std::mem::take(&mut kept.leaves);
        assert_eq!(
            leaves.len(),
            events.len(),
            "every kept event has its leaf hash"
        );
        let generation = Arc::new(Generation {
            states: std::mem::take(&mut self.states),
            ids: std::mem::take(&mut self.ids),
        });
        self.kept("seal")
            .unsynced
            .push_back((head.position, generation.clone()));
        Sealed::new(events, leaves, generation, delta, self.head)
    }

    /// After the commit of the newest sealed group failed: forgets it and everything
    /// staged since, and starts again at `head` (what the store holds). The older sealed
    /// groups were written and stay until they are durable.
    pub fn restart(&mut self, head: Head) {
        let mut unsynced = std::mem::take(&mut self.kept("restart").unsynced);
        unsynced.pop_back();
        *self = Stage::for_commits(self.store, head);
        self.kept("restart").unsynced = unsynced;
    }

    /// The commits up to `durable` are durable: from now on the store answers for them.
    pub fn release_durable(&mut self, durable: Position) {
        let unsynced = &mut self.kept("release groups").unsynced;
        while unsynced.front().is_some_and(|(end, _)| *end <= durable) {
            unsynced.pop_front();
        }
    }

    /// The sealed groups not yet durable, newest first.
    fn unsynced(&self) -> impl Iterator<Item = &Generation> {
        let unsynced = match &self.purpose {
            Purpose::Commit(kept) => Some(kept.unsynced.iter().rev()),
            Purpose::DryRun(_) => None,
        };
        unsynced
            .into_iter()
            .flatten()
            .map(|(_, generation)| generation.as_ref())
    }

    fn state(&self, order_id: &OrderId) -> Result<Option<OrderState>> {
        // Newest first: the current generation, a dry run's older one and its spill, the
        // sealed groups not yet durable, a dry run's scratch table, the store.
        if let Some(state) = self.states.get(order_id) {
            return Ok(Some(state.clone()));
        }
        let dry_run = match &self.purpose {
            Purpose::DryRun(dry_run) => Some(dry_run),
            Purpose::Commit(_) => None,
        };
        if let Some(dry_run) = dry_run
            && let Some(state) = dry_run.older_states.get(order_id)
        {
            return Ok(Some(state.clone()));
        }
        if let Some(state) = self
            .sealed
            .iter()
            .map(AsRef::as_ref)
            .chain(self.unsynced())
            .find_map(|g| g.states.get(order_id))
        {
            return Ok(Some(state.clone()));
        }
        if let Some(dry_run) = dry_run
            && let Some(state) = dry_run.scratch_state(order_id)?
        {
            return Ok(Some(state));
        }
        self.store.order_state(order_id)
    }

    fn staged_id(&self, event_id: &EventId) -> Result<Option<(AppendResult, ContentDigest)>> {
        let dry_run = match &self.purpose {
            Purpose::DryRun(dry_run) => Some(dry_run),
            Purpose::Commit(_) => None,
        };
        if let Some(staged) = self
            .ids
            .get(event_id)
            .or_else(|| dry_run.and_then(|d| d.older_ids.get(event_id)))
            .or_else(|| {
                self.sealed
                    .iter()
                    .map(AsRef::as_ref)
                    .chain(self.unsynced())
                    .find_map(|g| g.ids.get(event_id))
            })
        {
            return Ok(Some((staged.result.clone(), staged.digest)));
        }
        let Some(dry_run) = dry_run else {
            return Ok(None);
        };
        Ok(dry_run
            .scratch_id(event_id)?
            .map(|staged| (staged.result, staged.digest)))
    }

    /// If `event_id` is already stored or staged: the original's result when the content
    /// digest is the same, a conflict when it differs.
    fn duplicate_of(
        &self,
        event_id: &EventId,
        digest: &ContentDigest,
    ) -> Result<Option<AppendResult>> {
        let (original, original_digest) = if let Some(staged) = self.staged_id(event_id)? {
            staged
        } else if let Some(position) = self.store.event_position(event_id)? {
            let event = self
                .store
                .event(position)?
                .ok_or_else(|| Error::Corruption {
                    position,
                    reason: format!("event id {event_id} points to a missing event"),
                })?;
            let digest = content_digest(&event.order_id, &event.data);
            let result = AppendResult {
                position,
                order_id: event.order_id,
                version: event.version,
                event_id: *event_id,
                recorded_at: event.recorded_at,
                duplicate: true,
            };
            (result, digest)
        } else {
            return Ok(None);
        };
        if &original_digest != digest {
            return Err(Error::Conflict(format!(
                "event_id {event_id} is already used by event {} of order {} with other content",
                original.position, original.order_id
            )));
        }
        Ok(Some(AppendResult {
            duplicate: true,
            ..original
        }))
    }

    /// Stages one event, with `now` as the clock. On error nothing is staged.
    pub fn stage(&mut self, new: NewEvent, now: Timestamp) -> Result<AppendResult> {
        let digest = new
            .event_id
            .map(|_| content_digest(&new.order_id, &new.data));
        if let (Some(event_id), Some(digest)) = (&new.event_id, &digest)
            && let Some(original) = self.duplicate_of(event_id, digest)?
        {
            return Ok(original);
        }
        let state = self.state(&new.order_id)?;
        let current = state.as_ref().map_or(Version(0), |s| s.version);
        if let Some(expected) = new.expected_version
            && expected != current
        {
            return Err(Error::Conflict(format!(
                "order {} is at version {current}, but expected_version is {expected}",
                new.order_id
            )));
        }
        decide(&new.order_id, state.as_ref(), &new.data)?;
        let chained = matches!(self.purpose, Purpose::Commit(_));
        let (event, leaf) = sequence(&self.head, chained, new, current.next(), now)?;
        let result = AppendResult {
            position: event.position,
            order_id: event.order_id.clone(),
            version: event.version,
            event_id: event.event_id,
            recorded_at: event.recorded_at,
            duplicate: false,
        };
        // The state read above is this event's own copy: folded in place, not cloned again
        // (a clone per event, twice per imported line, on the writer thread).
        let before = state.as_ref().map(Before::of);
        let next = match state {
            Some(mut state) => {
                apply_to(&mut state, &event);
                state
            }
            None => apply(None, &event)
                .expect("an event the rules accepted always yields an order state"),
        };
        let id = digest.map(|digest| StagedId {
            result: result.clone(),
            digest,
        });
        self.record(event, leaf, before, next, id)?;
        Ok(result)
    }

    /// Records a staged event: its order's new state, its id (if it came with one) and the
    /// new head; a stage for commits also keeps the event, its effects and undo entries, and
    /// a dry run moves older entries to its scratch table when memory is full.
    fn record(
        &mut self,
        event: Event,
        leaf: Option<Hash>,
        before: Option<Before>,
        next: OrderState,
        id: Option<StagedId>,
    ) -> Result<()> {
        let effects = matches!(self.purpose, Purpose::Commit(_))
            .then(|| effects_since(before, &next, &event));
        let previous = self.states.insert(event.order_id.clone(), next);
        let staged_id = id.map(|id| {
            self.ids.insert(event.event_id, id);
            event.event_id
        });
        let placed = matches!(event.data, EventData::OrderPlaced(_));
        self.head = Head {
            position: event.position,
            hash: event.hash,
            recorded_at: Some(event.recorded_at),
            orders: self.head.orders + u64::from(placed),
        };
        match (&mut self.purpose, effects) {
            (Purpose::Commit(kept), Some(effects)) => {
                kept.undo
                    .push(Undo::State(event.order_id.clone(), previous));
                if let Some(event_id) = staged_id {
                    kept.undo.push(Undo::Id(event_id));
                }
                kept.effects
                    .push((event.order_id.clone(), event.occurred_at, effects));
                kept.events.push(event);
                kept.leaves
                    .push(leaf.expect("a stage for commits chains every event"));
            }
            // A dry run is abandoned whole on the first error, so it keeps no undo log: the
            // log would hold a copy of every intermediate state of a file of any size.
            (Purpose::DryRun(dry_run), _) => {
                dry_run.spill_if_full(&mut self.states, &mut self.ids, &mut self.sealed)?;
            }
            (Purpose::Commit(_), None) => unreachable!("effects are computed for commits"),
        }
        Ok(())
    }
}
