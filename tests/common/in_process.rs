//! A server running inside the test process (`ordo::server`), and a plain HTTP client.

use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use ordo::ledger::Ledger;
use ordo::server::{ServeOptions, Server};
use ordo::store::Access;

/// A server running in this process on its own runtime thread.
pub struct TestServer {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<ordo::Result<()>>>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start(token: Option<&str>) -> TestServer {
        let options = ServeOptions::new(
            "127.0.0.1:0".parse().expect("addr"),
            token.map(str::to_owned),
        );
        TestServer::start_with(options)
    }

    pub fn start_with(options: ServeOptions) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(dir.path(), Access::ReadWrite).expect("open");
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async move {
                let server = Server::bind(ledger, options).await?;
                url_tx.send(server.url().to_owned()).expect("test waits");
                server
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await
            })
        });
        let url = url_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server started");
        TestServer {
            url,
            stop: Some(stop),
            thread: Some(thread),
            dir,
        }
    }

    /// Stops the server (gracefully) and returns its ledger directory for inspection.
    pub fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread").expect("server ran");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// One request: (status, JSON body).
pub fn call(method: &str, url: &str, body: Option<&str>, token: Option<&str>) -> (u16, Value) {
    let agent = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let response = match (method, body) {
        ("GET", _) => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        ("POST", Some(body)) => {
            let mut r = agent.post(url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            // What the server asks of each endpoint (docs/http.md).
            let media = if url.contains("/v1/import") {
                "application/x-ndjson"
            } else {
                "application/json"
            };
            r.content_type(media).send(body)
        }
        other => panic!("unsupported request {other:?}"),
    };
    let mut response = response.expect("the server answers");
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_string()
        .expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

pub fn get(s: &TestServer, path: &str) -> (u16, Value) {
    call("GET", &format!("{}{path}", s.url), None, None)
}

pub fn post(s: &TestServer, path: &str, body: &Value) -> (u16, Value) {
    call(
        "POST",
        &format!("{}{path}", s.url),
        Some(&body.to_string()),
        None,
    )
}
