//! Transports and where messages go: a leaf of the crate that every layer (transactions,
//! registrations, the registrar, the endpoint, the driver) names without depending on another.

use std::fmt;
use std::net::SocketAddr;

/// A request larger than this never goes over UDP (RFC 3261 section 18.1.1: within 200 bytes
/// of a 1,500-byte path MTU; RFC 3428 section 9 for MESSAGE): TCP to the same server, or, in
/// a dialog that keeps its transport, not at all.
pub const MAX_UDP_REQUEST: usize = 1300;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: unreliable, retransmitted by transactions.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// The name in a Via header (`SIP/2.0/UDP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// The `transport=` URI parameter value.
    pub fn param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Whether the transport delivers reliably (no retransmissions).
    pub fn reliable(self) -> bool {
        self != Transport::Udp
    }

    /// The transport named by a URI `transport=` parameter.
    pub fn from_param(name: &str) -> Option<Transport> {
        match name.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            _ => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_name())
    }
}

/// Where a message goes or came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// The transport.
    pub transport: Transport,
    /// The remote address.
    pub addr: SocketAddr,
}
