//! The listener and what all connections share: binding, serving and shutting down.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{Config, WebSocketConfig};
use crate::connection::SipDomains;
use crate::error::{Error, Result};
use crate::http;
use crate::listener;
use crate::metrics::Metrics;
use crate::tls::{self, TlsListener};
use media::Codec;
use media::driver::{BrowserPort, PortRange};
use sip::driver::{DriverConfig, Sip, SipHandle};
use sip::endpoint::EndpointConfig;
use sip::registration::Transport;
use sip::slots::ConnectionSlots;
use sip::transaction::Timers;

/// How long shutdown waits for connections to send their close frames.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// State shared by the HTTP handlers and every connection task. Only immutable configuration,
/// atomics and the synchronisation the connection limit and shutdown need.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) websocket: WebSocketConfig,
    pub(crate) web_origins: Vec<String>,
    pub(crate) domains: Arc<SipDomains>,
    pub(crate) metrics: Arc<Metrics>,
    /// One permit per open WebSocket connection: this is the `max_connections` limit.
    pub(crate) connection_slots: Arc<Semaphore>,
    /// Cancelled at shutdown, so that every connection closes with code 1001.
    pub(crate) shutdown: CancellationToken,
    /// Tracks the connection tasks, so that shutdown can wait for their close frames.
    pub(crate) tracker: TaskTracker,
    /// Numbers connections for the logs (and their registrations in the SIP driver).
    pub(crate) next_connection_id: AtomicU64,
    /// The SIP driver.
    pub(crate) sip: SipHandle,
    /// The media relay's shared parts.
    pub(crate) media: Media,
    /// The local domain, when one is configured.
    pub(crate) local: Option<crate::local::Local>,
    /// The NextRTC endpoint, when enabled, and its path.
    pub(crate) nextrtc: Option<crate::signalling::Endpoint>,
    pub(crate) nextrtc_path: String,
    /// GStreamer's webrtc signalling, when enabled (served on its own listener).
    pub(crate) gst: Option<crate::signalling::Endpoint>,
    /// The Cuttlefish operator, when enabled.
    pub(crate) cuttlefish: Option<crate::signalling::Cuttlefish>,
    /// GStreamer's webrtcsink signalling, when enabled, and its path.
    pub(crate) webrtcsink: Option<crate::signalling::Endpoint>,
    pub(crate) webrtcsink_path: String,
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
    pub(crate) media_timeout: Duration,
    pub(crate) ice_timeout: Duration,
    pub(crate) ring_timeout: Duration,
    /// How long an outgoing call may ring before it is cancelled.
    pub(crate) no_answer_timeout: Duration,
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
            media_timeout: Duration::from_secs(settings.media_timeout),
            ice_timeout: Duration::from_secs(settings.ice_timeout),
            ring_timeout: Duration::from_secs(config.calls.ring_timeout),
            no_answer_timeout: Duration::from_secs(config.calls.no_answer_timeout),
            decline_code: config.calls.decline_code,
        })
    }
}

