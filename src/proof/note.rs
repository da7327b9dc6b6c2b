//! Signed notes (C2SP signed-note, as golang.org/x/mod/sumdb/note writes them) with Ed25519
//! keys in that package's text formats:
//!
//! - signing key `PRIVATE+KEY+<name>+<hash>+<base64(0x01 ‖ 32-byte seed)>`;
//! - verifier key `<name>+<hash>+<base64(0x01 ‖ 32-byte public key)>`;
//! - `<hash>`: 8 lower-case hex digits, the first 4 bytes of
//!   `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`;
//! - a note: its text (ending in a newline), a blank line, then one line per signature,
//!   `— <name> <base64(hash, 4 bytes big-endian ‖ 64-byte Ed25519 signature of the text)>`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// The algorithm byte of Ed25519 keys.
const ALG_ED25519: u8 = 1;
/// What starts every signature line: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Signature lines read at most, as the Go package reads.
const SIGNATURES_MAX: usize = 100;

/// A key or note that could not be used, with the reason.
pub type Refusal = String;

/// Whether `name` can name a key: non-empty, with no whitespace and no `+`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn key_hash(name: &str, public: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ALG_ED25519]);
    hasher.update(public);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A signing key and its name.
pub struct Signer {
    name: String,
    key: SigningKey,
    hash: u32,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself: debug output ends up in logs.
        write!(f, "Signer({}+{:08x})", self.name, self.hash)
    }
}

/// A verifier key and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key: VerifyingKey,
    hash: u32,
}

impl Signer {
    /// A new key named `name`, from 32 bytes of the operating system's randomness.
    pub fn generate(name: &str) -> Result<Signer, Refusal> {
        if !valid_name(name) {
            return Err(format!(
                "{name:?} cannot name a key: it must be non-empty, without spaces or '+'"
            ));
        }
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| format!("cannot draw a random key: {e}"))?;
        Ok(Signer::from_seed(name, seed))
    }

    fn from_seed(name: &str, seed: [u8; 32]) -> Signer {
        let key = SigningKey::from_bytes(&seed);
        let hash = key_hash(name, key.verifying_key().as_bytes());
        Signer {
            name: name.to_owned(),
            key,
            hash,
        }
    }

    /// Parses a signing key `PRIVATE+KEY+NAME+HASH+KEYDATA`.
    pub fn parse(text: &str) -> Result<Signer, Refusal> {
        let bad = |why: &str| format!("not a signing key (PRIVATE+KEY+NAME+HASH+KEYDATA): {why}");
        let rest = text
            .trim_end_matches('\n')
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("it does not start with PRIVATE+KEY+"))?;
        let (name, hash, data) = split_key(rest).ok_or_else(|| bad("malformed"))?;
        let data = STANDARD
            .decode(data)
            .map_err(|_| bad("the key data is not base64"))?;
        let seed: [u8; 32] = match data.split_first() {
            Some((&ALG_ED25519, seed)) => seed
                .try_into()
                .map_err(|_| bad("an Ed25519 seed is 32 bytes"))?,
            _ => return Err(bad("the algorithm is not Ed25519")),
        };
        let signer = Signer::from_seed(name, seed);
        if signer.hash != hash {
            return Err(bad("its hash does not match its name and key"));
        }
        Ok(signer)
    }

    /// The key in its text form (to store, never to print).
    pub fn to_text(&self) -> String {
        let mut data = vec![ALG_ED25519];
        data.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.hash,
            STANDARD.encode(data)
        )
    }

    /// Its verifier key.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            hash: self.hash,
        }
    }

    /// `text` (ending in a newline) signed: the whole note.
    pub fn sign(&self, text: &str) -> String {
        assert!(text.ends_with('\n'), "a note's text ends with a newline");
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.hash.to_be_bytes().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        )
    }
}

/// `NAME+HASH+KEYDATA` split, with the name checked and the hash parsed.
fn split_key(text: &str) -> Option<(&str, u32, &str)> {
    let (name, rest) = text.split_once('+')?;
    let (hash, data) = rest.split_once('+')?;
    if !valid_name(name) || hash.len() != 8 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((name, u32::from_str_radix(hash, 16).ok()?, data))
}

impl Verifier {
    /// Parses a verifier key `NAME+HASH+KEYDATA`.
    pub fn parse(text: &str) -> Result<Verifier, Refusal> {
        let bad = |why: &str| format!("not a verifier key (NAME+HASH+KEYDATA): {why}");
        let (name, hash, data) =
            split_key(text.trim_end_matches('\n')).ok_or_else(|| bad("malformed"))?;
        let data = STANDARD
            .decode(data)
            .map_err(|_| bad("the key data is not base64"))?;
        let public: [u8; 32] = match data.split_first() {
            Some((&ALG_ED25519, public)) => public
                .try_into()
                .map_err(|_| bad("an Ed25519 public key is 32 bytes"))?,
            _ => return Err(bad("the algorithm is not Ed25519")),
        };
        if key_hash(name, &public) != hash {
            return Err(bad("its hash does not match its name and key"));
        }
        let key = VerifyingKey::from_bytes(&public).map_err(|_| bad("not an Ed25519 point"))?;
        Ok(Verifier {
            name: name.to_owned(),
            key,
            hash,
        })
    }

