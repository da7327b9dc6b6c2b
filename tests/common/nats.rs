//! A real `nats-server` on loopback for the relay and replica tests (scripts/nats-server
//! installs it; `ORDO_NATS_SERVER` names it), and the stream read back with async-nats.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A `nats-server` with JetStream on a free loopback port, killed when dropped.
pub struct Nats {
    child: Child,
    pub url: String,
    _store: tempfile::TempDir,
}

pub fn nats_server_binary() -> PathBuf {
    std::env::var_os("ORDO_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

impl Nats {
    pub fn start() -> Nats {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let store = tempfile::tempdir().expect("tmp");
        let child = Command::new(nats_server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs (scripts/test installs it; or set ORDO_NATS_SERVER)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _store: store,
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One stored message: subject, headers we check, payload.
pub struct Message {
    pub subject: String,
    pub msg_id: String,
    pub hash: String,
    pub position: String,
    pub payload: Value,
}

/// The stream's last sequence and every message in it, read with async-nats.
pub fn stream_contents(url: &str, stream: &str) -> (u64, Vec<Message>) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connects");
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(stream).await.expect("the stream exists");
        let info = stream.info().await.expect("info").clone();
        let mut messages = Vec::new();
        for seq in 1..=info.state.last_sequence {
            let m = stream.get_raw_message(seq).await.expect("a message");
            let header = |name: &str| {
                m.headers
                    .get(name)
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default()
            };
            messages.push(Message {
                subject: m.subject.to_string(),
                msg_id: header("Nats-Msg-Id"),
                hash: header("Ordo-Hash"),
                position: header("Ordo-Position"),
                payload: serde_json::from_slice(&m.payload).expect("json"),
            });
        }
        assert_eq!(info.state.messages, info.state.last_sequence, "no gaps");
        (info.state.last_sequence, messages)
    })
}

pub fn relay(dir: &Path, url: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ordo"))
        .env_remove("ORDO_SERVER")
        .arg("--data-dir")
        .arg(dir)
        .args(["relay", "--nats", url])
        .args(extra)
        .stderr(Stdio::null())
        .spawn()
        .expect("ordo relay starts")
}

/// The stream's last sequence, if the stream exists.
pub fn last_sequence(url: &str, stream: &str) -> Option<u64> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = async_nats::connect(url).await.ok()?;
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(stream).await.ok()?;
        Some(stream.info().await.ok()?.state.last_sequence)
    })
}

/// Waits until the stream's last sequence is `head`.
pub fn wait_for(url: &str, stream: &str, head: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = last_sequence(url, stream);
        if last == Some(head) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the stream reached {last:?}, not {head}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn terminate(mut child: Child) -> std::process::ExitStatus {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    child.wait().expect("waits")
}

pub fn kill_9(mut child: Child) {
    child.kill().expect("SIGKILL");
    child.wait().expect("waits");
}
