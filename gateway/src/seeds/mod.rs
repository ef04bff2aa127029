//! The WebSocket signalling protocols of the project's seed documents, hosted beside sylkRTC:
//! NextRTC's conversation protocol on the gateway's own listener, and GStreamer's webrtc
//! signalling on a listener of its own (its clients connect to the root of a `wss://` URL).
//!
//! A protocol is a sans-IO hub (every connection's frames in, frames and closes for
//! connections out, `now` for its timers) owned by one task. Each WebSocket connection is a
//! task of its own: it passes the client's frames to the hub's task and writes back what the
//! hub has for it, through a bounded queue, so a client that does not read loses its own
//! messages and nobody else's. The connections share the sylkRTC endpoint's limits: the origin
//! check, `max_connections`, `max_message_size`, and shutdown.

pub(crate) mod gst;
pub(crate) mod nextrtc;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::{Instrument, debug, info, info_span};

use crate::config::NextRtcConfig;
use crate::metrics::Seed;
use crate::server::Shared;

/// Frames waiting for a slow client; past it, its frames are dropped.
const OUTBOUND_QUEUE: usize = 256;

/// What a hub's task has for a connection.
#[derive(Debug)]
enum Outbound {
    Text(String),
    /// Close with this code and reason.
    Close(u16, String),
}

/// What a connection tells its hub's task.
#[derive(Debug)]
enum Input {
    Connected {
        conn: u64,
        out: mpsc::Sender<Outbound>,
    },
    Text {
        conn: u64,
        text: String,
    },
    Closed {
        conn: u64,
    },
}

/// A running protocol endpoint: the way into its hub's task.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    seed: Seed,
    inputs: mpsc::UnboundedSender<Input>,
    /// Without traffic for this long, the connection gets a WebSocket Ping.
    keepalive: Option<Duration>,
    next_conn: Arc<AtomicU64>,
}

/// The runtime's clock (which tests may pause), as the hubs take it.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Starts the NextRTC hub's task (needs a tokio runtime).
pub(crate) fn start_nextrtc(config: &NextRtcConfig) -> Endpoint {
    use nextrtc::{Hub, Kind, Settings};
    let settings = Settings {
        ping_period: Duration::from_secs(config.ping_period),
        max_connection_setup_time: Duration::from_secs(config.max_connection_setup_time),
        join_only_to_existing: config.join_only_to_existing,
        default_type: Kind::parse(&config.default_conversation_type).unwrap_or(Kind::Mesh),
    };
    let hub = Hub::new(
        now(),
        settings,
        Box::new(|| uuid::Uuid::new_v4().to_string()),
    );
    let (inputs, receiver) = mpsc::unbounded_channel();
    tokio::spawn(run_nextrtc(hub, receiver).instrument(info_span!("nextrtc")));
    Endpoint {
        seed: Seed::NextRtc,
        inputs,
        keepalive: None,
        next_conn: Arc::new(AtomicU64::new(1)),
    }
}

/// The NextRTC hub's task: ends when every sender (the endpoint and its connections) is gone.
async fn run_nextrtc(mut hub: nextrtc::Hub, mut inputs: mpsc::UnboundedReceiver<Input>) {
    // Members are named by UUIDs, as a servlet container names WebSocket sessions.
    let mut members: HashMap<u64, String> = HashMap::new();
    let mut outs: HashMap<String, mpsc::Sender<Outbound>> = HashMap::new();
    loop {
        let deadline = tokio::time::Instant::from_std(hub.poll_timeout());
        tokio::select! {
            input = inputs.recv() => match input {
                None => return,
                Some(Input::Connected { conn, out }) => {
                    let id = uuid::Uuid::new_v4().simple().to_string();
                    hub.connect(id.clone());
                    members.insert(conn, id.clone());
                    outs.insert(id, out);
                }
                Some(Input::Text { conn, text }) => {
                    if let Some(id) = members.get(&conn) {
                        hub.receive(now(), id, &text);
                    }
                }
                Some(Input::Closed { conn }) => {
                    if let Some(id) = members.remove(&conn) {
                        hub.disconnect(&id);
                        outs.remove(&id);
                    }
                }
            },
            () = tokio::time::sleep_until(deadline) => hub.handle_timeout(now()),
        }
        while let Some((to, message)) = hub.poll_output() {
            let Some(out) = outs.get(&to) else { continue };
            let Ok(text) = serde_json::to_string(&message) else {
                continue;
            };
            if out.try_send(Outbound::Text(text)).is_err() {
                debug!(member = %to, signal = %message.signal, "dropped: the client does not read");
            }
        }
    }
}

/// Starts the GStreamer signalling hub's task (needs a tokio runtime).
pub(crate) fn start_gst(keepalive: Duration) -> Endpoint {
    let (inputs, receiver) = mpsc::unbounded_channel();
    tokio::spawn(run_gst(gst::Hub::default(), receiver).instrument(info_span!("gstreamer")));
    Endpoint {
        seed: Seed::GStreamer,
        inputs,
        keepalive: Some(keepalive),
        next_conn: Arc::new(AtomicU64::new(1)),
    }
}

