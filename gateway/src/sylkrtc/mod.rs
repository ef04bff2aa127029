//! The sylkRTC WebSocket endpoint: the HTTP upgrade (origin, subprotocol, connection limit) and
//! the task of each connection, which runs the socket's [`pump`] around the [`session`]
//! handler, whose decisions are the sans-IO [`Connection`].

mod connection;
mod pump;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocket;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use protocol::Version;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument, debug, info, info_span};

use crate::call::CallServices;
use crate::http::gate::Gate;
use crate::metrics::Rejection;
use connection::Connection;
pub(crate) use connection::SipDomains;

/// What the sylkRTC endpoint's connections use: the WebSocket admission, the call services,
/// and the SIP domains accounts may belong to.
#[derive(Debug)]
pub(crate) struct Sylkrtc {
    pub(crate) gate: Arc<Gate>,
    pub(crate) calls: Arc<CallServices>,
    pub(crate) domains: Arc<SipDomains>,
    /// The message store.
    pub(crate) storage: Arc<crate::storage::Storage>,
    /// Which connections hold which accounts.
    pub(crate) devices: Arc<crate::devices::Devices>,
    /// Messages within the local domain, when there is one.
    pub(crate) post: Option<crate::messaging::local::Post>,
    /// The largest message content taken (`[storage] max_message_size`).
    pub(crate) max_message_size: usize,
}

impl Sylkrtc {
    /// The endpoint's route, at `websocket.path`.
    pub(crate) fn routes(self: Arc<Self>) -> Router {
        let path = self.gate.websocket.path.clone();
        Router::new().route(&path, get(upgrade)).with_state(self)
    }
}

/// `GET <websocket.path>`: checks the upgrade, then hands the socket to a connection task.
async fn upgrade(
    State(sylkrtc): State<Arc<Sylkrtc>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let gate = &sylkrtc.gate;
    if let Err(refused) = gate.check_origin(peer, &headers) {
        return *refused;
    }
    let upgrade = upgrade.protocols(Version::PREFERENCE.map(Version::subprotocol));
    let Some(version) = upgrade
        .selected_protocol()
        .and_then(|name| name.to_str().ok())
        .and_then(Version::from_subprotocol)
    else {
        gate.metrics.rejected(Rejection::Subprotocol);
        info!(%peer, "upgrade refused: no sylkRTC subprotocol offered");
        return (
            StatusCode::NOT_ACCEPTABLE,
            "No compatible protocol specified: offer sylkRTC-2 or sylkRTC-1 in Sec-WebSocket-Protocol\n",
        )
            .into_response();
    };
    let permit = match gate.take_slot(peer) {
        Ok(permit) => permit,
        Err(refused) => return *refused,
    };
    let sylkrtc = sylkrtc.clone();
    gate.sized(upgrade)
        .on_failed_upgrade(move |error| debug!(%peer, %error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| {
            let gate = sylkrtc.gate.clone();
            gate.track(serve(socket, sylkrtc, version, peer, permit))
        })
}

/// The task of one connection.
async fn serve(
    socket: WebSocket,
    sylkrtc: Arc<Sylkrtc>,
    version: Version,
    peer: SocketAddr,
    // Held for the connection's lifetime: it is the connection's slot under `max_connections`.
    _permit: OwnedSemaphorePermit,
) {
    let id = sylkrtc.gate.next_id();
    let span = info_span!("conn", id, %peer, protocol = version.subprotocol());
    async move {
        sylkrtc.gate.metrics.connection_opened();
        info!("connected");
        let (sink, stream) = socket.split();
        let ended = pump::drive(stream, sink, &sylkrtc.gate, version, |requests, out| {
            let connection = Connection::new(version, sylkrtc.domains.clone());
            session::handle_loop(connection, requests, out, &sylkrtc, id)
        })
        .await;
        sylkrtc.gate.metrics.connection_closed();
        info!("disconnected: {ended}");
    }
    .instrument(span)
    .await;
}
