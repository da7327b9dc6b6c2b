//! `ordo serve` holds up against hostile clients (issue 21, items 3 to 5): idle and slow
//! connections cannot hold it down, a web page cannot write to it or read it through a
//! rebound domain name, and numbers and documents from a client cannot overflow or mean two
//! things. Each test talks raw HTTP over TCP to a real server on 127.0.0.1 with small limits,
//! and checks the status, the message and that nothing was written.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::in_process::{TestServer, get};
use ordo::server::{Limits, Origins, ServeOptions};

const LIMIT_CONNECTIONS: usize = 8;

fn small_limits() -> Limits {
    Limits {
        connections_max: LIMIT_CONNECTIONS,
        header_read: Duration::from_millis(800),
        body_read: Duration::from_millis(800),
        shutdown_grace: Duration::from_secs(5),
    }
}

fn start(limits: Limits, origins: Origins, token: Option<&str>) -> TestServer {
    let mut options = ServeOptions::new(
        "127.0.0.1:0".parse().expect("addr"),
        token.map(str::to_owned),
    );
    options.limits = limits;
    options.origins = origins;
    TestServer::start_with(options)
}

fn addr(server: &TestServer) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

fn connect(server: &TestServer) -> TcpStream {
    let stream = TcpStream::connect(addr(server)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
}

/// Sends `request` on a new connection and reads until the server closes it (or 10 s).
fn exchange(server: &TestServer, request: &str) -> String {
    let mut stream = connect(server);
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A POST of `body` with these extra header lines; returns (status, body).
fn post_raw(server: &TestServer, path: &str, headers: &[&str], body: &str) -> (u16, Value) {
    let mut request = format!("POST {path} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    parse(&exchange(server, &request))
}

fn get_raw(server: &TestServer, path: &str, headers: &[&str]) -> (u16, Value) {
    let mut request = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    parse(&exchange(server, &request))
}

/// (status, JSON body) of a raw HTTP/1.1 answer; status 0 when there was none.
fn parse(answer: &str) -> (u16, Value) {
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

fn head(server: &TestServer) -> u64 {
    get(server, "/healthz").1["head_position"]
        .as_u64()
        .expect("head")
}

fn placed(order: &str) -> String {
    json!({"order_id": order, "type": "order_placed",
           "data": {"customer_id": "C-1", "currency": "EUR",
                    "lines": [{"sku": "A", "quantity": 1, "unit_price": 500}]}})
    .to_string()
}

fn host(server: &TestServer) -> String {
    format!("Host: {}", addr(server))
}

/// Whether the server closed `stream` (EOF) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).expect("read timeout");
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0))
}

#[test]
fn more_idle_connections_than_the_limit_get_a_clear_503_and_healthz_is_answered_soon() {
    let server = start(small_limits(), Origins::default(), None);
    let mut idle: Vec<TcpStream> = (0..LIMIT_CONNECTIONS * 3)
        .map(|_| connect(&server))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // Over the limit: answered at once, not left in the accept queue.
    let started = Instant::now();
    let (status, body) = get_raw(&server, "/healthz", &[&host(&server)]);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["kind"], "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains(&LIMIT_CONNECTIONS.to_string()),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // The idle connections are closed by the header-read timeout; then /healthz is served
    // while the clients still hold their sockets.
    let deadline = Instant::now() + Duration::from_secs(10);
    let served = loop {
        let (status, body) = get_raw(&server, "/healthz", &[&host(&server)]);
        if status == 200 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "healthz never answered: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(served["status"], "ok", "{served}");
    for stream in &mut idle[..LIMIT_CONNECTIONS] {
        assert!(closed_within(stream, Duration::from_secs(5)));
    }
}

#[test]
fn a_connection_that_sends_its_head_slowly_or_idles_after_a_response_is_closed() {
    let server = start(small_limits(), Origins::default(), None);
    let mut slow = connect(&server);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("write");
    let started = Instant::now();
    assert!(closed_within(&mut slow, Duration::from_secs(5)));
    assert!(started.elapsed() >= Duration::from_millis(500));

    let mut kept = connect(&server);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("write");
    let mut answer = [0u8; 4096];
    let n = kept.read(&mut answer).expect("an answer");
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut kept, Duration::from_secs(5)));
}

