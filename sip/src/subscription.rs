//! Event subscriptions (RFC 6665), sans-IO, as presence (RFC 3856) uses them, in both roles.
//!
//! A [`Subscriber`] is ours: a SUBSCRIBE for an account (digest-authenticated as its other
//! requests are), the dialog its 2xx or its first NOTIFY creates (a NOTIFY may overtake the
//! 2xx), refreshes and the unsubscribe in that dialog, and each NOTIFY's state and body. A
//! [`Notifier`] is the far end's subscription to us: the dialog its SUBSCRIBE created, and the
//! NOTIFYs we send in it. Neither keeps time: the owner decides when to refresh and when a
//! subscription has run out, as it knows why it subscribed.

use std::collections::VecDeque;

use bytes::Bytes;
use ezk_sip_types::{Method, Name};

use crate::auth::DigestClient;
use crate::call::CallConfig;
use crate::dialog::Dialog;
use crate::message::{Message, RequestUri, StartLine};

/// A subscription to ask for.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    /// Whose state (To and Request-URI).
    pub uri: RequestUri,
    /// A Route header value (an outbound proxy), if any.
    pub route: Option<String>,
    /// The Call-ID.
    pub call_id: String,
    /// The event package (`presence`).
    pub event: String,
    /// The Accept header (`application/pidf+xml`).
    pub accept: String,
    /// The duration asked for, in seconds.
    pub expires: u32,
    /// Whether a resource list may answer (RFC 4662: `Supported: eventlist`, and NOTIFYs that
    /// `Require` it are taken).
    pub eventlist: bool,
}

/// What happens to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionEvent {
    /// Ours: a SUBSCRIBE (the first or a refresh) was accepted, for `expires` seconds.
    Accepted {
        /// The duration granted.
        expires: u32,
    },
    /// Ours: a NOTIFY arrived (and was answered 200).
    Notify {
        /// The Subscription-State's state (`active`, `pending`, `terminated`).
        state: String,
        /// Its `reason` parameter, if any.
        reason: Option<String>,
        /// The body's Content-Type (empty without a body).
        content_type: String,
        /// The body.
        body: Bytes,
        /// It required `eventlist`: a resource list's NOTIFY (RFC 4662 section 5.4).
        eventlist: bool,
    },
    /// The far end's: it refreshed the subscription (answered 2xx by the endpoint) for
    /// `expires` seconds; 0 ends it. The owner sends a NOTIFY now (RFC 6665 section 4.2.1.2).
    Refreshed {
        /// The duration granted.
        expires: u32,
    },
    /// It is over: a SUBSCRIBE refused or unanswered (`code`, with the Retry-After it came
    /// with), a NOTIFY that said `terminated` (`code` 0), or a NOTIFY of ours that found no
    /// subscription (`code` of its answer). Nothing comes after it.
    Ended {
        /// The status that ended it, or 0.
        code: u16,
        /// The reason phrase, or the Subscription-State's reason.
        reason: String,
        /// Seconds to wait before subscribing again, when the far end said.
        retry_after: Option<u32>,
    },
}

/// Our subscription to someone's state.
#[derive(Debug)]
pub(crate) struct Subscriber {
    config: CallConfig,
    request: SubscribeRequest,
    auth: DigestClient,
    dialog: Option<Dialog>,
    cseq: u32,
    counter: u64,
    /// The SUBSCRIBE last sent, to recognise its answer and to send again once challenged.
    sent: Option<Message>,
    /// The duration the SUBSCRIBE last sent asked for.
    asked: u32,
    out: VecDeque<Message>,
    events: VecDeque<SubscriptionEvent>,
    ended: bool,
}

impl Subscriber {
    /// A subscription: its SUBSCRIBE is ready at once.
    pub(crate) fn new(config: CallConfig, request: SubscribeRequest) -> Subscriber {
        let auth = DigestClient::new(config.credentials.clone());
        let asked = request.expires;
        let mut this = Subscriber {
            config,
            request,
            auth,
            dialog: None,
            cseq: 0,
            counter: 0,
            sent: None,
            asked,
            out: VecDeque::new(),
            events: VecDeque::new(),
            ended: false,
        };
        this.send(asked);
        this
    }

    /// Our tag and the Call-ID: what the far end's in-dialog requests carry.
    pub(crate) fn dialog_key(&self) -> (String, String) {
        (self.request.call_id.clone(), self.config.tag.clone())
    }

    /// The next request to send, in a new client transaction.
    pub(crate) fn poll_request(&mut self) -> Option<Message> {
        self.out.pop_front()
    }

