//! The HTTP load generator (issue 25, item 2): `clients` keep-alive HTTP/1.1 connections,
//! each posting one JSON body at a time and waiting for its answer (closed loop), all
//! driven by one thread's event loop, as wrk drives its connections. And the floor under
//! any HTTP server on this machine: `FloorServer` answers each request with a fixed 201 of
//! the size of ordo's and does nothing else, so that what loopback TCP and the kernel cost
//! per request is measured, not assumed. With a file, it is the floor under any durable
//! HTTP server: each request's body is appended to the file by one syncing thread, and
//! answered once an fdatasync covers it (group commit, as ordo's syncer), nothing else.
//!
//! The clients share the machine's two cores with the server they measure, and what they
//! spend is counted against it. A blocking client per thread (ureq) spent as much CPU per
//! request as the server (45 µs against 52 at 128 clients): two writes per request
//! (headers, then body), two probing reads, and a wake-up of a sleeping thread for every
//! answer, which the server's `writev` pays for on loopback. Real clients run elsewhere; a
//! lean load generator leaves the server's figures its own.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::LocalSet;

/// The longest message read (a request or an answer): both are a few hundred bytes.
const MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// Longest a request may wait for its answer before the benchmark fails.
const ANSWER_WAIT_MAX: Duration = Duration::from_secs(30);

/// Runs `clients` connections to `url` (`http://HOST:PORT`), each POSTing `body(client,
/// n)` as JSON to `path` until `deadline`, one request at a time; fails on any answer but
/// 201 Created. The latency of each request.
pub fn post_load(
    url: &str,
    path: &'static str,
    clients: usize,
    deadline: Instant,
    body: impl Fn(usize, u64) -> Result<String> + 'static,
) -> Result<Vec<Duration>> {
    let host: Rc<str> = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// URL: {url}"))?
        .trim_end_matches('/')
        .into();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = Rc::new(body);
    LocalSet::new().block_on(&runtime, async {
        let mut connections = Vec::with_capacity(clients);
        for _ in 0..clients {
            let stream = TcpStream::connect(&*host).await?;
            stream.set_nodelay(true)?;
            connections.push(Connection::new(stream, host.clone()));
        }
        let runs: Vec<_> = connections
            .into_iter()
            .enumerate()
            .map(|(client, mut connection)| {
                let body = body.clone();
                tokio::task::spawn_local(async move {
                    let mut latencies = super::latency_buffer();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let body = body(client, n)?;
                        let at = Instant::now();
                        let (status, answer) =
                            tokio::time::timeout(ANSWER_WAIT_MAX, connection.post(path, &body))
                                .await
                                .context("no answer within 30 s")??;
                        if status != 201 {
                            bail!("HTTP {status}: {answer}");
                        }
                        latencies.push(at.elapsed());
                        n += 1;
                    }
                    Ok(latencies)
                })
            })
            .collect();
        let mut all = Vec::new();
        for run in runs {
            all.extend(run.await??);
        }
        Ok(all)
    })
}

/// GETs `path` from `url` (`http://HOST:PORT`) on a connection of its own: the body of a
/// 200 answer.
pub fn get(url: &str, path: &str) -> Result<String> {
    use std::io::{Read, Write};
    let host = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// URL: {url}"))?
        .trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(ANSWER_WAIT_MAX))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream
        .take(GET_BYTES_MAX as u64 + 1)
        .read_to_end(&mut answer)?;
    if answer.len() > GET_BYTES_MAX {
        bail!("GET {path}: an answer longer than {GET_BYTES_MAX} bytes");
    }
    let (head_bytes, status, body_bytes) =
        parse_head(&answer)?.with_context(|| format!("GET {path}: no whole answer"))?;
    let body = answer
        .get(head_bytes..head_bytes + body_bytes)
        .with_context(|| format!("GET {path}: the answer's body was cut short"))?;
    let body = String::from_utf8(body.to_vec())?;
    if status != 200 {
        bail!("GET {path}: HTTP {status}: {body}");
    }
    Ok(body)
}

/// The longest answer `get` reads (`/metrics` is a few KB).
const GET_BYTES_MAX: usize = 1 << 20;

/// The body of `FloorServer`'s answer: an appended event's answer from `ordo serve`.
const FLOOR_ANSWER_BODY: &str = concat!(
    r#"{"position":400001,"order_id":"BENCH-128-0-0","version":1,"#,
    r#""event_id":"019ae4c4-8f2b-7cc3-9d3e-2f1a4b5c6d7e","#,
    r#""recorded_at":"2026-12-03T12:00:00.000000Z","duplicate":false}"#,
);