/// Serves GStreamer's signalling listener until shutdown.
async fn serve_gst(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    slots: ConnectionSlots,
) {
    let addr = listener.local_addr().ok();
    info!(
        url = %format!("{}://{}", if tls.is_some() { "wss" } else { "ws" }, addr.map(|a| a.to_string()).unwrap_or_default()),
        "GStreamer signalling listening"
    );
    let router = crate::signalling::gst_router(shared.clone());
    let stop = shared.shutdown.clone();
    match tls {
        None => {
            let plain = listener::Plain::new(listener, slots);
            listener::serve(plain, router, listener::HEADER_TIMEOUT, stop).await;
        }
        Some(config) => match TlsListener::new(listener, config, slots) {
            Ok(tls) => listener::serve(tls, router, listener::HEADER_TIMEOUT, stop).await,
            Err(error) => warn!(%error, "the GStreamer signalling listener failed"),
        },
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

impl Shared {
    pub(crate) fn new(config: &Config, sip: SipHandle, media: Media) -> Shared {
        Shared {
            websocket: config.websocket.clone(),
            web_origins: config.http.web_origins.clone(),
            domains: Arc::new(SipDomains::new(&config.accounts.sip_domains)),
            metrics: Arc::new(Metrics::default()),
            connection_slots: Arc::new(Semaphore::new(config.websocket.max_connections)),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_connection_id: AtomicU64::new(1),
            sip,
            media,
            local: crate::local::Local::new(&config.local),
            nextrtc: config
                .nextrtc
                .enabled
                .then(|| crate::signalling::start_nextrtc(&config.nextrtc)),
            nextrtc_path: config.nextrtc.path.clone(),
            webrtcsink: config
                .webrtcsink
                .enabled
                .then(crate::signalling::start_webrtcsink),
            webrtcsink_path: config.webrtcsink.path.clone(),
            cuttlefish: config
                .cuttlefish
                .enabled
                .then(|| crate::signalling::start_cuttlefish(&config.cuttlefish.stun_servers)),
            gst: config.gstreamer.enabled.then(|| {
                crate::signalling::start_gst(Duration::from_secs(
                    config.gstreamer.keepalive_timeout,
                ))
            }),
        }
    }
}

/// A bound gateway, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
    sip: Sip,
    /// Stops the SIP driver once the connections are gone.
    sip_shutdown: CancellationToken,
    /// GStreamer's signalling listener, with its TLS, and its address.
    gst: Option<(TcpListener, Option<Arc<rustls::ServerConfig>>)>,
    gst_addr: Option<SocketAddr>,
    /// The HTTP listeners' connections, per source and in all.
    http_slots: ConnectionSlots,
}

impl Server {
    /// Loads the TLS files (if configured) and binds the listener.
    pub async fn bind(config: &Config) -> Result<Server> {
        http::check_routes(config)?;
        let tls = match (&config.http.tls_certificate, &config.http.tls_private_key) {
            (Some(certificate), Some(key)) => Some(tls::server_config(certificate, key)?),
            _ => None,
        };
        let addr = config.http.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener.local_addr()?;
        let sip_shutdown = CancellationToken::new();
        let mut driver = sip_config(config)?;
        let (local_calls, local_calls_rx) = tokio::sync::mpsc::unbounded_channel();
        driver.local_calls = Some(local_calls);
        let sip = sip::driver::start(driver, sip_shutdown.clone())
            .await
            .map_err(|source| Error::SipBind {
                addr: SocketAddr::new(config.sip.listen, config.sip.udp_port),
                source,
            })?;
        if let Some(tls) = sip.tls
            && config.sip.tls_certificate.is_none()
        {
            warn!(
                %tls,
                domain = %config.local.domain,
                "SIP over TLS uses a SELF-SIGNED certificate made at start-up for the local \
                 domain: softphones must be told to accept it. Set [sip] tls_certificate and \
                 tls_private_key for a real one."
            );
        }
        let media = Media::bind(config)?;
        let gst = if config.gstreamer.enabled {
            let settings = &config.gstreamer;
            let tls = match (&settings.tls_certificate, &settings.tls_private_key) {
                _ if !settings.tls => None,
                (Some(certificate), Some(key)) => Some(tls::server_config(certificate, key)?),
                _ => Some(tls::self_signed()?),
            };
            let addr = settings.listen;
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?;
            Some((listener, tls))
        } else {
            None
        };
        let gst_addr = match &gst {
            Some((listener, _)) => Some(listener.local_addr()?),
            None => None,
        };
        let shared = Arc::new(Shared::new(config, sip.handle.clone(), media));
        let admission = crate::admission::Admission::new(
            config.local.max_unauthenticated_calls_per_source,
            config.local.max_unauthenticated_calls,
            config.local.trusted_proxies.clone(),
        );
        tokio::spawn(crate::local::route(
            shared.clone(),
            local_calls_rx,
            admission,
        ));
        Ok(Server {
            listener,
            local_addr,
            tls,
            shared,
            sip,
            sip_shutdown,
            gst,
            gst_addr,
            http_slots: ConnectionSlots::new(
                config.http.max_connections,
                config.http.max_connections_per_source,
            ),
        })
    }

    /// The GStreamer signalling listener's address and whether it is TLS, when enabled.
    pub fn gstreamer_addr(&self) -> Option<(SocketAddr, bool)> {
        self.gst_addr.map(|addr| {
            (
                addr,
                self.gst.as_ref().is_some_and(|(_, tls)| tls.is_some()),
            )
        })
    }

    /// The address the gateway listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The SIP transports' bound addresses (UDP, TCP).
    pub fn sip_addresses(&self) -> (SocketAddr, SocketAddr) {
        (self.sip.udp, self.sip.tcp)
    }

    /// The SIP TLS listener's bound address, when there is one.
    pub fn sip_tls_address(&self) -> Option<SocketAddr> {
        self.sip.tls
    }

    /// The URL of the sylkRTC endpoint.
    pub fn websocket_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!(
            "{scheme}://{}{}",
            self.local_addr, self.shared.websocket.path
        )
    }

    /// Serves until `shutdown` is cancelled, then closes every connection (code 1001) and
    /// waits briefly for them to finish.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let shared = self.shared;
        info!(
            url = %format!("{}://{}{}", if self.tls.is_some() { "wss" } else { "ws" }, self.local_addr, shared.websocket.path),
            "sylkRTC endpoint listening"
        );
        let router = http::router(shared.clone());
        let slots = self.http_slots;
        let gst = self.gst.map(|(listener, tls)| {
            tokio::spawn(serve_gst(listener, tls, shared.clone(), slots.clone()))
        });
        let connections = shared.shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            connections.cancel();
        });
        let stop = shared.shutdown.clone();
        match self.tls {
            None => {
                let plain = listener::Plain::new(self.listener, slots);
                listener::serve(plain, router, listener::HEADER_TIMEOUT, stop).await;
            }
            Some(config) => {
                let tls = TlsListener::new(self.listener, config, slots)?;
                listener::serve(tls, router, listener::HEADER_TIMEOUT, stop).await;
            }
        }
        if let Some(gst) = gst {
            let _ = gst.await;
        }
        shared.tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, shared.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                open = shared.tracker.len(),
                "connections still open after the shutdown grace period"
            );
        }
        // The connections asked for their registrations to be removed; the driver sends the
        // un-REGISTERs (waiting a few seconds for the answers) and stops.
        self.sip_shutdown.cancel();
        let _ = self.sip.task.await;
        info!("stopped");
        Ok(())
    }
}

