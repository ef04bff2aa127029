//! The user agent's core, sans-IO: routes messages between the network, the transactions and
//! the registrations, and answers requests that reach the gateway.
//!
//! The driver feeds it what arrived (with the transport and source address) and timer expiries,
//! and sends what it asks ([`Transmit`]) to the target it names. Requests from the network are
//! answered here until calls exist: OPTIONS gets 200, other methods 405 (known) or 501
//! (unknown), a Request-URI that matches no live registration gets 404, so that SIP scanners
//! never reach a browser, and malformed requests get 400 when they can be answered at all.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use ezk_sip_types::Method;

use crate::call::CallEvent;
use crate::message::{Frame, Message, ParseError, StartLine};
use crate::registration::{Failure, Registration, RegistrationConfig, RegistrationEvent};
use crate::transaction::{Event, InviteServer, NonInviteClient, NonInviteServer, Timers};
pub(crate) use crate::transport::Target;

mod calls;
mod failover;
mod local;
mod outgoing;
mod requests;
mod siblings;
mod subscriptions;
mod transactions;
use calls::CallEntry;
pub(crate) use failover::{Failover, server_failed};
pub(crate) use local::PendingInvite;
pub use outgoing::RequestId;
pub(crate) use requests::PendingRequest;
pub use subscriptions::SubscriptionId;
use transactions::{ClientKind, ClientTransaction, ServerEntry, ServerTransaction};

/// Bytes to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// Where to.
    pub target: Target,
    /// What.
    pub bytes: Bytes,
}

/// Identifies a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegistrationId(pub u64);

/// What the endpoint reports to its user.
#[derive(Debug, Clone)]
pub enum EndpointEvent {
    /// A registration's state changed. After [`RegistrationEvent::Unregistered`] the
    /// registration is gone.
    Registration {
        /// Which.
        id: RegistrationId,
        /// What happened.
        event: RegistrationEvent,
    },
    /// An INVITE reached a registration: a new incoming call (answered 100 Trying, nothing
    /// more until the owner rings, answers or rejects it).
    Incoming {
        /// The registration it reached.
        registration: RegistrationId,
        /// The new call.
        id: CallId,
        /// The INVITE.
        invite: Box<Message>,
    },
    /// An INVITE for a user of the local domain: take it with [`Endpoint::accept_local`] or
    /// refuse it with [`Endpoint::refuse_local`].
    LocalInvite {
        /// Names it.
        pending: PendingInvite,
        /// Where it came from.
        source: Target,
        /// Whether the caller proved who it is (a caller of the local domain answered our
        /// digest challenge); callers of other domains cannot.
        authenticated: bool,
        /// The INVITE.
        invite: Box<Message>,
    },
    /// A call's event. After [`CallEvent::Terminated`] nothing more comes for the call.
    Call {
        /// Which.
        id: CallId,
        /// What happened.
        event: CallEvent,
    },
    /// A registration's attempt ended (registered, or every server failed): the time to look
    /// its servers up again, so that its next refresh or retry goes where the DNS says then.
    RegistrationSettled(RegistrationId),
    /// A phone of the local domain did not answer its OPTIONS ping: its binding is gone.
    BindingLost(crate::registrar::Ping),
    /// Another binding of a registration's account, at a sibling gateway that no longer
    /// serves it (gone, or restarted), is being removed at the registrar.
    SiblingBindingRemoved {
        /// The account (`user@domain`).
        account: String,
        /// The binding's Contact.
        contact: String,
    },
    /// An out-of-dialog request the owner answers (MESSAGE, SUBSCRIBE), for a registration or
    /// for the local domain (`registration` none): answer it with
    /// [`Endpoint::answer_request`]; unanswered, it gets 500 by its deadline.
    Request {
        /// Names it.
        pending: PendingRequest,
        /// The registration it reached, if it is not for the local domain.
        registration: Option<RegistrationId>,
        /// Where it came from.
        source: std::net::SocketAddr,
        /// For the local domain: its sender is a user of the domain who authenticated.
        authenticated: bool,
        /// The request.
        request: Box<Message>,
    },
    /// A subscription's event (ours, [`Endpoint::subscribe`], or the far end's,
    /// [`Endpoint::accept_subscription`]). After [`SubscriptionEvent::Ended`] it is gone.
    ///
    /// [`SubscriptionEvent::Ended`]: crate::subscription::SubscriptionEvent::Ended
    Subscription {
        /// Which.
        id: SubscriptionId,
        /// What happened.
        event: crate::subscription::SubscriptionEvent,
    },
    /// A request sent with [`Endpoint::send_request`] has its outcome.
    RequestDone {
        /// Which.
        id: RequestId,
        /// Its final status.
        outcome: crate::request::RequestOutcome,
    },
}

