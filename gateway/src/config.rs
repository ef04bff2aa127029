//! The configuration file: `config.toml`, deserialised into typed sections.
//!
//! Every key is optional and has a default, so an empty file (or none at all) is a working
//! configuration. Unknown keys are rejected, so that a misspelt key is an error at start-up
//! rather than a silently ignored setting. Reading the file is separate from
//! [`Config::from_toml`], which the tests use on strings.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

mod accounts;
mod http_url;
mod instance;
mod matrix;
mod signalling;
mod sip_section;
mod storage;

pub use accounts::{AccountsConfig, ListAddress};
pub(crate) use http_url::HttpUrl;
pub use instance::InstanceConfig;
pub use matrix::MatrixConfig;
pub(crate) use matrix::is_user_id;
pub use signalling::{
    ConversationType, CuttlefishConfig, GstreamerConfig, NextRtcConfig, WebrtcsinkConfig,
};
pub use sip_section::{SipConfig, SipTransport};
pub use storage::StorageConfig;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP listener: address, TLS and allowed web origins.
    #[serde(default)]
    pub http: HttpConfig,
    /// The sylkRTC WebSocket endpoint and its limits.
    #[serde(default)]
    pub websocket: WebSocketConfig,
    /// What accounts clients may add.
    #[serde(default)]
    pub accounts: AccountsConfig,
    /// The SIP user agent: transports, registration, timers.
    #[serde(default)]
    pub sip: SipConfig,
    /// The media relay: ports, addresses, codecs, timeouts.
    #[serde(default)]
    pub media: MediaConfig,
    /// Calls: ringing and declining.
    #[serde(default)]
    pub calls: CallsConfig,
    /// The local SIP domain the gateway serves itself (registrar, proxy, echo test).
    #[serde(default)]
    pub local: LocalConfig,
    /// The NextRTC conversation protocol.
    #[serde(default)]
    pub nextrtc: NextRtcConfig,
    /// GStreamer's webrtc signalling, on its own listener.
    #[serde(default)]
    pub gstreamer: GstreamerConfig,
    /// GStreamer's webrtcsink JSON signalling.
    #[serde(default)]
    pub webrtcsink: WebrtcsinkConfig,
    /// The Cuttlefish operator.
    #[serde(default)]
    pub cuttlefish: CuttlefishConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The message store.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The Matrix application service (bridge), off by default.
    #[serde(default)]
    pub matrix: MatrixConfig,
    /// This instance among several: its id, draining, the admin endpoint.
    #[serde(default)]
    pub instance: InstanceConfig,
}

/// `[media]`: the relay between browsers (WebRTC) and SIP endpoints (RTP).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// The address media sockets bind to.
    #[serde(default = "default_media_listen")]
    pub listen: IpAddr,
    /// The one UDP port all browser peers use (ICE, DTLS, SRTP).
    #[serde(default = "default_browser_port")]
    pub browser_port: u16,
    /// The address given to browsers (the ICE candidate) and to SIP peers (SDP `c=`). Empty:
    /// the listen address, or when that is the wildcard, the host's address toward the
    /// internet (read from the routing table; nothing is sent).
    #[serde(default)]
    pub advertised_address: String,
    /// The SIP legs' RTP ports: each call takes an even port and the one above it for RTCP.
    #[serde(default = "default_rtp_port_min")]
    pub rtp_port_min: u16,
    /// The top of the RTP port range.
    #[serde(default = "default_rtp_port_max")]
    pub rtp_port_max: u16,
    /// The codecs relayed, first preferred: opus, G722, PCMU, PCMA. Nothing is transcoded.
    #[serde(default = "default_codecs")]
    pub codecs: Vec<String>,
    /// The video codecs relayed, first preferred: VP8, VP9, H264 (empty: video is declined).
    #[serde(default = "default_video_codecs")]
    pub video_codecs: Vec<String>,
    /// Seconds a leg that should be sending may stay silent before the call ends.
    #[serde(default = "default_media_timeout")]
    pub media_timeout: u64,
    /// Seconds the browser may go without an ICE check before the call ends.
    #[serde(default = "default_ice_timeout")]
    pub ice_timeout: u64,
    /// SRTP toward SIP, with SDES keys in the SDP (RFC 4568).
    #[serde(default)]
    pub srtp: SrtpSetting,
    /// The SRTP suites offered and accepted, first preferred: `AES_CM_128_HMAC_SHA1_80`,
    /// `AES_CM_128_HMAC_SHA1_32`, `AEAD_AES_128_GCM`.
    #[serde(default = "default_srtp_suites")]
    pub srtp_suites: Vec<String>,
    /// How our offers toward SIP carry SRTP: SDES keys in the SDP, or DTLS-SRTP.
    #[serde(default)]
    pub srtp_offer: SrtpOffer,
}