/// The SIP driver's settings from the configuration.
pub(crate) fn sip_config(config: &Config) -> Result<DriverConfig> {
    let sip = &config.sip;
    let first = match sip.transport.as_str() {
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        _ => Transport::Udp,
    };
    let mut transports = vec![first];
    transports.extend(
        [Transport::Udp, Transport::Tcp, Transport::Tls]
            .into_iter()
            .filter(|t| *t != first),
    );
    let tls_server = match (&sip.tls_certificate, &sip.tls_private_key) {
        (Some(certificate), Some(key)) => {
            Some((sip.tls_port, Arc::new(tls::load(certificate, key)?)))
        }
        // The local domain's softphones can use TLS at once: with a certificate made now.
        _ if !config.local.domain.is_empty() => {
            let mut names = vec![
                config.local.domain.to_ascii_lowercase(),
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
            ];
            let advertised = sip.advertised_address.trim();
            if !advertised.is_empty() && !names.iter().any(|name| name == advertised) {
                names.push(advertised.to_owned());
            }
            Some((sip.tls_port, Arc::new(tls::self_signed_for(names)?)))
        }
        _ => None,
    };
    let non_empty = |text: &str| (!text.trim().is_empty()).then(|| text.trim().to_owned());
    Ok(DriverConfig {
        listen: sip.listen,
        udp_port: sip.udp_port,
        tcp_port: sip.tcp_port,
        advertised: non_empty(&sip.advertised_address),
        outbound_proxy: non_empty(&sip.outbound_proxy),
        transports,
        register_expires: sip.register_expires,
        keepalive: (sip.keepalive_interval > 0)
            .then(|| Duration::from_secs(sip.keepalive_interval)),
        dns_servers: sip.dns_servers.clone(),
        endpoint: EndpointConfig {
            timers: Timers {
                t1: Duration::from_millis(sip.t1_ms),
                t2: Duration::from_millis(sip.t2_ms),
                t4: Duration::from_millis(sip.t4_ms),
            },
            max_message_size: sip.max_message_size,
            user_agent: sip.user_agent.clone(),
            tag_seed: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
            session_expires: (sip.session_expires > 0).then_some(sip.session_expires),
            min_se: sip.min_se,
            local: local_domain(config),
            max_server_transactions: sip.max_transactions,
        },
        tls_client: tls::client_config(sip.tls_ca_file.as_deref())?,
        tls_server,
        local_calls: None,
        max_connections: sip.max_connections,
        max_connections_per_source: sip.max_connections_per_source,
        idle_timeout: Duration::from_secs(sip.idle_timeout),
        redirect_domains: sip.redirect_domains.clone(),
    })
}

/// The registrar settings of the local domain, if one is configured.
fn local_domain(config: &Config) -> Option<sip::registrar::LocalDomain> {
    let local = &config.local;
    if local.domain.is_empty() {
        return None;
    }
    let domain = local.domain.to_ascii_lowercase();
    let users = local
        .users
        .iter()
        .map(|user| {
            let ha1 = match (&user.ha1, &user.password) {
                (Some(ha1), _) => ha1.to_ascii_lowercase(),
                (None, Some(password)) => sip::auth::ha1(&user.user, &domain, password),
                (None, None) => String::new(),
            };
            (user.user.clone(), ha1)
        })
        .collect();
    Some(sip::registrar::LocalDomain {
        domain,
        users,
        open: local.open_registration,
        secret: uuid::Uuid::new_v4().simple().to_string(),
        nonce_lifetime: Duration::from_secs(300),
        max_expires: 3600,
        min_expires: 60,
        ping_interval: (local.ping_interval > 0).then(|| Duration::from_secs(local.ping_interval)),
    })
}

/// Checks what the configuration refers to without binding: the TLS certificates and keys
/// (https and SIP) load and fit together.
pub fn check(config: &Config) -> Result<()> {
    if let (Some(certificate), Some(key)) =
        (&config.http.tls_certificate, &config.http.tls_private_key)
    {
        tls::server_config(certificate, key)?;
    }
    sip_config(config)?;
    http::check_routes(config)?;
    Ok(())
}

/// Binds and serves `config` until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    Server::bind(&config).await?.run(shutdown).await
}
