//! `[sip]`: the SIP side's section, its transports and its defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;

/// `[sip]`: the SIP side.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// The address the SIP transports bind to.
    #[serde(default = "default_sip_listen")]
    pub listen: IpAddr,
    /// The UDP port (0 picks a free one).
    #[serde(default = "default_sip_port")]
    pub udp_port: u16,
    /// The TCP port (0 picks a free one).
    #[serde(default = "default_sip_port")]
    pub tcp_port: u16,
    /// The host (name or IP) to put in Via and Contact instead of the local address, when the
    /// gateway is behind NAT. Empty: the local address, corrected by what registrars report.
    #[serde(default)]
    pub advertised_address: String,
    /// The TLS port, when a certificate and key are configured (0 picks a free one).
    #[serde(default = "default_sip_tls_port")]
    pub tls_port: u16,
    /// A PEM certificate chain for the SIP TLS listener; with `tls_private_key` it turns the
    /// listener on.
    #[serde(default)]
    pub tls_certificate: Option<PathBuf>,
    /// The PEM private key of `tls_certificate`.
    #[serde(default)]
    pub tls_private_key: Option<PathBuf>,
    /// The certificate authorities (PEM) that SIP servers' TLS certificates are checked
    /// against; unset: the system's bundle.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// A proxy every REGISTER is sent through (`sip:proxy.example.com;transport=tcp`). Empty:
    /// each account's domain is resolved (RFC 3263: SRV, then A/AAAA).
    #[serde(default)]
    pub outbound_proxy: String,
    /// The transport for servers that do not name one: `udp`, `tcp` or `tls`.
    #[serde(default)]
    pub transport: SipTransport,
    /// The registration expiry asked for, in seconds.
    #[serde(default = "default_register_expires")]
    pub register_expires: u32,
    /// Seconds between keep-alive pings (CRLF) on the gateway's TCP connections; 0 turns them
    /// off.
    #[serde(default = "default_keepalive")]
    pub keepalive_interval: u64,
    /// Timer T1 (round-trip estimate), in milliseconds.
    #[serde(default = "default_t1")]
    pub t1_ms: u64,
    /// Timer T2 (longest retransmission interval), in milliseconds.
    #[serde(default = "default_t2")]
    pub t2_ms: u64,
    /// Timer T4 (how long a message may stay in the network), in milliseconds.
    #[serde(default = "default_t4")]
    pub t4_ms: u64,
    /// DNS servers (`"192.0.2.53:53"`) for finding SIP servers; empty: the system's.
    #[serde(default)]
    pub dns_servers: Vec<SocketAddr>,
    /// The largest SIP message accepted, in bytes.
    #[serde(default = "default_sip_max_message_size")]
    pub max_message_size: usize,
    /// The most SIP server transactions held at once; new requests past it get a stateless
    /// 503 with Retry-After (a UDP transaction is held 32 s after its response).
    #[serde(default = "default_sip_max_transactions")]
    pub max_transactions: usize,
    /// The most TCP and TLS connections peers may hold open to the SIP listeners, in all.
    #[serde(default = "default_sip_max_connections")]
    pub max_connections: usize,
    /// The same, from one source address.
    #[serde(default = "default_sip_max_connections_per_source")]
    pub max_connections_per_source: usize,
    /// Seconds a peer's connection may stay without sending a message or keep-alive (its
    /// first one must come within 30 s).
    #[serde(default = "default_sip_idle_timeout")]
    pub idle_timeout: u64,
    /// The hosts a 3xx response may send an outgoing call to (`"sip.example.com"`, or `"*"`
    /// for any). A redirection elsewhere is not followed (it could send a call, and its
    /// charges, anywhere): the call ends with the 3xx and its Contact. At most three are
    /// followed per call, never back to a URI already tried.
    #[serde(default)]
    pub redirect_domains: Vec<String>,
    /// The User-Agent of REGISTERs when the client names none, and the Server of responses.
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
    /// The session interval (RFC 4028) asked for in calls, in seconds; 0 asks for none.
    #[serde(default = "default_session_expires")]
    pub session_expires: u32,
    /// The smallest session interval accepted from the far end, in seconds (at least 90).
    #[serde(default = "default_min_se")]
    pub min_se: u32,
}

fn default_sip_listen() -> IpAddr {
    IpAddr::from([0, 0, 0, 0])
}

fn default_sip_port() -> u16 {
    5060
}

fn default_sip_tls_port() -> u16 {
    5061
}

/// A SIP transport, as the configuration names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SipTransport {
    /// UDP.
    #[default]
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

fn default_register_expires() -> u32 {
    600
}

fn default_keepalive() -> u64 {
    30
}

fn default_t1() -> u64 {
    500
}

fn default_t2() -> u64 {
    4000
}

fn default_t4() -> u64 {
    5000
}

fn default_sip_max_transactions() -> usize {
    20_000
}

fn default_sip_max_connections() -> usize {
    10_000
}

fn default_sip_max_connections_per_source() -> usize {
    64
}

fn default_sip_idle_timeout() -> u64 {
    // Longer than the longest registration the local registrar grants, so that a phone that
    // only refreshes its registration keeps its connection (the way calls reach it).
    3900
}

fn default_sip_max_message_size() -> usize {
    65_535
}

fn default_session_expires() -> u32 {
    1800
}

fn default_min_se() -> u32 {
    90
}

fn default_user_agent() -> String {
    concat!("sylkrtc-gateway/", env!("CARGO_PKG_VERSION")).to_owned()
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: default_sip_listen(),
            udp_port: default_sip_port(),
            tcp_port: default_sip_port(),
            tls_port: default_sip_tls_port(),
            tls_certificate: None,
            tls_private_key: None,
            tls_ca_file: None,
            advertised_address: String::new(),
            outbound_proxy: String::new(),
            transport: SipTransport::Udp,
            register_expires: default_register_expires(),
            keepalive_interval: default_keepalive(),
            t1_ms: default_t1(),
            t2_ms: default_t2(),
            t4_ms: default_t4(),
            dns_servers: Vec::new(),
            max_message_size: default_sip_max_message_size(),
            max_transactions: default_sip_max_transactions(),
            max_connections: default_sip_max_connections(),
            max_connections_per_source: default_sip_max_connections_per_source(),
            idle_timeout: default_sip_idle_timeout(),
            redirect_domains: Vec::new(),
            user_agent: default_user_agent(),
            session_expires: default_session_expires(),
            min_se: default_min_se(),
        }
    }
}
