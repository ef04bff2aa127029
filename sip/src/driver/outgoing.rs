//! The driver's side of the requests an owner sends for an account (MESSAGE, RFC 3428): the
//! server is looked up (the outbound proxy, or the account's domain), the endpoint sends the
//! request and answers its challenge, and the outcome goes back on the channel the request
//! came with.

use bytes::Bytes;
use ezk_sip_types::Method;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Account, Command, Driver, Input, SipHandle};
use crate::endpoint::{RequestId, Target};
use crate::request::{OutgoingRequest, RequestOutcome};
use crate::transport::Transport;

pub use crate::transport::MAX_UDP_REQUEST;

/// A request to send for an account.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// The account it is from (From, credentials).
    pub account: Account,
    /// Whom it is for (To, Request-URI).
    pub uri: crate::RequestUri,
    /// The body's Content-Type.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
    /// The Call-ID.
    pub call_id: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// For a phone of the local domain: the binding to send it to, directly (its Contact as
    /// the Request-URI, where its REGISTER came from), rather than through a server.
    pub binding: Option<crate::Binding>,
}

/// Where a request stands in the driver.
#[derive(Debug)]
pub(super) struct PendingMessage {
    message: Box<OutgoingMessage>,
    reply: oneshot::Sender<RequestOutcome>,
}

impl SipHandle {
    /// Sends a MESSAGE for an account; its outcome (the final status, 408 when no answer
    /// came, 503 when no server could be reached) comes on the returned channel.
    pub fn send_message(&self, message: OutgoingMessage) -> oneshot::Receiver<RequestOutcome> {
        let (reply, outcome) = oneshot::channel();
        let _ = self.commands.send(Command::Message {
            message: Box::new(message),
            reply,
        });
        outcome
    }
}

impl Driver {
    /// Looks the request's server up.
    pub(super) fn start_message(
        &mut self,
        message: Box<OutgoingMessage>,
        reply: oneshot::Sender<RequestOutcome>,
    ) {
        if let Some(binding) = message.binding.clone() {
            return self.send_message_to(message, reply, vec![binding.target], None);
        }
        let server = self.server_of(&message.account);
        self.next_message += 1;
        let key = self.next_message;
        self.messages.insert(key, PendingMessage { message, reply });
        self.resolve(server, move |result| Input::MessageResolved { key, result });
    }

    /// The request's server was looked up: the endpoint sends it.
    pub(super) fn message_resolved(
        &mut self,
        key: u64,
        result: Result<(Vec<Target>, String), String>,
    ) {
        let Some(PendingMessage { message, reply }) = self.messages.remove(&key) else {
            return;
        };
        let targets = match self.looked_up(result, "MESSAGE", &message.uri) {
            Ok(targets) => targets,
            Err(reason) => {
                let _ = reply.send(RequestOutcome { code: 503, reason });
                return;
            }
        };
        let route = self.route();
        self.send_message_to(message, reply, targets, route);
    }

    /// Sends the request to `targets` (failing over between them), through `route`.
    fn send_message_to(
        &mut self,
        message: Box<OutgoingMessage>,
        reply: oneshot::Sender<RequestOutcome>,
        mut targets: Vec<Target>,
        route: Option<String>,
    ) {
        // The headers add a few hundred bytes to the body.
        if message.body.len() + 500 > MAX_UDP_REQUEST {
            for target in &mut targets {
                if target.transport == Transport::Udp {
                    target.transport = Transport::Tcp;
                }
            }
            targets.dedup();
        }
        let Some(first) = targets.first().copied() else {
            let _ = reply.send(RequestOutcome {
                code: 503,
                reason: "Service Unavailable (no server)".to_owned(),
            });
            return;
        };
        let config = self.call_config(&message.account, first);
        let request = OutgoingRequest {
            method: Method::MESSAGE,
            uri: message.uri.clone(),
            contact: message
                .binding
                .as_ref()
                .and_then(|binding| crate::RequestUri::parse(&binding.contact)),
            route,
            call_id: message.call_id.clone(),
            content_type: message.content_type.clone(),
            body: message.body.clone(),
            headers: message.headers.clone(),
        };
        let id = self
            .endpoint
            .send_request(Instant::now().into_std(), config, request, targets);
        self.message_owners.insert(id, reply);
    }

    /// A request's outcome, for its owner.
    pub(super) fn message_done(&mut self, id: RequestId, outcome: RequestOutcome) {
        if let Some(reply) = self.message_owners.remove(&id) {
            let _ = reply.send(outcome);
        }
    }
}
