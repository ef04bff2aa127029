//! The tokio driver: owns the sockets, the clock and DNS, and runs the sans-IO `Endpoint` in
//! one task.
//!
//! Users talk to it through a [`SipHandle`]: `register` and `unregister` are fire-and-forget
//! (they never wait on the network), and what happens to a registration is reported as
//! [`SipEvent`]s on the channel it was started with. Each call, placed or received, has a
//! channel of its own for its events ([`CallEvents`]), which its owner hands to whoever takes
//! the call.

mod calls;
mod connection;
mod events;
mod outgoing;
pub use events::{Account, CallEvents, LocalEvent, LocalIncoming, RegistrationKey, SipEvent};
pub use outgoing::{MAX_UDP_REQUEST, OutgoingMessage};
mod requests;
pub mod resolve;
mod streams;
mod subscriptions;
pub mod wire;
use streams::{Accepted, accept_tls};
pub use subscriptions::{OutgoingSubscription, SubscriptionEvents, SubscriptionHandle};
use subscriptions::{SubscriptionCommand, SubscriptionSlot};

pub use calls::{CallCommand, CallHandle, IncomingCall, OutgoingCall, sender};
pub use requests::{Answer, RequestHandle};

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::calls::CallSlot;
use self::connection::{ConnectionInput, WRITE_QUEUE};
use self::resolve::{Resolver, ServerUri};
use crate::call::CallEvent;
use crate::endpoint::{CallId, Endpoint, EndpointConfig, EndpointEvent, RegistrationId, Target};
use crate::registration::{RegistrationConfig, RegistrationEvent};
use crate::slots::{ConnectionSlots, Slot as ConnectionSlot};
use crate::transport::Transport;

/// The driver's settings.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// The address to bind the SIP transports to.
    pub listen: IpAddr,
    /// The UDP port (0 picks a free one).
    pub udp_port: u16,
    /// The TCP port (0 picks a free one).
    pub tcp_port: u16,
    /// The host to put in Via and Contact instead of the bound address (behind NAT).
    pub advertised: Option<String>,
    /// The outbound proxy every REGISTER goes through (`sip:host[:port][;transport=x]`).
    pub outbound_proxy: Option<String>,
    /// The transport for registrars that name none, then the others in order.
    pub transports: Vec<Transport>,
    /// The expiry asked for in REGISTERs.
    pub register_expires: u32,
    /// Seconds between keep-alive pings on our stream connections.
    pub keepalive: Option<Duration>,
    /// DNS servers (the system's when empty).
    pub dns_servers: Vec<SocketAddr>,
    /// Timers, size limit and User-Agent.
    pub endpoint: EndpointConfig,
    /// How TLS connections to SIP servers verify them (trusted roots).
    pub tls_client: Arc<rustls::ClientConfig>,
    /// A TLS listener (port, 0 for a free one, and certificate), for servers that open
    /// connections to us.
    pub tls_server: Option<(u16, Arc<rustls::ServerConfig>)>,
    /// Where calls for users of the local domain go (without it they are refused with 480),
    /// and the requests for the local domain its owner answers.
    pub local_calls: Option<mpsc::UnboundedSender<LocalEvent>>,
    /// The most TCP and TLS connections peers may open to us, in all and from one address;
    /// past them a new connection is closed at once.
    pub max_connections: usize,
    /// The same, from one address.
    pub max_connections_per_source: usize,
    /// How long a connection a peer opened may stay without sending a complete message (or a
    /// keep-alive); its first one must come within [`FIRST_MESSAGE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// The hosts a 3xx may send an outgoing call to (`*`: any); others are not followed.
    pub redirect_domains: Vec<String>,
}

