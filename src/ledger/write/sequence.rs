//! Sequencing: what the ledger assigns to an accepted event (position, recorded_at, event
//! id, hash), or checks when `import --preserve` carries them.

use crate::domain::{
    Event, EventId, OCCURRED_AHEAD_MICROS_MAX, Position, SCHEMA_VERSION, Timestamp, Version,
};
use crate::error::{Error, Result};
use crate::format::chain;
use crate::ledger::input::NewEvent;
use crate::store::Head;

/// Assigns (or, for `--preserve`, checks) position, recorded_at, event id and hash of the
/// event after `head`; the hash (and the event's Merkle leaf hash) only if `chained` (a dry
/// run without hashes in its input needs none) or the input carries one.
pub(super) fn sequence(
    head: &Head,
    chained: bool,
    new: NewEvent,
    version: Version,
    now: Timestamp,
) -> Result<(Event, Option<crate::domain::Hash>)> {
    let position = head.position.next();
    let last = head.recorded_at;
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
            format!("{occurred_at} is more than 5 minutes after the recording time {recorded_at}"),
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
    // The leaf hash is only for commits (a dry run of `--preserve` input checks hashes but
    // stores no tree).
    let mut leaf = None;
    if chained {
        let (hash, leaf_hash) = chain::chain_and_leaf(&head.hash, &event);
        event.hash = hash;
        leaf = Some(leaf_hash);
    } else if new.preserved.is_some() {
        event.hash = chain::chain(&head.hash, &event);
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
    Ok((event, leaf))
}

/// `import --preserve` continues a ledger exactly: the input's position and version must be the
/// next ones, and its recorded_at must increase.
fn check_preserved(
    p: &crate::ledger::input::Preserved,
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
