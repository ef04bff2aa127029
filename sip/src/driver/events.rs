//! What the driver's users hand it and hear from it: the accounts they register, the names of
//! registrations, and the events of registrations, calls and requests (for an account's owner,
//! or for the local domain's).

use tokio::sync::mpsc;

use super::{CallHandle, IncomingCall, RequestHandle};
use crate::auth::Credentials;
use crate::call::CallEvent;
use crate::registration::RegistrationEvent;

/// An account to register.
#[derive(Debug, Clone)]
pub struct Account {
    /// The user part.
    pub user: String,
    /// The domain (host, optionally with a port).
    pub domain: String,
    /// The display name.
    pub display_name: Option<String>,
    /// The digest credentials.
    pub credentials: Credentials,
    /// A User-Agent for this account's requests (the endpoint's otherwise).
    pub user_agent: Option<String>,
    /// Parameters for the Contact URI of its registrations (push notification parameters,
    /// RFC 8599 or the Sylk apps' `pn-*`), names and values as they go, unescaped.
    pub contact_params: Vec<(String, String)>,
}

/// Names a registration: the owner (a connection) and the owner's own number for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegistrationKey {
    /// The owner.
    pub owner: u64,
    /// The owner's number for this registration.
    pub handle: u64,
}

/// A call's events, for its owner alone; after [`CallEvent::Terminated`] nothing more comes.
pub type CallEvents = mpsc::UnboundedReceiver<CallEvent>;

/// What the driver reports to a registration's owner.
#[derive(Debug)]
pub enum SipEvent {
    /// A registration's state changed.
    Registration {
        /// The owner's number for it.
        handle: u64,
        /// What happened.
        event: RegistrationEvent,
    },
    /// A call reached the registration `handle`. It has been answered 100 Trying only: the owner
    /// rings, answers or rejects it with [`SipHandle::call`](super::SipHandle::call), and hears the call on `events`.
    Incoming {
        /// The owner's number for the registration.
        handle: u64,
        /// The new call.
        call: CallHandle,
        /// What the INVITE said.
        invite: Box<IncomingCall>,
        /// The call's events.
        events: CallEvents,
    },
    /// An out-of-dialog request reached the registration `handle` (MESSAGE, SUBSCRIBE):
    /// answer it with [`SipHandle::answer`](super::SipHandle::answer).
    Request {
        /// The owner's number for the registration.
        handle: u64,
        /// Names it, for the answer.
        request: RequestHandle,
        /// The request.
        message: Box<crate::Message>,
    },
}

/// What the driver hands the local domain's owner (on the `local_calls` channel).
#[derive(Debug)]
pub enum LocalEvent {
    /// A call for a user of the domain.
    Call(LocalIncoming),
    /// An out-of-dialog request for the domain (MESSAGE, SUBSCRIBE): answer it with
    /// [`SipHandle::answer`](super::SipHandle::answer).
    Request {
        /// Names it, for the answer.
        request: RequestHandle,
        /// Where it came from.
        source: std::net::SocketAddr,
        /// Whether its sender authenticated (a user of the domain); senders of other domains
        /// do not.
        authenticated: bool,
        /// The request.
        message: Box<crate::Message>,
    },
}

/// A call for a user of the local domain (on the `local_calls` channel). It has been answered
/// 100 Trying only: the owner rings, answers or rejects it with [`SipHandle::call`](super::SipHandle::call), and hears
/// the call on `events`.
#[derive(Debug)]
pub struct LocalIncoming {
    /// The new call.
    pub call: CallHandle,
    /// The callee (the Request-URI's user).
    pub user: String,
    /// The Request-URI's parameters (`;name=value` after the host), as they came.
    pub uri_params: String,
    /// The address the INVITE came from.
    pub source: std::net::SocketAddr,
    /// Whether the caller authenticated (a local user); callers of other domains do not.
    pub authenticated: bool,
    /// What the INVITE said.
    pub invite: Box<IncomingCall>,
    /// The call's events.
    pub events: CallEvents,
}
