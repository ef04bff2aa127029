//! SIP transactions (RFC 3261 section 17, with the INVITE fixes of RFC 6026), sans-IO.
//!
//! Four state machines: client and server, INVITE and non-INVITE. Each is fed with `now`, the
//! messages of its transaction and timer expiries, and is drained with `poll_transmit` (bytes to
//! send to the peer), `poll_event` (what the transaction user must know) and `poll_timeout`
//! (when to call `handle_timeout` next). Retransmissions happen over unreliable transports only;
//! a client transaction that gets no final response reports [`Event::Timeout`], for which the
//! user agent answers itself with a local 408.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ezk_sip_types::{Headers, Method, Name};

use crate::message::{Message, StartLine};

/// The protocol timers (RFC 3261 section 17.1.1.1 and table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// The round-trip estimate: the first retransmission interval.
    pub t1: Duration,
    /// The longest retransmission interval of non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// How long a message may stay in the network.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64*T1: how long a transaction waits for a final response (timers B, F, H, J, L, M).
    fn transaction_timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// What a transaction tells its user.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// A provisional response (client transactions).
    Provisional(Box<Message>),
    /// A final response (client transactions). For INVITE, 2xx retransmissions are passed on
    /// too (the user agent answers each with an ACK, RFC 6026).
    Final(Box<Message>),
    /// An ACK for a 2xx (INVITE server transaction, RFC 6026 Accepted state).
    Ack(Box<Message>),
    /// No final response in time (client) or no ACK in time (INVITE server): report a 408.
    Timeout,
    /// The transport failed to deliver.
    TransportError,
}

/// The states of all four machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// INVITE client: INVITE sent, nothing heard.
    Calling,
    /// Non-INVITE client: request sent, nothing heard. Non-INVITE server: request received.
    Trying,
    /// A provisional response was received (client) or sent (server).
    Proceeding,
    /// A final response (non-2xx for INVITE) was received or sent; absorbing retransmissions.
    Completed,
    /// INVITE server: the ACK for a non-2xx arrived.
    Confirmed,
    /// INVITE (RFC 6026): a 2xx was received or sent; its retransmissions and ACKs pass through.
    Accepted,
    /// Done; the transaction can be dropped.
    Terminated,
}

/// A retransmission timer: fires at `due`, then at doubling intervals up to a cap.
#[derive(Debug, Clone, Copy)]
struct Retransmit {
    due: Instant,
    interval: Duration,
    cap: Option<Duration>,
}

impl Retransmit {
    fn new(now: Instant, interval: Duration, cap: Option<Duration>) -> Self {
        Retransmit {
            due: now + interval,
            interval,
            cap,
        }
    }

    /// Moves to the next interval.
    fn advance(&mut self, now: Instant) {
        self.interval = match self.cap {
            Some(cap) => (self.interval * 2).min(cap),
            None => self.interval * 2,
        };
        self.due = now + self.interval;
    }
}

/// The output queues of a machine.
#[derive(Debug, Default)]
struct Outputs {
    transmit: VecDeque<Bytes>,
    events: VecDeque<Event>,
}

/// The soonest of a set of optional deadlines.
fn soonest(deadlines: &[Option<Instant>]) -> Option<Instant> {
    deadlines.iter().flatten().min().copied()
}

fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|deadline| now >= deadline)
}

/// A non-INVITE client transaction (RFC 3261 figure 6).
#[derive(Debug)]
pub(crate) struct NonInviteClient {
    state: State,
    request: Bytes,
    /// Timer E (unreliable transports only).
    retransmit: Option<Retransmit>,
    /// Timer F.
    timeout: Option<Instant>,
    /// Timer K.
    linger: Option<Instant>,
    timers: Timers,
    reliable: bool,
    out: Outputs,
}

