//! The gateway's SIP user agent.
//!
//! The protocol logic is sans-IO: messages are parsed and printed by [`message`], and the state
//! machines (transactions, digest authentication, registration) are plain structs fed with
//! messages, timer expiries and `now`, which return messages to send, events and the next
//! timeout. SIP headers and URIs are parsed with ezk-sip-types, under a thin layer of our own
//! (framing, strict list decoding, well-formedness checks). The sockets, timers and DNS live in
//! a thin tokio driver behind the `tokio` feature.

#![deny(missing_docs)]

pub mod auth;
pub mod call;
pub mod dialog;
#[cfg(feature = "tokio")]
pub mod driver;
pub mod endpoint;
pub mod fuzzing;
pub mod message;
pub mod registrar;
pub mod registration;
pub mod slots;
pub mod stun;
pub mod transaction;
pub mod transport;
pub mod uri;

pub use message::{Frame, Invalid, Message, ParseError, RequestUri, StartLine, StreamFramer};
