//! The composition root: it binds the listeners and the SIP driver, builds the services (the
//! WebSocket admission, the call services, the signalling hubs) and hands each to those that
//! use it, merges the endpoints' routers, and orders shutdown. No module imports it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::call::{CallServices, Media};
use crate::config::{Config, SipTransport};
use crate::drain::Drain;
use crate::error::{Error, Result};
use crate::http::{self, gate::Gate};
use crate::listener;
use crate::local::{Local, SharedLocation};
use crate::metrics::Metrics;
use crate::signalling::Hubs;
use crate::sylkrtc::{SipDomains, Sylkrtc};
use crate::tls::{self, TlsListener};
use sip::ConnectionSlots;
use sip::EndpointConfig;
use sip::Timers;
use sip::Transport;
use sip::driver::{DriverConfig, Sip};

/// How long shutdown waits for connections to send their close frames.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves GStreamer's signalling listener until shutdown.
async fn serve_gst(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    slots: ConnectionSlots,
    balancers: Arc<[IpAddr]>,
    stop: CancellationToken,
) {
    let addr = listener.local_addr().ok();
    info!(
        url = %format!("{}://{}", if tls.is_some() { "wss" } else { "ws" }, addr.map(|a| a.to_string()).unwrap_or_default()),
        "GStreamer signalling listening"
    );
    match tls {
        None => {
            let plain = listener::Plain::new(listener, slots, &balancers);
            listener::serve(plain, router, listener::HEADER_TIMEOUT, stop).await;
        }
        Some(config) => match TlsListener::new(listener, config, slots, &balancers) {
            Ok(tls) => listener::serve(tls, router, listener::HEADER_TIMEOUT, stop).await,
            Err(error) => warn!(%error, "the GStreamer signalling listener failed"),
        },
    }
}