    /// The next event.
    pub(crate) fn poll_event(&mut self) -> Option<SubscriptionEvent> {
        self.events.pop_front()
    }

    /// Whether it ended (its last event was [`SubscriptionEvent::Ended`]).
    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }

    /// Where in-dialog requests go first: the first route, or the remote target (`None` before
    /// the dialog exists).
    pub(crate) fn next_hop(&self) -> Option<&str> {
        self.dialog.as_ref().map(Dialog::next_hop)
    }

    /// Refreshes the subscription for `expires` seconds (0 ends it, RFC 6665 section 4.1.2.3).
    /// Before the dialog exists the SUBSCRIBE is sent again as it was.
    pub(crate) fn refresh(&mut self, expires: u32) {
        if !self.ended {
            self.send(expires);
        }
    }

    /// The SUBSCRIBE again as it was, for the domain's next server (RFC 3263 section 4.3).
    pub(crate) fn refresh_same(&mut self) {
        if !self.ended {
            self.send(self.asked);
        }
    }

    /// A final response to our SUBSCRIBE: a challenge is answered (once, and once more for a
    /// stale nonce); a 2xx creates the dialog (or refreshes its target); anything else ends it.
    pub(crate) fn handle_final(&mut self, response: &Message) {
        let Some(sent) = &self.sent else {
            return;
        };
        if self.ended
            || response.cseq().ok().map(|cseq| cseq.cseq) != sent.cseq().ok().map(|cseq| cseq.cseq)
        {
            return;
        }
        let code = response.code().unwrap_or(500);
        if matches!(code, 401 | 407) && self.auth.challenge(response).is_ok() {
            self.send(self.asked);
            return;
        }
        if (200..300).contains(&code) {
            self.auth.succeeded();
            match &mut self.dialog {
                Some(dialog) => dialog.refresh_target(response),
                None => self.dialog = Dialog::from_response(sent, response, self.cseq),
            }
            if self.asked == 0 {
                return self.end(0, "unsubscribed", None);
            }
            let expires = response
                .header(&Name::EXPIRES)
                .and_then(|value| value.trim().parse().ok())
                .unwrap_or(self.asked)
                .min(self.asked);
            self.events
                .push_back(SubscriptionEvent::Accepted { expires });
            return;
        }
        let reason = match &response.start {
            StartLine::Response { reason, .. } => reason.clone(),
            StartLine::Request { .. } => String::new(),
        };
        let retry_after = response
            .header(&Name::RETRY_AFTER)
            .and_then(|value| value.split([';', '(', ' ']).next()?.trim().parse().ok());
        self.end(code, &reason, retry_after);
    }

    /// No final response: `code` (408 for a timeout, 503 for a server that cannot be reached).
    pub(crate) fn fail(&mut self, code: u16, reason: &str) {
        if !self.ended {
            self.end(code, reason, None);
        }
    }

    /// A NOTIFY in the subscription's dialog: the status to answer it with. The first one may
    /// create the dialog (RFC 6665 section 4.1.2.4).
    pub(crate) fn handle_notify(&mut self, notify: &Message) -> (u16, &'static str) {
        if self.ended {
            return (481, "Subscription Does Not Exist");
        }
        let event = notify
            .header(&Name::EVENT)
            .map(|value| value.split(';').next().unwrap_or_default().trim());
        if !event.is_some_and(|event| event.eq_ignore_ascii_case(&self.request.event)) {
            return (489, "Bad Event");
        }
        // RFC 3261 section 8.2.2.3; a list's NOTIFYs require `eventlist` (RFC 4662 section 5.4).
        let required = crate::call::tokens(notify, &Name::REQUIRE);
        let unknown = required
            .iter()
            .any(|tag| !(self.request.eventlist && tag == "eventlist"));
        if unknown {
            return (420, "Bad Extension");
        }
        let Some(state) = notify.header(&Name::SUBSCRIPTION_STATE) else {
            return (400, "Bad Request (no Subscription-State)");
        };
        let cseq = notify.cseq().map(|cseq| cseq.cseq).unwrap_or_default();
        match &mut self.dialog {
            Some(dialog) => {
                if dialog.remote_seq != 0 && cseq <= dialog.remote_seq {
                    return (500, "Server Internal Error (CSeq out of order)");
                }
                dialog.remote_seq = cseq;
                dialog.refresh_target(notify);
            }
            None => match Dialog::from_request(notify, &self.config.tag, self.cseq) {
                Some(dialog) => self.dialog = Some(dialog),
                None => return (400, "Bad Request (no Contact)"),
            },
        }
        let (name, params) = state.split_once(';').unwrap_or((state, ""));
        let name = name.trim().to_ascii_lowercase();
        let param = |wanted: &str| {
            params.split(';').find_map(|item| {
                let (key, value) = item.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case(wanted)
                    .then(|| value.trim().to_owned())
            })
        };
        let reason = param("reason");
        let retry_after = param("retry-after").and_then(|value| value.parse().ok());
        self.events.push_back(SubscriptionEvent::Notify {
            state: name.clone(),
            reason: reason.clone(),
            content_type: notify
                .header(&Name::CONTENT_TYPE)
                .unwrap_or_default()
                .trim()
                .to_owned(),
            body: notify.body.clone(),
            eventlist: !required.is_empty(),
        });
        if name == "terminated" {
            let reason = reason.unwrap_or_else(|| "terminated".to_owned());
            self.end(0, &reason, retry_after);
        }
        (200, "OK")
    }

    fn end(&mut self, code: u16, reason: &str, retry_after: Option<u32>) {
        self.ended = true;
        self.events.push_back(SubscriptionEvent::Ended {
            code,
            reason: reason.to_owned(),
            retry_after,
        });
    }

    fn send(&mut self, expires: u32) {
        self.cseq += 1;
        self.counter += 1;
        self.asked = expires;
        let branch = format!("z9hG4bK{}s{:x}", self.config.seed, self.counter);
        let via = format!(
            "SIP/2.0/{} {};rport;branch={branch}",
            self.config.transport.via_name(),
            self.config.local
        );
        let built = match &self.dialog {
            Some(dialog) => dialog.request(Method::SUBSCRIBE, self.cseq, via),
            None => Some(self.first_request(via)),
        };
        let Some(mut message) = built else {
            return self.end(500, "the subscription's dialog has no target", None);
        };
        let headers = &mut message.headers;
        headers.insert(
            Name::CONTACT,
            format!(
                "<sip:{}@{};transport={}>",
                self.config.contact_user,
                self.config.local,
                self.config.transport.param()
            ),
        );
        headers.insert(Name::EVENT, self.request.event.clone());
        headers.insert(Name::ACCEPT, self.request.accept.clone());
        if self.request.eventlist {
            headers.insert(Name::SUPPORTED, "eventlist");
        }
        headers.insert(Name::EXPIRES, expires.to_string());
        headers.insert(Name::USER_AGENT, self.config.user_agent.clone());
        let cnonce = format!("{}c{:x}", self.config.seed, self.counter);
        let uri = match &message.start {
            StartLine::Request { uri, .. } => uri.as_str().to_owned(),
            StartLine::Response { .. } => String::new(),
        };
        if let Some((name, value)) = self.auth.authorize("SUBSCRIBE", &uri, &[], &cnonce) {
            message.headers.insert(name, value);
        }
        self.sent = Some(message.clone());
        self.out.push_back(message);
    }

    /// The out-of-dialog SUBSCRIBE (without Contact, Event, Expires and authorization).
    fn first_request(&self, via: String) -> Message {
        let headers = crate::request::first_headers(
            &self.config,
            via,
            self.request.route.as_deref(),
            &self.request.uri,
            &self.request.call_id,
            &format!("{} SUBSCRIBE", self.cseq),
        );
        Message {
            start: StartLine::Request {
                method: Method::SUBSCRIBE,
                uri: self.request.uri.clone(),
            },
            headers,
            body: Bytes::new(),
        }
    }
}

