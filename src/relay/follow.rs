//! `ordo follow` (product.md section 10): a read replica that consumes the leader's stream
//! from its own head + 1 and stores every event with the same position, times and hash
//! (the `import --preserve` path: each batch is refused whole unless it continues the
//! replica exactly, hash chain included), keeping projections and snapshots as the leader
//! does. A message that does not chain onto the replica's head stops it with exit 5 and
//! nothing written. The replica refuses appends of its own, naming its leader.
//!
//! The consumer is an ordered, ephemeral one: the replica's own head is its only state, so
//! after any failure (its own kill -9, a NATS server lost) it starts again from head + 1.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use tokio::sync::watch;
use tokio_stream::StreamExt;

use crate::domain::Position;
use crate::error::{Error, Result};
use crate::ledger::{Ledger, NewEvent, parse_envelope};

use super::Stop;

/// Events stored per commit at most.
const BATCH_EVENTS_MAX: usize = 1000;
/// How long a batch waits for more messages once it has one.
const BATCH_WAIT: Duration = Duration::from_millis(2);

/// Where to follow from.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// NATS server URL(s), comma-separated.
    pub nats: String,
    /// The leader's stream.
    pub stream: String,
}

impl FollowOptions {
    /// How the replica names its leader.
    pub fn leader(&self) -> String {
        format!("stream {} at {}", self.stream, self.nats)
    }
}

/// What the replica has done, for metrics and logs.
#[derive(Debug, Default)]
pub struct FollowStats {
    /// Events consumed and stored since start.
    pub consumed: AtomicU64,
    /// Messages in the stream after the last one consumed (the replica's lag).
    pub lag: AtomicU64,
}

/// Follows until `shutdown` turns true; reconnects with backoff after failures. `Err` for a
/// stream message that does not continue the replica (exit 5) and other errors retrying
/// cannot mend.
pub async fn run(
    ledger: Arc<Ledger>,
    options: FollowOptions,
    stats: Arc<FollowStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    super::with_retries("follow", shutdown, |mut shutdown| {
        let (ledger, options, stats) = (&ledger, &options, &stats);
        async move { session(ledger, options, stats, &mut shutdown).await }
    })
    .await
}

async fn session(
    ledger: &Arc<Ledger>,
    options: &FollowOptions,
    stats: &FollowStats,
    shutdown: &mut watch::Receiver<bool>,
) -> Stop {
    let client = match super::connect(&options.nats).await {
        Ok(client) => client,
        Err(e) => return Stop::Retry(format!("cannot connect to {}: {e}", options.nats)),
    };
    let js = jetstream::new(client);
    let stream = match js.get_stream(&options.stream).await {
        Ok(stream) => stream,
        Err(e) => return Stop::Retry(format!("stream {}: {e}", options.stream)),
    };
    let head = match ledger.head() {
        Ok(head) => head.position.0,
        Err(e) => return Stop::Fatal(e),
    };
    let config = consumer::pull::OrderedConfig {
        deliver_policy: consumer::DeliverPolicy::ByStartSequence {
            start_sequence: head + 1,
        },
        ..Default::default()
    };
    let consumer = match stream.create_consumer(config).await {
        Ok(consumer) => consumer,
        Err(e) => return Stop::Retry(format!("consumer on {}: {e}", options.stream)),
    };
    let mut messages = match consumer.messages().await {
        Ok(messages) => messages,
        Err(e) => return Stop::Retry(format!("reading {}: {e}", options.stream)),
    };
    tracing::info!("follow: {} from position {}", options.leader(), head + 1);
    loop {
        // The first message of a batch: wait for it (or for shutdown).
        let first = tokio::select! {
            message = messages.next() => message,
            _ = shutdown.changed() => return Stop::Shutdown,
        };
        let mut batch = Vec::with_capacity(BATCH_EVENTS_MAX);
        let mut next = first;
        loop {
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(e)) => return Stop::Retry(format!("receiving: {e}")),
                None => return Stop::Retry("the consumer ended".to_owned()),
            };
            match event_of(&message) {
                Ok(event) => batch.push(event),
                Err(e) => return Stop::Fatal(e),
            }
            if let Ok(info) = message.info() {
                stats.lag.store(info.pending, Ordering::Relaxed);
            }
            if batch.len() == BATCH_EVENTS_MAX {
                break;
            }
            match tokio::time::timeout(BATCH_WAIT, messages.next()).await {
                Ok(more) => next = more,
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let replica = ledger.clone();
        let stored = tokio::task::spawn_blocking(move || replica.replicate(batch)).await;
        match stored {
            Ok(Ok(_)) => {
                stats.consumed.fetch_add(n, Ordering::Relaxed);
            }
            Ok(Err(e)) => return Stop::Fatal(not_continued(e)),
            Err(e) => return Stop::Fatal(Error::Storage(format!("a replica write failed: {e}"))),
        }
    }
}

/// A stream message as the event it carries, checked to sit at its own position.
fn event_of(message: &jetstream::Message) -> Result<(u64, NewEvent)> {
    let sequence = message
        .info()
        .map_err(|e| Error::Storage(format!("a message without JetStream metadata: {e}")))?
        .stream_sequence;
    let bad = |reason: String| Error::Corruption {
        position: Position(sequence),
        reason: format!("stream message {sequence}: {reason}"),
    };
    let text = std::str::from_utf8(&message.payload)
        .map_err(|_| bad("the body is not UTF-8".to_owned()))?;
    let event = parse_envelope(text).map_err(|e| bad(e.to_string()))?;
    let position = event.preserved.as_ref().map(|p| p.position.0);
    if position != Some(sequence) {
        return Err(bad(format!(
            "its envelope says position {position:?}, not its sequence {sequence}"
        )));
    }
    Ok((sequence, event))
}

/// A batch the replica refused: it does not continue the replica (a hash that does not
/// chain, a position, version or time out of order), which is the stream's fault: exit 5.
fn not_continued(e: Error) -> Error {
    match e {
        Error::AtLine { line, error } => match *error {
            Error::Corruption { .. } => *error,
            other => Error::Corruption {
                position: Position(line),
                reason: format!("stream message {line} does not continue the replica: {other}"),
            },
        },
        other => other,
    }
}
