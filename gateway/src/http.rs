//! The HTTP routes: the WebSocket endpoints (sylkRTC, NextRTC), the web phone, `/health` and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::server::Shared;
use crate::{signalling, web, ws};

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
            signalling::CUTTLEFISH_PATHS
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

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut router = web::routes(Router::new());
    if shared.nextrtc.is_some() {
        router = router.route(
            &shared.nextrtc_path,
            get(signalling::upgrade::<{ signalling::NEXTRTC }>),
        );
    }
    if shared.webrtcsink.is_some() {
        router = router.route(
            &shared.webrtcsink_path,
            get(signalling::upgrade::<{ signalling::WEBRTCSINK }>),
        );
    }
    if shared.cuttlefish.is_some() {
        router = signalling::cuttlefish_routes(router);
    }
    router
        .route(&shared.websocket.path, get(ws::upgrade))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(shared)
}

/// Liveness for load balancers and operators: 200 while the gateway serves.
async fn health(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let body = serde_json::json!({
        "status": "ok",
        "connections": shared.metrics.connections(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

async fn not_found() -> impl IntoResponse {
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
