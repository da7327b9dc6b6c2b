//! `ordo relay` (product.md section 10): every committed event, in position order, exactly
//! once, into a NATS JetStream stream whose sequence is the ledger position; and
//! [`follow`], the read replica that consumes it.
//!
//! Exactly once rests on the stream, not on state the relay keeps: each publish states the
//! sequence it expects before it (`Nats-Expected-Last-Sequence` = position - 1) and carries
//! the event id as `Nats-Msg-Id`, so the stream refuses a gap, a reordering and a duplicate.
//! A relay that starts (or restarts after any failure, its own kill -9 included) reads the
//! stream's last sequence, checks that message against the ledger (its position and hash:
//! the hash chain commits to everything before it), and publishes from the next position.
//! A stream ahead of the ledger, or whose last message is not the ledger's event there, is
//! never extended: exit 5.
//!
//! Publishes are pipelined (up to `in_flight_max` acknowledgements outstanding, in order on
//! one connection). The relay reads only committed events: the ledger's own reads see an
//! event only after its commit was durable.

pub mod follow;
pub mod subject;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage, stream};
use bytes::Bytes;
use tokio::sync::watch;

use crate::domain::{Event, Position};
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::store::Access;

/// The default stream name.
pub const STREAM_DEFAULT: &str = "ORDO";
/// Acknowledgements awaited at most at once.
pub const IN_FLIGHT_MAX: usize = 1024;
/// Events read from the ledger per step.
const READ_EVENTS_MAX: usize = 4096;
/// How long the stream remembers message ids for deduplication.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How often a relay beside a writer looks for new commits.
const POLL: Duration = Duration::from_millis(200);
/// The longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Headers every relayed message carries besides `Nats-Msg-Id`.
pub const HEADER_ORDER: &str = "Ordo-Order-Id";
/// The event type.
pub const HEADER_TYPE: &str = "Ordo-Type";
/// The event's chain hash (hex).
pub const HEADER_HASH: &str = "Ordo-Hash";
/// The event's position.
pub const HEADER_POSITION: &str = "Ordo-Position";

/// Where to relay to.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// NATS server URL(s), comma-separated.
    pub nats: String,
    /// The stream (created when missing).
    pub stream: String,
    /// Its replicas when created.
    pub replicas: usize,
}

/// What the relay has done, for metrics and logs.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Events published and acknowledged by the stream since start.
    pub published: AtomicU64,
    /// The last position the stream acknowledged.
    pub relayed: AtomicU64,
    /// The ledger's head as last seen.
    pub head: AtomicU64,
}

impl RelayStats {
    /// Positions committed but not yet in the stream.
    pub fn lag(&self) -> u64 {
        self.head
            .load(Ordering::Relaxed)
            .saturating_sub(self.relayed.load(Ordering::Relaxed))
    }
}

/// Where the relay reads committed events.
pub enum Source {
    /// A ledger directory, opened for reading (beside a writer: a secondary instance that
    /// catches up) and polled.
    Directory(PathBuf),
    /// The ledger of `ordo serve`, woken by its commits.
    Serving(Arc<Ledger>),
}

/// Why a session (of the relay or of a replica) ended.
pub(crate) enum Stop {
    /// Asked to stop.
    Shutdown,
    /// The stream or the ledger cannot be extended: report and exit.
    Fatal(Error),
    /// A connection or server failure: reconnect and resume.
    Retry(String),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        match e {
            // What retrying cannot change: damage, divergence, a wrong directory.
            Error::Corruption { .. }
            | Error::Damaged(_)
            | Error::InvalidInput(_)
            | Error::NotFound(_) => Stop::Fatal(e),
            other => Stop::Retry(other.to_string()),
        }
    }
}

fn retry<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> Stop + '_ {
    move |e| Stop::Retry(format!("{what}: {e}"))
}

/// Relays until `shutdown` turns true; reconnects with backoff after failures. `Err` only
/// for what must not be retried (a diverged or ahead stream: `Error::Corruption`).
pub async fn run(
    source: Source,
    options: RelayOptions,
    stats: Arc<RelayStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    with_retries("relay", shutdown, |mut shutdown| {
        let (source, options, stats) = (&source, &options, &stats);
        async move { session(source, options, stats, &mut shutdown).await }
    })
    .await
}

