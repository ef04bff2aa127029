//! The admission of WebSocket connections, shared by every WebSocket endpoint of the gateway
//! (sylkRTC and the other signalling protocols): the origin check, the `max_connections` slots,
//! the buffer and message size limits, the shutdown signal and the tracking of connection
//! tasks, so that shutdown can wait for their close frames.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::WebSocketConfig;
use crate::metrics::{Metrics, Rejection};

/// The tungstenite read buffer. Its default (128 KiB) is allocated up front for every
/// connection; requests are a few hundred bytes, and larger messages grow it on demand.
const READ_BUFFER: usize = 4 * 1024;
/// How many outgoing bytes are gathered before a write; nothing is allocated until used.
const WRITE_BUFFER: usize = 8 * 1024;

/// What every WebSocket endpoint checks and holds for its connections.
#[derive(Debug)]
pub(crate) struct Gate {
    /// The limits and keepalive of the WebSocket endpoints.
    pub(crate) websocket: WebSocketConfig,
    web_origins: Vec<String>,
    pub(crate) metrics: Arc<Metrics>,
    /// One permit per open WebSocket connection: this is the `max_connections` limit.
    slots: Arc<Semaphore>,
    /// Cancelled at shutdown, so that every connection closes with code 1001.
    shutdown: CancellationToken,
    /// Cancelled when the gateway begins draining: new connections are refused (503), and
    /// those without calls close (1012).
    draining: CancellationToken,
    /// The connection tasks, so that shutdown can wait for their close frames.
    tracker: TaskTracker,
    /// Numbers connections for the logs (and their registrations in the SIP driver).
    next_id: AtomicU64,
}

impl Gate {
    pub(crate) fn new(
        websocket: &WebSocketConfig,
        web_origins: &[String],
        metrics: Arc<Metrics>,
    ) -> Gate {
        Gate {
            websocket: websocket.clone(),
            web_origins: web_origins.to_vec(),
            metrics,
            slots: Arc::new(Semaphore::new(websocket.max_connections)),
            shutdown: CancellationToken::new(),
            draining: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Refuses (403) an upgrade from a page whose `Origin` is not allowed.
    pub(crate) fn check_origin(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
    ) -> Result<(), Box<Response>> {
        let origin = headers.get(header::ORIGIN);
        if origin_allowed(&self.web_origins, origin) {
            return Ok(());
        }
        self.metrics.rejected(Rejection::Origin);
        let shown = origin
            .and_then(|value| value.to_str().ok())
            .unwrap_or("(none)");
        info!(%peer, origin = shown, "upgrade refused: origin not allowed");
        Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                format!("Origin not allowed: {shown}\n"),
            )
                .into_response(),
        ))
    }

    /// A connection's slot under `max_connections`, or the 503 that refuses the upgrade. The
    /// connection holds it for its lifetime.
    pub(crate) fn take_slot(
        &self,
        peer: SocketAddr,
    ) -> Result<OwnedSemaphorePermit, Box<Response>> {
        if self.draining.is_cancelled() {
            self.metrics.rejected(Rejection::Draining);
            info!(%peer, "upgrade refused: the gateway is draining");
            return Err(Box::new(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The gateway is draining: connect to another one\n",
                )
                    .into_response(),
            ));
        }
        let limit = self.websocket.max_connections;
        self.slots.clone().try_acquire_owned().map_err(|_| {
            self.metrics.rejected(Rejection::Capacity);
            warn!(%peer, limit, "upgrade refused: too many connections");
            Box::new(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("Too many connections (limit {limit})\n"),
                )
                    .into_response(),
            )
        })
    }

    /// The upgrade with the buffers and the message size limit of every WebSocket endpoint.
    pub(crate) fn sized(&self, upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
        let limit = self.websocket.max_message_size;
        upgrade
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BUFFER)
            .max_message_size(limit)
            .max_frame_size(limit)
    }

    /// Runs a connection's task, tracked so that shutdown waits for it.
    pub(crate) fn track<F>(&self, task: F) -> impl Future<Output = F::Output> + use<F>
    where
        F: Future,
    {
        self.tracker.track_future(task)
    }

    /// A new connection's number.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Cancelled once the gateway drains.
    pub(crate) fn draining(&self) -> &CancellationToken {
        &self.draining
    }

    /// Resolves once shutdown has begun.
    pub(crate) fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Begins shutdown: every connection closes with 1001. Waits at most `grace` for their
    /// tasks; how many were still open then.
    pub(crate) async fn close_all(&self, grace: std::time::Duration) -> usize {
        self.shutdown.cancel();
        self.tracker.close();
        match tokio::time::timeout(grace, self.tracker.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tracker.len(),
        }
    }
}

/// Why a WebSocket read failed, and the close code that says so to the client when one makes
/// sense: 1009 for a message over `limit`, 1007 for invalid UTF-8, 1002 for a protocol error.
pub(crate) fn error_close(error: axum::Error, limit: usize) -> (String, Option<u16>) {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => {
            (format!("message too big (limit {limit} bytes)"), Some(1009))
        }
        Some(tungstenite::Error::Utf8(_)) => ("invalid UTF-8 in a text frame".into(), Some(1007)),
        Some(tungstenite::Error::Protocol(violation)) => (violation.to_string(), Some(1002)),
        _ => (inner.to_string(), None),
    }
}

/// Whether a browser page of `origin` may connect. A missing or `null` Origin (non-browser
/// clients, sandboxed pages) passes only when any origin is allowed, as in the reference.
fn origin_allowed(allowed: &[String], origin: Option<&HeaderValue>) -> bool {
    if allowed.iter().any(|entry| entry == "*") {
        return true;
    }
    let Some(origin) = origin.and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    origin != "null"
        && allowed
            .iter()
            .any(|entry| entry.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &[&str], origin: Option<&str>) -> bool {
        let list: Vec<String> = list.iter().map(|entry| (*entry).to_owned()).collect();
        let origin = origin.map(|text| HeaderValue::from_str(text).unwrap());
        origin_allowed(&list, origin.as_ref())
    }

    #[test]
    fn origins() {
        assert!(allowed(&["*"], None));
        assert!(allowed(&["*"], Some("null")));
        assert!(allowed(&["*"], Some("https://anything.example")));
        let list = ["https://phone.example.com", "http://127.0.0.1:8000/"];
        assert!(allowed(&list, Some("https://phone.example.com")));
        assert!(allowed(&list, Some("https://PHONE.example.com")));
        assert!(allowed(&list, Some("http://127.0.0.1:8000")));
        assert!(!allowed(&list, Some("http://phone.example.com")));
        assert!(!allowed(&list, Some("https://phone.example.com.evil.org")));
        assert!(!allowed(&list, Some("null")));
        assert!(!allowed(&list, None));
    }

    /// Slots are the `max_connections` limit: the one past it is refused with 503, and a
    /// released slot is taken again.
    #[test]
    fn slots_limit_connections() {
        let websocket = WebSocketConfig {
            max_connections: 2,
            ..crate::config::Config::default().websocket
        };
        let gate = Gate::new(&websocket, &["*".to_owned()], Arc::default());
        let peer = SocketAddr::from(([127, 0, 0, 1], 9));
        let first = gate.take_slot(peer).expect("a slot");
        let _second = gate.take_slot(peer).expect("a slot");
        let refused = gate.take_slot(peer).expect_err("no third slot");
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        assert!(gate.take_slot(peer).is_ok());
        assert!(gate.metrics.render().contains("reason=\"capacity\"} 1"));
    }
}