impl PartialEq for EndpointEvent {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                EndpointEvent::Registration { id, event },
                EndpointEvent::Registration {
                    id: other_id,
                    event: other_event,
                },
            ) => id == other_id && event == other_event,
            (
                EndpointEvent::Incoming {
                    registration,
                    id,
                    invite,
                },
                EndpointEvent::Incoming {
                    registration: other_registration,
                    id: other_id,
                    invite: other_invite,
                },
            ) => {
                registration == other_registration
                    && id == other_id
                    && invite.to_bytes() == other_invite.to_bytes()
            }
            (
                EndpointEvent::Call { id, event },
                EndpointEvent::Call {
                    id: other_id,
                    event: other_event,
                },
            ) => id == other_id && event == other_event,
            (
                EndpointEvent::LocalInvite {
                    pending, invite, ..
                },
                EndpointEvent::LocalInvite {
                    pending: other_pending,
                    invite: other_invite,
                    ..
                },
            ) => pending == other_pending && invite.to_bytes() == other_invite.to_bytes(),
            (EndpointEvent::BindingLost(ping), EndpointEvent::BindingLost(other)) => ping == other,
            (
                EndpointEvent::SiblingBindingRemoved { account, contact },
                EndpointEvent::SiblingBindingRemoved {
                    account: other_account,
                    contact: other_contact,
                },
            ) => account == other_account && contact == other_contact,
            (
                EndpointEvent::Request {
                    pending,
                    registration,
                    source,
                    authenticated,
                    request,
                },
                EndpointEvent::Request {
                    pending: other_pending,
                    registration: other_registration,
                    source: other_source,
                    authenticated: other_authenticated,
                    request: other_request,
                },
            ) => {
                pending == other_pending
                    && registration == other_registration
                    && source == other_source
                    && authenticated == other_authenticated
                    && request.to_bytes() == other_request.to_bytes()
            }
            (EndpointEvent::RegistrationSettled(id), EndpointEvent::RegistrationSettled(other)) => {
                id == other
            }
            (
                EndpointEvent::RequestDone { id, outcome },
                EndpointEvent::RequestDone {
                    id: other_id,
                    outcome: other_outcome,
                },
            ) => id == other_id && outcome == other_outcome,
            (
                EndpointEvent::Subscription { id, event },
                EndpointEvent::Subscription {
                    id: other_id,
                    event: other_event,
                },
            ) => id == other_id && event == other_event,
            _ => false,
        }
    }
}

/// The endpoint's settings.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Transaction timers.
    pub timers: Timers,
    /// The largest message accepted.
    pub max_message_size: usize,
    /// The Server header of our responses.
    pub user_agent: String,
    /// Random text that To tags are made from (with a counter).
    pub tag_seed: String,
    /// The session interval asked for in calls (RFC 4028), or none.
    pub session_expires: Option<u32>,
    /// The smallest session interval accepted.
    pub min_se: u32,
    /// The local domain the gateway is registrar of, if any.
    pub local: Option<crate::registrar::LocalDomain>,
    /// The most server transactions held at once (a UDP transaction lingers 32 s after its
    /// response to absorb retransmissions); a new request past it gets a stateless 503 with
    /// Retry-After, which holds nothing.
    pub max_server_transactions: usize,
    /// The other gateways of a cluster (`[instance] peers`), by their SIP address: when one of
    /// our accounts is first registered, a binding the registrar lists for it at one of them
    /// is asked (OPTIONS to its Contact) whether it is still served, and removed when it is
    /// not (the gateway is gone or no longer holds it), so that calls do not fork to it.
    pub siblings: Vec<std::net::SocketAddr>,
}

