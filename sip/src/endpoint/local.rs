//! The endpoint's side of the local domain: REGISTERs go to the registrar, and INVITEs for its
//! users wait for the owner (the driver) to take them as calls or refuse them.

use std::time::Instant;

use ezk_sip_types::Name;

use super::{
    CallEntry, Endpoint, EndpointEvent, Owner, ServerEntry, ServerKey, ServerTransaction, Target,
    Timer,
};
use crate::call::{ALLOW, Call, CallConfig};
use crate::endpoint::CallId;
use crate::message::RequestUri;
use crate::message::{Message, StartLine};
use crate::registrar::Ping;
use crate::registrar::{Binding, Refusal};
use crate::transaction::Event;
use crate::transaction::InviteServer;
use crate::uri::uri_host;

/// An INVITE for a user of the local domain, waiting for [`Endpoint::accept_local`] or
/// [`Endpoint::refuse_local`]. It has been answered 100 Trying.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PendingInvite(ServerKey);

impl Endpoint {
    /// What Allow says in the endpoint's own answers to `request`: the user agent's methods,
    /// and for the local domain also those its presence server takes.
    pub(super) fn allow_for(&self, request: &Message) -> String {
        if self.for_local_domain(request) {
            format!("{ALLOW}, SUBSCRIBE, PUBLISH")
        } else {
            ALLOW.to_owned()
        }
    }

    /// Whether a request is for the local domain (by Request-URI, or To).
    pub(super) fn for_local_domain(&self, request: &Message) -> bool {
        let Some(registrar) = &self.registrar else {
            return false;
        };
        let request_uri = match &request.start {
            StartLine::Request { uri, .. } => uri_host(uri.as_str()).map(str::to_owned),
            StartLine::Response { .. } => None,
        };
        let to = request
            .header(&Name::TO)
            .and_then(|to| uri_host(crate::uri::bare_uri(to)).map(str::to_owned));
        [request_uri, to]
            .iter()
            .flatten()
            .any(|host| registrar.is_local(host))
    }

    /// A REGISTER for the local domain.
    pub(super) fn local_register(
        &mut self,
        now: Instant,
        source: Target,
        request: &Message,
        key: ServerKey,
    ) {
        let tag = self.new_tag();
        let Some(registrar) = &mut self.registrar else {
            return;
        };
        let response = registrar.handle_register(now, request, source, &tag);
        self.respond_with(now, source, request, key, response);
        self.schedule(Timer::Ping);
    }

    /// The pings' timer fired: the due ones wait for [`Endpoint::send_ping`].
    pub(super) fn pings_due(&mut self, now: Instant) {
        self.ping_timer = None;
        if let Some(registrar) = &mut self.registrar {
            self.ping_queue.extend(registrar.due_pings(now));
        }
        self.schedule(Timer::Ping);
    }

    /// The next OPTIONS ping due: send it with [`Endpoint::send_ping`], which needs our address
    /// toward its target (the driver knows it).
    pub fn poll_ping(&mut self) -> Option<Ping> {
        self.ping_queue.pop_front()
    }

    /// Sends an OPTIONS ping over the flow of a phone's registration (`local`: our `host:port`
    /// toward it, for Via). Any response shows the phone is there; none, the phone is gone.
    pub fn send_ping(&mut self, now: Instant, ping: Ping, local: &str) {
        let Some(domain) = self.local_domain().map(str::to_owned) else {
            return;
        };
        let Some(uri) = RequestUri::parse(&ping.contact) else {
            return;
        };
        self.next_id += 1;
        let id = self.next_id;
        let target = ping.target;
        self.pings.insert(id, ping);
        self.send_options(
            now,
            uri,
            &format!("sip:ping@{domain}"),
            local,
            target,
            Owner::Ping(id),
        );
    }

    /// A ping's outcome: a response of any kind means the phone is there.
    pub(super) fn ping_outcomes(&mut self, id: u64, outcomes: Vec<Event>) {
        for outcome in outcomes {
            let Some(ping) = self.pings.remove(&id) else {
                return;
            };
            match outcome {
                Event::Final(_) => {}
                Event::Timeout | Event::TransportError => {
                    if let Some(registrar) = &mut self.registrar
                        && registrar.ping_failed(&ping)
                    {
                        self.events.push_back(EndpointEvent::BindingLost(ping));
                    }
                }
                Event::Provisional(_) | Event::Ack(_) => {
                    self.pings.insert(id, ping);
                }
            }
        }
    }

