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
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::config::Config;
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

/// `/health` and `/metrics`, for load balancers, operators and Prometheus.
pub(crate) fn status_routes(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
}

/// Liveness for load balancers and operators: 200 while the gateway serves.
async fn health(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let body = serde_json::json!({
        "status": "ok",
        "connections": metrics.connections(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}

/// What a path no endpoint serves gets.
pub(crate) async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "Not found\n")
}

#[cfg(test)]
mod tests {
    use super::*;

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
