//! The gateway's SIP user agent.
//!
//! The protocol logic is sans-IO: messages are parsed and printed by [`Message`], and the state
//! machines (transactions, digest authentication, registration) are plain structs fed with
//! messages, timer expiries and `now`, which return messages to send, events and the next
//! timeout. SIP headers and URIs are parsed with ezk-sip-types, under a thin layer of our own
//! (framing, strict list decoding, well-formedness checks). The sockets, timers and DNS live in
//! a thin tokio driver behind the `tokio` feature.
//!
//! The modules are private: what users need is re-exported here (the driver's own types are
//! in [`driver`]), so that the machinery can change without breaking them.

#![deny(missing_docs)]

mod auth;
mod call;
mod dialog;
#[cfg(feature = "tokio")]
pub mod driver;
mod endpoint;
pub mod fuzzing;
mod location;
mod message;
mod registrar;
mod registration;
mod request;
mod slots;
mod stun;
mod subscription;
mod transaction;
mod transport;
mod uri;

// The surface: what the driver's users and the tests need, and nothing of the machinery.
pub use auth::{Credentials, Secret, ha1};
pub use call::{CallEvent, Ending, Warning};
pub use endpoint::{EndpointConfig, RequestId, SubscriptionId};
pub use location::{Binding, BrowserBinding, Credential, Location, MemoryLocation};
pub use message::{Frame, Invalid, Message, ParseError, RequestUri, StartLine, StreamFramer};
pub use registrar::LocalDomain;
pub use registration::RegistrationEvent;
pub use request::{OutgoingRequest, RequestOutcome};
pub use slots::{ConnectionSlots, Slot};
pub use stun::{binding_response, is_stun};
pub use subscription::{NotifierConfig, SubscribeRequest, SubscriptionEvent};
pub use transaction::Timers;
pub use transport::{MAX_UDP_REQUEST, Target, Transport};
pub use uri::{uri_host, uri_parameters, uri_user};
