//! The tree math against RFC 9162's own recursive definitions, for every size and leaf.

use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

/// RFC 9162's MTH, recursively, from the leaves.
fn mth(leaves: &[Vec<u8>]) -> Hash {
    match leaves.len() {
        0 => EMPTY_ROOT,
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = split(n as u64) as usize;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// RFC 9162's PATH, recursively.
fn path(m: usize, leaves: &[Vec<u8>]) -> Vec<Hash> {
    let n = leaves.len();
    if n == 1 {
        return Vec::new();
    }
    let k = split(n as u64) as usize;
    if m < k {
        let mut p = path(m, &leaves[..k]);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = path(m - k, &leaves[k..]);
        p.push(mth(&leaves[..k]));
        p
    }
}

/// RFC 9162's SUBPROOF, recursively.
fn subproof(m: usize, leaves: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(leaves)] };
    }
    let k = split(n as u64) as usize;
    if m <= k {
        let mut p = subproof(m, &leaves[..k], b);
        p.push(mth(&leaves[k..]));
        p
    } else {
        let mut p = subproof(m - k, &leaves[k..], false);
        p.push(mth(&leaves[..k]));
        p
    }
}

fn leaves(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
}

/// The stored nodes of a tree built by appending to a frontier, plus its leaves.
fn built(leaves: &[Vec<u8>]) -> (Frontier, HashMap<NodeId, Hash>) {
    let mut frontier = Frontier::default();
    let mut nodes = HashMap::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let hash = leaf_hash(leaf);
        nodes.insert(
            NodeId {
                level: 0,
                index: i as u64,
            },
            hash,
        );
        frontier.push(hash, &mut |id, h| {
            assert!(nodes.insert(id, h).is_none(), "{id:?} is completed once");
        });
    }
    (frontier, nodes)
}

fn reader(nodes: &HashMap<NodeId, Hash>) -> impl FnMut(NodeId) -> Result<Hash, String> + '_ {
    |id| {
        nodes
            .get(&id)
            .copied()
            .ok_or(format!("{id:?} is not stored"))
    }
}

#[test]
fn the_empty_tree_has_the_hash_of_nothing_as_root() {
    assert_eq!(EMPTY_ROOT.0, <[u8; 32]>::from(Sha256::digest(b"")));
    assert_eq!(Frontier::default().root(), EMPTY_ROOT);
}

#[test]
fn every_complete_subtree_is_stored_once_and_equals_its_recomputed_root() {
    let leaves = leaves(37);
    let (_, nodes) = built(&leaves);
    for (id, hash) in &nodes {
        let range = &leaves[id.first_leaf() as usize..id.end_leaf() as usize];
        assert_eq!(*hash, mth(range), "{id:?}");
    }
    // 37 leaves: 18 + 9 + 4 + 2 + 1 complete subtrees above the leaves.
    assert_eq!(nodes.len(), 37 + 18 + 9 + 4 + 2 + 1);
}

proptest! {
    #[test]
    fn roots_and_proofs_of_every_size_equal_the_rfc_recursions(n in 1usize..140, m in 0usize..140, i in 0usize..140) {
        let leaves = leaves(n);
        let (frontier, nodes) = built(&leaves);
        let mut read = reader(&nodes);
        prop_assert_eq!(frontier.root(), mth(&leaves));
        let size = (m % n) as u64 + 1;
        let sub = &leaves[..size as usize];
        prop_assert_eq!(root(size, &mut read).expect("stored"), mth(sub));
        prop_assert_eq!(Frontier::load(size, &mut read).expect("stored").root(), mth(sub));
        let index = (i as u64) % size;
        let proof = inclusion_proof(index, size, &mut read).expect("stored");
        prop_assert_eq!(&proof, &path(index as usize, sub));
        let old = (i as u64) % size + 1;
        let consistency = consistency_proof(old, size, &mut read).expect("stored");
        if old < size {
            prop_assert_eq!(&consistency, &subproof(old as usize, sub, true));
        } else {
            prop_assert!(consistency.is_empty());
        }
    }

    #[test]
    fn proofs_verify_and_any_change_to_leaf_path_size_or_root_does_not(n in 1u64..200, a in 0u64..200, b in 0u64..200, flip in 0usize..64) {
        let leaves = leaves(n as usize);
        let (_, nodes) = built(&leaves);
        let mut read = reader(&nodes);
        let size = b % n + 1;
        let index = a % size;
        let root_hash = root(size, &mut read).expect("stored");
        let leaf = leaf_hash(&leaves[index as usize]);
        let proof = inclusion_proof(index, size, &mut read).expect("stored");
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &root_hash).is_ok());
        let mut other_leaf = leaf;
        other_leaf.0[flip % 32] ^= 1;
        prop_assert!(verify_inclusion(index, size, &other_leaf, &proof, &root_hash).is_err());
        let mut other_root = root_hash;
        other_root.0[flip % 32] ^= 0x80;
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &other_root).is_err());
        // A size is bound with its own root (as a checkpoint states both): the path of
        // one size never leads to the root of another.
        if size < n {
            let next_root = root(size + 1, &mut read).expect("stored");
            prop_assert!(verify_inclusion(index, size + 1, &leaf, &proof, &next_root).is_err());
        }
        prop_assert!(verify_inclusion(index + 1, size, &leaf, &proof, &root_hash).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let at = flip % bad.len();
            bad[at].0[flip % 32] ^= 4;
            prop_assert!(verify_inclusion(index, size, &leaf, &bad, &root_hash).is_err());
            prop_assert!(verify_inclusion(index, size, &leaf, &proof[1..], &root_hash).is_err());
        }

        let old = a % size + 1;
        let old_root = root(old, &mut read).expect("stored");
        let proof = consistency_proof(old, size, &mut read).expect("stored");
        prop_assert!(verify_consistency(old, size, &old_root, &root_hash, &proof).is_ok());
        if old < size {
            prop_assert!(verify_consistency(old, size, &other_root, &root_hash, &proof).is_err());
            prop_assert!(verify_consistency(old, size, &old_root, &other_root, &proof).is_err());
            if size < n {
                let next_root = root(size + 1, &mut read).expect("stored");
                prop_assert!(verify_consistency(old, size + 1, &old_root, &next_root, &proof).is_err());
            }
            let mut bad = proof.clone();
            let at = flip % bad.len();
            bad[at].0[flip % 32] ^= 4;
            prop_assert!(verify_consistency(old, size, &old_root, &root_hash, &bad).is_err());
            prop_assert!(verify_consistency(old, size, &old_root, &root_hash, &proof[1..]).is_err());
        }
    }
}
