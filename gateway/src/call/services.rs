//! What a call's task uses: the SIP driver's handle, the media relay's shared parts and
//! settings, the local domain's location service, and the metrics. Built once by the server
//! and handed to the front-ends that start calls and to the local domain's incoming calls.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use media::Codec;
use media::driver::{BrowserPort, PortRange};
use media::srtp::{SrtpMode, SrtpPolicy, Suite};
use sip::driver::SipHandle;
use tracing::info;

use crate::config::{Config, SrtpOffer, SrtpSetting};
use crate::error::{Error, Result};
use crate::local::Local;
use crate::metrics::Metrics;
use crate::push::Pusher;

/// What every call's task shares.
#[derive(Debug)]
pub(crate) struct CallServices {
    /// The SIP driver.
    pub(crate) sip: SipHandle,
    /// The media relay's shared parts.
    pub(crate) media: Media,
    /// The local domain, when one is configured.
    pub(crate) local: Option<Arc<Local>>,
    /// Wakes the devices of the local domain's users (`[local] push_url`).
    pub(crate) pusher: Option<Arc<Pusher>>,
    pub(crate) metrics: Arc<Metrics>,
}

/// What every call's relay shares: the browser port, the SIP legs' port range, settings.
#[derive(Debug)]
pub(crate) struct Media {
    pub(crate) browser: BrowserPort,
    /// The ICE candidate browsers get: the advertised address and the browser port.
    pub(crate) browser_addr: SocketAddr,
    pub(crate) ports: PortRange,
    /// The address SIP peers get in SDP.
    pub(crate) advertised: IpAddr,
    pub(crate) codecs: Vec<Codec>,
    pub(crate) video_codecs: Vec<media::VideoCodec>,
    /// SRTP toward SIP, as configured.
    pub(crate) srtp: SrtpPolicy,
    /// Whether SIP requests go out over TLS (the outbound proxy is `sips:` or
    /// `transport=tls`): SDES keys in SDP are readable on any other transport.
    pub(crate) signalling_encrypted: bool,
    pub(crate) media_timeout: Duration,
    pub(crate) ice_timeout: Duration,
    pub(crate) ring_timeout: Duration,
    /// How long an outgoing call may ring before it is cancelled.
    pub(crate) no_answer_timeout: Duration,
    /// How long the front-end has to answer the far end's new offer.
    pub(crate) update_timeout: Duration,
    pub(crate) decline_code: u16,
}

impl Media {
    /// Binds the browser port (needs a tokio runtime).
    pub(crate) fn bind(config: &Config) -> Result<Media> {
        media::init_crypto();
        let settings = &config.media;
        let addr = SocketAddr::new(settings.listen, settings.browser_port);
        let browser =
            BrowserPort::bind(addr).map_err(|source| Error::MediaBind { addr, source })?;
        let port = browser.local_addr()?.port();
        let advertised = match settings.advertised_address.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) if !settings.listen.is_unspecified() => settings.listen,
            Err(_) => host_address(settings.listen),
        };
        info!(
            browser_port = %SocketAddr::new(settings.listen, port),
            %advertised,
            rtp_ports = %format!("{}-{}", settings.rtp_port_min, settings.rtp_port_max),
            "media relay listening"
        );
        Ok(Media {
            browser,
            browser_addr: SocketAddr::new(advertised, port),
            ports: PortRange::new(
                settings.listen,
                settings.rtp_port_min,
                settings.rtp_port_max,
            ),
            advertised,
            codecs: settings
                .codecs
                .iter()
                .filter_map(|codec| codec.parse().ok())
                .collect(),
            video_codecs: settings
                .video_codecs
                .iter()
                .filter_map(|codec| codec.parse().ok())
                .collect(),
            srtp: SrtpPolicy {
                mode: match settings.srtp {
                    SrtpSetting::Never => SrtpMode::Never,
                    SrtpSetting::Optional => SrtpMode::Optional,
                    SrtpSetting::Mandatory => SrtpMode::Mandatory,
                },
                suites: settings
                    .srtp_suites
                    .iter()
                    .filter_map(|suite| Suite::from_name(suite))
                    .collect(),
                dtls_offers: settings.srtp_offer == SrtpOffer::Dtls,
            },
            signalling_encrypted: is_tls_uri(&config.sip.outbound_proxy),
            media_timeout: Duration::from_secs(settings.media_timeout),
            ice_timeout: Duration::from_secs(settings.ice_timeout),
            ring_timeout: Duration::from_secs(config.calls.ring_timeout),
            no_answer_timeout: Duration::from_secs(config.calls.no_answer_timeout),
            update_timeout: Duration::from_secs(config.calls.update_timeout),
            decline_code: config.calls.decline_code,
        })
    }
}

/// The host's own address when media listens on all interfaces: the one the routing table
/// picks toward a public address (found by connecting a UDP socket, which sends nothing).
fn host_address(listen: IpAddr) -> IpAddr {
    let probe: SocketAddr = match listen {
        IpAddr::V4(_) => SocketAddr::from(([192, 0, 2, 1], 9)),
        IpAddr::V6(_) => SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 9)),
    };
    std::net::UdpSocket::bind(SocketAddr::new(listen, 0))
        .and_then(|socket| {
            socket.connect(probe)?;
            socket.local_addr()
        })
        .map(|local| local.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// Whether a SIP URI asks for TLS (`sips:`, or `transport=tls`).
pub(crate) fn is_tls_uri(uri: &str) -> bool {
    let uri = uri.to_ascii_lowercase();
    uri.starts_with("sips:") || uri.contains(";transport=tls")
}
