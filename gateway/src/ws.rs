//! The sylkRTC WebSocket endpoint: the HTTP upgrade (origin, subprotocol, connection limit) and
//! the task that drives one connection.
//!
//! Each connection is one task running three futures side by side:
//! * the reader takes frames off the socket, answers keepalive, and queues requests (bounded by
//!   `max_queued_requests`) without ever waiting, so Pongs and limits are seen even when the
//!   handler is busy;
//! * the handler feeds queued requests, strictly in order, to the sans-IO [`Connection`] and
//!   passes what it emits to the writer;
//! * the writer sends queued messages, batching whatever is waiting into one flush, and sends a
//!   Close frame first when the reader asks for one.
//!
//! When the reader or the handler ends, the writer gets a short grace period to send its last
//! frames, then everything the connection owns is dropped.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use protocol::{Request, ServerMessage, Version};
use sip::driver::{CallCommand, CallHandle, RegistrationKey, SipEvent, SipHandle};
use sip::registration::RegistrationEvent;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::call::{self, CallTask, CallUpdate};
use crate::connection::{Connection, Handled, Outcome, Output, redact};
use crate::keepalive::{Action, Keepalive};
use crate::log_limit::LogLimit;
use crate::metrics::{ErrorKind, Metrics, Rejection};
use crate::server::Shared;

/// The tungstenite read buffer. Its default (128 KiB) is allocated up front for every
/// connection; requests are a few hundred bytes, and larger messages grow it on demand.
const READ_BUFFER: usize = 4 * 1024;
/// How many outgoing bytes are gathered before a write; nothing is allocated until used.
const WRITE_BUFFER: usize = 8 * 1024;
/// Messages waiting for the writer. Past it the handler waits, so a client that does not read
/// eventually fills its request queue and gets errors, then a 1008 close.
const OUTBOUND_QUEUE: usize = 256;
/// How long the writer may take to send its last frames once the connection is ending.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a request waits for room in a full request queue. A burst is absorbed (the handler
/// drains the queue in microseconds); a queue that stays full means the handler is stuck behind
/// a client that does not read its replies.
const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// `GET <websocket.path>`: checks the upgrade, then hands the socket to a connection task.
pub(crate) async fn upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Err(refused) = check_origin(&shared, peer, &headers) {
        return *refused;
    }
    let upgrade = upgrade.protocols(Version::PREFERENCE.map(Version::subprotocol));
    let Some(version) = upgrade
        .selected_protocol()
        .and_then(|name| name.to_str().ok())
        .and_then(Version::from_subprotocol)
    else {
        shared.metrics.rejected(Rejection::Subprotocol);
        info!(%peer, "upgrade refused: no sylkRTC subprotocol offered");
        return (
            StatusCode::NOT_ACCEPTABLE,
            "No compatible protocol specified: offer sylkRTC-2 or sylkRTC-1 in Sec-WebSocket-Protocol\n",
        )
            .into_response();
    };
    let permit = match take_slot(&shared, peer) {
        Ok(permit) => permit,
        Err(refused) => return *refused,
    };
    sized(upgrade, shared.websocket.max_message_size)
        .on_failed_upgrade(move |error| debug!(%peer, %error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| {
            let tracker = shared.tracker.clone();
            tracker.track_future(serve(socket, shared, version, peer, permit))
        })
}

/// The upgrade with the buffers and limits of every WebSocket endpoint of the gateway.
pub(crate) fn sized(upgrade: WebSocketUpgrade, limit: usize) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(limit)
        .max_frame_size(limit)
}

/// Refuses (403) an upgrade from a page whose `Origin` is not allowed.
pub(crate) fn check_origin(
    shared: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), Box<Response>> {
    let origin = headers.get(header::ORIGIN);
    if origin_allowed(&shared.web_origins, origin) {
        return Ok(());
    }
    shared.metrics.rejected(Rejection::Origin);
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

/// A connection's slot under `max_connections`, or the 503 that refuses the upgrade.
pub(crate) fn take_slot(
    shared: &Shared,
    peer: SocketAddr,
) -> Result<OwnedSemaphorePermit, Box<Response>> {
    shared
        .connection_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            shared.metrics.rejected(Rejection::Capacity);
            warn!(%peer, limit = shared.websocket.max_connections, "upgrade refused: too many connections");
            Box::new(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "Too many connections (limit {})\n",
                        shared.websocket.max_connections
                    ),
                )
                    .into_response(),
            )
        })
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