/// `media.srtp_offer`: how the gateway's own offers toward SIP key SRTP (what it answers
/// follows the offer).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SrtpOffer {
    /// `a=crypto` keys (RFC 4568): `RTP/AVP` with keys (best effort) or `RTP/SAVP`.
    #[default]
    Sdes,
    /// `UDP/TLS/RTP/SAVP` with our certificate's fingerprint and `a=setup:actpass` (RFC
    /// 5763): for phones that take only DTLS-SRTP. A phone without SRTP refuses such an offer.
    Dtls,
}

/// `media.srtp`: whether the SIP side's media is protected with SRTP.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SrtpSetting {
    /// Plain RTP only: `RTP/SAVP` offers are refused with 488.
    Never,
    /// Best-effort SRTP (RFC 8643): offers are `RTP/AVP` with keys (not to telephone
    /// numbers), SRTP is used when the answer has a key; offers with a key are answered with
    /// SRTP, those without in plain RTP.
    #[default]
    Optional,
    /// SRTP only: offers are `RTP/SAVP`; plain offers and answers are refused.
    Mandatory,
}

/// `[local]`: a SIP domain the gateway serves itself: it is the registrar of its users (browser
/// accounts and softphones), connects their calls, and answers `echo@` with the caller's own
/// media.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// The domain (`local.test`); empty turns the local domain off.
    #[serde(default)]
    pub domain: String,
    /// Any user name may sign in with any password. For demonstrations only: local accounts
    /// may then call only the local domain.
    #[serde(default)]
    pub open_registration: bool,
    /// The users, when registration is not open.
    #[serde(default)]
    pub users: Vec<LocalUser>,
    /// Calls that callers who did not authenticate (other domains' users calling the echo test
    /// or a local user) may hold at once, in all.
    #[serde(default = "default_max_unauthenticated_calls")]
    pub max_unauthenticated_calls: usize,
    /// The same, from one source address.
    #[serde(default = "default_max_unauthenticated_calls_per_source")]
    pub max_unauthenticated_calls_per_source: usize,
    /// Proxies whose address stands for many callers (a Kamailio in front): the per-source
    /// limit does not apply to them, the total does.
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
    /// Seconds between the OPTIONS pings sent to phones registered over UDP that do not do SIP
    /// Outbound (which keep their NAT binding open; a phone that answers none of its
    /// retransmissions is unregistered). 0: no pings.
    #[serde(default = "default_phone_ping_interval")]
    pub ping_interval: u64,
    /// A push service (HTTP JSON, as sylk-pushserver takes: `http://host:port/path`) told of
    /// calls and messages for users with no live connection, for the devices whose tokens
    /// they gave (`account-devicetoken`). Empty: no pushes.
    #[serde(default)]
    pub push_url: String,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            domain: String::new(),
            open_registration: false,
            users: Vec::new(),
            max_unauthenticated_calls: default_max_unauthenticated_calls(),
            max_unauthenticated_calls_per_source: default_max_unauthenticated_calls_per_source(),
            trusted_proxies: Vec::new(),
            ping_interval: default_phone_ping_interval(),
            push_url: String::new(),
        }
    }
}

