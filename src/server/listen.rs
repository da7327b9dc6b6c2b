//! The accept loop: one HTTP/1.1 connection per task, each with the limits that keep a few
//! idle or slow clients from holding the server down (`Limits`).
//!
//! - At most `connections_max` connections are served at once. One more is answered at once
//!   with `503` (`Retry-After: 1`) and closed, rather than left waiting in the kernel's
//!   accept queue where even `/healthz` could not be answered.
//! - A connection must send a whole request head within `header_read` of connecting or of
//!   its previous response (slow headers, idle keep-alive), else it is closed.
//! - A request body that sends nothing for `body_read` fails with `408`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_http::timeout::RequestBodyTimeout;

/// The limits of `serve`'s connections (docs/http.md lists them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once.
    pub connections_max: usize,
    /// Time a connection has to send a whole request head, from connecting or from its
    /// previous response (so also the idle keep-alive time).
    pub header_read: Duration,
    /// Time a request body may send nothing before the request fails.
    pub body_read: Duration,
    /// Time in-flight requests get to finish at shutdown before their connections close.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections_max: CONNECTIONS_MAX,
            header_read: Duration::from_secs(HEADER_READ_SECONDS),
            body_read: Duration::from_secs(BODY_READ_SECONDS),
            shutdown_grace: Duration::from_secs(SHUTDOWN_GRACE_SECONDS),
        }
    }
}

/// Connections served at once; one more is answered 503.
pub const CONNECTIONS_MAX: usize = 1024;
/// See `Limits::header_read`.
pub const HEADER_READ_SECONDS: u64 = 10;
/// See `Limits::body_read`.
pub const BODY_READ_SECONDS: u64 = 30;
/// See `Limits::shutdown_grace`.
pub const SHUTDOWN_GRACE_SECONDS: u64 = 30;
/// Refusals being written at once; past this, a connection over the limit is closed unanswered.
const REFUSALS_MAX: usize = 64;
/// Time a refused client gets to read its 503.
const REFUSAL_SECONDS: u64 = 1;
/// Bytes of a request head read at most (hyper's buffer; its default is about 400 KiB).
const HEAD_BYTES_MAX: usize = 64 * 1024;

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, calls
/// `stopping` (which ends subscriptions), and lets in-flight requests finish within the
/// grace time.
pub(super) async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    stopping: impl FnOnce(),
) {
    let connections = Arc::new(Semaphore::new(limits.connections_max));
    let refusals = Arc::new(Semaphore::new(REFUSALS_MAX));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true)
        .max_buf_size(HEAD_BYTES_MAX);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: wait instead of spinning.
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream, limits.connections_max).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let service =
            TowerToHyperService::new(RequestBodyTimeout::new(router.clone(), limits.body_read));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    stopping();
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still running after {:?}; closing their connections",
            limits.shutdown_grace
        );
    }
}

/// Answers a connection over the limit with 503 and closes it, reading what the client sent
/// meanwhile (closing with unread bytes would reset the connection before it reads the answer).
async fn refuse(mut stream: TcpStream, connections_max: usize) {
    let body = serde_json::json!({"error": {
        "kind": "unavailable",
        "message": format!("the server is serving {connections_max} connections, its limit; retry shortly"),
    }})
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(REFUSAL_SECONDS), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}
