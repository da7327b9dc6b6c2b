//! The tree math against public test vectors: every inclusion and consistency case of
//! transparency-dev/merkle (`tests/fixtures/merkle/`, copied from its `testdata/` at commit
//! 417fb0c3, Apache-2.0) verifies exactly when it should, and the proofs ordo computes for
//! its 8-leaf reference tree are the ones in the happy paths.

use std::path::Path;

use base64::Engine;
use ordo::domain::Hash;
use ordo::format::merkle::{self, Frontier, NodeId};
use serde_json::Value;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/merkle");

/// The reference tree's leaves (transparency-dev/merkle testonly.LeafInputs).
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A base64 hash. Some cases put other lengths where they "don't care" or on purpose as
/// garbage: those stand for a hash that is no tree's (equal texts stay equal).
fn hash(value: &Value) -> Option<Hash> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.as_str()?)
        .ok()?;
    Some(match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(hash) => Hash(hash),
        Err(_) => merkle::leaf_hash(&[b"not a hash: ".as_slice(), &bytes].concat()),
    })
}

/// Whether a base64 value is 32 bytes: a leaf hash of another length is refused, as the
/// RFC's verifier takes a hash, not bytes.
fn exact(value: &Value) -> bool {
    value
        .as_str()
        .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
        .is_some_and(|b| b.len() == 32)
}

fn hashes(value: &Value) -> Option<Vec<Hash>> {
    match value {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items.iter().map(hash).collect(),
        _ => None,
    }
}

fn cases(kind: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut dirs = vec![Path::new(VECTORS).join(kind)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a vector directory") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("case");
            out.push((
                path.display().to_string(),
                serde_json::from_str(&text).expect("json"),
            ));
        }
    }
    assert!(out.len() > 50, "{kind}: {} cases", out.len());
    out
}

fn reference_tree() -> std::collections::HashMap<NodeId, Hash> {
    let mut nodes = std::collections::HashMap::new();
    let mut frontier = Frontier::default();
    for (i, leaf) in LEAVES.iter().enumerate() {
        let h = merkle::leaf_hash(&hex(leaf));
        nodes.insert(
            NodeId {
                level: 0,
                index: i as u64,
            },
            h,
        );
        frontier.push(h, &mut |id, h| {
            nodes.insert(id, h);
        });
    }
    nodes
}

#[test]
fn every_inclusion_vector_verifies_exactly_when_it_should() {
    let nodes = reference_tree();
    let mut read = |id: NodeId| nodes.get(&id).copied().ok_or(());
    let mut happy = 0;
    for (name, case) in cases("inclusion") {
        let want_err = case["wantErr"].as_bool().expect("wantErr");
        let (index, size) = (case["leafIdx"].as_u64(), case["treeSize"].as_u64());
        let verdict = match (
            index,
            size,
            hash(&case["leafHash"]),
            hash(&case["root"]),
            hashes(&case["proof"]),
        ) {
            (Some(i), Some(n), Some(leaf), Some(root), Some(proof)) if exact(&case["leafHash"]) => {
                merkle::verify_inclusion(i, n, &leaf, &proof, &root)
            }
            _ => Err("malformed".to_owned()),
        };
        assert_eq!(verdict.is_err(), want_err, "{name}: {verdict:?}");
        if !want_err && size.is_some_and(|n| n <= 8) && exact(&case["root"]) {
            let (i, n) = (index.expect("index"), size.expect("size"));
            let ours = merkle::inclusion_proof(i, n, &mut read).expect("stored");
            assert_eq!(Some(ours), hashes(&case["proof"]), "{name}");
            happy += 1;
        }
    }
    assert!(happy >= 4, "{happy} happy paths compared");
}

#[test]
fn every_consistency_vector_verifies_exactly_when_it_should() {
    let nodes = reference_tree();
    let mut read = |id: NodeId| nodes.get(&id).copied().ok_or(());
    let mut happy = 0;
    for (name, case) in cases("consistency") {
        let want_err = case["wantErr"].as_bool().expect("wantErr");
        let (old, size) = (case["size1"].as_u64(), case["size2"].as_u64());
        let verdict = match (
            old,
            size,
            hash(&case["root1"]),
            hash(&case["root2"]),
            hashes(&case["proof"]),
        ) {
            (Some(m), Some(n), Some(r1), Some(r2), Some(proof)) => {
                merkle::verify_consistency(m, n, &r1, &r2, &proof)
            }
            _ => Err("malformed".to_owned()),
        };
        assert_eq!(verdict.is_err(), want_err, "{name}: {verdict:?}");
        if !want_err && size.is_some_and(|n| n <= 8) && exact(&case["root2"]) {
            let (m, n) = (old.expect("old"), size.expect("size"));
            let ours = merkle::consistency_proof(m, n, &mut read).expect("stored");
            assert_eq!(Some(ours), hashes(&case["proof"]), "{name}");
            assert_eq!(
                Some(merkle::root(n, &mut read).expect("stored")),
                hash(&case["root2"]),
                "{name}"
            );
            happy += 1;
        }
    }
    assert!(happy >= 4, "{happy} happy paths compared");
}
