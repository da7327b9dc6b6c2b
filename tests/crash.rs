//! Crash safety under SIGKILL: a child process (this test binary, re-run as a writer)
//! appends single events and atomic batches from several threads and prints every
//! acknowledgement; the parent kills it with SIGKILL at a random moment, reopens the ledger
//! and checks that every acknowledged event is there with the same position, order,
//! version and hash, that the ledger accepts new appends (the next cycle's child), and,
//! every few cycles and at the end, that `verify` is clean (the Merkle tree included) and
//! the stored projections equal a rebuild from the log. After every cycle, the checkpoint
//! at the highest acknowledged position proves that event and is consistent with the
//! previous cycle's.
//!
//! `ORDO_CRASH_CYCLES` sets the number of kill cycles (default 50; docs/reliability.md
//! records a longer run).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ordo::domain::{EventData, EventType, Hash, OrderId, Position};
use ordo::format::merkle;
use ordo::ledger::{Filter, Ledger, NewEvent, NoProgress};
use ordo::store::Access;
use rand::{Rng, SeedableRng};
use serde_json::json;

const CHILD_ENV: &str = "ORDO_CRASH_CHILD_DIR";
const CYCLE_ENV: &str = "ORDO_CRASH_CHILD_CYCLE";
const WRITER_THREADS: usize = 4;

fn placed() -> EventData {
    EventData::from_json(
        EventType::OrderPlaced,
        json!({"customer_id": "C-1", "currency": "EUR",
               "lines": [{"sku": "A", "quantity": 1, "unit_price": 700}]}),
    )
    .expect("valid data")
}

fn payment(n: u64) -> EventData {
    EventData::from_json(
        EventType::PaymentCaptured,
        json!({"payment_id": format!("P-{n}"), "amount": 100}),
    )
    .expect("valid data")
}

/// The writer: runs only when re-executed by `kill_cycles` (the env var names the ledger).
/// Each acknowledged event is printed as `ACK position order version hash` and flushed before
/// the next append, so the parent knows everything that was acknowledged.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // a normal test run: nothing to do
    };
    let cycle: u64 = std::env::var(CYCLE_ENV)
        .ok()
        .and_then(|c| c.parse().ok())
        .expect("cycle number");
    let ledger = Ledger::open(Path::new(&dir), Access::ReadWrite).expect("open for writing");
    let out = std::sync::Mutex::new(std::io::stdout());
    let report = |results: &[ordo::ledger::AppendResult]| {
        let mut out = out.lock().expect("stdout lock");
        for r in results {
            let hash = ledger.hash_at(r.position).expect("hash").to_hex();
            writeln!(
                out,
                "ACK {} {} {} {hash}",
                r.position, r.order_id, r.version
            )
            .expect("pipe");
        }
        out.flush().expect("pipe");
    };
    std::thread::scope(|scope| {
        for thread in 0..WRITER_THREADS {
            let (ledger, report) = (&ledger, &report);
            scope.spawn(move || {
                for n in 0u64.. {
                    let order = OrderId::new(format!("K{cycle}-T{thread}-{n}")).expect("id");
                    if thread == 0 {
                        // An atomic batch: the order and five payments, all or nothing.
                        let mut batch = vec![(1, NewEvent::new(order.clone(), placed()))];
                        for p in 0..5 {
                            batch.push((p + 2, NewEvent::new(order.clone(), payment(p))));
                        }
                        report(&ledger.append_batch(batch).expect("batch"));
                    } else {
                        report(&[ledger
                            .append(NewEvent::new(order.clone(), placed()))
                            .expect("append")]);
                        report(&[ledger
                            .append(NewEvent::new(order, payment(n)))
                            .expect("append")]);
                    }
                }
            });
        }
    });
}

/// What the parent learned from acknowledgements: position -> (order, version, hash).
type Acked = BTreeMap<u64, (String, u64, String)>;