    /// Whether the sender of a request for the local domain authenticated: one whose From is
    /// of the domain must (407, then its credentials; 403 for wrong ones), and `None` says it
    /// was answered so; senders of other domains cannot (`Some(false)`).
    pub(super) fn local_sender(
        &mut self,
        now: Instant,
        source: Target,
        request: &Message,
        key: &ServerKey,
    ) -> Option<bool> {
        let from = request
            .header(&Name::FROM)
            .map(|from| crate::uri::bare_uri(from).to_owned())
            .unwrap_or_default();
        let registrar = self.registrar.as_mut()?;
        if !uri_host(&from).is_some_and(|host| registrar.is_local(host)) {
            return Some(false);
        }
        // Another gateway of the domain challenged its caller already.
        if source.transport == crate::Transport::Udp && registrar.is_peer(source.addr) {
            return Some(true);
        }
        let tag = self.new_tag();
        let registrar = self.registrar.as_mut()?;
        let user = crate::uri::uri_user(&from).unwrap_or_default().to_owned();
        let refusal = registrar
            .authenticate(now, request, &Name::PROXY_AUTHORIZATION, &user)
            .err();
        let response = match refusal {
            None => return Some(true),
            Some(Refusal::Missing) => registrar.challenge(now, request, 407, false, &tag),
            Some(Refusal::Stale) => registrar.challenge(now, request, 407, true, &tag),
            Some(Refusal::Forbidden) => request.response(403, "Forbidden", Some(&tag)),
        };
        self.respond_with(now, source, request, key.clone(), response);
        None
    }

    /// An INVITE for a user of the local domain: callers of the local domain authenticate (407),
    /// then the owner decides.
    pub(super) fn local_invite(
        &mut self,
        now: Instant,
        source: Target,
        request: Message,
        key: ServerKey,
    ) {
        let Some(authenticated) = self.local_sender(now, source, &request, &key) else {
            return;
        };
        let transaction =
            InviteServer::new(&request, source.transport.reliable(), self.config.timers);
        self.servers.insert(
            key.clone(),
            ServerEntry {
                transaction: ServerTransaction::Invite(transaction),
                target: source,
                owner: None,
            },
        );
        self.drain_server(&key);
        self.events.push_back(EndpointEvent::LocalInvite {
            pending: PendingInvite(key),
            source,
            authenticated,
            invite: Box::new(request),
        });
    }

    /// Takes a local INVITE as a call with `config` (our tag, address, user).
    pub fn accept_local(
        &mut self,
        now: Instant,
        pending: &PendingInvite,
        invite: &Message,
        config: CallConfig,
    ) -> Option<CallId> {
        let key = &pending.0;
        let source = self.servers.get(key)?.target;
        match Call::incoming(now, config, invite) {
            Ok(call) => {
                let id = CallId(self.next_id);
                self.next_id += 1;
                if let Some(entry) = self.servers.get_mut(key) {
                    entry.owner = Some(id);
                }
                let call_id = invite.call_id().unwrap_or_default().to_owned();
                self.dialogs.insert((call_id, call.tag().to_owned()), id);
                self.calls.insert(
                    id,
                    CallEntry {
                        call,
                        target: source,
                        direct: super::calls::from_the_phone_itself(invite),
                        failover: super::Failover::default(),
                    },
                );
                self.pump_call(now, id);
                Some(id)
            }
            Err(response) => {
                self.finish_pending(now, key, &response);
                None
            }
        }
    }

    /// Refuses a local INVITE with a final response.
    pub fn refuse_local(
        &mut self,
        now: Instant,
        pending: &PendingInvite,
        invite: &Message,
        code: u16,
        reason: &str,
    ) {
        let tag = self.new_tag();
        let response = invite.response(code, reason, Some(&tag));
        self.finish_pending(now, &pending.0, &response);
    }

    fn finish_pending(&mut self, now: Instant, key: &ServerKey, response: &Message) {
        if let Some(entry) = self.servers.get_mut(key)
            && let ServerTransaction::Invite(invite) = &mut entry.transaction
        {
            invite.respond(now, response);
        }
        self.drain_server(key);
    }

    /// The Contacts a user of the local domain registered.
    pub fn local_bindings(&mut self, now: Instant, user: &str) -> Vec<Binding> {
        self.registrar
            .as_mut()
            .map(|registrar| registrar.lookup(now, user))
            .unwrap_or_default()
    }

    /// Whether `user` is a user of the local domain (see [`crate::registrar::Registrar::knows`]).
    pub fn local_user_known(&self, user: &str) -> bool {
        self.registrar
            .as_ref()
            .is_some_and(|registrar| registrar.knows(user))
    }

    /// Whether `addr` is another gateway's of the local domain (`LocalDomain::peers`).
    pub fn is_peer(&self, addr: std::net::SocketAddr) -> bool {
        self.registrar
            .as_ref()
            .is_some_and(|registrar| registrar.is_peer(addr))
    }

    /// The local domain, if there is one.
    pub fn local_domain(&self) -> Option<&str> {
        self.registrar.as_ref().map(|registrar| registrar.domain())
    }
}
