//! The endpoint's side of the out-of-dialog requests it sends for an account (MESSAGE): one
//! transaction at a time, the answer to a challenge in a new one, failover to the domain's
//! next server (RFC 3263), and the outcome as an event.

use std::time::Instant;

use super::{Endpoint, EndpointEvent, Failover, Owner, Target, server_failed};
use crate::call::CallConfig;
use crate::request::{OutgoingRequest, Request};
use crate::transaction::Event;

/// Identifies a request the endpoint sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A request and where it goes.
#[derive(Debug)]
pub(super) struct OutgoingEntry {
    request: Request,
    target: Target,
    failover: Failover,
}

impl Endpoint {
    /// Sends `request` as the account `config` describes, to the first of `targets` (the
    /// domain's servers, best first; none means it fails at once with 503). Its outcome comes
    /// as [`EndpointEvent::RequestDone`].
    pub fn send_request(
        &mut self,
        now: Instant,
        config: CallConfig,
        request: OutgoingRequest,
        targets: Vec<Target>,
    ) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        let mut request = Request::new(config, request);
        let Some(target) = targets.first().copied() else {
            request.fail(503, "Service Unavailable (no server for the domain)");
            self.events.push_back(EndpointEvent::RequestDone {
                id,
                outcome: request.outcome().cloned().unwrap_or_else(|| {
                    crate::request::RequestOutcome {
                        code: 503,
                        reason: String::new(),
                    }
                }),
            });
            return id;
        };
        self.outgoing.insert(
            id,
            OutgoingEntry {
                request,
                target,
                failover: Failover::new(targets),
            },
        );
        self.pump_outgoing(now, id);
        id
    }

    /// Sends what a request has to send, or reports its outcome.
    fn pump_outgoing(&mut self, now: Instant, id: RequestId) {
        let Some(entry) = self.outgoing.get_mut(&id) else {
            return;
        };
        if let Some(outcome) = entry.request.outcome().cloned() {
            self.outgoing.remove(&id);
            self.events
                .push_back(EndpointEvent::RequestDone { id, outcome });
            return;
        }
        let target = entry.target;
        let requests: Vec<_> = std::iter::from_fn(|| entry.request.poll_request()).collect();
        for request in requests {
            self.start_non_invite(now, &request, target, Owner::Request(id));
        }
    }

    /// What a request's transaction ended with.
    pub(super) fn outgoing_outcomes(&mut self, now: Instant, id: RequestId, outcomes: Vec<Event>) {
        for outcome in outcomes {
            let Some(entry) = self.outgoing.get_mut(&id) else {
                return;
            };
            if server_failed(&outcome)
                && entry.failover.targets_left()
                && entry.request.failover()
                && let Some(next) = entry.failover.next()
            {
                entry.target = next;
                continue;
            }
            match outcome {
                Event::Final(response) => entry.request.handle_final(&response),
                Event::Timeout => entry.request.fail(408, "Request Timeout (no answer)"),
                Event::TransportError => {
                    entry
                        .request
                        .fail(503, "Service Unavailable (the server cannot be reached)");
                }
                Event::Provisional(_) | Event::Ack(_) => {}
            }
        }
        self.pump_outgoing(now, id);
    }

    /// The number of requests waiting for their outcome.
    pub fn outgoing_requests(&self) -> usize {
        self.outgoing.len()
    }
}
