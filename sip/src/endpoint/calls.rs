//! The endpoint's side of calls: starting them, routing the messages of their dialogs to them,
//! and running their requests and responses through transactions.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use ezk_sip_types::{Method, Name};

use super::{
    ClientKind, ClientTransaction, Endpoint, EndpointEvent, Owner, ServerEntry, ServerKey,
    ServerTransaction, Target, Timer,
};
use crate::call::{Call, CallConfig, CallOutput, Outgoing};
use crate::endpoint::{CallId, RegistrationId};
use crate::message::{Message, StartLine};
use crate::transaction::{Event, InviteClient, InviteServer, NonInviteClient, NonInviteServer};
use crate::transport::Transport;

/// The reason phrase of 481.
const NO_SUCH_CALL: &str = "Call/Transaction Does Not Exist";

/// A call and where its requests go when its dialog names no better place.
#[derive(Debug)]
pub(super) struct CallEntry {
    pub(super) call: Call,
    pub(super) target: Target,
    /// The peer is the phone itself, not a proxy: its INVITE had one Via, or we called a
    /// phone of the local domain at its registration's flow. Its in-dialog requests then go
    /// over that flow (the connection, or the source address), not to its Contact, which
    /// behind NAT is an address nobody can reach (RFC 5626's flows, Kamailio's nathelper).
    pub(super) direct: bool,
    /// The servers the INVITE may fail over to before it is answered (RFC 3263).
    pub(super) failover: super::Failover,
}

/// Whether a request came straight from the user agent that sent it (one Via).
pub(super) fn from_the_phone_itself(request: &Message) -> bool {
    request.vias().is_ok_and(|vias| vias.len() == 1)
}

impl Endpoint {
    /// Starts an outgoing call toward `target` (the proxy, or the outbound proxy).
    pub fn invite(
        &mut self,
        now: Instant,
        config: CallConfig,
        outgoing: Outgoing,
        target: Target,
    ) -> CallId {
        let id = CallId(self.next_id);
        self.next_id += 1;
        self.dialogs
            .insert((outgoing.call_id.clone(), config.tag.clone()), id);
        let direct = outgoing.target.is_some();
        let call = Call::outgoing(now, config, outgoing);
        self.calls.insert(
            id,
            CallEntry {
                call,
                target,
                direct,
                failover: super::Failover::default(),
            },
        );
        self.pump_call(now, id);
        id
    }

    /// Follows a call's redirection to `uri`, whose servers are `targets` (best first); a
    /// refusal (too many redirections, a loop) ends the call with its reason.
    pub fn redirect_call(&mut self, now: Instant, id: CallId, uri: &str, targets: Vec<Target>) {
        let Some(entry) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(first) = targets.first().copied() else {
            return;
        };
        entry.target = first;
        entry.failover.replace(targets, first);
        // A refusal has already ended the call, with its reason: nothing more to do.
        let _ = entry.call.follow_redirect(now, uri);
        self.pump_call(now, id);
    }

    /// The servers an outgoing call's INVITE may go to, best first (the first being the one it
    /// was sent to): if a server times out, fails at the transport or answers 503 before any
    /// provisional response, the INVITE goes to the next.
    pub fn set_call_targets(&mut self, id: CallId, targets: Vec<Target>) {
        if let Some(entry) = self.calls.get_mut(&id)
            && let Some(target) = entry.failover.replace(targets, entry.target)
        {
            entry.target = target;
        }
    }

    /// Runs a command on a call (hang up, ring, answer...), then sends what it produced.
    pub fn with_call(&mut self, now: Instant, id: CallId, command: impl FnOnce(&mut Call)) {
        if let Some(entry) = self.calls.get_mut(&id) {
            command(&mut entry.call);
            self.pump_call(now, id);
        }
    }

    /// The number of calls, including those finishing a BYE or CANCEL.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The live registration an INVITE is for, by the user part of its Request-URI.
    pub(super) fn invite_target(&self, request: &Message) -> Option<RegistrationId> {
        let StartLine::Request { uri, .. } = &request.start else {
            return None;
        };
        let id = *self.contacts.get(uri.user()?)?;
        self.registrations
            .get(&id)
            .is_some_and(|entry| entry.registration.is_registered())
            .then_some(id)
    }

