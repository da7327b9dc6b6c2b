//! Proofs from the ledger (product.md section 9): checkpoints of any tree size up to the
//! head, inclusion and consistency proofs, and an order's evidence bundle, each read from
//! the stored tree in O(log n) node reads (`format::merkle`, `store::merkle`), and the
//! checkpoint origin setting.

use crate::domain::{Hash, OrderId, Position};
use crate::error::{Error, Result};
use crate::format::merkle::{self, NodeId};
use crate::proof::note::Signer;
use crate::proof::{
    Checkpoint, ConsistencyProof, EVIDENCE_FORMAT, Evidence, EvidenceEvent, InclusionProof,
    checkpoint_text, hex_all,
};
use crate::store::Store;

use super::Ledger;

/// Longest origin accepted (a checkpoint's first line).
pub const ORIGIN_BYTES_MAX: usize = 256;

/// Checks an origin line: non-empty, at most `ORIGIN_BYTES_MAX` bytes, no control
/// characters (it is one line of a note).
pub fn check_origin(origin: &str) -> Result<()> {
    if origin.is_empty()
        || origin.len() > ORIGIN_BYTES_MAX
        || origin.chars().any(char::is_control)
        || origin.starts_with(char::is_whitespace)
        || origin.ends_with(char::is_whitespace)
    {
        return Err(Error::InvalidInput(format!(
            "origin {origin:?} must be 1 to {ORIGIN_BYTES_MAX} bytes on one line, without control characters or surrounding spaces"
        )));
    }
    Ok(())
}

impl Ledger {
    /// The tree size a proof is about: `asked`, or the head; beyond the head is invalid.
    fn tree_size(&self, asked: Option<u64>) -> Result<u64> {
        if !self.store.merkle_kept()? {
            return Err(Error::NotFound(
                "this ledger has no Merkle tree yet (it was written before ordo kept one); open it for writing once (any append, or `ordo rebuild`) to build it".to_owned(),
            ));
        }
        let head = self.store.head()?.position.0;
        match asked {
            Some(size) if size > head => Err(Error::InvalidInput(format!(
                "tree size {size} is beyond the head ({head} events)"
            ))),
            Some(size) => Ok(size),
            None => Ok(head),
        }
    }

    /// The checkpoint origin: `ordo config origin`, or `ordo/` and the ledger id.
    pub fn origin(&self) -> Result<String> {
        if let Some(origin) = self.store.origin_setting()? {
            return Ok(origin);
        }
        let id = self.store.ledger_id()?.ok_or_else(|| {
            Error::NotFound(
                "this ledger has no id yet (it was written before ordo kept one); open it for writing once to give it one".to_owned(),
            )
        })?;
        Ok(format!("ordo/{}", uuid::Uuid::from_bytes(id).simple()))
    }

    /// Sets the checkpoint origin (needs the ledger open for writing).
    pub fn set_origin(&self, origin: String) -> Result<()> {
        check_origin(&origin)?;
        self.sequencer()?
            .exclusive(move |store: &Store| store.set_origin(&origin))
    }

    /// The tree head at `tree_size` (default: the head), signed by `signer` when given.
    pub fn checkpoint(
        &self,
        tree_size: Option<u64>,
        signer: Option<&Signer>,
    ) -> Result<Checkpoint> {
        let size = self.tree_size(tree_size)?;
        let root = merkle::root(size, &mut node(&self.store))?;
        let origin = self.origin()?;
        let text = checkpoint_text(&origin, size, &root);
        Ok(Checkpoint {
            origin,
            tree_size: size,
            root_hash: root.to_hex(),
            note: match signer {
                Some(signer) => signer.sign(&text),
                None => text,
            },
        })
    }

    /// The inclusion proof of the event at `position` in the tree of `tree_size`.
    pub fn prove_inclusion(&self, position: u64, tree_size: Option<u64>) -> Result<InclusionProof> {
        let size = self.tree_size(tree_size)?;
        if position == 0 || position > size {
            return Err(Error::InvalidInput(format!(
                "position {position} is not in the tree of {size} events"
            )));
        }
        let mut read = node(&self.store);
        let leaf = read(NodeId {
            level: 0,
            index: position - 1,
        })?;
        let path = merkle::inclusion_proof(position - 1, size, &mut read)?;
        let root = merkle::root(size, &mut read)?;
        Ok(InclusionProof {
            position,
            tree_size: size,
            leaf_hash: leaf.to_hex(),
            root_hash: root.to_hex(),
            proof: hex_all(&path),
        })
    }

    /// The consistency proof from the tree of `old_size` to the tree of `tree_size`.
    pub fn prove_consistency(
        &self,
        old_size: u64,
        tree_size: Option<u64>,
    ) -> Result<ConsistencyProof> {
        let size = self.tree_size(tree_size)?;
        if old_size == 0 || old_size > size {
            return Err(Error::InvalidInput(format!(
                "old size {old_size} must be 1 to the tree size {size} (a proof from the empty tree proves nothing)"
            )));
        }
        let mut read = node(&self.store);
        let proof = merkle::consistency_proof(old_size, size, &mut read)?;
        Ok(ConsistencyProof {
            old_size,
            tree_size: size,
            old_root: merkle::root(old_size, &mut read)?.to_hex(),
            root_hash: merkle::root(size, &mut read)?.to_hex(),
            proof: hex_all(&proof),
        })
    }

    /// The evidence bundle of one order: its events in the tree of `tree_size`, each with
    /// its inclusion path, and the checkpoint (signed by `signer` when given).
    pub fn prove_order(
        &self,
        order_id: &OrderId,
        tree_size: Option<u64>,
        signer: Option<&Signer>,
    ) -> Result<Evidence> {
        let size = self.tree_size(tree_size)?;
        let checkpoint = self.checkpoint(Some(size), signer)?;
        let mut read = node(&self.store);
        let mut events = Vec::new();
        let mut any = false;
        for event in self.store.order_events(order_id) {
            let event = event?;
            any = true;
            if event.position > Position(size) {
                break;
            }
            let path = merkle::inclusion_proof(event.position.0 - 1, size, &mut read)?;
            events.push(EvidenceEvent {
                envelope: event.envelope_json(),
                proof: hex_all(&path),
            });
        }
        if !any {
            return Err(super::order_not_found(order_id));
        }
        Ok(Evidence {
            format: EVIDENCE_FORMAT.to_owned(),
            order_id: order_id.to_string(),
            checkpoint,
            events,
        })
    }
}

/// Reads tree nodes from the store.
fn node(store: &Store) -> impl FnMut(NodeId) -> Result<Hash> + '_ {
    |id| store.merkle_node(id)
}
