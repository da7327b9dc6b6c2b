//! The proofs phase (issue 24): building the Merkle tree of the imported ledger, and
//! inclusion proofs, consistency proofs and checkpoints at its head, in-process.

use std::time::{Duration, Instant};

use anyhow::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use ordo::domain::Position;
use ordo::format::{chain, merkle};
use ordo::ledger::Ledger;
use ordo::proof::note::Signer;

use super::{Latencies, Report, Row, rate};

/// Proofs timed per kind, per time-travel sample (`--samples`): 10,000 at the default 2,000
/// (and a tenth as many checkpoints), 100 in the tiny run of `cargo test`.
const PROOFS_PER_SAMPLE: usize = 5;

pub(super) fn proofs(ledger: &Ledger, samples: usize, report: &mut Report) -> Result<()> {
    let proof_samples = (samples * PROOFS_PER_SAMPLE).max(10);
    let store = ledger.store();
    let head = ledger.head()?.position;

    // Hashing alone: canonical bytes, leaf hash and the frontier's node hashes of every
    // event, as the writer computes them. The log is read into memory a chunk at a time
    // and only the hashing of each chunk is timed.
    const CHUNK_EVENTS: usize = 65_536;
    let mut frontier = merkle::Frontier::default();
    let mut hashing = Duration::ZERO;
    let mut nodes = 0u64;
    let mut events = store.events_from(Position(1)).peekable();
    while events.peek().is_some() {
        let chunk = events
            .by_ref()
            .take(CHUNK_EVENTS)
            .collect::<ordo::Result<Vec<_>>>()?;
        let started = Instant::now();
        for event in &chunk {
            let leaf = merkle::leaf_hash(&chain::canonical_bytes(event));
            frontier.push(leaf, &mut |_, _| nodes += 1);
        }
        hashing += started.elapsed();
    }
    report.rows.push(Row {
        phase: "Merkle tree: hashing",
        metric: "leaves/s",
        ordo: rate(head.0, hashing),
        baseline: None,
        target: None,
        detail: json!({"leaves": head.0, "nodes": nodes, "seconds": hashing.as_secs_f64(),
            "target": "at least 1M leaves/s"}),
    });

    // The whole build of an existing ledger's tree: read, hash, write every node.
    let started = Instant::now();
    store.build_merkle(head, &mut |_| {})?;
    let built = started.elapsed();
    report.rows.push(Row {
        phase: "Merkle tree: build over the log",
        metric: "leaves/s",
        ordo: rate(head.0, built),
        baseline: None,
        target: None,
        detail: json!({"leaves": head.0, "seconds": built.as_secs_f64()}),
    });

    let mut rng = ChaCha8Rng::seed_from_u64(24);
    let mut inclusion = Vec::with_capacity(proof_samples);
    let mut consistency = Vec::with_capacity(proof_samples);
    for _ in 0..proof_samples {
        let position = rng.random_range(1..=head.0);
        let started = Instant::now();
        std::hint::black_box(ledger.prove_inclusion(position, None)?);
        inclusion.push(started.elapsed());
        let started = Instant::now();
        std::hint::black_box(ledger.prove_consistency(position, None)?);
        consistency.push(started.elapsed());
    }
    let signer = Signer::generate("bench").map_err(anyhow::Error::msg)?;
    let (mut plain, mut signed) = (Vec::new(), Vec::new());
    for _ in 0..proof_samples / 10 {
        let started = Instant::now();
        std::hint::black_box(ledger.checkpoint(None, None)?);
        plain.push(started.elapsed());
        let started = Instant::now();
        std::hint::black_box(ledger.checkpoint(None, Some(&signer))?);
        signed.push(started.elapsed());
    }
    for (phase, samples) in [
        ("inclusion proof at the head", inclusion),
        ("consistency proof to the head", consistency),
        ("checkpoint", plain),
        ("signed checkpoint", signed),
    ] {
        let latencies = Latencies::new(samples);
        report.rows.push(Row {
            phase,
            metric: "p99 µs",
            ordo: latencies.micros(0.99),
            baseline: None,
            target: None,
            detail: json!({"samples": latencies.len(), "tree_size": head.0,
                "p50_us": latencies.micros(0.50), "p99_us": latencies.micros(0.99),
                "max_us": latencies.micros(1.0), "target": "p99 under 1 ms"}),
        });
    }
    Ok(())
}
