//! `ordo serve` as a process, and the CLI beside it: shutdown under load loses nothing
//! acknowledged; read commands work on the directory while the server holds it; write
//! commands point at the server; `--server` makes every supported command a client.

mod common;

use std::time::Duration;

use common::served::{Served, post};
use common::{PLACED, TestLedger, ordo_at};
use predicates::prelude::*;
use serde_json::{Value, json};

fn placed(order: &str) -> Value {
    json!({"order_id": order, "type": "order_placed",
           "data": serde_json::from_str::<Value>(PLACED).expect("json")})
}

#[test]
fn shutdown_under_load_loses_nothing_acknowledged() {
    let l = TestLedger::new();
    let served = Served::start(&l.dir(), &[]);
    let url = format!("{}/v1/events", served.url);
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for i in 0.. {
                    let mut event = placed(&format!("C{c}-{i}"));
                    let id = format!("0190f5a2-0000-7000-8000-{:06x}{:06x}", c, i);
                    event["event_id"] = json!(id);
                    match post(&url, &event) {
                        Ok((201, answer)) => {
                            acknowledged.push((id, answer["position"].as_u64().expect("pos")))
                        }
                        // Refused or cut off by the shutdown: not acknowledged.
                        Ok(_) | Err(_) => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let status = served.terminate();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    let acknowledged: Vec<(String, u64)> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    assert!(acknowledged.len() > 16, "load ran: {}", acknowledged.len());
    // Everything acknowledged is in the log, at the position the server gave.
    let export = l.ok(&["export"]);
    let stored: std::collections::HashMap<String, u64> = export
        .lines()
        .map(|line| {
            let e: Value = serde_json::from_str(line).expect("envelope");
            (
                e["event_id"].as_str().expect("id").to_owned(),
                e["position"].as_u64().expect("position"),
            )
        })
        .collect();
    for (id, position) in &acknowledged {
        assert_eq!(stored.get(id), Some(position), "acknowledged {id} lost");
    }
    assert_eq!(l.json(&["verify"])["ok"], true);
    // The ledger takes writes again, locally.
    l.append("AFTER", "order_placed", PLACED);
}

#[test]
fn beside_a_server_reads_work_on_the_directory_and_writes_point_to_the_server() {
    let l = TestLedger::new();
    l.append("ORD-1", "order_placed", PLACED);
    let served = Served::start(&l.dir(), &[]);
    let url = served.url.clone();
    assert_eq!(
        post(&format!("{url}/v1/events"), &placed("ORD-2"))
            .expect("post")
            .0,
        201
    );
    // A read on the directory (a RocksDB secondary) sees what the server committed.
    assert_eq!(l.json(&["state", "ORD-2"])["status"], "placed");
    assert_eq!(l.json(&["stats"])["events"], 2);
    let place_ord_3 = [
        "append",
        "--order",
        "ORD-3",
        "--type",
        "order_placed",
        "--data",
        PLACED,
    ];
    l.ordo(&place_ord_3)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!("--server {url}")));

    // The same command through the server, by flag and by environment.
    let through = |args: &[&str]| {
        let mut all = vec!["--server", url.as_str(), "--format", "json"];
        all.extend_from_slice(args);
        l.json(&all)
    };
    let r = through(&place_ord_3);
    assert_eq!(r["position"], 3);
    let batch = l.file(
        "batch.ndjson",
        format!("{}\n{}\n", placed("ORD-4"), placed("ORD-5")),
    );
    let r = through(&["append", "--file", batch.to_str().expect("utf-8")]);
    assert_eq!(
        r,
        json!({"appended": 2, "duplicates": 0, "first_position": 4, "last_position": 5})
    );
    let import = l.file("import.ndjson", format!("{}\n", placed("ORD-6")));
    let r = through(&["import", import.to_str().expect("utf-8")]);
    assert_eq!(r["appended"], 1);
    assert_eq!(through(&["state", "ORD-6"])["position"], 6);
    assert_eq!(
        through(&["history", "ORD-1"]).as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(through(&["audit", "ORD-1"])[0]["verified"], true);
    assert_eq!(through(&["query", "statuses"])[0]["count"], 6);
    assert_eq!(
        through(&["query", "orders", "--limit", "2"])
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        through(&["replay", "--at-position", "3"])["statuses"]["placed"],
        3
    );
    assert_eq!(through(&["stats"])["events"], 6);
    let verify = through(&["verify"]);
    assert_eq!(verify["ok"], true);
    ordo_at(&l.dir(), &["state", "ORD-5", "--format", "json"])
        .env("ORDO_SERVER", &url)
        .assert()
        .success()
        .stdout(predicate::str::contains("\"ORD-5\""));
    // Errors keep their exit codes through the server.
    l.ordo(&[
        "--server",
        &url,
        "append",
        "--order",
        "ORD-1",
        "--type",
        "payment_captured",
        "--data",
        r#"{"payment_id":"P","amount":999999}"#,
    ])
    .assert()
    .code(3);
    l.ordo(&["--server", &url, "state", "NOPE"])
        .assert()
        .code(1);
    l.ordo(&["--server", &url, "rebuild"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not available through --server"));
    let remote_export = l.ok(&["--server", &url, "export"]);

    assert!(served.terminate().success());
    // The export through the server is the export of the directory.
    assert_eq!(remote_export, l.ok(&["export"]));
    assert_eq!(l.json(&["verify"])["head_hash"], verify["head_hash"]);
}

#[test]
fn serve_refuses_a_public_address_without_a_token_before_creating_anything() {
    let l = TestLedger::new();
    l.ordo(&["serve", "--listen", "0.0.0.0:0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--token-file"));
    assert!(!l.dir().exists(), "nothing created");
    l.ordo(&["serve", "--listen", "somewhere"]).assert().code(2);
}

#[test]
fn with_a_token_file_the_cli_client_is_let_in_and_others_are_not() {
    let l = TestLedger::new();
    let token = l.file("token", "t0ken-123-of-24-chars\n");
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let token = token.to_str().expect("utf-8");
    let served = Served::start(&l.dir(), &["--token-file", token]);
    l.ordo(&["--server", &served.url, "stats"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("Bearer"));
    let stats = l.json(&["--server", &served.url, "--token-file", token, "stats"]);
    assert_eq!(stats["events"], 0);
    assert!(served.terminate().success());
}