impl NonInviteClient {
    /// Starts the transaction: the request goes out at once.
    pub(crate) fn new(request: Bytes, reliable: bool, timers: Timers, now: Instant) -> Self {
        let mut out = Outputs::default();
        out.transmit.push_back(request.clone());
        NonInviteClient {
            state: State::Trying,
            request,
            retransmit: (!reliable).then(|| Retransmit::new(now, timers.t1, Some(timers.t2))),
            timeout: Some(now + timers.transaction_timeout()),
            linger: None,
            timers,
            reliable,
            out,
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// A response matched to this transaction.
    pub(crate) fn handle_response(&mut self, now: Instant, response: Message) {
        let Some(code) = response.code() else { return };
        match (self.state, code) {
            (State::Trying | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.out
                    .events
                    .push_back(Event::Provisional(Box::new(response)));
            }
            (State::Trying | State::Proceeding, _) => {
                self.state = State::Completed;
                self.retransmit = None;
                self.timeout = None;
                self.linger = Some(
                    now + if self.reliable {
                        Duration::ZERO
                    } else {
                        self.timers.t4
                    },
                );
                self.out.events.push_back(Event::Final(Box::new(response)));
                if self.reliable {
                    self.terminate();
                }
            }
            // Retransmitted responses are absorbed.
            _ => {}
        }
    }

    /// Timers that are due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if due(self.timeout, now) {
            self.out.events.push_back(Event::Timeout);
            self.terminate();
            return;
        }
        if due(self.linger, now) {
            self.terminate();
            return;
        }
        if let Some(retransmit) = &mut self.retransmit
            && now >= retransmit.due
        {
            self.out.transmit.push_back(self.request.clone());
            retransmit.advance(now);
            // In Proceeding, retransmissions go every T2 (RFC 3261 section 17.1.2.2).
            if self.state == State::Proceeding {
                retransmit.interval = self.timers.t2;
                retransmit.due = now + self.timers.t2;
            }
        }
    }

    /// The transport could not send the request.
    pub(crate) fn handle_transport_error(&mut self) {
        if self.state != State::Terminated {
            self.out.events.push_back(Event::TransportError);
            self.terminate();
        }
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.retransmit = None;
        self.timeout = None;
        self.linger = None;
    }

    /// The next datagram or stream write.
    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.transmit.pop_front()
    }

    /// The next event for the transaction user.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        soonest(&[self.retransmit.map(|r| r.due), self.timeout, self.linger])
    }
}

/// An INVITE client transaction (RFC 3261 figure 5, with RFC 6026's Accepted state).
#[derive(Debug)]
pub(crate) struct InviteClient {
    state: State,
    request: Message,
    encoded: Bytes,
    /// The ACK for a non-2xx final response, resent for each retransmitted final.
    ack: Option<Bytes>,
    /// Timer A.
    retransmit: Option<Retransmit>,
    /// Timer B.
    timeout: Option<Instant>,
    /// Timer D (Completed) or Timer M (Accepted).
    linger: Option<Instant>,
    timers: Timers,
    reliable: bool,
    out: Outputs,
}

impl InviteClient {
    /// Starts the transaction: the INVITE goes out at once.
    pub(crate) fn new(request: Message, reliable: bool, timers: Timers, now: Instant) -> Self {
        let encoded = Bytes::from(request.to_bytes());
        let mut out = Outputs::default();
        out.transmit.push_back(encoded.clone());
        InviteClient {
            state: State::Calling,
            request,
            encoded,
            ack: None,
            retransmit: (!reliable).then(|| Retransmit::new(now, timers.t1, None)),
            timeout: Some(now + timers.transaction_timeout()),
            linger: None,
            timers,
            reliable,
            out,
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// A response matched to this transaction.
    pub(crate) fn handle_response(&mut self, now: Instant, response: Message) {
        let Some(code) = response.code() else { return };
        match (self.state, code) {
            (State::Calling | State::Proceeding, 100..=199) => {
                self.state = State::Proceeding;
                self.retransmit = None;
                self.out
                    .events
                    .push_back(Event::Provisional(Box::new(response)));
            }
            (State::Calling | State::Proceeding, 200..=299) => {
                self.state = State::Accepted;
                self.retransmit = None;
                self.timeout = None;
                self.linger = Some(now + self.timers.transaction_timeout());
                self.out.events.push_back(Event::Final(Box::new(response)));
            }
            (State::Calling | State::Proceeding, _) => {
                self.state = State::Completed;
                self.retransmit = None;
                self.timeout = None;
                let ack = Bytes::from(ack_for(&self.request, &response).to_bytes());
                self.out.transmit.push_back(ack.clone());
                self.ack = Some(ack);
                self.linger = Some(
                    now + if self.reliable {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(32)
                    },
                );
                self.out.events.push_back(Event::Final(Box::new(response)));
                if self.reliable {
                    self.terminate();
                }
            }
            // A retransmitted non-2xx final: answer it with the same ACK again.
            (State::Completed, 300..=699) => {
                if let Some(ack) = &self.ack {
                    self.out.transmit.push_back(ack.clone());
                }
            }
            // RFC 6026: every 2xx (from any fork) reaches the user agent, which ACKs it.
            (State::Accepted, 200..=299) => {
                self.out.events.push_back(Event::Final(Box::new(response)))
            }
            _ => {}
        }
    }

    /// Timers that are due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if due(self.timeout, now) {
            self.out.events.push_back(Event::Timeout);
            self.terminate();
            return;
        }
        if due(self.linger, now) {
            self.terminate();
            return;
        }
        if let Some(retransmit) = &mut self.retransmit
            && now >= retransmit.due
        {
            self.out.transmit.push_back(self.encoded.clone());
            retransmit.advance(now);
        }
    }