#[test]
fn a_body_that_stops_arriving_fails_with_408_and_writes_nothing() {
    let server = start(small_limits(), Origins::default(), None);
    let before = head(&server);
    let mut stream = connect(&server);
    let request = format!(
        "POST /v1/events HTTP/1.1\r\n{}\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{{",
        host(&server)
    );
    stream.write_all(request.as_bytes()).expect("write");
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let (status, body) = parse(&String::from_utf8_lossy(&answer));
    assert_eq!(status, 408, "{body}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(head(&server), before);
}

#[test]
fn a_post_without_its_json_media_type_is_415_and_writes_nothing() {
    let server = start(small_limits(), Origins::default(), None);
    let h = host(&server);
    for content_type in [
        None,
        Some("Content-Type: text/plain"),
        Some("Content-Type: application/x-www-form-urlencoded"),
        Some("Content-Type: multipart/form-data; boundary=x"),
    ] {
        let headers: Vec<&str> = [Some(h.as_str()), content_type]
            .into_iter()
            .flatten()
            .collect();
        let (status, body) = post_raw(&server, "/v1/events", &headers, &placed("W-1"));
        assert_eq!(status, 415, "{content_type:?}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .expect("message")
                .contains("application/json")
        );
    }
    let (status, body) = post_raw(
        &server,
        "/v1/import",
        &[&h, "Content-Type: application/json"],
        &placed("W-1"),
    );
    assert_eq!(status, 415, "{body}");
    assert_eq!(head(&server), 0);
    let (status, body) = post_raw(
        &server,
        "/v1/events",
        &[&h, "Content-Type: application/json; charset=utf-8"],
        &placed("W-1"),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_raw(
        &server,
        "/v1/import",
        &[&h, "Content-Type: application/x-ndjson"],
        &placed("W-2"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(head(&server), 2);
}

#[test]
fn a_foreign_host_or_origin_is_refused_and_an_allowed_one_is_served() {
    let origins = Origins {
        hosts: vec!["ledger.internal".to_owned()],
        origins: vec!["https://console.internal".to_owned()],
    };
    let server = start(small_limits(), origins, None);
    let json = "Content-Type: application/json";
    // The issue's request: a page on evil.example.com, rebound to 127.0.0.1.
    let (status, body) = post_raw(
        &server,
        "/v1/events",
        &[
            "Host: evil.example.com",
            "Origin: http://evil.example.com",
            "Content-Type: text/plain",
        ],
        &placed("E-1"),
    );
    assert_eq!(status, 421, "{body}");
    let (status, body) = get_raw(&server, "/v1/stats", &["Host: evil.example.com:7411"]);
    assert_eq!(status, 421, "{body}");
    let (status, body) = post_raw(
        &server,
        "/v1/events",
        &[&host(&server), "Origin: http://evil.example.com", json],
        &placed("E-2"),
    );
    assert_eq!(status, 403, "{body}");
    let (status, _) = get_raw(&server, "/v1/stats", &[&host(&server), "Origin: null"]);
    assert_eq!(status, 403);
    let (status, _) = get_raw(&server, "/v1/stats", &["Host: 10.1.2.3"]);
    assert_eq!(status, 421, "an address the server is not bound to");
    assert_eq!(head(&server), 0);

    for headers in [
        vec!["Host: localhost".to_owned(), json.to_owned()],
        vec!["Host: LEDGER.internal:7411".to_owned(), json.to_owned()],
        vec![
            host(&server),
            format!("Origin: {}", server.url),
            json.to_owned(),
        ],
        vec![
            host(&server),
            "Origin: https://console.internal".to_owned(),
            json.to_owned(),
        ],
    ] {
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let order = format!("OK-{}", head(&server) + 1);
        let (status, body) = post_raw(&server, "/v1/events", &headers, &placed(&order));
        assert_eq!(status, 201, "{headers:?}: {body}");
    }
    assert_eq!(head(&server), 4);
}

#[test]
fn a_last_event_id_or_position_at_the_top_of_u64_is_refused_not_wrapped() {
    let server = start(small_limits(), Origins::default(), None);
    let h = host(&server);
    let (status, body) = get_raw(
        &server,
        "/v1/subscribe",
        &[&h, "Last-Event-ID: 18446744073709551615"],
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("past any position")
    );
    for path in [
        "/v1/subscribe?from=18446744073709551616",
        "/v1/events?from=99999999999999999999999",
        "/v1/events?limit=18446744073709551615",
        "/v1/query/statuses?at_position=-1",
    ] {
        let (status, body) = get_raw(&server, path, &[&h]);
        assert_eq!(status, 400, "{path}: {body}");
    }
    let (status, body) = get_raw(&server, "/v1/events?from=18446744073709551615", &[&h]);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_document_naming_a_key_twice_is_refused_with_400() {
    let server = start(small_limits(), Origins::default(), None);
    let h = host(&server);
    let json = "Content-Type: application/json";
    let data = r#"{"customer_id":"C-1","currency":"EUR","lines":[{"sku":"A","quantity":1,"unit_price":5}]}"#;
    for body in [
        format!(r#"{{"order_id":"N3","order_id":"N4","type":"order_placed","data":{data}}}"#),
        r#"{"order_id":"N3","type":"payment_captured","data":{"payment_id":"P","amount":1,"amount":2}}"#.to_owned(),
        format!(r#"[{{"order_id":"N3","type":"order_placed","data":{data},"type":"order_placed"}}]"#),
    ] {
        let (status, answer) = post_raw(&server, "/v1/events", &[&h, json], &body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().expect("message").contains("duplicate"), "{answer}");
    }
    assert_eq!(head(&server), 0);
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let token = "a-token-of-24-characters";
    let server = start(small_limits(), Origins::default(), Some(token));
    let h = host(&server);
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let auth = format!("Authorization: {scheme} {token}");
        let (status, body) = get_raw(&server, "/v1/stats", &[&h, &auth]);
        assert_eq!(status, 200, "{scheme}: {body}");
    }
    for wrong in [
        format!("Authorization: Bearer{token}"),
        format!("Authorization: Basic {token}"),
    ] {
        let (status, _) = get_raw(&server, "/v1/stats", &[&h, &wrong]);
        assert_eq!(status, 401, "{wrong}");
    }
}
