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

mod batch;
mod pair;
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

/// What the demultiplexer hands a call.
#[derive(Debug)]
pub enum Delivery {
    /// A datagram for the call's browser leg.
    Datagram(Datagram),
    /// A socket on the shared port connected to the browser at this address: the kernel hands
    /// it that browser's later datagrams itself, and the call sends to the browser through it.
    Connected(SocketAddr, UdpSocket),
}

/// How the shared port's datagrams reach their calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserSockets {
    /// Every datagram is read from the shared socket and handed to its call by the
    /// demultiplexing task.
    Shared,
    /// Once media flows from a browser's address, its call gets a socket of its own on the
    /// same port, connected to that address (`SO_REUSEPORT`): the kernel delivers to it
    /// directly, sparing a task's wake-up and a queue per datagram. The shared socket keeps
    /// what no connected socket takes (connectivity checks, a new address after an ICE
    /// restart).
    Connected,
}

impl BrowserSockets {
    /// [`BrowserSockets::Connected`] where the kernel finds a connected socket by its
    /// addresses in one step (Linux 6.13 and later, with the port bound to one address, not
    /// the wildcard); [`BrowserSockets::Shared`] elsewhere, where every datagram would walk
    /// the list of the port's sockets.
    pub fn auto(addr: SocketAddr) -> BrowserSockets {
        if !addr.ip().is_unspecified() && kernel_at_least(6, 13) {
            BrowserSockets::Connected
        } else {
            BrowserSockets::Shared
        }
    }
}

/// Whether the running kernel's release is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|release| release_at_least(&release, major, minor))
        .unwrap_or(false)
}

fn release_at_least(release: &str, major: u32, minor: u32) -> Option<bool> {
    let mut parts = release.trim().split(['.', '-']);
    let found: u32 = parts.next()?.parse().ok()?;
    let found_minor: u32 = parts.next()?.parse().ok()?;
    Some((found, found_minor) >= (major, minor))
}

