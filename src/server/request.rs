//! What the handlers share to read a request: its query parameters, checked strictly
//! (`Params`), and the one way to run a ledger call off the async threads (`blocking`).

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;

use super::App;
use super::reply::ApiError;
use crate::ledger::params::{self, Naming};
use crate::ledger::{Filter, Ledger};

/// Runs a ledger call on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    app: &App,
    work: impl FnOnce(&Ledger) -> crate::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    let ledger = app.ledger.clone();
    tokio::task::spawn_blocking(move || work(&ledger))
        .await
        .map_err(|e| ApiError::internal(format!("a request task failed: {e}")))?
        .map_err(ApiError::from)
}

/// A request's query parameters: only the names an endpoint takes, each at most once. A
/// misspelt time filter must not be ignored: the answer would silently be "now".
pub(super) struct Params(Vec<(String, String)>);

pub(super) const TIME: [&str; 3] = ["as_of", "valid_at", "at_position"];

impl Params {
    pub(super) fn new(
        query: Result<Query<Vec<(String, String)>>, QueryRejection>,
        allowed: &[&[&str]],
    ) -> Result<Params, ApiError> {
        let Query(pairs) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
        let names: Vec<&str> = allowed.iter().flat_map(|a| a.iter().copied()).collect();
        for (i, (name, _)) in pairs.iter().enumerate() {
            if !names.contains(&name.as_str()) {
                let takes = if names.is_empty() {
                    "no parameters".to_owned()
                } else {
                    names.join(", ")
                };
                return Err(ApiError::invalid(format!(
                    "unknown parameter `{name}`; this endpoint takes {takes}"
                )));
            }
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::invalid(format!("parameter `{name}` given twice")));
            }
        }
        Ok(Params(pairs))
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn number(&self, name: &str) -> Result<Option<u64>, ApiError> {
        Ok(self
            .get(name)
            .map(|v| params::number(Naming::Fields, name, v))
            .transpose()?)
    }

    pub(super) fn filter(&self) -> Result<Filter, ApiError> {
        Ok(params::filter(
            Naming::Fields,
            self.get("as_of"),
            self.get("valid_at"),
            self.number("at_position")?,
        )?)
    }

    pub(super) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(ApiError::invalid(format!(
                "{name} {other:?} is not true or false"
            ))),
        }
    }
}

pub(super) type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;
