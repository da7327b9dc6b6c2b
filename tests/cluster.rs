//! A three-node NATS JetStream cluster on loopback with a stream of 3 replicas: the node
//! leading the stream is killed (SIGKILL) while `ordo serve --relay` relays live appends and `ordo follow`
//! follows; both go on, and in the end the stream is the leader's export one message per
//! event and the replica equals the leader. Nothing lost, nothing duplicated.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::nats::{Cluster, head_of, last_sequence, stream_contents, terminate};
use common::served::{Served, post};
use common::{PLACED, TestLedger, ordo_at};

fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn losing_one_of_three_nats_servers_loses_and_duplicates_nothing() {
    let mut cluster = Cluster::start();
    let urls = cluster.urls();
    let leader = TestLedger::new();
    let served = Served::start(&leader.dir(), &["--relay", &urls, "--relay-replicas", "3"]);
    let tmp = tempfile::tempdir().expect("tmp");
    let replica = tmp.path().join("replica");
    let follower = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .env_remove("ORDO_SERVER")
        .arg("--data-dir")
        .arg(&replica)
        .args(["follow", "--nats", &urls])
        .stderr(Stdio::null())
        .spawn()
        .expect("ordo follow starts");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, stop) = (served.url.clone(), stop.clone());
        std::thread::spawn(move || {
            let placed: Value = serde_json::from_str(PLACED).expect("json");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body =
                    json!({"order_id": format!("CL-{n}"), "type": "order_placed", "data": placed});
                let (status, _) = post(&format!("{url}/v1/events"), &body).expect("appends");
                assert_eq!(status, 201);
                n += 1;
            }
            n
        })
    };
    // Relaying and following are under way before a node goes.
    eventually("the stream filling", || {
        last_sequence(&cluster.url(0), "ORDO").is_some_and(|n| n >= 200)
    });
    eventually("the replica following", || head_of(&replica) >= 100);
    // The node that leads the stream's replicas: the hardest one to lose.
    let lost = cluster
        .stream_leader("ORDO")
        .expect("the stream has a leader");
    cluster.kill(lost);
    let alive = (lost + 1) % 3;
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let appended = writer.join().expect("the writer");
    let head = head_of(&leader.dir());
    assert_eq!(head, appended);
    eventually("the stream reaching the head", || {
        last_sequence(&cluster.url(alive), "ORDO") == Some(head)
    });
    eventually("the replica reaching the head", || {
        head_of(&replica) == head
    });
    assert!(terminate(follower).success());
    assert!(served.terminate().success());

    let (last, messages) = stream_contents(&cluster.url(alive), "ORDO");
    assert_eq!(last, head);
    let export: Vec<Value> = leader
        .ok(&["export"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(messages.len(), export.len());
    for (message, envelope) in messages.iter().zip(&export) {
        assert_eq!(&message.payload, envelope);
    }
    let stats = |dir: &std::path::Path| {
        let out = ordo_at(dir, &["stats", "--format", "json"])
            .output()
            .expect("runs");
        serde_json::from_slice::<Value>(&out.stdout).expect("json")
    };
    assert_eq!(
        stats(&replica)["head_hash"],
        stats(&leader.dir())["head_hash"]
    );
    let verify = ordo_at(&replica, &["verify"]).output().expect("runs");
    assert!(verify.status.success());
}
