//! Requests that reach the endpoint from the network: matched to their server transaction
//! (retransmissions), to a call (in-dialog requests, CANCEL), to the local domain (REGISTER,
//! INVITE for its users), or answered here (OPTIONS, 404 for an unknown Request-URI, 405 and
//! 501, 400 for what cannot be read, 503 when the transaction table is full).

use std::time::Instant;

use bytes::Bytes;
use ezk_sip_types::{Method, Name};

use super::*;

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
        let (code, reason) = self.decide(&request, &method);
        self.respond_new(now, source, &request, key, code, reason);
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
            response.headers.insert(Name::ALLOW, ALLOW);
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
