//! Key layouts of every column family (docs/format.md). Integers are big-endian so that keys
//! sort in numeric order; identifiers never contain 0x00 (product.md section 1), so 0x00 can
//! end an order id inside a key.

use crate::domain::{Currency, CustomerId, EventId, OrderId, Position, Status, Version};

/// `events` key: the position, 8 bytes big-endian.
pub fn event_key(position: Position) -> [u8; 8] {
    position.0.to_be_bytes()
}

/// Decodes an `events` key.
pub fn decode_event_key(key: &[u8]) -> Option<Position> {
    Some(Position(u64::from_be_bytes(key.try_into().ok()?)))
}

/// `order_index` key prefix of one order: the order id then 0x00.
pub fn order_prefix(order_id: &OrderId) -> Vec<u8> {
    let mut key = Vec::with_capacity(order_id.as_str().len() + 9);
    key.extend_from_slice(order_id.as_str().as_bytes());
    key.push(0);
    key
}

/// `order_index` key: order id, 0x00, version 8 bytes big-endian.
pub fn order_index_key(order_id: &OrderId, version: Version) -> Vec<u8> {
    let mut key = order_prefix(order_id);
    key.extend_from_slice(&version.0.to_be_bytes());
    key
}

/// `event_ids` key: the 16 bytes of the UUID.
pub fn event_id_key(event_id: &EventId) -> [u8; 16] {
    *event_id.as_bytes()
}

/// `order_state` key: the order id's bytes.
pub fn order_state_key(order_id: &OrderId) -> &[u8] {
    order_id.as_str().as_bytes()
}

/// A position stored as a value (8 bytes big-endian).
pub fn encode_position(position: Position) -> [u8; 8] {
    position.0.to_be_bytes()
}

/// Decodes a position value.
pub fn decode_position(value: &[u8]) -> Option<Position> {
    Some(Position(u64::from_be_bytes(value.try_into().ok()?)))
}

/// `status_orders` key: the status's index in `Status::ALL` (1 byte), then the order id.
pub fn status_order_key(status: Status, order_id: &OrderId) -> Vec<u8> {
    let mut key = Vec::with_capacity(order_id.as_str().len() + 1);
    set_status_order_key(&mut key, status, order_id);
    key
}

/// Makes `key` the `status_orders` key of (`status`, `order_id`), reusing its room (a
/// rebuild makes one per order).
pub fn set_status_order_key(key: &mut Vec<u8>, status: Status, order_id: &OrderId) {
    key.clear();
    key.push(status_byte(status));
    key.extend_from_slice(order_id.as_str().as_bytes());
}

/// The byte of `status` in `status_orders` keys: its index in `Status::ALL`.
pub fn status_byte(status: Status) -> u8 {
    u8::try_from(status.index()).expect("six statuses")
}

/// Decodes a `status_orders` key.
pub fn decode_status_order_key(key: &[u8]) -> Option<(Status, OrderId)> {
    let (byte, id) = key.split_first()?;
    let status = *Status::ALL.get(usize::from(*byte))?;
    let order_id = OrderId::new(std::str::from_utf8(id).ok()?).ok()?;
    Some((status, order_id))
}

/// `customers` key: customer id, 0x00, currency.
pub fn customer_key(customer_id: &CustomerId, currency: Currency) -> Vec<u8> {
    let mut out = Vec::with_capacity(customer_id.as_str().len() + 4);
    out.extend_from_slice(customer_id.as_str().as_bytes());
    out.push(0);
    out.extend_from_slice(currency.as_str().as_bytes());
    out
}

/// Decodes a `customers` key.
pub fn decode_customer_key(bytes: &[u8]) -> Option<(CustomerId, Currency)> {
    let split = bytes.iter().position(|b| *b == 0)?;
    let customer = std::str::from_utf8(&bytes[..split]).ok()?;
    let currency = std::str::from_utf8(&bytes[split + 1..]).ok()?;
    Some((
        CustomerId::new(customer).ok()?,
        Currency::new(currency).ok()?,
    ))
}

/// `revenue` key: the day (days since 1970-01-01 UTC) as u32 big-endian with the sign bit
/// flipped (so days before 1970 sort first), then the currency.
pub fn revenue_key(day: i32, currency: Currency) -> Vec<u8> {
    let mut out = Vec::with_capacity(7);
    out.extend_from_slice(&((day as u32) ^ 0x8000_0000).to_be_bytes());
    out.extend_from_slice(currency.as_str().as_bytes());
    out
}

