//! `GET /v1/subscribe?from=P&types=a,b`: server-sent events, live.
//!
//! Each subscription has its own task that reads the log from the store in pages (a fresh
//! iterator per page, so no RocksDB snapshot is held open) and, once caught up, waits on the
//! sequencer's committed position. Events go out in position order, each with `id:` = its
//! position, so a client that reconnects with `Last-Event-ID: P` resumes at P+1: exactly
//! once, no gaps, across reconnects. Nothing is shared between subscribers and the writer
//! never waits for them; a subscriber whose buffer stays full for `subscriber_stall`
//! (default `SUBSCRIBER_STALL_SECONDS`) gets an `error` event saying so and is disconnected.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::reply::ApiError;
use super::request::{Params, blocking};
use super::{App, SUBSCRIBER_BUFFER_EVENTS};
use crate::domain::{EventType, Position};

/// Events read from the store per page.
const PAGE_EVENTS: usize = 512;

type Item = Result<SseEvent, Infallible>;

pub(super) async fn subscribe(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = Params::new(query, &[&["from", "types"]])?;
    let resume = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::invalid("Last-Event-ID must be an event position"))
        })
        .transpose()?;
    let committed = app
        .ledger
        .committed()
        .ok_or_else(|| ApiError::internal("the writer has stopped"))?;
    // Last-Event-ID wins over `from`: it is where this client actually got to.
    let from = match (resume, p.number("from")?) {
        // Numbers from a client never overflow: u64::MAX is past any position there can be.
        (Some(last), _) => last.checked_add(1).ok_or_else(|| {
            ApiError::invalid(format!("Last-Event-ID {last} is past any position"))
        })?,
        (None, Some(from)) => from.max(1),
        // Without a position: only what is committed from now on.
        (None, None) => committed.borrow().0 + 1,
    };
    let types = match p.get("types") {
        None => None,
        Some(list) => Some(
            list.split(',')
                .map(|t| EventType::parse(t.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::invalid(format!("types: {e}")))?,
        ),
    };
    let permit = app.subscribers.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "this server already has {} subscribers; retry later",
                super::SUBSCRIBERS_MAX
            ),
        )
    })?;
    let (tx, rx) = mpsc::channel::<Item>(SUBSCRIBER_BUFFER_EVENTS);
    let feeder = app.clone();
    tokio::spawn(async move {
        feeder.metrics.subscribers(1);
        if let Err(reason) = feed(&feeder, &tx, Position(from), types, committed).await {
            tracing::info!("subscriber disconnected: {reason}");
        }
        feeder.metrics.subscribers(-1);
        drop(permit);
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Sends events from `next` on, forever (until the client leaves, the server shuts down, or
/// the client stops reading). `Err` says why a subscription ended abnormally.
async fn feed(
    app: &App,
    tx: &mpsc::Sender<Item>,
    mut next: Position,
    types: Option<Vec<EventType>>,
    mut committed: tokio::sync::watch::Receiver<Position>,
) -> Result<(), String> {
    let mut shutdown = app.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let head = *committed.borrow_and_update();
        if next <= head {
            let page = blocking(app, move |l| {
                l.log(next, Some(head), None)
                    .take(PAGE_EVENTS)
                    .collect::<crate::Result<Vec<_>>>()
            })
            .await
            .map_err(|e| format!("reading the log: {}", e.message))?;
            let Some(last) = page.last() else {
                return Err(format!("the log ends before position {next}"));
            };
            next = Position(last.position.0 + 1);
            for event in page {
                if types
                    .as_ref()
                    .is_some_and(|t| !t.contains(&event.event_type()))
                {
                    continue;
                }
                let sse = SseEvent::default()
                    .id(event.position.0.to_string())
                    .event(event.event_type().as_str())
                    .data(event.envelope_json().to_string());
                send(app, tx, sse, event.position).await?;
            }
            continue;
        }
        tokio::select! {
            changed = committed.changed() => {
                if changed.is_err() {
                    return Ok(()); // the writer stopped: the server is closing
                }
            }
            _ = shutdown.changed() => return Ok(()),
            () = tx.closed() => return Ok(()),
        }
    }
}

/// Queues one event, keeping the buffer's last slot for the reason of a disconnection.
async fn send(
    app: &App,
    tx: &mpsc::Sender<Item>,
    event: SseEvent,
    position: Position,
) -> Result<(), String> {
    let stall = app.subscriber_stall;
    let deadline = tokio::time::Instant::now() + stall;
    while tx.capacity() <= 1 {
        if tx.is_closed() {
            return Err("the client left".to_owned());
        }
        if tokio::time::Instant::now() >= deadline {
            app.metrics.subscriber_dropped();
            let reason = format!(
                "disconnected before position {position}: not reading for {:.1} s with {SUBSCRIBER_BUFFER_EVENTS} events queued; reconnect with Last-Event-ID set to the last id received",
                stall.as_secs_f64()
            );
            let _ = tx.try_send(Ok(SseEvent::default().event("error").data(&reason)));
            return Err(reason);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send(Ok(event))
        .await
        .map_err(|_| "the client left".to_owned())
}
