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

/// The temporary directory (`TMPDIR`) of the relays `relay` starts for the ledger in `dir`.
pub fn relay_temp_dir(dir: &Path) -> PathBuf {
    dir.parent()
        .expect("the ledger is in a directory")
        .join("relay-tmp")
}

pub fn relay(dir: &Path, url: &str, extra: &[&str]) -> Child {
    let temp_dir = relay_temp_dir(dir);
    std::fs::create_dir_all(&temp_dir).expect("the relay's temporary directory");
    Command::new(env!("CARGO_BIN_EXE_ordo"))
        .env_remove("ORDO_SERVER")
        .env("TMPDIR", temp_dir)
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

/// A three-node JetStream cluster on loopback; nodes can be killed one by one.
pub struct Cluster {
    nodes: Vec<Option<Child>>,
    ports: Vec<u16>,
    _stores: Vec<tempfile::TempDir>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Cluster {
    pub fn start() -> Cluster {
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        let mut stores = Vec::new();
        for i in 0..3 {
            let store = tempfile::tempdir().expect("tmp");
            let others: Vec<String> = (0..3)
                .filter(|j| *j != i)
                .map(|j| format!("nats://127.0.0.1:{}", routes[j]))
                .collect();
            let child = Command::new(nats_server_binary())
                .args(["-js", "-a", "127.0.0.1", "-p", &ports[i].to_string()])
                .args(["--server_name", &format!("n{i}"), "--cluster_name", "ordo"])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", routes[i])])
                .args(["--routes", &others.join(",")])
                .arg("-sd")
                .arg(store.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nats-server runs");
            nodes.push(Some(child));
            stores.push(store);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in &ports {
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(Instant::now() < deadline, "a cluster node did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Cluster {
            nodes,
            ports,
            _stores: stores,
        }
    }

    /// Every node's URL, comma-separated.
    pub fn urls(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.ports[i])
    }

    /// The node that leads `stream`'s replicas (its servers are named n0, n1, n2).
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let urls = self.urls();
        runtime.block_on(async {
            let client = async_nats::connect(urls.split(',').collect::<Vec<_>>())
                .await
                .ok()?;
            let js = async_nats::jetstream::new(client);
            let mut stream = js.get_stream(stream).await.ok()?;
            let leader = stream.info().await.ok()?.cluster.clone()?.leader?;
            leader.strip_prefix('n')?.parse().ok()
        })
    }

    /// kill -9 of node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("waits");
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// The head position of the ledger in `dir` (0 while it does not exist or cannot be read).
pub fn head_of(dir: &Path) -> u64 {
    let out = super::ordo_at(dir, &["stats", "--format", "json"])
        .output()
        .expect("ordo runs");
    if !out.status.success() {
        return 0;
    }
    serde_json::from_slice::<Value>(&out.stdout).expect("json")["head_position"]
        .as_u64()
        .unwrap_or(0)
}
