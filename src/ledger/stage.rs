//! Staging: turns submitted events into sequenced ones against the current state, without
//! writing. It checks idempotency (event ids), `expected_version`, the order rules and the
//! time rules; assigns position, version, recorded_at and hash; and folds the new order
//! states. It keeps an overlay over the store with an undo log, so one rejected request in a
//! group commit is rolled back without disturbing the others.
//!
//! The overlay is layered, newest first: the current group's states and ids, a dry run's
//! older generation, a sealed generation being written elsewhere (the sequencer's group in
//! flight, or a dry run's spill on its way to the scratch table), the scratch table, and
//! the store.
//!
//! The sequencer stages for real; `import` stages a whole file in a dry run first (keeping no
//! events) so that a bad line anywhere means nothing is written.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::domain::{
    Event, EventData, EventId, OCCURRED_AHEAD_MICROS_MAX, OrderId, OrderState, Position,
    SCHEMA_VERSION, Timestamp, Version, apply, apply_to, decide,
};
use crate::error::{Error, Result};
use crate::format::{chain, codec};
use crate::projection::tables;
use crate::projection::{Before, Delta, Effects, effects_since};
use crate::store::{Commit, Head, Scratch, Store};

/// Staged states plus ids a dry run keeps in memory before it moves them to its scratch
/// table (about 100 MB at the sizes of generated orders): three generations of a third
/// each (the current, the older, and the one being written to the scratch table).
pub const DRY_RUN_ENTRIES_MAX: usize = 200_000;

use super::input::NewEvent;

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
#[derive(serde::Serialize, serde::Deserialize)]
struct StagedId {
    result: AppendResult,
    digest: ContentDigest,
}

/// Staged states and ids of one generation of a dry run.
struct Generation {
    states: HashMap<OrderId, OrderState>,
    ids: HashMap<EventId, StagedId>,
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

/// A group of staged events sealed for its commit (`Stage::seal`): the stage keeps reading
/// the group's order states and ids from the same shared generation until the commit is
/// written (`Stage::release_sealed`), so the next group can be staged meanwhile.
pub struct Sealed {
    events: Vec<Event>,
    generation: Arc<Generation>,
    delta: Delta,
    head: Head,
}

impl Sealed {
    /// The write that stores the group: its events, their orders' states, and the
    /// projection rows its delta changes (read from `store` now: the committer calls this
    /// right before it writes, after the previous group's rows are written).
    pub fn commit(&self, store: &Store) -> Result<Commit<'_>> {
        let rows = tables::delta_writes(&self.delta, |cf, key| store.get(cf, key))?;
        Ok(Commit {
            events: &self.events,
            states: self.generation.states.values().collect(),
            head: self.head,
            rows,
        })
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

/// An overlay of staged events over the store.
pub struct Stage<'s> {
    store: &'s Store,
    head: Head,
    states: HashMap<OrderId, OrderState>,
    ids: HashMap<EventId, StagedId>,
    events: Vec<Event>,
    /// Each kept event's contribution to the aggregate projections.
    effects: Vec<(OrderId, Timestamp, Effects)>,
    keep_events: bool,
    undo: Vec<Undo>,
    /// A generation being written elsewhere, newer than everything written: a dry run's
    /// spill on its way to the scratch table, or the sequencer's group being committed.
    sealed: Option<Arc<Generation>>,
    /// Where a dry run moves its staged states and ids when memory holds `spill_at`.
    spill: Option<Spill>,
    spill_at: usize,
    /// A dry run's previous generation of states and ids: the current one replaces it when
    /// full, and it moves to the scratch table. Recently used entries stay in memory.
    older_states: HashMap<OrderId, OrderState>,
    older_ids: HashMap<EventId, StagedId>,
}

impl<'s> Stage<'s> {
    /// A stage over `store` whose last committed event is `head`. A dry run (`keep_events`
    /// false) checks everything but keeps no events.
    pub fn new(store: &'s Store, head: Head, keep_events: bool) -> Stage<'s> {
        Stage {
            store,
            head,
            states: HashMap::new(),
            ids: HashMap::new(),
            events: Vec::new(),
            effects: Vec::new(),
            keep_events,
            undo: Vec::new(),
            sealed: None,
            spill: None,
            spill_at: usize::MAX,
            older_states: HashMap::new(),
            older_ids: HashMap::new(),
        }
    }

    /// A dry run over `store` that keeps at most `entries_max` staged states and ids in
    /// memory and moves them to `scratch` beyond: validation of input of any size.
    pub fn dry_run(
        store: &'s Store,
        head: Head,
        scratch: Scratch,
        entries_max: usize,
    ) -> Stage<'s> {
        Stage {
            spill: Some(Spill {
                scratch: Arc::new(scratch),
                writer: None,
            }),
            spill_at: entries_max.max(1),
            ..Stage::new(store, head, false)
        }
    }

