//! The driver's side of event subscriptions (RFC 6665): ours, for an account (its server
//! looked up as for its other requests), and the far end's to the local domain, accepted by
//! the domain's owner. Each has a handle and a channel of its own for its events.

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Account, Command, Driver, Input, RequestHandle, SipHandle};
use crate::endpoint::{SubscriptionId, Target};
use crate::subscription::{NotifierConfig, SubscribeRequest, SubscriptionEvent};

/// Names a subscription, ours or the far end's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionHandle(u64);

/// A subscription's events; after [`SubscriptionEvent::Ended`] nothing more comes.
pub type SubscriptionEvents = mpsc::UnboundedReceiver<SubscriptionEvent>;

/// A subscription to ask for, for an account.
#[derive(Debug, Clone)]
pub struct OutgoingSubscription {
    /// The account it is for (From, credentials).
    pub account: Account,
    /// Whose state (To, Request-URI).
    pub uri: crate::RequestUri,
    /// The event package (`presence`).
    pub event: String,
    /// The Accept header.
    pub accept: String,
    /// The duration asked for, in seconds.
    pub expires: u32,
    /// The Call-ID.
    pub call_id: String,
    /// Whether a resource list may answer (RFC 4662, `Supported: eventlist`).
    pub eventlist: bool,
    /// The server to send the SUBSCRIBE to instead of the account's (the watched contact's
    /// domain, for an account whose own server is this gateway); the outbound proxy, when
    /// there is one, still comes first, as for calls.
    pub server: Option<String>,
}

#[derive(Debug)]
pub(super) enum SubscriptionSlot {
    /// Ours, waiting for its server's look-up.
    Resolving {
        subscription: Box<OutgoingSubscription>,
        events: mpsc::UnboundedSender<SubscriptionEvent>,
    },
    Active(SubscriptionId, mpsc::UnboundedSender<SubscriptionEvent>),
}

#[derive(Debug)]
pub(super) enum SubscriptionCommand {
    Subscribe(Box<OutgoingSubscription>),
    Accept {
        request: RequestHandle,
        code: u16,
        expires: u32,
    },
    Refresh(u32),
    Notify {
        state: String,
        content_type: String,
        body: Bytes,
    },
    Forget,
}

impl SipHandle {
    /// Subscribes for an account: its handle, and its events.
    pub fn subscribe(
        &self,
        subscription: OutgoingSubscription,
    ) -> (SubscriptionHandle, SubscriptionEvents) {
        self.new_subscription(SubscriptionCommand::Subscribe(Box::new(subscription)))
    }

    /// Accepts a SUBSCRIBE the driver handed over ([`super::LocalEvent::Request`]) with `code`
    /// (200, or 202 while it waits for authorization) for `expires` seconds: its handle, to
    /// send NOTIFYs with (the first one now), and its events (refreshes, its end).
    pub fn accept_subscription(
        &self,
        request: RequestHandle,
        code: u16,
        expires: u32,
    ) -> (SubscriptionHandle, SubscriptionEvents) {
        self.new_subscription(SubscriptionCommand::Accept {
            request,
            code,
            expires,
        })
    }

