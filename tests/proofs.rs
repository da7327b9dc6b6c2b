//! Proofs for auditors (product.md section 9) through the CLI: checkpoints, keys, inclusion
//! and consistency proofs, evidence bundles, and `prove check` on real and tampered output.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use common::{PLACED, TestLedger, copy_ledger, ordo_at};
use ordo::domain::Hash;
use ordo::format::canonical::write_canonical;
use ordo::format::merkle;

/// A ledger with `orders` generated orders imported.
fn generated(orders: u32) -> TestLedger {
    let l = TestLedger::new();
    let out = l.ok(&["generate", "--orders", &orders.to_string(), "--seed", "5"]);
    let file = l.file("events.ndjson", out);
    l.ok(&["import", file.to_str().expect("utf-8")]);
    l
}

fn code(l: &TestLedger, args: &[&str]) -> (Option<i32>, String) {
    let out = l.ordo(args).output().expect("ordo runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `prove check FILE` on `value` written to a file: exit code and stderr.
fn check(l: &TestLedger, value: &Value, extra: &[&str]) -> (Option<i32>, String) {
    let file = l.file(
        "proof.json",
        serde_json::to_string_pretty(value).expect("json"),
    );
    let mut args = vec!["prove", "check", file.to_str().expect("utf-8")];
    args.extend(extra);
    code(l, &args)
}

/// The RFC 9162 root recomputed from scratch from `ordo export` (leaf = canonical JSON of
/// the envelope without `hash`).
fn root_from_export(l: &TestLedger, size: usize) -> String {
    let leaves: Vec<Vec<u8>> = l
        .ok(&["export"])
        .lines()
        .take(size)
        .map(|line| {
            let mut envelope: Value = serde_json::from_str(line).expect("an envelope");
            envelope.as_object_mut().expect("object").remove("hash");
            let mut bytes = Vec::new();
            write_canonical(&envelope, &mut bytes);
            bytes
        })
        .collect();
    fn mth(leaves: &[Vec<u8>]) -> Hash {
        match leaves.len() {
            0 => merkle::EMPTY_ROOT,
            1 => merkle::leaf_hash(&leaves[0]),
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                merkle::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }
    mth(&leaves).to_hex()
}

#[test]
fn the_checkpoint_root_is_the_rfc_9162_root_of_the_exported_log_at_every_size() {
    let l = generated(20);
    let head = l.json(&["stats"])["head_position"].as_u64().expect("head");
    for size in [1, 2, 3, 7, 8, 9, head - 1, head] {
        let cp = l.json(&["checkpoint", "--tree-size", &size.to_string()]);
        assert_eq!(cp["tree_size"], size);
        assert_eq!(
            cp["root_hash"].as_str(),
            Some(root_from_export(&l, size as usize).as_str()),
            "size {size}"
        );
        let origin = cp["origin"].as_str().expect("origin");
        assert!(
            origin.starts_with("ordo/") && origin.len() == 37,
            "{origin}"
        );
        let note = cp["note"].as_str().expect("note");
        assert_eq!(note.lines().next(), Some(origin));
        assert_eq!(note.lines().nth(1), Some(size.to_string().as_str()));
    }
    // The default is the head, and the table form is the note itself.
    let text = l.ok(&["checkpoint"]);
    assert_eq!(text.lines().nth(1), Some(head.to_string().as_str()));
    assert_eq!(
        code(&l, &["checkpoint", "--tree-size", &(head + 1).to_string()]).0,
        Some(2)
    );
}

#[test]
fn every_inclusion_and_consistency_proof_checks_and_sizes_beyond_the_head_are_refused() {
    let l = generated(6);
    let head = l.json(&["stats"])["head_position"].as_u64().expect("head");
    for size in [1, head / 2, head] {
        for position in 1..=size {
            let proof = l.json(&[
                "prove",
                "inclusion",
                "--position",
                &position.to_string(),
                "--tree-size",
                &size.to_string(),
            ]);
            assert_eq!(proof["position"], position);
            assert_eq!(check(&l, &proof, &[]).0, Some(0), "{position} in {size}");
        }
        for old in 1..=size {
            let proof = l.json(&[
                "prove",
                "consistency",
                "--old-size",
                &old.to_string(),
                "--tree-size",
                &size.to_string(),
            ]);
            assert_eq!(check(&l, &proof, &[]).0, Some(0), "{old} to {size}");
            let old_cp = l.json(&["checkpoint", "--tree-size", &old.to_string()]);
            assert_eq!(proof["old_root"], old_cp["root_hash"]);
        }
    }
    let beyond = (head + 1).to_string();
    for args in [
        vec!["prove", "inclusion", "--position", &beyond],
        vec!["prove", "inclusion", "--position", "0"],
        vec![
            "prove",
            "inclusion",
            "--position",
            "1",
            "--tree-size",
            &beyond,
        ],
        vec!["prove", "consistency", "--old-size", &beyond],
        vec!["prove", "consistency", "--old-size", "0"],
        vec![
            "prove",
            "consistency",
            "--old-size",
            "3",
            "--tree-size",
            "2",
        ],
    ] {
        let (exit, message) = code(&l, &args);
        assert_eq!(exit, Some(2), "{args:?}: {message}");
    }
}

#[test]
fn a_changed_leaf_path_size_or_root_in_a_proof_exits_5() {
    let l = generated(6);
    let proof = l.json(&["prove", "inclusion", "--position", "5"]);
    let flip = |hex: &str| {
        let mut bytes = hex.to_owned().into_bytes();
        bytes[10] = if bytes[10] == b'0' { b'1' } else { b'0' };
        String::from_utf8(bytes).expect("ascii")
    };
    let mut cases = Vec::new();
    for field in ["leaf_hash", "root_hash"] {
        let mut bad = proof.clone();
        bad[field] = Value::from(flip(proof[field].as_str().expect("hex")));
        cases.push(bad);
    }
    let mut bad = proof.clone();
    bad["proof"][1] = Value::from(flip(proof["proof"][1].as_str().expect("hex")));
    cases.push(bad);
    // A size whose tree has another shape. (A size with the same shape at this leaf, such
    // as one more leaf on the far right, gives the same path: RFC 9162 binds a path to a
    // root, and the checkpoint binds the root to its size.)
    let mut bad = proof.clone();
    bad["tree_size"] = Value::from(8);
    cases.push(bad);
    let mut bad = proof.clone();
    bad["position"] = Value::from(6);
    cases.push(bad);
    for bad in cases {
        let (exit, message) = check(&l, &bad, &[]);
        assert_eq!(exit, Some(5), "{bad}: {message}");
        assert!(message.contains("does not hold"), "{message}");
    }
    let consistency = l.json(&["prove", "consistency", "--old-size", "3"]);
    let mut bad = consistency.clone();
    bad["old_root"] = Value::from(flip(consistency["old_root"].as_str().expect("hex")));
    assert_eq!(check(&l, &bad, &[]).0, Some(5));
}

#[test]
fn keygen_writes_an_owner_only_key_prints_only_the_verifier_and_never_overwrites() {
    let l = TestLedger::new();
    let key = l.tmp.path().join("signing.key");
    let printed = l.ok(&[
        "keygen",
        "--name",
        "ledger.example",
        "--out",
        key.to_str().expect("utf-8"),
    ]);
    let verifier = printed.trim();
    assert!(verifier.starts_with("ledger.example+"), "{verifier}");
    assert!(!printed.contains("PRIVATE"));
    let stored = std::fs::read_to_string(&key).expect("the key file");
    assert!(stored.starts_with("PRIVATE+KEY+ledger.example+"));
    assert_eq!(
        std::fs::metadata(&key).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    let (exit, _) = code(
        &l,
        &[
            "keygen",
            "--name",
            "other",
            "--out",
            key.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(exit, Some(2));
    assert_eq!(std::fs::read_to_string(&key).expect("still there"), stored);
    assert_eq!(
        code(
            &l,
            &["keygen", "--name", "two words", "--out", "/tmp/never"]
        )
        .0,
        Some(2)
    );
}

/// A key file and its verifier key.
fn key(l: &TestLedger, name: &str) -> (String, String) {
    let path = l.tmp.path().join(format!("{name}.key"));
    let printed = l.ok(&[
        "keygen",
        "--name",
        name,
        "--out",
        path.to_str().expect("utf-8"),
    ]);
    (
        path.to_str().expect("utf-8").to_owned(),
        printed.trim().to_owned(),
    )
}

#[test]
fn a_signed_checkpoint_verifies_with_its_key_and_not_with_another() {
    let l = generated(5);
    let (key_file, verifier) = key(&l, "auditor.test");
    let (_, other) = key(&l, "auditor.test2");
    let cp = l.json(&["checkpoint", "--key", &key_file]);
    let note = cp["note"].as_str().expect("note");
    assert!(note.contains("\n\n\u{2014} auditor.test "), "{note}");
    assert_eq!(check(&l, &cp, &["--verifier-key", &verifier]).0, Some(0));
    let key_text = l.file("verifier.pub", &verifier);
    let at_file = format!("@{}", key_text.display());
    assert_eq!(check(&l, &cp, &["--verifier-key", &at_file]).0, Some(0));
    assert_eq!(check(&l, &cp, &["--verifier-key", &other]).0, Some(5));
    // The bare note (what a tlog tool reads) checks too.
    let note_file = l.file("checkpoint.note", note);
    let out = l.json(&[
        "prove",
        "check",
        note_file.to_str().expect("utf-8"),
        "--verifier-key",
        &verifier,
    ]);
    assert_eq!(out["signature"], "verified by auditor.test");
    // A changed size, a JSON field that disagrees with the note, or no signature: 5.
    let mut bad = cp.clone();
    bad["note"] = Value::from(note.replacen(&format!("\n{}\n", cp["tree_size"]), "\n1\n", 1));
    bad["tree_size"] = Value::from(1);
    assert_eq!(check(&l, &bad, &["--verifier-key", &verifier]).0, Some(5));
    let mut bad = cp.clone();
    bad["tree_size"] = Value::from(1);
    assert_eq!(check(&l, &bad, &[]).0, Some(5));
    let unsigned = l.json(&["checkpoint"]);
    assert_eq!(check(&l, &unsigned, &[]).0, Some(0));
    assert_eq!(
        check(&l, &unsigned, &["--verifier-key", &verifier]).0,
        Some(5)
    );
}

#[test]
fn a_key_file_open_to_others_is_refused() {
    let l = generated(2);
    let (key_file, _) = key(&l, "k");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let (exit, message) = code(&l, &["checkpoint", "--key", &key_file]);
    assert_eq!(exit, Some(2), "{message}");
    assert!(message.contains("chmod 600"), "{message}");
    assert!(!message.contains("PRIVATE"), "{message}");
}

#[test]
fn an_order_bundle_checks_offline_and_any_tampering_exits_5() {
    let l = generated(8);
    l.append("EVIDENT", "order_placed", PLACED);
    l.append(
        "EVIDENT",
        "payment_captured",
        r#"{"payment_id":"P-1","amount":1000}"#,
    );
    l.append("OTHER", "order_placed", PLACED);
    let (key_file, verifier) = key(&l, "ledger.test");
    let bundle = l.json(&["prove", "order", "EVIDENT", "--key", &key_file]);
    assert_eq!(bundle["format"], "ordo-evidence/v1");
    assert_eq!(bundle["events"].as_array().expect("events").len(), 2);
    let out = {
        let file = l.file("bundle.json", serde_json::to_string(&bundle).expect("json"));
        l.json(&[
            "prove",
            "check",
            file.to_str().expect("utf-8"),
            "--verifier-key",
            &verifier,
        ])
    };
    assert_eq!(out["kind"], "evidence");
    assert_eq!(out["events"], 2);
    assert_eq!(out["signature"], "verified by ledger.test");

    // The bundle at an earlier size holds only what the ledger held then.
    let head = bundle["checkpoint"]["tree_size"].as_u64().expect("size");
    let earlier = l.json(&[
        "prove",
        "order",
        "EVIDENT",
        "--tree-size",
        &(head - 2).to_string(),
    ]);
    assert_eq!(earlier["events"].as_array().expect("events").len(), 1);
    assert_eq!(check(&l, &earlier, &[]).0, Some(0));

    let other = l.json(&["prove", "order", "OTHER"]);
    let mut tampered = Vec::new();
    let mut bad = bundle.clone();
    bad["events"][1]["envelope"]["data"]["amount"] = Value::from(100_000);
    tampered.push(("an amount", bad));
    let mut bad = bundle.clone();
    bad["events"][0]["envelope"]["recorded_at"] = Value::from("2020-01-01T00:00:00.000000Z");
    tampered.push(("a time", bad));
    let mut bad = bundle.clone();
    bad["events"][0]["proof"][0] = bad["events"][0]["proof"][1].clone();
    tampered.push(("a path", bad));
    let mut bad = bundle.clone();
    bad["events"][1] = other["events"][0].clone();
    tampered.push(("another order's event", bad));
    let mut bad = bundle.clone();
    bad["events"].as_array_mut().expect("events").remove(0);
    tampered.push(("a missing first event", bad));
    let mut bad = bundle.clone();
    bad["checkpoint"]["root_hash"] = other["checkpoint"]["root_hash"].clone();
    bad["checkpoint"]["tree_size"] = Value::from(head - 1);
    tampered.push(("a checkpoint", bad));
    for (what, bad) in tampered {
        let (exit, message) = check(&l, &bad, &["--verifier-key", &verifier]);
        assert_eq!(exit, Some(5), "{what}: {message}");
    }
    assert_eq!(code(&l, &["prove", "order", "NOBODY"]).0, Some(1));
}

#[test]
fn verify_finds_a_flipped_byte_in_a_stored_tree_node_and_rebuild_force_rewrites_it() {
    let l = generated(10);
    let before = l.json(&["checkpoint"]);
    {
        let store =
            ordo::store::Store::open(&l.dir(), ordo::store::Access::ReadWrite).expect("opens");
        let key = ordo::format::keys::merkle_node_key(merkle::NodeId { level: 4, index: 1 });
        let mut value = store
            .get(ordo::store::CF_META, &key)
            .expect("reads")
            .expect("stored");
        value[7] ^= 0x20;
        store
            .tamper_raw(ordo::store::CF_META, &key, Some(&value))
            .expect("writes");
    }
    let out = l
        .ordo(&["verify", "--format", "json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(5));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["first_bad_position"], 32, "{report}");
    assert!(
        report["reason"]
            .as_str()
            .expect("reason")
            .contains("Merkle"),
        "{report}"
    );
    // A rebuild of the projections leaves the tree to verify; --force rewrites it from the log.
    assert_eq!(l.json(&["rebuild"])["tree_rebuilt"], false);
    assert_eq!(code(&l, &["verify"]).0, Some(5));
    let forced = l.json(&["rebuild", "--force"]);
    assert_eq!(forced["tree_rebuilt"], true);
    assert_eq!(l.json(&["verify"])["ok"], true);
    assert_eq!(l.json(&["checkpoint"])["root_hash"], before["root_hash"]);
}

#[test]
fn a_ledger_written_before_the_tree_builds_it_at_its_first_write_and_proves_its_past() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ledger-v1");
    let l = TestLedger::new();
    copy_ledger(&fixture, &l.dir());
    let (exit, message) = code(&l, &["checkpoint"]);
    assert_eq!(exit, Some(1), "{message}");
    assert!(message.contains("no Merkle tree yet"), "{message}");
    // A format this ordo does not know is refused by name.
    let newer = TestLedger::new();
    newer.append("N-1", "order_placed", PLACED);
    {
        let store =
            ordo::store::Store::open(&newer.dir(), ordo::store::Access::ReadWrite).expect("opens");
        store
            .tamper_raw(
                ordo::store::CF_META,
                ordo::format::keys::META_FORMAT,
                Some(&[3]),
            )
            .expect("writes");
    }
    let (exit, message) = code(&newer, &["stats"]);
    assert_eq!(exit, Some(1), "{message}");
    assert!(message.contains("format version [3]"), "{message}");
    assert_eq!(l.json(&["verify"])["ok"], true, "verify still reads it");
    let head = l.json(&["stats"])["head_position"].as_u64().expect("head");
    let out = l
        .ordo(&[
            "append",
            "--order",
            "AFTER-TREE",
            "--type",
            "order_placed",
            "--data",
            PLACED,
        ])
        .output()
        .expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("building it once"));
    // It is now of the format that keeps the tree: an older ordo refuses it rather than
    // appending without the tree.
    let format = |dir: &Path| {
        let store = ordo::store::Store::open(dir, ordo::store::Access::ReadOnly).expect("opens");
        store
            .get(ordo::store::CF_META, ordo::format::keys::META_FORMAT)
            .expect("reads")
    };
    assert_eq!(format(&l.dir()), Some(vec![2]));
    assert_eq!(
        format(&fixture),
        Some(vec![1]),
        "the fixture itself is untouched"
    );
    assert_eq!(l.json(&["verify"])["ok"], true);
    let cp = l.json(&["checkpoint", "--tree-size", &head.to_string()]);
    assert_eq!(
        cp["root_hash"].as_str(),
        Some(root_from_export(&l, head as usize).as_str())
    );
    let proof = l.json(&["prove", "consistency", "--old-size", &head.to_string()]);
    assert_eq!(check(&l, &proof, &[]).0, Some(0));
}

#[test]
fn the_origin_is_a_setting_and_checkpoints_carry_it() {
    let l = generated(2);
    l.ok(&["config", "origin", "orders.example.com/ledger"]);
    assert_eq!(
        l.json(&["config", "origin"])["origin"],
        "orders.example.com/ledger"
    );
    assert_eq!(
        l.json(&["checkpoint"])["origin"],
        "orders.example.com/ledger"
    );
    assert_eq!(code(&l, &["config", "origin", "two\nlines"]).0, Some(2));
    assert_eq!(code(&l, &["config", "origin", ""]).0, Some(2));
}

#[test]
fn the_server_answers_proofs_as_the_cli_does_and_signs_with_its_key() {
    let l = generated(3);
    let (key_file, verifier) = key(&l, "server.test");
    let served = common::served::Served::start(&l.dir(), &["--key", &key_file]);
    let url = served.url.clone();
    let via = |args: &[&str]| {
        let mut all = vec!["--server", url.as_str()];
        all.extend(args);
        all.extend(["--format", "json"]);
        let out = ordo_at(&l.dir(), &all).output().expect("runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("json")
    };
    let cp = via(&["checkpoint"]);
    assert_eq!(check(&l, &cp, &["--verifier-key", &verifier]).0, Some(0));
    let inclusion = via(&["prove", "inclusion", "--position", "2"]);
    assert_eq!(check(&l, &inclusion, &[]).0, Some(0));
    assert_eq!(inclusion["root_hash"], cp["root_hash"]);
    let consistency = via(&["prove", "consistency", "--old-size", "2"]);
    assert_eq!(check(&l, &consistency, &[]).0, Some(0));
    let order = l
        .ok(&["export"])
        .lines()
        .next()
        .map(|line| {
            serde_json::from_str::<Value>(line).expect("json")["order_id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .expect("an event");
    let bundle = via(&["prove", "order", &order]);
    assert_eq!(
        check(&l, &bundle, &["--verifier-key", &verifier]).0,
        Some(0)
    );
    let refused = ordo_at(
        &l.dir(),
        &["--server", &url, "checkpoint", "--key", &key_file],
    )
    .output()
    .expect("runs");
    assert_eq!(refused.status.code(), Some(2));
    let (status, body) = common::in_process::call(
        "GET",
        &format!("{url}/v1/proof/inclusion?position=999999"),
        None,
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(served.terminate().success());
    // The same answers from the directory once the server is gone.
    assert_eq!(
        l.json(&["prove", "inclusion", "--position", "2"]),
        inclusion
    );
}

/// `python3 docs/verify_proof.py FILE [--verifier-key KEY]`: exit code and output.
fn python_check(l: &TestLedger, value: &Value, key: Option<&str>) -> (Option<i32>, String) {
    let file = l.file(
        "for-python.json",
        serde_json::to_string(value).expect("json"),
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/verify_proof.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script).arg(file);
    if let Some(key) = key {
        cmd.args(["--verifier-key", key]);
    }
    let out = cmd
        .output()
        .expect("python3 runs (scripts/test installs it when missing)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn the_python_verifier_in_the_docs_accepts_real_output_and_refuses_tampering() {
    let l = generated(6);
    // Text that JSON escapes: the verifier's canonical form must equal ordo's.
    l.append(
        "PY-1",
        "order_placed",
        r#"{"customer_id":"C-1","currency":"EUR","lines":[{"sku":"A","quantity":1,"unit_price":5}],"shipping_address":"Straße \"7\"\n\u0001 東京\\"}"#,
    );
    l.append("PY-1", "note_added", r#"{"text":"tab\there"}"#);
    let (key_file, verifier) = key(&l, "python.test");
    let bundle = l.json(&["prove", "order", "PY-1", "--key", &key_file]);
    let (exit, out) = python_check(&l, &bundle, Some(&verifier));
    assert_eq!(exit, Some(0), "{out}");
    assert!(
        out.contains("2 events of order PY-1") && out.contains("verified by python.test"),
        "{out}"
    );
    for value in [
        l.json(&["checkpoint", "--key", &key_file]),
        l.json(&["prove", "inclusion", "--position", "3"]),
        l.json(&["prove", "consistency", "--old-size", "5"]),
    ] {
        let (exit, out) = python_check(&l, &value, None);
        assert_eq!(exit, Some(0), "{value}: {out}");
    }
    let mut bad = bundle.clone();
    bad["events"][0]["envelope"]["data"]["shipping_address"] = Value::from("elsewhere");
    assert_eq!(python_check(&l, &bad, Some(&verifier)).0, Some(5));
    let (_, other) = key(&l, "python.other");
    assert_eq!(python_check(&l, &bundle, Some(&other)).0, Some(5));
    let mut bad = l.json(&["prove", "consistency", "--old-size", "5"]);
    bad["old_size"] = Value::from(4);
    assert_eq!(python_check(&l, &bad, None).0, Some(5));
}
