//! The endpoint's side of event subscriptions (RFC 6665): ours (a SUBSCRIBE for an account,
//! failed over between the domain's servers like its other requests, then refreshed in its
//! dialog) and the far end's (a SUBSCRIBE to the local domain its owner accepted, and the
//! NOTIFYs sent in its dialog, to where the SUBSCRIBE came from). The NOTIFYs and refreshes
//! that reach a subscription's dialog are answered here and reported as events.

use std::time::Instant;

use bytes::Bytes;
use ezk_sip_types::{Method, Name};

use super::calls::hop_target;
use super::{
    Endpoint, EndpointEvent, Failover, Owner, PendingRequest, ServerKey, Target, server_failed,
};
use crate::call::CallConfig;
use crate::message::Message;
use crate::subscription::{Notifier, NotifierConfig, SubscribeRequest, Subscriber};
use crate::transaction::{Event, NonInviteServer};

/// Identifies a subscription, ours or the far end's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

#[derive(Debug)]
enum Role {
    Ours(Box<Subscriber>),
    Theirs(Box<Notifier>),
}

#[derive(Debug)]
pub(super) struct SubscriptionEntry {
    role: Role,
    /// Where requests outside the dialog go (ours), or where the SUBSCRIBE came from (theirs).
    target: Target,
    failover: Failover,
    key: (String, String),
}

impl Endpoint {
    /// Subscribes as the account `config` describes, through the first of `targets` (none:
    /// it ends at once with 503). What happens comes as [`EndpointEvent::Subscription`].
    pub fn subscribe(
        &mut self,
        now: Instant,
        config: CallConfig,
        request: SubscribeRequest,
        targets: Vec<Target>,
    ) -> SubscriptionId {
        let id = SubscriptionId(self.next_id);
        self.next_id += 1;
        let mut subscriber = Subscriber::new(config, request);
        let Some(target) = targets.first().copied() else {
            subscriber.fail(503, "Service Unavailable (no server for the domain)");
            while let Some(event) = subscriber.poll_event() {
                self.events
                    .push_back(EndpointEvent::Subscription { id, event });
            }
            return id;
        };
        let key = subscriber.dialog_key();
        self.subscription_dialogs.insert(key.clone(), id);
        self.subscriptions.insert(
            id,
            SubscriptionEntry {
                role: Role::Ours(Box::new(subscriber)),
                target,
                failover: Failover::new(targets),
                key,
            },
        );
        self.pump_subscription(now, id);
        id
    }

    /// Refreshes one of our subscriptions for `expires` seconds; 0 unsubscribes.
    pub fn refresh_subscription(&mut self, now: Instant, id: SubscriptionId, expires: u32) {
        if let Some(SubscriptionEntry {
            role: Role::Ours(subscriber),
            ..
        }) = self.subscriptions.get_mut(&id)
        {
            subscriber.refresh(expires);
            self.pump_subscription(now, id);
        }
    }

    /// Forgets a subscription without a word to the far end (its owner is gone); later
    /// requests in its dialog get 481.
    pub fn forget_subscription(&mut self, id: SubscriptionId) {
        if let Some(entry) = self.subscriptions.remove(&id) {
            self.subscription_dialogs.remove(&entry.key);
        }
    }

    /// Accepts a SUBSCRIBE held for the owner ([`EndpointEvent::Request`]) with `code` (200,
    /// or 202 while it waits for authorization) for `expires` seconds. Its NOTIFYs go where
    /// it came from, written as `config` says; the owner sends the first one now.
    pub fn accept_subscription(
        &mut self,
        now: Instant,
        pending: &PendingRequest,
        code: u16,
        expires: u32,
        config: NotifierConfig,
    ) -> Option<SubscriptionId> {
        self.pending_requests.get(&pending.0)?;
        let tag = self.new_tag();
        let (request, _) = self.pending_requests.get(&pending.0)?;
        let contact = format!(
            "<sip:{}@{};transport={}>",
            config.contact_user,
            config.local,
            config.transport.param()
        );
        let notifier = Notifier::new(config, request, &tag, expires)?;
        let target = self.servers.get(&pending.0)?.target;
        let id = SubscriptionId(self.next_id);
        self.next_id += 1;
        let key = notifier.dialog_key();
        self.subscription_dialogs.insert(key.clone(), id);
        self.subscriptions.insert(
            id,
            SubscriptionEntry {
                role: Role::Theirs(Box::new(notifier)),
                target,
                failover: Failover::new(vec![target]),
                key,
            },
        );
        let reason = if code == 202 { "Accepted" } else { "OK" };
        self.answer_tagged(
            now,
            pending,
            code,
            reason,
            &[
                ("Expires".to_owned(), expires.to_string()),
                ("Contact".to_owned(), contact),
            ],
            &tag,
        );
        Some(id)
    }

    /// Sends a NOTIFY in a subscription to us (see [`Notifier::notify`]).
    pub fn notify(
        &mut self,
        now: Instant,
        id: SubscriptionId,
        state: &str,
        content_type: &str,
        body: Bytes,
    ) {
        if let Some(SubscriptionEntry {
            role: Role::Theirs(notifier),
            ..
        }) = self.subscriptions.get_mut(&id)
        {
            notifier.notify(state, content_type, body);
            self.pump_subscription(now, id);
        }
    }

