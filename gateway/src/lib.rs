//! sylkrtc-gateway: a WebRTC-to-SIP gateway that speaks the sylkRTC WebSocket protocol.
//!
//! This crate is the binary's library half: configuration, the HTTP/WebSocket front-end, and
//! the per-connection state that ties the browser-facing protocol ([`protocol`]) to the SIP user
//! agent (`sip`) and the media relay (`media`). It does the I/O: one tokio task per WebSocket
//! connection, whose protocol state is a sans-IO struct fed with the client's messages.
//!
//! It also hosts the WebSocket signalling protocols of the project's seed documents (NextRTC,
//! GStreamer's webrtc signalling, the Cuttlefish operator), each a sans-IO hub driven by one
//! task.
//!
//! [`Server::bind`] and [`Server::run`] start it; the tests start it in-process on port 0.

#![deny(missing_docs)]

mod admission;
mod call;
mod config;
mod cpim;
mod devices;
mod drain;
mod echo;
mod error;
mod http;
mod inbound;
mod keepalive;
mod leg;
mod listener;
mod local;
mod log_limit;
mod matrix;
mod messaging;
mod metrics;
mod phone_branch;
mod presence;
mod proxy_protocol;
mod publications;
mod push;
mod routing;
mod server;
mod signalling;
mod storage;
mod sylkrtc;
mod tls;

pub use config::{
    AccountsConfig, CallsConfig, Config, ConversationType, CuttlefishConfig, GstreamerConfig,
    HttpConfig, InstanceConfig, ListAddress, LocalConfig, LocalUser, LogConfig, MatrixConfig,
    MediaConfig, NextRtcConfig, SipConfig, SipTransport, SrtpOffer, SrtpSetting, StorageConfig,
    WebSocketConfig, WebrtcsinkConfig,
};
pub use drain::Drain;
pub use error::{Error, Result};
pub use matrix::registration as matrix_registration;
pub use server::{Server, check, run};