/// A frame the reader queued for the handler.
enum Inbound {
    Text(Utf8Bytes),
    Binary(axum::body::Bytes),
}

/// A frame for the writer.
enum Outbound {
    Text(String),
    Ping,
}

/// Why a connection ended.
#[derive(Debug)]
enum Ended {
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

/// The task of one connection.
async fn serve(
    socket: WebSocket,
    shared: Arc<Shared>,
    version: Version,
    peer: SocketAddr,
    // Held for the connection's lifetime: it is the connection's slot under `max_connections`.
    _permit: OwnedSemaphorePermit,
) {
    let id = shared.next_connection_id.fetch_add(1, Relaxed);
    let span = info_span!("conn", id, %peer, protocol = version.subprotocol());
    async move {
        shared.metrics.connection_opened();
        info!("connected");
        let (sink, stream) = socket.split();
        let ended = drive(stream, sink, &shared, version, id).await;
        shared.metrics.connection_closed();
        info!("disconnected: {ended}");
    }
    .instrument(span)
    .await;
}

/// Runs a connection over any frame stream and sink (a WebSocket, or channels in the tests).
async fn drive<S, K>(stream: S, sink: K, shared: &Arc<Shared>, version: Version, id: u64) -> Ended
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
    K: Sink<Message> + Unpin,
{
    let (out_tx, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let (request_tx, request_rx) = mpsc::channel(shared.websocket.max_queued_requests);
    let (close_tx, close_rx) = oneshot::channel();
    let trace = shared.websocket.trace_client;

    let reader = read_loop(
        stream,
        request_tx,
        out_tx.clone(),
        close_tx,
        shared,
        version,
    );
    let handler = handle_loop(
        Connection::new(version, shared.domains.clone()),
        request_rx,
        out_tx,
        shared,
        id,
    );
    let writer = write_loop(sink, out_rx, close_rx, trace);
    tokio::pin!(writer);
    tokio::select! {
        ended = async {
            tokio::select! {
                ended = reader => ended,
                () = handler => Ended::WriterGone,
            }
        } => {
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
    close: oneshot::Sender<Option<CloseFrame>>,
    shared: &Shared,
    version: Version,
) -> Ended {
    let mut keepalive = Keepalive::new(shared.websocket.ping_interval(), Instant::now().into_std());
    let ended = loop {
        let timer = keepalive.poll_timeout();
        let step = tokio::select! {
            () = shared.shutdown.cancelled() => Some(Ended::Shutdown),
            () = sleep_until(timer) => match keepalive.handle_timeout(Instant::now().into_std()) {
                Some(Action::Ping) => {
                    // A full queue means the client is not reading: the Pong deadline decides.
                    let _ = out.try_send(Outbound::Ping);
                    None
                }
                Some(Action::Expired) => shared.websocket.ping_interval().map(|interval| Ended::NoPong(interval / 2)),
                None => None,
            },
            frame = stream.next() => match frame {
                None => Some(Ended::ClientClosed),
                Some(Ok(Message::Close(frame))) => {
                    Some(Ended::ClientClose(frame.map(|frame| frame.code)))
                }
                Some(Ok(Message::Text(text))) => queue(Inbound::Text(text), &requests, &out, shared, version).await,
                Some(Ok(Message::Binary(data))) => queue(Inbound::Binary(data), &requests, &out, shared, version).await,
                Some(Ok(Message::Pong(_))) => {
                    keepalive.handle_pong();
                    None
                }
                // tungstenite answers Pings itself.
                Some(Ok(Message::Ping(_))) => None,
                Some(Err(error)) => Some(socket_error(error, shared.websocket.max_message_size, &shared.metrics)),
            },
        };
        if let Some(ended) = step {
            break ended;
        }
    };
    if let Some(reply) = ended.close_reply() {
        let _ = close.send(reply);
    }
    ended
}

/// Queues a frame for the handler. When the queue stays full for [`QUEUE_WAIT`], the request is
/// refused with an `error`, or, when even that cannot be queued, the connection is closed.
async fn queue(
    inbound: Inbound,
    requests: &mpsc::Sender<Inbound>,
    out: &mpsc::Sender<Outbound>,
    shared: &Shared,
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
    let limit = shared.websocket.max_queued_requests;
    shared.metrics.error(ErrorKind::QueueFull);
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
        shared.metrics.request(name);
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
    if shared.websocket.trace_client {
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

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Handles queued requests in order, and SIP events as they come. The [`Connection`] and its
/// accounts live in here, so that they are released (registrations removed) whenever this
/// future is dropped.
async fn handle_loop(
    connection: Connection,
    mut requests: mpsc::Receiver<Inbound>,
    out: mpsc::Sender<Outbound>,
    shared: &Arc<Shared>,
    id: u64,
) {
    // Unbounded, like the driver's own queues: the driver must never wait on one connection,
    // nor a call's task.
    let (sip_events, mut sip_rx) = mpsc::unbounded_channel();
    let (reports, mut reports_rx) = mpsc::unbounded_channel();
    let mut session = Session {
        connection,
        metrics: &shared.metrics,
        shared,
        sip: &shared.sip,
        sip_events,
        reports,
        calls: HashMap::new(),
        incoming_calls: HashMap::new(),
        local_registrations: std::collections::HashSet::new(),
        owner: id,
        accounts: 0,
        warnings: LogLimit::new(),
    };
    let trace = shared.websocket.trace_client;
    if !session.flush(&out, trace).await {
        return;
    }
    loop {
        tokio::select! {
            inbound = requests.recv() => {
                let Some(inbound) = inbound else { return };
                let handled = match inbound {
                    Inbound::Text(text) => {
                        if trace {
                            info!(target: "gateway::client", "recv {}", redact(&text));
                        }
                        session.connection.handle_text(&text)
                    }
                    Inbound::Binary(data) => {
                        if trace {
                            info!(target: "gateway::client", "recv binary frame of {} bytes", data.len());
                        }
                        session.connection.handle_binary(&data)
                    }
                };
                session.record(handled);
            }
            Some(event) = sip_rx.recv() => {
                debug!(?event, "SIP event");
                session.sip_event(event);
            }
            Some((call, report)) = reports_rx.recv() => session.report(call, report),
        }
        if !session.flush(&out, trace).await {
            return;
        }
    }
}

/// The handler's state: the connection, its share of the `accounts` gauge, and its link to the
/// SIP driver.
struct Session<'a> {
    connection: Connection,
    metrics: &'a Metrics,
    sip: &'a SipHandle,
    shared: &'a Arc<Shared>,
    /// Where the driver sends this connection's SIP events.
    sip_events: mpsc::UnboundedSender<SipEvent>,
    /// Where calls' tasks send their events.
    reports: mpsc::UnboundedSender<(String, CallUpdate)>,
    /// The calls' tasks, by session id.
    calls: HashMap<String, CallTask>,
    /// Incoming calls' sessions, by SIP call, for their SIP events.
    incoming_calls: HashMap<CallHandle, String>,
    /// Registrations of local-domain accounts (held by the gateway, not a SIP registrar).
    local_registrations: std::collections::HashSet<u64>,
    /// This connection's number, which names its registrations in the driver.
    owner: u64,
    /// Accounts counted in the gauge for this connection.
    accounts: usize,
    /// This connection's budget of warnings about what it sends.
    warnings: LogLimit,
}

impl Session<'_> {
    fn record(&mut self, handled: Handled) {
        if let Some(name) = &handled.name {
            self.metrics.request(name);
        }
        match handled.outcome {
            Outcome::Ack => {}
            Outcome::Error { kind, text } => {
                self.metrics.error(kind);
                debug!(
                    request = handled.name.as_deref().unwrap_or("?"),
                    "error reply: {text}"
                );
            }
            Outcome::Unanswered { kind, reason } => {
                self.metrics.error(kind);
                match self.warnings.allow(std::time::Instant::now()) {
                    Some(0) => warn!("message ignored: {reason}"),
                    Some(held_back) => warn!(
                        "message ignored: {reason} ({held_back} more such warnings not shown)"
                    ),
                    None => {}
                }
            }
        }
        let accounts = self.connection.account_count();
        self.metrics
            .accounts_changed(accounts as i64 - self.accounts as i64);
        self.accounts = accounts;
    }

    /// A SIP event: call events go to their call's task, the rest to the connection.
    fn sip_event(&mut self, event: SipEvent) {
        if let SipEvent::Call { call, .. } = &event {
            let task = self
                .incoming_calls
                .get(call)
                .and_then(|session| self.calls.get(session))
                .and_then(|task| task.sip_events.as_ref());
            if let Some(task) = task {
                let _ = task.send(event);
            }
            return;
        }
        self.connection.handle_sip_event(event);
    }

    /// News from a call's task.
    fn report(&mut self, session: String, update: CallUpdate) {
        let over = matches!(update, CallUpdate::Terminated(_));
        self.connection.handle_update(&session, update);
        if over {
            self.calls.remove(&session);
            self.incoming_calls.retain(|_, owner| *owner != session);
        }
    }

    /// Registers an account of the local domain with the gateway itself; false for other
    /// accounts. The outcome arrives as SIP events do, after the ack.
    fn register_local(&mut self, handle: u64, account: &sip::driver::Account) -> bool {
        let Some(local) = &self.shared.local else {
            return false;
        };
        if !local.is_local(&account.domain) {
            return false;
        }
        let binding = crate::local::BrowserBinding {
            events: self.sip_events.clone(),
            handle,
            owner: self.owner,
        };
        let outcome = match local.register(&account.user, &account.credentials.secret, binding) {
            Ok(()) => RegistrationEvent::Registered { expires: 0 },
            Err(crate::local::Refused(reason)) => RegistrationEvent::Failed {
                reason,
                retry_in: None,
            },
        };
        self.local_registrations.insert(handle);
        for event in [RegistrationEvent::Registering, outcome] {
            let _ = self
                .sip_events
                .send(SipEvent::Registration { handle, event });
        }
        true
    }

    /// Starts a call's task: the echo test, a call the open local domain may not make, or a
    /// call through the relay.
    fn start_call(&mut self, start: crate::call::StartCall) {
        let session = start.session.clone();
        let route = crate::routing::outgoing(
            self.shared.local.as_ref(),
            &start.account.domain,
            &start.uri,
        );
        let task = match route {
            crate::routing::Route::Echo => {
                crate::echo::browser(self.shared.clone(), start, self.reports.clone())
            }
            crate::routing::Route::Refuse(ending) => {
                self.connection
                    .handle_update(&session, CallUpdate::Terminated(ending));
                return;
            }
            route => call::outgoing(self.shared.clone(), start, route, self.reports.clone()),
        };
        self.calls.insert(session, task);
    }

    fn key(&self, handle: u64) -> RegistrationKey {
        RegistrationKey {
            owner: self.owner,
            handle,
        }
    }

    /// Passes everything the connection emitted to the writer and the SIP driver; false once
    /// the writer is gone.
    async fn flush(&mut self, out: &mpsc::Sender<Outbound>, trace: bool) -> bool {
        while let Some(output) = self.connection.poll_output() {
            match output {
                Output::Send(text) => {
                    if trace {
                        info!(target: "gateway::client", "send {text}");
                    }
                    if out.send(Outbound::Text(text)).await.is_err() {
                        return false;
                    }
                }
                Output::Register { handle, account } => {
                    if self.register_local(handle, &account) {
                        continue;
                    }
                    self.sip
                        .register(self.key(handle), *account, self.sip_events.clone());
                }
                Output::Unregister { handle } => {
                    if self.local_registrations.remove(&handle) {
                        if let Some(local) = &self.shared.local {
                            local.unregister(self.owner, handle);
                        }
                    } else {
                        self.sip.unregister(self.key(handle));
                    }
                }
                Output::StartCall(start) => self.start_call(*start),
                Output::Incoming(incoming) => {
                    let session = incoming.session.clone();
                    self.incoming_calls.insert(incoming.call, session.clone());
                    let task = call::incoming(self.shared.clone(), *incoming, self.reports.clone());
                    self.calls.insert(session, task);
                }
                Output::RefuseCall(call) => self.sip.call(
                    call,
                    CallCommand::Reject {
                        code: 480,
                        reason: "Temporarily Unavailable".to_owned(),
                        warning: None,
                    },
                ),
                Output::Call { session, command } => {
                    if let Some(task) = self.calls.get(&session) {
                        let _ = task.commands.send(command);
                    }
                }
            }
        }
        true
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let held_back = self.warnings.take_suppressed();
        if held_back > 0 {
            warn!("{held_back} more warnings about ignored messages were not shown");
        }
        self.metrics.accounts_changed(-(self.accounts as i64));
        for handle in self.connection.registrations() {
            if self.local_registrations.contains(&handle) {
                if let Some(local) = &self.shared.local {
                    local.unregister(self.owner, handle);
                }
                continue;
            }
            self.sip.unregister(RegistrationKey {
                owner: self.owner,
                handle,
            });
        }
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
