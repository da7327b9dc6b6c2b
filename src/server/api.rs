//! Routes and handlers. Each handler parses its request (query parameters through
//! `ledger::params`, exactly as the CLI parses its flags), runs the library call on the
//! blocking pool (RocksDB reads block) or, for appends, awaits the writer's answer (it
//! comes once the commit is durable), and answers JSON with the CLI's field names. No
//! business rule lives here.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

use super::reply::ApiError;
use super::request::{Params, QueryPairs, TIME, blocking};
use super::{App, BODY_BYTES_MAX, IMPORT_BODY_BYTES_MAX, PAGE_EVENTS_DEFAULT, PAGE_EVENTS_MAX};
use crate::domain::{OrderId, Position};
use crate::error::Error;
use crate::ledger::params::{self, Naming};
use crate::ledger::{self, BATCH_EVENTS_MAX, BatchResult, Filter, ImportOptions, NoProgress};

type Reply = Result<Response, ApiError>;

pub(super) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/events", post(append).get(log))
        .route(
            "/v1/import",
            post(import).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/orders/{id}", get(order_state))
        .route("/v1/orders/{id}/events", get(order_events))
        .route("/v1/orders/{id}/audit", get(order_audit))
        .route("/v1/audit", get(actor_audit))
        .route("/v1/subscribe", get(super::subscribe::subscribe))
        .route("/v1/query/orders", get(query_orders))
        .route("/v1/query/customers", get(query_customers))
        .route("/v1/query/revenue", get(query_revenue))
        .route("/v1/query/statuses", get(query_statuses))
        .route("/v1/replay", get(replay))
        .route("/v1/snapshots", get(snapshots))
        .route("/v1/verify", get(verify))
        .route("/v1/checkpoint", get(super::proofs::checkpoint))
        .route("/v1/proof/inclusion", get(super::proofs::inclusion))
        .route("/v1/proof/consistency", get(super::proofs::consistency))
        .route("/v1/orders/{id}/evidence", get(super::proofs::evidence))
        .route("/v1/stats", get(stats))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(app.clone(), count))
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            super::guard::guard,
        ))
        .with_state(app)
}

/// Counts requests by route and status for `/metrics`.
async fn count(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(String::new, |m| m.as_str().to_owned());
    let response = next.run(request).await;
    app.metrics.request(&route, response.status().as_u16());
    response
}

async fn unknown_route(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no such endpoint: {} {}",
            request.method(),
            request.uri().path()
        ),
    )
}

pub(super) fn json_reply(status: StatusCode, value: Value) -> Response {
    (status, Json(value)).into_response()
}

pub(super) fn to_json<T: serde::Serialize>(value: T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::internal(format!("encoding JSON: {e}")))
}

/// The answer to a request body that stopped arriving (`Limits::body_read`).
fn body_stalled() -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "unavailable",
        "the request body stopped arriving before it was complete (docs/http.md: limits)",
    )
}

/// Whether a body error came from the body-read timeout.
fn stalled(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        current = e.source();
    }
    false
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if stalled(&rejection) {
        return body_stalled();
    }
    let status = rejection.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("the request body is larger than {BODY_BYTES_MAX} bytes; use POST /v1/import")
    } else {
        format!("reading the request body: {}", rejection.body_text())
    };
    ApiError::new(status, "invalid_input", message)
}

/// `POST /v1/events`: one event object, or an array appended atomically.
async fn append(
    State(app): State<Arc<App>>,
    query: QueryPairs,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    Params::new(query, &[])?;
    let body = body.map_err(body_error)?;
    // The usual body, one event every field of which is present once and valid, is read
    // in one pass into the event; anything else (a batch, a fault to name) through a
    // strict `Value`, with the same result for what both accept (`parse_event_direct`).
    if let Some(event) = std::str::from_utf8(&body)
        .ok()
        .and_then(ledger::parse_event_direct)
    {
        return append_event(&app, event).await;
    }
    let value: Value = ledger::json::parse_value_bytes(&body)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON ({e})")))?;
    match value {
        Value::Object(_) => append_one(&app, value).await,
        Value::Array(items) => append_batch(&app, items).await,
        _ => Err(ApiError::invalid(
            "the request body must be an event object or an array of events",
        )),
    }
}

/// `POST /v1/events` of one event object.
async fn append_one(app: &Arc<App>, value: Value) -> Reply {
    append_event(app, ledger::parse_event_value(value)?).await
}

/// Appends one event parsed from a request body.
async fn append_event(app: &Arc<App>, event: ledger::NewEvent) -> Reply {
    let started = Instant::now();
    let result = app.ledger.append_async(event).await;
    app.metrics.append(
        started.elapsed().as_secs_f64(),
        result.as_ref().map_or(0, |r| u64::from(!r.duplicate)),
    );
    let result = result?;
    let status = if result.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    // Written straight from the result (a `Value` in between gives the same text).
    Ok((status, Json(result)).into_response())
}