async fn run_gst(mut hub: gst::Hub, mut inputs: mpsc::UnboundedReceiver<Input>) {
    let mut outs: HashMap<u64, mpsc::Sender<Outbound>> = HashMap::new();
    while let Some(input) = inputs.recv().await {
        match input {
            Input::Connected { conn, out } => {
                hub.connect(conn);
                outs.insert(conn, out);
            }
            Input::Text { conn, text } => hub.receive(conn, &text),
            Input::Closed { conn } => {
                hub.disconnect(conn);
                outs.remove(&conn);
            }
        }
        while let Some(output) = hub.poll_output() {
            match output {
                gst::Output::Send(conn, text) => {
                    if let Some(out) = outs.get(&conn)
                        && out.try_send(Outbound::Text(text)).is_err()
                    {
                        debug!(conn, "dropped: the client does not read");
                    }
                }
                gst::Output::Close(conn, code, reason) => {
                    if let Some(out) = outs.remove(&conn) {
                        let _ = out.try_send(Outbound::Close(code, reason));
                    }
                }
            }
        }
    }
}

/// `GET <nextrtc.path>`: checks the upgrade as the sylkRTC endpoint does, then serves it.
pub(crate) async fn nextrtc_upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    match shared.nextrtc.clone() {
        Some(endpoint) => accept(shared, endpoint, peer, &headers, upgrade),
        None => (StatusCode::NOT_FOUND, "Not found\n").into_response(),
    }
}

/// The routes of the GStreamer signalling listener: `/health`, and WebSocket on any other path.
pub(crate) fn gst_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(|| async { "OK\n" }))
        .fallback(gst_upgrade)
        .with_state(shared)
}

async fn gst_upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    match shared.gst.clone() {
        Some(endpoint) => accept(shared, endpoint, peer, &headers, upgrade),
        None => (StatusCode::NOT_FOUND, "Not found\n").into_response(),
    }
}

/// The sylkRTC endpoint's checks (origin, connection limit, message size), then the
/// connection's task.
fn accept(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    peer: SocketAddr,
    headers: &HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Err(refused) = crate::ws::check_origin(&shared, peer, headers) {
        return *refused;
    }
    let permit = match crate::ws::take_slot(&shared, peer) {
        Ok(permit) => permit,
        Err(refused) => return *refused,
    };
    let limit = shared.websocket.max_message_size;
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_failed_upgrade(move |error| debug!(%peer, %error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| {
            let tracker = shared.tracker.clone();
            tracker.track_future(serve(socket, shared, endpoint, peer, permit))
        })
}

/// One connection of a seed protocol.
async fn serve(
    socket: WebSocket,
    shared: Arc<Shared>,
    endpoint: Endpoint,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    let conn = endpoint.next_conn.fetch_add(1, Ordering::Relaxed);
    let seed = endpoint.seed;
    let span = info_span!("conn", protocol = seed.label(), conn, %peer);
    async move {
        shared.metrics.seed_opened(seed);
        info!("connected");
        let (out_tx, mut out_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let _ = endpoint.inputs.send(Input::Connected { conn, out: out_tx });
        let (mut sink, mut stream) = socket.split();
        let idle = endpoint.keepalive.unwrap_or(Duration::from_secs(86_400));
        let keepalive = tokio::time::sleep(idle);
        tokio::pin!(keepalive);
        let ended = loop {
            tokio::select! {
                () = shared.shutdown.cancelled() => {
                    let frame = CloseFrame { code: 1001, reason: "server shutting down".into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    break "shutdown".to_owned();
                }
                () = &mut keepalive, if endpoint.keepalive.is_some() => {
                    keepalive.as_mut().reset(tokio::time::Instant::now() + idle);
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        break "the socket can no longer be written".to_owned();
                    }
                }
                outbound = out_rx.recv() => match outbound {
                    None => break "the hub stopped".to_owned(),
                    Some(Outbound::Text(text)) => {
                        shared.metrics.seed_message(seed, false);
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            break "the socket can no longer be written".to_owned();
                        }
                    }
                    Some(Outbound::Close(code, reason)) => {
                        let frame = CloseFrame { code, reason: reason.clone().into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break format!("closed by the server ({code} {reason})");
                    }
                },
                frame = stream.next() => {
                    keepalive.as_mut().reset(tokio::time::Instant::now() + idle);
                    match frame {
                        None | Some(Ok(Message::Close(_))) => break "closed by the client".to_owned(),
                        Some(Ok(Message::Text(text))) => {
                            shared.metrics.seed_message(seed, true);
                            let _ = endpoint.inputs.send(Input::Text { conn, text: text.to_string() });
                        }
                        Some(Ok(Message::Binary(data))) => {
                            // Not part of either protocol: the hub sees it as unreadable text.
                            shared.metrics.seed_message(seed, true);
                            let text = String::from_utf8_lossy(&data).into_owned();
                            let _ = endpoint.inputs.send(Input::Text { conn, text });
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Err(error)) => break format!("socket error: {error}"),
                    }
                }
            }
        };
        let _ = endpoint.inputs.send(Input::Closed { conn });
        shared.metrics.seed_closed(seed);
        info!("disconnected: {ended}");
    }
    .instrument(span)
    .await;
}
