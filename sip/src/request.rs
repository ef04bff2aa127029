//! An out-of-dialog request of an account (a MESSAGE, RFC 3428), sans-IO: the request, the
//! answer to its digest challenge, and its outcome. The endpoint runs its transactions and
//! fails it over to the domain's next server when one does not answer.

use std::collections::VecDeque;

use bytes::Bytes;
use ezk_sip_types::{Headers, Method, Name};

use crate::auth::DigestClient;
use crate::call::CallConfig;
use crate::message::{Message, RequestUri, StartLine};

/// A request to send.
#[derive(Debug, Clone)]
pub struct OutgoingRequest {
    /// The method (MESSAGE).
    pub method: Method,
    /// The To, and the Request-URI unless `contact` is given.
    pub uri: RequestUri,
    /// The Request-URI when it is not `uri`: a registered Contact of the recipient.
    pub contact: Option<RequestUri>,
    /// A Route header value (an outbound proxy), if any.
    pub route: Option<String>,
    /// The Call-ID.
    pub call_id: String,
    /// The body's Content-Type.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

/// What became of a request: its final status (a timeout is 408, a server that cannot be
/// reached 503) and the status line's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOutcome {
    /// The status code.
    pub code: u16,
    /// The reason phrase, or what happened when no response came.
    pub reason: String,
}

/// One request and its retries.
#[derive(Debug)]
pub(crate) struct Request {
    config: CallConfig,
    request: OutgoingRequest,
    auth: DigestClient,
    cseq: u32,
    counter: u64,
    /// The request last sent, to recognise its responses.
    sent: Option<Message>,
    out: VecDeque<Message>,
    outcome: Option<RequestOutcome>,
}

impl Request {
    /// A request: its first transmission is ready at once.
    pub(crate) fn new(config: CallConfig, request: OutgoingRequest) -> Request {
        let auth = DigestClient::new(config.credentials.clone());
        let mut this = Request {
            config,
            request,
            auth,
            cseq: 0,
            counter: 0,
            sent: None,
            out: VecDeque::new(),
            outcome: None,
        };
        this.send();
        this
    }

    /// The next request to send, in a new client transaction.
    pub(crate) fn poll_request(&mut self) -> Option<Message> {
        self.out.pop_front()
    }

    /// The outcome, once there is one.
    pub(crate) fn outcome(&self) -> Option<&RequestOutcome> {
        self.outcome.as_ref()
    }

    /// Whether `response` answers the request last sent (not an earlier one we gave up on).
    pub(crate) fn answers(&self, response: &Message) -> bool {
        let Some(sent) = &self.sent else {
            return false;
        };
        response.cseq().ok().map(|cseq| cseq.cseq) == sent.cseq().ok().map(|cseq| cseq.cseq)
    }

    /// A final response: a challenge is answered once (and once more for a stale nonce);
    /// anything else is the outcome.
    pub(crate) fn handle_final(&mut self, response: &Message) {
        if self.outcome.is_some() || !self.answers(response) {
            return;
        }
        let code = response.code().unwrap_or(500);
        if matches!(code, 401 | 407) && self.auth.challenge(response).is_ok() {
            self.send();
            return;
        }
        let reason = match &response.start {
            StartLine::Response { reason, .. } => reason.clone(),
            StartLine::Request { .. } => String::new(),
        };
        self.outcome = Some(RequestOutcome { code, reason });
    }

    /// No final response: the outcome `code` (408 for a timeout, 503 for a server that cannot
    /// be reached), with what happened.
    pub(crate) fn fail(&mut self, code: u16, reason: &str) {
        if self.outcome.is_none() {
            self.outcome = Some(RequestOutcome {
                code,
                reason: reason.to_owned(),
            });
        }
    }

    /// The same request again, for another server of the domain (RFC 3263 section 4.3), in a
    /// new transaction. False once there is an outcome.
    pub(crate) fn failover(&mut self) -> bool {
        if self.outcome.is_some() {
            return false;
        }
        self.send();
        true
    }

    fn send(&mut self) {
        self.cseq += 1;
        self.counter += 1;
        let method = self.request.method.clone();
        let branch = format!("z9hG4bK{}r{:x}", self.config.seed, self.counter);
        let via = format!(
            "SIP/2.0/{} {};rport;branch={branch}",
            self.config.transport.via_name(),
            self.config.local
        );
        let mut headers = first_headers(
            &self.config,
            via,
            self.request.route.as_deref(),
            &self.request.uri,
            &self.request.call_id,
            &format!("{} {method}", self.cseq),
        );
        headers.insert(Name::USER_AGENT, self.config.user_agent.clone());
        for (name, value) in &self.request.headers {
            headers.insert(Name::from(name.clone()), value.clone());
        }
        if !self.request.body.is_empty() {
            headers.insert(Name::CONTENT_TYPE, self.request.content_type.clone());
        }
        let cnonce = format!("{}c{:x}", self.config.seed, self.counter);
        let target = self.request.contact.as_ref().unwrap_or(&self.request.uri);
        if let Some((name, value)) = self.auth.authorize(
            &method.to_string(),
            target.as_str(),
            &self.request.body,
            &cnonce,
        ) {
            headers.insert(name, value);
        }
        let message = Message {
            start: StartLine::Request {
                method,
                uri: target.clone(),
            },
            headers,
            body: self.request.body.clone(),
        };
        self.sent = Some(message.clone());
        self.out.push_back(message);
    }
}

/// The headers that open an account's request outside a dialog: Via, Max-Forwards, Route (an
/// outbound proxy), From (the account, our tag), To, Call-ID and CSeq.
pub(crate) fn first_headers(
    config: &CallConfig,
    via: String,
    route: Option<&str>,
    to: &RequestUri,
    call_id: &str,
    cseq: &str,
) -> Headers {
    let mut headers = Headers::with_capacity(14);
    headers.insert(Name::VIA, via);
    headers.insert(Name::MAX_FORWARDS, "70");
    if let Some(route) = route {
        headers.insert(Name::ROUTE, route.to_owned());
    }
    let aor = format!("sip:{}@{}", config.user, config.domain);
    let from = crate::uri::name_addr(config.display_name.as_deref(), &aor);
    headers.insert(Name::FROM, format!("{from};tag={}", config.tag));
    headers.insert(Name::TO, format!("<{to}>"));
    headers.insert(Name::CALL_ID, call_id.to_owned());
    headers.insert(Name::CSEQ, cseq.to_owned());
    headers
}

#[cfg(test)]
mod tests;
