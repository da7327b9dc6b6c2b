//! The fuzz targets under `cargo test`: their bodies (`tests/fuzz/src/lib.rs`) run over the
//! committed seeds, every saved finding (`tests/fuzz/regressions/<target>/`), and the records
//! of a generated ledger with single bytes changed. The fuzzer itself runs outside CI
//! (docs/reliability.md); this keeps its targets compiling and its findings fixed.
//!
//! `ORDO_FUZZ_SEEDS_OUT=tests/fuzz/seeds cargo test --test fuzz_regressions` rewrites the
//! seeds from a generated ledger.

#[path = "fuzz/src/lib.rs"]
mod targets;

use std::fs;
use std::path::{Path, PathBuf};

use ordo::domain::Timestamp;
use ordo::format::codec;
use ordo::generate::{GenerateOptions, generate};
use ordo::ledger::{ImportOptions, Ledger, NoProgress, import};
use ordo::store::Access;

type Body = fn(&[u8]);

const TARGETS: [(&str, Body); 3] = [
    ("record_decoder", targets::record_decoder),
    ("ndjson_parser", targets::ndjson_parser),
    ("time_parser", targets::time_parser),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_and_saved_finding_runs_clean_through_its_fuzz_target() {
    for (name, body) in TARGETS {
        let seeds = files_in(&fuzz_dir().join("seeds").join(name));
        assert!(!seeds.is_empty(), "target {name} has no committed seeds");
        let findings = files_in(&fuzz_dir().join("regressions").join(name));
        for path in seeds.iter().chain(&findings) {
            let input = fs::read(path).expect("readable input");
            body(&input);
        }
    }
}

/// A small generated ledger: its NDJSON, and every stored event record.
fn generated_ledger() -> (Vec<u8>, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = GenerateOptions {
        orders: 40,
        seed: 11,
        start: Timestamp::parse("2026-01-05").expect("a date"),
        days: 3,
    };
    let mut ndjson = Vec::new();
    generate(&options, &mut ndjson).expect("generate");
    let input = dir.path().join("events.ndjson");
    fs::write(&input, &ndjson).expect("write input");
    let ledger = Ledger::open(&dir.path().join("ledger"), Access::ReadWrite).expect("open");
    import(&ledger, &input, &ImportOptions::default(), &NoProgress).expect("import");
    let records = ledger
        .log(ordo::domain::Position(1), None, None)
        .map(|e| codec::encode_event(&e.expect("stored event")))
        .collect();
    (ndjson, records)
}

#[test]
fn records_and_lines_of_a_generated_ledger_with_any_byte_changed_run_clean() {
    let (ndjson, records) = generated_ledger();
    assert!(records.len() > 80, "the generated ledger has events");
    targets::ndjson_parser(&ndjson);
    for (i, record) in records.iter().enumerate() {
        targets::record_decoder(record);
        // The payload alone, which the target frames with a valid checksum.
        let payload = &record[1..record.len() - 4];
        targets::record_decoder(payload);
        // Every 7th record: each byte of its payload changed, and each truncation.
        if i % 7 == 0 {
            for at in 0..payload.len() {
                let mut changed = payload.to_vec();
                changed[at] ^= 0x5a;
                targets::record_decoder(&changed);
                targets::record_decoder(&payload[..at]);
            }
        }
    }
    if let Some(out) = std::env::var_os("ORDO_FUZZ_SEEDS_OUT") {
        write_seeds(Path::new(&out), &ndjson, &records);
    }
}

fn write_seeds(out: &Path, ndjson: &[u8], records: &[Vec<u8>]) {
    let write = |target: &str, name: String, bytes: &[u8]| {
        let dir = out.join(target);
        fs::create_dir_all(&dir).expect("seed directory");
        fs::write(dir.join(name), bytes).expect("write seed");
    };
    // One record of each event type, as payloads (the target adds the frame).
    let mut seen = std::collections::BTreeSet::new();
    for record in records {
        let event = codec::decode_event(record).expect("stored record decodes");
        let kind = event.event_type().as_str();
        if seen.insert(kind) {
            write(
                "record_decoder",
                format!("{kind}.bin"),
                &record[1..record.len() - 4],
            );
        }
    }
    for (i, line) in ndjson.split(|b| *b == b'\n').take(40).enumerate() {
        write("ndjson_parser", format!("line-{i:02}.jsonl"), line);
    }
    for (i, time) in [
        "2026-03-01T09:30:00Z",
        "2026-03-01T10:30:00.123456789+01:00",
        "2026-03-01",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "2026-02-29",
    ]
    .iter()
    .enumerate()
    {
        write("time_parser", format!("time-{i}.txt"), time.as_bytes());
    }
}
