//! Datagrams read in batches: one `recvmmsg` takes up to `N` of them.
//!
//! A readiness-based runtime learns that a socket is drained from a read that finds nothing: with
//! one datagram per wake-up, which is what a call's RTP port sees (one packet every 20 ms, or a
//! few for video), that is two reads per datagram, the second one empty. A batch that comes back
//! with fewer than `N` datagrams tells the same, so the socket's readiness is cleared then and
//! there, without the empty read. It is safe with the runtime's edge-triggered polling: every
//! datagram queued later raises a new readiness event, and the runtime keeps one that came in
//! while the batch was being read (its clear only takes the event it handed out).

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Room for `N` datagrams of up to `SIZE` bytes, and what the last read put there.
pub struct RecvBatch<const N: usize, const SIZE: usize> {
    buffer: Box<[u8]>,
    /// Length and source of each datagram read, in order.
    received: Vec<(usize, SocketAddr)>,
}

impl<const N: usize, const SIZE: usize> std::fmt::Debug for RecvBatch<N, SIZE> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &N)
            .field("size", &SIZE)
            .field("received", &self.received.len())
            .finish()
    }
}

impl<const N: usize, const SIZE: usize> Default for RecvBatch<N, SIZE> {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl<const N: usize, const SIZE: usize> RecvBatch<N, SIZE> {
    /// An empty batch (its buffer is allocated here, once).
    pub fn new() -> RecvBatch<N, SIZE> {
        const { assert!(N >= 2, "a batch of one cannot tell a drained socket") };
        RecvBatch {
            buffer: vec![0; N * SIZE].into_boxed_slice(),
            received: Vec::with_capacity(N),
        }
    }

    /// Waits until the socket has datagrams and reads a batch of them: how many (at least one).
    /// Cancel-safe: nothing is read unless it returns.
    pub async fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        loop {
            socket.readable().await?;
            match self.try_recv(socket) {
                Ok(0) => continue,
                other => return other,
            }
        }
    }

    /// Reads what the socket has, up to `N` datagrams, without waiting: how many (none when
    /// the socket is not known to be readable). Datagrams longer than `SIZE` are dropped.
    pub fn try_recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.received.clear();
        let fd = socket.as_raw_fd();
        let RecvBatch { buffer, received } = self;
        // The system call's headers hold raw pointers, which a task's future may not keep
        // across an await: they are made for each read (two small allocations).
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(N, None);
        let result = socket.try_io(Interest::READABLE, || {
            let mut slots = buffer
                .chunks_exact_mut(SIZE)
                .map(|slot| [IoSliceMut::new(slot)]);
            let mut slices: [[IoSliceMut<'_>; 1]; N] =
                std::array::from_fn(|_| slots.next().unwrap_or([IoSliceMut::new(&mut [])]));
            let messages = recvmmsg(fd, &mut headers, slices.iter_mut(), MsgFlags::empty(), None)
                .map_err(io::Error::from)?;
            let mut count = 0;
            for message in messages {
                count += 1;
                let source = message.address.as_ref().and_then(socket_addr);
                match source {
                    Some(source) if !message.flags.contains(MsgFlags::MSG_TRUNC) => {
                        received.push((message.bytes, source));
                    }
                    // Cut short (longer than any RTP a relay passes), or no address: dropped,
                    // its slot kept empty so the others keep their place.
                    _ => received.push((usize::MAX, SocketAddr::from(([0, 0, 0, 0], 0)))),
                }
            }
            if count < N {
                // Fewer than asked: nothing is left. Saying "would block" makes the runtime
                // clear the socket's readiness, which is what an empty read would have done.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
        Ok(self.received.len())
    }

    /// The `index`th datagram of the last read and where it came from; `None` for one that was
    /// dropped (cut short).
    pub fn get(&self, index: usize) -> Option<(&[u8], SocketAddr)> {
        let (length, source) = *self.received.get(index)?;
        if length > SIZE {
            return None;
        }
        let start = index * SIZE;
        Some((&self.buffer[start..start + length], source))
    }

    /// The datagrams of the last read, in order (those cut short left out).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        (0..self.received.len()).filter_map(|index| self.get(index))
    }
}

fn socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    let v6 = address.as_sockaddr_in6()?;
    Some(SocketAddr::V6(SocketAddrV6::from(*v6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A burst comes in batches of `N`; the short batch at the end leaves the socket's
    /// readiness cleared (the next wait does not return until a new datagram comes), and a
    /// datagram longer than a slot is dropped without losing the others.
    #[tokio::test]
    async fn a_burst_is_read_in_batches_and_the_short_one_clears_readiness() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let to = socket.local_addr().expect("addr");
        let peer = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let from = peer.local_addr().expect("addr");
        for index in 0..5u8 {
            peer.send_to(&[index; 3], to).await.expect("send");
        }
        peer.send_to(&[9; 100], to).await.expect("send");
        peer.send_to(&[6; 2], to).await.expect("send");
        let mut batch = RecvBatch::<4, 64>::new();
        // Loopback delivery is synchronous: all seven are queued.
        assert_eq!(batch.recv(&socket).await.expect("recv"), 4);
        let first: Vec<(Vec<u8>, SocketAddr)> = batch
            .iter()
            .map(|(data, source)| (data.to_vec(), source))
            .collect();
        assert_eq!(
            first,
            (0..4u8)
                .map(|index| (vec![index; 3], from))
                .collect::<Vec<_>>()
        );
        assert_eq!(batch.recv(&socket).await.expect("recv"), 3);
        assert_eq!(batch.get(0), Some((&[4u8; 3][..], from)));
        assert_eq!(batch.get(1), None, "longer than a slot");
        assert_eq!(batch.get(2), Some((&[6u8; 2][..], from)));
        // Drained: the readiness is cleared already, so no read is tried until a new
        // datagram comes.
        let mut tried = false;
        let _ = socket.try_io(Interest::READABLE, || {
            tried = true;
            Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
        });
        assert!(
            !tried,
            "an empty read would be needed to learn the socket is drained"
        );
        assert_eq!(batch.try_recv(&socket).expect("try"), 0);
        // A new datagram wakes it again.
        peer.send_to(&[7; 5], to).await.expect("send");
        assert_eq!(batch.recv(&socket).await.expect("recv"), 1);
        assert_eq!(batch.get(0), Some((&[7u8; 5][..], from)));
    }
}
