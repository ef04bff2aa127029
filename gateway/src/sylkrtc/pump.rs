//! The socket side of a sylkRTC connection: three futures side by side in the connection's
//! task.
//!
//! * the reader takes frames off the socket, answers keepalive, and queues requests (bounded by
//!   `max_queued_requests`) without ever waiting, so Pongs and limits are seen even when the
//!   handler is busy;
//! * the handler (`super::session`) takes queued requests, strictly in order, and queues what
//!   it has to send;
//! * the writer sends queued messages, batching whatever is waiting into one flush, and sends a
//!   Close frame first when the reader asks for one.
//!
//! When the reader or the handler ends, the writer gets a short grace period to send its last
//! frames, then everything the connection owns is dropped.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use protocol::{Request, ServerMessage, Version};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::http::gate::{Gate, error_close};
use crate::keepalive::{Action, Keepalive};
use crate::metrics::{ErrorKind, Metrics};

/// Messages waiting for the writer. Past it the handler waits, so a client that does not read
/// eventually fills its request queue and gets errors, then a 1008 close.
const OUTBOUND_QUEUE: usize = 256;
/// How long the writer may take to send its last frames once the connection is ending.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a request waits for room in a full request queue. A burst is absorbed (the handler
/// drains the queue in microseconds); a queue that stays full means the handler is stuck behind
/// a client that does not read its replies.
const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// A frame the reader queued for the handler.
pub(super) enum Inbound {
    Text(Utf8Bytes),
    Binary(axum::body::Bytes),
}

/// A frame for the writer.
pub(super) enum Outbound {
    Text(String),
    Ping,
}

/// Why a connection ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// The client's stream ended without a Close frame (it dropped).
    ClientClosed,
    /// The client sent a Close frame: it gets one back (RFC 6455 section 5.5.1).
    ClientClose(Option<u16>),
    /// The socket failed; the code is the close frame to send, when one makes sense.
    Broken(String, Option<u16>),
    /// A message over `max_message_size`.
    TooBig(usize),
    /// No Pong within half the ping interval.
    NoPong(Duration),
    /// The request queue overflowed while the client was not reading its replies.
    Overflow(usize),
    /// The gateway is shutting down.
    Shutdown,
    /// The gateway is draining and the connection has no call left: the client connects again
    /// (through the load balancer, to another gateway).
    Draining,
    /// The writer or handler stopped (the socket can no longer be written).
    WriterGone,
}

impl Ended {
    /// The Close to send, if any: the frame (none: an empty Close).
    fn close_reply(&self) -> Option<Option<CloseFrame>> {
        match self {
            // The client's code echoed, as the RFC suggests; an empty Close for an empty one.
            Ended::ClientClose(code) => Some(code.map(|code| CloseFrame {
                code,
                reason: Utf8Bytes::default(),
            })),
            other => other.close_frame().map(Some),
        }
    }

    /// The close frame of a connection the gateway closes, if any.
    fn close_frame(&self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            Ended::ClientClosed
            | Ended::ClientClose(_)
            | Ended::WriterGone
            | Ended::Broken(_, None) => return None,
            Ended::Broken(reason, Some(code)) => (*code, reason.clone()),
            Ended::TooBig(limit) => (1009, format!("message too big (limit {limit} bytes)")),
            Ended::NoPong(wait) if wait.subsec_millis() == 0 => {
                (1001, format!("no pong within {} s", wait.as_secs()))
            }
            Ended::NoPong(wait) => (1001, format!("no pong within {} ms", wait.as_millis())),
            Ended::Overflow(limit) => (1008, format!("too many queued requests (limit {limit})")),
            Ended::Shutdown => (1001, "server shutting down".to_owned()),
            // 1012 (Service Restart, IANA's registry): the client may connect again at once.
            Ended::Draining => (1012, "gateway draining: connect again".to_owned()),
        };
        Some(CloseFrame {
            code,
            reason: reason.into(),
        })
    }
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::ClientClosed => f.write_str("the client went away"),
            Ended::ClientClose(Some(code)) => write!(f, "closed by the client (code {code})"),
            Ended::ClientClose(None) => f.write_str("closed by the client"),
            Ended::Broken(reason, _) => write!(f, "socket error: {reason}"),
            Ended::WriterGone => f.write_str("the socket can no longer be written"),
            other => match other.close_frame() {
                Some(frame) => write!(f, "{} (close code {})", frame.reason, frame.code),
                None => f.write_str("closed"),
            },
        }
    }
}

/// Runs a connection over any frame stream and sink (a WebSocket, or channels in the tests):
/// the reader and the writer around `handler`, which gets the queued requests and the writer's
/// queue, and may end the connection itself (with what to tell the client; `None`: it can no
/// longer write). The handler is dropped when the connection ends, whatever ends it.
pub(super) async fn drive<S, K, H, F>(
    stream: S,
    sink: K,
    gate: &Gate,
    version: Version,
    handler: H,
) -> Ended
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
    K: Sink<Message> + Unpin,
    H: FnOnce(mpsc::Receiver<Inbound>, mpsc::Sender<Outbound>) -> F,
    F: Future<Output = Option<Ended>>,
{
    let (out_tx, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let (request_tx, request_rx) = mpsc::channel(gate.websocket.max_queued_requests);
    let (close_tx, close_rx) = oneshot::channel();
    let trace = gate.websocket.trace_client;

    let reader = read_loop(stream, request_tx, out_tx.clone(), gate, version);
    let handler = handler(request_rx, out_tx);
    let writer = write_loop(sink, out_rx, close_rx, trace);
    tokio::pin!(writer);
    tokio::select! {
        ended = async {
            tokio::select! {
                ended = reader => ended,
                left = handler => left.unwrap_or(Ended::WriterGone),
            }
        } => {
            if let Some(reply) = ended.close_reply() {
                let _ = close_tx.send(reply);
            }
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut writer).await;
            ended
        }
        () = &mut writer => Ended::WriterGone,
    }
}