/// `POST /v1/events` of an array of events, appended atomically.
async fn append_batch(app: &Arc<App>, items: Vec<Value>) -> Reply {
    let started = Instant::now();
    // Checked before parsing, for the HTTP status (413) and so that an oversized batch is
    // not parsed first; the sequencer enforces the same limit for every caller.
    if items.len() > BATCH_EVENTS_MAX {
        return Err(ApiError::too_large(format!(
            "a batch holds at most {BATCH_EVENTS_MAX} events, this one has {}; use POST /v1/import",
            items.len()
        )));
    }
    if items.is_empty() {
        return Err(ApiError::invalid("the batch holds no events"));
    }
    // "line N" in messages is the Nth element of the array.
    let events = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let line = i as u64 + 1;
            ledger::parse_event_value(item)
                .map(|e| (line, e))
                .map_err(|e| e.at_line(line))
        })
        .collect::<crate::Result<Vec<_>>>()?;
    let results = app.ledger.append_batch_async(events).await;
    let mut batch = BatchResult::default();
    if let Ok(results) = &results {
        batch.add(results);
    }
    app.metrics
        .append(started.elapsed().as_secs_f64(), batch.appended);
    let results = results?;
    let status = if batch.appended == 0 {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut value = to_json(&batch)?;
    value["results"] = to_json(&results)?;
    Ok(json_reply(status, value))
}

