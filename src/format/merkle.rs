//! The log as a Merkle tree, exactly as RFC 9162 section 2.1 defines it: SHA-256, leaf hash
//! `SHA-256(0x00 ‖ leaf)`, interior node `SHA-256(0x01 ‖ left ‖ right)`, and the tree of `n`
//! leaves split at the largest power of two below `n`. Leaf `i` (tree index) is
//! `canonical_bytes` of the event at position `i + 1`, the bytes the hash chain covers.
//!
//! What is stored: the hash of every *perfect* subtree of `2^STORED_LEVEL_MIN` (16) or more
//! leaves, once it is complete (`NodeId`: level `l` and index `i` cover leaves
//! `[i·2^l, (i+1)·2^l)`). Such a node never changes again, and every subtree a proof or a
//! root of any size needs is a handful of them (the binary decomposition of its range), so
//! a proof costs O(log n) reads for every tree size up to the head. Smaller subtrees are
//! recomputed from their events: a proof needs those of one 16-leaf tile at most, plus the
//! tail of a tree whose size is not a multiple of 16.
//!
//! [`Frontier`] is the compact range of the whole tree (one hash per set bit of its size):
//! the writer keeps it, appends leaves to it, and stores the nodes each append completes.
//! The proof functions and their verifiers follow the RFC's algorithms step by step.

use sha2::{Digest, Sha256};

use crate::domain::Hash;

/// The root of the empty tree: SHA-256 of nothing.
pub const EMPTY_ROOT: Hash = Hash([
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
]);

/// The hash of one leaf: `SHA-256(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(leaf);
    Hash(hasher.finalize().into())
}

/// The hash of an interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash(hasher.finalize().into())
}

/// A perfect subtree: level `level` (0 is a leaf) and index `index` cover the leaves
/// `[index·2^level, (index+1)·2^level)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    /// Height of the subtree: it holds 2^level leaves.
    pub level: u8,
    /// Its place among the subtrees of that level, from the left.
    pub index: u64,
}

impl NodeId {
    /// The first leaf it covers.
    pub fn first_leaf(&self) -> u64 {
        self.index << self.level
    }

    /// The leaf after the last one it covers.
    pub fn end_leaf(&self) -> u64 {
        (self.index + 1) << self.level
    }
}

/// The lowest level stored: subtrees of 16 leaves and more. Storing every level from 1 added
/// a row to the commit for every event and cost bulk imports about a sixth of their speed
/// (docs/benchmarks.md); from 4 up it is one row per 8 events, and a proof recomputes at
/// most 16 leaves from a range read of the log.
pub const STORED_LEVEL_MIN: u8 = 4;

/// The largest power of two strictly below `n` (`n` ≥ 2): where RFC 9162 splits a tree.
fn split(n: u64) -> u64 {
    assert!(n >= 2, "only a tree of two or more leaves is split");
    1 << (63 - (n - 1).leading_zeros())
}

/// The perfect subtrees that make up the leaves `[start, end)`, largest (leftmost) first: one
/// per set bit of `end - start`. `start` is aligned to the largest of them, which holds for
/// `[0, n)` and for every range RFC 9162's recursions visit.
pub fn decompose(start: u64, end: u64) -> impl Iterator<Item = NodeId> {
    assert!(start <= end, "a range of leaves runs forward");
    let width = end - start;
    let mut at = start;
    (0..64u8).rev().filter_map(move |level| {
        if width & (1u64 << level) == 0 {
            return None;
        }
        assert!(
            at.trailing_zeros() >= u32::from(level) || at == 0,
            "leaves [{start}, {end}) do not decompose into aligned subtrees"
        );
        let id = NodeId {
            level,
            index: at >> level,
        };
        at += 1 << level;
        Some(id)
    })
}