/// Under the 30 s that many NATs keep an idle UDP binding, as Kamailio setups commonly ping.
fn default_phone_ping_interval() -> u64 {
    25
}

fn default_max_unauthenticated_calls() -> usize {
    100
}

fn default_max_unauthenticated_calls_per_source() -> usize {
    4
}

/// A user of the local domain: a password, or its HA1 (`md5(user:domain:password)`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalUser {
    /// The user name.
    pub user: String,
    /// The password.
    #[serde(default)]
    pub password: Option<String>,
    /// The HA1 instead of the password.
    #[serde(default)]
    pub ha1: Option<String>,
}

/// `[calls]`: incoming calls.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CallsConfig {
    /// Seconds an incoming call rings before it is refused with 480 and reported missed.
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout: u64,
    /// The SIP status of a `session-terminate` before the answer: 486 (busy) or 603 (decline).
    #[serde(default = "default_decline_code")]
    pub decline_code: u16,
    /// Seconds an outgoing call may go unanswered before it is cancelled (`terminated` with
    /// `408 Request Timeout (no answer within N s)`).
    #[serde(default = "default_no_answer_timeout")]
    pub no_answer_timeout: u64,
    /// Seconds the client has to answer a far end's new offer (`update` `received`: hold,
    /// resume) before the gateway answers it with the session as it stands.
    #[serde(default = "default_update_timeout")]
    pub update_timeout: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            listen: default_media_listen(),
            browser_port: default_browser_port(),
            advertised_address: String::new(),
            rtp_port_min: default_rtp_port_min(),
            rtp_port_max: default_rtp_port_max(),
            codecs: default_codecs(),
            video_codecs: default_video_codecs(),
            media_timeout: default_media_timeout(),
            ice_timeout: default_ice_timeout(),
            srtp: SrtpSetting::default(),
            srtp_suites: default_srtp_suites(),
            srtp_offer: SrtpOffer::default(),
        }
    }
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            ring_timeout: default_ring_timeout(),
            decline_code: default_decline_code(),
            no_answer_timeout: default_no_answer_timeout(),
            update_timeout: default_update_timeout(),
        }
    }
}

fn default_media_listen() -> IpAddr {
    IpAddr::from([0, 0, 0, 0])
}

fn default_browser_port() -> u16 {
    20_000
}

fn default_rtp_port_min() -> u16 {
    30_000
}

fn default_rtp_port_max() -> u16 {
    39_999
}

fn default_codecs() -> Vec<String> {
    ["opus", "G722", "PCMU", "PCMA"].map(str::to_owned).to_vec()
}

fn default_video_codecs() -> Vec<String> {
    media::VideoCodec::ALL
        .map(|codec| codec.name().to_owned())
        .to_vec()
}

fn default_srtp_suites() -> Vec<String> {
    media::srtp::Suite::ALL
        .map(|suite| suite.name().to_owned())
        .to_vec()
}

fn default_media_timeout() -> u64 {
    60
}

fn default_ice_timeout() -> u64 {
    30
}

fn default_ring_timeout() -> u64 {
    60
}

fn default_no_answer_timeout() -> u64 {
    120
}

fn default_update_timeout() -> u64 {
    10
}

fn default_decline_code() -> u16 {
    486
}

/// `[http]`: the listener that serves the WebSocket endpoint, `/health` and `/metrics`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A PEM file with the certificate chain; with `tls_private_key` it turns on https/wss.
    #[serde(default)]
    pub tls_certificate: Option<PathBuf>,
    /// A PEM file with the private key of `tls_certificate`.
    #[serde(default)]
    pub tls_private_key: Option<PathBuf>,
    /// The web origins allowed to open a WebSocket (the `Origin` header, such as
    /// `https://phone.example.com`); `*` allows any origin and requests without one.
    #[serde(default = "default_web_origins")]
    pub web_origins: Vec<String>,
    /// The most TCP connections (HTTP and WebSocket, on this listener and GStreamer's) open at
    /// once; past it a new connection is closed at once.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: usize,
    /// The same, from one source address (raise it behind a proxy, whose address stands for
    /// all its clients).
    #[serde(default = "default_http_max_connections_per_source")]
    pub max_connections_per_source: usize,
    /// The load balancers (such as HAProxy with `send-proxy-v2`) whose connections begin with
    /// a PROXY protocol v2 header naming the client: limits and logs then see the client.
    /// A connection from one of them without the header is closed; other sources send none.
    #[serde(default)]
    pub proxy_protocol_from: Vec<IpAddr>,
}