    /// The key in its text form.
    pub fn to_text(&self) -> String {
        let mut data = vec![ALG_ED25519];
        data.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.hash, STANDARD.encode(data))
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A note split into its text and its signature lines (`(name, key hash, signature)`).
#[derive(Debug)]
pub struct Note<'a> {
    /// The signed text, ending in a newline.
    pub text: &'a str,
    signatures: Vec<(&'a str, u32, Vec<u8>)>,
}

impl<'a> Note<'a> {
    /// Parses a signed note (text, blank line, signature lines).
    pub fn parse(note: &'a str) -> Result<Note<'a>, Refusal> {
        if note.chars().any(|c| c < ' ' && c != '\n') {
            return Err("the note holds control characters".to_owned());
        }
        let split = note
            .rfind("\n\n")
            .ok_or("the note has no signature block (a blank line, then signatures)")?;
        let (text, block) = (&note[..=split], &note[split + 2..]);
        if block.is_empty() || !block.ends_with('\n') {
            return Err("the note's signature block does not end with a newline".to_owned());
        }
        let mut signatures = Vec::new();
        for line in block.lines() {
            if signatures.len() == SIGNATURES_MAX {
                return Err(format!(
                    "the note has more than {SIGNATURES_MAX} signatures"
                ));
            }
            let bad = || format!("malformed signature line {line:?}");
            let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(bad)?;
            let (name, blob) = rest.split_once(' ').ok_or_else(bad)?;
            let blob = STANDARD.decode(blob).map_err(|_| bad())?;
            if !valid_name(name) || blob.len() < 5 {
                return Err(bad());
            }
            let hash = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
            signatures.push((name, hash, blob[4..].to_vec()));
        }
        Ok(Note { text, signatures })
    }

    /// Checks the signature by `verifier`: present and valid.
    pub fn verify(&self, verifier: &Verifier) -> Result<(), Refusal> {
        let (_, _, signature) = self
            .signatures
            .iter()
            .find(|(name, hash, _)| *name == verifier.name && *hash == verifier.hash)
            .ok_or_else(|| {
                format!(
                    "the note is not signed by {}+{:08x}",
                    verifier.name, verifier.hash
                )
            })?;
        let signature = Signature::from_slice(signature)
            .map_err(|_| format!("the signature by {} is malformed", verifier.name))?;
        verifier
            .key
            .verify(self.text.as_bytes(), &signature)
            .map_err(|_| format!("the signature by {} does not verify", verifier.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // golang.org/x/mod/sumdb/note's own test key and note (note_test.go, TestSign).
    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const SIGNED: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn signing_the_go_packages_test_note_gives_its_exact_bytes() {
        let signer = Signer::parse(SKEY).expect("the Go test key");
        assert_eq!(signer.to_text(), SKEY);
        assert_eq!(signer.verifier().to_text(), VKEY);
        assert_eq!(signer.sign(TEXT), SIGNED);
        let verifier = Verifier::parse(VKEY).expect("the Go verifier key");
        let note = Note::parse(SIGNED).expect("a note");
        assert_eq!(note.text, TEXT);
        note.verify(&verifier).expect("it verifies");
    }

    #[test]
    fn a_changed_text_key_or_signature_does_not_verify() {
        let verifier = Verifier::parse(VKEY).expect("key");
        let changed = SIGNED.replace("problem,", "problem;");
        assert!(
            Note::parse(&changed)
                .expect("parses")
                .verify(&verifier)
                .is_err()
        );
        let other = Signer::generate("PeterNeumann").expect("key").verifier();
        assert!(Note::parse(SIGNED).expect("parses").verify(&other).is_err());
        let forged = SIGNED.replace("x08go/ZJ", "x08go/ZK");
        assert!(
            Note::parse(&forged)
                .expect("parses")
                .verify(&verifier)
                .is_err()
        );
        assert!(Note::parse(TEXT).is_err(), "no signature block");
        assert!(
            Verifier::parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
                .is_err()
        );
        assert!(Signer::parse(VKEY).is_err());
    }

    #[test]
    fn a_generated_key_round_trips_through_its_text_and_signs() {
        let signer = Signer::generate("ordo.example").expect("key");
        let again = Signer::parse(&signer.to_text()).expect("parses");
        let verifier = Verifier::parse(&again.verifier().to_text()).expect("parses");
        let note = signer.sign("origin\n1\nAAAA\n");
        Note::parse(&note)
            .expect("parses")
            .verify(&verifier)
            .expect("verifies");
        assert!(Signer::generate("two words").is_err());
        assert!(Signer::generate("a+b").is_err());
        assert!(!format!("{signer:?}").contains(&signer.to_text()));
    }
}
