//! The driver's side of calls: owners start and steer calls through the [`SipHandle`](super::SipHandle),
//! and get each call's events on a channel of that call's own.

use bytes::Bytes;
use ezk_sip_types::Name;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Account, Driver, Input, LocalEvent, LocalIncoming, SipEvent};
use crate::call::{Call, CallConfig, CallEvent, Ending, Outgoing, Warning};
use crate::dialog::{bare_uri, without_tag};
use crate::endpoint::{CallId, PendingInvite, RegistrationId, Target};
use crate::message::{Message, StartLine};

/// Names a call, for its owner and the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(pub u64);

/// A call to place.
#[derive(Debug, Clone)]
pub struct OutgoingCall {
    /// The calling account (From, credentials).
    pub account: Account,
    /// Whom to call (`sip:user@domain`), parsed once by whoever places the call.
    pub uri: crate::RequestUri,
    /// The SDP offer.
    pub sdp: Bytes,
    /// Extra headers for the INVITE.
    pub headers: Vec<(String, String)>,
    /// The Call-ID (unique; the owner shows it to its client).
    pub call_id: String,
    /// The server to send the INVITE to instead of the account's (a callee's domain).
    pub server: Option<String>,
    /// For a phone of the local domain: the binding to call (one branch of a fork) rather
    /// than the user's latest. Called only while it is still registered.
    pub binding: Option<crate::Binding>,
}

/// An INVITE that reached a registration, as its owner sees it. Its `Debug` leaves out the
/// SDP, which may carry SRTP keys (`a=crypto`), and the headers' values.
#[derive(Clone, PartialEq, Eq)]
pub struct IncomingCall {
    /// The caller's URI.
    pub from_uri: String,
    /// The caller's display name.
    pub display_name: Option<String>,
    /// The Call-ID.
    pub call_id: String,
    /// The SDP offer (empty for an offerless INVITE).
    pub sdp: Bytes,
    /// Every header, in order, as (name, value).
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for IncomingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingCall")
            .field("from_uri", &self.from_uri)
            .field("display_name", &self.display_name)
            .field("call_id", &self.call_id)
            .field("sdp_bytes", &self.sdp.len())
            .field("headers", &self.headers.len())
            .finish()
    }
}

/// The sender of a request: the URI of its From (without the tag) and its display name.
pub fn sender(request: &Message) -> (String, Option<String>) {
    let from = request.header(&Name::FROM).unwrap_or_default();
    let from = without_tag(from);
    let display_name = from.find('<').and_then(|open| display_name(&from[..open]));
    (bare_uri(&from).to_owned(), display_name)
}

impl IncomingCall {
    fn from_invite(invite: &Message) -> Self {
        let (from_uri, display_name) = sender(invite);
        IncomingCall {
            from_uri,
            display_name,
            call_id: invite.call_id().unwrap_or_default().to_owned(),
            sdp: invite.body.clone(),
            headers: invite
                .headers
                .iter()
                .map(|(name, value)| (name.as_print_str().to_owned(), value.as_str().to_owned()))
                .collect(),
        }
    }
}

/// The display name before a name-addr's `<`: a token list, or a quoted string with its
/// escapes undone.
fn display_name(text: &str) -> Option<String> {
    let text = text.trim();
    let Some(quoted) = text.strip_prefix('"') else {
        return (!text.is_empty()).then(|| text.to_owned());
    };
    let mut name = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => name.extend(chars.next()),
            '"' => break,
            other => name.push(other),
        }
    }
    (!name.is_empty()).then_some(name)
}