fn run_child(dir: &Path, cycle: u64, kill_after: Duration, acked: &mut Acked) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, dir)
        .env(CYCLE_ENV, cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines, received) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Wait for the first acknowledgement (the child is up), then let it run and kill it.
    let started = Instant::now();
    let mut first = true;
    let mut deadline = started + Duration::from_secs(60);
    while Instant::now() < deadline {
        match received.recv_timeout(Duration::from_millis(5)) {
            Ok(line) => {
                record(&line, acked);
                if first {
                    first = false;
                    deadline = Instant::now() + kill_after;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the writer exited on its own"),
        }
    }
    assert!(!first, "the writer acknowledged nothing in 60 s");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    reader.join().expect("reader");
    // Lines already in the pipe were acknowledged before the kill.
    for line in received.try_iter() {
        record(&line, acked);
    }
}

fn record(line: &str, acked: &mut Acked) {
    let parts: Vec<&str> = line.split(' ').collect();
    // Other lines are the test harness talking.
    if let ["ACK", position, order, version, hash] = parts[..] {
        let position: u64 = position.parse().expect("position");
        let entry = (
            order.to_owned(),
            version.parse().expect("version"),
            hash.to_owned(),
        );
        let previous = acked.insert(position, entry.clone());
        assert!(
            previous.is_none_or(|p| p == entry),
            "position {position} acknowledged twice with different events"
        );
    }
}

/// The tree head at the highest acknowledged position proves that event, and is
/// consistent with the previous cycle's (the tree was never rewritten by a crash).
fn check_tree(ledger: &Ledger, acked: &Acked, previous: &mut Option<(u64, String)>) {
    let Some(&top) = acked.keys().next_back() else {
        return;
    };
    let checkpoint = ledger.checkpoint(Some(top), None).expect("a checkpoint");
    let root = Hash::from_hex(&checkpoint.root_hash).expect("hex");
    let proof = ledger.prove_inclusion(top, Some(top)).expect("a proof");
    let event = ledger
        .store()
        .event(Position(top))
        .expect("read")
        .expect("stored");
    let leaf = merkle::leaf_hash(&ordo::format::chain::canonical_bytes(&event));
    let path: Vec<Hash> = proof
        .proof
        .iter()
        .map(|h| Hash::from_hex(h).expect("hex"))
        .collect();
    merkle::verify_inclusion(top - 1, top, &leaf, &path, &root)
        .expect("the acknowledged head is in its tree");
    if let Some((old, old_root)) = previous.take() {
        let proof = ledger.prove_consistency(old, Some(top)).expect("a proof");
        assert_eq!(
            proof.old_root, old_root,
            "the tree of size {old} is unchanged"
        );
        let path: Vec<Hash> = proof
            .proof
            .iter()
            .map(|h| Hash::from_hex(h).expect("hex"))
            .collect();
        merkle::verify_consistency(
            old,
            top,
            &Hash::from_hex(&old_root).expect("hex"),
            &root,
            &path,
        )
        .expect("the later tree extends the earlier one");
    }
    *previous = Some((top, checkpoint.root_hash));
}

fn check(dir: &Path, acked: &Acked, full: bool, previous: &mut Option<(u64, String)>) {
    let ledger = Ledger::open(dir, Access::ReadWrite).expect("reopens after SIGKILL");
    let head = ledger.head().expect("head").position.0;
    check_tree(&ledger, acked, previous);
    for (position, (order, version, hash)) in acked {
        assert!(
            *position <= head,
            "acknowledged {position} beyond head {head}"
        );
        let event = ledger
            .store()
            .event(Position(*position))
            .expect("readable")
            .unwrap_or_else(|| panic!("acknowledged event {position} lost"));
        assert_eq!(event.order_id.as_str(), order, "order at {position}");
        assert_eq!(event.version.0, *version, "version at {position}");
        assert_eq!(&event.hash.to_hex(), hash, "hash at {position}");
    }
    if full {
        let report = ledger.verify(&NoProgress).expect("verify is clean");
        assert_eq!(report.events, head);
        let rebuilt = ledger
            .rebuild(false, Box::new(NoProgress))
            .expect("projections equal a rebuild from the log");
        assert!(rebuilt.matched);
        // Batches are atomic: an order of a batch has all six events or none.
        for (order, _, _) in acked.values().filter(|(o, _, _)| o.contains("-T0-")) {
            let id = OrderId::new(order.clone()).expect("id");
            let history = ledger.history(&id, &Filter::default()).expect("history");
            assert_eq!(history.len(), 6, "batch of {order} is whole");
        }
    }
}

#[test]
fn acknowledged_events_survive_sigkill_at_random_moments() {
    if std::env::var(CHILD_ENV).is_ok() {
        return; // inside a child: only the writer runs
    }
    let cycles: u64 = std::env::var("ORDO_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(50);
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("ledger");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    let mut acked = Acked::new();
    let mut checkpoint = None;
    for cycle in 0..cycles {
        let kill_after = Duration::from_millis(rng.random_range(0..150));
        run_child(&dir, cycle, kill_after, &mut acked);
        check(
            &dir,
            &acked,
            cycle % 10 == 9 || cycle + 1 == cycles,
            &mut checkpoint,
        );
    }
    let ledger = Ledger::open(&dir, Access::ReadOnly).expect("open");
    let head = ledger.head().expect("head").position.0;
    eprintln!(
        "{cycles} SIGKILL cycles: {} acknowledged events, head {head}, lost 0",
        acked.len()
    );
    assert!(
        acked.len() as u64 >= cycles,
        "every cycle acknowledged something"
    );
}
