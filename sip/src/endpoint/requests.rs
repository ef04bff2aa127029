//! Requests that reach the endpoint from the network: matched to their server transaction
//! (retransmissions), to a call (in-dialog requests, CANCEL), to the local domain (REGISTER,
//! INVITE for its users), held for the owner to answer (out-of-dialog MESSAGE and SUBSCRIBE
//! for a registration or the local domain), or answered here (OPTIONS, 404 for an unknown
//! Request-URI, 405 and 501, 400 for what cannot be read, 503 when the transaction table is
//! full).

use std::time::Instant;

use bytes::Bytes;
use ezk_sip_types::{Method, Name};

use super::*;

/// An out-of-dialog request waiting for [`Endpoint::answer_request`] (see
/// [`EndpointEvent::Request`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PendingRequest(pub(super) ServerKey);

impl Endpoint {
    pub(super) fn handle_request(&mut self, now: Instant, source: Target, request: Message) {
        if let Err(invalid) = request.validate() {
            let status = if invalid.status == 400 {
                "Bad Request"
            } else {
                "Error"
            };
            return self.respond_stateless(
                source,
                &request,
                invalid.status,
                &format!("{status} ({})", invalid.reason),
            );
        }
        let Some(method) = request.method().cloned() else {
            return;
        };
        let Some(key) = server_key(&request, &method) else {
            return;
        };
        // A retransmission, or the ACK of a transaction we answered.
        if let Some(entry) = self.servers.get_mut(&key) {
            let mut acked = None;
            match (&mut entry.transaction, method == Method::ACK) {
                (ServerTransaction::Invite(invite), true) => {
                    invite.handle_ack(now, request);
                    while let Some(event) = invite.poll_event() {
                        if let Event::Ack(ack) = event {
                            acked = entry.owner.map(|owner| (owner, ack));
                        }
                    }
                }
                (ServerTransaction::Invite(invite), false) => invite.handle_retransmission(),
                (ServerTransaction::NonInvite(transaction), _) => {
                    transaction.handle_retransmission()
                }
            }
            self.drain_server(&key);
            // RFC 6026: an ACK for a 2xx that reuses the INVITE's branch still reaches the call.
            if let Some((owner, ack)) = acked {
                self.call_request(now, owner, &ack);
            }
            return;
        }
        if self.servers.len() >= self.config.max_server_transactions {
            self.shed += 1;
            return self.respond_overloaded(source, &request);
        }
        if method == Method::CANCEL {
            return self.cancel(now, source, &request, key);
        }
        if request.tag(&Name::TO).is_some() {
            return self.in_dialog(now, source, &request, &method, key);
        }
        if method == Method::ACK {
            return; // An ACK for nothing we know: nothing to answer.
        }
        if self.draining
            && matches!(
                method,
                Method::INVITE | Method::REGISTER | Method::SUBSCRIBE | Method::OPTIONS
            )
        {
            return self.respond_new(
                now,
                source,
                &request,
                key,
                503,
                "Service Unavailable (draining)",
            );
        }
        if method == Method::INVITE
            && let Some(registration) = self.invite_target(&request)
        {
            return self.incoming(now, source, request, key, registration);
        }
        if self.for_local_domain(&request) {
            if method == Method::REGISTER {
                return self.local_register(now, source, &request, key);
            }
            if method == Method::INVITE {
                return self.local_invite(now, source, request, key);
            }
        }
        if matches!(
            method,
            Method::MESSAGE | Method::SUBSCRIBE | Method::PUBLISH
        ) && let Some(registration) = self.request_owner(&request)
            // Only the local domain takes PUBLISH (it is the presence server of its users).
            && (method != Method::PUBLISH || registration.is_none())
        {
            // The local domain's own users prove who they are, as for calls.
            let authenticated = match registration {
                Some(_) => false,
                None => match self.local_sender(now, source, &request, &key) {
                    Some(authenticated) => authenticated,
                    None => return,
                },
            };
            return self.hold_request(now, source, request, key, registration, authenticated);
        }
        let (code, reason) = self.decide(&request, &method);
        self.respond_new(now, source, &request, key, code, reason);
    }

