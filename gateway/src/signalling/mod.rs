//! The WebSocket signalling protocols of the project's seed documents, hosted beside sylkRTC:
//! NextRTC's conversation protocol, GStreamer's webrtcsink protocol and the Cuttlefish operator
//! on the gateway's own listener, and GStreamer's older webrtc signalling on a listener of its
//! own (its clients connect to the root of a `wss://` URL).
//!
//! A protocol is a sans-IO hub (every connection's frames in, frames and closes for
//! connections out, `now` for its timers) owned by one task, the same run loop for all of them
//! (`hub::run`, with an adapter per protocol). Each WebSocket connection is a
//! task of its own: it passes the client's frames to the hub's task and writes back what the
//! hub has for it, through a bounded queue, so a client that does not read loses its own
//! messages and nobody else's. The connections share the sylkRTC endpoint's limits: the origin
//! check, `max_connections`, `max_message_size`, and shutdown.

pub(crate) mod cuttlefish;
pub(crate) mod gst;
mod hub;
pub(crate) mod nextrtc;
pub(crate) mod webrtcsink;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::{Instrument, debug, info, info_span};

use crate::config::{Config, ConversationType, NextRtcConfig};
use crate::http::CUTTLEFISH_PATHS;
use crate::http::gate::{Gate, error_close};
use crate::keepalive::{Action, Keepalive};
use crate::metrics::Seed;

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
        /// For Cuttlefish: which endpoint the connection came through.
        side: Option<cuttlefish::Side>,
    },
    Text {
        conn: u64,
        text: String,
        /// It came as a binary frame (the text is its lossy UTF-8 reading).
        binary: bool,
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
    side: Option<cuttlefish::Side>,
}

/// The runtime's clock (which tests may pause), as the hubs take it.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Starts the NextRTC hub's task (needs a tokio runtime).
fn start_nextrtc(config: &NextRtcConfig) -> Endpoint {
    use nextrtc::{Hub, Kind, Settings};
    let settings = Settings {
        ping_period: Duration::from_secs(config.ping_period),
        max_connection_setup_time: Duration::from_secs(config.max_connection_setup_time),
        join_only_to_existing: config.join_only_to_existing,
        default_type: match config.default_conversation_type {
            ConversationType::Mesh => Kind::Mesh,
            ConversationType::Broadcast => Kind::Broadcast,
            ConversationType::MeshWithMaster => Kind::MeshWithMaster,
        },
    };
    let hub = Hub::new(
        now(),
        settings,
        Box::new(|| uuid::Uuid::new_v4().to_string()),
    );
    let (inputs, receiver) = mpsc::unbounded_channel();
    tokio::spawn(hub::run(hub::NextRtc::new(hub), receiver).instrument(info_span!("nextrtc")));
    Endpoint {
        seed: Seed::NextRtc,
        inputs,
        keepalive: None,
        next_conn: Arc::new(AtomicU64::new(1)),
        side: None,
    }
}

/// Starts the webrtcsink signalling hub's task (needs a tokio runtime).
fn start_webrtcsink() -> Endpoint {
    let hub = webrtcsink::Hub::new(Box::new(|| uuid::Uuid::new_v4().to_string()));
    let (inputs, receiver) = mpsc::unbounded_channel();
    tokio::spawn(
        hub::run(hub::Webrtcsink::new(hub), receiver).instrument(info_span!("webrtcsink")),
    );
    Endpoint {
        seed: Seed::Webrtcsink,
        inputs,
        // 30 s, as the reference (which counts from the last frame it sent, not received).
        keepalive: Some(Duration::from_secs(30)),
        next_conn: Arc::new(AtomicU64::new(1)),
        side: None,
    }
}

/// Starts the GStreamer signalling hub's task (needs a tokio runtime).
fn start_gst(keepalive: Duration) -> Endpoint {
    let (inputs, receiver) = mpsc::unbounded_channel();
    tokio::spawn(hub::run(gst::Hub::default(), receiver).instrument(info_span!("gstreamer")));
    Endpoint {
        seed: Seed::GStreamer,
        inputs,
        keepalive: Some(keepalive),
        next_conn: Arc::new(AtomicU64::new(1)),
        side: None,
    }
}

/// The Cuttlefish operator: its two WebSocket endpoints share one hub.
#[derive(Debug, Clone)]
pub(crate) struct Cuttlefish {
    device: Endpoint,
    client: Endpoint,
    /// The `config` message, also served at `/infra_config`.
    config: serde_json::Value,
    /// The registered devices, for `/devices`, kept current by the hub's task.
    devices: tokio::sync::watch::Receiver<Vec<String>>,
}

