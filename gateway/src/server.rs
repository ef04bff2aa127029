//! The listener and what all connections share: binding, serving and shutting down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{Config, WebSocketConfig};
use crate::connection::SipDomains;
use crate::error::{Error, Result};
use crate::http;
use crate::metrics::Metrics;
use crate::tls::{self, TlsListener};

/// How long shutdown waits for connections to send their close frames.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// State shared by the HTTP handlers and every connection task. Only immutable configuration,
/// atomics and the synchronisation the connection limit and shutdown need.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) websocket: WebSocketConfig,
    pub(crate) web_origins: Vec<String>,
    pub(crate) domains: Arc<SipDomains>,
    pub(crate) metrics: Metrics,
    /// One permit per open WebSocket connection: this is the `max_connections` limit.
    pub(crate) connection_slots: Arc<Semaphore>,
    /// Cancelled at shutdown, so that every connection closes with code 1001.
    pub(crate) shutdown: CancellationToken,
    /// Tracks the connection tasks, so that shutdown can wait for their close frames.
    pub(crate) tracker: TaskTracker,
    /// Numbers connections for the logs.
    pub(crate) next_connection_id: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: &Config) -> Shared {
        Shared {
            websocket: config.websocket.clone(),
            web_origins: config.http.web_origins.clone(),
            domains: Arc::new(SipDomains::new(&config.accounts.sip_domains)),
            metrics: Metrics::default(),
            connection_slots: Arc::new(Semaphore::new(config.websocket.max_connections)),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_connection_id: AtomicU64::new(1),
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
}

impl Server {
    /// Loads the TLS files (if configured) and binds the listener.
    pub async fn bind(config: &Config) -> Result<Server> {
        let tls = match (&config.http.tls_certificate, &config.http.tls_private_key) {
            (Some(certificate), Some(key)) => Some(tls::server_config(certificate, key)?),
            _ => None,
        };
        let addr = config.http.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        Ok(Server {
            listener,
            local_addr,
            tls,
            shared,
        })
    }

    /// The address the gateway listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
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
        let router =
            http::router(shared.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let connections = shared.shutdown.clone();
        let signal = async move {
            shutdown.cancelled().await;
            connections.cancel();
        };
        match self.tls {
            None => {
                let listener = self.listener.tap_io(|stream| {
                    // Replies are small and latency matters more than packet count.
                    let _ = stream.set_nodelay(true);
                });
                axum::serve(listener, router)
                    .with_graceful_shutdown(signal)
                    .await?;
            }
            Some(config) => {
                let listener = TlsListener::new(self.listener, config)?.tap_io(|_| {});
                axum::serve(listener, router)
                    .with_graceful_shutdown(signal)
                    .await?;
            }
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
        info!("stopped");
        Ok(())
    }
}

/// Checks what the configuration refers to without binding: the TLS certificate and key load
/// and fit together.
pub fn check(config: &Config) -> Result<()> {
    if let (Some(certificate), Some(key)) =
        (&config.http.tls_certificate, &config.http.tls_private_key)
    {
        tls::server_config(certificate, key)?;
    }
    Ok(())
}

/// Binds and serves `config` until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    Server::bind(&config).await?.run(shutdown).await
}
