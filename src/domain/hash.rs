//! `Hash`: the 32 bytes of SHA-256 that chain an event to its predecessor (also the
//! projection digest's type), read and written as lower-case hex.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A 32-byte SHA-256 digest chaining an event to its predecessor.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Hash(pub [u8; 32]);

/// The same tuple of 32 bytes that the derived impl reads (and `Serialize` writes), read by
/// one plain loop: serde's own impl for `[u8; 32]` goes byte by byte through a sequence
/// visitor, several times slower under bincode, and every event read from the log carries
/// a hash (docs/benchmarks.md).
impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("32 bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Hash, A::Error> {
                let mut out = [0u8; 32];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = seq
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Hash(out))
            }
        }
        deserializer.deserialize_tuple(32, Bytes)
    }
}

impl Hash {
    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(64);
        for b in self.0 {
            write!(s, "{b:02x}").expect("writing to a String cannot fail");
        }
        s
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Result<Hash, String> {
        let bad = || format!("{text:?} is not a hash (64 hex characters)");
        if text.len() != 64 || !text.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Hash(out))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