/// Starts the Cuttlefish operator's hub task (needs a tokio runtime).
fn start_cuttlefish(stun_servers: &[String]) -> Cuttlefish {
    let hub = cuttlefish::Hub::new(stun_servers);
    let config = hub.config();
    let (inputs, receiver) = mpsc::unbounded_channel();
    let (devices_tx, devices) = tokio::sync::watch::channel(Vec::new());
    tokio::spawn(
        hub::run(hub::Cuttlefish::new(hub, devices_tx), receiver)
            .instrument(info_span!("cuttlefish")),
    );
    let next_conn = Arc::new(AtomicU64::new(1));
    let endpoint = |side| Endpoint {
        seed: Seed::Cuttlefish,
        inputs: inputs.clone(),
        keepalive: None,
        next_conn: next_conn.clone(),
        side: Some(side),
    };
    Cuttlefish {
        device: endpoint(cuttlefish::Side::Device),
        client: endpoint(cuttlefish::Side::Client),
        config,
        devices,
    }
}

/// The enabled protocols' hubs (each started on its own task), and the routes to them.
#[derive(Debug, Default)]
pub(crate) struct Hubs {
    nextrtc: Option<Endpoint>,
    webrtcsink: Option<Endpoint>,
    cuttlefish: Option<Cuttlefish>,
    gst: Option<Endpoint>,
}

impl Hubs {
    /// Starts the hubs `config` enables (needs a tokio runtime).
    pub(crate) fn start(config: &Config) -> Hubs {
        Hubs {
            nextrtc: config
                .nextrtc
                .enabled
                .then(|| start_nextrtc(&config.nextrtc)),
            webrtcsink: config.webrtcsink.enabled.then(start_webrtcsink),
            cuttlefish: config
                .cuttlefish
                .enabled
                .then(|| start_cuttlefish(&config.cuttlefish.stun_servers)),
            gst: config
                .gstreamer
                .enabled
                .then(|| start_gst(Duration::from_secs(config.gstreamer.keepalive_timeout))),
        }
    }

    /// The routes on the gateway's own listener: NextRTC and webrtcsink at their configured
    /// paths, Cuttlefish at [`CUTTLEFISH_PATHS`]; nothing for a protocol that is off.
    pub(crate) fn routes(&self, config: &Config, gate: &Arc<Gate>) -> Router {
        let door = |endpoint: &Endpoint| Door {
            gate: gate.clone(),
            endpoint: endpoint.clone(),
        };
        let mut router = Router::new();
        if let Some(endpoint) = &self.nextrtc {
            router = router.merge(
                Router::new()
                    .route(&config.nextrtc.path, get(upgrade))
                    .with_state(door(endpoint)),
            );
        }
        if let Some(endpoint) = &self.webrtcsink {
            router = router.merge(
                Router::new()
                    .route(&config.webrtcsink.path, get(upgrade))
                    .with_state(door(endpoint)),
            );
        }
        if let Some(operator) = &self.cuttlefish {
            let [register, connect, list, infra] = CUTTLEFISH_PATHS;
            router = router
                .merge(
                    Router::new()
                        .route(register, get(upgrade))
                        .with_state(door(&operator.device)),
                )
                .merge(
                    Router::new()
                        .route(connect, get(upgrade))
                        .with_state(door(&operator.client)),
                )
                .merge(
                    Router::new()
                        .route(list, get(devices))
                        .route(infra, get(infra_config))
                        .with_state(operator.clone()),
                );
        }
        router
    }

    /// The routes of the GStreamer signalling listener, when it is on: `/health`, and
    /// WebSocket on any other path.
    pub(crate) fn gst_router(&self, gate: &Arc<Gate>) -> Option<Router> {
        let endpoint = self.gst.clone()?;
        Some(
            Router::new()
                .route("/health", get(|| async { "OK\n" }))
                .fallback(upgrade)
                .with_state(Door {
                    gate: gate.clone(),
                    endpoint,
                }),
        )
    }
}

/// `GET /devices`: the registered devices' ids, as a JSON array.
async fn devices(State(operator): State<Cuttlefish>) -> Response {
    let ids = operator.devices.borrow().clone();
    json_response(&serde_json::json!(ids))
}

/// `GET /infra_config`: the `config` message devices and clients get.
async fn infra_config(State(operator): State<Cuttlefish>) -> Response {
    json_response(&operator.config)
}

fn json_response(body: &serde_json::Value) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// One WebSocket endpoint of a hub: its upgrades' state.
#[derive(Debug, Clone)]
struct Door {
    gate: Arc<Gate>,
    endpoint: Endpoint,
}