    /// When the current generation of staged states and ids holds a third of the memory
    /// bound: moves the older generation to the scratch table (in the background), and the
    /// current one becomes older. The scratch table so only ever receives values older than
    /// those in memory.
    fn spill_if_full(&mut self) -> Result<()> {
        if let Some(spill) = &mut self.spill
            && self.states.len() + self.ids.len() >= self.spill_at.div_ceil(3)
        {
            spill.finish()?;
            self.sealed = None;
            let older = Generation {
                states: std::mem::take(&mut self.older_states),
                ids: std::mem::take(&mut self.older_ids),
            };
            if !older.states.is_empty() || !older.ids.is_empty() {
                let older = Arc::new(older);
                spill.start(older.clone())?;
                self.sealed = Some(older);
            }
            self.older_states = std::mem::take(&mut self.states);
            self.older_ids = std::mem::take(&mut self.ids);
        }
        Ok(())
    }

    /// The head after everything staged so far.
    pub fn head(&self) -> Head {
        self.head
    }

    /// Remembers the current point so that `rollback` can return to it.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            head: self.head,
            events_len: self.events.len(),
            effects_len: self.effects.len(),
            undo_len: self.undo.len(),
        }
    }

    /// Forgets everything staged since `checkpoint`. Only a stage that keeps events has an
    /// undo log; a dry run is abandoned whole instead.
    pub fn rollback(&mut self, checkpoint: Checkpoint) {
        assert!(self.keep_events, "a dry run keeps no undo log to roll back");
        while self.undo.len() > checkpoint.undo_len {
            match self
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
        self.events.truncate(checkpoint.events_len);
        self.effects.truncate(checkpoint.effects_len);
        self.head = checkpoint.head;
    }

    /// Seals everything staged since the last seal for its commit: the staged events, the
    /// states of the orders they touched and their sum of projection effects. Until
    /// `release_sealed`, later stages still read those states and ids from the sealed
    /// group, so they can go on while it is written.
    pub fn seal(&mut self) -> Sealed {
        assert!(self.keep_events, "a dry run keeps no events to seal");
        assert!(
            self.sealed.is_none(),
            "the previous sealed group is released (written) before the next is sealed"
        );
        self.undo.clear();
        let mut delta = Delta::default();
        for (order_id, occurred_at, effects) in self.effects.drain(..) {
            delta.add(&order_id, occurred_at, effects);
        }
        let generation = Arc::new(Generation {
            states: std::mem::take(&mut self.states),
            ids: std::mem::take(&mut self.ids),
        });
        self.sealed = Some(generation.clone());
        Sealed {
            events: std::mem::take(&mut self.events),
            generation,
            delta,
            head: self.head,
        }
    }

    /// Forgets everything staged and sealed, and starts again at `head` (what the store
    /// holds after a failed commit).
    pub fn restart(&mut self, head: Head) {
        assert!(
            self.spill.is_none(),
            "a dry run is abandoned, not restarted"
        );
        *self = Stage::new(self.store, head, self.keep_events);
    }

    /// The sealed group is written: from now on the store answers for it.
    pub fn release_sealed(&mut self) {
        self.sealed = None;
    }

    fn state(&self, order_id: &OrderId) -> Result<Option<OrderState>> {
        if let Some(state) = self
            .states
            .get(order_id)
            .or_else(|| self.older_states.get(order_id))
            .or_else(|| self.sealed.as_ref().and_then(|g| g.states.get(order_id)))
        {
            return Ok(Some(state.clone()));
        }
        if let Some(spill) = &self.spill
            && let Some(state) = spill.scratch.state(order_id)?
        {
            return Ok(Some(state));
        }
        self.store.order_state(order_id)
    }

    fn staged_id(&self, event_id: &EventId) -> Result<Option<(AppendResult, ContentDigest)>> {
        if let Some(staged) = self
            .ids
            .get(event_id)
            .or_else(|| self.older_ids.get(event_id))
            .or_else(|| self.sealed.as_ref().and_then(|g| g.ids.get(event_id)))
        {
            return Ok(Some((staged.result.clone(), staged.digest)));
        }
        let Some(spill) = &self.spill else {
            return Ok(None);
        };
        Ok(spill
            .scratch
            .id::<StagedId>(event_id)?
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
        let event = self.sequence(new, current.next(), now)?;
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
        if self.keep_events {
            self.effects.push((
                event.order_id.clone(),
                event.occurred_at,
                effects_since(before, &next, &event),
            ));
        }
        let previous = self.states.insert(event.order_id.clone(), next);
        // A dry run is abandoned whole on the first error, so it keeps no undo log: the log
        // would hold a copy of every intermediate state of a file of any size.
        if self.keep_events {
            self.undo
                .push(Undo::State(event.order_id.clone(), previous));
        }
        if let Some(digest) = digest {
            self.ids.insert(
                event.event_id,
                StagedId {
                    result: result.clone(),
                    digest,
                },
            );
            if self.keep_events {
                self.undo.push(Undo::Id(event.event_id));
            }
        }
        let placed = matches!(event.data, EventData::OrderPlaced(_));
        self.head = Head {
            position: event.position,
            hash: event.hash,
            recorded_at: Some(event.recorded_at),
            orders: self.head.orders + u64::from(placed),
        };
        if self.keep_events {
            self.events.push(event);
        }
        self.spill_if_full()?;
        Ok(result)
    }

    /// Assigns (or, for `--preserve`, checks) position, recorded_at, event id and hash.
    fn sequence(&self, new: NewEvent, version: Version, now: Timestamp) -> Result<Event> {
        let position = self.head.position.next();
        let last = self.head.recorded_at;
        let recorded_at = match &new.preserved {
            None => match last {
                // recorded_at strictly increases with position, even if the clock steps back.
                Some(last) if now <= last => last.next_micro(),
                _ => now,
            },
            Some(p) => {
                check_preserved(p, position, version, last)?;
                p.recorded_at
            }
        };
        let occurred_at = new.occurred_at.unwrap_or(recorded_at);
        if occurred_at.micros()
            > recorded_at
                .micros()
                .saturating_add(OCCURRED_AHEAD_MICROS_MAX)
        {
            return Err(crate::domain::FieldError::new(
                "occurred_at",
                format!(
                    "{occurred_at} is more than 5 minutes after the recording time {recorded_at}"
                ),
            )
            .into());
        }
        let mut event = Event {
            position,
            order_id: new.order_id,
            version,
            event_id: new
                .event_id
                .unwrap_or_else(|| EventId(uuid::Uuid::now_v7())),
            schema_version: SCHEMA_VERSION,
            recorded_at,
            occurred_at,
            actor: new.actor,
            correlation_id: new.correlation_id,
            causation_id: new.causation_id,
            data: new.data,
            hash: crate::domain::Hash::default(),
        };
        // A dry run of input without hashes never needs them (nothing is written and no
        // input hash is compared): skipping the chain halves its cost per event.
        if self.keep_events || new.preserved.is_some() {
            event.hash = chain::chain(&self.head.hash, &event);
        }
        if let Some(p) = new.preserved
            && p.hash != event.hash
        {
            return Err(Error::Corruption {
                position,
                reason: format!(
                    "the input's hash {} differs from {} recomputed from the event and its predecessor",
                    p.hash, event.hash
                ),
            });
        }
        Ok(event)
    }
}

/// `import --preserve` continues a ledger exactly: the input's position and version must be the
/// next ones, and its recorded_at must increase.
fn check_preserved(
    p: &super::input::Preserved,
    position: Position,
    version: Version,
    last: Option<Timestamp>,
) -> Result<()> {
    use crate::domain::FieldError;
    if p.position != position {
        return Err(FieldError::new(
            "position",
            format!(
                "is {}, but the ledger's next position is {position} (a preserved import must continue the ledger's head)",
                p.position
            ),
        )
        .into());
    }
    if p.version != version {
        return Err(FieldError::new(
            "version",
            format!(
                "is {}, but the order's next version is {version}",
                p.version
            ),
        )
        .into());
    }
    if let Some(last) = last
        && p.recorded_at <= last
    {
        return Err(FieldError::new(
            "recorded_at",
            format!("{} is not after the previous event's {last}", p.recorded_at),
        )
        .into());
    }
    Ok(())
}
