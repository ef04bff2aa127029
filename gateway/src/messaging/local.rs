//! Messages within the local domain: the gateway is its users' message server. A message for
//! a user of the domain, from one of its browsers or from a phone, is stored for the
//! recipient, delivered to each of the recipient's browsers (their devices, once) and sent to
//! each of the recipient's registered phones as a SIP MESSAGE; the sender hears 200 when it
//! reached someone, 202 when it is only stored (the recipient's browsers find it on their next
//! sync), 404 for a user the domain does not have. Notifications (IMDNs) between users move
//! the stored state of the message they are about and reach its sender's browsers and phones
//! the same way.
//!
//! With several gateways for the domain (`[instance] peers`), the gateway a message or
//! notification enters also sends it to each peer, which delivers it to the browsers and
//! phones it holds (and sends it on to no one), so a user is reached on whichever gateway
//! their browser is connected to; only the entry gateway wakes devices by push.
//!
//! Phones of other domains send without authenticating: each source address may send only so
//! many messages a minute ([`SenderLimit`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{AccountEvent, Aor, DispositionNotification, IncomingMessage, Party, SyncAction};
use sip::RequestOutcome;
use sip::driver::SipHandle;
use tracing::{debug, warn};

use super::{Incoming, Outgoing, Received};
use crate::devices::{Delivery, Devices};
use crate::local::Local;
use crate::push::{Pusher, Wake};
use crate::storage::Storage;

/// What local delivery needs: the domain, the accounts' devices, the store and SIP (for
/// phones).
#[derive(Debug, Clone)]
pub(crate) struct Post {
    pub(crate) local: Arc<Local>,
    pub(crate) devices: Arc<Devices>,
    pub(crate) storage: Arc<Storage>,
    pub(crate) sip: SipHandle,
    /// The largest message body taken (`[storage] max_message_size`).
    pub(crate) max_size: usize,
    /// Wakes the devices of users with no live connection (`[local] push_url`).
    pub(crate) pusher: Option<Arc<Pusher>>,
}

/// A message between users of the local domain, as it is stored and delivered.
#[derive(Debug, Clone)]
pub(crate) struct Letter {
    pub(crate) from: Aor,
    pub(crate) display_name: Option<String>,
    pub(crate) to: Aor,
    pub(crate) received: Received,
}

/// How long a message for the domain waits for the other gateways' answers.
const PEER_WAIT: Duration = Duration::from_secs(2);

fn outcome(code: u16, reason: impl Into<String>) -> RequestOutcome {
    RequestOutcome {
        code,
        reason: reason.into(),
    }
}

impl Post {
    /// Stores `letter` for its recipient, then delivers it to the recipient's browsers and
    /// phones (but the phone at `source`, which sent it). The outcome for the sender.
    pub(crate) async fn deliver(
        &self,
        letter: &Letter,
        source: Option<SocketAddr>,
    ) -> RequestOutcome {
        let user = letter.to.user();
        if !self.local.knows(user) {
            return outcome(404, format!("Not Found (no user {user})"));
        }
        let received = &letter.received;
        let stored = store::Message {
            account: letter.to.key(),
            message_id: received.message_id.clone(),
            contact: letter.from.key(),
            direction: store::Direction::Incoming,
            content_type: received.content_type.clone(),
            content: received.content.clone(),
            timestamp: received.timestamp.clone(),
            at: super::parse_timestamp(&received.timestamp).unwrap_or_else(store::now_millis),
            state: store::State::Received,
            disposition: received.disposition.clone(),
        };
        let kept = match self.storage.get() {
            Ok(store) => match store.add_message(&stored).await {
                Ok(_) => true,
                Err(error) => {
                    warn!("a message for {} was not stored: {error}", letter.to);
                    false
                }
            },
            Err(error) => {
                warn!("a message for {} was not stored: {error}", letter.to);
                false
            }
        };
        let event = AccountEvent::Message(IncomingMessage {
            sender: Party {
                uri: letter.from.to_string(),
                display_name: letter.display_name.clone(),
            },
            timestamp: received.timestamp.clone(),
            message_id: received.message_id.clone(),
            content: received.content.clone(),
            content_type: received.content_type.clone(),
            disposition_notification: received.disposition.clone(),
        });
        let browsers =
            self.devices
                .deliver(&letter.to, &received.message_id, &event, Instant::now());
        let phone = Outgoing {
            account: sender_account(&letter.from, letter.display_name.clone()),
            from: letter.from.clone(),
            to: letter.to.clone(),
            message_id: received.message_id.clone(),
            timestamp: received.timestamp.clone(),
            content_type: received.content_type.clone(),
            content: received.content.clone(),
            notification: false,
        };
        let (phones, peers) = futures_util::future::join(
            self.to_phones(&phone, source),
            self.to_peers(&phone, source),
        )
        .await;
        // The gateway the message entered wakes the user's devices, when no browser here and
        // no other gateway reached them.
        if matches!(browsers, Delivery::Reached(0))
            && !peers
            && !source.is_some_and(|source| self.local.is_peer(source))
            && let Some(pusher) = &self.pusher
        {
            pusher.wake(
                &letter.to,
                Wake::Message {
                    message_id: received.message_id.clone(),
                    from: letter.from.to_string(),
                    display_name: letter.display_name.clone(),
                    content_type: received.content_type.clone(),
                    content: received.content.clone(),
                },
            );
        }
        debug!(to = %letter.to, ?browsers, phones, peers, kept, "local message delivered");
        match browsers.status(phones || peers, kept) {
            200 => outcome(200, "OK"),
            202 => outcome(202, "Accepted"),
            _ => outcome(
                480,
                format!("Temporarily Unavailable ({user} has no device registered)"),
            ),
        }
    }

