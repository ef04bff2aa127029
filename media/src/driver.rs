//! The tokio side of the relay: the UDP port shared by every browser peer, with the task that
//! demultiplexes its datagrams to calls, and the port range the SIP legs take their RTP and
//! RTCP sockets from.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::debug;

use crate::error::{Error, Result};
use crate::relay::is_stun;
use queue::BrowserQueue;

mod batch;
mod pair;
mod queue;
mod session;
pub use batch::RecvBatch;
pub use pair::{PairInput, PairSession};
pub use session::{Engine, MediaInput, MediaSession};

/// A datagram for a call's browser leg.
#[derive(Debug)]
pub struct Datagram {
    /// Who sent it.
    pub source: SocketAddr,
    /// When it was read.
    pub at: Instant,
    /// What.
    pub data: Bytes,
}

#[derive(Debug)]
enum Command {
    Register {
        id: u64,
        ufrag: String,
        queue: BrowserQueue,
    },
    /// Another ufrag for a registration (an ICE restart's).
    Alias {
        id: u64,
        ufrag: String,
    },
    Unregister(u64),
}

/// The UDP port all browser peers share.
#[derive(Debug, Clone)]
pub struct BrowserPort {
    socket: Arc<UdpSocket>,
    commands: mpsc::UnboundedSender<Command>,
    next_id: Arc<AtomicU64>,
    /// Datagrams dropped because their call did not keep up, or because no call claimed them.
    dropped: Arc<AtomicU64>,
}

/// A call's claim on the browser port; dropping it releases the claim.
#[derive(Debug)]
pub struct Route {
    id: u64,
    commands: mpsc::UnboundedSender<Command>,
}

impl Route {
    /// Claims datagrams for another ufrag as well (the call's new one after an ICE restart,
    /// which may come from a new address).
    pub fn also(&self, ufrag: String) {
        let _ = self.commands.send(Command::Alias { id: self.id, ufrag });
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Unregister(self.id));
    }
}

/// The receive buffer asked for the shared port: every call's browser traffic comes through it.
const BUFFER: usize = 4 * 1024 * 1024;