/// What an owner asks of a call.
#[derive(Debug, Clone)]
pub enum CallCommand {
    /// End it (CANCEL, BYE, or 480 for an incoming call not answered).
    Hangup,
    /// End an outgoing call that another branch of its fork answered: a CANCEL saying so
    /// (RFC 3326 `Reason`), or a BYE if it answered meanwhile.
    AnsweredElsewhere,
    /// Send 180 Ringing (incoming).
    Ring,
    /// Send 183 Session Progress with our answer, for early media (incoming).
    EarlyMedia(Bytes),
    /// Answer with 200 OK (incoming).
    Answer {
        /// The SDP.
        sdp: Bytes,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// Refuse (incoming, not answered yet).
    Reject {
        /// The status code.
        code: u16,
        /// The reason phrase.
        reason: String,
        /// Why, for the person calling.
        warning: Option<Warning>,
    },
    /// Answer the far end's re-INVITE or UPDATE (or give the offer an offerless re-INVITE asked
    /// for).
    AnswerOffer(Bytes),
    /// Refuse the far end's offer.
    RefuseOffer {
        /// The status code.
        code: u16,
        /// The reason phrase.
        reason: String,
        /// Why, for the person at the other end.
        warning: Option<Warning>,
    },
    /// Send a new offer in a re-INVITE (its answer comes as `CallEvent::Answer`, a refusal as
    /// `CallEvent::OfferRefused`).
    Reoffer(Bytes),
    /// Send an INFO.
    Info {
        /// Its Content-Type.
        content_type: String,
        /// Its body.
        body: Bytes,
    },
    /// Send a MESSAGE in the dialog.
    Message {
        /// Its Content-Type.
        content_type: String,
        /// Its body.
        body: Bytes,
    },
}

/// Where a call stands in the driver.
#[derive(Debug)]
pub(super) enum CallSlot {
    /// Waiting for DNS.
    Resolving {
        outgoing: Box<OutgoingCall>,
        events: mpsc::UnboundedSender<CallEvent>,
    },
    /// Handed to the endpoint.
    Active(CallId),
}

impl Driver {
    pub(super) fn start_call(
        &mut self,
        call: CallHandle,
        outgoing: Box<OutgoingCall>,
        events: mpsc::UnboundedSender<CallEvent>,
    ) {
        if self.calls.contains_key(&call) {
            return;
        }
        if let Some(user) = self.local_user(&outgoing.uri) {
            return self.call_local(call, outgoing, events, &user);
        }
        let server = self.server_for(&outgoing.account, outgoing.server.as_ref());
        self.calls
            .insert(call, CallSlot::Resolving { outgoing, events });
        self.resolve(server, move |result| Input::CallResolved { call, result });
    }

    pub(super) fn call_resolved(
        &mut self,
        call: CallHandle,
        result: Result<(Vec<Target>, String), String>,
    ) {
        let Some(CallSlot::Resolving { outgoing, events }) = self.calls.remove(&call) else {
            return; // Hung up while resolving.
        };
        let targets = match result {
            Ok((targets, name)) => {
                self.remember_tls_names(&targets, &name);
                targets
            }
            Err(error) => {
                warn!(uri = %outgoing.uri, %error, "cannot find the SIP server for a call");
                let _ = events.send(CallEvent::Terminated(Ending {
                    code: Some(503),
                    reason: format!("503 Service Unavailable ({error})"),
                    cancelled: false,
                }));
                return;
            }
        };
        let target = targets[0];
        if let Some(id) = self.place_call(call, &outgoing, events, target, None) {
            self.endpoint.set_call_targets(id, targets);
        }
    }

    /// Sends the INVITE of an outgoing call toward `target` (the Request-URI is `contact` when
    /// given: a registered phone of the local domain).
    fn place_call(
        &mut self,
        call: CallHandle,
        outgoing: &OutgoingCall,
        events: mpsc::UnboundedSender<CallEvent>,
        target: Target,
        contact: Option<String>,
    ) -> Option<CallId> {
        let config = self.call_config(&outgoing.account, target);
        let request = Outgoing {
            uri: outgoing.uri.clone(),
            target: contact.clone(),
            // A phone of the local domain is reached directly, never through a proxy.
            route: if contact.is_some() {
                None
            } else {
                self.route()
            },
            call_id: outgoing.call_id.clone(),
            sdp: outgoing.sdp.clone(),
            headers: outgoing.headers.clone(),
        };
        let id = self
            .endpoint
            .invite(Instant::now().into_std(), config, request, target);
        self.calls.insert(call, CallSlot::Active(id));
        self.call_owners.insert(id, (call, events));
        Some(id)
    }

