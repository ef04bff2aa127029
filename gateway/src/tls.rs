//! https/wss: the certificate and key, and a listener that completes TLS handshakes off the
//! accept path, so that one slow client cannot hold up the others.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sip::{ConnectionSlots, Slot};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use crate::error::{Error, Result};

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the HTTP server to take them.
const READY_QUEUE: usize = 64;

/// Loads the certificate chain and private key (PEM) into a rustls server configuration for
/// https/wss.
pub(crate) fn server_config(certificate: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let mut config = load(certificate, key)?;
    // WebSocket needs HTTP/1.1 (its upgrade does not exist in HTTP/2 without RFC 8441).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Loads the certificate chain and private key (PEM) into a rustls server configuration.
/// A server configuration with a certificate made now, for `localhost` and 127.0.0.1: for
/// listeners whose clients do not verify it (test set-ups).
pub(crate) fn self_signed() -> Result<Arc<ServerConfig>> {
    let mut config = self_signed_for(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A server configuration with a self-signed certificate made now for `names` (DNS names or
/// IP addresses).
pub(crate) fn self_signed_for(names: Vec<String>) -> Result<ServerConfig> {
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|error| Error::Tls(format!("cannot make a certificate: {error}")))?;
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
        .map_err(|error| Error::Tls(format!("cannot use the key made: {error}")))?;
    ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .map_err(|error| Error::Tls(format!("certificate and key do not fit: {error}")))
}

pub(crate) fn load(certificate: &Path, key: &Path) -> Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| {
            Error::Tls(format!(
                "cannot read certificates from {}: {error}",
                certificate.display()
            ))
        })?;
    if chain.is_empty() {
        return Err(Error::Tls(format!(
            "no certificate in {}",
            certificate.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| {
        Error::Tls(format!(
            "cannot read the private key from {}: {error}",
            key.display()
        ))
    })?;
    ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| Error::Tls(format!("certificate and key do not fit: {error}")))
}

/// Debian's bundle of trusted certificate authorities.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A client configuration trusting the certificates in `ca_file` (PEM), or the system's bundle.
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    let path = ca_file.unwrap_or(Path::new(SYSTEM_ROOTS));
    if ca_file.is_some() || path.exists() {
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|error| {
                Error::Tls(format!(
                    "cannot read certificates from {}: {error}",
                    path.display()
                ))
            })?;
        let (added, _) = roots.add_parsable_certificates(certificates);
        if ca_file.is_some() && added == 0 {
            return Err(Error::Tls(format!(
                "no usable certificate in {}",
                path.display()
            )));
        }
    }
    Ok(Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// A listener whose connections arrive with their TLS handshake done, each with the slot it
/// took before its handshake.
#[derive(Debug)]
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr, Slot)>,
    /// Accepts TCP connections and spawns their handshakes; stopped with the listener.
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        slots: ConnectionSlots,
        balancers: &[std::net::IpAddr],
    ) -> std::io::Result<Self> {
        let (ready_tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(config),
            ready_tx,
            slots,
            balancers.to_vec(),
        ));
        Ok(TlsListener { ready, acceptor })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr, Slot)>,
    slots: ConnectionSlots,
    balancers: Vec<std::net::IpAddr>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Usually out of file descriptors: wait instead of spinning.
                debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = crate::listener::take_slot(&slots, peer) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        let from_balancer = balancers.contains(&peer.ip());
        let slots = slots.clone();
        tokio::spawn(async move {
            // A balancer's PROXY header comes before the TLS handshake.
            let (mut stream, mut peer, mut slot) = (stream, peer, slot);
            if from_balancer {
                match crate::proxy_protocol::accept_from_balancer(&mut stream, peer, &slots, slot)
                    .await
                {
                    Some((client, client_slot)) => (peer, slot) = (client, client_slot),
                    None => return,
                }
            }
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer, slot)).await;
                }
                Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl crate::listener::Accept for TlsListener {
    type Io = TlsStream<TcpStream>;

    async fn accept(&mut self) -> (Self::Io, SocketAddr, Slot) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop never ends on its own; if it is gone, nothing more will come.
            None => std::future::pending().await,
        }
    }
}
