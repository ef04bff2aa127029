//! Stream connections (TCP): one task each, framing what it reads, writing what the driver
//! sends, answering keep-alive pings and sending its own (RFC 5626 section 4.4.1 double-CRLF).

use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use crate::endpoint::Target;
use crate::message::{Frame, StreamFramer};

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

/// Runs one connection until it fails, the peer closes it, or the driver drops its sender.
pub(crate) async fn run<S>(
    stream: S,
    target: Target,
    mut outgoing: mpsc::Receiver<Bytes>,
    inputs: mpsc::UnboundedSender<ConnectionInput>,
    keepalive: Option<Duration>,
    max_message_size: usize,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut framer = StreamFramer::new(max_message_size);
    let mut buffer = vec![0u8; 16 * 1024];
    let mut ping = keepalive
        .map(|interval| tokio::time::interval_at(tokio::time::Instant::now() + interval, interval));
    loop {
        tokio::select! {
            read = reader.read(&mut buffer) => {
                let count = match read {
                    Ok(0) | Err(_) => break,
                    Ok(count) => count,
                };
                framer.push(&buffer[..count]);
                loop {
                    match framer.next_frame() {
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