    /// What a call or request of `account` toward `target` says about us: the account, our
    /// address toward the target, fresh tags.
    pub(super) fn call_config(&self, account: &Account, target: Target) -> CallConfig {
        let random = || uuid::Uuid::new_v4().simple().to_string();
        CallConfig {
            user: account.user.clone(),
            domain: account.domain.clone(),
            display_name: account.display_name.clone(),
            credentials: account.credentials.clone(),
            transport: target.transport,
            local: self.local_address(target),
            contact_user: random()[..16].to_owned(),
            user_agent: account
                .user_agent
                .clone()
                .unwrap_or_else(|| self.config.endpoint.user_agent.clone()),
            tag: random()[..12].to_owned(),
            seed: random()[..8].to_owned(),
            timers: self.config.endpoint.timers,
            session_expires: self.config.endpoint.session_expires,
            min_se: self.config.endpoint.min_se,
        }
    }

    /// The user of a URI of the local domain.
    fn local_user(&self, uri: &crate::RequestUri) -> Option<String> {
        let domain = self.endpoint.local_domain()?;
        let host = uri.host()?.trim_end_matches('.');
        host.eq_ignore_ascii_case(domain)
            .then(|| uri.user().map(str::to_owned))
            .flatten()
    }

    /// A call to a phone registered at our local domain: to the binding asked for, or its
    /// latest Contact, directly.
    fn call_local(
        &mut self,
        call: CallHandle,
        outgoing: Box<OutgoingCall>,
        events: mpsc::UnboundedSender<CallEvent>,
        user: &str,
    ) {
        let now = Instant::now().into_std();
        let mut bindings = self.endpoint.local_bindings(now, user);
        let chosen = match &outgoing.binding {
            // Another gateway of the domain, which rings the user's places it holds.
            Some(wanted) if self.endpoint.is_peer(wanted.target.addr) => Some(wanted.clone()),
            // Another gateway's registration, read from the shared location just now.
            Some(wanted) if wanted.shared => Some(wanted.clone()),
            Some(wanted) => bindings.into_iter().find(|binding| {
                binding.contact == wanted.contact && binding.target == wanted.target
            }),
            None => bindings.pop(),
        };
        let Some(binding) = chosen else {
            // RFC 3261 section 21.4.18: a user of the domain with no device is unavailable
            // (480); a name the domain does not have is not found (404).
            let (code, reason) = if self.endpoint.local_user_known(user) {
                (
                    480,
                    format!("480 Temporarily Unavailable ({user} has no device registered)"),
                )
            } else {
                (404, format!("404 Not Found (no user {user})"))
            };
            tracing::info!(%user, code, "call to the local domain refused");
            let _ = events.send(CallEvent::Terminated(Ending {
                code: Some(code),
                reason,
                cancelled: false,
            }));
            return;
        };
        self.place_call(
            call,
            &outgoing,
            events,
            binding.target,
            Some(binding.contact),
        );
    }