/// Runs `session` (a connection's worth of work) again after each failure it can recover
/// from, waiting 100 ms, then twice as long each time up to `BACKOFF_MAX`, until
/// `shutdown` turns true or it stops for good.
pub(crate) async fn with_retries<F, Fut>(
    what: &str,
    mut shutdown: watch::Receiver<bool>,
    mut session: F,
) -> Result<()>
where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = Stop>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        match session(shutdown.clone()).await {
            Stop::Shutdown => return Ok(()),
            Stop::Fatal(e) => return Err(e),
            Stop::Retry(why) => {
                tracing::warn!("{what}: {why}; retrying in {} ms", backoff.as_millis());
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// One connection's worth of relaying: check the stream, publish what it lacks, follow.
async fn session(
    source: &Source,
    options: &RelayOptions,
    stats: &RelayStats,
    shutdown: &mut watch::Receiver<bool>,
) -> Stop {
    let client = match connect(&options.nats).await {
        Ok(client) => client,
        Err(e) => return Stop::Retry(format!("cannot connect to {}: {e}", options.nats)),
    };
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(IN_FLIGHT_MAX)
        .build(client);
    let stream = match js.get_or_create_stream(stream_config(options)).await {
        Ok(stream) => stream,
        Err(e) => return Stop::Retry(format!("stream {}: {e}", options.stream)),
    };
    let mut ledger = match open(source).await {
        Ok(ledger) => ledger,
        Err(e) => return e.into(),
    };
    let last = match last_sequence(&stream).await {
        Ok(last) => last,
        Err(stop) => return stop,
    };
    if let Err(stop) = check_last(&stream, &ledger, last, &options.stream).await {
        return stop;
    }
    stats.relayed.store(last, Ordering::Relaxed);
    tracing::info!(
        "relay: stream {} holds positions 1 to {last}",
        options.stream
    );
    let mut next = last + 1;
    let mut commits = match source {
        Source::Serving(ledger) => ledger.committed(),
        Source::Directory(_) => None,
    };
    loop {
        let head = match ledger.head() {
            Ok(head) => head.position.0,
            Err(e) => return e.into(),
        };
        stats.head.store(head, Ordering::Relaxed);
        if head >= next
            && let Err(stop) = publish_range(&js, &ledger, next, head, stats).await
        {
            return stop;
        }
        next = head + 1;
        // Wait for more: a commit (in `ordo serve`) or the next poll.
        let woken = async {
            match &mut commits {
                Some(commits) => {
                    let _ = commits.changed().await;
                }
                None => tokio::time::sleep(POLL).await,
            }
        };
        tokio::select! {
            _ = woken => {}
            _ = shutdown.changed() => return Stop::Shutdown,
        }
        if let Source::Directory(_) = source {
            ledger = match catch_up(ledger, source).await {
                Ok(ledger) => ledger,
                Err(e) => return e.into(),
            };
        }
    }
}

/// A client of the NATS servers `urls` names (comma-separated: the client also learns the
/// rest of a cluster from them, and moves to another server when one is lost).
pub async fn connect(
    urls: &str,
) -> std::result::Result<async_nats::Client, async_nats::ConnectError> {
    let urls: Vec<&str> = urls.split(',').map(str::trim).collect();
    async_nats::connect(urls).await
}

fn stream_config(options: &RelayOptions) -> stream::Config {
    stream::Config {
        name: options.stream.clone(),
        subjects: vec![format!("{}.>", subject::PREFIX)],
        num_replicas: options.replicas,
        duplicate_window: DUPLICATE_WINDOW,
        storage: stream::StorageType::File,
        // The stream is the ledger's copy: nothing in it is deleted or purged by clients.
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        ..stream::Config::default()
    }
}

async fn last_sequence(stream: &stream::Stream) -> std::result::Result<u64, Stop> {
    let mut stream = stream.clone();
    let info = stream.info().await.map_err(retry("stream info"))?;
    Ok(info.state.last_sequence)
}

/// The stream may be extended only if it is the ledger's prefix: not ahead of it, and its
/// last message is the ledger's event at that position (same hash).
async fn check_last(
    stream: &stream::Stream,
    ledger: &Arc<Ledger>,
    last: u64,
    name: &str,
) -> std::result::Result<(), Stop> {
    let head = ledger.head().map_err(Stop::from)?.position.0;
    if last > head {
        return Err(Stop::Fatal(Error::Corruption {
            position: Position(head + 1),
            reason: format!(
                "stream {name} holds {last} messages but the ledger only {head} events: a stream ahead of its ledger is never extended"
            ),
        }));
    }
    if last == 0 {
        return Ok(());
    }
    let message = stream
        .get_raw_message(last)
        .await
        .map_err(retry("reading the stream's last message"))?;
    let event = ledger
        .store()
        .event(Position(last))
        .map_err(Stop::from)?
        .ok_or_else(|| Stop::Retry(format!("position {last} is not readable yet")))?;
    let stored_hash = message
        .headers
        .get(HEADER_HASH)
        .map(|h| h.as_str().to_owned());
    if stored_hash.as_deref() != Some(event.hash.to_hex().as_str()) {
        return Err(Stop::Fatal(Error::Corruption {
            position: Position(last),
            reason: format!(
                "stream {name}'s message {last} has hash {} but the ledger's event there has {}: a diverged stream is never extended",
                stored_hash.as_deref().unwrap_or("(none)"),
                event.hash
            ),
        }));
    }
    Ok(())
}

async fn open(source: &Source) -> Result<Arc<Ledger>> {
    match source {
        Source::Serving(ledger) => Ok(ledger.clone()),
        Source::Directory(dir) => {
            let dir = dir.clone();
            blocking(move || Ledger::open(&dir, Access::ReadOnly).map(Arc::new)).await
        }
    }
}

/// The ledger with the commits made since it was opened: a secondary instance catches up
/// with the writer; a read-only one (no writer was running) is reopened.
async fn catch_up(ledger: Arc<Ledger>, source: &Source) -> Result<Arc<Ledger>> {
    let caught_up = {
        let ledger = ledger.clone();
        blocking(move || ledger.store().catch_up()).await?
    };
    if caught_up {
        Ok(ledger)
    } else {
        drop(ledger);
        open(source).await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Storage(format!("a relay read failed: {e}")))?
}

/// Publishes positions `from..=to`, awaiting acknowledgements in order.
async fn publish_range(
    js: &jetstream::Context,
    ledger: &Arc<Ledger>,
    from: u64,
    to: u64,
    stats: &RelayStats,
) -> std::result::Result<(), Stop> {
    let mut in_flight: VecDeque<(u64, PublishAckFuture)> = VecDeque::new();
    let mut at = from;
    while at <= to {
        let events = {
            let ledger = ledger.clone();
            let until = to.min(at + READ_EVENTS_MAX as u64 - 1);
            blocking(move || {
                ledger
                    .log(Position(at), Some(Position(until)), None)
                    .collect::<Result<Vec<Event>>>()
            })
            .await
            .map_err(Stop::from)?
        };
        if events.is_empty() {
            return Err(Stop::Retry(format!("position {at} is not readable yet")));
        }
        for event in events {
            let position = event.position.0;
            assert_eq!(
                position, at,
                "the log is read in position order without gaps"
            );
            let ack = js
                .send_publish(
                    subject::subject(event.event_type().as_str(), event.order_id.as_str()),
                    message(&event),
                )
                .await
                .map_err(retry("publish"))?;
            in_flight.push_back((position, ack));
            if in_flight.len() >= IN_FLIGHT_MAX {
                confirm(in_flight.pop_front(), stats).await?;
            }
            at += 1;
        }
    }
    while !in_flight.is_empty() {
        confirm(in_flight.pop_front(), stats).await?;
    }
    Ok(())
}

/// The message of `event`: its export envelope, with its id for deduplication, the sequence
/// the stream must be at, and the order, type, hash and position as headers.
pub fn message(event: &Event) -> PublishMessage {
    let body = serde_json::to_vec(&event.envelope_json()).expect("an envelope serializes");
    PublishMessage::build()
        .payload(Bytes::from(body))
        .message_id(event.event_id.to_string())
        .expected_last_sequence(event.position.0 - 1)
        .header(HEADER_ORDER, event.order_id.as_str())
        .header(HEADER_TYPE, event.event_type().as_str())
        .header(HEADER_HASH, event.hash.to_hex().as_str())
        .header(HEADER_POSITION, event.position.0.to_string().as_str())
}

async fn confirm(
    next: Option<(u64, PublishAckFuture)>,
    stats: &RelayStats,
) -> std::result::Result<(), Stop> {
    let Some((position, ack)) = next else {
        return Ok(());
    };
    let ack = ack.await.map_err(retry("publish acknowledgement"))?;
    if ack.sequence != position {
        // A duplicate id acknowledged at another sequence: the stream holds this event
        // elsewhere, so it is not the ledger's copy.
        return Err(Stop::Fatal(Error::Corruption {
            position: Position(position),
            reason: format!(
                "the stream acknowledged position {position} at sequence {} (duplicate: {})",
                ack.sequence, ack.duplicate
            ),
        }));
    }
    stats.published.fetch_add(1, Ordering::Relaxed);
    stats.relayed.store(position, Ordering::Relaxed);
    Ok(())
}
