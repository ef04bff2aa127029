//! The endpoint's transactions: a client transaction of either kind with its target, owner
//! and request, and a server transaction with the call it belongs to.

use std::time::Instant;

use bytes::Bytes;
use ezk_sip_types::Method;

use super::{CallId, Owner, Target};
use crate::message::Message;
use crate::transaction::{Event, InviteClient, InviteServer, NonInviteClient, NonInviteServer};

#[derive(Debug)]
pub(super) enum ClientKind {
    NonInvite(NonInviteClient),
    Invite(InviteClient),
}

impl ClientKind {
    pub(super) fn poll_transmit(&mut self) -> Option<Bytes> {
        match self {
            ClientKind::NonInvite(transaction) => transaction.poll_transmit(),
            ClientKind::Invite(transaction) => transaction.poll_transmit(),
        }
    }

    pub(super) fn poll_event(&mut self) -> Option<Event> {
        match self {
            ClientKind::NonInvite(transaction) => transaction.poll_event(),
            ClientKind::Invite(transaction) => transaction.poll_event(),
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ClientKind::NonInvite(transaction) => transaction.poll_timeout(),
            ClientKind::Invite(transaction) => transaction.poll_timeout(),
        }
    }

    pub(super) fn state(&self) -> crate::transaction::State {
        match self {
            ClientKind::NonInvite(transaction) => transaction.state(),
            ClientKind::Invite(transaction) => transaction.state(),
        }
    }

    pub(super) fn handle_response(&mut self, now: Instant, response: Message) {
        match self {
            ClientKind::NonInvite(transaction) => transaction.handle_response(now, response),
            ClientKind::Invite(transaction) => transaction.handle_response(now, response),
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        match self {
            ClientKind::NonInvite(transaction) => transaction.handle_timeout(now),
            ClientKind::Invite(transaction) => transaction.handle_timeout(now),
        }
    }

    pub(super) fn handle_transport_error(&mut self) {
        match self {
            ClientKind::NonInvite(transaction) => transaction.handle_transport_error(),
            ClientKind::Invite(transaction) => transaction.handle_transport_error(),
        }
    }
}

#[derive(Debug)]
pub(super) struct ClientTransaction {
    pub(super) transaction: ClientKind,
    pub(super) target: Target,
    pub(super) owner: Owner,
    /// The method, to match responses (RFC 3261 section 17.1.3).
    pub(super) method: Method,
    /// The request, for calls (which are told which of their requests failed).
    pub(super) request: Option<Message>,
}

#[derive(Debug)]
pub(super) enum ServerTransaction {
    NonInvite(NonInviteServer),
    Invite(InviteServer),
}

#[derive(Debug)]
pub(super) struct ServerEntry {
    pub(super) transaction: ServerTransaction,
    pub(super) target: Target,
    /// The call whose request this is.
    pub(super) owner: Option<CallId>,
}