    /// An INVITE for a user of the local domain: a call for the owner of `local_calls`, if there is one.
    pub(super) fn local_invite(
        &mut self,
        pending: &PendingInvite,
        source: Target,
        authenticated: bool,
        invite: &Message,
    ) {
        let now = Instant::now().into_std();
        let (user, uri_params) = match &invite.start {
            StartLine::Request { uri, .. } => (
                crate::uri::uri_user(uri.as_str()).map(str::to_owned),
                crate::uri::uri_parameters(uri.as_str()).to_owned(),
            ),
            StartLine::Response { .. } => (None, String::new()),
        };
        let (Some(user), Some(router), Some(domain)) = (
            user,
            self.config.local_calls.clone(),
            self.endpoint.local_domain().map(str::to_owned),
        ) else {
            return self.endpoint.refuse_local(
                now,
                pending,
                invite,
                480,
                "Temporarily Unavailable",
            );
        };
        let random = || uuid::Uuid::new_v4().simple().to_string();
        let config = CallConfig {
            user: user.clone(),
            domain,
            display_name: None,
            credentials: crate::auth::Credentials {
                username: user.clone(),
                secret: crate::auth::Secret::Password(String::new()),
            },
            transport: source.transport,
            local: self.local_address(source),
            contact_user: user.clone(),
            user_agent: self.config.endpoint.user_agent.clone(),
            tag: random()[..12].to_owned(),
            seed: random()[..8].to_owned(),
            timers: self.config.endpoint.timers,
            session_expires: self.config.endpoint.session_expires,
            min_se: self.config.endpoint.min_se,
        };
        let Some(id) = self.endpoint.accept_local(now, pending, invite, config) else {
            return;
        };
        let call = CallHandle(
            self.next_call
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        self.calls.insert(call, CallSlot::Active(id));
        let (events, receiver) = mpsc::unbounded_channel();
        self.call_owners.insert(id, (call, events));
        let _ = router.send(LocalEvent::Call(LocalIncoming {
            call,
            user,
            uri_params,
            source: source.addr,
            authenticated,
            invite: Box::new(IncomingCall::from_invite(invite)),
            events: receiver,
        }));
    }

    pub(super) fn call_command(&mut self, call: CallHandle, command: CallCommand) {
        let now = Instant::now().into_std();
        let id = match self.calls.get(&call) {
            Some(CallSlot::Active(id)) => *id,
            Some(CallSlot::Resolving { .. }) => {
                if let (
                    Some(CallSlot::Resolving { events, .. }),
                    CallCommand::Hangup | CallCommand::AnsweredElsewhere,
                ) = (self.calls.remove(&call), command)
                {
                    let _ = events.send(CallEvent::Terminated(Ending {
                        code: None,
                        reason: "local hangup".to_owned(),
                        cancelled: false,
                    }));
                }
                return;
            }
            None => return,
        };
        self.endpoint.with_call(now, id, |sip| match command {
            CallCommand::Hangup => sip.hangup(now),
            CallCommand::AnsweredElsewhere => sip.hangup_answered_elsewhere(now),
            CallCommand::Ring => sip.ring(now),
            CallCommand::EarlyMedia(sdp) => sip.early_media(now, sdp),
            CallCommand::Answer { sdp, headers } => sip.answer(now, sdp, &headers),
            CallCommand::Reject {
                code,
                reason,
                warning,
            } => sip.reject_with(code, &reason, warning.as_ref()),
            CallCommand::AnswerOffer(sdp) => sip.answer_offer(now, sdp),
            CallCommand::RefuseOffer {
                code,
                reason,
                warning,
            } => sip.refuse_offer(code, &reason, warning.as_ref()),
            CallCommand::Info { content_type, body } => {
                sip.info(&content_type, body);
            }
            CallCommand::Message { content_type, body } => {
                sip.message(&content_type, body);
            }
            CallCommand::Reoffer(sdp) => {
                sip.reoffer(now, sdp);
            }
        });
    }

    /// An INVITE reached a registration: its owner gets the call, or it is refused when the
    /// owner is gone.
    pub(super) fn incoming_call(
        &mut self,
        registration: RegistrationId,
        id: CallId,
        invite: &Message,
    ) {
        let Some((key, events)) = self.owners.get(&registration) else {
            let now = Instant::now().into_std();
            self.endpoint
                .with_call(now, id, |call| call.reject(480, "Temporarily Unavailable"));
            return;
        };
        let call = CallHandle(
            self.next_call
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        let incoming = IncomingCall::from_invite(invite);
        if let StartLine::Request { uri, .. } = &invite.start {
            debug!(%uri, from = %incoming.from_uri, call_id = %incoming.call_id, "incoming call");
        }
        let (call_events, receiver) = mpsc::unbounded_channel();
        let _ = events.send(SipEvent::Incoming {
            handle: key.handle,
            call,
            invite: Box::new(incoming),
            events: receiver,
        });
        self.calls.insert(call, CallSlot::Active(id));
        self.call_owners.insert(id, (call, call_events));
    }

    pub(super) fn call_event(&mut self, id: CallId, event: CallEvent) {
        if let CallEvent::Redirected { contacts, .. } = &event {
            self.redirect(id, contacts);
        }
        let terminated = matches!(event, CallEvent::Terminated(_));
        if let Some((_, events)) = self.call_owners.get(&id) {
            let _ = events.send(event);
        }
        if terminated && let Some((call, _)) = self.call_owners.remove(&id) {
            self.calls.remove(&call);
        }
    }

    /// A 3xx: followed to the first Contact the policy allows (`[sip] redirect_domains`), whose
    /// server is looked up first; otherwise the call ends with the Contact in its reason.
    fn redirect(&mut self, id: CallId, contacts: &[String]) {
        let allowed = |uri: &str| {
            crate::uri::uri_host(uri).is_some_and(|host| {
                self.config
                    .redirect_domains
                    .iter()
                    .any(|domain| domain == "*" || domain.eq_ignore_ascii_case(host))
            })
        };
        let Some(uri) = contacts.iter().find(|uri| allowed(uri)).cloned() else {
            let first = contacts.first().map_or("", String::as_str);
            warn!(
                contact = first,
                "a redirection to a host not in [sip] redirect_domains is not followed"
            );
            let why =
                format!("redirected to {first}, not followed: not among [sip] redirect_domains");
            let now = Instant::now().into_std();
            self.endpoint
                .with_call(now, id, |call| call.refuse_redirect(&why));
            return;
        };
        info!(%uri, "following a redirection");
        // Through the outbound proxy when there is one, else to the Contact's own server.
        let server = self
            .config
            .outbound_proxy
            .clone()
            .unwrap_or_else(|| uri.clone());
        let target = uri.clone();
        self.resolve(server, move |result| Input::RedirectResolved {
            id,
            uri: target,
            result,
        });
    }

    /// The server of a redirection's target was looked up: the INVITE goes there.
    pub(super) fn redirect_resolved(
        &mut self,
        id: CallId,
        uri: &str,
        result: Result<(Vec<Target>, String), String>,
    ) {
        let now = Instant::now().into_std();
        match result {
            Ok((targets, name)) => {
                self.remember_tls_names(&targets, &name);
                self.endpoint.redirect_call(now, id, uri, targets);
            }
            Err(error) => {
                let why = format!("redirected to {uri}, whose server was not found: {error}");
                self.endpoint
                    .with_call(now, id, |call| call.refuse_redirect(&why));
            }
        }
    }

    /// Hangs up every call (at shutdown).
    pub(super) fn hangup_all(&mut self) {
        let now = Instant::now().into_std();
        let ids: Vec<CallId> = self
            .calls
            .values()
            .filter_map(|slot| match slot {
                CallSlot::Active(id) => Some(*id),
                CallSlot::Resolving { .. } => None,
            })
            .collect();
        for id in ids {
            self.endpoint
                .with_call(now, id, |call| Call::hangup(call, now));
        }
        self.calls.clear();
        self.call_owners.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incoming_call_is_logged_without_its_sdp() {
        let call = IncomingCall {
            from_uri: "sip:bob@example.com".into(),
            display_name: None,
            call_id: "c".into(),
            sdp: Bytes::from_static(b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2VjcmV0\r\n"),
            headers: vec![("X-Secret".into(), "value".into())],
        };
        let shown = format!("{call:?}");
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("value"),
            "{shown}"
        );
        assert!(shown.contains("sip:bob@example.com"), "{shown}");
    }

    #[test]
    fn incoming_calls_show_the_caller() {
        let invite = Message::parse_datagram(
            b"INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\nFrom: \"Bob \\\"B\\\"\" <sip:bob@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: abc\r\nCSeq: 1 INVITE\r\nX-Custom: yes\r\nContent-Length: 0\r\n\r\n",
            65_535,
        )
        .expect("parses");
        let incoming = IncomingCall::from_invite(&invite);
        assert_eq!(incoming.from_uri, "sip:bob@example.com");
        assert_eq!(incoming.display_name.as_deref(), Some("Bob \"B\""));
        assert_eq!(incoming.call_id, "abc");
        assert!(
            incoming
                .headers
                .contains(&("X-Custom".into(), "yes".into()))
        );
    }
}
