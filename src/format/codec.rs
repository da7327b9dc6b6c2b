//! The record codec: the one place that knows bincode. Every stored value is framed as
//!
//! ```text
//! [format version: u8 = 1][bincode 2 payload (standard config)][crc32 of the two before: u32 BE]
//! ```
//!
//! so a later format (another codec) can be introduced by a new version byte while old records
//! keep decoding. Decoding checks the checksum first, then the version, then that the payload
//! is consumed exactly; garbage yields an error, never a panic or a huge allocation.

use serde::{Serialize, de::DeserializeOwned};

use crate::domain::{Event, OrderState};

/// The version byte this code writes.
pub const RECORD_FORMAT_V1: u8 = 1;

/// The largest record the decoder accepts (bounds allocation on garbage input).
pub const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;

const FRAME_BYTES: usize = 1 + 4;

fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<RECORD_BYTES_MAX>,
> {
    bincode::config::standard().with_limit::<RECORD_BYTES_MAX>()
}

/// Room a record's buffer starts with: projection rows fit; an event (135 bytes on average
/// in the 1M benchmark's scan) or an order state with a few lines grows it once.
const ENCODE_CAPACITY_BYTES: usize = 128;

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // One buffer: the version byte, the payload written in place, then the checksum (the
    // payload in a buffer of its own cost an allocation and a copy per record).
    let mut out = Vec::with_capacity(ENCODE_CAPACITY_BYTES);
    out.push(RECORD_FORMAT_V1);
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .expect("ledger records always encode (plain structs, well under the size limit)");
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() < FRAME_BYTES {
        return Err(format!("record of {} bytes is too short", bytes.len()));
    }
    if bytes.len() > RECORD_BYTES_MAX {
        return Err(format!("record of {} bytes is too large", bytes.len()));
    }
    let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_be_bytes(crc_bytes.try_into().expect("split_at left 4 bytes"));
    let actual = crc32fast::hash(body);
    if stored != actual {
        return Err(format!(
            "checksum mismatch (stored {stored:08x}, computed {actual:08x})"
        ));
    }
    match body[0] {
        RECORD_FORMAT_V1 => {}
        other => return Err(format!("unknown record format version {other}")),
    }
    let payload = &body[1..];
    let (value, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| format!("undecodable record: {e}"))?;
    if used != payload.len() {
        return Err(format!(
            "record has {} trailing bytes",
            payload.len() - used
        ));
    }
    Ok(value)
}

/// Encodes any other stored record (projection rows, snapshot headers, settings).
pub fn encode_record<T: Serialize>(value: &T) -> Vec<u8> {
    encode(value)
}

/// Decodes any other stored record.
pub fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    decode(bytes)
}

/// Encodes a stored event.
pub fn encode_event(event: &Event) -> Vec<u8> {
    encode(event)
}

/// Decodes a stored event.
pub fn decode_event(bytes: &[u8]) -> Result<Event, String> {
    decode(bytes)
}

/// Encodes an order-state projection row.
pub fn encode_state(state: &OrderState) -> Vec<u8> {
    encode(state)
}

/// Decodes an order-state projection row.
pub fn decode_state(bytes: &[u8]) -> Result<OrderState, String> {
    decode(bytes)
}

/// Encodes the head record.
pub fn encode_head(head: &super::Head) -> Vec<u8> {
    encode(head)
}

/// Decodes the head record.
pub fn decode_head(bytes: &[u8]) -> Result<super::Head, String> {
    decode(bytes)
}