/// The root of the leaves `[start, end)` (RFC 9162's MTH of that range), from the hashes of
/// its perfect subtrees; the empty range is `EMPTY_ROOT`.
pub fn range_root<E>(
    start: u64,
    end: u64,
    node: &mut impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Hash, E> {
    let parts: Vec<NodeId> = decompose(start, end).collect();
    let mut root: Option<Hash> = None;
    for id in parts.into_iter().rev() {
        let hash = node(id)?;
        root = Some(match root {
            None => hash,
            Some(right) => node_hash(&hash, &right),
        });
    }
    Ok(root.unwrap_or(EMPTY_ROOT))
}

/// The root of the tree of `size` leaves.
pub fn root<E>(size: u64, node: &mut impl FnMut(NodeId) -> Result<Hash, E>) -> Result<Hash, E> {
    range_root(0, size, node)
}

/// RFC 9162 section 2.1.3.1: the inclusion path of leaf `index` in the tree of `size`
/// leaves, from the leaf's sibling up to the root's other child.
pub fn inclusion_proof<E>(
    index: u64,
    size: u64,
    node: &mut impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    assert!(index < size, "leaf {index} is in the tree of {size} leaves");
    let mut path = Vec::new();
    let (mut lo, mut hi) = (0, size);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            // PATH(m, D[lo:lo+k]) : MTH(D[lo+k:hi])
            path.push(range_root(lo + k, hi, node)?);
            hi = lo + k;
        } else {
            // PATH(m - k, D[lo+k:hi]) : MTH(D[lo:lo+k])
            path.push(range_root(lo, lo + k, node)?);
            lo += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// RFC 9162 section 2.1.4.1: the consistency proof between the trees of `old_size` and
/// `size` leaves (empty when they are equal; `old_size` 0 has none and is the caller's
/// to refuse).
pub fn consistency_proof<E>(
    old_size: u64,
    size: u64,
    node: &mut impl FnMut(NodeId) -> Result<Hash, E>,
) -> Result<Vec<Hash>, E> {
    assert!(
        old_size <= size,
        "the old tree is not larger than the new one"
    );
    assert!(
        old_size > 0,
        "no consistency proof starts at the empty tree"
    );
    if old_size == size {
        return Ok(Vec::new());
    }
    let mut above = Vec::new();
    let mut proof = Vec::new();
    let (mut lo, mut hi, mut whole_old_tree) = (0, size, true);
    loop {
        if old_size == hi {
            // SUBPROOF(m, D[m], b): nothing when D[m] is the old tree itself (its root is
            // known to the verifier), else its root.
            if !whole_old_tree {
                proof.push(range_root(lo, hi, node)?);
            }
            break;
        }
        let k = split(hi - lo);
        if old_size <= lo + k {
            above.push(range_root(lo + k, hi, node)?);
            hi = lo + k;
        } else {
            above.push(range_root(lo, lo + k, node)?);
            lo += k;
            whole_old_tree = false;
        }
    }
    proof.extend(above.into_iter().rev());
    Ok(proof)
}

/// Why a proof does not hold.
pub type Refusal = String;

/// RFC 9162 section 2.1.3.2: whether `path` proves that the leaf with hash `leaf` is leaf
/// `index` of the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    path: &[Hash],
    root: &Hash,
) -> Result<(), Refusal> {
    if index >= size {
        return Err(format!(
            "leaf index {index} is not in a tree of {size} leaves"
        ));
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            return Err("the inclusion path is longer than the tree is high".to_owned());
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err("the inclusion path is shorter than the tree is high".to_owned());
    }
    if &r != root {
        return Err(format!(
            "the inclusion path leads to root {r}, not to {root}"
        ));
    }
    Ok(())
}

/// RFC 9162 section 2.1.4.2: whether `proof` proves that the tree of `old_size` leaves with
/// root `old_root` is a prefix of the tree of `size` leaves with root `root`.
pub fn verify_consistency(
    old_size: u64,
    size: u64,
    old_root: &Hash,
    root: &Hash,
    proof: &[Hash],
) -> Result<(), Refusal> {
    if old_size > size {
        return Err(format!(
            "the old size {old_size} is larger than the new size {size}"
        ));
    }
    if old_size == 0 {
        // RFC 9162 defines proofs for 0 < m < n only: every tree extends the empty one, so
        // a "proof" from it proves nothing and is refused rather than accepted vacuously.
        return Err("a consistency proof from the empty tree proves nothing".to_owned());
    }
    if old_size == size {
        if !proof.is_empty() {
            return Err("a proof between equal sizes is empty".to_owned());
        }
        if old_root != root {
            return Err(format!(
                "equal sizes {size} with different roots {old_root} and {root}"
            ));
        }
        return Ok(());
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err("the consistency proof is empty".to_owned());
    };
    // Step 2: when the old tree is a perfect subtree, its root starts the path.
    let (start, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    let (mut f, mut s) = (old_size - 1, size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if s == 0 {
            return Err("the consistency proof is longer than the tree is high".to_owned());
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err("the consistency proof is shorter than the tree is high".to_owned());
    }
    if &fr != old_root {
        return Err(format!(
            "the proof leads to old root {fr}, not to {old_root}"
        ));
    }
    if &sr != root {
        return Err(format!("the proof leads to root {sr}, not to {root}"));
    }
    Ok(())
}

/// The compact range of the whole tree: the root of each perfect subtree the tree of `size`
/// leaves decomposes into, largest first. Enough to append and to compute the root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    roots: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the tree of `size` leaves, its subtrees read through `node`.
    pub fn load<E>(
        size: u64,
        node: &mut impl FnMut(NodeId) -> Result<Hash, E>,
    ) -> Result<Frontier, E> {
        let roots = decompose(0, size)
            .map(&mut *node)
            .collect::<Result<Vec<_>, E>>()?;
        Ok(Frontier { size, roots })
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf (its hash); `completed` is told each subtree of two or more leaves
    /// the append completes, smallest first (the store keeps those of
    /// `STORED_LEVEL_MIN` and up).
    pub fn push(&mut self, leaf: Hash, completed: &mut impl FnMut(NodeId, Hash)) {
        let index = self.size;
        let mut hash = leaf;
        let mut level = 0u8;
        // Each set low bit of the old size is a subtree of the same height to the left.
        while (index >> level) & 1 == 1 {
            let left = self
                .roots
                .pop()
                .expect("a set bit of the size has its subtree in the frontier");
            hash = node_hash(&left, &hash);
            level += 1;
            completed(
                NodeId {
                    level,
                    index: index >> level,
                },
                hash,
            );
        }
        self.roots.push(hash);
        self.size += 1;
        debug_assert_eq!(self.roots.len(), self.size.count_ones() as usize);
    }

    /// The root of the tree.
    pub fn root(&self) -> Hash {
        let mut roots = self.roots.iter().rev();
        let Some(last) = roots.next() else {
            return EMPTY_ROOT;
        };
        roots.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests;