async fn read_loop(
    mut stream: impl Stream<Item = Result<Message, axum::Error>> + Unpin,
    requests: mpsc::Sender<Inbound>,
    out: mpsc::Sender<Outbound>,
    gate: &Gate,
    version: Version,
) -> Ended {
    let mut keepalive = Keepalive::new(gate.websocket.ping_interval(), Instant::now().into_std());
    loop {
        let timer = keepalive.poll_timeout();
        let step = tokio::select! {
            // The end of a drain tells the client to connect again, as the drain's own closes do.
            () = gate.shutdown().cancelled() => Some(if gate.draining().is_cancelled() {
                Ended::Draining
            } else {
                Ended::Shutdown
            }),
            () = sleep_until(timer) => match keepalive.handle_timeout(Instant::now().into_std()) {
                Some(Action::Ping) => {
                    // A full queue means the client is not reading: the Pong deadline decides.
                    let _ = out.try_send(Outbound::Ping);
                    None
                }
                Some(Action::Expired) => gate.websocket.ping_interval().map(|interval| Ended::NoPong(interval / 2)),
                None => None,
            },
            frame = stream.next() => match frame {
                None => Some(Ended::ClientClosed),
                Some(Ok(Message::Close(frame))) => {
                    Some(Ended::ClientClose(frame.map(|frame| frame.code)))
                }
                Some(Ok(Message::Text(text))) => queue(Inbound::Text(text), &requests, &out, gate, version).await,
                Some(Ok(Message::Binary(data))) => queue(Inbound::Binary(data), &requests, &out, gate, version).await,
                Some(Ok(Message::Pong(_))) => {
                    keepalive.handle_pong();
                    None
                }
                // tungstenite answers Pings itself.
                Some(Ok(Message::Ping(_))) => None,
                Some(Err(error)) => Some(socket_error(error, gate.websocket.max_message_size, &gate.metrics)),
            },
        };
        if let Some(ended) = step {
            break ended;
        }
    }
}

/// Queues a frame for the handler. When the queue stays full for [`QUEUE_WAIT`], the request is
/// refused with an `error`, or, when even that cannot be queued, the connection is closed.
async fn queue(
    inbound: Inbound,
    requests: &mpsc::Sender<Inbound>,
    out: &mpsc::Sender<Outbound>,
    gate: &Gate,
    version: Version,
) -> Option<Ended> {
    match tokio::time::timeout(QUEUE_WAIT, requests.reserve()).await {
        Ok(Ok(slot)) => {
            slot.send(inbound);
            return None;
        }
        Ok(Err(_)) => return Some(Ended::WriterGone),
        Err(_) => {}
    }
    let limit = gate.websocket.max_queued_requests;
    gate.metrics.error(ErrorKind::QueueFull);
    let Inbound::Text(text) = inbound else {
        warn!(limit, "request queue full: binary frame dropped");
        return None;
    };
    let (transaction, name) = match Request::parse(&text) {
        Ok(request) => (
            Some(request.transaction),
            Some(request.body.name().to_owned()),
        ),
        Err(error) => (error.transaction, error.name),
    };
    if let Some(name) = &name {
        gate.metrics.request(name);
    }
    let Some(transaction) = transaction else {
        warn!(
            limit,
            "request queue full: message without a transaction dropped"
        );
        return None;
    };
    let error = format!("too many queued requests (limit {limit})");
    debug!(transaction, "refused: {error}");
    let reply = ServerMessage::Error { transaction, error }.encode(version);
    if gate.websocket.trace_client {
        info!(target: "gateway::client", "send {reply}");
    }
    // The reply may overtake replies to earlier requests still in the queue; its transaction
    // says which request it belongs to.
    match out.try_send(Outbound::Text(reply)) {
        Ok(()) => None,
        Err(_) => Some(Ended::Overflow(limit)),
    }
}

fn socket_error(error: axum::Error, limit: usize, metrics: &Metrics) -> Ended {
    match error_close(error, limit) {
        (_, Some(1009)) => {
            metrics.error(ErrorKind::TooBig);
            Ended::TooBig(limit)
        }
        (reason, code) => Ended::Broken(reason, code),
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

async fn write_loop(
    mut sink: impl Sink<Message> + Unpin,
    mut out: mpsc::Receiver<Outbound>,
    mut close: oneshot::Receiver<Option<CloseFrame>>,
    trace: bool,
) {
    let frame = |message: Outbound| match message {
        Outbound::Text(text) => Message::Text(text.into()),
        Outbound::Ping => {
            if trace {
                info!(target: "gateway::client", "send ping frame");
            }
            Message::Ping(Default::default())
        }
    };
    loop {
        let first = tokio::select! {
            biased;
            close = &mut close => {
                if let Ok(close) = close {
                    // What the handler queued before it ended the connection (a call's last
                    // state before a drain's close) goes first. A client that does not read
                    // holds this up for the close grace at most.
                    while let Ok(message) = out.try_recv() {
                        if sink.feed(frame(message)).await.is_err() {
                            return;
                        }
                    }
                    // After a client's Close the WebSocket library has queued the echo itself
                    // and refuses another Close: flushing sends the queued one.
                    if sink.send(Message::Close(close)).await.is_err() {
                        let _ = sink.flush().await;
                    }
                }
                return;
            }
            message = out.recv() => match message {
                Some(message) => message,
                None => return,
            },
        };
        if sink.feed(frame(first)).await.is_err() {
            return;
        }
        // Whatever else is waiting goes out in the same flush.
        while let Ok(message) = out.try_recv() {
            if sink.feed(frame(message)).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