/// An HTTP server that answers every request with a fixed 201 and does no work, on a
/// runtime of one worker per core, as `ordo serve`'s; with a `log`, only once the request's
/// body is durable in that file.
pub struct FloorServer {
    pub url: String,
    /// The syncing thread of a durable floor: its fdatasync calls.
    syncer: Option<std::thread::JoinHandle<Result<u64>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// A request's body for the syncing thread, and where to say that it is durable.
type ToSync = (Vec<u8>, tokio::sync::oneshot::Sender<()>);

impl FloorServer {
    pub fn start(log: Option<&std::path::Path>) -> Result<FloorServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("http://{}", listener.local_addr()?);
        // The head as hyper writes ordo's (114 bytes with this body).
        let answer: Arc<[u8]> = format!(
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\ndate: Thu, 03 Dec 2026 12:00:00 GMT\r\n\r\n{FLOOR_ANSWER_BODY}",
            FLOOR_ANSWER_BODY.len()
        )
        .into_bytes()
        .into();
        let (to_sync, syncer) = match log {
            Some(path) => {
                let file = std::fs::File::create(path)?;
                let (to_sync, inbox) = std::sync::mpsc::channel::<ToSync>();
                let syncer = std::thread::Builder::new()
                    .name("floor-syncer".to_owned())
                    .spawn(move || sync_all(&file, &inbox))?;
                (Some(to_sync), Some(syncer))
            }
            None => (None, None),
        };
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer_all(stream, answer.clone(), to_sync.clone()));
            }
        });
        Ok(FloorServer {
            url,
            syncer,
            runtime: Some(runtime),
        })
    }

    /// Stops the server: the fdatasync calls its syncing thread made (0 without a log).
    pub fn stop(mut self) -> Result<u64> {
        // Dropping the runtime drops every connection's sender; the syncer then returns.
        drop(self.runtime.take());
        match self.syncer.take() {
            Some(syncer) => syncer
                .join()
                .map_err(|_| anyhow::anyhow!("the floor's syncer panicked"))?,
            None => Ok(0),
        }
    }
}

/// The durable floor's syncing thread: takes every body waiting, appends them to `file`,
/// fdatasyncs it once and only then says they are durable; returns its syncs once every
/// sender is gone. A failed write ends it, and the connections waiting fail.
fn sync_all(file: &std::fs::File, inbox: &std::sync::mpsc::Receiver<ToSync>) -> Result<u64> {
    use std::os::unix::fs::FileExt;
    let (mut syncs, mut offset) = (0u64, 0u64);
    let mut bytes = Vec::new();
    while let Ok(first) = inbox.recv() {
        let mut waiting = vec![first];
        waiting.extend(inbox.try_iter().take(SYNC_REQUESTS_MAX));
        bytes.clear();
        for (body, _) in &waiting {
            bytes.extend_from_slice(body);
        }
        file.write_all_at(&bytes, offset)?;
        file.sync_data()?;
        offset += bytes.len() as u64;
        syncs += 1;
        for (_, durable) in waiting {
            let _ = durable.send(());
        }
    }
    Ok(syncs)
}

/// Most requests one sync of the durable floor covers (ordo's syncer takes at most 64
/// groups of up to 10,000 events).
const SYNC_REQUESTS_MAX: usize = 4096;

/// Reads each request on `stream` whole and answers it with `answer` (once its body is
/// durable, with `to_sync`), until the client closes it.
async fn answer_all(
    mut stream: TcpStream,
    answer: Arc<[u8]>,
    to_sync: Option<std::sync::mpsc::Sender<ToSync>>,
) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut request = Vec::with_capacity(4096);
    while let Some((head_bytes, _, body_bytes)) = read_message(&mut stream, &mut request).await? {
        if let Some(to_sync) = &to_sync {
            let body = request[head_bytes..head_bytes + body_bytes].to_vec();
            let (durable, synced) = tokio::sync::oneshot::channel();
            to_sync
                .send((body, durable))
                .map_err(|_| anyhow::anyhow!("the floor's syncer stopped"))?;
            synced
                .await
                .map_err(|_| anyhow::anyhow!("the floor's sync failed"))?;
        }
        request.drain(..head_bytes + body_bytes);
        stream.write_all(&answer).await?;
    }
    Ok(())
}

/// One keep-alive connection.
struct Connection {
    stream: TcpStream,
    host: Rc<str>,
    request: Vec<u8>,
    answer: Vec<u8>,
}

impl Connection {
    fn new(stream: TcpStream, host: Rc<str>) -> Connection {
        Connection {
            stream,
            host,
            request: Vec::with_capacity(1024),
            answer: Vec::with_capacity(4096),
        }
    }

    /// POSTs `body` as JSON to `path` in one write: the status and the answer's body.
    async fn post(&mut self, path: &str, body: &str) -> Result<(u16, &str)> {
        use std::io::Write;
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        )?;
        self.stream.write_all(&self.request).await?;
        self.answer.clear();
        let (head_bytes, status, body_bytes) = read_message(&mut self.stream, &mut self.answer)
            .await?
            .context("the server closed the connection")?;
        if self.answer.len() > head_bytes + body_bytes {
            bail!("the server answered more than one response to one request");
        }
        let body = std::str::from_utf8(&self.answer[head_bytes..])?;
        Ok((status, body))
    }
}

/// Reads from `stream` into `buffer` until it holds a whole HTTP message (its head and a
/// `content-length` body): the head's length, the status (0 in a request) and the body's
/// length; `None` when the peer closed the connection first.
async fn read_message(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> Result<Option<(usize, u16, usize)>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((head_bytes, status, body_bytes)) = parse_head(buffer)?
            && buffer.len() >= head_bytes + body_bytes
        {
            return Ok(Some((head_bytes, status, body_bytes)));
        }
        if buffer.len() > MESSAGE_BYTES_MAX {
            bail!("an HTTP message longer than {MESSAGE_BYTES_MAX} bytes");
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// The head's length, the status (0 in a request) and the body's length
/// (`content-length`), once the head has arrived whole.
fn parse_head(message: &[u8]) -> Result<Option<(usize, u16, usize)>> {
    let Some(end) = message.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&message[..end])?;
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let status = if first.starts_with("HTTP/") {
        first
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("no status in {head:?}"))?
    } else {
        0
    };
    let length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .with_context(|| format!("no content-length in {head:?}"))?;
    Ok(Some((end + 4, status, length)))
}
