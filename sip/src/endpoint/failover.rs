//! Failover between the servers of a domain (RFC 3263 section 4.3), for registrations and
//! calls alike.

use super::Target;
use crate::transaction::Event;

/// The servers a registration or a call may fail over to (RFC 3263 section 4.3): the next is
/// tried when one times out, fails at the transport, or answers 503.
#[derive(Debug, Clone, Default)]
pub(crate) struct Failover {
    targets: Vec<Target>,
    /// The position of the one in use.
    current: usize,
    /// How many servers this attempt has moved past: each is tried once per attempt, from
    /// the one in use round to the one before it.
    tried: usize,
}

impl Failover {
    /// Servers to try, the first in use.
    pub(crate) fn new(targets: Vec<Target>) -> Failover {
        Failover {
            targets,
            ..Failover::default()
        }
    }

    /// Whether a server is left to try in this attempt.
    pub(crate) fn targets_left(&self) -> bool {
        self.tried + 1 < self.targets.len()
    }

    /// The next server of this attempt, if any is left.
    pub(crate) fn next(&mut self) -> Option<Target> {
        if !self.targets_left() {
            return None;
        }
        self.tried += 1;
        self.current = (self.current + 1) % self.targets.len();
        self.targets.get(self.current).copied()
    }

    /// A server answered: the next attempt starts from it.
    pub(crate) fn settled(&mut self) {
        self.tried = 0;
    }

    /// Every server failed: the next attempt starts from the best.
    pub(crate) fn first(&mut self) -> Option<Target> {
        self.current = 0;
        self.tried = 0;
        self.targets.first().copied()
    }

    /// New targets (a new look-up): the one in use stays if it is still among them, else the
    /// first of the new ones is used from the next request on.
    pub(crate) fn replace(&mut self, targets: Vec<Target>, in_use: Target) -> Option<Target> {
        self.targets = targets;
        self.tried = 0;
        match self.targets.iter().position(|target| *target == in_use) {
            Some(position) => {
                self.current = position;
                None
            }
            None => self.first(),
        }
    }
}

/// Whether a transaction's outcome is one to fail over on.
pub(crate) fn server_failed(outcome: &Event) -> bool {
    match outcome {
        Event::Timeout | Event::TransportError => true,
        Event::Final(response) => response.code() == Some(503),
        Event::Provisional(_) | Event::Ack(_) => false,
    }
}
