//! The proof endpoints (product.md section 9): `GET /v1/checkpoint`,
//! `/v1/proof/inclusion`, `/v1/proof/consistency` and `/v1/orders/{id}/evidence`, with the
//! CLI's JSON. Checkpoints and bundles are signed when the server was given `--key`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::App;
use super::api::{json_reply, to_json};
use super::reply::ApiError;
use super::request::{Params, QueryPairs, blocking};
use crate::error::Error;
use crate::ledger::params;

type Reply = Result<Response, ApiError>;

fn required(params: &Params, name: &str) -> Result<u64, ApiError> {
    params.number(name)?.ok_or_else(|| {
        ApiError::from(Error::InvalidInput(format!(
            "parameter `{name}` is required"
        )))
    })
}

pub(super) async fn checkpoint(State(app): State<Arc<App>>, query: QueryPairs) -> Reply {
    let size = Params::new(query, &[&["tree_size"]])?.number("tree_size")?;
    let signer = app.signer.clone();
    let checkpoint = blocking(&app, move |l| l.checkpoint(size, signer.as_deref())).await?;
    Ok(json_reply(StatusCode::OK, to_json(checkpoint)?))
}

pub(super) async fn inclusion(State(app): State<Arc<App>>, query: QueryPairs) -> Reply {
    let params = Params::new(query, &[&["position", "tree_size"]])?;
    let (position, size) = (required(&params, "position")?, params.number("tree_size")?);
    let proof = blocking(&app, move |l| l.prove_inclusion(position, size)).await?;
    Ok(json_reply(StatusCode::OK, to_json(proof)?))
}

pub(super) async fn consistency(State(app): State<Arc<App>>, query: QueryPairs) -> Reply {
    let params = Params::new(query, &[&["old_size", "tree_size"]])?;
    let (old, size) = (required(&params, "old_size")?, params.number("tree_size")?);
    let proof = blocking(&app, move |l| l.prove_consistency(old, size)).await?;
    Ok(json_reply(StatusCode::OK, to_json(proof)?))
}

pub(super) async fn evidence(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    query: QueryPairs,
) -> Reply {
    let size = Params::new(query, &[&["tree_size"]])?.number("tree_size")?;
    let id = params::order_id(&id)?;
    let signer = app.signer.clone();
    let bundle = blocking(&app, move |l| l.prove_order(&id, size, signer.as_deref())).await?;
    Ok(json_reply(StatusCode::OK, to_json(bundle)?))
}