/// An upgrade to one of the protocols.
async fn upgrade(
    State(door): State<Door>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    accept(door, peer, &headers, upgrade)
}

/// The sylkRTC endpoint's checks (origin, connection limit, message size), then the
/// connection's task.
fn accept(
    door: Door,
    peer: SocketAddr,
    headers: &HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Door { gate, endpoint } = door;
    if let Err(refused) = gate.check_origin(peer, headers) {
        return *refused;
    }
    let permit = match gate.take_slot(peer) {
        Ok(permit) => permit,
        Err(refused) => return *refused,
    };
    gate.sized(upgrade)
        .on_failed_upgrade(move |error| debug!(%peer, %error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| {
            let task = serve(socket, gate.clone(), endpoint, peer, permit);
            gate.track(task)
        })
}

/// One connection of a seed protocol.
async fn serve(
    socket: WebSocket,
    gate: Arc<Gate>,
    endpoint: Endpoint,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    let conn = endpoint.next_conn.fetch_add(1, Ordering::Relaxed);
    let seed = endpoint.seed;
    let span = info_span!("conn", protocol = seed.label(), conn, %peer);
    async move {
        gate.metrics.seed_opened(seed);
        info!("connected");
        let (out_tx, mut out_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let _ = endpoint.inputs.send(Input::Connected { conn, out: out_tx, side: endpoint.side });
        let (mut sink, mut stream) = socket.split();
        // A quiet connection gets a Ping; one that stays silent for as long again (no Pong, no
        // frame) has vanished and is closed, so that its hub forgets it. The protocol's own
        // interval, else the sylkRTC endpoint's.
        let interval = endpoint.keepalive.or(gate.websocket.ping_interval());
        let mut keepalive = Keepalive::when_idle(interval, now());
        let ended = loop {
            let timer = keepalive.poll_timeout();
            tokio::select! {
                () = gate.shutdown().cancelled() => {
                    let frame = CloseFrame { code: 1001, reason: "server shutting down".into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    break "shutdown".to_owned();
                }
                () = sleep_until(timer) => match keepalive.handle_timeout(now()) {
                    Some(Action::Expired) => {
                        let wait = interval.unwrap_or_default().as_secs();
                        let reason = format!("no pong within {wait} s");
                        let frame = CloseFrame { code: 1001, reason: reason.clone().into() };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break reason;
                    }
                    Some(Action::Ping) if sink.send(Message::Ping(Default::default())).await.is_err() => {
                        break "the socket can no longer be written".to_owned();
                    }
                    Some(Action::Ping) | None => {}
                },
                outbound = out_rx.recv() => match outbound {
                    None => break "the hub stopped".to_owned(),
                    Some(Outbound::Text(text)) => {
                        gate.metrics.seed_message(seed, false);
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
                    keepalive.handle_frame(now());
                    match frame {
                        None => break "the client went away".to_owned(),
                        Some(Ok(Message::Close(frame))) => {
                            // Answered with a Close echoing its code (RFC 6455 section 5.5.1).
                            let code = frame.map(|frame| frame.code);
                            let reply = code.map(|code| CloseFrame { code, reason: Default::default() });
                            // The WebSocket library queued the echo itself and refuses another
                            // Close: flushing sends the queued one.
                            if sink.send(Message::Close(reply)).await.is_err() {
                                let _ = sink.flush().await;
                            }
                            break match code {
                                Some(code) => format!("closed by the client (code {code})"),
                                None => "closed by the client".to_owned(),
                            };
                        }
                        Some(Ok(Message::Text(text))) => {
                            gate.metrics.seed_message(seed, true);
                            let _ = endpoint.inputs.send(Input::Text { conn, text: text.to_string(), binary: false });
                        }
                        Some(Ok(Message::Binary(data))) => {
                            // Not part of any of the protocols: the hub decides.
                            gate.metrics.seed_message(seed, true);
                            let text = String::from_utf8_lossy(&data).into_owned();
                            let _ = endpoint.inputs.send(Input::Text { conn, text, binary: true });
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Err(error)) => {
                            let (reason, code) =
                                error_close(error, gate.websocket.max_message_size);
                            if let Some(code) = code {
                                let frame = CloseFrame { code, reason: reason.clone().into() };
                                let _ = sink.send(Message::Close(Some(frame))).await;
                            }
                            break format!("socket error: {reason}");
                        }
                    }
                }
            }
        };
        let _ = endpoint.inputs.send(Input::Closed { conn });
        gate.metrics.seed_closed(seed);
        info!("disconnected: {ended}");
    }
    .instrument(span)
    .await;
}
