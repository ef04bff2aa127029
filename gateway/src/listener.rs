//! The HTTP listeners' accept loop: connection slots per source address and in all, taken
//! before anything else (a TLS handshake included) and held for the connection's whole life,
//! WebSocket included; a timeout for reading each request's headers, which also closes
//! keep-alive connections that stay idle; and a graceful end at shutdown.
//!
//! axum's own `serve` has neither limit nor timeout: a client holding idle sockets used to take
//! every descriptor of the process (so `/health`, new WebSockets and SIP over TCP failed).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sip::{ConnectionSlots, Slot};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::proxy_protocol::accept_from_balancer;

/// How long a connection may take to send a request's headers (and may stay idle between
/// requests). The TLS handshake has its own 10 s before that.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connections get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Where connections come from, each with its slot.
pub(crate) trait Accept: Send + 'static {
    /// The connection's stream.
    type Io: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// The next connection that got a slot.
    fn accept(&mut self) -> impl Future<Output = (Self::Io, SocketAddr, Slot)> + Send;
}

/// A connection ready to serve: its stream, its client's address and its slot.
type Ready = (TcpStream, SocketAddr, Slot);

/// Plain TCP connections.
pub(crate) struct Plain {
    listener: TcpListener,
    slots: ConnectionSlots,
    /// The load balancers whose connections begin with a PROXY header.
    balancers: Arc<[IpAddr]>,
    /// Connections from balancers, once their header is read (apart, so that a slow one
    /// holds up nobody).
    ready: (mpsc::Sender<Ready>, mpsc::Receiver<Ready>),
}

impl Plain {
    pub(crate) fn new(listener: TcpListener, slots: ConnectionSlots, balancers: &[IpAddr]) -> Self {
        Plain {
            listener,
            slots,
            balancers: balancers.into(),
            ready: mpsc::channel(64),
        }
    }
}

impl Accept for Plain {
    type Io = TcpStream;

    async fn accept(&mut self) -> (Self::Io, SocketAddr, Slot) {
        loop {
            let accepted = tokio::select! {
                Some(ready) = self.ready.1.recv() => return ready,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((mut stream, peer)) => {
                    let Some(slot) = take_slot(&self.slots, peer) else {
                        continue;
                    };
                    // Replies are small and latency matters more than packet count.
                    let _ = stream.set_nodelay(true);
                    if !self.balancers.contains(&peer.ip()) {
                        return (stream, peer, slot);
                    }
                    let (slots, ready) = (self.slots.clone(), self.ready.0.clone());
                    tokio::spawn(async move {
                        if let Some((client, slot)) =
                            accept_from_balancer(&mut stream, peer, &slots, slot).await
                        {
                            let _ = ready.send((stream, client, slot)).await;
                        }
                    });
                }
                Err(error) => {
                    // Usually out of file descriptors: wait instead of spinning.
                    debug!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// A slot for `peer`'s new connection, or none (the connection is closed at once).
pub(crate) fn take_slot(slots: &ConnectionSlots, peer: SocketAddr) -> Option<Slot> {
    match slots.take(peer.ip()) {
        Ok(slot) => Some(slot),
        Err(limit) => {
            debug!(%peer, %limit, "HTTP connection refused: the limit is reached");
            None
        }
    }
}

/// Serves `router` on the connections of `acceptor` until `shutdown`.
pub(crate) async fn serve<A: Accept>(
    mut acceptor: A,
    router: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let (io, peer, slot) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = acceptor.accept() => accepted,
        };
        let service =
            TowerToHyperService::new(router.clone().layer(axum::Extension(ConnectInfo(peer))));
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(Slotted { io, _slot: slot });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let connection = builder.serve_connection(io, service).with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        debug!(%peer, %error, "HTTP connection ended");
                    }
                }
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, connection).await;
                }
            }
        });
    }
}

/// A stream that holds its connection slot until it is dropped: after a WebSocket upgrade the
/// stream lives on in the WebSocket, and so does the slot.
struct Slotted<I> {
    io: I,
    _slot: Slot,
}

impl<I: AsyncRead + Unpin> AsyncRead for Slotted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(context, buffer)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Slotted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(context, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(context)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(context)
    }
}