    /// The transport could not send the request.
    pub(crate) fn handle_transport_error(&mut self) {
        if matches!(self.state, State::Calling | State::Proceeding) {
            self.out.events.push_back(Event::TransportError);
        }
        self.terminate();
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.retransmit = None;
        self.timeout = None;
        self.linger = None;
    }

    /// The next datagram or stream write.
    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.transmit.pop_front()
    }

    /// The next event for the transaction user.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        soonest(&[self.retransmit.map(|r| r.due), self.timeout, self.linger])
    }
}

/// The ACK for a non-2xx final response (RFC 3261 section 17.1.1.3): same Request-URI, Call-ID,
/// From, CSeq number and Route as the INVITE, the top Via only, and the response's To.
pub(crate) fn ack_for(invite: &Message, response: &Message) -> Message {
    let mut headers = Headers::with_capacity(8);
    if let Some(via) = invite.headers.get_raw(&Name::VIA).next() {
        headers.insert(Name::VIA, via.as_str().to_owned());
    }
    for name in [Name::FROM] {
        for value in invite.headers.get_raw(&name) {
            headers.insert(name.clone(), value.as_str().to_owned());
        }
    }
    for value in response.headers.get_raw(&Name::TO) {
        headers.insert(Name::TO, value.as_str().to_owned());
    }
    for value in invite.headers.get_raw(&Name::CALL_ID) {
        headers.insert(Name::CALL_ID, value.as_str().to_owned());
    }
    let number = invite.cseq().map(|cseq| cseq.cseq).unwrap_or_default();
    headers.insert(Name::CSEQ, format!("{number} ACK"));
    headers.insert(Name::MAX_FORWARDS, "70");
    for value in invite.headers.get_raw(&Name::ROUTE) {
        headers.insert(Name::ROUTE, value.as_str().to_owned());
    }
    let uri = match &invite.start {
        StartLine::Request { uri, .. } => uri.clone(),
        StartLine::Response { .. } => {
            unreachable!("an INVITE transaction is created from a request")
        }
    };
    Message {
        start: StartLine::Request {
            method: Method::ACK,
            uri,
        },
        headers,
        body: Bytes::new(),
    }
}

/// A non-INVITE server transaction (RFC 3261 figure 8).
#[derive(Debug)]
pub(crate) struct NonInviteServer {
    state: State,
    /// The last response sent, resent for each retransmitted request.
    last: Option<Bytes>,
    /// Timer J.
    linger: Option<Instant>,
    timers: Timers,
    reliable: bool,
    out: Outputs,
}

impl NonInviteServer {
    /// A transaction for a request just received (the request itself goes to the user).
    pub(crate) fn new(reliable: bool, timers: Timers) -> Self {
        NonInviteServer {
            state: State::Trying,
            last: None,
            linger: None,
            timers,
            reliable,
            out: Outputs::default(),
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// The user's response.
    pub(crate) fn respond(&mut self, now: Instant, response: &Message) {
        let Some(code) = response.code() else { return };
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return;
        }
        let encoded = Bytes::from(response.to_bytes());
        self.out.transmit.push_back(encoded.clone());
        self.last = Some(encoded);
        if code >= 200 {
            self.state = State::Completed;
            self.linger = Some(
                now + if self.reliable {
                    Duration::ZERO
                } else {
                    self.timers.transaction_timeout()
                },
            );
            if self.reliable {
                self.state = State::Terminated;
                self.linger = None;
            }
        } else {
            self.state = State::Proceeding;
        }
    }

    /// The request arrived again: resend the last response, if any.
    pub(crate) fn handle_retransmission(&mut self) {
        if let Some(last) = &self.last
            && matches!(self.state, State::Proceeding | State::Completed)
        {
            self.out.transmit.push_back(last.clone());
        }
    }

    /// Timers that are due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if due(self.linger, now) {
            self.state = State::Terminated;
            self.linger = None;
        }
    }

    /// The next datagram or stream write.
    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.transmit.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.linger
    }
}

