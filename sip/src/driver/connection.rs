//! Stream connections (TCP): one task each, framing what it reads, writing what the driver
//! sends, answering keep-alive pings and sending its own (RFC 5626 section 4.4.1 double-CRLF).

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use crate::message::{Frame, StreamFramer};
use crate::transport::Target;

/// What a connection task tells the driver.
#[derive(Debug)]
pub(crate) enum ConnectionInput {
    /// A frame arrived.
    Frame(Target, Frame),
    /// The connection is gone (or never came up): its transactions fail.
    Closed(Target),
}

/// Messages waiting to be written on one connection.
pub(crate) const WRITE_QUEUE: usize = 256;

/// How long a connection a peer opened may stay silent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// Until its first complete message (or keep-alive).
    pub(crate) first_message: Duration,
    /// Between complete messages (or keep-alives) after that.
    pub(crate) idle: Duration,
}

/// How one connection behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Send a double-CRLF ping this often (our own connections).
    pub(crate) keepalive: Option<Duration>,
    /// Close the connection when the peer stays silent (connections peers opened).
    pub(crate) timeouts: Option<Timeouts>,
    pub(crate) max_message_size: usize,
}

/// Runs one connection until it fails, the peer closes it or stays silent too long, or the
/// driver drops its sender.
pub(crate) async fn run<S>(
    stream: S,
    target: Target,
    mut outgoing: mpsc::Receiver<Bytes>,
    inputs: mpsc::UnboundedSender<ConnectionInput>,
    settings: Settings,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut framer = StreamFramer::new(settings.max_message_size);
    let mut buffer = vec![0u8; 16 * 1024];
    let mut ping = settings
        .keepalive
        .map(|interval| tokio::time::interval_at(tokio::time::Instant::now() + interval, interval));
    // Only complete messages count as life: a byte now and then does not keep a socket.
    let mut silent_until = settings
        .timeouts
        .map(|timeouts| tokio::time::Instant::now() + timeouts.first_message);
    loop {
        tokio::select! {
            () = async {
                match silent_until {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            } => {
                debug!(remote = %target.addr, "closing a SIP connection that sent nothing in time");
                break;
            }
            read = reader.read(&mut buffer) => {
                let count = match read {
                    Ok(0) | Err(_) => break,
                    Ok(count) => count,
                };
                framer.push(&buffer[..count]);
                loop {
                    let frame = framer.next_frame();
                    if let (Ok(Some(_)), Some(timeouts)) = (&frame, settings.timeouts) {
                        silent_until = Some(tokio::time::Instant::now() + timeouts.idle);
                    }
                    match frame {
                        Ok(Some(Frame::Ping)) => {
                            if writer.write_all(b"\r\n").await.is_err() {
                                return closed(&inputs, target);
                            }
                        }
                        Ok(Some(Frame::Pong)) => {}
                        Ok(Some(frame)) => {
                            if inputs.send(ConnectionInput::Frame(target, frame)).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(error) => {
                            // The stream cannot be framed any more: drop the connection.
                            debug!(remote = %target.addr, %error, "closing an unframeable SIP connection");
                            return closed(&inputs, target);
                        }
                    }
                }
            }
            message = outgoing.recv() => {
                let Some(message) = message else { break };
                if writer.write_all(&message).await.is_err() {
                    break;
                }
            }
            _ = async {
                match &mut ping {
                    Some(ping) => ping.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                if writer.write_all(b"\r\n\r\n").await.is_err() {
                    break;
                }
            }
        }
    }
    closed(&inputs, target);
}

fn closed(inputs: &mpsc::UnboundedSender<ConnectionInput>, target: Target) {
    let _ = inputs.send(ConnectionInput::Closed(target));
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::transport::Transport;

    /// A connection task on a real loopback connection, and the peer's end of it.
    async fn connected(
        keepalive: Option<Duration>,
    ) -> (
        TcpStream,
        Target,
        mpsc::Sender<Bytes>,
        mpsc::UnboundedReceiver<ConnectionInput>,
    ) {
        connected_with(Settings {
            keepalive,
            timeouts: None,
            max_message_size: 65_536,
        })
        .await
    }

    async fn connected_with(
        settings: Settings,
    ) -> (
        TcpStream,
        Target,
        mpsc::Sender<Bytes>,
        mpsc::UnboundedReceiver<ConnectionInput>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let target = Target {
            transport: Transport::Tcp,
            addr,
        };
        let (outgoing, receiver) = mpsc::channel(4);
        let (inputs, inputs_rx) = mpsc::unbounded_channel();
        let client = TcpStream::connect(addr).await.unwrap();
        tokio::spawn(run(client, target, receiver, inputs, settings));
        let (server, _) = listener.accept().await.unwrap();
        (server, target, outgoing, inputs_rx)
    }

    const WAIT: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn sends_keepalive_pings() {
        // The sender is held: dropping it is how the driver closes a connection.
        let (mut server, _target, _outgoing, _inputs) =
            connected(Some(Duration::from_millis(100))).await;
        for _ in 0..2 {
            let mut ping = [0u8; 4];
            tokio::time::timeout(WAIT, server.read_exact(&mut ping))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&ping, b"\r\n\r\n");
        }
    }

    #[tokio::test]
    async fn answers_pings_frames_messages_and_reports_the_close() {
        let (mut server, target, outgoing, mut inputs) = connected(None).await;
        // The peer's ping is answered with a pong: one CRLF, and nothing else.
        server.write_all(b"\r\n\r\n").await.unwrap();
        let mut pong = [0u8; 8];
        let count = tokio::time::timeout(WAIT, server.read(&mut pong))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&pong[..count], b"\r\n");
        // What the driver sends is written.
        outgoing.send(Bytes::from_static(b"hello")).await.unwrap();
        let mut hello = [0u8; 5];
        tokio::time::timeout(WAIT, server.read_exact(&mut hello))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&hello, b"hello");
        // What arrives is framed.
        let message = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";
        server.write_all(message).await.unwrap();
        let input = tokio::time::timeout(WAIT, inputs.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(input, ConnectionInput::Frame(from, Frame::Message(_)) if from == target));
        // The peer closing is reported.
        drop(server);
        let closed = tokio::time::timeout(WAIT, inputs.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(closed, ConnectionInput::Closed(from) if from == target));
    }

    /// A peer's connection that sends nothing is closed after the first-message timeout; one
    /// that sends keep-alives lives on, and is closed once it goes silent for the idle time;
    /// a byte now and then (no complete message) keeps nothing alive.
    #[tokio::test(start_paused = true)]
    async fn silent_peer_connections_are_closed() {
        let settings = Settings {
            keepalive: None,
            timeouts: Some(Timeouts {
                first_message: Duration::from_secs(30),
                idle: Duration::from_secs(600),
            }),
            max_message_size: 65_536,
        };
        let (_server, target, _outgoing, mut inputs) = connected_with(settings).await;
        let closed = tokio::time::timeout(Duration::from_secs(31), inputs.recv())
            .await
            .expect("closed within the first-message timeout")
            .unwrap();
        assert!(matches!(closed, ConnectionInput::Closed(from) if from == target));

        let (mut server, target, _outgoing, mut inputs) = connected_with(settings).await;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            server.write_all(b"\r\n\r\n").await.unwrap();
        }
        // A trickle of bytes that never completes a message: closed once the idle time since
        // the last keep-alive has passed (100 s of keep-alives, then 600 s).
        let mut elapsed = Duration::ZERO;
        while elapsed < Duration::from_secs(1000) {
            tokio::time::sleep(Duration::from_secs(20)).await;
            elapsed += Duration::from_secs(20);
            if server.write_all(b"O").await.is_err() {
                break;
            }
            if let Ok(Some(input)) =
                tokio::time::timeout(Duration::from_millis(1), inputs.recv()).await
            {
                assert!(matches!(input, ConnectionInput::Closed(from) if from == target));
                assert!(
                    elapsed >= Duration::from_secs(580),
                    "closed after {elapsed:?}"
                );
                return;
            }
        }
        let input = tokio::time::timeout(WAIT, inputs.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(input, ConnectionInput::Closed(from) if from == target));
        assert!(
            elapsed >= Duration::from_secs(580),
            "closed after {elapsed:?}"
        );
    }
}