/// How long a peer's new connection may take to send its first message (or keep-alive).
pub const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum Command {
    Register {
        key: RegistrationKey,
        account: Box<Account>,
        events: mpsc::UnboundedSender<SipEvent>,
    },
    Unregister {
        key: RegistrationKey,
    },
    Invite {
        call: CallHandle,
        outgoing: Box<OutgoingCall>,
        events: mpsc::UnboundedSender<CallEvent>,
    },
    Call {
        call: CallHandle,
        command: CallCommand,
    },
    Answer {
        request: RequestHandle,
        answer: Answer,
    },
    Message {
        message: Box<OutgoingMessage>,
        reply: tokio::sync::oneshot::Sender<crate::RequestOutcome>,
    },
    Subscription {
        handle: SubscriptionHandle,
        command: SubscriptionCommand,
        /// Where a new subscription's events go.
        events: Option<mpsc::UnboundedSender<crate::SubscriptionEvent>>,
    },
    Draining(bool),
}

/// Talks to the driver. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SipHandle {
    commands: mpsc::UnboundedSender<Command>,
    next_call: Arc<AtomicU64>,
}

impl SipHandle {
    /// Starts registering `account`; its events go to `events`, tagged with `key.handle`.
    pub fn register(
        &self,
        key: RegistrationKey,
        account: Account,
        events: mpsc::UnboundedSender<SipEvent>,
    ) {
        let _ = self.commands.send(Command::Register {
            key,
            account: Box::new(account),
            events,
        });
    }

    /// Removes the registration's binding (if it was ever made) and forgets it.
    pub fn unregister(&self, key: RegistrationKey) {
        let _ = self.commands.send(Command::Unregister { key });
    }

    /// Places a call: its handle, and its events.
    pub fn invite(&self, outgoing: OutgoingCall) -> (CallHandle, CallEvents) {
        let call = CallHandle(self.next_call.fetch_add(1, Ordering::Relaxed));
        let (events, receiver) = mpsc::unbounded_channel();
        let _ = self.commands.send(Command::Invite {
            call,
            outgoing: Box::new(outgoing),
            events,
        });
        (call, receiver)
    }

    /// A new call handle, unique among the driver's (for calls the owner connects without
    /// SIP, such as two browsers of the local domain).
    pub fn new_call_handle(&self) -> CallHandle {
        CallHandle(self.next_call.fetch_add(1, Ordering::Relaxed))
    }

    /// Starts (or stops) draining: new calls, bindings and subscriptions, and OPTIONS probes,
    /// get 503 (see `Endpoint::set_draining`).
    pub fn set_draining(&self, draining: bool) {
        let _ = self.commands.send(Command::Draining(draining));
    }

    /// Steers a call (hang up, ring, answer...). Commands for a call that is over are ignored.
    pub fn call(&self, call: CallHandle, command: CallCommand) {
        let _ = self.commands.send(Command::Call { call, command });
    }
}

/// A running driver.
#[derive(Debug)]
pub struct Sip {
    /// Talks to it.
    pub handle: SipHandle,
    /// The bound UDP address.
    pub udp: SocketAddr,
    /// The bound TCP address.
    pub tcp: SocketAddr,
    /// The bound TLS address, when TLS is listened for.
    pub tls: Option<SocketAddr>,
    /// The driver task; it ends after shutdown, once un-registrations are done.
    pub task: JoinHandle<()>,
    /// The messages in and out, counted, and the transactions held.
    pub wire: Arc<wire::WireStats>,
}

