//! `ordo relay` against a real `nats-server` on loopback (scripts/nats-server installs it;
//! `ORDO_NATS_SERVER` names it): the stream's messages equal `ordo export` one by one with
//! sequence = position; kill -9 of the relay during live appends never loses or duplicates
//! a message; a stream ahead of the ledger or diverged from it stops the relay with exit 5.

mod common;

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use common::nats::{
    Message, Nats, kill_9, last_sequence, relay, relay_temp_dir, stream_contents, terminate,
    wait_for,
};
use common::served::{Served, post};
use common::{PLACED, TestLedger};
use ordo::relay::subject;

/// Every message is the export line at its position, with its id, hash and subject.
fn assert_equals_export(l: &TestLedger, messages: &[Message]) {
    let export: Vec<Value> = l
        .ok(&["export"])
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect();
    assert_eq!(messages.len(), export.len(), "one message per event");
    for (i, (message, envelope)) in messages.iter().zip(&export).enumerate() {
        let position = (i + 1) as u64;
        assert_eq!(&message.payload, envelope, "message {position}");
        assert_eq!(envelope["position"], position);
        assert_eq!(message.position, position.to_string());
        assert_eq!(Some(message.msg_id.as_str()), envelope["event_id"].as_str());
        assert_eq!(Some(message.hash.as_str()), envelope["hash"].as_str());
        let expected = subject::subject(
            envelope["type"].as_str().expect("type"),
            envelope["order_id"].as_str().expect("order"),
        );
        assert_eq!(message.subject, expected);
    }
}

#[test]
fn a_relayed_ledger_is_its_export_one_message_per_event_and_follows_new_appends() {
    let nats = Nats::start();
    let l = TestLedger::new();
    let workload = l.ok(&["generate", "--orders", "60", "--seed", "3"]);
    let file = l.file("events.ndjson", workload);
    l.ok(&["import", file.to_str().expect("utf-8")]);
    let relay = relay(&l.dir(), &nats.url, &[]);
    let head = l.json(&["stats"])["head_position"].as_u64().expect("head");
    wait_for(&nats.url, "ORDO", head);
    // Appends while the relay runs: it sees them within a poll.
    l.append("ORD.with_dots_and_underscores", "order_placed", PLACED);
    l.append(
        "ORD.with_dots_and_underscores",
        "note_added",
        r#"{"text":"hi"}"#,
    );
    wait_for(&nats.url, "ORDO", head + 2);
    assert!(terminate(relay).success());
    let (last, messages) = stream_contents(&nats.url, "ORDO");
    assert_eq!(last, head + 2);
    assert_equals_export(&l, &messages);
    assert_eq!(
        messages[messages.len() - 1].subject,
        "ordo.events.note_added.ORD_2Ewith_5Fdots_5Fand_5Funderscores"
    );
}

