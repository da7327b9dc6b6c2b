//! `ordo serve` against issue 5 and product.md section 8: a real server on 127.0.0.1 (a free
//! port), a real HTTP client. Every endpoint, every error status, the token, 200 concurrent
//! appenders, subscriptions that resume without gaps or duplicates. The binary-level tests
//! (shutdown under load, the CLI as a client, reads beside a server) are in
//! tests/server_cli.rs.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use common::in_process::{TestServer, agent, call, get, post};
use ordo::domain::{OrderId, Position};
use ordo::ledger::{Filter, Ledger, NoProgress};
use ordo::server::{ServeOptions, Server};
use ordo::store::Access;

fn placed(order: &str) -> Value {
    json!({"order_id": order, "type": "order_placed", "actor": "alice",
           "data": {"customer_id": "C-1", "currency": "EUR",
                    "lines": [{"sku": "A", "quantity": 2, "unit_price": 500}]}})
}

fn captured(order: &str, amount: u64, payment: &str) -> Value {
    json!({"order_id": order, "type": "payment_captured",
           "data": {"payment_id": payment, "amount": amount}})
}

fn head(s: &TestServer) -> u64 {
    get(s, "/healthz").1["head_position"]
        .as_u64()
        .expect("head")
}

#[test]
fn every_endpoint_answers_with_the_cli_fields_and_equals_the_library() {
    let s = TestServer::start(None);
    let (status, one) = post(&s, "/v1/events", &placed("ORD-1"));
    assert_eq!(status, 201, "{one}");
    assert_eq!(one["position"], 1);
    assert_eq!(one["duplicate"], false);
    // A retry with the same event id is a duplicate: 200, the original position.
    let mut retry = captured("ORD-1", 400, "P-1");
    retry["event_id"] = json!("0190f5a2-0000-7000-8000-0000000000aa");
    let (status, first) = post(&s, "/v1/events", &retry);
    assert_eq!((status, first["position"].clone()), (201, json!(2)));
    let (status, again) = post(&s, "/v1/events", &retry);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["position"], 2);
    // An atomic batch.
    let batch = json!([
        placed("ORD-2"),
        captured("ORD-2", 1000, "P-2"),
        placed("ORD-3")
    ]);
    let (status, result) = post(&s, "/v1/events", &batch);
    assert_eq!(status, 201, "{result}");
    assert_eq!(result["appended"], 3);
    assert_eq!(result["duplicates"], 0);
    assert_eq!(result["first_position"], 3);
    assert_eq!(result["last_position"], 5);
    assert_eq!(result["results"].as_array().map(Vec::len), Some(3));

    let (_, state) = get(&s, "/v1/orders/ORD-1");
    assert_eq!(state["paid"], 400);
    assert_eq!(state["version"], 2);
    let (_, then) = get(&s, "/v1/orders/ORD-1?at_position=1");
    assert_eq!(then["paid"], 0);
    let (_, events) = get(&s, "/v1/orders/ORD-2/events");
    let types: Vec<&str> = events
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types, ["order_placed", "payment_captured"]);
    assert_eq!(events[0]["hash"].as_str().map(str::len), Some(64));
    let (_, audit) = get(&s, "/v1/orders/ORD-1/audit");
    assert_eq!(audit[1]["state_after"]["paid"], 400);
    assert_eq!(audit[1]["verified"], true);
    let (_, by_actor) = get(&s, "/v1/audit?actor=alice");
    assert_eq!(by_actor.as_array().map(Vec::len), Some(3));
    let (_, page) = get(&s, "/v1/events?from=2&limit=2");
    let positions: Vec<u64> = page
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|e| e["position"].as_u64())
        .collect();
    assert_eq!(positions, [2, 3]);
    let (_, statuses) = get(&s, "/v1/query/statuses");
    assert_eq!(statuses[0], json!({"status": "placed", "count": 2}));
    assert_eq!(statuses[1], json!({"status": "paid", "count": 1}));
    let (_, orders) = get(&s, "/v1/query/orders?status=placed&limit=1");
    assert_eq!(orders.as_array().map(Vec::len), Some(1));
    let (_, customers) = get(&s, "/v1/query/customers?customer=C-1");
    assert_eq!(customers[0]["orders"], 3);
    assert_eq!(customers[0]["paid"], 1400);
    let (_, revenue) = get(&s, "/v1/query/revenue?by=month");
    assert_eq!(revenue[0]["captured"], 1400);
    let (_, replay) = get(&s, "/v1/replay?at_position=2");
    assert_eq!(replay["position"], 2);
    assert_eq!(replay["statuses"]["placed"], 1);
    let (status, snapshots) = get(&s, "/v1/snapshots");
    assert_eq!((status, snapshots), (200, json!([])));
    let (_, verify) = get(&s, "/v1/verify");
    assert_eq!(verify["ok"], true);
    assert_eq!(verify["events"], 5);
    let (_, stats) = get(&s, "/v1/stats");
    assert_eq!(stats["events"], 5);
    assert_eq!(stats["orders"], 3);
    assert_eq!(stats["head_hash"], verify["head_hash"]);
    assert_eq!(head(&s), 5);
    let (status, metrics) = get(&s, "/metrics");
    assert_eq!(status, 200);
    let metrics = metrics.as_str().expect("text").to_owned();
    for name in [
        "ordo_commits_total 3", // the duplicate wrote nothing
        "ordo_committed_events_total 5",
        "ordo_events_per_commit",
        "ordo_append_seconds_count 4",
        "ordo_appended_events_total 5",
        "ordo_subscribers 0",
        "ordo_http_requests_total{route=\"/v1/events\",status=\"201\"} 3",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }

    // What the server said equals what the library reads from the directory afterwards.
    let dir = s.stop();
    let ledger = Ledger::open(dir.path(), Access::ReadOnly).expect("open");
    let order = OrderId::new("ORD-1").expect("id");
    let library = ledger.state(&order, &Filter::default()).expect("state");
    assert_eq!(serde_json::to_value(library).expect("json"), state);
    let report = ledger.verify(&NoProgress).expect("verify");
    assert_eq!(json!(report.head_hash), verify["head_hash"]);
}

