//! `ordo prove check`: verifies a checkpoint, an inclusion or consistency proof, or an
//! evidence bundle from its text alone, with no ledger: every leaf recomputed from its
//! envelope, every path, and the note's signature when a verifier key is given.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::Value;

use super::note::{Note, Verifier};
use super::{Checkpoint, ConsistencyProof, EVIDENCE_FORMAT, Evidence, InclusionProof};
use crate::domain::Hash;
use crate::error::{Error, Result};
use crate::format::canonical::write_canonical;
use crate::format::merkle;

/// What a successful check established.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// Always true (a failed check is an error).
    pub ok: bool,
    /// `checkpoint`, `inclusion`, `consistency` or `evidence`.
    pub kind: &'static str,
    /// The tree size the proof is about.
    pub tree_size: u64,
    /// The root it leads to, hex.
    pub root_hash: String,
    /// Events whose inclusion was proved (evidence bundles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    /// The checkpoint's origin, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// `verified by NAME`, or `not checked` (no verifier key given), or absent (no note).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

fn unproven(reason: impl Into<String>) -> Error {
    Error::Unproven(reason.into())
}

fn hash(field: &str, hex: &str) -> Result<Hash> {
    Hash::from_hex(hex).map_err(|e| unproven(format!("{field}: {e}")))
}

fn hashes(field: &str, hex: &[String]) -> Result<Vec<Hash>> {
    hex.iter()
        .enumerate()
        .map(|(i, h)| hash(&format!("{field}[{i}]"), h))
        .collect()
}

fn parsed<T: serde::de::DeserializeOwned>(kind: &str, value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| unproven(format!("a malformed {kind}: {e}")))
}

/// Checks `text`: a JSON proof, checkpoint or bundle, or a checkpoint note.
pub fn check(text: &str, verifier: Option<&Verifier>) -> Result<Checked> {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return check_note(text, verifier);
    };
    let Some(object) = value.as_object() else {
        return Err(Error::InvalidInput(
            "not a proof, checkpoint or evidence bundle: the JSON is not an object".to_owned(),
        ));
    };
    if object.contains_key("format") {
        check_evidence(&parsed(EVIDENCE_FORMAT, value)?, verifier)
    } else if object.contains_key("leaf_hash") {
        check_inclusion(&parsed("inclusion proof", value)?)
    } else if object.contains_key("old_size") {
        check_consistency(&parsed("consistency proof", value)?)
    } else if object.contains_key("note") {
        check_checkpoint(&parsed("checkpoint", value)?, verifier)
    } else {
        Err(Error::InvalidInput(
            "not a proof, checkpoint or evidence bundle: none of format, leaf_hash, old_size or note is there".to_owned(),
        ))
    }
}

fn check_inclusion(p: &InclusionProof) -> Result<Checked> {
    let leaf = hash("leaf_hash", &p.leaf_hash)?;
    let root = hash("root_hash", &p.root_hash)?;
    let index = p
        .position
        .checked_sub(1)
        .ok_or_else(|| unproven("position 0 is no event"))?;
    merkle::verify_inclusion(
        index,
        p.tree_size,
        &leaf,
        &hashes("proof", &p.proof)?,
        &root,
    )
    .map_err(|e| unproven(format!("position {}: {e}", p.position)))?;
    Ok(Checked {
        ok: true,
        kind: "inclusion",
        tree_size: p.tree_size,
        root_hash: root.to_hex(),
        events: None,
        origin: None,
        signature: None,
    })
}

fn check_consistency(p: &ConsistencyProof) -> Result<Checked> {
    let old_root = hash("old_root", &p.old_root)?;
    let root = hash("root_hash", &p.root_hash)?;
    merkle::verify_consistency(
        p.old_size,
        p.tree_size,
        &old_root,
        &root,
        &hashes("proof", &p.proof)?,
    )
    .map_err(|e| unproven(format!("from {} to {}: {e}", p.old_size, p.tree_size)))?;
    Ok(Checked {
        ok: true,
        kind: "consistency",
        tree_size: p.tree_size,
        root_hash: root.to_hex(),
        events: None,
        origin: None,
        signature: None,
    })
}

/// A checkpoint's parsed body.
struct Body {
    origin: String,
    tree_size: u64,
    root: Hash,
}