/// How our NOTIFYs are written.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// The transport name of our Via and Contact.
    pub transport: crate::transport::Transport,
    /// Our `host:port`.
    pub local: String,
    /// The user part of our Contact.
    pub contact_user: String,
    /// The User-Agent header.
    pub user_agent: String,
    /// Random text that branches are made from.
    pub seed: String,
}

/// A subscription of the far end to us.
#[derive(Debug)]
pub(crate) struct Notifier {
    config: NotifierConfig,
    dialog: Dialog,
    event: String,
    /// The longest refresh granted: what the owner granted the SUBSCRIBE.
    max_expires: u32,
    counter: u64,
    /// The NOTIFY last sent, to recognise its answer.
    sent: Option<u32>,
    out: VecDeque<Message>,
    events: VecDeque<SubscriptionEvent>,
    ended: bool,
}

impl Notifier {
    /// The subscription a SUBSCRIBE asks for, our tag `tag` (the one its 2xx carries);
    /// refreshes get at most `max_expires` seconds.
    pub(crate) fn new(
        config: NotifierConfig,
        subscribe: &Message,
        tag: &str,
        max_expires: u32,
    ) -> Option<Notifier> {
        let event = subscribe.header(&Name::EVENT)?.split(';').next()?.trim();
        Some(Notifier {
            dialog: Dialog::from_request(subscribe, tag, 0)?,
            event: event.to_owned(),
            max_expires,
            config,
            counter: 0,
            sent: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            ended: false,
        })
    }

