//! The HTTP side shared by every endpoint: which paths the configuration claims (a clash is
//! refused before anything binds), the admission of WebSocket connections ([`gate`]), the web
//! phone's files ([`web`]), `/health` and `/metrics`. The endpoints' routers are merged by the
//! server, each with its own state.

pub(crate) mod client;
pub(crate) mod gate;
pub(crate) mod web;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tracing::{info, warn};

use crate::config::Config;
use crate::drain::Drain;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Cuttlefish's paths: the two WebSocket endpoints, `/devices` and `/infra_config`.
pub(crate) const CUTTLEFISH_PATHS: [&str; 4] = [
    "/register_device",
    "/connect_client",
    "/devices",
    "/infra_config",
];

/// Every path the router serves for `config`, with what serves it: the built-in ones first,
/// so that a clash names the configurable one.
fn planned_routes(config: &Config) -> Vec<(String, &'static str)> {
    let mut routes = vec![
        ("/health".to_owned(), "the built-in /health"),
        ("/metrics".to_owned(), "the built-in /metrics"),
        ("/admin/drain".to_owned(), "the built-in /admin/drain"),
    ];
    routes.extend(web::paths().map(|path| (path.to_owned(), "the web phone")));
    if config.cuttlefish.enabled {
        routes.extend(
            CUTTLEFISH_PATHS
                .iter()
                .map(|path| ((*path).to_owned(), "the Cuttlefish endpoints")),
        );
    }
    routes.push((config.websocket.path.clone(), "websocket.path"));
    if config.nextrtc.enabled {
        routes.push((config.nextrtc.path.clone(), "nextrtc.path"));
    }
    if config.webrtcsink.enabled {
        routes.push((config.webrtcsink.path.clone(), "webrtcsink.path"));
    }
    routes
}

/// Refuses a configuration in which two endpoints claim one path (the router could not be
/// built): at start-up and by `--check-config`.
pub(crate) fn check_routes(config: &Config) -> Result<()> {
    let mut taken = std::collections::HashMap::new();
    for (path, owner) in planned_routes(config) {
        if let Some(first) = taken.insert(path.clone(), owner) {
            return Err(Error::ConfigInvalid(format!(
                "{owner} {path:?} is already a route of {first}"
            )));
        }
    }
    Ok(())
}

/// What the status routes read.
#[derive(Clone)]
pub(crate) struct Status {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) drain: Drain,
    /// This instance's id.
    pub(crate) instance: Arc<str>,
    /// The bearer token of `/admin/drain` (empty: the route answers 404).
    pub(crate) admin_token: Arc<str>,
}

/// `/health`, `/metrics` and `/admin/drain`, for load balancers, operators and Prometheus.
pub(crate) fn status_routes(status: Status) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(render_metrics))
        .route("/admin/drain", post(admin_drain))
        .with_state(status)
}

/// For load balancers and operators: 200 while the gateway takes new connections and calls,
/// 503 while it drains (its open connections and calls go on).
async fn health(State(status): State<Status>) -> impl IntoResponse {
    let draining = status.drain.is_draining();
    let body = serde_json::json!({
        "status": if draining { "draining" } else { "ok" },
        "instance": &*status.instance,
        "connections": status.metrics.connections(),
        "calls": status.metrics.calls(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    let code = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn render_metrics(State(status): State<Status>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        status.metrics.render(),
    )
}

/// `POST /admin/drain` with `Authorization: Bearer <[instance] admin_token>`: begins draining,
/// as SIGTERM does (202; again: 200). Without a configured token the route does not exist.
async fn admin_drain(State(status): State<Status>, headers: HeaderMap) -> impl IntoResponse {
    if status.admin_token.is_empty() {
        return (StatusCode::NOT_FOUND, "Not found\n".to_owned());
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same_secret(given.as_bytes(), status.admin_token.as_bytes()) {
        warn!("POST /admin/drain refused: wrong or missing token");
        return (StatusCode::UNAUTHORIZED, "Unauthorized\n".to_owned());
    }
    if status.drain.begin() {
        info!("POST /admin/drain: draining");
        (StatusCode::ACCEPTED, "Draining\n".to_owned())
    } else {
        (StatusCode::OK, "Already draining\n".to_owned())
    }
}

/// Compares a secret in time that does not depend on where the first difference is.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

/// What a path no endpoint serves gets.
pub(crate) async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "Not found\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcdeF", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcde", b"0123456789abcdef"));
        assert!(!same_secret(b"", b"0123456789abcdef"));
    }

    /// A path two endpoints claim is refused with both named; distinct paths pass.
    #[test]
    fn paths_claimed_twice_are_refused() {
        assert!(check_routes(&Config::default()).is_ok());
        for (text, needle) in [
            (
                "[websocket]\npath = \"/metrics\"",
                "websocket.path \"/metrics\" is already a route of the built-in /metrics",
            ),
            ("[nextrtc]\npath = \"/webrtcgateway/ws\"", "nextrtc.path"),
            ("[webrtcsink]\npath = \"/signaling\"", "webrtcsink.path"),
            (
                "[webrtcsink]\npath = \"/devices\"",
                "the Cuttlefish endpoints",
            ),
            ("[nextrtc]\npath = \"/settings.json\"", "the web phone"),
        ] {
            let config = Config::from_toml(text).expect("parses");
            let error = check_routes(&config).unwrap_err().to_string();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
        // A disabled endpoint claims nothing.
        let config =
            Config::from_toml("[webrtcsink]\nenabled = false\npath = \"/signaling\"").unwrap();
        assert!(check_routes(&config).is_ok());
    }
}
