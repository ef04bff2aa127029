//! End-to-end tests: the real gateway, in-process on 127.0.0.1:0, spoken to over real
//! WebSockets. One binary, one module per topic.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod accounts;
mod addressbook;
mod autobahn;
mod bandwidth;
mod calls;
mod closes;
mod cluster;
mod conversations;
mod cuttlefish;
mod dns;
mod dtls_srtp;
mod fork;
mod gstreamer;
mod handshake;
mod http;
mod keepalive;
mod limits;
mod local;
mod local_messages;
mod local_push;
mod logging;
mod matrix;
mod matrix_client;
mod matrix_from_sip;
mod messaging;
mod nat;
mod nextrtc;
mod observability;
mod phones;
mod presence;
mod push;
mod register;
mod renegotiation;
mod requests;
mod sip_presence;
mod sipp_calls;
mod srtp;
mod store;
mod tls;
mod updates;
mod video;
mod web_messages;
mod web_phone;
mod webrtcsink;