/// Identifies a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// Whose a client transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    Registration(RegistrationId),
    Call(CallId),
    /// An OPTIONS ping of a local phone (its entry in `Endpoint::pings`).
    Ping(u64),
    /// A request sent for an account (its entry in `Endpoint::outgoing`).
    Request(RequestId),
    /// A SUBSCRIBE or NOTIFY of a subscription (its entry in `Endpoint::subscriptions`).
    Subscription(SubscriptionId),
    /// An OPTIONS to another gateway's binding of an account (its entry in
    /// `Endpoint::probes`).
    Probe(u64),
}

#[derive(Debug)]
struct RegistrationEntry {
    registration: Registration,
    target: Target,
    /// The servers of the domain in the order to try them (RFC 3263), `target` among them.
    failover: Failover,
}

/// The user agent core.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    next_id: u64,
    next_tag: u64,
    /// Requests refused because the transaction table was full.
    shed: u64,
    /// Whether new dialogs and bindings are refused (503) while the gateway drains: see
    /// [`Endpoint::set_draining`].
    draining: bool,
    /// Client transactions by branch.
    clients: HashMap<String, ClientTransaction>,
    /// Server transactions by (branch, sent-by, method), RFC 3261 section 17.2.3.
    servers: HashMap<ServerKey, ServerEntry>,
    registrations: HashMap<RegistrationId, RegistrationEntry>,
    /// Registrations by their Contact user part, for requests that reach us.
    contacts: HashMap<String, RegistrationId>,
    calls: HashMap<CallId, CallEntry>,
    /// Requests sent for accounts (MESSAGE), until their outcome.
    outgoing: HashMap<RequestId, outgoing::OutgoingEntry>,
    /// The registrar of the local domain.
    registrar: Option<crate::registrar::Registrar>,
    /// Calls by Call-ID and our tag, for the requests of their dialogs.
    dialogs: HashMap<(String, String), CallId>,
    /// Subscriptions, ours and the far end's, and the same by Call-ID and our tag.
    subscriptions: HashMap<SubscriptionId, subscriptions::SubscriptionEntry>,
    subscription_dialogs: HashMap<(String, String), SubscriptionId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EndpointEvent>,
    /// OPTIONS pings of local phones: due ones waiting for [`Endpoint::send_ping`], sent ones
    /// waiting for their answer, and when the pings' timer is set for.
    ping_queue: VecDeque<crate::registrar::Ping>,
    pings: HashMap<u64, crate::registrar::Ping>,
    ping_timer: Option<Instant>,
    /// Other gateways' bindings of our accounts being asked whether they are still served:
    /// the registration and the Contact.
    probes: HashMap<u64, (RegistrationId, String)>,
    /// Out-of-dialog requests waiting for their owner's answer: each request and its deadline.
    pending_requests: HashMap<ServerKey, (Message, Instant)>,
    /// Every timer, soonest first. An entry may be stale (its owner gone, or its deadline
    /// moved): it is checked against the owner when popped, so that nothing is ever scanned.
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
}

/// Whose timer a heap entry is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Client(String),
    Server(ServerKey),
    Registration(RegistrationId),
    Call(CallId),
    Ping,
    /// A pending request's deadline.
    Request(ServerKey),
}