/// Parses a checkpoint note (signed or not) and checks its signature when `verifier` is
/// given; returns the body and what was said of the signature.
fn open_note(note: &str, verifier: Option<&Verifier>) -> Result<(Body, Option<String>)> {
    let (text, signature) = if note.contains("\n\n") {
        let parsed = Note::parse(note).map_err(|e| unproven(format!("the note: {e}")))?;
        let said = match verifier {
            Some(v) => {
                parsed
                    .verify(v)
                    .map_err(|e| unproven(format!("the checkpoint: {e}")))?;
                format!("verified by {}", v.name())
            }
            None => "not checked".to_owned(),
        };
        (parsed.text, Some(said))
    } else {
        if let Some(v) = verifier {
            return Err(unproven(format!(
                "the checkpoint is not signed, so not by {}",
                v.name()
            )));
        }
        (note, None)
    };
    let mut lines = text.split('\n');
    let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(unproven(
            "the checkpoint does not have origin, size and root lines",
        ));
    };
    if origin.is_empty() || !text.ends_with('\n') {
        return Err(unproven(
            "the checkpoint's origin line is empty or it does not end with a newline",
        ));
    }
    let tree_size = size
        .parse::<u64>()
        .ok()
        .filter(|_| size == "0" || !size.starts_with('0'))
        .ok_or_else(|| {
            unproven(format!(
                "the checkpoint's size {size:?} is not a decimal number"
            ))
        })?;
    let root = STANDARD
        .decode(root)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| {
            unproven(format!(
                "the checkpoint's root {root:?} is not 32 bytes of base64"
            ))
        })?;
    Ok((
        Body {
            origin: origin.to_owned(),
            tree_size,
            root: Hash(root),
        },
        signature,
    ))
}

fn check_note(text: &str, verifier: Option<&Verifier>) -> Result<Checked> {
    let (body, signature) = open_note(text, verifier)?;
    Ok(body.checked("checkpoint", None, signature))
}

impl Body {
    /// What a check of a checkpoint (or of a bundle proved against it) established.
    fn checked(
        self,
        kind: &'static str,
        events: Option<u64>,
        signature: Option<String>,
    ) -> Checked {
        Checked {
            ok: true,
            kind,
            tree_size: self.tree_size,
            root_hash: self.root.to_hex(),
            events,
            origin: Some(self.origin),
            signature,
        }
    }
}

/// A checkpoint's JSON fields must say what its note says.
fn checkpoint_body(c: &Checkpoint, verifier: Option<&Verifier>) -> Result<(Body, Option<String>)> {
    let (body, signature) = open_note(&c.note, verifier)?;
    if body.origin != c.origin {
        return Err(unproven(format!(
            "origin {:?} is not the note's {:?}",
            c.origin, body.origin
        )));
    }
    if body.tree_size != c.tree_size {
        return Err(unproven(format!(
            "tree_size {} is not the note's {}",
            c.tree_size, body.tree_size
        )));
    }
    if hash("root_hash", &c.root_hash)? != body.root {
        return Err(unproven(format!(
            "root_hash {} is not the note's {}",
            c.root_hash, body.root
        )));
    }
    Ok((body, signature))
}

fn check_checkpoint(c: &Checkpoint, verifier: Option<&Verifier>) -> Result<Checked> {
    let (body, signature) = checkpoint_body(c, verifier)?;
    Ok(body.checked("checkpoint", None, signature))
}

fn check_evidence(e: &Evidence, verifier: Option<&Verifier>) -> Result<Checked> {
    if e.format != EVIDENCE_FORMAT {
        return Err(unproven(format!(
            "format {:?} is not {EVIDENCE_FORMAT}",
            e.format
        )));
    }
    let (body, signature) = checkpoint_body(&e.checkpoint, verifier)?;
    for (i, event) in e.events.iter().enumerate() {
        // Versions run 1, 2, 3 ...: a bundle holds a prefix of the order's stream.
        let version = i as u64 + 1;
        let at = |what: String| unproven(format!("event {i} of order {}: {what}", e.order_id));
        let envelope = event
            .envelope
            .as_object()
            .ok_or_else(|| at("the envelope is not an object".to_owned()))?;
        if envelope.get("order_id").and_then(Value::as_str) != Some(e.order_id.as_str()) {
            return Err(at("it belongs to another order".to_owned()));
        }
        let this = envelope.get("version").and_then(Value::as_u64);
        if this != Some(version) {
            return Err(at(format!(
                "its version is {this:?}, version {version} was expected"
            )));
        }
        let position = envelope
            .get("position")
            .and_then(Value::as_u64)
            .filter(|p| *p >= 1)
            .ok_or_else(|| at("it has no position".to_owned()))?;
        // The leaf is the canonical bytes: the envelope without `hash`, keys sorted.
        let mut unhashed = envelope.clone();
        unhashed.remove("hash");
        let mut canonical = Vec::new();
        write_canonical(&Value::Object(unhashed), &mut canonical);
        let leaf = merkle::leaf_hash(&canonical);
        merkle::verify_inclusion(
            position - 1,
            body.tree_size,
            &leaf,
            &hashes("proof", &event.proof)?,
            &body.root,
        )
        .map_err(|why| at(format!("position {position}: {why}")))?;
    }
    let events = Some(e.events.len() as u64);
    Ok(body.checked("evidence", events, signature))
}
