//! The application service API's routes (the homeserver calls them): transactions of events,
//! and the user and room queries. Each needs the homeserver's token (`Authorization: Bearer`,
//! or the older `access_token` query parameter): none is 401 `M_UNAUTHORIZED`, a wrong one 403
//! `M_FORBIDDEN`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::{Value, json};
use tracing::{debug, warn};

use super::Bridge;

/// The routes, at the paths of the application service API (v1).
pub(crate) fn routes(bridge: Arc<Bridge>) -> Router {
    Router::new()
        .route("/_matrix/app/v1/transactions/{txn}", put(transaction))
        .route("/_matrix/app/v1/users/{user}", get(user))
        .route("/_matrix/app/v1/rooms/{alias}", get(room))
        .with_state(bridge)
}

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, errcode: &str, text: &str) -> Response {
    answer(status, json!({"errcode": errcode, "error": text}))
}

/// The refusal of a request that does not carry the homeserver's token.
fn unauthorized(bridge: &Bridge, headers: &HeaderMap, query: Option<&str>) -> Option<Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let legacy = query.and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("access_token="))
    });
    match bearer.or(legacy) {
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            "the homeserver's token is missing",
        )),
        Some(token) if constant_time_eq(token.as_bytes(), bridge.config.hs_token.as_bytes()) => {
            None
        }
        Some(_) => Some(error(
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
            "the homeserver's token is wrong",
        )),
    }
}

/// Compares secrets without an early exit that would tell how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// `PUT /transactions/{txn}`: the events are taken in order, once per transaction id.
async fn transaction(
    State(bridge): State<Arc<Bridge>>,
    Path(txn): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = unauthorized(&bridge, &headers, query.as_deref()) {
        return refusal;
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "M_NOT_JSON",
            "the transaction is not JSON",
        );
    };
    let Some(events) = parsed.get("events").and_then(Value::as_array) else {
        return error(
            StatusCode::BAD_REQUEST,
            "M_BAD_JSON",
            "the transaction has no events",
        );
    };
    if bridge.events.capacity() < events.len() {
        // Taken later: the homeserver sends the transaction again.
        warn!(%txn, "a transaction refused for now: the bridge's queue is full");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "M_LIMIT_EXCEEDED",
            "the bridge is busy",
        );
    }
    // Events are taken once by their ids, not by the transaction's: a homeserver sends a
    // transaction again when our answer was lost, and Synapse numbers its transactions afresh
    // after a restart (a new transaction with an old id).
    let mut again = 0;
    for event in events {
        let id = event.get("event_id").and_then(Value::as_str);
        if id.is_some_and(|id| !bridge.first_time(id)) {
            again += 1;
            continue;
        }
        if bridge.events.try_send(event.clone()).is_err() {
            warn!(%txn, "an event dropped: the bridge's queue is full");
        }
    }
    if again > 0 {
        debug!(%txn, again, "events seen before are not taken again");
    }
    answer(StatusCode::OK, json!({}))
}

/// `GET /users/{user}`: a ghost of ours is registered, and so exists; others are not ours.
async fn user(
    State(bridge): State<Arc<Bridge>>,
    Path(user): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = unauthorized(&bridge, &headers, query.as_deref()) {
        return refusal;
    }
    if bridge.ghost(&user).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            "not a user of this bridge",
        );
    }
    match bridge.register(&user).await {
        Ok(()) => answer(StatusCode::OK, json!({})),
        Err(failure) => {
            warn!(%user, "a ghost cannot be registered: {failure}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "the ghost cannot be registered",
            )
        }
    }
}

/// `GET /rooms/{alias}`: the bridge makes no rooms for aliases.
async fn room(
    State(bridge): State<Arc<Bridge>>,
    Path(_alias): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = unauthorized(&bridge, &headers, query.as_deref()) {
        return refusal;
    }
    error(
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
        "this bridge has no room aliases",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(constant_time_eq(b"hs-token", b"hs-token"));
        assert!(!constant_time_eq(b"hs-token", b"hs-tokeN"));
        assert!(!constant_time_eq(b"hs-token", b"hs-token-longer"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