    /// Sends `message` to each phone of its recipient but the one at `source`; whether one
    /// took it.
    async fn to_phones(&self, message: &Outgoing, source: Option<SocketAddr>) -> bool {
        let phones: Vec<sip::Binding> = self
            .local
            .phone_bindings(message.to.user())
            .into_iter()
            .filter(|phone| Some(phone.target.addr) != source)
            .collect();
        let sends = phones
            .iter()
            .map(|phone| message.send_to(&self.sip, Some(phone)));
        futures_util::future::join_all(sends)
            .await
            .iter()
            .any(|outcome| (200..300).contains(&outcome.code))
    }

    /// The other gateways of the domain (`[instance] peers`), for a message or notification
    /// that entered here (not from one of them: nothing goes round): each delivers it to the
    /// browsers and phones it holds. Whether one reached someone (200; 202 is "only stored").
    /// A gateway that does not answer within [`PEER_WAIT`] is not waited for: one that is gone
    /// must not hold every message of the domain for a transaction's 32 s.
    async fn to_peers(&self, message: &Outgoing, source: Option<SocketAddr>) -> bool {
        if source.is_some_and(|source| self.local.is_peer(source)) {
            return false;
        }
        let peers = self.local.peer_branches(message.to.user());
        let sends = peers
            .iter()
            .map(|peer| tokio::time::timeout(PEER_WAIT, message.send_to(&self.sip, Some(peer))));
        futures_util::future::join_all(sends)
            .await
            .iter()
            .any(|outcome| matches!(outcome, Ok(outcome) if outcome.code == 200))
    }

    /// An IMDN (`imdn`, from its `from` to its `to`, a user of the domain) about the message
    /// `message_id` that `to` sent: the stored state moves, `to`'s browsers hear of it, and its
    /// phones and the domain's other gateways get the IMDN (but the one at `source`). Only the
    /// message's recipient speaks for it: anything else is dropped.
    pub(crate) async fn notify(
        &self,
        message_id: &str,
        state: store::State,
        datetime: Option<String>,
        imdn: &Outgoing,
        source: Option<SocketAddr>,
    ) -> RequestOutcome {
        let (from, to) = (&imdn.from, &imdn.to);
        if !self.local.knows(to.user()) {
            return outcome(404, format!("Not Found (no user {})", to.user()));
        }
        let store = match self.storage.get() {
            Ok(store) => store,
            Err(error) => {
                warn!("a notification was dropped: {error}");
                return outcome(200, "OK");
            }
        };
        let about = store.message(&to.key(), message_id).await;
        let from_recipient = matches!(&about, Ok(Some(message))
            if message.direction == store::Direction::Outgoing && message.contact == from.key());
        if from_recipient {
            if let Err(error) = store.update_state(&to.key(), message_id, state).await {
                warn!("a notification's state was not stored: {error}");
            }
            let event = AccountEvent::DispositionNotification(DispositionNotification {
                message_id: message_id.to_owned(),
                message_timestamp: datetime,
                state: state.as_str().to_owned(),
                code: None,
                reason: None,
            });
            let key = format!("imdn {message_id} {}", state.as_str());
            self.devices.deliver(to, &key, &event, Instant::now());
        } else {
            debug!(%from, %to, message_id, "a notification not from the message's recipient was dropped");
        }
        // Phones keep their own record: they get the IMDN whatever the store knows; the other
        // gateways check their own store.
        futures_util::future::join(self.to_phones(imdn, None), self.to_peers(imdn, source)).await;
        outcome(200, "OK")
    }