#[test]
fn kill_9_of_the_relay_during_live_appends_loses_and_duplicates_nothing() {
    let cycles: usize = std::env::var("ORDO_RELAY_KILL_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20);
    let nats = Nats::start();
    let l = TestLedger::new();
    let served = Served::start(&l.dir(), &[]);
    let url = served.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let order = format!("K-{n}");
                let placed: Value = serde_json::from_str(PLACED).expect("json");
                let body = json!([
                    {"order_id": order, "type": "order_placed", "data": placed},
                    {"order_id": order, "type": "note_added", "data": {"text": "x"}},
                ]);
                let (status, _) = post(&format!("{url}/v1/events"), &body).expect("appends");
                assert_eq!(status, 201);
                n += 1;
            }
            n
        })
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(23);
    for cycle in 0..cycles {
        let before = last_sequence(&nats.url, "ORDO").unwrap_or(0);
        let child = relay(&l.dir(), &nats.url, &[]);
        // Killed while it publishes: once the stream moves, at a random moment after.
        let deadline = Instant::now() + Duration::from_secs(30);
        while last_sequence(&nats.url, "ORDO").unwrap_or(0) == before {
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: the relay published nothing"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        kill_9(child);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let orders = writer.join().expect("the writer thread");
    assert!(orders > 0);
    let head = {
        let (_, health) = common::in_process::call("GET", &format!("{url}/healthz"), None, None);
        health["head_position"].as_u64().expect("head")
    };
    let last = relay(&l.dir(), &nats.url, &[]);
    wait_for(&nats.url, "ORDO", head);
    assert!(terminate(last).success());
    // A relay reads the ledger beside the server as a secondary instance, which once
    // wrote its info log into a temporary directory of its own, left behind by each kill.
    let left: Vec<_> = std::fs::read_dir(relay_temp_dir(&l.dir()))
        .expect("the relays' temporary directory")
        .map(|entry| entry.expect("an entry").file_name())
        .collect();
    assert!(left.is_empty(), "the killed relays left {left:?} behind");
    assert!(served.terminate().success());
    let (stream_last, messages) = stream_contents(&nats.url, "ORDO");
    assert_eq!(stream_last, head);
    assert_equals_export(&l, &messages);
}

#[test]
fn a_stream_ahead_of_the_ledger_or_diverged_from_it_stops_the_relay_with_exit_5() {
    let nats = Nats::start();
    let first = TestLedger::new();
    for i in 0..3 {
        first.append(&format!("A-{i}"), "order_placed", PLACED);
    }
    let relay_first = relay(&first.dir(), &nats.url, &[]);
    wait_for(&nats.url, "ORDO", 3);
    assert!(terminate(relay_first).success());

    // Another ledger with fewer events: the stream is ahead of it.
    let shorter = TestLedger::new();
    shorter.append("B-0", "order_placed", PLACED);
    let status = relay(&shorter.dir(), &nats.url, &[]).wait().expect("exits");
    assert_eq!(status.code(), Some(5), "ahead");

    // Another ledger with more events: its event 3 is not the stream's message 3.
    let other = TestLedger::new();
    for i in 0..5 {
        other.append(&format!("C-{i}"), "order_placed", PLACED);
    }
    let status = relay(&other.dir(), &nats.url, &[]).wait().expect("exits");
    assert_eq!(status.code(), Some(5), "diverged");
    let (last, _) = stream_contents(&nats.url, "ORDO");
    assert_eq!(
        last, 3,
        "nothing was added to a stream that is not the ledger's"
    );

    // The ledger it came from goes on from where it stopped.
    first.append("A-3", "order_placed", PLACED);
    let again = relay(&first.dir(), &nats.url, &[]);
    wait_for(&nats.url, "ORDO", 4);
    assert!(terminate(again).success());
    let (_, messages) = stream_contents(&nats.url, "ORDO");
    assert_equals_export(&first, &messages);
}

#[test]
fn serve_with_relay_publishes_every_commit_and_reports_its_lag_in_metrics() {
    let nats = Nats::start();
    let l = TestLedger::new();
    let served = Served::start(
        &l.dir(),
        &["--relay", &nats.url, "--relay-stream", "SERVED"],
    );
    let placed: Value = serde_json::from_str(PLACED).expect("json");
    for i in 0..20 {
        let body = json!({"order_id": format!("S-{i}"), "type": "order_placed", "data": placed});
        let (status, _) = post(&format!("{}/v1/events", served.url), &body).expect("appends");
        assert_eq!(status, 201);
    }
    wait_for(&nats.url, "SERVED", 20);
    let metrics = common::in_process::agent()
        .get(&format!("{}/metrics", served.url))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    assert!(
        metrics.contains("ordo_relay_published_events_total 20"),
        "{metrics}"
    );
    assert!(metrics.contains("ordo_relay_lag_positions 0"), "{metrics}");
    assert!(served.terminate().success());
    let (_, messages) = stream_contents(&nats.url, "SERVED");
    assert_equals_export(&l, &messages);
}
