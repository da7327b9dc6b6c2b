//! `ordo serve`: the HTTP/JSON API over one ledger (product.md section 8).
//!
//! The server owns the ledger for writing; every append goes through the ledger's one
//! sequencer, so concurrent requests share group commits exactly as threads of one process
//! do. The HTTP layer is thin: it parses requests (`api`), calls the library, and maps its
//! errors to statuses (`reply`). Live subscriptions (`subscribe`) read the log from the store
//! at their own pace and wait on the sequencer's committed position, so a slow subscriber
//! costs nobody else anything. Everything that grows has a limit below.

mod api;
mod metrics;
mod reply;
mod subscribe;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::error::{Error, Result};
use crate::ledger::Ledger;

pub use metrics::Metrics;

/// Where `ordo serve` listens unless told otherwise.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7411";
/// Largest request body (an append batch of up to 10,000 events): 64 MiB.
pub const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest `POST /v1/import` body, spooled to a temporary file before validation: 16 GiB.
pub const IMPORT_BODY_BYTES_MAX: u64 = 16 * 1024 * 1024 * 1024;
/// Open connections at once; further clients wait in the kernel's accept queue.
pub const CONNECTIONS_MAX: usize = 1024;
/// Live subscriptions at once; more are refused with 503.
pub const SUBSCRIBERS_MAX: usize = 256;
/// Events queued for one subscriber before it counts as slow.
pub const SUBSCRIBER_BUFFER_EVENTS: usize = 1024;
/// A subscriber whose buffer stays full this long is disconnected (it can resume): the
/// default of `ServeOptions::subscriber_stall`.
pub const SUBSCRIBER_STALL_SECONDS: u64 = 30;
/// Most events one `GET /v1/events` page returns.
pub const PAGE_EVENTS_MAX: usize = 10_000;
/// Events one `GET /v1/events` page returns without `limit`.
pub const PAGE_EVENTS_DEFAULT: usize = 1_000;
/// Longest accepted token file.
const TOKEN_BYTES_MAX: u64 = 4096;

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The bearer token every request must carry; required on a non-loopback address.
    pub token: Option<String>,
    /// How long a subscriber's buffer may stay full before it is disconnected.
    pub subscriber_stall: std::time::Duration,
}

impl ServeOptions {
    /// Options for `listen` with `token` and the default limits.
    pub fn new(listen: SocketAddr, token: Option<String>) -> ServeOptions {
        ServeOptions {
            listen,
            token,
            subscriber_stall: std::time::Duration::from_secs(SUBSCRIBER_STALL_SECONDS),
        }
    }

    /// Refuses a non-loopback address without a token.
    pub fn check(&self) -> Result<()> {
        if !self.listen.ip().is_loopback() && self.token.is_none() {
            return Err(Error::InvalidInput(format!(
                "listening on {} (not a loopback address) needs a bearer token: pass --token-file FILE",
                self.listen
            )));
        }
        Ok(())
    }
}

/// Reads a token file: its content without surrounding whitespace, not empty.
pub fn read_token(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(TOKEN_BYTES_MAX + 1).read_to_string(&mut text))
        .map_err(|e| Error::io(path, e))?;
    if text.len() as u64 > TOKEN_BYTES_MAX {
        return Err(Error::InvalidInput(format!(
            "token file {} is longer than {TOKEN_BYTES_MAX} bytes",
            path.display()
        )));
    }
    let token = text.trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidInput(format!(
            "token file {} must hold one token without spaces",
            path.display()
        )));
    }
    Ok(token.to_owned())
}

/// What every handler shares.
struct App {
    ledger: Arc<Ledger>,
    metrics: Metrics,
    /// SHA-256 of the token: requests are compared by digest, in constant time.
    token: Option<[u8; 32]>,
    subscribers: Arc<Semaphore>,
    /// Turns true when the server is shutting down; subscriptions end on it.
    shutdown: watch::Receiver<bool>,
    subscriber_stall: std::time::Duration,
}

impl App {
    fn authorized(&self, header: Option<&[u8]>) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(given).into();
        // Constant time: a byte-by-byte early exit would tell an attacker how much matched.
        given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    stop: watch::Sender<bool>,
    url: String,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("url", &self.url).finish()
    }
}

impl Server {
    /// Binds `options.listen` for `ledger` (opened for writing). Refuses a non-loopback
    /// address without a token.
    pub async fn bind(ledger: Ledger, options: ServeOptions) -> Result<Server> {
        options.check()?;
        let ledger = Arc::new(ledger);
        let committed = ledger.committed().ok_or_else(|| {
            Error::InvalidInput("the server needs the ledger opened for writing".to_owned())
        })?;
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|e| Error::Storage(format!("cannot listen on {}: {e}", options.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Storage(format!("cannot read the listening address: {e}")))?;
        let url = format!("http://{addr}");
        ledger.store().announce_server(&url)?;
        let (stop, shutdown) = watch::channel(false);
        let metrics = Metrics::new(ledger.clone(), committed);
        let app = Arc::new(App {
            ledger,
            metrics,
            token: options.token.map(|t| Sha256::digest(t.as_bytes()).into()),
            subscribers: Arc::new(Semaphore::new(SUBSCRIBERS_MAX)),
            shutdown,
            subscriber_stall: options.subscriber_stall,
        });
        Ok(Server {
            listener,
            app,
            stop,
            url,
        })
    }

    /// The server's base URL (`http://ADDR`), with the port actually bound.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Serves until `shutdown` completes, then stops accepting, ends subscriptions, lets
    /// in-flight requests finish (appends are acknowledged or fail cleanly), and closes the
    /// ledger: nothing acknowledged is lost.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Server {
            listener,
            app,
            stop,
            url,
        } = self;
        tracing::info!("serving {} at {url}", app.ledger.store().path().display());
        let router = api::router(app.clone());
        let listener = Limited {
            listener,
            permits: Arc::new(Semaphore::new(CONNECTIONS_MAX)),
        };
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing requests in flight");
            // Subscriptions never finish by themselves; tell them to end.
            let _ = stop.send(true);
        };
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(signal)
            .await;
        app.ledger.store().withdraw_server();
        served.map_err(|e| Error::Storage(format!("the server failed: {e}")))
    }
}

/// The listener with a cap on open connections: accepting waits for a free permit, which
/// each connection holds until it closes.
struct Limited {
    listener: TcpListener,
    permits: Arc<Semaphore>,
}

/// A connection holding its permit.
struct Connection {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl axum::serve::Listener for Limited {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the connection semaphore is never closed"),
        };
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    return (
                        Connection {
                            stream,
                            _permit: permit,
                        },
                        addr,
                    );
                }
                // Out of file descriptors and the like: wait instead of spinning.
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl tokio::io::AsyncRead for Connection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Connection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; stop the server with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
