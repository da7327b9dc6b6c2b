//! The hash chain: `hash_n = SHA-256(hash_{n-1} || canonical_bytes(event_n))`, with 32 zero
//! bytes as the genesis value.
//!
//! The canonical bytes are the event's envelope (product.md section 6) without `hash`, as
//! JSON with object keys sorted by their bytes, no whitespace, integers in decimal and strings
//! escaped as serde_json does (`"`, `\`, and control characters; the rest as UTF-8). So the
//! chain does not depend on the storage codec, and anyone can verify an `ordo export` with a
//! JSON library and SHA-256 (docs/format.md has a worked example).

use super::canonical::{self, string};
use sha2::{Digest, Sha256};

use crate::domain::{Event, Hash};

/// The hash before the first event.
pub const GENESIS: Hash = Hash([0u8; 32]);

/// The bytes of `event` that the chain covers: `canonical::write_canonical` of
/// `Event::envelope_json_unhashed`, written directly (the top-level keys are fixed, so they
/// are written in their byte order; `data` goes through `canonical::Writer`, which sorts
/// each struct's keys; no JSON value is built; a test checks the two agree byte for byte).
pub fn canonical_bytes(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    let key = |out: &mut Vec<u8>, first: bool, name: &str| {
        out.extend_from_slice(if first { b"{\"" } else { b",\"" });
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
    };
    key(&mut out, true, "actor");
    string_or_null(&mut out, event.actor.as_ref().map(|a| a.as_str()));
    key(&mut out, false, "causation_id");
    string_or_null(&mut out, event.causation_id.as_ref().map(|l| l.as_str()));
    key(&mut out, false, "correlation_id");
    string_or_null(&mut out, event.correlation_id.as_ref().map(|l| l.as_str()));
    key(&mut out, false, "data");
    event
        .data
        .serialize_data(canonical::Writer::new(&mut out))
        .expect("event data are structs of strings, integers, options and lists");
    // Ids and times are written from stack buffers: they need no escaping, and formatting
    // them through `to_string` allocated three strings per event.
    key(&mut out, false, "event_id");
    quoted(
        &mut out,
        event
            .event_id
            .0
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    key(&mut out, false, "occurred_at");
    quoted(&mut out, event.occurred_at.rfc3339());
    key(&mut out, false, "order_id");
    string(&mut out, event.order_id.as_str());
    key(&mut out, false, "position");
    out.extend_from_slice(itoa::Buffer::new().format(event.position.0).as_bytes());
    key(&mut out, false, "recorded_at");
    quoted(&mut out, event.recorded_at.rfc3339());
    key(&mut out, false, "schema_version");
    out.extend_from_slice(itoa::Buffer::new().format(event.schema_version).as_bytes());
    key(&mut out, false, "type");
    string(&mut out, event.event_type().as_str());
    key(&mut out, false, "version");
    out.extend_from_slice(itoa::Buffer::new().format(event.version.0).as_bytes());
    out.push(b'}');
    out
}

/// Text that needs no escaping (hex, digits, `-:.TZ`), in quotes.
fn quoted(out: &mut Vec<u8>, text: impl AsRef<[u8]>) {
    let text = text.as_ref();
    debug_assert!(
        text.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-:.".contains(b))
    );
    out.push(b'"');
    out.extend_from_slice(text);
    out.push(b'"');
}

fn string_or_null(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => string(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// The hash of `event` chained to its predecessor's hash.
pub fn chain(previous: &Hash, event: &Event) -> Hash {
    chain_bytes(previous, &canonical_bytes(event))
}

fn chain_bytes(previous: &Hash, canonical: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous.0);
    hasher.update(canonical);
    Hash(hasher.finalize().into())
}

/// The chain hash of `event` and its Merkle leaf hash (`merkle::leaf_hash` of the same
/// canonical bytes), writing those bytes once.
pub fn chain_and_leaf(previous: &Hash, event: &Event) -> (Hash, Hash) {
    let canonical = canonical_bytes(event);
    (
        chain_bytes(previous, &canonical),
        super::merkle::leaf_hash(&canonical),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventData, EventType, Timestamp};
    use crate::format::canonical::write_canonical;
    use serde_json::Value;

    fn event(event_type: &str, data: Value, with_optional: bool) -> Event {
        let event_type = EventType::parse(event_type).expect("a type");
        let label = |t: &str| crate::domain::Label::new(t).expect("a label");
        Event {
            position: crate::domain::Position(1_234_567),
            order_id: crate::domain::OrderId::new("ORD-1.a_b:c").expect("an id"),
            version: crate::domain::Version(42),
            event_id: crate::domain::EventId(uuid::Uuid::from_u128(0x1234_5678_9abc)),
            schema_version: crate::domain::SCHEMA_VERSION,
            recorded_at: Timestamp::parse("2026-03-01T09:30:00.123456Z").expect("time"),
            occurred_at: Timestamp::parse("2026-02-28T23:59:59Z").expect("time"),
            actor: with_optional.then(|| crate::domain::Actor::new("alice.b").expect("actor")),
            correlation_id: with_optional.then(|| label("corr\\1")),
            causation_id: with_optional.then(|| label("cause:2")),
            data: EventData::from_json(event_type, data).expect("valid data"),
            hash: Hash::default(),
        }
    }

    #[test]
    fn direct_canonical_bytes_equal_the_sorted_envelope_for_every_event_type() {
        let samples = [
            (
                "order_placed",
                serde_json::json!({"customer_id": "C-1", "currency": "EUR",
                "lines": [{"sku": "A", "quantity": 2, "unit_price": 500},
                          {"sku": "B", "quantity": 1, "unit_price": 0}],
                "shipping_address": "1 Rue \u{e9}\n"}),
            ),
            (
                "item_added",
                serde_json::json!({"sku": "C", "quantity": 1, "unit_price": 9}),
            ),
            ("item_removed", serde_json::json!({"sku": "C"})),
            (
                "quantity_changed",
                serde_json::json!({"sku": "C", "quantity": 3}),
            ),
            (
                "shipping_address_changed",
                serde_json::json!({"shipping_address": "x"}),
            ),
            (
                "payment_captured",
                serde_json::json!({"payment_id": "P", "amount": i64::MAX}),
            ),
            (
                "payment_refunded",
                serde_json::json!({"refund_id": "R", "amount": 1}),
            ),
            (
                "payment_refunded",
                serde_json::json!({"refund_id": "R", "amount": 1, "reason": "r"}),
            ),
            ("order_shipped", serde_json::json!({"shipment_id": "S"})),
            (
                "order_shipped",
                serde_json::json!({"shipment_id": "S", "carrier": "DHL", "tracking_number": "1"}),
            ),
            ("order_delivered", serde_json::json!({})),
            ("order_cancelled", serde_json::json!({"reason": "\u{0001}"})),
            ("order_returned", serde_json::json!({})),
            ("note_added", serde_json::json!({"text": "日本語 \\ \"q\""})),
        ];
        for (event_type, data) in samples {
            for with_optional in [false, true] {
                let event = event(event_type, data.clone(), with_optional);
                let mut reference = Vec::new();
                write_canonical(&event.envelope_json_unhashed(), &mut reference);
                assert_eq!(
                    String::from_utf8(canonical_bytes(&event)).expect("utf-8"),
                    String::from_utf8(reference).expect("utf-8"),
                    "{event_type} with_optional={with_optional}"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn strings_are_written_exactly_as_serde_json_writes_them(text in ".*", raw in proptest::collection::vec(0u8..0x80, 0..40)) {
            for text in [text, String::from_utf8(raw).expect("ASCII")] {
                let mut out = Vec::new();
                string(&mut out, &text);
                proptest::prop_assert_eq!(out, serde_json::to_vec(&text).expect("a string"));
            }
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_has_no_whitespace() {
        let value = serde_json::json!({"b": 1, "a": {"d": [1, "x\n"], "c": null}});
        let mut out = Vec::new();
        write_canonical(&value, &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            r#"{"a":{"c":null,"d":[1,"x\n"]},"b":1}"#
        );
    }
}