/// Binds the transports and starts the driver. `shutdown` makes it remove every binding and
/// stop.
pub async fn start(config: DriverConfig, shutdown: CancellationToken) -> io::Result<Sip> {
    let udp = bind_udp(SocketAddr::new(config.listen, config.udp_port))?;
    let tcp = TcpListener::bind(SocketAddr::new(config.listen, config.tcp_port)).await?;
    let (udp_addr, tcp_addr) = (udp.local_addr()?, tcp.local_addr()?);
    let tls = match &config.tls_server {
        Some((port, server)) => {
            let listener = TcpListener::bind(SocketAddr::new(config.listen, *port)).await?;
            Some((listener, TlsAcceptor::from(server.clone())))
        }
        None => None,
    };
    let tls_addr = match &tls {
        Some((listener, _)) => Some(listener.local_addr()?),
        None => None,
    };
    let resolver = Resolver::new(&config.dns_servers, config.transports.clone())
        .map_err(|error| io::Error::other(error.to_string()))?;
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let (inputs, inputs_rx) = mpsc::unbounded_channel();
    let next_call = Arc::new(AtomicU64::new(1));
    let wire = Arc::new(wire::WireStats::default());
    let driver = Driver {
        wire: wire.clone(),
        registered: std::collections::HashSet::new(),
        endpoint: Endpoint::new(config.endpoint.clone(), Instant::now().into_std()),
        slots: ConnectionSlots::new(config.max_connections, config.max_connections_per_source),
        config,
        udp,
        tcp,
        udp_addr,
        tcp_addr,
        tls,
        tls_addr,
        tls_names: HashMap::new(),
        resolver,
        connections: HashMap::new(),
        keys: HashMap::new(),
        owners: HashMap::new(),
        registration_servers: HashMap::new(),
        calls: HashMap::new(),
        call_owners: HashMap::new(),
        next_call: next_call.clone(),
        messages: HashMap::new(),
        next_message: 0,
        message_owners: HashMap::new(),
        subscriptions: HashMap::new(),
        subscription_owners: HashMap::new(),
        inputs,
    };
    info!(udp = %udp_addr, tcp = %tcp_addr, tls = ?tls_addr, "SIP transports listening");
    let task = tokio::spawn(driver.run(commands_rx, inputs_rx, shutdown));
    Ok(Sip {
        handle: SipHandle {
            commands,
            next_call,
        },
        udp: udp_addr,
        tcp: tcp_addr,
        tls: tls_addr,
        task,
        wire,
    })
}

/// Inputs from helper tasks (connections, DNS lookups).
#[derive(Debug)]
enum Input {
    Connection(ConnectionInput),
    Resolved {
        key: RegistrationKey,
        /// The targets (best first), and the server's name to check TLS certificates against.
        result: Result<(Vec<Target>, String), String>,
    },
    /// A live registration's server was looked up again (after each REGISTER's outcome, so
    /// every refresh uses a look-up made since the previous one).
    Reresolved {
        id: RegistrationId,
        result: Result<(Vec<Target>, String), String>,
    },
    /// The server of a redirected call's new target was looked up.
    RedirectResolved {
        id: CallId,
        uri: String,
        result: Result<(Vec<Target>, String), String>,
    },
    /// The server of a request (MESSAGE) was looked up.
    MessageResolved {
        key: u64,
        result: Result<(Vec<Target>, String), String>,
    },
    /// The server of our subscription was looked up.
    SubscriptionResolved {
        handle: SubscriptionHandle,
        result: Result<(Vec<Target>, String), String>,
    },
    /// A call's proxy was looked up.
    CallResolved {
        call: CallHandle,
        result: Result<(Vec<Target>, String), String>,
    },
    /// Time to look a registration's server up again after a failed look-up.
    RetryResolve {
        key: RegistrationKey,
    },
    /// An accepted TLS connection finished its handshake.
    TlsAccepted(
        Box<tokio_rustls::server::TlsStream<TcpStream>>,
        SocketAddr,
        ConnectionSlot,
    ),
}

/// Where a registration stands in the driver.
#[derive(Debug)]
enum Slot {
    /// Waiting for DNS (or for the next try after a failed look-up).
    Resolving {
        account: Box<Account>,
        events: mpsc::UnboundedSender<SipEvent>,
        /// Look-ups that failed so far.
        failures: u32,
    },
    /// Handed to the endpoint.
    Active(RegistrationId),
}

