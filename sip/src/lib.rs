//! The gateway's SIP user agent.
//!
//! This crate will hold the SIP side of the gateway: the message layer on `ezk-sip-types`,
//! transports (UDP, TCP, TLS), RFC 3261 transactions, digest authentication, registration and
//! dialogs. The protocol logic is sans-IO (state machines fed with messages and `now`); the
//! sockets and timers live in a thin tokio driver behind a feature.
//!
//! Nothing of it is built yet. Until it is, the gateway answers the requests that need SIP
//! (`account-register`, `account-unregister` and every `session-*` request) with the error
//! "not supported yet: NAME".

#![deny(missing_docs)]