#[test]
fn every_error_has_its_status_and_kind_and_writes_nothing() {
    let s = TestServer::start(None);
    post(&s, "/v1/events", &placed("ORD-1"));
    let mut reused = placed("ORD-9");
    reused["event_id"] = json!("0190f5a2-0000-7000-8000-0000000000bb");
    post(&s, "/v1/events", &reused);
    let before = get(&s, "/v1/stats").1;
    let cases: Vec<(&str, &str, Option<String>, u16, &str)> = vec![
        (
            "bad JSON",
            "/v1/events",
            Some("{not json".to_owned()),
            400,
            "invalid_input",
        ),
        (
            "not an event",
            "/v1/events",
            Some("42".to_owned()),
            400,
            "invalid_input",
        ),
        (
            "a key twice",
            "/v1/events",
            Some(r#"{"order_id":"ORD-2","order_id":"ORD-3","type":"note_added","data":{"text":"t"}}"#.to_owned()),
            400,
            "invalid_input",
        ),
        (
            "a key twice in data",
            "/v1/events",
            Some(r#"{"order_id":"ORD-1","type":"note_added","data":{"text":"a","text":"b"}}"#.to_owned()),
            400,
            "invalid_input",
        ),
        (
            "empty batch",
            "/v1/events",
            Some("[]".to_owned()),
            400,
            "invalid_input",
        ),
        (
            "schema",
            "/v1/events",
            Some(json!({"order_id": "X", "type": "order_placed", "data": {}}).to_string()),
            400,
            "invalid_input",
        ),
        (
            "unknown type",
            "/v1/events",
            Some(json!({"order_id": "X", "type": "teleported", "data": {}}).to_string()),
            400,
            "invalid_input",
        ),
        (
            "rule",
            "/v1/events",
            Some(captured("ORD-1", 5000, "P").to_string()),
            422,
            "rejected",
        ),
        (
            "rule in a batch",
            "/v1/events",
            Some(json!([placed("ORD-5"), captured("ORD-5", 99999, "P")]).to_string()),
            422,
            "rejected",
        ),
        (
            "version conflict",
            "/v1/events",
            Some({
                let mut e = captured("ORD-1", 5, "P");
                e["expected_version"] = json!(3);
                e.to_string()
            }),
            409,
            "conflict",
        ),
        (
            "id reused",
            "/v1/events",
            Some({
                let mut e = placed("ORD-8");
                e["event_id"] = reused["event_id"].clone();
                e.to_string()
            }),
            409,
            "conflict",
        ),
        ("unknown order", "/v1/orders/NOPE", None, 404, "not_found"),
        ("bad order id", "/v1/orders/%20", None, 400, "invalid_input"),
        ("unknown route", "/v1/nothing", None, 404, "not_found"),
        (
            "misspelt filter",
            "/v1/orders/ORD-1?asof=2026-01-01",
            None,
            400,
            "invalid_input",
        ),
        (
            "repeated filter",
            "/v1/query/statuses?at_position=1&at_position=2",
            None,
            400,
            "invalid_input",
        ),
        (
            "bad time",
            "/v1/query/orders?as_of=yesterday",
            None,
            400,
            "invalid_input",
        ),
        (
            "bad status",
            "/v1/query/orders?status=lost",
            None,
            400,
            "invalid_input",
        ),
        (
            "bad number",
            "/v1/events?from=-1",
            None,
            400,
            "invalid_input",
        ),
        (
            "page too big",
            "/v1/events?limit=10001",
            None,
            400,
            "invalid_input",
        ),
        (
            "replay without a point",
            "/v1/replay",
            None,
            400,
            "invalid_input",
        ),
        (
            "audit without actor",
            "/v1/audit",
            None,
            400,
            "invalid_input",
        ),
        (
            "bad types",
            "/v1/subscribe?types=teleported",
            None,
            400,
            "invalid_input",
        ),
    ];
    for (what, path, body, status, kind) in cases {
        let url = format!("{}{path}", s.url);
        let (got, answer) = match &body {
            Some(body) => call("POST", &url, Some(body), None),
            None => call("GET", &url, None, None),
        };
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(answer["error"]["kind"], kind, "{what}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{what}: no message");
    }
    // Over the limits: 413.
    let too_many: Vec<Value> = (0..10_001).map(|i| placed(&format!("B-{i}"))).collect();
    let (status, answer) = post(&s, "/v1/events", &Value::Array(too_many));
    assert_eq!(status, 413, "{answer}");
    let huge = format!("[\"{}\"]", "x".repeat(ordo::server::BODY_BYTES_MAX));
    let (status, answer) = call("POST", &format!("{}/v1/events", s.url), Some(&huge), None);
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"]["kind"], "invalid_input");
    // Nothing was written by any of them.
    assert_eq!(get(&s, "/v1/stats").1, before);
}

#[test]
fn a_token_is_required_on_every_request_and_non_loopback_needs_one() {
    let s = TestServer::start(Some("s3cret"));
    let url = |p: &str| format!("{}{p}", s.url);
    for path in ["/healthz", "/metrics", "/v1/stats", "/v1/nothing"] {
        let (status, answer) = call("GET", &url(path), None, None);
        assert_eq!(status, 401, "{path}: {answer}");
        assert_eq!(answer["error"]["kind"], "unauthorized");
        assert_eq!(call("GET", &url(path), None, Some("wrong")).0, 401);
    }
    let body = placed("ORD-1").to_string();
    assert_eq!(call("POST", &url("/v1/events"), Some(&body), None).0, 401);
    assert_eq!(
        call("POST", &url("/v1/events"), Some(&body), Some("s3cret")).0,
        201
    );
    assert_eq!(
        call("GET", &url("/v1/stats"), None, Some("s3cret")).1["events"],
        1
    );
    drop(s);

    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = Ledger::open(dir.path(), Access::ReadWrite).expect("open");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let refused = runtime.block_on(Server::bind(
        ledger,
        ServeOptions::new("0.0.0.0:0".parse().expect("addr"), None),
    ));
    let error = refused.expect_err("no token on a public address");
    assert!(error.to_string().contains("--token-file"), "{error}");
}

#[test]
fn two_hundred_concurrent_appenders_lose_nothing_and_share_commits() {
    let s = TestServer::start(None);
    const CLIENTS: usize = 200;
    const EACH: usize = 3;
    let url = format!("{}/v1/events", s.url);
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut positions = Vec::new();
                for i in 0..EACH {
                    let order = format!("C{c}-{i}");
                    let (status, answer) =
                        call("POST", &url, Some(&placed(&order).to_string()), None);
                    assert_eq!(status, 201, "{answer}");
                    positions.push(answer["position"].as_u64().expect("position"));
                }
                positions
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for t in threads {
        for p in t.join().expect("client") {
            assert!(all.insert(p), "position {p} acknowledged twice");
        }
    }
    let n = (CLIENTS * EACH) as u64;
    assert_eq!(all, (1..=n).collect::<BTreeSet<u64>>(), "gapless positions");
    let (_, metrics) = get(&s, "/metrics");
    let metrics = metrics.as_str().expect("text").to_owned();
    let commits: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ordo_commits_total "))
        .and_then(|v| v.parse().ok())
        .expect("commits metric");
    // Group commit: concurrent requests shared fsyncs.
    assert!(commits < n, "{commits} commits for {n} events");
    let dir = s.stop();
    let ledger = Ledger::open(dir.path(), Access::ReadOnly).expect("open");
    assert_eq!(ledger.head().expect("head").position, Position(n));
    assert!(ledger.verify(&NoProgress).expect("verify").ok);
}

/// A server-sent event as the test reads it.
#[derive(Debug)]
struct Sse {
    id: Option<u64>,
    event: String,
    data: Value,
}

/// Reads `count` events of a subscription (with `Last-Event-ID` if given), then hangs up.
fn subscribe(url: &str, last_event_id: Option<u64>, count: usize) -> Vec<Sse> {
    let mut request = agent().get(url);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = request.call().expect("subscribe");
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let mut lines = BufReader::new(response.into_body().into_reader()).lines();
    let mut events = Vec::new();
    let (mut id, mut event, mut data) = (None, String::new(), String::new());
    while events.len() < count {
        let line = lines.next().expect("stream open").expect("line");
        if line.is_empty() {
            if !data.is_empty() {
                events.push(Sse {
                    id,
                    event: std::mem::take(&mut event),
                    data: serde_json::from_str(&data).unwrap_or(Value::String(data.clone())),
                });
            }
            (id, data) = (None, String::new());
        } else if let Some(v) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("event: ").or(line.strip_prefix("event:")) {
            event = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("data: ").or(line.strip_prefix("data:")) {
            data.push_str(v);
        }
    }
    events
}

#[test]
fn a_subscriber_gets_every_event_once_in_order_live_and_across_a_reconnect() {
    let s = TestServer::start(None);
    for i in 0..5 {
        post(&s, "/v1/events", &placed(&format!("ORD-{i}")));
    }
    // Appends keep arriving while the subscriber reads, disconnects and comes back.
    let writer_url = format!("{}/v1/events", s.url);
    let writer = std::thread::spawn(move || {
        for i in 5..60 {
            let body = placed(&format!("ORD-{i}")).to_string();
            assert_eq!(call("POST", &writer_url, Some(&body), None).0, 201);
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let url = format!("{}/v1/subscribe?from=1", s.url);
    let first = subscribe(&url, None, 20);
    let last = first.last().and_then(|e| e.id).expect("an id");
    // Last-Event-ID wins over `from`: the stream resumes right after it.
    let rest = subscribe(&url, Some(last), 60 - 20);
    writer.join().expect("writer");
    let ids: Vec<u64> = first.iter().chain(&rest).filter_map(|e| e.id).collect();
    assert_eq!(ids, (1..=60).collect::<Vec<u64>>(), "no gap, no duplicate");
    for e in first.iter().chain(&rest) {
        assert_eq!(e.event, "order_placed");
        assert_eq!(Some(e.data["position"].as_u64().unwrap_or(0)), e.id);
        assert_eq!(e.data["hash"].as_str().map(str::len), Some(64));
    }

    // A type filter; without `from`, only what is committed from now on.
    let typed_url = format!("{}/v1/subscribe?from=1&types=payment_captured", s.url);
    let live_url = format!("{}/v1/subscribe", s.url);
    let typed = std::thread::spawn(move || subscribe(&typed_url, None, 2));
    let live = std::thread::spawn(move || subscribe(&live_url, None, 1));
    std::thread::sleep(Duration::from_millis(300));
    post(&s, "/v1/events", &captured("ORD-1", 100, "P-1"));
    post(&s, "/v1/events", &captured("ORD-2", 100, "P-2"));
    let typed = typed.join().expect("typed");
    assert_eq!(
        typed.iter().filter_map(|e| e.id).collect::<Vec<_>>(),
        [61, 62]
    );
    assert!(typed.iter().all(|e| e.event == "payment_captured"));
    assert_eq!(live.join().expect("live")[0].id, Some(61));
}

fn metric(s: &TestServer, name: &str) -> Option<f64> {
    let (_, text) = get(s, "/metrics");
    text.as_str()?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_subscriber_that_stops_reading_holds_up_nobody_and_is_told_why_it_was_dropped() {
    let mut options = ServeOptions::new("127.0.0.1:0".parse().expect("addr"), None);
    options.subscriber_stall = Duration::from_millis(500);
    let s = TestServer::start_with(options);
    // Connected, never read (yet): the socket's buffers and then its queue fill up.
    let stalled = agent()
        .get(format!("{}/v1/subscribe?from=1", s.url))
        .call()
        .expect("subscribe");
    // A healthy subscriber alongside it.
    let healthy_url = format!("{}/v1/subscribe?from=1", s.url);
    let healthy = std::thread::spawn(move || subscribe(&healthy_url, None, 30_000));
    // Enough events (about 16 MB of envelopes) to fill loopback buffers and the queue.
    for chunk in 0..6 {
        let batch: Vec<Value> = (0..5_000)
            .map(|i| {
                let mut e = placed(&format!("ORD-{chunk}-{i}"));
                e["data"]["shipping_address"] = json!("x".repeat(600));
                e
            })
            .collect();
        let (status, answer) = post(&s, "/v1/events", &Value::Array(batch));
        assert_eq!(status, 201, "{answer}");
    }
    // Appends were not held up, and the healthy subscriber got everything.
    assert_eq!(head(&s), 30_000);
    let got = healthy.join().expect("healthy subscriber");
    assert_eq!(got.last().and_then(|e| e.id), Some(30_000));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric(&s, "ordo_subscribers_dropped_total") != Some(1.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled subscriber was not dropped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Reading now, the stalled client finds the events up to where it fell behind, then
    // the reason, then the end of the stream.
    let mut last_id = 0;
    let mut reason = None;
    let mut event = String::new();
    for line in BufReader::new(stalled.into_body().into_reader()).lines() {
        let line = line.expect("line");
        if let Some(id) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
            let id: u64 = id.trim().parse().expect("numeric id");
            assert_eq!(id, last_id + 1, "no gap before the disconnection");
            last_id = id;
        } else if let Some(name) = line.strip_prefix("event: ").or(line.strip_prefix("event:")) {
            event = name.trim().to_owned();
        } else if let Some(data) = line.strip_prefix("data: ").or(line.strip_prefix("data:"))
            && event == "error"
        {
            reason = Some(data.to_owned());
        }
    }
    let reason = reason.expect("an error event before the end");
    assert!(reason.contains("Last-Event-ID"), "{reason}");
    assert!(last_id > 0 && last_id < 30_000, "fell behind at {last_id}");
    assert!(
        reason.contains(&format!("position {}", last_id + 1)),
        "{reason}"
    );
    // Both subscriptions are gone: nothing is left holding resources.
    while metric(&s, "ordo_subscribers") != Some(0.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "subscriptions still counted"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_import_through_the_server_validates_everything_first() {
    let s = TestServer::start(None);
    let lines = |events: &[Value]| {
        events
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let url = format!("{}/v1/import?batch_events=2", s.url);
    let bad = lines(&[placed("A"), placed("B"), captured("B", 999_999, "P")]);
    let (status, answer) = call("POST", &url, Some(&bad), None);
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("line 3")
    );
    assert_eq!(head(&s), 0, "a bad line writes nothing");
    let good = lines(&[placed("A"), placed("B"), captured("B", 1000, "P")]);
    let (status, answer) = call("POST", &url, Some(&good), None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["appended"], 3);
    assert_eq!(answer["last_position"], 3);
    let (status, _) = call(
        "POST",
        &format!("{}/v1/import?preserve=maybe", s.url),
        Some(&good),
        None,
    );
    assert_eq!(status, 400);
}

#[test]
fn the_server_announces_itself_in_the_ledger_directory_while_it_runs() {
    let s = TestServer::start(None);
    let file = s.dir.path().join(ordo::store::SERVER_FILE);
    let announced = std::fs::read_to_string(&file).expect("announced");
    assert_eq!(announced, s.url);
    let path = s.dir.path().to_owned();
    let refused = Ledger::open(&path, Access::ReadWrite).expect_err("held by the server");
    assert!(
        refused.to_string().contains(&format!("--server {}", s.url)),
        "{refused}"
    );
    let dir = s.stop();
    assert!(!Path::new(&dir.path().join(ordo::store::SERVER_FILE)).exists());
}
