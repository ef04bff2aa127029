//! Out-of-dialog requests the owner answers (MESSAGE, SUBSCRIBE): the endpoint holds each in
//! its server transaction and the driver hands it to the owner of the registration it reached,
//! or to the local domain's owner, who answers it with [`SipHandle::answer`]. Without an owner
//! the driver answers what the endpoint would (405, with our Allow).

use tokio::time::Instant;
use tracing::debug;

use super::{Command, Driver, LocalEvent, SipEvent, SipHandle};
use crate::endpoint::{PendingRequest, RegistrationId};
use crate::message::Message;

/// Names a request waiting for its owner's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHandle(pub(super) PendingRequest);

/// An answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub code: u16,
    /// The reason phrase.
    pub reason: String,
    /// Headers to add (a 405 gets our Allow by itself).
    pub headers: Vec<(String, String)>,
}

impl SipHandle {
    /// Answers a request the driver handed over ([`SipEvent::Request`] or
    /// [`LocalEvent::Request`]); once only, and not after its deadline (then it got 500).
    pub fn answer(&self, request: RequestHandle, answer: Answer) {
        let _ = self.commands.send(Command::Answer { request, answer });
    }
}

impl Driver {
    /// Hands a request to its owner, or answers it as the endpoint would without one.
    pub(super) fn forward_request(
        &mut self,
        pending: PendingRequest,
        registration: Option<RegistrationId>,
        source: std::net::SocketAddr,
        authenticated: bool,
        request: Box<Message>,
    ) {
        let handle = RequestHandle(pending.clone());
        let delivered = match registration {
            Some(id) => self.owners.get(&id).is_some_and(|(key, events)| {
                events
                    .send(SipEvent::Request {
                        handle: key.handle,
                        request: handle,
                        message: request,
                    })
                    .is_ok()
            }),
            None => self.config.local_calls.as_ref().is_some_and(|owner| {
                owner
                    .send(LocalEvent::Request {
                        request: handle,
                        source,
                        authenticated,
                        message: request,
                    })
                    .is_ok()
            }),
        };
        if !delivered {
            debug!("a request with no owner to answer it: 405");
            self.endpoint.answer_request(
                Instant::now().into_std(),
                &pending,
                405,
                "Method Not Allowed",
                &[],
            );
        }
    }

    /// The owner's answer to a request.
    pub(super) fn answer_request(&mut self, request: RequestHandle, answer: Answer) {
        self.endpoint.answer_request(
            Instant::now().into_std(),
            &request.0,
            answer.code,
            &answer.reason,
            &answer.headers,
        );
    }
}