    /// A new INVITE for one of our registrations.
    pub(super) fn incoming(
        &mut self,
        now: Instant,
        source: Target,
        request: Message,
        key: ServerKey,
        registration: RegistrationId,
    ) {
        let tag = self.new_tag();
        let Some(entry) = self.registrations.get(&registration) else {
            return;
        };
        let account = entry.registration.config();
        let id = CallId(self.next_id);
        self.next_id += 1;
        let config = CallConfig {
            user: account.user.clone(),
            domain: account.domain.clone(),
            display_name: account.display_name.clone(),
            credentials: account.credentials.clone(),
            transport: source.transport,
            local: account.local.clone(),
            contact_user: account.contact_user.clone(),
            user_agent: account.user_agent.clone(),
            seed: format!("{tag}c"),
            tag,
            timers: self.config.timers,
            session_expires: self.config.session_expires,
            min_se: self.config.min_se,
        };
        let transaction =
            InviteServer::new(&request, source.transport.reliable(), self.config.timers);
        self.servers.insert(
            key.clone(),
            ServerEntry {
                transaction: ServerTransaction::Invite(transaction),
                target: source,
                owner: Some(id),
            },
        );
        self.drain_server(&key);
        match Call::incoming(now, config, &request) {
            Ok(call) => {
                let call_id = request.call_id().unwrap_or_default().to_owned();
                self.dialogs.insert((call_id, call.tag().to_owned()), id);
                self.calls.insert(
                    id,
                    CallEntry {
                        call,
                        target: source,
                        direct: from_the_phone_itself(&request),
                        failover: super::Failover::default(),
                    },
                );
                self.events.push_back(EndpointEvent::Incoming {
                    registration,
                    id,
                    invite: Box::new(request),
                });
                self.pump_call(now, id);
            }
            Err(response) => {
                if let Some(entry) = self.servers.get_mut(&key)
                    && let ServerTransaction::Invite(invite) = &mut entry.transaction
                {
                    invite.respond(now, &response);
                }
                self.drain_server(&key);
            }
        }
    }

    /// A CANCEL: answered 200 when it matches an INVITE we are handling (which the call then
    /// ends with 487), 481 otherwise.
    pub(super) fn cancel(
        &mut self,
        now: Instant,
        source: Target,
        request: &Message,
        key: ServerKey,
    ) {
        let invite_key = (key.0.clone(), key.1.clone(), Method::INVITE.to_string());
        let Some(entry) = self.servers.get(&invite_key) else {
            return self.respond_new(now, source, request, key, 481, NO_SUCH_CALL);
        };
        let owner = entry.owner;
        self.respond_new(now, source, request, key, 200, "OK");
        if let Some(id) = owner {
            self.with_call(now, id, |call| call.handle_cancel_of(request));
        }
    }

    /// A request with a To tag: for one of our dialogs, or answered 481.
    pub(super) fn in_dialog(
        &mut self,
        now: Instant,
        source: Target,
        request: &Message,
        method: &Method,
        key: ServerKey,
    ) {
        let dialog = (
            request.call_id().unwrap_or_default().to_owned(),
            request.tag(&Name::TO).unwrap_or_default().to_owned(),
        );
        let Some(&id) = self.dialogs.get(&dialog) else {
            if *method == Method::ACK {
                return;
            }
            if self.subscription_request(now, source, request, method, key.clone()) {
                return;
            }
            return self.respond_new(now, source, request, key, 481, NO_SUCH_CALL);
        };
        if *method != Method::ACK {
            let reliable = source.transport.reliable();
            let transaction = if *method == Method::INVITE {
                ServerTransaction::Invite(InviteServer::new(request, reliable, self.config.timers))
            } else {
                ServerTransaction::NonInvite(NonInviteServer::new(reliable, self.config.timers))
            };
            self.servers.insert(
                key.clone(),
                ServerEntry {
                    transaction,
                    target: source,
                    owner: Some(id),
                },
            );
            self.drain_server(&key);
        }
        self.call_request(now, id, request);
    }

    pub(super) fn call_request(&mut self, now: Instant, id: CallId, request: &Message) {
        if let Some(entry) = self.calls.get_mut(&id) {
            entry.call.handle_request(now, request);
            self.pump_call(now, id);
        }
    }

    /// Hands a client transaction's outcome to its call.
    pub(super) fn call_outcomes(
        &mut self,
        now: Instant,
        id: CallId,
        request: &Message,
        outcomes: Vec<Event>,
    ) {
        let Some(entry) = self.calls.get_mut(&id) else {
            return;
        };
        for outcome in outcomes {
            if super::server_failed(&outcome)
                && entry.failover.targets_left()
                && entry.call.failover(now, request)
                && let Some(next) = entry.failover.next()
            {
                entry.target = next;
                continue;
            }
            match outcome {
                Event::Provisional(response) | Event::Final(response) => {
                    entry.call.handle_response(now, &response)
                }
                Event::Timeout => entry.call.handle_failure(now, request, true),
                Event::TransportError => entry.call.handle_failure(now, request, false),
                Event::Ack(_) => {}
            }
        }
        self.pump_call(now, id);
    }

