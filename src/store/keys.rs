//! Key layouts of every column family (docs/format.md). Integers are big-endian so that keys
//! sort in numeric order; identifiers never contain 0x00 (product.md section 1), so 0x00 can
//! end an order id inside a key.

use crate::domain::{EventId, OrderId, Position, Version};

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