/// `POST /v1/import?preserve=true&batch_events=N`: an NDJSON body of any size, spooled to a
/// temporary file, then imported like `ordo import` (validated first: a bad line writes
/// nothing).
async fn import(State(app): State<Arc<App>>, query: QueryPairs, body: Body) -> Reply {
    let p = Params::new(query, &[&["preserve", "batch_events"]])?;
    let options = ImportOptions {
        preserve: p.flag("preserve")?,
        batch_events: p
            .number("batch_events")?
            .map_or(ledger::BATCH_EVENTS_DEFAULT, |n| n as usize),
        ..ImportOptions::default()
    };
    let spool = tempfile::NamedTempFile::new()
        .map_err(|e| ApiError::internal(format!("creating a spool file: {e}")))?;
    let file = spool
        .reopen()
        .map_err(|e| ApiError::internal(format!("opening the spool file: {e}")))?;
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = body.into_data_stream();
    let mut bytes: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if stalled(&e) {
                body_stalled()
            } else {
                ApiError::invalid(format!("reading the request body: {e}"))
            }
        })?;
        bytes += chunk.len() as u64;
        if bytes > IMPORT_BODY_BYTES_MAX {
            return Err(ApiError::too_large(format!(
                "an import body holds at most {IMPORT_BODY_BYTES_MAX} bytes"
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(format!("writing the spool file: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::internal(format!("writing the spool file: {e}")))?;
    let started = Instant::now();
    let result = blocking(&app, move |l| {
        ledger::import(l, spool.path(), &options, &NoProgress)
    })
    .await?;
    app.metrics
        .append(started.elapsed().as_secs_f64(), result.appended);
    Ok(json_reply(StatusCode::OK, to_json(result)?))
}

/// `GET /v1/events?from=P&to=P&as_of=T&limit=N`: the log, for catch-up readers and
/// `ordo export` through a server. The next page starts after the last position returned.
async fn log(State(app): State<Arc<App>>, query: QueryPairs) -> Reply {
    let p = Params::new(query, &[&["from", "to", "as_of", "limit"]])?;
    let from = Position(p.number("from")?.unwrap_or(1));
    let to = p.number("to")?.map(Position);
    let as_of = params::time_opt(Naming::Fields, "as_of", p.get("as_of"))?;
    let limit = p
        .number("limit")?
        .map_or(PAGE_EVENTS_DEFAULT, |n| n as usize);
    if limit == 0 || limit > PAGE_EVENTS_MAX {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {PAGE_EVENTS_MAX}, got {limit}"
        )));
    }
    let events = blocking(&app, move |l| {
        l.log(from, to, as_of)
            .take(limit)
            .map(|e| e.map(|e| e.envelope_json()))
            .collect::<crate::Result<Vec<Value>>>()
    })
    .await?;
    Ok(json_reply(StatusCode::OK, Value::Array(events)))
}

/// The order and time filters of `/v1/orders/{id}...`.
fn order_request(id: &str, query: QueryPairs) -> Result<(OrderId, Filter), ApiError> {
    let filter = Params::new(query, &[&TIME])?.filter()?;
    Ok((params::order_id(id)?, filter))
}

async fn order_state(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    query: QueryPairs,
) -> Reply {
    let (id, filter) = order_request(&id, query)?;
    let state = blocking(&app, move |l| l.state(&id, &filter)).await?;
    Ok(json_reply(StatusCode::OK, to_json(state)?))
}

async fn order_events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    query: QueryPairs,
) -> Reply {
    let (id, filter) = order_request(&id, query)?;
    let events = blocking(&app, move |l| l.history(&id, &filter)).await?;
    let rows = events.iter().map(|e| e.envelope_json()).collect();
    Ok(json_reply(StatusCode::OK, Value::Array(rows)))
}

async fn order_audit(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    query: QueryPairs,
) -> Reply {
    let (id, filter) = order_request(&id, query)?;
    let entries = blocking(&app, move |l| l.audit(&id, &filter)).await?;
    Ok(json_reply(StatusCode::OK, Value::Array(entries)))
}

/// `GET /v1/audit?actor=NAME&from=T&to=T`.
async fn actor_audit(State(app): State<Arc<App>>, query: QueryPairs) -> Reply {
    let p = Params::new(query, &[&["actor", "from", "to"]])?;
    let actor = params::actor(
        Naming::Fields,
        p.get("actor")
            .ok_or_else(|| ApiError::invalid("the parameter `actor` is required"))?,
    )?;
    let from = params::time_opt(Naming::Fields, "from", p.get("from"))?;
    let to = params::time_opt(Naming::Fields, "to", p.get("to"))?;
    let entries = blocking(&app, move |l| l.audit_actor(&actor, from, to)).await?;
    Ok(json_reply(StatusCode::OK, Value::Array(entries)))
}

async fn query_orders(State(app): State<Arc<App>>, query: QueryPairs) -> Reply {
    let p = Params::new(query, &[&TIME, &["status", "customer", "limit"]])?;
    let of = params::order_filter(
        Naming::Fields,
        p.get("status"),
        p.get("customer"),
        p.number("limit")?.map(|n| n as usize),
    )?;
    let filter = p.filter()?;
    let states = blocking(&app, move |l| l.query_orders(&of, &filter)).await?;
    Ok(json_reply(StatusCode::OK, to_json(states)?))
}

async fn query_customers(State(app): State<Arc<App>>, query: QueryPairs) -> Reply {
    let p = Params::new(query, &[&TIME, &["customer"]])?;
    let customer = params::customer(Naming::Fields, p.get("customer"))?;
    let filter = p.filter()?;
    let rows = blocking(&app, move |l| l.query_customers(customer.as_ref(), &filter)).await?;
    Ok(json_reply(StatusCode::OK, to_json(rows)?))
}

async fn query_revenue(State(app): State<Arc<App>>, query: QueryPairs) -> Reply {
    let p = Params::new(query, &[&TIME, &["by", "from", "to", "currency"]])?;
    let of = params::revenue_filter(
        Naming::Fields,
        p.get("by"),
        p.get("from"),
        p.get("to"),
        p.get("currency"),
    )?;
    let filter = p.filter()?;
    let rows = blocking(&app, move |l| l.query_revenue(&of, &filter)).await?;
    Ok(json_reply(StatusCode::OK, to_json(rows)?))
}

async fn query_statuses(State(app): State<Arc<App>>, query: QueryPairs) -> Reply {
    let filter = Params::new(query, &[&TIME])?.filter()?;
    let rows = blocking(&app, move |l| l.query_statuses(&filter)).await?;
    Ok(json_reply(StatusCode::OK, to_json(rows)?))
}

/// `GET /v1/replay?as_of=..`: the summary `ordo replay` prints.
async fn replay(State(app): State<Arc<App>>, query: QueryPairs) -> Reply {
    let filter = Params::new(query, &[&TIME])?.filter()?;
    if filter.is_unfiltered() {
        return Err(ApiError::invalid(
            "replay needs a point: as_of, valid_at or at_position",
        ));
    }
    let summary = blocking(&app, move |l| l.replay_summary(&filter, &NoProgress)).await?;
    Ok(json_reply(StatusCode::OK, summary.to_json()))
}

async fn snapshots(State(app): State<Arc<App>>, query: QueryPairs) -> Reply {
    Params::new(query, &[])?;
    let list = blocking(&app, |l| l.snapshots()).await?;
    Ok(json_reply(StatusCode::OK, to_json(list)?))
}

/// `GET /v1/verify`: 200 with the report whether or not the ledger verifies (`ok` says);
/// the check ran, the answer is its result.
async fn verify(State(app): State<Arc<App>>, query: QueryPairs) -> Reply {
    Params::new(query, &[])?;
    let report = blocking(&app, |l| l.verify(&NoProgress)).await?;
    Ok(json_reply(StatusCode::OK, to_json(report)?))
}

async fn stats(State(app): State<Arc<App>>, query: QueryPairs) -> Reply {
    Params::new(query, &[])?;
    let stats = blocking(&app, |l| l.stats()).await?;
    Ok(json_reply(StatusCode::OK, to_json(stats)?))
}

async fn health(State(app): State<Arc<App>>) -> Reply {
    let head = *app
        .ledger
        .committed()
        .ok_or_else(|| ApiError::from(Error::Storage("the writer has stopped".to_owned())))?
        .borrow();
    Ok(json_reply(
        StatusCode::OK,
        json!({"status": "ok", "head_position": head}),
    ))
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