/// An INVITE server transaction (RFC 3261 figure 7, with RFC 6026's Accepted state).
#[derive(Debug)]
pub(crate) struct InviteServer {
    state: State,
    last: Bytes,
    /// Timer G (non-2xx final, unreliable transports).
    retransmit: Option<Retransmit>,
    /// Timer H: no ACK for a non-2xx final.
    timeout: Option<Instant>,
    /// Timer I (Confirmed) or Timer L (Accepted).
    linger: Option<Instant>,
    timers: Timers,
    reliable: bool,
    out: Outputs,
}

impl InviteServer {
    /// A transaction for an INVITE just received: it answers 100 Trying at once, so that the
    /// client stops retransmitting (RFC 3261 section 17.2.1).
    pub(crate) fn new(invite: &Message, reliable: bool, timers: Timers) -> Self {
        let trying = Bytes::from(invite.response(100, "Trying", None).to_bytes());
        let mut out = Outputs::default();
        out.transmit.push_back(trying.clone());
        InviteServer {
            state: State::Proceeding,
            last: trying,
            retransmit: None,
            timeout: None,
            linger: None,
            timers,
            reliable,
            out,
        }
    }

    /// The current state.
    pub(crate) fn state(&self) -> State {
        self.state
    }

    /// The user's response.
    pub(crate) fn respond(&mut self, now: Instant, response: &Message) {
        let Some(code) = response.code() else { return };
        let encoded = Bytes::from(response.to_bytes());
        match (self.state, code) {
            (State::Proceeding, 100..=199) => {}
            (State::Proceeding, 200..=299) => {
                self.state = State::Accepted;
                self.linger = Some(now + self.timers.transaction_timeout());
            }
            (State::Proceeding, _) => {
                self.state = State::Completed;
                self.timeout = Some(now + self.timers.transaction_timeout());
                if !self.reliable {
                    self.retransmit =
                        Some(Retransmit::new(now, self.timers.t1, Some(self.timers.t2)));
                }
            }
            // RFC 6026: the user agent core retransmits its 2xx through the transaction.
            (State::Accepted, 200..=299) => {}
            _ => return,
        }
        self.out.transmit.push_back(encoded.clone());
        self.last = encoded;
    }

    /// The INVITE arrived again: resend the last response (not in Accepted, where the user
    /// agent core owns 2xx retransmissions).
    pub(crate) fn handle_retransmission(&mut self) {
        if matches!(self.state, State::Proceeding | State::Completed) {
            self.out.transmit.push_back(self.last.clone());
        }
    }

    /// An ACK matched to this transaction.
    pub(crate) fn handle_ack(&mut self, now: Instant, ack: Message) {
        match self.state {
            State::Completed => {
                self.state = State::Confirmed;
                self.retransmit = None;
                self.timeout = None;
                self.linger = Some(
                    now + if self.reliable {
                        Duration::ZERO
                    } else {
                        self.timers.t4
                    },
                );
            }
            State::Accepted => self.out.events.push_back(Event::Ack(Box::new(ack))),
            _ => {}
        }
    }

    /// Timers that are due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if due(self.timeout, now) {
            self.out.events.push_back(Event::Timeout);
            self.terminate();
            return;
        }
        if due(self.linger, now) {
            self.terminate();
            return;
        }
        if let Some(retransmit) = &mut self.retransmit
            && now >= retransmit.due
        {
            self.out.transmit.push_back(self.last.clone());
            retransmit.advance(now);
        }
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.retransmit = None;
        self.timeout = None;
        self.linger = None;
    }

    /// The next datagram or stream write.
    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.transmit.pop_front()
    }

    /// The next event for the transaction user.
    pub(crate) fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        soonest(&[self.retransmit.map(|r| r.due), self.timeout, self.linger])
    }
}

#[cfg(test)]
mod tests;