    /// Whose an out-of-dialog request is: the local domain's (`Some(None)`), a live
    /// registration's, or nobody's.
    fn request_owner(&self, request: &Message) -> Option<Option<RegistrationId>> {
        if self.for_local_domain(request) {
            return Some(None);
        }
        let StartLine::Request { uri, .. } = &request.start else {
            return None;
        };
        let id = *self.contacts.get(uri.user()?)?;
        self.registrations
            .get(&id)
            .filter(|entry| entry.registration.is_registered())?;
        Some(Some(id))
    }

    /// Holds a request in a server transaction of its own until its owner answers it (its
    /// retransmissions are absorbed meanwhile), or its deadline: 16 T1 (8 s), well within the
    /// 64 T1 its sender waits.
    fn hold_request(
        &mut self,
        now: Instant,
        source: Target,
        request: Message,
        key: ServerKey,
        registration: Option<RegistrationId>,
        authenticated: bool,
    ) {
        let transaction = NonInviteServer::new(source.transport.reliable(), self.config.timers);
        self.servers.insert(
            key.clone(),
            ServerEntry {
                transaction: ServerTransaction::NonInvite(transaction),
                target: source,
                owner: None,
            },
        );
        let deadline = now + self.config.timers.t1 * 16;
        self.pending_requests
            .insert(key.clone(), (request.clone(), deadline));
        self.schedule(Timer::Request(key.clone()));
        self.events.push_back(EndpointEvent::Request {
            pending: PendingRequest(key),
            registration,
            source: source.addr,
            authenticated,
            request: Box::new(request),
        });
    }

    /// Answers a pending request (`headers` added to the response; a 405 gets our Allow).
    /// Once only: a request answered already, or past its deadline, is left alone.
    pub fn answer_request(
        &mut self,
        now: Instant,
        pending: &PendingRequest,
        code: u16,
        reason: &str,
        headers: &[(String, String)],
    ) {
        let tag = self.new_tag();
        self.answer_tagged(now, pending, code, reason, headers, &tag);
    }

    /// As [`Endpoint::answer_request`], with our To tag `tag`.
    pub(super) fn answer_tagged(
        &mut self,
        now: Instant,
        pending: &PendingRequest,
        code: u16,
        reason: &str,
        headers: &[(String, String)],
        tag: &str,
    ) {
        let Some((request, _)) = self.pending_requests.remove(&pending.0) else {
            return;
        };
        let mut response = request.response(code, reason, Some(tag));
        for (name, value) in headers {
            response
                .headers
                .insert(Name::from(name.clone()), value.clone());
        }
        if code == 405 {
            response
                .headers
                .insert(Name::ALLOW, self.allow_for(&request));
        }
        response
            .headers
            .insert(Name::SERVER, self.config.user_agent.clone());
        if let Some(ServerEntry {
            transaction: ServerTransaction::NonInvite(transaction),
            ..
        }) = self.servers.get_mut(&pending.0)
        {
            transaction.respond(now, &response);
        }
        self.drain_server(&pending.0);
    }

    /// Where a pending request came from (none once answered).
    pub fn pending_source(&self, pending: &PendingRequest) -> Option<Target> {
        self.pending_requests.get(&pending.0)?;
        Some(self.servers.get(&pending.0)?.target)
    }

    /// A pending request's deadline passed: nobody answered it, so we do.
    pub(super) fn request_overdue(&mut self, now: Instant, key: ServerKey) {
        if self
            .pending_requests
            .get(&key)
            .is_some_and(|(_, deadline)| *deadline <= now)
        {
            let pending = PendingRequest(key);
            self.answer_request(
                now,
                &pending,
                500,
                "Server Internal Error (no answer in time)",
                &[],
            );
        }
    }

    /// How many requests wait for their owner's answer.
    pub fn pending_requests(&self) -> usize {
        self.pending_requests.len()
    }