    /// A message a phone of the domain's user `from` sent (authenticated): kept as theirs too,
    /// and their browsers hear of it as they would of one sent from another browser.
    pub(crate) async fn sent_by_phone(&self, letter: &Letter, state: store::State) {
        let received = &letter.received;
        let record = store::Message {
            account: letter.from.key(),
            message_id: received.message_id.clone(),
            contact: letter.to.key(),
            direction: store::Direction::Outgoing,
            content_type: received.content_type.clone(),
            content: received.content.clone(),
            timestamp: received.timestamp.clone(),
            at: super::parse_timestamp(&received.timestamp).unwrap_or_else(store::now_millis),
            state,
            disposition: received.disposition.clone(),
        };
        match self.storage.get() {
            Ok(store) => {
                if let Err(error) = store.add_message(&record).await {
                    warn!("a phone's message was not stored for its sender: {error}");
                }
            }
            Err(error) => warn!("a phone's message was not stored for its sender: {error}"),
        }
        let event = AccountEvent::Sync(SyncAction::MessageAdded {
            account: letter.from.to_string(),
            uri: letter.to.to_string(),
            message_id: received.message_id.clone(),
            content: received.content.clone(),
            content_type: received.content_type.clone(),
            timestamp: received.timestamp.clone(),
        });
        self.devices.fork(&letter.from, None, &event);
    }

    /// A MESSAGE from a phone for a user of the domain (the Request-URI's user `to`), from
    /// `source`, its sender authenticated or not: the SIP answer.
    pub(crate) async fn phone_message(
        &self,
        message: &sip::Message,
        to: &str,
        source: SocketAddr,
        authenticated: bool,
    ) -> RequestOutcome {
        if message.body.len() > self.max_size {
            return outcome(413, "Request Entity Too Large");
        }
        let request = match super::read_request(message) {
            Ok(request) => request,
            Err((code, reason)) => return outcome(code, reason),
        };
        let Ok(to) = Aor::parse(&format!("{to}@{}", self.local.domain())) else {
            return outcome(404, "Not Found");
        };
        match request.incoming {
            Incoming::Composing => outcome(200, "OK"),
            Incoming::Message(received) => {
                let letter = Letter {
                    from: request.from,
                    display_name: request.display_name,
                    to,
                    received,
                };
                let result = self.deliver(&letter, Some(source)).await;
                if authenticated {
                    let state = if (200..300).contains(&result.code) {
                        store::State::Accepted
                    } else {
                        store::State::Failed
                    };
                    self.sent_by_phone(&letter, state).await;
                }
                result
            }
            Incoming::Notification {
                message_id,
                state,
                datetime,
            } => {
                let imdn = Outgoing {
                    account: sender_account(&request.from, request.display_name),
                    from: request.from.clone(),
                    to: to.clone(),
                    message_id: uuid::Uuid::new_v4().to_string(),
                    timestamp: super::format_timestamp(store::now_millis()),
                    content_type: "message/imdn+xml".to_owned(),
                    content: super::imdn(
                        &message_id,
                        datetime.as_deref().unwrap_or_default(),
                        state.as_str(),
                    ),
                    notification: true,
                };
                self.notify(&message_id, state, datetime, &imdn, Some(source))
                    .await
            }
        }
    }
}

/// The SIP identity a message goes to phones with: its sender (no credentials: a phone does
/// not challenge what its registrar sends it).
fn sender_account(from: &Aor, display_name: Option<String>) -> sip::driver::Account {
    sip::driver::Account {
        user: from.user().to_owned(),
        domain: from.host().to_owned(),
        display_name,
        credentials: sip::Credentials {
            username: from.user().to_owned(),
            secret: sip::Secret::Password(String::new()),
        },
        user_agent: None,
        contact_params: Vec::new(),
    }
}

/// How many messages a minute one source address may send without authenticating (phones
/// of other domains): enough for a person, not for a flood.
pub(crate) const UNAUTHENTICATED_PER_MINUTE: u32 = 60;
/// The most source addresses remembered at once.
const SOURCES_MAX: usize = 10_000;

/// Counts the messages of senders who did not authenticate, per source address and minute.
#[derive(Debug, Default)]
pub(crate) struct SenderLimit {
    sources: HashMap<IpAddr, (Instant, u32)>,
}

impl SenderLimit {
    /// Whether `source` may send one more now.
    pub(crate) fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        let minute = Duration::from_secs(60);
        if self.sources.len() >= SOURCES_MAX {
            self.sources
                .retain(|_, (since, _)| now.duration_since(*since) < minute);
        }
        if self.sources.len() >= SOURCES_MAX && !self.sources.contains_key(&source) {
            return false;
        }
        let (since, count) = self.sources.entry(source).or_insert((now, 0));
        if now.duration_since(*since) >= minute {
            *since = now;
            *count = 0;
        }
        *count += 1;
        *count <= UNAUTHENTICATED_PER_MINUTE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source gets its quota a minute, then waits; others are not affected.
    #[test]
    fn unauthenticated_senders_are_limited_per_source() {
        let mut limit = SenderLimit::default();
        let start = Instant::now();
        let one: IpAddr = "192.0.2.1".parse().expect("an address");
        let two: IpAddr = "192.0.2.2".parse().expect("an address");
        for _ in 0..UNAUTHENTICATED_PER_MINUTE {
            assert!(limit.allow(one, start));
        }
        assert!(!limit.allow(one, start + Duration::from_secs(30)));
        assert!(limit.allow(two, start + Duration::from_secs(30)));
        assert!(limit.allow(one, start + Duration::from_secs(61)));
    }
}