/// `[websocket]`: the sylkRTC endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebSocketConfig {
    /// The URL path of the endpoint.
    #[serde(default = "default_path")]
    pub path: String,
    /// Seconds between WebSocket Ping frames; a connection that sends no Pong within half of it
    /// is closed. 0 turns pings off.
    #[serde(default = "default_ping_interval")]
    pub websocket_ping_interval: u64,
    /// The largest message (and frame) accepted from a client, in bytes; a larger one closes the
    /// connection with code 1009.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// The most WebSocket connections open at once; past it, upgrades get HTTP 503.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// The most requests of one connection waiting to be handled; past it, a request gets an
    /// `error` reply (or the connection is closed with 1008 when it does not read its replies).
    #[serde(default = "default_max_queued_requests")]
    pub max_queued_requests: usize,
    /// Log every WebSocket message in and out (passwords are masked).
    #[serde(default)]
    pub trace_client: bool,
}

/// `[log]`: logging.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// The log filter, in `tracing` directive syntax (`info`, `gateway=debug,info`, ...). The
    /// `RUST_LOG` environment variable overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10888))
}

fn default_web_origins() -> Vec<String> {
    vec!["*".to_owned()]
}

fn default_http_max_connections() -> usize {
    20_000
}

fn default_http_max_connections_per_source() -> usize {
    256
}

fn default_path() -> String {
    "/webrtcgateway/ws".to_owned()
}

fn default_ping_interval() -> u64 {
    120
}

fn default_max_message_size() -> usize {
    64 * 1024
}

fn default_max_connections() -> usize {
    10_000
}

fn default_max_queued_requests() -> usize {
    100
}

fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_listen(),
            tls_certificate: None,
            tls_private_key: None,
            web_origins: default_web_origins(),
            max_connections: default_http_max_connections(),
            max_connections_per_source: default_http_max_connections_per_source(),
            proxy_protocol_from: Vec::new(),
        }
    }
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        WebSocketConfig {
            path: default_path(),
            websocket_ping_interval: default_ping_interval(),
            max_message_size: default_max_message_size(),
            max_connections: default_max_connections(),
            max_queued_requests: default_max_queued_requests(),
            trace_client: false,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
        }
    }
}

/// The smallest `max_message_size`: an `account-add` or a trickle must always fit.
const MIN_MESSAGE_SIZE: usize = 1024;