struct Driver {
    config: DriverConfig,
    endpoint: Endpoint,
    udp: UdpSocket,
    tcp: TcpListener,
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    /// The TLS listener, when one is configured.
    tls: Option<(TcpListener, TlsAcceptor)>,
    tls_addr: Option<SocketAddr>,
    /// The name each TLS server's certificate must carry (RFC 5922: the domain that was
    /// resolved, or the proxy's host), by address.
    tls_names: HashMap<SocketAddr, String>,
    /// The connections peers opened to us, counted per source.
    slots: ConnectionSlots,
    resolver: Resolver,
    /// Stream connections by remote address, each a task fed through this queue.
    connections: HashMap<Target, mpsc::Sender<Bytes>>,
    keys: HashMap<RegistrationKey, Slot>,
    owners: HashMap<RegistrationId, (RegistrationKey, mpsc::UnboundedSender<SipEvent>)>,
    /// The server each live registration looked up (to look it up again).
    registration_servers: HashMap<RegistrationId, String>,
    calls: HashMap<CallHandle, CallSlot>,
    call_owners: HashMap<CallId, (CallHandle, mpsc::UnboundedSender<CallEvent>)>,
    next_call: Arc<AtomicU64>,
    /// Requests (MESSAGE) waiting for their server's look-up, and those sent, by the endpoint's
    /// id, with where their outcome goes.
    messages: HashMap<u64, outgoing::PendingMessage>,
    next_message: u64,
    message_owners: HashMap<crate::RequestId, tokio::sync::oneshot::Sender<crate::RequestOutcome>>,
    /// Subscriptions, ours and the far end's, by handle, and the handles by the endpoint's id.
    subscriptions: HashMap<SubscriptionHandle, SubscriptionSlot>,
    subscription_owners: HashMap<crate::SubscriptionId, SubscriptionHandle>,
    inputs: mpsc::UnboundedSender<Input>,
    /// Counts and logs every message.
    wire: Arc<wire::WireStats>,
    /// The registrations whose binding is in place.
    registered: std::collections::HashSet<RegistrationId>,
}

