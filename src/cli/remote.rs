//! `--server URL` (or `ORDO_SERVER`): the CLI as a client of `ordo serve`. Each command
//! parses and checks its arguments exactly as it does locally (same messages), asks the
//! server instead of opening the directory, and prints the answer with the same columns.
//! Server errors come back as `{"error":{"kind",..}}` and leave with the same exit codes.

use std::io::Read;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use ordo::Error;

use super::Cli;

/// Largest response read into memory (a page of the log, a large query).
const RESPONSE_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// A connection to a server.
pub struct Remote {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

/// The server the command talks to, if `--server` was given.
pub fn connect(cli: &Cli) -> Result<Option<Remote>, Error> {
    let Some(url) = cli.server.as_deref() else {
        return Ok(None);
    };
    if !url.starts_with("http://") {
        return Err(Error::InvalidInput(format!(
            "--server {url:?} must be an http:// URL (ordo serves plain HTTP)"
        )));
    }
    let token = cli
        .token_file
        .as_deref()
        .map(ordo::server::read_token)
        .transpose()?;
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    Ok(Some(Remote {
        agent,
        base: url.trim_end_matches('/').to_owned(),
        token,
    }))
}

/// A path segment (an order id) percent-encoded.
pub fn segment(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

/// Query parameters: names and values.
pub type Query = Vec<(&'static str, String)>;

/// The refusal for commands that only run on the directory.
pub fn local_only(what: &str) -> Error {
    Error::InvalidInput(format!(
        "{what} is not available through --server; run it on the ledger directory (stop the server first for commands that write)"
    ))
}

impl Remote {
    fn url(&self, path: &str, query: &Query) -> String {
        let mut url = format!("{}{path}", self.base);
        for (i, (name, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(name);
            url.push('=');
            // Every non-alphanumeric byte encoded: a `+` in a time offset must not become
            // a space.
            url.push_str(&utf8_percent_encode(value, NON_ALPHANUMERIC).to_string());
        }
        url
    }

    fn answer(
        &self,
        url: &str,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, Error> {
        let unavailable = |e: &dyn std::fmt::Display| Error::Remote {
            kind: "unavailable".to_owned(),
            message: format!("cannot reach the server at {url}: {e}"),
        };
        let mut response = sent.map_err(|e| unavailable(&e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(RESPONSE_BYTES_MAX)
            .read_to_string()
            .map_err(|e| unavailable(&e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| Error::Remote {
            kind: "unavailable".to_owned(),
            message: format!("the server at {url} answered HTTP {status} without JSON ({e})"),
        })?;
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let error = &value["error"];
        Err(Error::Remote {
            kind: error["kind"].as_str().unwrap_or("unavailable").to_owned(),
            message: error["message"]
                .as_str()
                .map_or_else(|| format!("HTTP {status} from {url}"), str::to_owned),
        })
    }

    fn authorize<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    /// `GET path?query`.
    pub fn get(&self, path: &str, query: &Query) -> Result<Value, Error> {
        let url = self.url(path, query);
        let sent = self.authorize(self.agent.get(&url)).call();
        self.answer(&url, sent)
    }

    /// `GET` of an endpoint answering an array of rows.
    pub fn rows(&self, path: &str, query: &Query) -> Result<Vec<Value>, Error> {
        match self.get(path, query)? {
            Value::Array(rows) => Ok(rows),
            other => Err(Error::Remote {
                kind: "unavailable".to_owned(),
                message: format!("expected rows from {path}, got {other}"),
            }),
        }
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value, Error> {
        let url = self.url(path, &Vec::new());
        let sent = self
            .authorize(self.agent.post(&url))
            .content_type("application/json")
            .send(body.to_string());
        self.answer(&url, sent)
    }

    /// `POST path?query` streaming `body` (an NDJSON import).
    pub fn post_stream(
        &self,
        path: &str,
        query: &Query,
        body: &mut dyn Read,
    ) -> Result<Value, Error> {
        let url = self.url(path, query);
        let sent = self
            .authorize(self.agent.post(&url))
            .content_type("application/x-ndjson")
            .send(ureq::SendBody::from_reader(body));
        self.answer(&url, sent)
    }
}