/// Decodes a `revenue` key.
pub fn decode_revenue_key(bytes: &[u8]) -> Option<(i32, Currency)> {
    let day = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) ^ 0x8000_0000;
    let currency = std::str::from_utf8(bytes.get(4..)?).ok()?;
    Some((day as i32, Currency::new(currency).ok()?))
}

/// `snapshots` key prefix of one snapshot: its position, 8 bytes big-endian.
pub fn snapshot_prefix(position: Position) -> [u8; 8] {
    position.0.to_be_bytes()
}

/// `snapshots` row kinds, the byte after the position. The totals row (its key has nothing
/// after the kind).
pub const SNAPSHOT_TOTALS: u8 = 0;
/// See `SNAPSHOT_TOTALS`.
pub const SNAPSHOT_ORDER: u8 = 1;
/// See `SNAPSHOT_ORDER`.
pub const SNAPSHOT_CUSTOMER: u8 = 2;
/// See `SNAPSHOT_ORDER`.
pub const SNAPSHOT_REVENUE: u8 = 3;

/// `snapshots` key: position, kind, then the row's own key.
pub fn snapshot_key(position: Position, kind: u8, row_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + row_key.len());
    key.extend_from_slice(&snapshot_prefix(position));
    key.push(kind);
    key.extend_from_slice(row_key);
    key
}

/// `meta` key of a snapshot's header: `snapshot/` then the position big-endian.
pub fn snapshot_header_key(position: Position) -> Vec<u8> {
    let mut key = META_SNAPSHOT_PREFIX.to_vec();
    key.extend_from_slice(&position.0.to_be_bytes());
    key
}

/// Prefix of every snapshot header key in `meta`.
pub const META_SNAPSHOT_PREFIX: &[u8] = b"snapshot/";
/// `meta` key of the aggregate totals (status counts, latest occurred_at).
pub const META_TOTALS: &[u8] = b"totals";
/// `meta` key of the ledger settings.
pub const META_SETTINGS: &[u8] = b"settings";

/// Prefix of every stored Merkle tree node in `meta` (`merkle_node_key`).
pub const META_MERKLE_PREFIX: &[u8] = b"merkle/";
/// `meta` key present when the Merkle tree covers the whole log (value: 1 byte, 1). A
/// ledger written before the tree was kept lacks it until its tree is built.
pub const META_MERKLE_KEPT: &[u8] = b"merkle_kept";
/// `meta` key of the ledger id: 16 random bytes fixed when the ledger (or its tree) is
/// created; the default checkpoint origin is `ordo/` and its hex.
pub const META_LEDGER_ID: &[u8] = b"ledger_id";
/// `meta` key of the checkpoint origin set by `ordo config origin` (value: UTF-8).
pub const META_ORIGIN: &[u8] = b"origin";
/// `meta` key present on a read replica (`ordo follow`): the leader's stream and server
/// (value: UTF-8), named when the replica refuses an append.
pub const META_REPLICA_OF: &[u8] = b"replica_of";

/// `meta` key of a Merkle tree node: `merkle/`, the level (1 byte), the index (8 bytes
/// big-endian). The value is the node's 32-byte hash.
pub fn merkle_node_key(id: crate::format::merkle::NodeId) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..7].copy_from_slice(META_MERKLE_PREFIX);
    key[7] = id.level;
    key[8..].copy_from_slice(&id.index.to_be_bytes());
    key
}

/// Decodes a Merkle tree node key.
pub fn decode_merkle_node_key(key: &[u8]) -> Option<crate::format::merkle::NodeId> {
    let rest = key.strip_prefix(META_MERKLE_PREFIX)?;
    let (level, index) = rest.split_first()?;
    Some(crate::format::merkle::NodeId {
        level: *level,
        index: u64::from_be_bytes(index.try_into().ok()?),
    })
}

/// `meta` key of the format version (value: 1 byte).
pub const META_FORMAT: &[u8] = b"format_version";
/// `meta` key of the head (value: see `codec::encode_head`).
pub const META_HEAD: &[u8] = b"head";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_sort_in_position_order() {
        let a = event_key(Position(255));
        let b = event_key(Position(256));
        assert!(a < b);
        assert_eq!(decode_event_key(&b), Some(Position(256)));
    }

    #[test]
    fn order_index_keys_of_one_order_never_mix_with_a_longer_id() {
        let short = OrderId::new("A").expect("valid");
        let long = OrderId::new("A1").expect("valid");
        let k = order_index_key(&long, Version(1));
        assert!(!k.starts_with(&order_prefix(&short)));
        assert!(order_index_key(&short, Version(2)) > order_index_key(&short, Version(1)));
    }
}
