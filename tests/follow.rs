//! `ordo follow` against a real `nats-server`: a replica that follows from empty, or from a
//! point-in-time copy (`replay --into`), ends equal to its leader (head hash, verify,
//! statuses, a replay at a middle position); kill -9 mid-stream resumes; a message that
//! does not chain stops it with exit 5 and nothing written; a replica refuses appends,
//! naming its leader, until promoted.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::Value;

use common::nats::{Nats, head_of, kill_9, relay, terminate, wait_for};
use common::{PLACED, TestLedger, ordo_at};

/// `ordo follow`, once it says it is running (its signal handlers are installed by then:
/// a SIGTERM sent earlier, while it opens the ledger, would kill it with the default
/// action, and the replica may already be at the head from an earlier follower).
fn follow(dir: &Path, url: &str, extra: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .env_remove("ORDO_SERVER")
        .arg("--data-dir")
        .arg(dir)
        .args(["follow", "--nats", url])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("ordo follow starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    assert!(first.starts_with("ordo follow: "), "{first}");
    // Drained so that the follower never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

fn json_at(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let out = ordo_at(dir, &all).output().expect("ordo runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut value: Value = serde_json::from_slice(&out.stdout).expect("json");
    if let Some(fields) = value.as_object_mut() {
        fields.remove("elapsed_ms");
    }
    value
}

/// Waits until the replica's head is `head`.
fn wait_for_replica(dir: &Path, head: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while head_of(dir) != head {
        assert!(
            Instant::now() < deadline,
            "the replica reached {}, not {head}",
            head_of(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The replica answers as the leader does.
fn assert_equal(leader: &Path, replica: &Path) {
    let (l, r) = (json_at(leader, &["stats"]), json_at(replica, &["stats"]));
    assert_eq!(l["head_hash"], r["head_hash"]);
    assert_eq!(l["head_position"], r["head_position"]);
    assert_eq!(json_at(replica, &["verify"])["ok"], true);
    assert_eq!(
        json_at(leader, &["query", "statuses"]),
        json_at(replica, &["query", "statuses"])
    );
    let middle = (l["head_position"].as_u64().expect("head") / 2).to_string();
    for args in [
        vec!["replay", "--at-position", middle.as_str()],
        vec!["checkpoint", "--tree-size", middle.as_str()],
    ] {
        let (mut a, mut b) = (json_at(leader, &args), json_at(replica, &args));
        // The origin names each ledger; the tree is the same.
        for v in [&mut a, &mut b] {
            if let Some(fields) = v.as_object_mut() {
                fields.remove("origin");
                fields.remove("note");
            }
        }
        assert_eq!(a, b, "{args:?}");
    }
}

fn leader_with(orders: u32) -> TestLedger {
    let l = TestLedger::new();
    let workload = l.ok(&["generate", "--orders", &orders.to_string(), "--seed", "8"]);
    let file = l.file("events.ndjson", workload);
    l.ok(&["import", file.to_str().expect("utf-8")]);
    l
}

/// A leader of `orders` generated orders whose whole log is in stream ORDO, its head, and
/// the relay, still running.
fn relayed_leader(nats: &Nats, orders: u32) -> (TestLedger, u64, Child) {
    let leader = leader_with(orders);
    let head = leader.json(&["stats"])["head_position"]
        .as_u64()
        .expect("head");
    let relaying = relay(&leader.dir(), &nats.url, &[]);
    wait_for(&nats.url, "ORDO", head);
    (leader, head, relaying)
}

#[test]
fn a_replica_from_empty_and_one_from_a_copy_end_equal_to_the_leader_and_refuse_appends() {
    let nats = Nats::start();
    let (leader, head, relaying) = relayed_leader(&nats, 40);

    let from_empty = tempfile::tempdir().expect("tmp");
    let replica = from_empty.path().join("replica");
    let following = follow(&replica, &nats.url, &[]);
    wait_for_replica(&replica, head);

    // A copy of the leader at a middle position follows from there.
    let copies = tempfile::tempdir().expect("tmp");
    let copy = copies.path().join("copy");
    let middle = (head / 2).to_string();
    leader.ok(&[
        "replay",
        "--at-position",
        &middle,
        "--into",
        copy.to_str().expect("utf-8"),
    ]);
    let following_copy = follow(&copy, &nats.url, &[]);

    // Live: more appends on the leader reach both.
    leader.append("LIVE-1", "order_placed", PLACED);
    leader.append("LIVE-1", "note_added", r#"{"text":"live"}"#);
    wait_for_replica(&replica, head + 2);
    wait_for_replica(&copy, head + 2);
    assert!(terminate(following).success());
    assert!(terminate(following_copy).success());
    assert!(terminate(relaying).success());
    assert_equal(&leader.dir(), &replica);
    assert_equal(&leader.dir(), &copy);

    // A replica refuses appends of its own, naming its leader, until promoted.
    let refused = ordo_at(
        &replica,
        &[
            "append",
            "--order",
            "X",
            "--type",
            "order_placed",
            "--data",
            PLACED,
        ],
    )
    .output()
    .expect("runs");
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("read replica") && message.contains(&nats.url),
        "{message}"
    );
    assert_eq!(head_of(&replica), head + 2, "nothing written");
    let promoted = json_at(&replica, &["config", "replica_of", "none"]);
    assert_eq!(promoted["replica_of"], Value::Null);
    let appended = json_at(
        &replica,
        &[
            "append",
            "--order",
            "X",
            "--type",
            "order_placed",
            "--data",
            PLACED,
        ],
    );
    assert_eq!(appended["position"], head + 3);
}

#[test]
fn kill_9_of_the_follower_mid_stream_resumes_and_ends_equal_to_the_leader() {
    let nats = Nats::start();
    let (leader, head, relaying) = relayed_leader(&nats, 400);
    assert!(terminate(relaying).success());
    let tmp = tempfile::tempdir().expect("tmp");
    let replica = tmp.path().join("replica");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(31);
    for _ in 0..5 {
        let child = follow(&replica, &nats.url, &[]);
        std::thread::sleep(Duration::from_millis(rng.random_range(100..300)));
        kill_9(child);
    }
    let last = follow(&replica, &nats.url, &[]);
    wait_for_replica(&replica, head);
    assert!(terminate(last).success());
    assert_equal(&leader.dir(), &replica);
}

#[test]
fn a_stream_message_that_does_not_chain_stops_the_follower_with_exit_5_and_nothing_written() {
    let nats = Nats::start();
    let leader = TestLedger::new();
    for i in 0..3 {
        leader.append(&format!("A-{i}"), "order_placed", PLACED);
    }
    let relaying = relay(&leader.dir(), &nats.url, &["--stream", "TEST"]);
    wait_for(&nats.url, "TEST", 3);
    assert!(terminate(relaying).success());
    let tmp = tempfile::tempdir().expect("tmp");
    let replica = tmp.path().join("replica");
    let following = follow(&replica, &nats.url, &["--stream", "TEST"]);
    wait_for_replica(&replica, 3);
    assert!(terminate(following).success());

    // A raw publish of a 4th message whose hash does not chain onto position 3.
    let export = leader.ok(&["export"]);
    let mut forged: Value =
        serde_json::from_str(export.lines().last().expect("an event")).expect("json");
    forged["position"] = Value::from(4);
    forged["order_id"] = Value::from("FORGED");
    forged["event_id"] = Value::from("0190a8a4-0000-7000-8000-000000000004");
    // Later than position 3, so that only the hash is wrong (it still says position 3's).
    forged["recorded_at"] = Value::from("2099-01-01T00:00:00.000000Z");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = async_nats::connect(nats.url.as_str())
            .await
            .expect("connects");
        let js = async_nats::jetstream::new(client);
        js.publish(
            "ordo.events.order_placed.FORGED",
            forged.to_string().into_bytes().into(),
        )
        .await
        .expect("published")
        .await
        .expect("stored");
    });
    let out = ordo_at(
        &replica,
        &["follow", "--nats", &nats.url, "--stream", "TEST"],
    )
    .output()
    .expect("exits");
    assert_eq!(out.status.code(), Some(5));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("hash") && message.contains("position 4"),
        "{message}"
    );
    assert_eq!(head_of(&replica), 3, "nothing written");
    assert_eq!(json_at(&replica, &["verify"])["ok"], true);
}

#[test]
fn a_replica_serves_reads_and_refuses_writes_naming_its_leader() {
    let nats = Nats::start();
    let (_leader, head, relaying) = relayed_leader(&nats, 5);
    let tmp = tempfile::tempdir().expect("tmp");
    let replica = tmp.path().join("replica");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let following = follow(&replica, &nats.url, &["--listen", &listen]);
    wait_for_replica(&replica, head);
    let url = format!("http://{listen}");
    let (status, stats) = common::in_process::call("GET", &format!("{url}/v1/stats"), None, None);
    assert_eq!(status, 200);
    assert_eq!(stats["head_position"], head);
    let body = format!(r#"{{"order_id":"W","type":"order_placed","data":{PLACED}}}"#);
    let (status, answer) =
        common::in_process::call("POST", &format!("{url}/v1/events"), Some(&body), None);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("read replica"), "{answer}");
    let metrics = common::in_process::agent()
        .get(&format!("{url}/metrics"))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    assert!(
        metrics.contains(&format!("ordo_replica_consumed_events_total {head}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("ordo_replica_lag_positions 0"),
        "{metrics}"
    );
    assert!(terminate(following).success());
    assert!(terminate(relaying).success());
    assert_eq!(head_of(&replica), head);
}