/// How long shutdown waits for un-REGISTERs to be answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long a TCP connection may take to come up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut inputs: mpsc::UnboundedReceiver<Input>,
        shutdown: CancellationToken,
    ) {
        let mut buffer = vec![0u8; 65_536];
        let mut stopping: Option<Instant> = None;
        loop {
            let timer = self.endpoint.poll_timeout().map(Instant::from_std);
            let deadline = match (timer, stopping) {
                (Some(timer), Some(stop)) => Some(timer.min(stop + SHUTDOWN_GRACE)),
                (timer, Some(stop)) => timer.or(Some(stop + SHUTDOWN_GRACE)),
                (timer, None) => timer,
            };
            tokio::select! {
                () = shutdown.cancelled(), if stopping.is_none() => {
                    stopping = Some(Instant::now());
                    self.hangup_all();
                    self.unregister_all();
                }
                command = commands.recv(), if stopping.is_none() => match command {
                    Some(command) => self.command(command),
                    None => {
                        stopping = Some(Instant::now());
                        self.hangup_all();
                        self.unregister_all();
                    }
                },
                input = inputs.recv() => {
                    if let Some(input) = input {
                        self.input(input);
                    }
                }
                received = self.udp.recv_from(&mut buffer) => match received {
                    Ok((length, source)) => {
                        let target = Target { transport: Transport::Udp, addr: source };
                        let now = Instant::now().into_std();
                        self.wire.bytes(wire::Direction::In, target, &buffer[..length]);
                        if let Err(error) = self.endpoint.handle_datagram(now, target, &buffer[..length]) {
                            debug!(%source, %error, "dropped a UDP datagram");
                        }
                    }
                    Err(error) => debug!(%error, "UDP receive failed"),
                },
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if let Some(slot) = self.slot_for(peer) {
                            let target = Target { transport: Transport::Tcp, addr: peer };
                            self.spawn_connection(target, Some((Accepted::Tcp(stream), slot)), None);
                        }
                    }
                    Err(error) => {
                        debug!(%error, "TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                accepted = accept_tls(&self.tls) => match accepted {
                    Ok((stream, peer)) => {
                        if let Some(slot) = self.slot_for(peer) {
                            self.handshake(stream, peer, slot);
                        }
                    }
                    Err(error) => {
                        debug!(%error, "TLS accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = sleep_until(deadline) => {
                    self.endpoint.handle_timeout(Instant::now().into_std());
                }
            }
            self.flush().await;
            if let Some(stop) = stopping
                && ((self.endpoint.registration_count() == 0 && self.endpoint.call_count() == 0)
                    || stop.elapsed() >= SHUTDOWN_GRACE)
            {
                break;
            }
        }
        debug!("SIP driver stopped");
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Register {
                key,
                account,
                events,
            } => {
                if self.keys.contains_key(&key) {
                    return;
                }
                let _ = events.send(SipEvent::Registration {
                    handle: key.handle,
                    event: RegistrationEvent::Registering,
                });
                let server = self.server_of(&account);
                self.keys.insert(
                    key,
                    Slot::Resolving {
                        account,
                        events,
                        failures: 0,
                    },
                );
                self.resolve(server, move |result| Input::Resolved { key, result });
            }
            Command::Invite {
                call,
                outgoing,
                events,
            } => self.start_call(call, outgoing, events),
            Command::Call { call, command } => self.call_command(call, command),
            Command::Answer { request, answer } => self.answer_request(request, answer),
            Command::Message { message, reply } => self.start_message(message, reply),
            Command::Subscription {
                handle,
                command,
                events,
            } => self.subscription_command(handle, command, events),
            Command::Draining(draining) => self.endpoint.set_draining(draining),
            Command::Unregister { key } => match self.keys.remove(&key) {
                Some(Slot::Active(id)) => {
                    // The owner no longer listens; the endpoint finishes the un-REGISTER alone.
                    self.owners.remove(&id);
                    self.endpoint.unregister(Instant::now().into_std(), id);
                }
                Some(Slot::Resolving { .. }) | None => {}
            },
        }
    }

    /// The server an account registers with: the outbound proxy, else its domain.
    fn server_of(&self, account: &Account) -> String {
        self.server_for(account, None)
    }

    /// Where a request of `account` goes: the outbound proxy, else `instead` (the far end's
    /// domain, for a request of the local domain), else the account's domain.
    fn server_for(&self, account: &Account, instead: Option<&String>) -> String {
        self.config
            .outbound_proxy
            .clone()
            .or_else(|| instead.cloned())
            .unwrap_or_else(|| account.domain.clone())
    }

    /// Looks `server` up (RFC 3263) in a task of its own; `done` makes the input that brings
    /// the result back.
    fn resolve(
        &self,
        server: String,
        done: impl FnOnce(Result<(Vec<Target>, String), String>) -> Input + Send + 'static,
    ) {
        let resolver = self.resolver.clone();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            let result = match ServerUri::parse(&server) {
                Some(uri) => resolver
                    .resolve(&uri)
                    .await
                    .map_err(|error| error.to_string())
                    .and_then(|targets| {
                        if targets.is_empty() {
                            Err("no address".to_owned())
                        } else {
                            Ok(targets)
                        }
                    })
                    .map(|targets| (targets, uri.host.clone())),
                None => Err(format!("invalid SIP server {server:?}")),
            };
            let _ = inputs.send(done(result));
        });
    }

    fn unregister_all(&mut self) {
        let now = Instant::now().into_std();
        for (_, slot) in self.keys.drain() {
            if let Slot::Active(id) = slot {
                self.owners.remove(&id);
                self.endpoint.unregister(now, id);
            }
        }
    }

    fn input(&mut self, input: Input) {
        let now = Instant::now().into_std();
        match input {
            Input::Connection(ConnectionInput::Frame(source, frame)) => {
                if let crate::message::Frame::Message(message) = &frame {
                    self.wire.message(source, message);
                }
                if let Err(error) = self.endpoint.handle_frame(now, source, frame) {
                    debug!(remote = %source.addr, %error, "dropped a SIP message");
                }
            }
            Input::TlsAccepted(stream, peer, slot) => {
                let target = Target {
                    transport: Transport::Tls,
                    addr: peer,
                };
                let stream = Accepted::Tls(Box::new(tokio_rustls::TlsStream::Server(*stream)));
                self.spawn_connection(target, Some((stream, slot)), None);
            }
            Input::Connection(ConnectionInput::Closed(target)) => {
                self.connections.remove(&target);
                self.endpoint.handle_transport_error(now, target);
            }
            Input::CallResolved { call, result } => self.call_resolved(call, result),
            Input::MessageResolved { key, result } => self.message_resolved(key, result),
            Input::SubscriptionResolved { handle, result } => {
                self.subscription_resolved(handle, result)
            }
            Input::RedirectResolved { id, uri, result } => self.redirect_resolved(id, &uri, result),
            Input::RetryResolve { key } => {
                // Still wanted (not unregistered meanwhile): look it up again.
                let Some(Slot::Resolving {
                    account, events, ..
                }) = self.keys.get(&key)
                else {
                    return;
                };
                let _ = events.send(SipEvent::Registration {
                    handle: key.handle,
                    event: RegistrationEvent::Registering,
                });
                let server = self.server_of(account);
                self.resolve(server, move |result| Input::Resolved { key, result });
            }
            Input::Resolved { key, result } => {
                let Some(Slot::Resolving {
                    account,
                    events,
                    failures,
                }) = self.keys.remove(&key)
                else {
                    return; // Unregistered while resolving.
                };
                let targets = match result {
                    Ok((targets, name)) => {
                        self.remember_tls_names(&targets, &name);
                        targets
                    }
                    Err(error) => {
                        // DNS may come back (a resolver restarting, a record being added):
                        // looked up again with the registrations' backoff.
                        let retry_in = crate::registration::backoff(failures);
                        warn!(user = %account.user, domain = %account.domain, %error, retry_in = ?retry_in, "cannot find the SIP server");
                        let _ = events.send(SipEvent::Registration {
                            handle: key.handle,
                            event: RegistrationEvent::Failed {
                                reason: format!("503 Service Unavailable ({error})"),
                                retry_in: Some(retry_in),
                            },
                        });
                        self.keys.insert(
                            key,
                            Slot::Resolving {
                                account,
                                events,
                                failures: failures + 1,
                            },
                        );
                        let inputs = self.inputs.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(retry_in).await;
                            let _ = inputs.send(Input::RetryResolve { key });
                        });
                        return;
                    }
                };
                let target = targets[0];
                let config = self.registration_config(&account, target);
                let id = self.endpoint.register(now, config, target);
                self.endpoint.set_registration_targets(id, targets);
                self.registration_servers
                    .insert(id, self.server_of(&account));
                self.keys.insert(key, Slot::Active(id));
                self.owners.insert(id, (key, events));
            }
            Input::Reresolved { id, result } => match result {
                Ok((targets, name)) => {
                    self.remember_tls_names(&targets, &name);
                    self.endpoint.set_registration_targets(id, targets);
                }
                // The servers known so far stay; the next outcome looks them up again.
                Err(error) => {
                    debug!(%error, "a registration's server could not be looked up again")
                }
            },
        }
    }

    /// The name to check the certificates of TLS targets against: the SIP domain (or proxy
    /// host) that was looked up, never the SRV target's name (RFC 5922 section 4).
    /// The targets a request's server look-up found (their TLS names remembered), or the
    /// reason of the 503 its sender gets when it found none.
    fn looked_up(
        &mut self,
        result: Result<(Vec<Target>, String), String>,
        method: &str,
        uri: &crate::RequestUri,
    ) -> Result<Vec<Target>, String> {
        match result {
            Ok((targets, name)) => {
                self.remember_tls_names(&targets, &name);
                Ok(targets)
            }
            Err(error) => {
                warn!(%uri, %error, "cannot find the SIP server for a {method}");
                Err(format!("Service Unavailable ({error})"))
            }
        }
    }

    fn remember_tls_names(&mut self, targets: &[Target], name: &str) {
        for target in targets {
            if target.transport == Transport::Tls {
                self.tls_names.insert(target.addr, name.to_owned());
            }
        }
    }

    /// After each REGISTER's outcome, the registration's server is looked up again (unless it
    /// is an IP address), so that a refresh or retry goes where the DNS says now.
    fn reresolve(&self, id: RegistrationId) {
        let Some(server) = self.registration_servers.get(&id).cloned() else {
            return;
        };
        if ServerUri::parse(&server).is_some_and(|uri| uri.host.parse::<IpAddr>().is_ok()) {
            return;
        }
        self.resolve(server, move |result| Input::Reresolved { id, result });
    }

    /// Our `host:port` toward `target`, for Via and Contact.
    fn local_address(&self, target: Target) -> String {
        let port = match target.transport {
            Transport::Udp => self.udp_addr.port(),
            Transport::Tcp => self.tcp_addr.port(),
            // Without a TLS listener, requests come back over the registration's connection.
            Transport::Tls => self.tls_addr.unwrap_or(self.tcp_addr).port(),
        };
        let host = match &self.config.advertised {
            Some(host) => host.clone(),
            None => host_text(self.local_ip_toward(target.addr)),
        };
        format!("{host}:{port}")
    }

    /// The Route header value of the outbound proxy, if one is configured.
    fn route(&self) -> Option<String> {
        self.config.outbound_proxy.as_ref().map(|proxy| {
            let uri = proxy.trim().trim_start_matches('<').trim_end_matches('>');
            let uri = if uri.contains(':') && (uri.starts_with("sip:") || uri.starts_with("sips:"))
            {
                uri.to_owned()
            } else {
                format!("sip:{uri}")
            };
            format!("<{uri};lr>")
        })
    }

    fn registration_config(&self, account: &Account, target: Target) -> RegistrationConfig {
        let random = || uuid::Uuid::new_v4().simple().to_string();
        RegistrationConfig {
            user: account.user.clone(),
            domain: account.domain.clone(),
            display_name: account.display_name.clone(),
            credentials: account.credentials.clone(),
            route: self.route(),
            transport: target.transport,
            local: self.local_address(target),
            local_fixed: self.config.advertised.is_some(),
            contact_user: random()[..16].to_owned(),
            instance: format!("urn:uuid:{}", uuid::Uuid::new_v4()),
            contact_params: account.contact_params.clone(),
            expires: self.config.register_expires,
            user_agent: account
                .user_agent
                .clone()
                .unwrap_or_else(|| self.config.endpoint.user_agent.clone()),
            call_id: random(),
            from_tag: random()[..12].to_owned(),
            nonce_seed: random()[..8].to_owned(),
        }
    }

    /// The local address packets to `remote` leave from: the bound address, or, when bound to
    /// all interfaces, the one the routing table picks (found by connecting a UDP socket, which
    /// sends nothing).
    fn local_ip_toward(&self, remote: SocketAddr) -> IpAddr {
        if !self.config.listen.is_unspecified() {
            return self.config.listen;
        }
        let any = SocketAddr::new(self.config.listen, 0);
        std::net::UdpSocket::bind(any)
            .and_then(|socket| {
                socket.connect(remote)?;
                socket.local_addr()
            })
            .map(|local| local.ip())
            .unwrap_or(self.config.listen)
    }

    /// Sends what the endpoint produced and routes its events.
    async fn flush(&mut self) {
        // OPTIONS pings of local phones need our address toward each.
        while let Some(ping) = self.endpoint.poll_ping() {
            let local = self.local_address(ping.target);
            self.endpoint
                .send_ping(Instant::now().into_std(), ping, &local);
        }
        // Handling an event can make more to send (a call refused for want of an owner).
        while self.endpoint.has_output() {
            self.flush_once().await;
        }
        self.wire.set_transactions(
            self.endpoint.server_transactions(),
            self.endpoint.client_transactions(),
        );
        self.wire
            .set_registrations(self.registered.len(), self.endpoint.registration_count());
    }

    async fn flush_once(&mut self) {
        while let Some(transmit) = self.endpoint.poll_transmit() {
            self.wire
                .bytes(wire::Direction::Out, transmit.target, &transmit.bytes);
            match transmit.target.transport {
                Transport::Udp => {
                    if let Err(error) = self
                        .udp
                        .send_to(&transmit.bytes, transmit.target.addr)
                        .await
                    {
                        debug!(remote = %transmit.target.addr, %error, "UDP send failed");
                        self.endpoint
                            .handle_transport_error(Instant::now().into_std(), transmit.target);
                    }
                }
                Transport::Tcp | Transport::Tls => {
                    self.send_stream(transmit.target, transmit.bytes)
                }
            }
        }
        while let Some(event) = self.endpoint.poll_event() {
            let (id, event) = match event {
                EndpointEvent::Registration { id, event } => (id, event),
                EndpointEvent::Incoming {
                    registration,
                    id,
                    invite,
                } => {
                    self.incoming_call(registration, id, &invite);
                    continue;
                }
                EndpointEvent::Call { id, event } => {
                    self.call_event(id, event);
                    continue;
                }
                EndpointEvent::LocalInvite {
                    pending,
                    source,
                    authenticated,
                    invite,
                } => {
                    self.local_invite(&pending, source, authenticated, &invite);
                    continue;
                }
                EndpointEvent::RegistrationSettled(id) => {
                    self.reresolve(id);
                    continue;
                }
                EndpointEvent::Request {
                    pending,
                    registration,
                    source,
                    authenticated,
                    request,
                } => {
                    self.forward_request(pending, registration, source, authenticated, request);
                    continue;
                }
                EndpointEvent::RequestDone { id, outcome } => {
                    self.message_done(id, outcome);
                    continue;
                }
                EndpointEvent::Subscription { id, event } => {
                    self.subscription_event(id, event);
                    continue;
                }
                EndpointEvent::BindingLost(ping) => {
                    info!(user = %ping.user, contact = %ping.contact, remote = %ping.target.addr,
                        "a phone did not answer its OPTIONS ping: its registration is removed");
                    continue;
                }
                EndpointEvent::SiblingBindingRemoved { account, contact } => {
                    info!(%account, %contact, "removing the binding a gone gateway left at the \
                        registrar for this account (it no longer answers for it)");
                    continue;
                }
            };
            let done = event == RegistrationEvent::Unregistered;
            match event {
                RegistrationEvent::Registered { .. } => {
                    self.registered.insert(id);
                }
                RegistrationEvent::Failed { .. } | RegistrationEvent::Unregistered => {
                    self.registered.remove(&id);
                }
                _ => {}
            }
            if let Some((key, events)) = self.owners.get(&id) {
                let _ = events.send(SipEvent::Registration {
                    handle: key.handle,
                    event,
                });
            }
            if done {
                self.owners.remove(&id);
                self.registration_servers.remove(&id);
            }
        }
    }
}

/// The receive and send buffers asked for the UDP socket. A burst of registrations (a restart,
/// a reconnect storm) brings as many responses at once; the default 208 KiB drops them, which
/// costs retransmissions. The kernel caps this at `net.core.rmem_max`.
const UDP_BUFFER: usize = 4 * 1024 * 1024;

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        None,
    )?;
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