    /// Sends what a call produced, reports its events, and forgets it once it is done.
    pub(super) fn pump_call(&mut self, now: Instant, id: CallId) {
        let Some(entry) = self.calls.get_mut(&id) else {
            return;
        };
        let outputs: Vec<CallOutput> = std::iter::from_fn(|| entry.call.poll_output()).collect();
        let events: Vec<_> = std::iter::from_fn(|| entry.call.poll_event()).collect();
        let default = entry.target;
        let hop = if entry.direct && !entry.call.routed() {
            default
        } else {
            entry
                .call
                .next_hop()
                .and_then(|uri| hop_target(uri, default.transport))
                .unwrap_or(default)
        };
        let done = entry.call.is_done();
        let dialog_key = entry
            .call
            .call_id()
            .map(|call_id| (call_id.to_owned(), entry.call.tag().to_owned()));
        for output in outputs {
            match output {
                CallOutput::Request(request) => {
                    let Some(method) = request.method().cloned() else {
                        continue;
                    };
                    let Some(branch) = super::client_key(&request) else {
                        continue;
                    };
                    // Requests before the dialog (INVITE, CANCEL) go to the proxy.
                    let target =
                        if matches!(method, Method::CANCEL) || request.tag(&Name::TO).is_none() {
                            default
                        } else {
                            hop
                        };
                    let reliable = target.transport.reliable();
                    let transaction = if method == Method::INVITE {
                        ClientKind::Invite(InviteClient::new(
                            request.clone(),
                            reliable,
                            self.config.timers,
                            now,
                        ))
                    } else {
                        ClientKind::NonInvite(NonInviteClient::new(
                            Bytes::from(request.to_bytes()),
                            reliable,
                            self.config.timers,
                            now,
                        ))
                    };
                    self.start_client(
                        branch,
                        ClientTransaction {
                            transaction,
                            target,
                            owner: Owner::Call(id),
                            method,
                            request: Some(request),
                        },
                    );
                }
                CallOutput::Ack(ack) => self.transmits.push_back(super::Transmit {
                    target: hop,
                    bytes: Bytes::from(ack.to_bytes()),
                }),
                CallOutput::Response(response) => self.send_response(now, response, default),
            }
        }
        for event in events {
            self.events.push_back(EndpointEvent::Call { id, event });
        }
        if done {
            self.calls.remove(&id);
            if let Some(key) = dialog_key {
                self.dialogs.remove(&key);
            }
        } else {
            self.schedule(Timer::Call(id));
        }
    }

    /// Sends a call's response through the server transaction of its request.
    fn send_response(&mut self, now: Instant, response: Message, fallback: Target) {
        let key = response
            .cseq()
            .ok()
            .and_then(|cseq| super::server_key(&response, &cseq.method));
        if let Some(key) = key
            && let Some(entry) = self.servers.get_mut(&key)
        {
            match &mut entry.transaction {
                ServerTransaction::Invite(invite) => invite.respond(now, &response),
                ServerTransaction::NonInvite(transaction) => transaction.respond(now, &response),
            }
            return self.drain_server(&key);
        }
        // The transaction is gone (a late 2xx retransmission): straight to the far end.
        self.transmits.push_back(super::Transmit {
            target: fallback,
            bytes: Bytes::from(response.to_bytes()),
        });
    }
}

/// The target of a URI whose host is an IP address (`sip:10.0.0.1:5070;transport=tcp;lr`);
/// `None` for a host name (the caller falls back to the proxy it knows).
pub(super) fn hop_target(uri: &str, transport: Transport) -> Option<Target> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (hostport, params) = match rest.find([';', '?']) {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, ""),
    };
    let hostport = hostport.rsplit('@').next()?;
    let transport = params
        .split(';')
        .find_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.eq_ignore_ascii_case("transport")
                .then(|| Transport::from_param(value))
                .flatten()
        })
        .unwrap_or(transport);
    let default_port = if transport == Transport::Tls {
        5061
    } else {
        5060
    };
    let addr = if let Ok(addr) = hostport.parse::<SocketAddr>() {
        addr
    } else if let Ok(ip) = hostport.trim_matches(['[', ']']).parse::<IpAddr>() {
        SocketAddr::new(ip, default_port)
    } else {
        let (host, port) = hostport.rsplit_once(':')?;
        SocketAddr::new(host.parse().ok()?, port.parse().ok()?)
    };
    Some(Target { transport, addr })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_are_read_from_ip_uris_only() {
        let udp = Transport::Udp;
        let hop = hop_target("sip:127.0.0.1:5070;lr", udp).expect("hop");
        assert_eq!(hop.addr, "127.0.0.1:5070".parse().expect("addr"));
        assert_eq!(hop.transport, Transport::Udp);
        let hop = hop_target("sip:bob@10.0.0.2;transport=tcp", udp).expect("hop");
        assert_eq!(hop.addr, "10.0.0.2:5060".parse().expect("addr"));
        assert_eq!(hop.transport, Transport::Tcp);
        let hop = hop_target("sip:[::1]:5080;transport=TLS", udp).expect("hop");
        assert_eq!(hop.addr, "[::1]:5080".parse().expect("addr"));
        assert!(hop_target("sip:proxy.example.com;lr", udp).is_none());
    }
}