impl Endpoint {
    /// An endpoint with nothing going on, at `now` (from which the registrar's nonces count
    /// time).
    pub fn new(config: EndpointConfig, now: Instant) -> Self {
        let registrar = config
            .local
            .clone()
            .map(|local| crate::registrar::Registrar::new(local, now));
        Endpoint {
            registrar,
            config,
            next_id: 1,
            next_tag: 1,
            shed: 0,
            draining: false,
            clients: HashMap::new(),
            servers: HashMap::new(),
            registrations: HashMap::new(),
            contacts: HashMap::new(),
            calls: HashMap::new(),
            outgoing: HashMap::new(),
            dialogs: HashMap::new(),
            subscriptions: HashMap::new(),
            subscription_dialogs: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            ping_queue: VecDeque::new(),
            pings: HashMap::new(),
            ping_timer: None,
            probes: HashMap::new(),
            pending_requests: HashMap::new(),
            timers: BinaryHeap::new(),
        }
    }

    /// Records the current deadline of a timer's owner.
    fn schedule(&mut self, timer: Timer) {
        let deadline = match &timer {
            Timer::Client(branch) => self
                .clients
                .get(branch)
                .and_then(|client| client.transaction.poll_timeout()),
            Timer::Call(id) => self
                .calls
                .get(id)
                .and_then(|entry| entry.call.poll_timeout()),
            Timer::Server(key) => self
                .servers
                .get(key)
                .and_then(|entry| server_timeout(&entry.transaction)),
            Timer::Registration(id) => self
                .registrations
                .get(id)
                .and_then(|entry| entry.registration.poll_timeout()),
            Timer::Request(key) => self
                .pending_requests
                .get(key)
                .map(|(_, deadline)| *deadline),
            Timer::Ping => {
                // One entry in the heap at a time: a REGISTER may only move it earlier.
                let next = self
                    .registrar
                    .as_ref()
                    .and_then(|registrar| registrar.next_ping());
                match (next, self.ping_timer) {
                    (Some(next), Some(set)) if set <= next => None,
                    (next, _) => {
                        self.ping_timer = next;
                        next
                    }
                }
            }
        };
        if let Some(deadline) = deadline {
            self.timers.push(Reverse((deadline, timer)));
        }
    }

    /// Starts a registration toward `target` (the registrar, or the outbound proxy).
    pub fn register(
        &mut self,
        now: Instant,
        config: RegistrationConfig,
        target: Target,
    ) -> RegistrationId {
        let id = RegistrationId(self.next_id);
        self.next_id += 1;
        self.contacts.insert(config.contact_user.clone(), id);
        let mut registration = Registration::new(config);
        registration.register();
        self.registrations.insert(
            id,
            RegistrationEntry {
                registration,
                target,
                failover: Failover::new(vec![target]),
            },
        );
        self.pump(now, id);
        id
    }

    /// The servers of a registration's domain, best first (a look-up, or a new one): when one
    /// fails, the next is tried.
    pub fn set_registration_targets(&mut self, id: RegistrationId, targets: Vec<Target>) {
        if targets.is_empty() {
            return;
        }
        if let Some(entry) = self.registrations.get_mut(&id)
            && let Some(target) = entry.failover.replace(targets, entry.target)
        {
            entry.target = target;
        }
    }

    /// Removes a registration's binding; the registration ends with
    /// [`RegistrationEvent::Unregistered`].
    pub fn unregister(&mut self, now: Instant, id: RegistrationId) {
        if let Some(entry) = self.registrations.get_mut(&id) {
            entry.registration.unregister();
            self.pump(now, id);
        }
    }

    /// The number of live registrations.
    pub fn registration_count(&self) -> usize {
        self.registrations.len()
    }

