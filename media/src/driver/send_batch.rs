//! Datagrams sent in batches: what an engine puts out at once for one socket (a video frame's
//! packets, the relay's answer to a burst read in one go) goes out with one `sendmmsg`.
//!
//! A session holds (copies) what its engine puts out during a flush and sends it at the end,
//! per socket in the order it came: one datagram (audio, nearly always) with one `sendto` as
//! before, at the cost of a copy of a few hundred bytes; several with one `sendmmsg`.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams held until the end of a flush, each tagged with the socket it leaves from.
#[derive(Debug, Default)]
pub(crate) struct SendBatch {
    /// Their bytes, one after another.
    bytes: Vec<u8>,
    /// Each one's socket, end in `bytes` and destination, in order.
    held: Vec<(u8, usize, SocketAddr)>,
}

impl SendBatch {
    /// Nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Holds a copy of `data` for `socket`.
    pub(crate) fn hold(&mut self, socket: u8, data: &[u8], destination: SocketAddr) {
        self.bytes.extend_from_slice(data);
        self.held.push((socket, self.bytes.len(), destination));
    }

    /// The sockets something is held for, each once.
    pub(crate) fn sockets(&self) -> impl Iterator<Item = u8> + '_ {
        (0..8u8).filter(|socket| self.held.iter().any(|(held, _, _)| held == socket))
    }

    /// Sends what is held for `socket` from `udp`, in order, and returns how many went out;
    /// what a full socket buffer does not take is dropped, as the network would.
    pub(crate) fn send(&self, socket: u8, udp: &UdpSocket) -> usize {
        let mut start = 0;
        let held = self.held.iter().map(|&(held, end, destination)| {
            let data = &self.bytes[start..end];
            start = end;
            (held, data, destination)
        });
        let mine = held.filter(|(held, _, _)| *held == socket);
        match self
            .held
            .iter()
            .filter(|(held, _, _)| *held == socket)
            .count()
        {
            0 => 0,
            1 => mine
                .map(|(_, data, destination)| {
                    usize::from(udp.try_send_to(data, destination).is_ok())
                })
                .sum(),
            count => {
                let (slices, destinations): (Vec<[IoSlice<'_>; 1]>, Vec<Option<SockaddrStorage>>) =
                    mine.map(|(_, data, destination)| {
                        (
                            [IoSlice::new(data)],
                            Some(SockaddrStorage::from(destination)),
                        )
                    })
                    .unzip();
                let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(count, None);
                let fd = udp.as_raw_fd();
                udp.try_io(Interest::WRITABLE, || {
                    sendmmsg(
                        fd,
                        &mut headers,
                        &slices,
                        &destinations,
                        [],
                        MsgFlags::empty(),
                    )
                    .map(Iterator::count)
                    .map_err(io::Error::from)
                })
                .unwrap_or(0)
            }
        }
    }

    /// Forgets what was held (sent or not), keeping the room.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held datagrams go out per socket, in order, one system call for several.
    #[tokio::test]
    async fn held_datagrams_go_out_in_order_per_socket() {
        let first = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let second = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let receiver = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = receiver.local_addr().expect("addr");
        // The runtime learns that a new socket is writable from its first poll.
        first.writable().await.expect("writable");
        second.writable().await.expect("writable");
        let mut batch = SendBatch::default();
        assert!(batch.is_empty());
        batch.hold(0, b"a1", to);
        batch.hold(1, b"b1", to);
        batch.hold(0, b"a2-longer", to);
        batch.hold(0, b"a3", to);
        assert_eq!(batch.sockets().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(batch.send(0, &first), 3);
        assert_eq!(batch.send(1, &second), 1);
        assert_eq!(batch.send(2, &second), 0);
        batch.clear();
        assert!(batch.is_empty());
        let mut heard = Vec::new();
        let mut buffer = [0u8; 64];
        for _ in 0..4 {
            let (length, from) = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                receiver.recv_from(&mut buffer),
            )
            .await
            .expect("in time")
            .expect("a datagram");
            heard.push((from.port(), buffer[..length].to_vec()));
        }
        let port = |socket: &UdpSocket| socket.local_addr().expect("addr").port();
        let from_first: Vec<&[u8]> = heard
            .iter()
            .filter(|(from, _)| *from == port(&first))
            .map(|(_, data)| data.as_slice())
            .collect();
        assert_eq!(from_first, [&b"a1"[..], b"a2-longer", b"a3"]);
        assert!(heard.contains(&(port(&second), b"b1".to_vec())));
    }
}