    /// The Call-ID and our tag.
    pub(crate) fn dialog_key(&self) -> (String, String) {
        (self.dialog.call_id.clone(), self.dialog.local_tag.clone())
    }

    pub(crate) fn poll_request(&mut self) -> Option<Message> {
        self.out.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<SubscriptionEvent> {
        self.events.pop_front()
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended
    }

    /// A refresh (or the end, Expires 0) in the dialog: the status to answer it with, and
    /// the duration granted (its Expires, or the longest granted when it names none).
    pub(crate) fn handle_subscribe(&mut self, subscribe: &Message) -> (u16, u32) {
        let expires = subscribe
            .header(&Name::EXPIRES)
            .and_then(|value| value.trim().parse::<u32>().ok())
            .unwrap_or(self.max_expires)
            .min(self.max_expires);
        (self.refresh(subscribe, expires), expires)
    }

    fn refresh(&mut self, subscribe: &Message, expires: u32) -> u16 {
        if self.ended {
            return 481;
        }
        let cseq = subscribe.cseq().map(|cseq| cseq.cseq).unwrap_or_default();
        if cseq <= self.dialog.remote_seq {
            return 500;
        }
        self.dialog.remote_seq = cseq;
        self.dialog.refresh_target(subscribe);
        self.events
            .push_back(SubscriptionEvent::Refreshed { expires });
        200
    }

    /// Sends a NOTIFY: `state` is the Subscription-State value (`active;expires=590`,
    /// `terminated;reason=timeout`), with a body of `content_type` unless it is empty. A
    /// `terminated` one ends the subscription.
    pub(crate) fn notify(&mut self, state: &str, content_type: &str, body: Bytes) {
        if self.ended {
            return;
        }
        self.counter += 1;
        self.dialog.local_seq += 1;
        let branch = format!("z9hG4bK{}n{:x}", self.config.seed, self.counter);
        let via = format!(
            "SIP/2.0/{} {};rport;branch={branch}",
            self.config.transport.via_name(),
            self.config.local
        );
        let Some(mut message) = self
            .dialog
            .request(Method::NOTIFY, self.dialog.local_seq, via)
        else {
            return;
        };
        let headers = &mut message.headers;
        headers.insert(
            Name::CONTACT,
            format!(
                "<sip:{}@{};transport={}>",
                self.config.contact_user,
                self.config.local,
                self.config.transport.param()
            ),
        );
        headers.insert(Name::EVENT, self.event.clone());
        headers.insert(Name::SUBSCRIPTION_STATE, state.to_owned());
        headers.insert(Name::USER_AGENT, self.config.user_agent.clone());
        if !body.is_empty() {
            headers.insert(Name::CONTENT_TYPE, content_type.to_owned());
        }
        message.body = body;
        self.sent = Some(self.dialog.local_seq);
        self.out.push_back(message);
        if state.trim().to_ascii_lowercase().starts_with("terminated") {
            self.fail(0, "terminated");
        }
    }

    /// A final response to one of our NOTIFYs: a 481 (or any other failure of the last one
    /// sent) means the subscriber is gone.
    pub(crate) fn handle_final(&mut self, response: &Message) {
        let code = response.code().unwrap_or(500);
        let cseq = response.cseq().ok().map(|cseq| cseq.cseq);
        if (200..300).contains(&code) || cseq != self.sent {
            return;
        }
        let reason = match &response.start {
            StartLine::Response { reason, .. } => reason.clone(),
            StartLine::Request { .. } => String::new(),
        };
        self.fail(code, &reason);
    }

    /// No answer to a NOTIFY: the subscriber is gone.
    pub(crate) fn fail(&mut self, code: u16, reason: &str) {
        if !self.ended {
            self.ended = true;
            self.events.push_back(SubscriptionEvent::Ended {
                code,
                reason: reason.to_owned(),
                retry_after: None,
            });
        }
    }
}

#[cfg(test)]
mod tests;