    /// A datagram arrived. An error means it was dropped: not a SIP message at all, so
    /// nothing could be answered (the driver logs it).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: Target,
        data: &[u8],
    ) -> Result<(), ParseError> {
        if data.iter().all(|byte| matches!(byte, b'\r' | b'\n')) {
            return Ok(()); // A keep-alive.
        }
        if crate::stun::is_stun(data) {
            // A STUN keep-alive (RFC 5626 section 8): answered with the address it came from.
            if let Some(response) = crate::stun::binding_response(data, source.addr) {
                self.transmits.push_back(Transmit {
                    target: source,
                    bytes: Bytes::from(response),
                });
            }
            return Ok(());
        }
        let message = Message::parse_datagram(data, self.config.max_message_size)?;
        self.handle_message(now, source, message);
        Ok(())
    }

    /// A frame arrived on a stream connection (keep-alive frames are the driver's business).
    /// An error means it was dropped, as for datagrams.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        source: Target,
        frame: Frame,
    ) -> Result<(), ParseError> {
        match frame {
            Frame::Message(message) => self.handle_message(now, source, *message),
            Frame::Invalid(error) => return Err(error),
            Frame::Ping | Frame::Pong => {}
        }
        Ok(())
    }

    fn handle_message(&mut self, now: Instant, source: Target, message: Message) {
        match &message.start {
            StartLine::Response { .. } => self.handle_response(now, message),
            StartLine::Request { .. } => self.handle_request(now, source, message),
        }
    }

    fn handle_response(&mut self, now: Instant, response: Message) {
        let Some(branch) = client_key(&response) else {
            return;
        };
        let Some(client) = self.clients.get_mut(&branch) else {
            return;
        };
        // RFC 3261 section 17.1.3: the CSeq method must match too.
        let matches = response
            .cseq()
            .is_ok_and(|cseq| cseq.method == client.method);
        if !matches {
            return;
        }
        client.transaction.handle_response(now, response);
        self.drive_client(now, &branch);
    }

    /// While draining, requests that would start something new here (INVITE, REGISTER and
    /// SUBSCRIBE outside a dialog) and OPTIONS probes get 503, so that a load balancer (such as
    /// Kamailio's dispatcher) and phones turn to another gateway; requests within dialogs,
    /// CANCELs and the rest (MESSAGE, PUBLISH, NOTIFY) are handled as before, so that the calls
    /// and subscriptions here go on until they end.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// Whether the endpoint is draining.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// How many requests were refused because the transaction table was full.
    pub fn shed_count(&self) -> u64 {
        self.shed
    }

    /// How many server transactions are held.
    pub fn server_transactions(&self) -> usize {
        self.servers.len()
    }

    /// How many client transactions are held.
    pub fn client_transactions(&self) -> usize {
        self.clients.len()
    }

    fn new_tag(&mut self) -> String {
        self.next_tag += 1;
        format!("{}{:x}", self.config.tag_seed, self.next_tag)
    }

    fn drain_server(&mut self, key: &ServerKey) {
        let Some(entry) = self.servers.get_mut(key) else {
            return;
        };
        let target = entry.target;
        loop {
            let bytes = match &mut entry.transaction {
                ServerTransaction::NonInvite(transaction) => transaction.poll_transmit(),
                ServerTransaction::Invite(invite) => invite.poll_transmit(),
            };
            match bytes {
                Some(bytes) => self.transmits.push_back(Transmit { target, bytes }),
                None => break,
            }
        }
        self.schedule(Timer::Server(key.clone()));
    }

    /// Runs a registration's output: requests into new client transactions, events out.
    fn pump(&mut self, now: Instant, id: RegistrationId) {
        let Some(entry) = self.registrations.get_mut(&id) else {
            return;
        };
        let target = entry.target;
        let requests: Vec<Message> =
            std::iter::from_fn(|| entry.registration.poll_request()).collect();
        for request in requests {
            self.start_non_invite(now, &request, target, Owner::Registration(id));
        }
        let Some(entry) = self.registrations.get_mut(&id) else {
            return;
        };
        let others: Vec<String> =
            std::iter::from_fn(|| entry.registration.poll_other_contact()).collect();
        for contact in others {
            self.probe_sibling(now, id, contact);
        }
        let Some(entry) = self.registrations.get_mut(&id) else {
            return;
        };
        let mut done = false;
        while let Some(event) = entry.registration.poll_event() {
            done |= event == RegistrationEvent::Unregistered;
            self.events
                .push_back(EndpointEvent::Registration { id, event });
        }
        if done || entry.registration.is_done() {
            let contact = entry.registration.config().contact_user.clone();
            self.registrations.remove(&id);
            self.contacts.remove(&contact);
            return;
        }
        self.schedule(Timer::Registration(id));
    }

    /// Sends `request` (not an INVITE) to `target` in a new client transaction of `owner`.
    fn start_non_invite(&mut self, now: Instant, request: &Message, target: Target, owner: Owner) {
        let (Some(branch), Some(method)) = (client_key(request), request.method().cloned()) else {
            return;
        };
        let transaction = NonInviteClient::new(
            Bytes::from(request.to_bytes()),
            target.transport.reliable(),
            self.config.timers,
            now,
        );
        self.start_client(
            branch,
            ClientTransaction {
                transaction: ClientKind::NonInvite(transaction),
                target,
                owner,
                method,
                request: None,
            },
        );
    }

    /// Starts a client transaction: its first transmission goes out.
    fn start_client(&mut self, branch: String, mut client: ClientTransaction) {
        while let Some(bytes) = client.transaction.poll_transmit() {
            self.transmits.push_back(Transmit {
                target: client.target,
                bytes,
            });
        }
        self.clients.insert(branch.clone(), client);
        self.schedule(Timer::Client(branch));
    }

    /// Runs a client transaction's output, and hands its outcome to its owner.
    fn drive_client(&mut self, now: Instant, branch: &str) {
        let Some(client) = self.clients.get_mut(branch) else {
            return;
        };
        let (target, owner) = (client.target, client.owner);
        let request = client.request.clone();
        while let Some(bytes) = client.transaction.poll_transmit() {
            self.transmits.push_back(Transmit { target, bytes });
        }
        let mut outcomes = Vec::new();
        while let Some(event) = client.transaction.poll_event() {
            outcomes.push(event);
        }
        if client.transaction.state() == crate::transaction::State::Terminated {
            self.clients.remove(branch);
        } else {
            self.schedule(Timer::Client(branch.to_owned()));
        }
        let owner = match owner {
            Owner::Registration(id) => id,
            Owner::Call(id) => {
                if let Some(request) = request {
                    self.call_outcomes(now, id, &request, outcomes);
                }
                return;
            }
            Owner::Ping(id) => return self.ping_outcomes(id, outcomes),
            Owner::Probe(id) => return self.probe_outcomes(now, id, outcomes),
            Owner::Request(id) => return self.outgoing_outcomes(now, id, outcomes),
            Owner::Subscription(id) => return self.subscription_outcomes(now, id, outcomes),
        };
        for outcome in outcomes {
            let Some(entry) = self.registrations.get_mut(&owner) else {
                continue;
            };
            if server_failed(&outcome) {
                if let Some(next) = entry.failover.next()
                    && entry.registration.failover()
                {
                    entry.target = next;
                    self.pump(now, owner);
                    continue;
                }
                // Every server failed: the next attempt starts from the first.
                if let Some(first) = entry.failover.first() {
                    entry.target = first;
                }
            } else if matches!(outcome, Event::Final(_)) {
                entry.failover.settled();
            }
            match outcome {
                Event::Final(response) => entry.registration.handle_response(now, &response),
                Event::Timeout => entry.registration.handle_failure(now, Failure::Timeout),
                Event::TransportError => entry.registration.handle_failure(now, Failure::Transport),
                Event::Provisional(_) | Event::Ack(_) => continue,
            }
            let settled = entry.registration.is_settled();
            self.pump(now, owner);
            if settled {
                self.events
                    .push_back(EndpointEvent::RegistrationSettled(owner));
            }
        }
    }

    /// The transport could not reach `target` (a refused or broken connection): the
    /// transactions toward it fail.
    pub fn handle_transport_error(&mut self, now: Instant, target: Target) {
        let failed: Vec<String> = self
            .clients
            .iter()
            .filter(|(_, client)| client.target == target)
            .map(|(branch, _)| branch.clone())
            .collect();
        for branch in failed {
            if let Some(client) = self.clients.get_mut(&branch) {
                client.transaction.handle_transport_error();
            }
            self.drive_client(now, &branch);
        }
    }

    /// Timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = |deadline: Option<Instant>| deadline.is_some_and(|deadline| deadline <= now);
        while self
            .timers
            .peek()
            .is_some_and(|Reverse((deadline, _))| *deadline <= now)
        {
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::Client(branch) => {
                    let Some(client) = self.clients.get_mut(&branch) else {
                        continue;
                    };
                    if !due(client.transaction.poll_timeout()) {
                        continue;
                    }
                    client.transaction.handle_timeout(now);
                    self.drive_client(now, &branch);
                }
                Timer::Server(key) => {
                    let Some(entry) = self.servers.get_mut(&key) else {
                        continue;
                    };
                    if !due(server_timeout(&entry.transaction)) {
                        continue;
                    }
                    let terminated = match &mut entry.transaction {
                        ServerTransaction::NonInvite(transaction) => {
                            transaction.handle_timeout(now);
                            transaction.state() == crate::transaction::State::Terminated
                        }
                        ServerTransaction::Invite(invite) => {
                            invite.handle_timeout(now);
                            invite.state() == crate::transaction::State::Terminated
                        }
                    };
                    self.drain_server(&key);
                    if terminated {
                        self.servers.remove(&key);
                    }
                }
                Timer::Call(id) => {
                    let Some(entry) = self.calls.get_mut(&id) else {
                        continue;
                    };
                    if !due(entry.call.poll_timeout()) {
                        continue;
                    }
                    entry.call.handle_timeout(now);
                    self.pump_call(now, id);
                }
                Timer::Registration(id) => {
                    let Some(entry) = self.registrations.get_mut(&id) else {
                        continue;
                    };
                    if !due(entry.registration.poll_timeout()) {
                        continue;
                    }
                    entry.registration.handle_timeout(now);
                    self.pump(now, id);
                }
                Timer::Ping => self.pings_due(now),
                Timer::Request(key) => self.request_overdue(now, key),
            }
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Whether there is something to send or report.
    pub fn has_output(&self) -> bool {
        !self.transmits.is_empty() || !self.events.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next (possibly early, for a timer that moved).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((deadline, _))| *deadline)
    }
}

