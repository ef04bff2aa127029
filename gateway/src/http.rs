//! The HTTP routes: the WebSocket endpoints (sylkRTC, NextRTC), the web phone, `/health` and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::server::Shared;
use crate::{seeds, web, ws};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut router = web::routes(Router::new());
    if shared.nextrtc.is_some() {
        router = router.route(
            &shared.nextrtc_path,
            get(seeds::upgrade::<{ seeds::NEXTRTC }>),
        );
    }
    if shared.webrtcsink.is_some() {
        router = router.route(
            &shared.webrtcsink_path,
            get(seeds::upgrade::<{ seeds::WEBRTCSINK }>),
        );
    }
    if shared.cuttlefish.is_some() {
        router = seeds::cuttlefish_routes(router);
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
