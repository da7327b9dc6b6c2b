//! What every request must show before a handler runs, checked in this order:
//!
//! 1. `Host` names this server: its own IP address (any address when bound to all of them),
//!    `localhost` on a loopback bind, or a name given with `--allow-host`; else `421`. A
//!    page whose domain is made to resolve to 127.0.0.1 (DNS rebinding) sends its own
//!    domain as `Host`.
//! 2. An `Origin`, when present, is this server's own (`http://` + its `Host`) or one given
//!    with `--allow-origin`; else `403`. Browsers send `Origin` with a page's requests;
//!    ordo's own clients send none.
//! 3. The bearer token, when the server has one; else `401`.
//! 4. A `POST` body declares its media type: `application/json`, or `application/x-ndjson`
//!    for `/v1/import`; else `415`. A browser sends `text/plain` and form types without asking
//!    first (no CORS preflight), so any page could otherwise write to a local ledger.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;
use super::reply::ApiError;

/// The names and origins a server accepts besides its own address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins {
    /// Extra `Host` names (without port), compared case-insensitively.
    pub hosts: Vec<String>,
    /// Extra `Origin` values (`scheme://host[:port]`), compared case-insensitively.
    pub origins: Vec<String>,
}

/// The guard of every route (see the module docs).
pub(super) async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    match check(
        &app,
        request.method(),
        request.uri().path(),
        request.headers(),
    ) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

fn check(app: &App, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let host = headers.get(header::HOST).map(|h| h.to_str().unwrap_or(""));
    if let Some(host) = host
        && !host_allowed(app, host)
    {
        return Err(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "forbidden",
            format!(
                "Host {host:?} does not name this server ({}); start it with --allow-host NAME to accept that name",
                app.listen
            ),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !origin_allowed(app, host, origin) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "requests from web pages are refused (Origin {origin:?}); start the server with --allow-origin ORIGIN to accept one"
                ),
            ));
        }
    }
    if !app.authorized(headers.get(header::AUTHORIZATION).map(|v| v.as_bytes())) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this server needs `Authorization: Bearer TOKEN` (the CLI sends the token of --token-file)",
        ));
    }
    if method == Method::POST {
        let wanted = if path == "/v1/import" {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        let given = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !media_type_is(given, wanted) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_input",
                format!("POST {path} takes Content-Type: {wanted} (this request said {given:?})"),
            ));
        }
    }
    Ok(())
}

/// `given` is `wanted`, with any parameters (`; charset=utf-8`).
fn media_type_is(given: &str, wanted: &str) -> bool {
    given
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(wanted))
}

/// The host part of `host[:port]` or `[v6]:port`.
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match authority.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => authority,
    }
}

fn host_allowed(app: &App, host: &str) -> bool {
    let name = host_name(host);
    if let Ok(ip) = name.parse::<IpAddr>() {
        return allows_ip(app.listen, ip);
    }
    (name.eq_ignore_ascii_case("localhost") && app.listen.ip().is_loopback())
        || app
            .origins
            .hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
}

/// An IP-literal `Host` cannot come from DNS rebinding; it must still be the bound address
/// unless the server listens on every address.
fn allows_ip(listen: SocketAddr, ip: IpAddr) -> bool {
    listen.ip().is_unspecified() || listen.ip() == ip
}

fn origin_allowed(app: &App, host: Option<&str>, origin: &str) -> bool {
    let own = host.is_some_and(|h| {
        origin
            .strip_prefix("http://")
            .is_some_and(|authority| authority.eq_ignore_ascii_case(h))
    });
    own || app
        .origins
        .origins
        .iter()
        .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_split_from_ports_and_brackets() {
        assert_eq!(host_name("127.0.0.1:7411"), "127.0.0.1");
        assert_eq!(host_name("[::1]:7411"), "::1");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("evil.example.com:80"), "evil.example.com");
    }

    #[test]
    fn media_types_allow_parameters_and_any_case() {
        assert!(media_type_is("application/json", "application/json"));
        assert!(media_type_is(
            "Application/JSON; charset=utf-8",
            "application/json"
        ));
        assert!(!media_type_is("text/plain", "application/json"));
        assert!(!media_type_is("", "application/json"));
        assert!(!media_type_is("application/jsonx", "application/json"));
    }

    #[test]
    fn an_ip_host_must_be_the_bound_address_unless_bound_to_all() {
        let loopback: SocketAddr = "127.0.0.1:7411".parse().expect("addr");
        let any: SocketAddr = "0.0.0.0:7411".parse().expect("addr");
        let other: IpAddr = "10.0.0.5".parse().expect("ip");
        assert!(allows_ip(loopback, loopback.ip()));
        assert!(!allows_ip(loopback, other));
        assert!(allows_ip(any, other));
    }
}
