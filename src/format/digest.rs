//! The projection digest's hash: what a snapshot header, a rebuild and the snapshot check
//! compute over projection rows (`docs/format.md`, below the table of keys). The event hash
//! chain is SHA-256 and lives in `chain`; this one is internal and may change with
//! `projection::PROJECTION_VERSION`.
//!
//! BLAKE3, fed in buffered pieces: projection rows arrive one at a time (about 110 bytes
//! each), and BLAKE3 reaches its SIMD speed only on inputs of many 1 KiB chunks. Fed row by
//! row it was slower than SHA-256 here; fed 64 KiB at a time, more than twice as fast
//! (docs/benchmarks.md). Splitting the input differently
//! never changes the digest: a streaming hash depends only on the bytes, in order.

use crate::domain::Hash;

/// Bytes gathered before they are hashed.
const BUFFER_BYTES: usize = 64 * 1024;

/// A projection digest being computed.
pub struct Digester {
    hasher: blake3::Hasher,
    buffer: Vec<u8>,
}

impl Default for Digester {
    fn default() -> Self {
        Digester {
            hasher: blake3::Hasher::new(),
            buffer: Vec::with_capacity(BUFFER_BYTES),
        }
    }
}

impl Digester {
    /// Adds `bytes` to the digest input.
    pub fn update(&mut self, bytes: &[u8]) {
        if self.buffer.len() + bytes.len() > BUFFER_BYTES {
            self.hasher.update(&self.buffer);
            self.buffer.clear();
        }
        if bytes.len() >= BUFFER_BYTES {
            self.hasher.update(bytes);
        } else {
            self.buffer.extend_from_slice(bytes);
        }
    }

    /// The digest of everything added.
    pub fn finalize(mut self) -> Hash {
        self.hasher.update(&self.buffer);
        Hash(*self.hasher.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_depends_on_the_bytes_not_on_how_they_were_fed() {
        let input: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = Hash(*blake3::hash(&input).as_bytes());
        for piece_bytes in [1, 97, 1024, BUFFER_BYTES - 1, BUFFER_BYTES, 200_000] {
            let mut digester = Digester::default();
            for piece in input.chunks(piece_bytes) {
                digester.update(piece);
            }
            assert_eq!(digester.finalize(), whole, "pieces of {piece_bytes} bytes");
        }
        assert_ne!(Digester::default().finalize(), whole);
    }
}