    /// Answers a request in a new server transaction of its own.
    pub(super) fn respond_new(
        &mut self,
        now: Instant,
        source: Target,
        request: &Message,
        key: ServerKey,
        code: u16,
        reason: &str,
    ) {
        let Some(method) = request.method().cloned() else {
            return;
        };
        let tag = self.new_tag();
        let mut response = request.response(code, reason, Some(&tag));
        if code == 405 || (method == Method::OPTIONS && code == 200) {
            response
                .headers
                .insert(Name::ALLOW, self.allow_for(request));
        }
        if method == Method::OPTIONS && code == 200 {
            response.headers.insert(Name::ACCEPT, "application/sdp");
        }
        self.respond_with(now, source, request, key, response);
    }

    /// Sends `response` in a new server transaction for `request`.
    pub(super) fn respond_with(
        &mut self,
        now: Instant,
        source: Target,
        request: &Message,
        key: ServerKey,
        mut response: Message,
    ) {
        response
            .headers
            .insert(Name::SERVER, self.config.user_agent.clone());
        let reliable = source.transport.reliable();
        let mut transaction = if request.method() == Some(&Method::INVITE) {
            ServerTransaction::Invite(InviteServer::new(request, reliable, self.config.timers))
        } else {
            ServerTransaction::NonInvite(NonInviteServer::new(reliable, self.config.timers))
        };
        match &mut transaction {
            ServerTransaction::Invite(invite) => invite.respond(now, &response),
            ServerTransaction::NonInvite(transaction) => transaction.respond(now, &response),
        }
        self.servers.insert(
            key.clone(),
            ServerEntry {
                transaction,
                target: source,
                owner: None,
            },
        );
        self.drain_server(&key);
    }

    /// The answer to a request that reached us.
    fn decide(&self, request: &Message, method: &Method) -> (u16, &'static str) {
        let StartLine::Request { uri, .. } = &request.start else {
            return (400, "Bad Request");
        };
        if !uri.is_sip() {
            return (416, "Unsupported URI Scheme");
        }
        if !KNOWN_METHODS.contains(method) {
            return (501, "Not Implemented");
        }
        // An OPTIONS to no user asks about the server itself, as a load balancer's probe does.
        if *method == Method::OPTIONS && uri.user().is_none() {
            return (200, "OK");
        }
        if self.for_local_domain(request) {
            return match *method {
                Method::OPTIONS => (200, "OK"),
                _ => (405, "Method Not Allowed"),
            };
        }
        let user = uri.user();
        let live = user
            .and_then(|user| self.contacts.get(user))
            .and_then(|id| self.registrations.get(id))
            .is_some_and(|entry| entry.registration.is_registered());
        if !live {
            return (404, "Not Found");
        }
        if *method == Method::OPTIONS {
            (200, "OK")
        } else if request.tag(&Name::TO).is_some() {
            (481, "Call/Transaction Does Not Exist")
        } else {
            (405, "Method Not Allowed")
        }
    }

    /// Answers a request outside any transaction (it is malformed), when it has what a response
    /// needs (a Via to route it back, and the dialog headers).
    fn respond_stateless(&mut self, source: Target, request: &Message, code: u16, reason: &str) {
        if request.method() == Some(&Method::ACK)
            || request.vias().map_or(true, |vias| vias.is_empty())
        {
            return;
        }
        for name in [Name::FROM, Name::TO, Name::CALL_ID, Name::CSEQ] {
            if request.header(&name).is_none() {
                return;
            }
        }
        let tag = self.new_tag();
        let response = request.response(code, reason, Some(&tag));
        self.transmits.push_back(Transmit {
            target: source,
            bytes: Bytes::from(response.to_bytes()),
        });
    }

    /// A stateless 503 with Retry-After: the endpoint holds as many transactions as it may.
    fn respond_overloaded(&mut self, source: Target, request: &Message) {
        if request.method() == Some(&Method::ACK) {
            return;
        }
        let tag = self.new_tag();
        let mut response = request.response(503, "Service Unavailable", Some(&tag));
        response.headers.insert(Name::RETRY_AFTER, "5");
        self.transmits.push_back(Transmit {
            target: source,
            bytes: Bytes::from(response.to_bytes()),
        });
    }
}
