//! `verify`: re-reads the whole log and checks, event by event, what the ledger promises:
//! every record decodes and its checksum holds; positions run 1, 2, 3 ... with no gap;
//! recorded_at strictly increases; each order's versions run 1, 2, 3 ... in position order;
//! the order and event-id indexes point at the event; the hash chain recomputes; every stored
//! Merkle tree node equals the one recomputed from the log, and none lies beyond it; and the
//! head record names the last event and its hash. The first failure is reported, not
//! repaired.

use serde::Serialize;

use crate::domain::{Event, Hash, Position, Timestamp, Version};
use crate::error::{Error, Result};
use crate::format::chain;
use crate::format::merkle::{Frontier, NodeId, STORED_LEVEL_MIN};
use crate::store::Store;

use crate::progress::Progress;

/// What `ordo verify` reports (product.md section 6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// True when every check passed.
    pub ok: bool,
    /// Events checked.
    pub events: u64,
    /// Position of the last event checked.
    pub head_position: Position,
    /// Hash at that position, recomputed.
    pub head_hash: String,
    /// The first position found bad.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_position: Option<Position>,
    /// What is wrong there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

struct Walk {
    /// The tree recomputed so far, when the ledger keeps one.
    tree: Option<Frontier>,
    expected: Position,
    hash: Hash,
    recorded_at: Option<Timestamp>,
    orders: u64,
}

impl Walk {
    fn report(&self, bad: Option<(Position, String)>) -> VerifyReport {
        let (first_bad_position, reason) = bad.unzip();
        VerifyReport {
            ok: first_bad_position.is_none(),
            events: self.expected.0 - 1,
            head_position: Position(self.expected.0 - 1),
            head_hash: self.hash.to_hex(),
            first_bad_position,
            reason,
        }
    }
}

/// Runs every check; `Ok` with `ok: false` when the ledger is damaged.
pub fn verify(store: &Store, progress: &dyn Progress) -> Result<VerifyReport> {
    let mut walk = Walk {
        tree: store.merkle_kept()?.then(Frontier::default),
        expected: Position(1),
        hash: chain::GENESIS,
        recorded_at: None,
        orders: 0,
    };
    progress.begin("verifying", store.head().ok().map(|h| h.position.0));
    for item in store.events_from(Position(1)) {
        let event = match item {
            Ok(event) => event,
            Err(Error::Corruption { position, reason }) => {
                let position = if position.0 == 0 {
                    walk.expected
                } else {
                    position
                };
                return Ok(walk.report(Some((position, reason))));
            }
            Err(e) => return Err(e),
        };
        let leaf = match check_event(store, &walk, &event)? {
            Ok(leaf) => leaf,
            Err(bad) => return Ok(walk.report(Some((walk.expected, bad)))),
        };
        if let Some(tree) = &mut walk.tree
            && let Some(bad) = check_tree(store, tree, leaf)?
        {
            return Ok(walk.report(Some((walk.expected, bad))));
        }
        walk.orders += u64::from(event.version == Version(1));
        walk.hash = event.hash;
        walk.recorded_at = Some(event.recorded_at);
        walk.expected = walk.expected.next();
        progress.advance(1);
    }
    progress.end();
    let bad = match store.head() {
        Err(Error::Corruption { position, reason }) => Some((position, reason)),
        Err(e) => return Err(e),
        Ok(head) if head.hash != walk.hash => Some((
            head.position,
            format!(
                "the head record's hash {} is not the last event's",
                head.hash
            ),
        )),
        Ok(head) if head.orders != walk.orders => Some((
            head.position,
            format!(
                "the head record counts {} orders, the log has {}",
                head.orders, walk.orders
            ),
        )),
        Ok(head) => match walk.tree {
            Some(_) => store
                .merkle_node_beyond(head.position.0)?
                .map(|reason| (head.position, reason)),
            None => None,
        },
    };
    Ok(walk.report(bad))
}

/// Appends `leaf` to the recomputed tree and compares every node it completes with the
/// stored one; `Some(reason)` at the first that differs.
fn check_tree(store: &Store, tree: &mut Frontier, leaf: Hash) -> Result<Option<String>> {
    let mut completed: Vec<(NodeId, Hash)> = Vec::new();
    tree.push(leaf, &mut |id, hash| completed.push((id, hash)));
    for (id, hash) in completed {
        if id.level < STORED_LEVEL_MIN {
            continue; // not stored: recomputed from the log whenever needed
        }
        if let Some(reason) = store.merkle_mismatch(id, &hash)? {
            return Ok(Some(reason));
        }
    }
    Ok(None)
}

/// The checks of one event against the walk so far: its Merkle leaf hash, or why it fails.
fn check_event(
    store: &Store,
    walk: &Walk,
    event: &Event,
) -> Result<std::result::Result<Hash, String>> {
    let position = event.position;
    if position != walk.expected {
        return Ok(Err(format!(
            "position {} is missing (the next stored event is at {position})",
            walk.expected
        )));
    }
    if let Some(last) = walk.recorded_at
        && event.recorded_at <= last
    {
        return Ok(Err(format!(
            "recorded_at {} is not after the previous event's {last}",
            event.recorded_at
        )));
    }
    let (hash, leaf) = chain::chain_and_leaf(&walk.hash, event);
    if hash != event.hash {
        return Ok(Err(format!(
            "hash mismatch: stored {}, recomputed {hash} from the event and its predecessor",
            event.hash
        )));
    }
    if store.version_position(&event.order_id, event.version)? != Some(position) {
        return Ok(Err(format!(
            "the order index does not map order {} version {} to this event",
            event.order_id, event.version
        )));
    }
    if event.version.0 > 1 {
        let previous = Version(event.version.0 - 1);
        match store.version_position(&event.order_id, previous)? {
            Some(p) if p < position => {}
            _ => {
                return Ok(Err(format!(
                    "order {} has version {} but no earlier version {previous}",
                    event.order_id, event.version
                )));
            }
        }
    }
    if store.event_position(&event.event_id)? != Some(position) {
        return Ok(Err(format!(
            "the event-id index does not map {} to this event",
            event.event_id
        )));
    }
    Ok(Ok(leaf))
}
