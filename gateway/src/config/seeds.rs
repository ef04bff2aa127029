//! The sections of the seed signalling protocols the gateway hosts beside sylkRTC.

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
    #[serde(default = "default_conversation_type")]
    pub default_conversation_type: String,
}

impl Default for NextRtcConfig {
    fn default() -> Self {
        NextRtcConfig {
            enabled: true,
            path: default_nextrtc_path(),
            ping_period: default_ping_period(),
            max_connection_setup_time: default_setup_time(),
            join_only_to_existing: false,
            default_conversation_type: default_conversation_type(),
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

fn default_conversation_type() -> String {
    "MESH".to_owned()
}