    /// The number of subscriptions, ours and the far end's.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    /// A request with a To tag that is no call's: a NOTIFY for one of our subscriptions, or a
    /// refresh of one to us, answered here. False when it is no subscription's either.
    pub(super) fn subscription_request(
        &mut self,
        now: Instant,
        source: Target,
        request: &Message,
        method: &Method,
        key: ServerKey,
    ) -> bool {
        let dialog = (
            request.call_id().unwrap_or_default().to_owned(),
            request.tag(&Name::TO).unwrap_or_default().to_owned(),
        );
        let Some(&id) = self.subscription_dialogs.get(&dialog) else {
            return false;
        };
        let Some(entry) = self.subscriptions.get_mut(&id) else {
            return false;
        };
        let (code, reason, headers): (u16, &str, Vec<(Name, String)>) =
            match (&mut entry.role, method) {
                (Role::Ours(subscriber), &Method::NOTIFY) => {
                    let (code, reason) = subscriber.handle_notify(request);
                    (code, reason, Vec::new())
                }
                (Role::Theirs(notifier), &Method::SUBSCRIBE) => {
                    let (code, expires) = notifier.handle_subscribe(request);
                    let reason = if code == 200 { "OK" } else { "Not Accepted" };
                    (code, reason, vec![(Name::EXPIRES, expires.to_string())])
                }
                _ => (405, "Method Not Allowed", Vec::new()),
            };
        let mut response = request.response(code, reason, None);
        for (name, value) in headers {
            response.headers.insert(name, value);
        }
        if code == 405 {
            response.headers.insert(Name::ALLOW, "SUBSCRIBE, NOTIFY");
        }
        response
            .headers
            .insert(Name::SERVER, self.config.user_agent.clone());
        let transaction = NonInviteServer::new(source.transport.reliable(), self.config.timers);
        self.servers.insert(
            key.clone(),
            super::transactions::ServerEntry {
                transaction: super::ServerTransaction::NonInvite(transaction),
                target: source,
                owner: None,
            },
        );
        if let Some(super::ServerEntry {
            transaction: super::ServerTransaction::NonInvite(transaction),
            ..
        }) = self.servers.get_mut(&key)
        {
            transaction.respond(now, &response);
        }
        self.drain_server(&key);
        self.pump_subscription(now, id);
        true
    }

    /// Sends what a subscription has to send, reports its events, and forgets it once over.
    fn pump_subscription(&mut self, now: Instant, id: SubscriptionId) {
        let Some(entry) = self.subscriptions.get_mut(&id) else {
            return;
        };
        let mut requests = Vec::new();
        let mut events = Vec::new();
        let target = entry.target;
        let ended = match &mut entry.role {
            Role::Ours(subscriber) => {
                // In the dialog, requests follow its route set (or go to the remote target).
                let hop = subscriber
                    .next_hop()
                    .and_then(|uri| hop_target(uri, target.transport))
                    .unwrap_or(target);
                while let Some(request) = subscriber.poll_request() {
                    let to = if request.tag(&Name::TO).is_some() {
                        hop
                    } else {
                        target
                    };
                    requests.push((request, to));
                }
                events.extend(std::iter::from_fn(|| subscriber.poll_event()));
                subscriber.is_ended()
            }
            Role::Theirs(notifier) => {
                while let Some(request) = notifier.poll_request() {
                    requests.push((request, target));
                }
                events.extend(std::iter::from_fn(|| notifier.poll_event()));
                notifier.is_ended()
            }
        };
        for (request, to) in requests {
            self.start_non_invite(now, &request, to, Owner::Subscription(id));
        }
        for event in events {
            self.events
                .push_back(EndpointEvent::Subscription { id, event });
        }
        if ended {
            self.forget_subscription(id);
        }
    }

    /// What a subscription's transaction ended with.
    pub(super) fn subscription_outcomes(
        &mut self,
        now: Instant,
        id: SubscriptionId,
        outcomes: Vec<Event>,
    ) {
        for outcome in outcomes {
            let Some(entry) = self.subscriptions.get_mut(&id) else {
                return;
            };
            match &mut entry.role {
                Role::Ours(subscriber) => {
                    // Before the dialog, a server that fails is replaced by the next.
                    if server_failed(&outcome)
                        && subscriber.next_hop().is_none()
                        && entry.failover.targets_left()
                        && let Some(next) = entry.failover.next()
                    {
                        entry.target = next;
                        subscriber.refresh_same();
                        continue;
                    }
                    match outcome {
                        Event::Final(response) => subscriber.handle_final(&response),
                        Event::Timeout => subscriber.fail(408, "Request Timeout (no answer)"),
                        Event::TransportError => subscriber
                            .fail(503, "Service Unavailable (the server cannot be reached)"),
                        Event::Provisional(_) | Event::Ack(_) => {}
                    }
                }
                Role::Theirs(notifier) => match outcome {
                    Event::Final(response) => notifier.handle_final(&response),
                    Event::Timeout => notifier.fail(408, "Request Timeout (no answer)"),
                    Event::TransportError => notifier.fail(
                        503,
                        "Service Unavailable (the subscriber cannot be reached)",
                    ),
                    Event::Provisional(_) | Event::Ack(_) => {}
                },
            }
        }
        self.pump_subscription(now, id);
    }
}