    fn new_subscription(
        &self,
        command: SubscriptionCommand,
    ) -> (SubscriptionHandle, SubscriptionEvents) {
        let handle = SubscriptionHandle(
            self.next_call
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        let (events, receiver) = mpsc::unbounded_channel();
        let _ = self.commands.send(Command::Subscription {
            handle,
            command,
            events: Some(events),
        });
        (handle, receiver)
    }

    /// Refreshes one of our subscriptions for `expires` seconds; 0 unsubscribes.
    pub fn refresh_subscription(&self, handle: SubscriptionHandle, expires: u32) {
        self.subscription_command(handle, SubscriptionCommand::Refresh(expires));
    }

    /// Sends a NOTIFY in a subscription to us: `state` is the Subscription-State value (a
    /// `terminated` one ends it), the body of `content_type` unless empty.
    pub fn notify(
        &self,
        handle: SubscriptionHandle,
        state: String,
        content_type: String,
        body: Bytes,
    ) {
        self.subscription_command(
            handle,
            SubscriptionCommand::Notify {
                state,
                content_type,
                body,
            },
        );
    }

    /// Forgets a subscription without a word to the far end (after an unsubscribe, or for
    /// one to us that the owner no longer serves).
    pub fn forget_subscription(&self, handle: SubscriptionHandle) {
        self.subscription_command(handle, SubscriptionCommand::Forget);
    }

    fn subscription_command(&self, handle: SubscriptionHandle, command: SubscriptionCommand) {
        let _ = self.commands.send(Command::Subscription {
            handle,
            command,
            events: None,
        });
    }
}

impl Driver {
    pub(super) fn subscription_command(
        &mut self,
        handle: SubscriptionHandle,
        command: SubscriptionCommand,
        events: Option<mpsc::UnboundedSender<SubscriptionEvent>>,
    ) {
        let now = Instant::now().into_std();
        match (command, events) {
            (SubscriptionCommand::Subscribe(subscription), Some(events)) => {
                let server = self.server_for(&subscription.account, subscription.server.as_ref());
                self.subscriptions.insert(
                    handle,
                    SubscriptionSlot::Resolving {
                        subscription,
                        events,
                    },
                );
                self.resolve(server, move |result| Input::SubscriptionResolved {
                    handle,
                    result,
                });
            }
            (
                SubscriptionCommand::Accept {
                    request,
                    code,
                    expires,
                },
                Some(events),
            ) => {
                let Some(source) = self.endpoint.pending_source(&request.0) else {
                    let _ = events.send(SubscriptionEvent::Ended {
                        code: 0,
                        reason: "the SUBSCRIBE was answered already".to_owned(),
                        retry_after: None,
                    });
                    return;
                };
                let config = NotifierConfig {
                    transport: source.transport,
                    local: self.local_address(source),
                    contact_user: uuid::Uuid::new_v4().simple().to_string()[..16].to_owned(),
                    user_agent: self.config.endpoint.user_agent.clone(),
                    seed: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
                };
                match self
                    .endpoint
                    .accept_subscription(now, &request.0, code, expires, config)
                {
                    Some(id) => {
                        self.subscription_owners.insert(id, handle);
                        self.subscriptions
                            .insert(handle, SubscriptionSlot::Active(id, events));
                    }
                    None => {
                        self.endpoint.answer_request(
                            now,
                            &request.0,
                            400,
                            "Bad Request (no Event or Contact)",
                            &[],
                        );
                        let _ = events.send(SubscriptionEvent::Ended {
                            code: 400,
                            reason: "the SUBSCRIBE has no Event or Contact".to_owned(),
                            retry_after: None,
                        });
                    }
                }
            }
            (command, _) => {
                let Some(SubscriptionSlot::Active(id, _)) = self.subscriptions.get(&handle) else {
                    if matches!(command, SubscriptionCommand::Forget) {
                        self.subscriptions.remove(&handle);
                    }
                    return;
                };
                let id = *id;
                match command {
                    SubscriptionCommand::Refresh(expires) => {
                        self.endpoint.refresh_subscription(now, id, expires)
                    }
                    SubscriptionCommand::Notify {
                        state,
                        content_type,
                        body,
                    } => self.endpoint.notify(now, id, &state, &content_type, body),
                    SubscriptionCommand::Forget => {
                        self.subscriptions.remove(&handle);
                        self.subscription_owners.remove(&id);
                        self.endpoint.forget_subscription(id);
                    }
                    SubscriptionCommand::Subscribe(_) | SubscriptionCommand::Accept { .. } => {}
                }
            }
        }
    }

    /// Our subscription's server was looked up: the endpoint subscribes.
    pub(super) fn subscription_resolved(
        &mut self,
        handle: SubscriptionHandle,
        result: Result<(Vec<Target>, String), String>,
    ) {
        let Some(SubscriptionSlot::Resolving {
            subscription,
            events,
        }) = self.subscriptions.remove(&handle)
        else {
            return;
        };
        let targets = match self.looked_up(result, "SUBSCRIBE", &subscription.uri) {
            Ok(targets) => targets,
            Err(reason) => {
                let _ = events.send(SubscriptionEvent::Ended {
                    code: 503,
                    reason,
                    retry_after: None,
                });
                return;
            }
        };
        let Some(first) = targets.first().copied() else {
            return;
        };
        let config = self.call_config(&subscription.account, first);
        let request = SubscribeRequest {
            uri: subscription.uri.clone(),
            route: self.route(),
            call_id: subscription.call_id.clone(),
            event: subscription.event.clone(),
            accept: subscription.accept.clone(),
            expires: subscription.expires,
            eventlist: subscription.eventlist,
        };
        let id = self
            .endpoint
            .subscribe(Instant::now().into_std(), config, request, targets);
        self.subscription_owners.insert(id, handle);
        self.subscriptions
            .insert(handle, SubscriptionSlot::Active(id, events));
    }

    /// A subscription's event, for its owner; the last one forgets it.
    pub(super) fn subscription_event(&mut self, id: SubscriptionId, event: SubscriptionEvent) {
        let Some(&handle) = self.subscription_owners.get(&id) else {
            return;
        };
        let ended = matches!(event, SubscriptionEvent::Ended { .. });
        if let Some(SubscriptionSlot::Active(_, events)) = self.subscriptions.get(&handle) {
            let _ = events.send(event);
        }
        if ended {
            self.subscription_owners.remove(&id);
            self.subscriptions.remove(&handle);
        }
    }
}
