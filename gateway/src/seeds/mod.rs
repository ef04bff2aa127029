//! The WebSocket signalling protocols of the project's seed documents, hosted on the gateway's
//! own listener beside sylkRTC: for now NextRTC's conversation protocol.
//!
//! A protocol is a sans-IO hub (every member's messages in, messages for members out, `now`
//! for its timers) owned by one task. Each WebSocket connection is a task of its own: it passes
//! the client's frames to the hub's task and writes back what the hub has for it, through a
//! bounded queue, so a client that does not read loses its own messages and nobody else's.
//! The connections share the sylkRTC endpoint's limits: the origin check, `max_connections`,
//! `max_message_size`, and shutdown.

pub(crate) mod nextrtc;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tracing::{Instrument, debug, info, info_span};

use crate::config::NextRtcConfig;
use crate::metrics::Seed;
use crate::server::Shared;
use nextrtc::{Hub, Kind, Settings};

/// Messages waiting for a slow client; past it, its messages are dropped.
const OUTBOUND_QUEUE: usize = 256;

/// What a connection tells the hub's task.
enum Input {
    Connected {
        id: String,
        out: mpsc::Sender<String>,
    },
    Text {
        id: String,
        text: String,
    },
    Closed {
        id: String,
    },
}

/// The running NextRTC endpoint: the way into its hub's task.
#[derive(Debug, Clone)]
pub(crate) struct NextRtc {
    inputs: mpsc::UnboundedSender<Input>,
}

impl NextRtc {
    /// Starts the hub's task (needs a tokio runtime).
    pub(crate) fn start(config: &NextRtcConfig) -> NextRtc {
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
        tokio::spawn(run_hub(hub, receiver).instrument(info_span!("nextrtc")));
        NextRtc { inputs }
    }
}

/// The runtime's clock (which tests may pause), as the hubs take it.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// The hub's task: ends when every sender (the endpoint and its connections) is gone.
async fn run_hub(mut hub: Hub, mut inputs: mpsc::UnboundedReceiver<Input>) {
    let mut outs: HashMap<String, mpsc::Sender<String>> = HashMap::new();
    loop {
        let deadline = tokio::time::Instant::from_std(hub.poll_timeout());
        tokio::select! {
            input = inputs.recv() => match input {
                None => return,
                Some(Input::Connected { id, out }) => {
                    hub.connect(id.clone());
                    outs.insert(id, out);
                }
                Some(Input::Text { id, text }) => hub.receive(now(), &id, &text),
                Some(Input::Closed { id }) => {
                    hub.disconnect(&id);
                    outs.remove(&id);
                }
            },
            () = tokio::time::sleep_until(deadline) => hub.handle_timeout(now()),
        }
        while let Some((to, message)) = hub.poll_output() {
            let Some(out) = outs.get(&to) else { continue };
            let Ok(text) = serde_json::to_string(&message) else {
                continue;
            };
            if out.try_send(text).is_err() {
                debug!(member = %to, signal = %message.signal, "dropped: the client does not read");
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
    let Some(endpoint) = shared.nextrtc.clone() else {
        return (StatusCode::NOT_FOUND, "Not found\n").into_response();
    };
    if let Err(refused) = crate::ws::check_origin(&shared, peer, &headers) {
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

/// One NextRTC connection: a member whose id the server picks.
async fn serve(
    socket: WebSocket,
    shared: Arc<Shared>,
    endpoint: NextRtc,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let span = info_span!("nextrtc", member = %id, %peer);
    async move {
        shared.metrics.seed_opened(Seed::NextRtc);
        info!("connected");
        let (out_tx, mut out_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let _ = endpoint.inputs.send(Input::Connected {
            id: id.clone(),
            out: out_tx,
        });
        let (mut sink, mut stream) = socket.split();
        let ended = loop {
            tokio::select! {
                () = shared.shutdown.cancelled() => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code: 1001,
                            reason: "server shutting down".into(),
                        })))
                        .await;
                    break "shutdown";
                }
                text = out_rx.recv() => {
                    let Some(text) = text else { break "the hub stopped" };
                    shared.metrics.seed_message(Seed::NextRtc, false);
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break "the socket can no longer be written";
                    }
                }
                frame = stream.next() => match frame {
                    None | Some(Ok(Message::Close(_))) => break "closed by the client",
                    Some(Ok(Message::Text(text))) => {
                        shared.metrics.seed_message(Seed::NextRtc, true);
                        let _ = endpoint.inputs.send(Input::Text { id: id.clone(), text: text.to_string() });
                    }
                    Some(Ok(Message::Binary(data))) => {
                        // Not part of the protocol: the hub answers it as an unreadable message.
                        shared.metrics.seed_message(Seed::NextRtc, true);
                        let text = String::from_utf8_lossy(&data).into_owned();
                        let _ = endpoint.inputs.send(Input::Text { id: id.clone(), text });
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Err(error)) => {
                        debug!(%error, "socket error");
                        break "socket error";
                    }
                },
            }
        };
        let _ = endpoint.inputs.send(Input::Closed { id: id.clone() });
        shared.metrics.seed_closed(Seed::NextRtc);
        info!("disconnected: {ended}");
    }
    .instrument(span)
    .await;
}
