//! The hash chain: `hash_n = SHA-256(hash_{n-1} || canonical_bytes(event_n))`, with 32 zero
//! bytes as the genesis value.
//!
//! The canonical bytes are the event's envelope (product.md section 6) without `hash`, as
//! JSON with object keys sorted by their bytes, no whitespace, integers in decimal and strings
//! escaped as serde_json does (`"`, `\`, and control characters; the rest as UTF-8). So the
//! chain does not depend on the storage codec, and anyone can verify an `ordo export` with a
//! JSON library and SHA-256 (docs/format.md has a worked example).

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::{Event, Hash};

/// The hash before the first event.
pub const GENESIS: Hash = Hash([0u8; 32]);

/// The bytes of `event` that the chain covers.
pub fn canonical_bytes(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_canonical(&event.envelope_json_unhashed(), &mut out);
    out
}

/// The hash of `event` chained to its predecessor's hash.
pub fn chain(previous: &Hash, event: &Event) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous.0);
    hasher.update(canonical_bytes(event));
    Hash(hasher.finalize().into())
}

/// Writes `value` as canonical JSON: keys sorted, no whitespace.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("writing to a Vec cannot fail");
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to a Vec cannot fail"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
