//! Proofs for auditors (product.md section 9), in public formats: tlog checkpoints (C2SP
//! tlog-checkpoint) signed as notes (`note`), RFC 9162 inclusion and consistency proofs
//! (`format::merkle`), and evidence bundles; and `check`, which verifies any of them
//! offline from the file alone. Pure: no ledger, no I/O. `ledger::proof` makes them.

pub mod check;
pub mod note;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::domain::Hash;

/// The checkpoint body of a tree: `ORIGIN\nSIZE\nBASE64(ROOT)\n`.
pub fn checkpoint_text(origin: &str, tree_size: u64, root: &Hash) -> String {
    format!("{origin}\n{tree_size}\n{}\n", STANDARD.encode(root.0))
}

/// A tree head (`ordo checkpoint`, `GET /v1/checkpoint`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Leaves (events) in the tree.
    pub tree_size: u64,
    /// The tree's root, hex.
    pub root_hash: String,
    /// The checkpoint text, signed as a note when a key was given.
    pub note: String,
}

/// An inclusion proof (`ordo prove inclusion`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The event's position (leaf index + 1).
    pub position: u64,
    /// Leaves in the tree proved against.
    pub tree_size: u64,
    /// The leaf hash of the event's canonical bytes, hex.
    pub leaf_hash: String,
    /// The tree's root, hex.
    pub root_hash: String,
    /// The RFC 9162 inclusion path, hex, leaf to root.
    pub proof: Vec<String>,
}

/// A consistency proof (`ordo prove consistency`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// Leaves in the earlier tree.
    pub old_size: u64,
    /// Leaves in the later tree.
    pub tree_size: u64,
    /// The earlier tree's root, hex.
    pub old_root: String,
    /// The later tree's root, hex.
    pub root_hash: String,
    /// The RFC 9162 consistency proof, hex.
    pub proof: Vec<String>,
}

/// One event of an evidence bundle: its envelope and its inclusion path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceEvent {
    /// The export envelope (product.md section 6).
    pub envelope: serde_json::Value,
    /// Its inclusion path in the bundle's tree, hex, leaf to root.
    pub proof: Vec<String>,
}

/// The evidence bundle of one order (`ordo prove order`), documented in docs/proofs.md.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// `ordo-evidence/v1`.
    pub format: String,
    /// The order.
    pub order_id: String,
    /// The checkpoint every event is proved against.
    pub checkpoint: Checkpoint,
    /// The order's events in the tree, in version order.
    pub events: Vec<EvidenceEvent>,
}

/// The `format` of an evidence bundle.
pub const EVIDENCE_FORMAT: &str = "ordo-evidence/v1";

/// Hashes as hex, for the JSON forms.
pub fn hex_all(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(Hash::to_hex).collect()
}
