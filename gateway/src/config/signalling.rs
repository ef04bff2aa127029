//! The sections of the seed signalling protocols the gateway hosts beside sylkRTC.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// `[nextrtc]`: the NextRTC conversation protocol (the reference's `nextrtc.properties`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NextRtcConfig {
    /// Serve it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The WebSocket path (NextRTC's examples use `/signaling`).
    #[serde(default = "default_nextrtc_path")]
    pub path: String,
    /// Seconds between the `ping` messages every connection gets.
    #[serde(default = "default_ping_period")]
    pub ping_period: u64,
    /// Seconds a pair of members may stay in one step of its offer/answer exchange; later
    /// messages for it are dropped.
    #[serde(default = "default_setup_time")]
    pub max_connection_setup_time: u64,
    /// `join` to a conversation that does not exist fails (`CONVERSATION_NOT_FOUND`) instead
    /// of creating it.
    #[serde(default)]
    pub join_only_to_existing: bool,
    /// The type of conversations created without one: MESH, BROADCAST or MESH_WITH_MASTER.
    #[serde(default)]
    pub default_conversation_type: ConversationType,
}

impl Default for NextRtcConfig {
    fn default() -> Self {
        NextRtcConfig {
            enabled: true,
            path: default_nextrtc_path(),
            ping_period: default_ping_period(),
            max_connection_setup_time: default_setup_time(),
            join_only_to_existing: false,
            default_conversation_type: ConversationType::Mesh,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_nextrtc_path() -> String {
    "/signaling".to_owned()
}

fn default_ping_period() -> u64 {
    3
}

fn default_setup_time() -> u64 {
    30
}

/// A NextRTC conversation type, named as `nextrtc.properties` names them (in any case).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConversationType {
    /// Every member connects to every other.
    #[default]
    Mesh,
    /// The first member sends to everyone else.
    Broadcast,
    /// A mesh that ends for everyone when its creator leaves.
    MeshWithMaster,
}

impl<'de> Deserialize<'de> for ConversationType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        match name.to_ascii_uppercase().as_str() {
            "MESH" => Ok(ConversationType::Mesh),
            "BROADCAST" => Ok(ConversationType::Broadcast),
            "MESH_WITH_MASTER" => Ok(ConversationType::MeshWithMaster),
            _ => Err(serde::de::Error::custom(format!(
                "nextrtc.default_conversation_type must be MESH, BROADCAST or MESH_WITH_MASTER, not {name:?}"
            ))),
        }
    }
}

/// `[gstreamer]`: GStreamer's webrtc signalling (the line protocol of gst-examples'
/// `simple_server.py`), on a listener of its own.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GstreamerConfig {
    /// Serve it (off by default: it takes a port of its own).
    #[serde(default)]
    pub enabled: bool,
    /// Its listener (the reference's default port is 8443).
    #[serde(default = "default_gst_listen")]
    pub listen: SocketAddr,
    /// TLS (`wss://`), as the reference clients expect.
    #[serde(default = "yes")]
    pub tls: bool,
    /// PEM files; without them a self-signed certificate is made at start-up (fit for tests:
    /// the reference clients do not verify it).
    #[serde(default)]
    pub tls_certificate: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[serde(default)]
    pub tls_private_key: Option<PathBuf>,
    /// Seconds without traffic after which a connection gets a WebSocket Ping.
    #[serde(default = "default_keepalive")]
    pub keepalive_timeout: u64,
}

impl Default for GstreamerConfig {
    fn default() -> Self {
        GstreamerConfig {
            enabled: false,
            listen: default_gst_listen(),
            tls: true,
            tls_certificate: None,
            tls_private_key: None,
            keepalive_timeout: default_keepalive(),
        }
    }
}

fn default_gst_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}

fn default_keepalive() -> u64 {
    30
}

/// `[cuttlefish]`: the Cuttlefish operator's signalling (`/register_device`,
/// `/connect_client`, `/devices`, `/infra_config`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CuttlefishConfig {
    /// Serve it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The STUN servers devices and clients get in `config` (`stun:` is added when missing).
    #[serde(default)]
    pub stun_servers: Vec<String>,
}

impl Default for CuttlefishConfig {
    fn default() -> Self {
        CuttlefishConfig {
            enabled: true,
            stun_servers: Vec::new(),
        }
    }
}

/// `[webrtcsink]`: the JSON signalling of GStreamer's webrtcsink and webrtcsrc (the protocol of
/// `gst-webrtc-signalling-server`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebrtcsinkConfig {
    /// Serve it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The WebSocket path (the reference server takes any path).
    #[serde(default = "default_webrtcsink_path")]
    pub path: String,
}

impl Default for WebrtcsinkConfig {
    fn default() -> Self {
        WebrtcsinkConfig {
            enabled: true,
            path: default_webrtcsink_path(),
        }
    }
}

fn default_webrtcsink_path() -> String {
    "/webrtcsink".to_owned()
}