#[derive(Debug)]
enum Command {
    Register {
        id: u64,
        ufrag: String,
        sender: mpsc::Sender<Delivery>,
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
    sockets: BrowserSockets,
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
    /// Binds the port and starts its demultiplexing task, with connected sockets where the
    /// kernel makes them pay ([`BrowserSockets::auto`]).
    pub fn bind(addr: SocketAddr) -> io::Result<BrowserPort> {
        BrowserPort::bind_with(addr, BrowserSockets::auto(addr))
    }

    /// Binds the port and starts its demultiplexing task, its calls served as `sockets` says.
    pub fn bind_with(addr: SocketAddr, sockets: BrowserSockets) -> io::Result<BrowserPort> {
        let socket = match sockets {
            BrowserSockets::Shared => bind_udp(addr, BUFFER)?,
            BrowserSockets::Connected => {
                let socket = reuse_port_socket(addr)?;
                let socket = UdpSocket::from_std(socket.into())?;
                set_buffers(&socket, BUFFER);
                socket
            }
        };
        let socket = Arc::new(socket);
        let (commands, receiver) = mpsc::unbounded_channel();
        let dropped = Arc::new(AtomicU64::new(0));
        let demux = Demux {
            ufrags: HashMap::new(),
            addresses: HashMap::new(),
            senders: HashMap::new(),
            connected: HashMap::new(),
            local: (sockets == BrowserSockets::Connected)
                .then(|| socket.local_addr())
                .transpose()?,
            arena: BytesMut::with_capacity(64 * 1024),
            dropped: dropped.clone(),
        };
        tokio::spawn(demultiplex(socket.clone(), receiver, demux));
        Ok(BrowserPort {
            socket,
            sockets,
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

    /// How the port's datagrams reach their calls.
    pub fn sockets(&self) -> BrowserSockets {
        self.sockets
    }

    /// Sends datagrams whose STUN USERNAME starts with `ufrag` (and everything else later from
    /// the addresses they came from) to `sender`.
    pub fn register(&self, ufrag: String, sender: mpsc::Sender<Delivery>) -> Route {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.commands.send(Command::Register { id, ufrag, sender });
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

/// The most sockets of its own a call gets (a browser's address, then a new one after an ICE
/// restart); past them its datagrams come through the shared socket.
const CONNECTED_PER_CALL: u8 = 2;

/// The demultiplexer's tables.
#[derive(Debug)]
struct Demux {
    ufrags: HashMap<String, u64>,
    addresses: HashMap<SocketAddr, u64>,
    senders: HashMap<u64, mpsc::Sender<Delivery>>,
    /// The addresses given a connected socket (or refused one), with their call.
    connected: HashMap<SocketAddr, u64>,
    /// The port's address, when calls get connected sockets.
    local: Option<SocketAddr>,
    /// The datagrams handed to calls are cut from this arena (one allocation per 64 KiB).
    arena: BytesMut,
    dropped: Arc<AtomicU64>,
}

impl Demux {
    fn command(&mut self, command: Command) {
        match command {
            Command::Register { id, ufrag, sender } => {
                self.ufrags.insert(ufrag, id);
                self.senders.insert(id, sender);
            }
            Command::Alias { id, ufrag } => {
                if self.senders.contains_key(&id) {
                    self.ufrags.insert(ufrag, id);
                }
            }
            Command::Unregister(id) => {
                self.senders.remove(&id);
                self.ufrags.retain(|_, owner| *owner != id);
                self.addresses.retain(|_, owner| *owner != id);
                self.connected.retain(|_, owner| *owner != id);
            }
        }
    }

    /// Hands a datagram to its call: STUN by the local ufrag of its USERNAME, the rest by the
    /// source address a STUN check came from. Media from an address gives its call a
    /// connected socket for it, when the port makes them.
    fn route(&mut self, data: &[u8], source: SocketAddr, at: Instant) {
        let stun = is_stun(data);
        let owner = if stun {
            let owner = crate::stun::stun_ufrag(data)
                .and_then(|ufrag| self.ufrags.get(ufrag))
                .copied();
            if let Some(owner) = owner {
                self.addresses.insert(source, owner);
            }
            owner.or_else(|| self.addresses.get(&source).copied())
        } else {
            self.addresses.get(&source).copied()
        };
        let Some(owner) = owner else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if !stun && let Some(local) = self.local {
            self.connect(owner, local, source, at);
        }
        self.deliver(owner, data, source, at);
    }

    fn deliver(&mut self, owner: u64, data: &[u8], source: SocketAddr, at: Instant) {
        let Some(sender) = self.senders.get(&owner) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if self.arena.capacity() < data.len() {
            self.arena.reserve(64 * 1024);
        }
        self.arena.extend_from_slice(data);
        let data = self.arena.split().freeze();
        if sender
            .try_send(Delivery::Datagram(Datagram { source, at, data }))
            .is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Gives `owner` a socket connected to `peer`, once per address and at most
    /// [`CONNECTED_PER_CALL`] per call. Media comes only on the pair ICE chose, so the
    /// addresses of checks that lost get none.
    fn connect(&mut self, owner: u64, local: SocketAddr, peer: SocketAddr, at: Instant) {
        if self.connected.contains_key(&peer) {
            return;
        }
        let count = self.connected.values().filter(|&&id| id == owner).count();
        if count >= usize::from(CONNECTED_PER_CALL) {
            return;
        }
        // Recorded even when it fails: the shared socket goes on serving the address, and the
        // next datagram does not try again.
        self.connected.insert(peer, owner);
        let socket = match connected_socket(local, peer) {
            Ok(socket) => socket,
            Err(error) => {
                debug!(%peer, %error, "no connected socket for a browser");
                return;
            }
        };
        // Between its bind and its connect the socket was one more unconnected socket of the
        // port, which the kernel may have handed another browser's datagram: those go where
        // they belong.
        let mut stray = [0u8; 2048];
        while let Ok((length, source)) = socket.try_recv_from(&mut stray) {
            let owner = self.addresses.get(&source).copied();
            match owner {
                Some(owner) => self.deliver(owner, &stray[..length], source, at),
                None => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Some(sender) = self.senders.get(&owner) {
            // A call that cannot take it now keeps the shared socket for this address.
            let _ = sender.try_send(Delivery::Connected(peer, socket));
        }
    }
}

/// How many datagrams the demultiplexer reads at once (one `recvmmsg`) before it lets the calls
/// run.
const YIELD_EVERY: usize = 8;

/// Routes the shared port's datagrams to their calls.
async fn demultiplex(
    socket: Arc<UdpSocket>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut demux: Demux,
) {
    let mut batch = RecvBatch::<YIELD_EVERY, 2048>::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => demux.command(command),
                None => return,
            },
            received = batch.recv(&socket) => {
                let Ok(count) = received else { continue };
                let at = Instant::now();
                for (data, source) in batch.iter() {
                    demux.route(data, source, at);
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

/// A UDP socket that may share its port with others (`SO_REUSEPORT`), not yet bound.
fn reuse_port_socket(addr: SocketAddr) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReusePort, &true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// A socket on the shared port `local`, connected to `peer`.
fn connected_socket(local: SocketAddr, peer: SocketAddr) -> io::Result<UdpSocket> {
    let socket = reuse_port_socket(local)?;
    socket.connect(&peer.into())?;
    UdpSocket::from_std(socket.into())
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

    /// The next delivery's datagram (panics on a socket).
    async fn datagram(receiver: &mut mpsc::Receiver<Delivery>) -> Datagram {
        let wait = std::time::Duration::from_secs(2);
        match tokio::time::timeout(wait, receiver.recv()).await {
            Ok(Some(Delivery::Datagram(datagram))) => datagram,
            other => panic!("expected a datagram, got {other:?}"),
        }
    }

    /// A call's second ufrag (an ICE restart's) routes checks from a new address to it, and
    /// that address's later datagrams too; an unknown ufrag from an unknown address goes
    /// nowhere.
    #[tokio::test]
    async fn a_restarts_ufrag_from_a_new_address_reaches_the_call() {
        let addr = "127.0.0.1:0".parse().expect("addr");
        let port = BrowserPort::bind_with(addr, BrowserSockets::Shared).expect("bind");
        let to = port.local_addr().expect("addr");
        let (sender, mut receiver) = mpsc::channel(8);
        let route = port.register("first".to_owned(), sender);
        route.also("second".to_owned());
        let moved = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let stranger = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        // The commands reach the demultiplexer before the datagrams: same task, commands
        // are read as they come; give it a moment.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stranger.send_to(&check("unknown"), to).expect("send");
        moved.send_to(&check("second"), to).expect("send");
        moved.send_to(b"\x80media", to).expect("send");
        let first = datagram(&mut receiver).await;
        let second = datagram(&mut receiver).await;
        let source = moved.local_addr().expect("addr");
        assert_eq!(first.source, source);
        assert_eq!(second.data.to_vec(), b"\x80media".to_vec());
        assert_eq!(port.dropped(), 1, "the stranger's check");
    }

    /// With connected sockets, a browser's first media gives its call a socket connected to
    /// it on the shared port: its later datagrams come there and not through the queue, what
    /// the call sends through it comes from the shared port, and another address of the call
    /// (checks only) stays on the shared socket.
    #[tokio::test]
    async fn media_from_a_browser_gives_its_call_a_connected_socket() {
        let addr = "127.0.0.1:0".parse().expect("addr");
        let port = BrowserPort::bind_with(addr, BrowserSockets::Connected).expect("bind");
        let to = port.local_addr().expect("addr");
        let (sender, mut receiver) = mpsc::channel(8);
        let _route = port.register("call".to_owned(), sender);
        let browser = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let other = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        browser.send_to(&check("call"), to).expect("send");
        assert!(is_stun(&datagram(&mut receiver).await.data));
        browser.send_to(b"\x80first", to).expect("send");
        let wait = std::time::Duration::from_secs(2);
        let Ok(Some(Delivery::Connected(peer, socket))) =
            tokio::time::timeout(wait, receiver.recv()).await
        else {
            panic!("no connected socket");
        };
        assert_eq!(peer, browser.local_addr().expect("addr"));
        assert_eq!(socket.local_addr().expect("addr"), to);
        assert_eq!(
            datagram(&mut receiver).await.data.to_vec(),
            b"\x80first".to_vec()
        );
        // Later media: on the connected socket only.
        browser.send_to(b"\x80second", to).expect("send");
        let mut buffer = [0u8; 64];
        let (length, source) = tokio::time::timeout(wait, socket.recv_from(&mut buffer))
            .await
            .expect("in time")
            .expect("recv");
        assert_eq!((&buffer[..length], source), (&b"\x80second"[..], peer));
        assert!(
            receiver.try_recv().is_err(),
            "not through the queue as well"
        );
        // Sent through it: from the shared port's address.
        socket.send(b"back").await.expect("send");
        let (length, from) = browser.recv_from(&mut buffer).expect("recv");
        assert_eq!((&buffer[..length], from), (&b"back"[..], to));
        // Another address's check still comes through the queue.
        other.send_to(&check("call"), to).expect("send");
        assert_eq!(
            datagram(&mut receiver).await.source,
            other.local_addr().expect("addr")
        );
        assert_eq!(port.dropped(), 0);
    }

    #[test]
    fn kernel_releases_are_compared_by_major_and_minor() {
        assert_eq!(release_at_least("6.18.44-fc-v1252\n", 6, 13), Some(true));
        assert_eq!(release_at_least("6.13.0", 6, 13), Some(true));
        assert_eq!(release_at_least("6.1.0-26-amd64", 6, 13), Some(false));
        assert_eq!(release_at_least("5.19.2", 6, 13), Some(false));
        assert_eq!(release_at_least("7.0", 6, 13), Some(true));
        assert_eq!(release_at_least("garbage", 6, 13), None);
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