impl BrowserPort {
    /// Binds the port and starts its demultiplexing task.
    pub fn bind(addr: SocketAddr) -> io::Result<BrowserPort> {
        let socket = bind_udp(addr, BUFFER)?;
        let socket = Arc::new(socket);
        let (commands, receiver) = mpsc::unbounded_channel();
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(demultiplex(socket.clone(), receiver, dropped.clone()));
        Ok(BrowserPort {
            socket,
            commands,
            next_id: Arc::new(AtomicU64::new(1)),
            dropped,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The socket, to send from.
    pub fn socket(&self) -> &Arc<UdpSocket> {
        &self.socket
    }

    /// Sends datagrams whose STUN USERNAME starts with `ufrag` (and everything else later from
    /// the addresses they came from) to `queue`.
    pub(crate) fn register(&self, ufrag: String, queue: BrowserQueue) -> Route {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.commands.send(Command::Register { id, ufrag, queue });
        Route {
            id,
            commands: self.commands.clone(),
        }
    }

    /// Datagrams dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// How many datagrams the demultiplexer reads at once (one `recvmmsg`) before it lets the calls
/// run.
const YIELD_EVERY: usize = 8;

/// Routes the shared port's datagrams: STUN by the local ufrag of its USERNAME, the rest by the
/// source address a STUN check came from.
async fn demultiplex(
    socket: Arc<UdpSocket>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    dropped: Arc<AtomicU64>,
) {
    let mut ufrags: HashMap<String, u64> = HashMap::new();
    let mut addresses: HashMap<SocketAddr, u64> = HashMap::new();
    let mut queues: HashMap<u64, BrowserQueue> = HashMap::new();
    let mut batch = RecvBatch::<YIELD_EVERY, 2048>::new();
    // The datagrams handed to calls are cut from this arena (one allocation per 64 KiB).
    let mut arena = BytesMut::with_capacity(64 * 1024);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Register { id, ufrag, queue }) => {
                    ufrags.insert(ufrag, id);
                    queues.insert(id, queue);
                }
                Some(Command::Alias { id, ufrag }) => {
                    if queues.contains_key(&id) {
                        ufrags.insert(ufrag, id);
                    }
                }
                Some(Command::Unregister(id)) => {
                    queues.remove(&id);
                    ufrags.retain(|_, owner| *owner != id);
                    addresses.retain(|_, owner| *owner != id);
                }
                None => return,
            },
            received = batch.recv(&socket) => {
                let Ok(count) = received else { continue };
                let at = Instant::now();
                for (data, source) in batch.iter() {
                    let owner = if is_stun(data) {
                        let owner = crate::stun::stun_ufrag(data)
                            .and_then(|ufrag| ufrags.get(ufrag))
                            .copied();
                        if let Some(owner) = owner {
                            addresses.insert(source, owner);
                        }
                        owner.or_else(|| addresses.get(&source).copied())
                    } else {
                        addresses.get(&source).copied()
                    };
                    let Some(queue) = owner.and_then(|owner| queues.get(&owner)) else {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    if arena.capacity() < data.len() {
                        arena.reserve(64 * 1024);
                    }
                    arena.extend_from_slice(data);
                    let data = arena.split().freeze();
                    if !queue.push(Datagram { source, at, data }) {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Every datagram wakes a call task, which runs after this one yields: reading
                // a long run in one go (up to the runtime's budget of 128) would hold the first
                // call's packet until the whole run is read, and delay the SIP side's packets
                // behind it as well. A short batch ends the run anyway: the socket is drained.
                if count == YIELD_EVERY {
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

/// The ports SIP legs take: an even RTP port and the odd RTCP port above it.
///
/// Ports are handed out at random from a list of free ones, so that a call's ports cannot be
/// guessed from another call's (RTP injection, "RTP bleed"), and an exhausted range is refused
/// at once instead of with a bind attempt per port.
#[derive(Debug)]
pub struct PortRange {
    ip: IpAddr,
    first: u16,
    last: u16,
    pool: Arc<Mutex<Pool>>,
}

/// The free RTP ports (even) of a range.
#[derive(Debug)]
struct Pool {
    free: Vec<u16>,
    in_use: u32,
    rng: fastrand::Rng,
}

/// How many free ports one allocation tries to bind before giving up (another program may
/// hold some of the range).
const BIND_ATTEMPTS: usize = 8;

/// A SIP leg's sockets; the pair returns to the range when dropped.
#[derive(Debug)]
pub struct PortPair {
    /// The RTP socket (even port).
    pub rtp: UdpSocket,
    /// The RTCP socket (the port above).
    pub rtcp: UdpSocket,
    port: u16,
    pool: Arc<Mutex<Pool>>,
}

impl Drop for PortPair {
    fn drop(&mut self) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.in_use = pool.in_use.saturating_sub(1);
            pool.free.push(self.port);
        }
    }
}

impl PortRange {
    /// The even ports of `first..=last` on `ip` (each with the odd port above it).
    pub fn new(ip: IpAddr, first: u16, last: u16) -> PortRange {
        let first = first + first % 2;
        let free: Vec<u16> = (first..last).step_by(2).collect();
        PortRange {
            ip,
            first,
            last,
            pool: Arc::new(Mutex::new(Pool {
                free,
                in_use: 0,
                rng: fastrand::Rng::new(),
            })),
        }
    }

    /// How many pairs are taken.
    pub fn in_use(&self) -> u32 {
        self.pool.lock().map_or(0, |pool| pool.in_use)
    }

    /// How many pairs are free.
    pub fn free(&self) -> usize {
        self.pool.lock().map_or(0, |pool| pool.free.len())
    }

    /// Binds a free pair chosen at random.
    pub fn allocate(&self) -> Result<PortPair> {
        let exhausted = || Error::NoPort(format!("{}-{}", self.first, self.last));
        let mut busy = Vec::new();
        let result = (|| {
            for _ in 0..BIND_ATTEMPTS {
                let port = {
                    let mut pool = self.pool.lock().map_err(|_| exhausted())?;
                    if pool.free.is_empty() {
                        return Err(exhausted());
                    }
                    let count = pool.free.len();
                    let index = pool.rng.usize(..count);
                    pool.free.swap_remove(index)
                };
                let bound = bind_udp(SocketAddr::new(self.ip, port), 256 * 1024).and_then(|rtp| {
                    Ok((
                        rtp,
                        bind_udp(SocketAddr::new(self.ip, port + 1), 64 * 1024)?,
                    ))
                });
                match bound {
                    Ok((rtp, rtcp)) => return Ok((port, rtp, rtcp)),
                    // Held by another program: tried again by later allocations.
                    Err(_) => busy.push(port),
                }
            }
            Err(exhausted())
        })();
        let mut pool = self.pool.lock().map_err(|_| exhausted())?;
        pool.free.extend(busy);
        match result {
            Ok((port, rtp, rtcp)) => {
                pool.in_use += 1;
                Ok(PortPair {
                    rtp,
                    rtcp,
                    port,
                    pool: self.pool.clone(),
                })
            }
            Err(error) => {
                debug!(
                    first = self.first,
                    last = self.last,
                    free = pool.free.len(),
                    "no RTP port pair could be had"
                );
                Err(error)
            }
        }
    }
}

fn bind_udp(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(socket)?;
    set_buffers(&socket, buffer);
    Ok(socket)
}

/// Raises the socket's buffers (the kernel caps them at `net.core.rmem_max`/`wmem_max`).
fn set_buffers(socket: &UdpSocket, size: usize) {
    let socket = socket2::SockRef::from(socket);
    let _ = socket.set_recv_buffer_size(size);
    let _ = socket.set_send_buffer_size(size);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_pairs_are_even_and_return_to_the_range() {
        let range = PortRange::new("127.0.0.1".parse().expect("ip"), 21_001, 21_011);
        let first = range.allocate().expect("a pair");
        let port = first.rtp.local_addr().expect("addr").port();
        assert_eq!(port % 2, 0);
        assert_eq!(first.rtcp.local_addr().expect("addr").port(), port + 1);
        assert_eq!(range.in_use(), 1);
        drop(first);
        assert_eq!(range.in_use(), 0);
    }

    /// A STUN check with `ufrag` as the local part of its USERNAME.
    fn check(ufrag: &str) -> Vec<u8> {
        let username = format!("{ufrag}:remote");
        let padded = username.len().div_ceil(4) * 4;
        let mut message = vec![0x00, 0x01];
        message.extend_from_slice(&u16::try_from(4 + padded).expect("short").to_be_bytes());
        message.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        message.extend_from_slice(&[7; 12]);
        message.extend_from_slice(&[0x00, 0x06]);
        message.extend_from_slice(&u16::try_from(username.len()).expect("short").to_be_bytes());
        message.extend_from_slice(username.as_bytes());
        message.resize(20 + 4 + padded, 0);
        message
    }

    /// A call's second ufrag (an ICE restart's) routes checks from a new address to it, and
    /// that address's later datagrams too; an unknown ufrag from an unknown address goes
    /// nowhere.
    #[tokio::test]
    async fn a_restarts_ufrag_from_a_new_address_reaches_the_call() {
        let port = BrowserPort::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let to = port.local_addr().expect("addr");
        let queue = BrowserQueue::default();
        let route = port.register("first".to_owned(), queue.clone());
        route.also("second".to_owned());
        let moved = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let stranger = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        // The commands reach the demultiplexer before the datagrams: same task, commands
        // are read as they come; give it a moment.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stranger.send_to(&check("unknown"), to).expect("send");
        moved.send_to(&check("second"), to).expect("send");
        moved.send_to(b"\x80media", to).expect("send");
        let wait = std::time::Duration::from_secs(2);
        let next = || std::future::poll_fn(|cx| queue.poll_pop(cx));
        let first = Some(tokio::time::timeout(wait, next()).await.expect("in time"));
        let second = Some(tokio::time::timeout(wait, next()).await.expect("in time"));
        let source = moved.local_addr().expect("addr");
        assert_eq!(first.map(|datagram| datagram.source), Some(source));
        assert_eq!(
            second.map(|datagram| datagram.data.to_vec()),
            Some(b"\x80media".to_vec())
        );
        assert_eq!(port.dropped(), 1, "the stranger's check");
    }

    /// Ports are not handed out in sequence, an exhausted range is refused, and a pair held by
    /// another program is skipped. (The range lies below the kernel's ephemeral ports, which
    /// other tests' sockets bound to port 0 may take meanwhile.)
    #[tokio::test]
    async fn ports_are_random_and_exhaustion_is_cheap() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let range = PortRange::new(ip, 20_000, 20_199);
        assert_eq!(range.free(), 100);
        let held = std::net::UdpSocket::bind((ip, 20_100)).expect("another program's port");
        let mut pairs = Vec::new();
        while let Ok(pair) = range.allocate() {
            pairs.push(pair);
        }
        // Every pair but the one another program holds (and, by chance, none other).
        assert!(pairs.len() >= 95, "{} pairs", pairs.len());
        let ports: Vec<u16> = pairs.iter().map(|pair| pair.port).collect();
        assert!(!ports.contains(&20_100));
        let in_order = ports
            .windows(2)
            .filter(|pair| pair[1] == pair[0] + 2)
            .count();
        assert!(
            in_order < 20,
            "{in_order} of {} in sequence: {ports:?}",
            ports.len()
        );
        // Exhausted: refused (at most a few bind attempts, on the one port left that is held).
        assert!(matches!(range.allocate(), Err(Error::NoPort(_))));
        assert_eq!(range.free(), 1);
        drop(held);
        pairs.clear();
        assert_eq!(range.in_use(), 0);
        assert_eq!(range.free(), 100);
    }
}