/// The methods of RFC 3261 and its common extensions: other methods get 501, these 405.
const KNOWN_METHODS: [Method; 14] = [
    Method::INVITE,
    Method::ACK,
    Method::CANCEL,
    Method::BYE,
    Method::REGISTER,
    Method::MESSAGE,
    Method::UPDATE,
    Method::PRACK,
    Method::OPTIONS,
    Method::SUBSCRIBE,
    Method::NOTIFY,
    Method::PUBLISH,
    Method::INFO,
    Method::REFER,
];

fn server_timeout(transaction: &ServerTransaction) -> Option<Instant> {
    match transaction {
        ServerTransaction::NonInvite(transaction) => transaction.poll_timeout(),
        ServerTransaction::Invite(invite) => invite.poll_timeout(),
    }
}

/// A client transaction's key: the branch and the CSeq method (RFC 3261 section 17.1.3), so
/// that a CANCEL, which shares its INVITE's branch, is a transaction of its own.
fn client_key(message: &Message) -> Option<String> {
    let branch = top_branch(message)?;
    let method = message.cseq().ok()?.method;
    Some(format!("{branch} {method}"))
}

fn top_branch(message: &Message) -> Option<String> {
    let vias = message.vias().ok()?;
    let via = vias.first()?;
    via.params
        .get_val("branch")
        .map(|branch| branch.to_string())
}

/// A server transaction's key: branch, sent-by and method.
type ServerKey = (String, String, String);

/// RFC 3261 section 17.2.3: branch, sent-by and method (an ACK belongs to its INVITE).
fn server_key(request: &Message, method: &Method) -> Option<ServerKey> {
    let vias = request.vias().ok()?;
    let via = vias.first()?;
    let branch = via.params.get_val("branch")?.to_string();
    let sent_by = format!("{}:{}", via.sent_by.host, via.sent_by.port.unwrap_or(5060));
    let method = if *method == Method::ACK {
        Method::INVITE
    } else {
        method.clone()
    };
    Some((branch, sent_by, method.to_string()))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_failover;
