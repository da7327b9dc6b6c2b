//! `ordo serve`: the HTTP/JSON API over one ledger (product.md section 8).
//!
//! The server owns the ledger for writing; every append goes through the ledger's one
//! sequencer, so concurrent requests share group commits exactly as threads of one process
//! do. The HTTP layer is thin: it parses requests (`api`), calls the library, and maps its
//! errors to statuses (`reply`). Live subscriptions (`subscribe`) read the log from the store
//! at their own pace and wait on the sequencer's committed position, so a slow subscriber
//! costs nobody else anything. Everything that grows has a limit below.

mod api;
mod guard;
mod listen;
mod metrics;
mod proofs;
mod reply;
mod request;
mod subscribe;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::proof::note::Signer;

pub use guard::Origins;
pub use listen::{CONNECTIONS_MAX, Limits};
pub use metrics::{Beside, Metrics};

/// Where `ordo serve` listens unless told otherwise.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:7411";
/// Largest request body (an append batch of up to 10,000 events): 64 MiB.
pub const BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest `POST /v1/import` body, spooled to a temporary file before validation: 16 GiB.
pub const IMPORT_BODY_BYTES_MAX: u64 = 16 * 1024 * 1024 * 1024;
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
/// Shortest accepted token: 16 bytes, about 96 bits if drawn from base64.
pub const TOKEN_BYTES_MIN: usize = 16;

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The bearer token every request must carry; required on a non-loopback address.
    pub token: Option<String>,
    /// How long a subscriber's buffer may stay full before it is disconnected.
    pub subscriber_stall: std::time::Duration,
    /// Connection limits and timeouts.
    pub limits: Limits,
    /// The `Host` names and `Origin`s requests may carry besides this server's own address.
    pub origins: Origins,
    /// The key that signs checkpoints and evidence bundles (`serve --key`).
    pub signer: Option<Arc<Signer>>,
    /// The counters of a relay (`serve --relay`) or replica (`follow --listen`) running
    /// beside the server, for its metrics.
    pub beside: Beside,
}

impl ServeOptions {
    /// Options for `listen` with `token` and the default limits.
    pub fn new(listen: SocketAddr, token: Option<String>) -> ServeOptions {
        ServeOptions {
            listen,
            token,
            subscriber_stall: std::time::Duration::from_secs(SUBSCRIBER_STALL_SECONDS),
            limits: Limits::default(),
            origins: Origins::default(),
            signer: None,
            beside: Beside::default(),
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

/// Reads a secret file of at most `bytes_max` bytes. Refused, as ssh refuses a private key,
/// when the file is readable or writable by group or others.
fn read_secret(path: &Path, what: &str, bytes_max: u64) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mode = file
        .metadata()
        .map_err(|e| Error::io(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::InvalidInput(format!(
            "{what} file {} is open to group or others (mode {:o}); make it owner-only: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    let mut text = String::new();
    file.take(bytes_max + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(path, e))?;
    if text.len() as u64 > bytes_max {
        return Err(Error::InvalidInput(format!(
            "{what} file {} is longer than {bytes_max} bytes",
            path.display()
        )));
    }
    Ok(text)
}

/// Longest signing key file read.
const KEY_BYTES_MAX: u64 = 4096;

/// Reads a signing key file (`ordo keygen`): owner-only, one key in the signed-note format.
pub fn read_signing_key(path: &Path) -> Result<Signer> {
    let text = read_secret(path, "key", KEY_BYTES_MAX)?;
    // The reason never quotes the file: it holds a private key.
    Signer::parse(text.trim()).map_err(|why| {
        Error::InvalidInput(format!("{} holds no signing key: {why}", path.display()))
    })
}

/// Reads a token file: its content without surrounding whitespace, at least
/// `TOKEN_BYTES_MIN` bytes. Refused, as ssh refuses a private key, when the file is readable
/// or writable by group or others.
pub fn read_token(path: &Path) -> Result<String> {
    let text = read_secret(path, "token", TOKEN_BYTES_MAX)?;
    let token = text.trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidInput(format!(
            "token file {} must hold one token without spaces",
            path.display()
        )));
    }
    if token.len() < TOKEN_BYTES_MIN {
        return Err(Error::InvalidInput(format!(
            "the token in {} is {} bytes; a token needs at least {TOKEN_BYTES_MIN}",
            path.display(),
            token.len()
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
    /// Where requests may come from (`Host`, `Origin`).
    origins: Origins,
    /// The address the server is bound to (its `Host`).
    listen: SocketAddr,
    /// Signs checkpoints and evidence bundles, when given.
    signer: Option<Arc<Signer>>,
}

impl App {
    fn authorized(&self, header: Option<&[u8]>) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        // The scheme is case-insensitive (RFC 9110 section 11.1); one or more spaces follow.
        let given = header.and_then(|h| {
            let (scheme, rest) = h.split_at_checked(6)?;
            scheme
                .eq_ignore_ascii_case(b"Bearer")
                .then(|| rest.trim_ascii_start())
                .filter(|token| token.len() < rest.len())
        });
        let Some(given) = given else {
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
    limits: Limits,
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
        let metrics = Metrics::new(ledger.clone(), committed, &options.beside);
        let app = Arc::new(App {
            ledger,
            metrics,
            token: options.token.map(|t| Sha256::digest(t.as_bytes()).into()),
            subscribers: Arc::new(Semaphore::new(SUBSCRIBERS_MAX)),
            shutdown,
            subscriber_stall: options.subscriber_stall,
            origins: options.origins,
            listen: addr,
            signer: options.signer,
        });
        Ok(Server {
            listener,
            app,
            stop,
            url,
            limits: options.limits,
        })
    }

    /// The server's base URL (`http://ADDR`), with the port actually bound.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The ledger it serves (for a relay beside it).
    pub fn ledger(&self) -> Arc<Ledger> {
        self.app.ledger.clone()
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
            limits,
        } = self;
        tracing::info!("serving {} at {url}", app.ledger.store().path().display());
        let router = api::router(app.clone());
        let stopping = move || {
            tracing::info!("shutting down: finishing requests in flight");
            // Subscriptions never finish by themselves; tell them to end.
            let _ = stop.send(true);
        };
        listen::serve(listener, router, limits, shutdown, stopping).await;
        app.ledger.store().withdraw_server();
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called (inside
/// the runtime), not when the future is first awaited: a command installs them before it
/// prints that it is ready, so a signal sent right after that line stops it cleanly
/// instead of killing it with the default action (a follower killed that way exited
/// non-zero in tests/follow.rs).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        match handlers {
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
}