impl Config {
    /// Parses and checks a configuration.
    pub fn from_toml(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(Error::ConfigParse)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads `path`. When `path` is `None`, reads `./config.toml` if it exists and otherwise
    /// returns the built-in defaults (the second value says which file was read, if any).
    pub fn load(path: Option<&Path>) -> Result<(Config, Option<PathBuf>)> {
        let (path, required) = match path {
            Some(path) => (path.to_path_buf(), true),
            None => (PathBuf::from("config.toml"), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok((Config::from_toml(&text)?, Some(path))),
            Err(error) if !required && error.kind() == std::io::ErrorKind::NotFound => {
                Ok((Config::default(), None))
            }
            Err(source) => Err(Error::ConfigRead { path, source }),
        }
    }

    fn validate(&self) -> Result<()> {
        let invalid = |text: String| Err(Error::ConfigInvalid(text));
        let ws = &self.websocket;
        if !ws.path.starts_with('/') || ws.path.contains(['?', '#', ' ']) {
            return invalid(format!(
                "websocket.path must be a URL path starting with '/', not {:?}",
                ws.path
            ));
        }
        if !self.local.push_url.is_empty()
            && let Err(error) = HttpUrl::parse(&self.local.push_url)
        {
            return invalid(format!("local.push_url: {error}"));
        }
        // Paths claimed twice are refused where the routers are merged (`http::check_routes`).
        let nextrtc = &self.nextrtc;
        if nextrtc.enabled {
            if !nextrtc.path.starts_with('/') || nextrtc.path.contains(['?', '#', ' ']) {
                return invalid(format!(
                    "nextrtc.path must be a URL path starting with '/', not {:?}",
                    nextrtc.path
                ));
            }
            if nextrtc.ping_period == 0 || nextrtc.max_connection_setup_time == 0 {
                return invalid(
                    "nextrtc.ping_period and max_connection_setup_time must be at least 1 s".into(),
                );
            }
        }
        let sink = &self.webrtcsink;
        if sink.enabled && (!sink.path.starts_with('/') || sink.path.contains(['?', '#', ' '])) {
            return invalid(format!(
                "webrtcsink.path must be a URL path starting with '/', not {:?}",
                sink.path
            ));
        }
        let gst = &self.gstreamer;
        if gst.tls_certificate.is_some() != gst.tls_private_key.is_some() {
            return invalid(
                "gstreamer.tls_certificate and gstreamer.tls_private_key go together".into(),
            );
        }
        if gst.enabled && gst.keepalive_timeout == 0 {
            return invalid("gstreamer.keepalive_timeout must be at least 1 s".into());
        }
        if let Err(error) = self.matrix.check() {
            return invalid(format!("matrix.{error}"));
        }
        if let Err(error) = self.instance.check() {
            return invalid(format!("instance.{error}"));
        }
        let storage = &self.storage;
        if storage.max_connections == 0 {
            return invalid("storage.max_connections must be at least 1".into());
        }
        if !storage.postgres_url.is_empty()
            && !storage.postgres_url.starts_with("postgres://")
            && !storage.postgres_url.starts_with("postgresql://")
        {
            return invalid("storage.postgres_url must start with postgres://".into());
        }
        if ws.max_message_size < MIN_MESSAGE_SIZE {
            return invalid(format!(
                "websocket.max_message_size must be at least {MIN_MESSAGE_SIZE} bytes"
            ));
        }
        if ws.max_connections == 0 || ws.max_queued_requests == 0 {
            return invalid(
                "websocket.max_connections and max_queued_requests must be at least 1".into(),
            );
        }
        match (&self.http.tls_certificate, &self.http.tls_private_key) {
            (Some(_), None) | (None, Some(_)) => {
                return invalid("http.tls_certificate and http.tls_private_key go together".into());
            }
            _ => {}
        }
        if self.http.web_origins.is_empty() {
            return invalid(
                "http.web_origins is empty: no browser could connect (use [\"*\"] for any)".into(),
            );
        }
        if let Some(origin) = self
            .http
            .web_origins
            .iter()
            .find(|o| o.as_str() != "*" && !o.contains("://"))
        {
            return invalid(format!(
                "http.web_origins entry {origin:?} is not an origin like https://host[:port]"
            ));
        }
        let sip = &self.sip;
        if sip.tls_certificate.is_some() != sip.tls_private_key.is_some() {
            return invalid("sip.tls_certificate and sip.tls_private_key go together".into());
        }
        if sip.t1_ms == 0 || sip.t2_ms < sip.t1_ms || sip.t4_ms == 0 {
            return invalid("sip timers need t1_ms > 0, t2_ms >= t1_ms and t4_ms > 0".into());
        }
        if sip.register_expires < 10 {
            return invalid("sip.register_expires must be at least 10 seconds".into());
        }
        if self.storage.max_message_size < 1024 {
            return invalid("storage.max_message_size must be at least 1024 bytes".into());
        }
        if sip.max_message_size < 1500 {
            return invalid("sip.max_message_size must be at least 1500 bytes".into());
        }
        if sip.max_transactions == 0
            || sip.max_connections == 0
            || sip.max_connections_per_source == 0
        {
            return invalid(
                "sip.max_transactions, max_connections and max_connections_per_source must be \
                 at least 1"
                    .into(),
            );
        }
        if self.http.max_connections == 0 || self.http.max_connections_per_source == 0 {
            return invalid(
                "http.max_connections and max_connections_per_source must be at least 1".into(),
            );
        }
        if sip.idle_timeout < 30 {
            return invalid("sip.idle_timeout must be at least 30 seconds".into());
        }
        if !sip.outbound_proxy.is_empty()
            && sip::driver::resolve::ServerUri::parse(&sip.outbound_proxy).is_none()
        {
            return invalid(format!(
                "sip.outbound_proxy {:?} is not a SIP URI",
                sip.outbound_proxy
            ));
        }
        let media = &self.media;
        if media.codecs.is_empty() {
            return invalid("media.codecs needs at least one codec".into());
        }
        for codec in &media.codecs {
            if let Err(error) = codec.parse::<media::Codec>() {
                return invalid(format!("media.codecs: {error}"));
            }
        }
        for codec in &media.video_codecs {
            if let Err(error) = codec.parse::<media::VideoCodec>() {
                return invalid(format!("media.video_codecs: {error}"));
            }
        }
        if media.srtp != SrtpSetting::Never && media.srtp_suites.is_empty() {
            return invalid("media.srtp_suites needs at least one suite when SRTP is on".into());
        }
        for suite in &media.srtp_suites {
            if media::srtp::Suite::from_name(suite).is_none() {
                return invalid(format!(
                    "media.srtp_suites: unknown suite {suite:?} (the gateway has {})",
                    default_srtp_suites().join(", ")
                ));
            }
        }
        if media.rtp_port_min < 1024 || media.rtp_port_max <= media.rtp_port_min {
            return invalid(
                "media.rtp_port_min must be at least 1024 and below media.rtp_port_max".into(),
            );
        }
        if !media.advertised_address.is_empty()
            && media.advertised_address.parse::<IpAddr>().is_err()
        {
            return invalid(format!(
                "media.advertised_address must be an IP address, not {:?}",
                media.advertised_address
            ));
        }
        if media.media_timeout == 0 || media.ice_timeout == 0 {
            return invalid("media.media_timeout and media.ice_timeout must be at least 1".into());
        }
        let local = &self.local;
        if !local.domain.is_empty() {
            if local.domain.contains(['@', ':', ' ', '/']) {
                return invalid(format!(
                    "local.domain {:?} is not a domain name",
                    local.domain
                ));
            }
            for user in &local.users {
                if user.user.is_empty() || user.user.contains(['@', ':', ' ']) {
                    return invalid(format!("local.users: invalid user name {:?}", user.user));
                }
                let ha1 = user
                    .ha1
                    .as_deref()
                    .map(|ha1| ha1.len() == 32 && ha1.bytes().all(|b| b.is_ascii_hexdigit()));
                if user.password.is_some() == user.ha1.is_some() || ha1 == Some(false) {
                    return invalid(format!(
                        "local.users: {} needs a password or a 32-hex-digit ha1 (one of them)",
                        user.user
                    ));
                }
            }
        }
        if ![486, 603].contains(&self.calls.decline_code) {
            return invalid("calls.decline_code must be 486 or 603".into());
        }
        if self.calls.no_answer_timeout == 0 {
            return invalid("calls.no_answer_timeout must be at least 1 second".into());
        }
        if self.calls.ring_timeout == 0 {
            return invalid("calls.ring_timeout must be at least 1 second".into());
        }
        if self.accounts.sip_domains.is_empty()
            || self.accounts.sip_domains.iter().any(String::is_empty)
        {
            return invalid(
                "accounts.sip_domains needs at least one domain (or \"*\" for any)".into(),
            );
        }
        Ok(())
    }

    /// Whether https/wss is configured.
    pub fn tls_enabled(&self) -> bool {
        self.http.tls_certificate.is_some()
    }
}

impl WebSocketConfig {
    /// The ping interval, `None` when pings are off.
    pub fn ping_interval(&self) -> Option<Duration> {
        (self.websocket_ping_interval > 0)
            .then(|| Duration::from_secs(self.websocket_ping_interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_parses_and_is_the_defaults() {
        let text = include_str!("../../config.toml");
        let mut config = Config::from_toml(text).unwrap();
        // The shipped file turns the local domain on (a demonstration), which is off by
        // default so that no deployment gets open registration without asking for it.
        assert_eq!(config.local.domain, "local.test");
        assert!(config.local.open_registration);
        assert_eq!(Config::default().local, LocalConfig::default());
        config.local = LocalConfig::default();
        // Everything else documents the defaults: it must not drift from them.
        assert_eq!(config, Config::default());
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(
            config.http.listen,
            "127.0.0.1:10888".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(config.websocket.path, "/webrtcgateway/ws");
        assert_eq!(
            config.websocket.ping_interval(),
            Some(Duration::from_secs(120))
        );
        assert_eq!(config.websocket.max_message_size, 65536);
        assert_eq!(config.accounts.sip_domains, ["*"]);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        for text in [
            "bogus = 1",
            "[http]\nlisten_port = 80",
            "[websocket]\npingInterval = 3",
            "[nope]\n",
        ] {
            let error = Config::from_toml(text).unwrap_err().to_string();
            assert!(error.contains("unknown"), "{text:?}: {error}");
        }
    }

    #[test]
    fn values_are_checked() {
        for (text, needle) in [
            ("[websocket]\npath = \"ws\"", "websocket.path"),
            ("[websocket]\nmax_message_size = 10", "max_message_size"),
            ("[websocket]\nmax_connections = 0", "max_connections"),
            ("[http]\ntls_certificate = \"a.pem\"", "go together"),
            ("[http]\nweb_origins = []", "web_origins"),
            ("[http]\nweb_origins = [\"example.com\"]", "not an origin"),
            ("[accounts]\nsip_domains = []", "sip_domains"),
            ("[http]\nlisten = \"nowhere\"", "invalid socket address"),
            ("[websocket]\nwebsocket_ping_interval = -1", "invalid value"),
            (
                "[sip]\ntransport = \"sctp\"",
                "expected one of `udp`, `tcp`, `tls`",
            ),
            (
                "[media]\nsrtp = \"sometimes\"",
                "expected one of `never`, `optional`, `mandatory`",
            ),
            ("[media]\nsrtp_suites = []", "media.srtp_suites"),
            (
                "[media]\nsrtp_suites = [\"AES_256_CM_HMAC_SHA1_80\"]",
                "unknown suite",
            ),
            (
                "[media]\nsrtp_offer = \"zrtp\"",
                "expected `sdes` or `dtls`",
            ),
        ] {
            let error = Config::from_toml(text).unwrap_err().to_string();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
        let config = Config::from_toml("[websocket]\nwebsocket_ping_interval = 0").unwrap();
        assert_eq!(config.websocket.ping_interval(), None);
        let config = Config::from_toml("[sip]\ntransport = \"tls\"").unwrap();
        assert_eq!(config.sip.transport, SipTransport::Tls);
        assert_eq!(config.media.srtp_offer, SrtpOffer::Sdes);
        let config = Config::from_toml("[media]\nsrtp_offer = \"dtls\"").unwrap();
        assert_eq!(config.media.srtp_offer, SrtpOffer::Dtls);
        let config = Config::from_toml("[media]\nsrtp = \"never\"\nsrtp_suites = []").unwrap();
        assert_eq!(config.media.srtp, SrtpSetting::Never);
    }

    #[test]
    fn a_missing_default_file_means_defaults_but_a_named_one_is_an_error() {
        let missing = Path::new("/nonexistent/sylkrtc-gateway.toml");
        assert!(matches!(
            Config::load(Some(missing)),
            Err(Error::ConfigRead { .. })
        ));
    }
}
