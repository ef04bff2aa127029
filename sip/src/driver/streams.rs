//! The driver's stream connections (TCP and TLS): sending on the connection to a target,
//! opening one when there is none, accepting them within the connection slots, and the task
//! of each.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

impl Driver {
    pub(super) fn send_stream(&mut self, target: Target, bytes: Bytes) {
        if let Some(connection) = self.connections.get(&target) {
            if connection.try_send(bytes).is_err() {
                // Full or gone: the connection is not keeping up; its transactions fail.
                self.connections.remove(&target);
                self.endpoint
                    .handle_transport_error(Instant::now().into_std(), target);
            }
            return;
        }
        self.spawn_connection(target, None, Some(bytes));
    }

    /// Completes the TLS handshake of an accepted connection in its own task, so that a slow
    /// client cannot hold up the driver.
    pub(super) fn handshake(&mut self, stream: TcpStream, peer: SocketAddr, slot: ConnectionSlot) {
        let Some((_, acceptor)) = &self.tls else {
            return;
        };
        let acceptor = acceptor.clone();
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let _ = inputs.send(Input::TlsAccepted(Box::new(stream), peer, slot));
                }
                Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        });
    }

    /// A slot for a connection `peer` opened, or none (the connection is then dropped).
    pub(super) fn slot_for(&self, peer: SocketAddr) -> Option<ConnectionSlot> {
        match self.slots.take(peer.ip()) {
            Ok(slot) => Some(slot),
            Err(limit) => {
                debug!(%peer, %limit, "SIP connection refused: the limit is reached");
                None
            }
        }
    }

    /// Starts a connection task: for an accepted stream (holding its slot), or a new outgoing
    /// connection whose first message waits until it is up.
    pub(super) fn spawn_connection(
        &mut self,
        target: Target,
        accepted: Option<(Accepted, ConnectionSlot)>,
        first: Option<Bytes>,
    ) {
        let (sender, receiver) = mpsc::channel(WRITE_QUEUE);
        if let Some(first) = first {
            let _ = sender.try_send(first);
        }
        self.connections.insert(target, sender);
        let inputs = self.inputs.clone();
        let max = self.config.endpoint.max_message_size;
        // Our own connections carry our registrations: keep them (and NAT bindings) alive.
        let keepalive = if accepted.is_none() {
            self.config.keepalive
        } else {
            None
        };
        // A peer's connection must send, or it goes (idle sockets must not use up descriptors).
        let timeouts = accepted.is_some().then_some(connection::Timeouts {
            first_message: FIRST_MESSAGE_TIMEOUT,
            idle: self.config.idle_timeout,
        });
        let (forward, mut forwarded) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(input) = forwarded.recv().await {
                if inputs.send(Input::Connection(input)).is_err() {
                    break;
                }
            }
        });
        let tls = (target.transport == Transport::Tls).then(|| {
            let name = self
                .tls_names
                .get(&target.addr)
                .cloned()
                .unwrap_or_else(|| target.addr.ip().to_string());
            (TlsConnector::from(self.config.tls_client.clone()), name)
        });
        tokio::spawn(async move {
            let (stream, _slot) = match accepted {
                Some((stream, slot)) => (stream, Some(slot)),
                None => match tokio::time::timeout(CONNECT_TIMEOUT, connect(target, tls)).await {
                    Ok(Ok(stream)) => (stream, None),
                    Ok(Err(error)) => {
                        debug!(remote = %target.addr, %error, "connection failed");
                        let _ = forward.send(ConnectionInput::Closed(target));
                        return;
                    }
                    Err(_) => {
                        debug!(remote = %target.addr, "connection timed out");
                        let _ = forward.send(ConnectionInput::Closed(target));
                        return;
                    }
                },
            };
            let settings = connection::Settings {
                keepalive,
                timeouts,
                max_message_size: max,
            };
            match stream {
                Accepted::Tcp(stream) => {
                    connection::run(stream, target, receiver, forward, settings).await
                }
                Accepted::Tls(stream) => {
                    connection::run(stream, target, receiver, forward, settings).await
                }
            }
        });
    }
}

/// A connected stream.
pub(super) enum Accepted {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

/// Opens a TCP connection, and the TLS session over it when `tls` names the server.
pub(super) async fn connect(
    target: Target,
    tls: Option<(TlsConnector, String)>,
) -> io::Result<Accepted> {
    let stream = TcpStream::connect(target.addr).await?;
    let _ = stream.set_nodelay(true);
    let Some((connector, name)) = tls else {
        return Ok(Accepted::Tcp(stream));
    };
    let name = rustls::pki_types::ServerName::try_from(name)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let stream = connector.connect(name, stream).await?;
    Ok(Accepted::Tls(Box::new(tokio_rustls::TlsStream::Client(
        stream,
    ))))
}

/// The next connection on the TLS listener (never, without one).
pub(super) async fn accept_tls(
    tls: &Option<(TcpListener, TlsAcceptor)>,
) -> io::Result<(TcpStream, SocketAddr)> {
    match tls {
        Some((listener, _)) => listener.accept().await,
        None => std::future::pending().await,
    }
}