/// A bound gateway, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The WebSocket admission every endpoint shares.
    gate: Arc<Gate>,
    /// The merged routes of the gateway's listener, and of GStreamer's.
    router: Router,
    gst_router: Option<Router>,
    sip: Sip,
    /// Stops the SIP driver once the connections are gone.
    sip_shutdown: CancellationToken,
    /// GStreamer's signalling listener, with its TLS, and its address.
    gst: Option<(TcpListener, Option<Arc<rustls::ServerConfig>>)>,
    gst_addr: Option<SocketAddr>,
    /// The HTTP listeners' connections, per source and in all.
    http_slots: ConnectionSlots,
    /// The load balancers whose connections begin with a PROXY header.
    balancers: Arc<[IpAddr]>,
    /// Begins draining.
    drain: Drain,
    drain_timeout: Duration,
    metrics: Arc<Metrics>,
    instance: Arc<str>,
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
        // With peers and a store they share, so are phone bindings (each instance's own
        // SQLite would share nothing: the peers then ring their phones themselves).
        let shared = match driver.endpoint.local.as_mut() {
            Some(local)
                if !config.instance.peers.is_empty()
                    && matches!(
                        config.storage.options().backend,
                        store::Backend::Postgres(_)
                    ) =>
            {
                let shared = Arc::new(SharedLocation::new(local.location.clone()));
                local.location = shared.clone();
                Some(shared)
            }
            _ => None,
        };
        let location = driver
            .endpoint
            .local
            .as_ref()
            .map(|local| local.location.clone());
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
        let metrics = Arc::new(Metrics::default());
        let instance: Arc<str> = config.instance.resolved_id(local_addr.port()).into();
        metrics.set_instance(&instance);
        let gate = Arc::new(Gate::new(
            &config.websocket,
            &config.http.web_origins,
            metrics.clone(),
        ));
        let drain = Drain::new(gate.draining().clone());
        if let Some(location) = &location {
            metrics.watch_location(location.clone());
        }
        metrics.watch_sip(sip.wire.clone());
        let storage =
            crate::storage::Storage::open(&config.storage, metrics.clone(), sip_shutdown.clone())
                .await?;
        // A gateway listed among its own peers would ring its places twice.
        let peers: Vec<SocketAddr> = config
            .instance
            .peers
            .iter()
            .copied()
            .filter(|peer| *peer != sip.udp && *peer != sip.tcp)
            .collect();
        let local = location.map(|location| {
            let local = Local::new(location).with_peers(&peers);
            Arc::new(match &shared {
                Some(shared) => {
                    shared.start(storage.clone(), instance.clone(), sip_shutdown.clone());
                    local.with_shared(shared.clone())
                }
                None => local,
            })
        });
        let calls = Arc::new(CallServices {
            sip: sip.handle.clone(),
            media,
            // The registrar's location service is the gateway's: one for the local domain.
            pusher: local
                .as_ref()
                .and_then(|_| crate::push::Pusher::new(&config.local.push_url, storage.clone())),
            local,
            metrics: metrics.clone(),
        });
        let admission = crate::admission::Admission::new(
            config.local.max_unauthenticated_calls_per_source,
            config.local.max_unauthenticated_calls,
            config.local.trusted_proxies.clone(),
        );
        let devices = Arc::new(crate::devices::Devices::default());
        let post = calls
            .local
            .clone()
            .map(|local| crate::messaging::local::Post {
                local,
                devices: devices.clone(),
                storage: storage.clone(),
                sip: sip.handle.clone(),
                max_size: config.storage.max_message_size,
                pusher: calls.pusher.clone(),
            });
        let presence = calls.local.clone().map(|local| {
            crate::presence::server::PresenceServer::start(
                local,
                sip.handle.clone(),
                storage.clone(),
            )
        });
        let bridge = crate::matrix::Bridge::start(&config.matrix, calls.clone(), storage.clone());
        let (bridge, to_matrix) = bridge.unzip();
        if let (Some(local), Some(to_matrix)) = (&calls.local, &to_matrix) {
            local.set_matrix_users(Arc::new(to_matrix.clone()));
        }
        tokio::spawn(crate::inbound::route(
            calls.clone(),
            local_calls_rx,
            admission,
            crate::inbound::Services {
                post: post.clone(),
                presence,
                to_matrix,
            },
        ));
        let hubs = Hubs::start(config);
        let sylkrtc = Arc::new(Sylkrtc {
            gate: gate.clone(),
            calls,
            domains: Arc::new(
                SipDomains::new(&config.accounts.sip_domains)
                    .with_rfc8599(&config.accounts.rfc8599_push_domains)
                    .with_presence_lists(&config.accounts.presence_lists)
                    .with_local(&config.local.domain),
            ),
            storage,
            devices,
            post,
            max_message_size: config.storage.max_message_size,
        });
        // The paths were checked apart above (`check_routes`), so the merge cannot clash.
        let mut router = Router::new()
            .merge(http::web::routes(&config.websocket.path))
            .merge(http::status_routes(http::Status {
                metrics: metrics.clone(),
                drain: drain.clone(),
                instance: instance.clone(),
                admin_token: config.instance.admin_token.as_str().into(),
            }))
            .merge(hubs.routes(config, &gate))
            .merge(sylkrtc.routes());
        if let Some(bridge) = bridge {
            router = router.merge(crate::matrix::appservice::routes(bridge));
        }
        let router = router.fallback(http::not_found);
        let gst_router = hubs.gst_router(&gate);
        Ok(Server {
            listener,
            local_addr,
            tls,
            gate,
            router,
            gst_router,
            sip,
            sip_shutdown,
            gst,
            gst_addr,
            http_slots: ConnectionSlots::new(
                config.http.max_connections,
                config.http.max_connections_per_source,
            ),
            balancers: config.http.proxy_protocol_from.as_slice().into(),
            drain,
            drain_timeout: Duration::from_secs(config.instance.drain_timeout),
            metrics,
            instance,
        })
    }

    /// Begins draining (SIGTERM does, and `POST /admin/drain`).
    pub fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// This instance's id (`[instance] id`, or the host name and HTTP port).
    pub fn instance_id(&self) -> &str {
        &self.instance
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
        format!("{scheme}://{}{}", self.local_addr, self.gate.websocket.path)
    }

    /// Serves until `shutdown` is cancelled, or a drain (see [`Server::drain`]) has finished,
    /// then closes every connection (code 1001) and waits briefly for them to finish.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let gate = self.gate;
        info!(
            url = %format!("{}://{}{}", if self.tls.is_some() { "wss" } else { "ws" }, self.local_addr, gate.websocket.path),
            instance = %self.instance,
            "sylkRTC endpoint listening"
        );
        let router = self.router;
        let slots = self.http_slots;
        let balancers = self.balancers;
        // The listeners stop accepting at shutdown, or once a drain is over; the connections
        // then close (1001) below.
        let stop = CancellationToken::new();
        tokio::spawn({
            let (stop, drain, sip, metrics) = (
                stop.clone(),
                self.drain.clone(),
                self.sip.handle.clone(),
                self.metrics.clone(),
            );
            let timeout = self.drain_timeout;
            async move {
                crate::drain::supervise(drain, shutdown, stop, &metrics, sip, timeout).await;
            }
        });
        let connections = gate.clone();
        let stopped = stop.clone();
        tokio::spawn(async move {
            stopped.cancelled().await;
            connections.shutdown().cancel();
        });
        let gst = self
            .gst
            .zip(self.gst_router)
            .map(|((listener, tls), router)| {
                tokio::spawn(serve_gst(
                    listener,
                    tls,
                    router,
                    slots.clone(),
                    balancers.clone(),
                    stop.clone(),
                ))
            });
        match self.tls {
            None => {
                let plain = listener::Plain::new(self.listener, slots, &balancers);
                listener::serve(plain, router, listener::HEADER_TIMEOUT, stop).await;
            }
            Some(config) => {
                let tls = TlsListener::new(self.listener, config, slots, &balancers)?;
                listener::serve(tls, router, listener::HEADER_TIMEOUT, stop).await;
            }
        }
        if let Some(gst) = gst {
            let _ = gst.await;
        }
        let open = gate.close_all(SHUTDOWN_GRACE).await;
        if open > 0 {
            warn!(
                open,
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
    let first = match sip.transport {
        SipTransport::Udp => Transport::Udp,
        SipTransport::Tcp => Transport::Tcp,
        SipTransport::Tls => Transport::Tls,
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
            siblings: config.instance.peers.clone(),
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
fn local_domain(config: &Config) -> Option<sip::LocalDomain> {
    Some(sip::LocalDomain {
        location: crate::local::location(&config.local)?,
        secret: uuid::Uuid::new_v4().simple().to_string(),
        nonce_lifetime: Duration::from_secs(300),
        max_expires: 3600,
        min_expires: 60,
        ping_interval: (config.local.ping_interval > 0)
            .then(|| Duration::from_secs(config.local.ping_interval)),
        peers: config.instance.peers.clone(),
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
