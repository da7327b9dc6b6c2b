//! The ledger's bytes, without RocksDB: every key layout, the record codec, the hash chain
//! and its canonical JSON, and the projection digest. `docs/format.md` describes the same
//! things in the same order; a change here is a change there.
//!
//! - [`keys`]: the key of every column family and of every `meta` record.
//! - [`codec`]: the framing of every stored value (version byte, bincode, CRC32).
//! - [`chain`] and [`canonical`]: the SHA-256 event chain over canonical JSON.
//! - [`digest`]: the BLAKE3 digest of projection rows (snapshots, rebuilds).
//!
//! `store` writes these bytes to RocksDB; `projection` says what its rows mean.

pub mod canonical;
pub mod chain;
pub mod codec;
pub mod digest;
pub mod keys;
pub mod merkle;

use serde::{Deserialize, Serialize};

use crate::domain::{Hash, Position, Timestamp};

/// The ledger format this code writes (stored in `meta`). Version 2 added the Merkle tree;
/// a version-1 ledger is read as it is and becomes version 2 when its tree is built (at its
/// first writing open), so that an older ordo, which would append without the tree and
/// leave it stale, refuses it instead.
pub const LEDGER_FORMAT_VERSION: u8 = 2;

/// The ledger formats this code reads.
pub const LEDGER_FORMAT_VERSIONS_READ: [u8; 2] = [1, 2];

/// Column family of the log: position -> event record. Keys are never updated or deleted.
pub const CF_EVENTS: &str = "events";
/// (order id, version) -> position: one order's stream in version order.
pub const CF_ORDER_INDEX: &str = "order_index";
/// Event id -> position: idempotency for the life of the ledger.
pub const CF_EVENT_IDS: &str = "event_ids";
/// Order id -> order state: the per-order projection, committed with its events.
pub const CF_ORDER_STATE: &str = "order_state";
/// (status, order id) -> nothing: the orders in each status.
pub const CF_STATUS_ORDERS: &str = "status_orders";
/// (customer id, currency) -> per-customer totals.
pub const CF_CUSTOMERS: &str = "customers";
/// (day, currency) -> revenue row.
pub const CF_REVENUE: &str = "revenue";
/// (snapshot position, row kind, row key) -> a projection row as it was at that position.
pub const CF_SNAPSHOTS: &str = "snapshots";
/// Format version, head, aggregate totals, settings, snapshot headers.
pub const CF_META: &str = "meta";

/// Every column family, created when a ledger is created.
pub const COLUMN_FAMILIES: [&str; 9] = [
    CF_EVENTS,
    CF_ORDER_INDEX,
    CF_EVENT_IDS,
    CF_ORDER_STATE,
    CF_STATUS_ORDERS,
    CF_CUSTOMERS,
    CF_REVENUE,
    CF_SNAPSHOTS,
    CF_META,
];

/// The live projection tables a snapshot copies and the projection digest covers, in the
/// digest's order, each with its row kind in `snapshots` keys and whether the digest covers
/// its keys (an order's key is inside its state, so only the value is hashed). The totals
/// (`keys::META_TOTALS`) come last; `status_orders` is derived from `order_state`.
pub const DIGEST_TABLES: [(&str, u8, bool); 3] = [
    (CF_ORDER_STATE, keys::SNAPSHOT_ORDER, false),
    (CF_CUSTOMERS, keys::SNAPSHOT_CUSTOMER, true),
    (CF_REVENUE, keys::SNAPSHOT_REVENUE, true),
];

/// The last committed event: what the next commit chains to (the `meta` record `head`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Position of the last event (0 when empty).
    pub position: Position,
    /// Hash of the last event (the genesis value when empty).
    pub hash: Hash,
    /// recorded_at of the last event.
    pub recorded_at: Option<Timestamp>,
    /// Number of orders (streams) in the ledger.
    pub orders: u64,
}

impl Head {
    /// The head of an empty ledger.
    pub fn genesis() -> Head {
        Head {
            position: Position(0),
            hash: chain::GENESIS,
            recorded_at: None,
            orders: 0,
        }
    }
}

/// One row a commit or a rebuild writes besides the log: a column family, a key, and the
/// new value (`None`: delete the row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowWrite {
    /// The column family.
    pub cf: &'static str,
    /// The row's key.
    pub key: Vec<u8>,
    /// Its new value, or `None` to delete it.
    pub value: Option<Vec<u8>>,
}
