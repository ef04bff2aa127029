//! The load generator's browsers, each on its own UDP socket, all driven from one thread with
//! one mio poll: lean audio peers (`lean.rs`) by default, or str0m peers (full ICE, DTLS-SRTP,
//! RTP mode), which video calls use and `--peers str0m` chooses for audio. Each sends 160-byte audio packets
//! at 50 per second, carrying its send time and a sequence number, and measures what comes
//! back: loss, round-trip time, interarrival jitter. In video mode a peer offers audio and VP8
//! video and sends on the video m-line instead: 1,000-byte packets at 120 per second (about
//! 1 Mbit/s), with a keyframe's 20 more packets every 3 s (paced over the next 20 ticks).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use crate::lean::Lean;
use media::rtp::RtpHeader;

/// Packets per second each peer sends (audio).
pub(crate) const RATE: u32 = 50;
const PAYLOAD: usize = 160;
/// Video: packets per second, their payload, and a keyframe's extra packets every 3 s (one
/// more per tick over as many ticks).
pub(crate) const VIDEO_RATE: u32 = 120;
const VIDEO_PAYLOAD: usize = 1000;
const KEYFRAME_EXTRA: u64 = 20;
const WAKER: Token = Token(usize::MAX);
const REFLECTOR: Token = Token(usize::MAX - 1);

/// What the control side asks of the loop.
pub(crate) enum Command {
    /// A new peer: its offer goes back on the channel. In video mode, `false` makes a peer
    /// with the video m-line alone (for a relay that does not bundle: rtpengine).
    Create(Sender<(usize, String)>, bool),
    /// The answer for peer `id`.
    Answer(usize, String),
    /// Start or stop sending on every connected peer.
    Sending(bool),
    /// Drop every peer.
    Clear,
    /// Report and reset the counters.
    Report(Sender<Report>),
    /// End the loop.
    Quit,
}

/// Counters over a measuring window.
#[derive(Debug, Default, Clone)]
pub(crate) struct Report {
    /// Peers with ICE and DTLS up.
    pub(crate) connected: usize,
    /// Peers.
    pub(crate) peers: usize,
    /// Packets sent.
    pub(crate) sent: u64,
    /// Packets that came back.
    pub(crate) received: u64,
    /// Round-trip times of the packets that came back, in microseconds.
    pub(crate) rtts: Vec<u32>,
    /// The interarrival jitter of each peer at the end of the window, in microseconds.
    pub(crate) jitters: Vec<u32>,
    /// The loop's own CPU time over the window (seconds).
    pub(crate) cpu: f64,
    /// RTP or RTCP datagrams that reached the peers' sockets (before decryption).
    pub(crate) datagrams: u64,
}

struct Peer {
    engine: Engine,
    socket: UdpSocket,
    /// Send ticks so far.
    ticks: u64,
    connected: bool,
    seq: u64,
    timestamp: u32,
    next_send: Instant,
    /// RFC 3550 jitter, in microseconds (scaled by 16), and the last transit time.
    jitter: u64,
    transit: Option<i64>,
    /// The deadline the engine asked for last (timers with another deadline are stale).
    timer: Option<Instant>,
}

/// What speaks WebRTC for a peer.
enum Engine {
    Lean(Box<Lean>),
    Str0m(Box<Str0mPeer>),
}

/// A str0m peer's own state.
struct Str0mPeer {
    rtc: Rtc,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    mid: Mid,
    /// Video mode: the video m-line we send on.
    video: Option<Mid>,
    /// The stream of our own packets coming back through a relay that keeps SSRCs (with the
    /// reflector's change) is declared.
    expecting: bool,
}

/// Runs the peers until told to quit. `base` is the address peers bind their sockets to;
/// `reflector` is the far end's RTP socket: every packet goes back where it came from, with
/// its SSRC changed (a relay that passes SSRCs through would otherwise hand the peer its own).
/// `lean`: audio peers are lean ones.
pub(crate) fn run(
    base: std::net::IpAddr,
    reflector: std::net::UdpSocket,
    commands: Receiver<Command>,
    waker_out: Sender<Arc<Waker>>,
    video: bool,
    lean: bool,
) {
    let rate = if video { VIDEO_RATE } else { RATE };
    let mut poll = Poll::new().expect("a poll");
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).expect("a waker"));
    let _ = reflector.set_nonblocking(true);
    let mut reflector = UdpSocket::from_std(reflector);
    poll.registry()
        .register(&mut reflector, REFLECTOR, Interest::READABLE)
        .expect("register the reflector");
    let _ = waker_out.send(waker);
    let mut events = Events::with_capacity(1024);
    let mut peers: Vec<Option<Peer>> = Vec::new();
    let mut timers: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut sending = false;
    let mut report = Report::default();
    let mut buffer = vec![0u8; 2048];
    let started = Instant::now();
    let mut cpu_mark = thread_cpu();
    loop {
        let now = Instant::now();
        let timeout = timers
            .peek()
            .map(|Reverse((at, _))| at.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        if poll.poll(&mut events, Some(timeout)).is_err() {
            continue;
        }
        for event in events.iter() {
            let token = event.token();
            if token == WAKER {
                continue;
            }
            if token == REFLECTOR {
                while let Ok((length, source)) = reflector.recv_from(&mut buffer) {
                    if length >= 12 {
                        for byte in &mut buffer[8..12] {
                            *byte ^= 0x5a;
                        }
                    }
                    let _ = reflector.send_to(&buffer[..length], source);
                }
                continue;
            }
            let Some(Some(peer)) = peers.get_mut(token.0) else {
                continue;
            };
            loop {
                match peer.socket.recv_from(&mut buffer) {
                    Ok((length, source)) => {
                        if (128..192).contains(&buffer[0]) {
                            report.datagrams += 1;
                        }
                        let now = Instant::now();
                        match &mut peer.engine {
                            Engine::Lean(lean) => {
                                if let Some(payload) =
                                    lean.handle(now, &buffer[..length], source, &peer.socket)
                                {
                                    let arrival = now.saturating_duration_since(started);
                                    record(
                                        &mut peer.jitter,
                                        &mut peer.transit,
                                        &mut report,
                                        payload,
                                        arrival,
                                    );
                                }
                            }
                            Engine::Str0m(engine) => {
                                if let Ok(receive) = Receive::new(
                                    Protocol::Udp,
                                    source,
                                    engine.local,
                                    &buffer[..length],
                                ) {
                                    let _ = engine.rtc.handle_input(Input::Receive(now, receive));
                                }
                                // str0m keeps one received RTP packet until polled: drained
                                // after each datagram, or a batch would lose all but its last.
                                drain(peer, token.0, started, &mut report, &mut timers);
                            }
                        }
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
            drain(peer, token.0, started, &mut report, &mut timers);
        }
        // Commands from the control side.
        while let Ok(command) = commands.try_recv() {
            match command {
                Command::Create(reply, with_audio) => {
                    let id = peers.len();
                    match Peer::new(base, video, with_audio, lean && !video) {
                        Ok((mut peer, offer)) => {
                            poll.registry()
                                .register(&mut peer.socket, Token(id), Interest::READABLE)
                                .expect("register a socket");
                            peers.push(Some(peer));
                            let _ = reply.send((id, offer));
                        }
                        Err(error) => eprintln!("a peer could not be made: {error}"),
                    }
                }
                Command::Answer(id, sdp) => {
                    if let Some(Some(peer)) = peers.get_mut(id) {
                        peer.accept(&sdp);
                        drain(peer, id, started, &mut report, &mut timers);
                    }
                }
                Command::Sending(on) => {
                    sending = on;
                    let now = Instant::now();
                    let count = peers.len().max(1) as u32;
                    for (index, peer) in peers
                        .iter_mut()
                        .enumerate()
                        .filter_map(|(i, p)| p.as_mut().map(|p| (i, p)))
                    {
                        // Spread the peers over the 20 ms period.
                        peer.next_send = now + Duration::from_secs(1) / rate * index as u32 / count;
                        timers.push(Reverse((peer.next_send, index)));
                    }
                }
                Command::Clear => {
                    for peer in peers.iter_mut().flatten() {
                        let _ = poll.registry().deregister(&mut peer.socket);
                    }
                    peers.clear();
                    timers.clear();
                    sending = false;
                }
                Command::Report(reply) => {
                    let cpu = thread_cpu();
                    report.cpu = cpu - cpu_mark;
                    cpu_mark = cpu;
                    report.peers = peers.iter().flatten().count();
                    report.connected = peers.iter().flatten().filter(|p| p.connected).count();
                    report.jitters = peers
                        .iter()
                        .flatten()
                        .filter(|p| p.connected)
                        .map(|p| (p.jitter >> 4) as u32)
                        .collect();
                    let _ = reply.send(std::mem::take(&mut report));
                }
                Command::Quit => return,
            }
        }
        // Timers: str0m's and the send ticks.
        let now = Instant::now();
        while let Some(Reverse((at, id))) = timers.peek().copied() {
            if at > now {
                break;
            }
            timers.pop();
            let Some(Some(peer)) = peers.get_mut(id) else {
                continue;
            };
            let send_due = sending && peer.connected && peer.next_send <= now;
            let timer_due = peer.timer.is_some_and(|timer| timer <= now);
            if !send_due && !timer_due {
                continue; // A stale entry.
            }
            if timer_due {
                peer.timer = None;
            }
            if send_due {
                report.sent += peer.send(started, now);
                peer.next_send += Duration::from_secs(1) / rate;
                if peer.next_send < now {
                    peer.next_send = now + Duration::from_secs(1) / rate;
                }
                timers.push(Reverse((peer.next_send, id)));
            }
            match &mut peer.engine {
                Engine::Lean(lean) => lean.handle_timeout(now, &peer.socket),
                Engine::Str0m(engine) => {
                    let _ = engine.rtc.handle_input(Input::Timeout(now));
                }
            }
            drain(peer, id, started, &mut report, &mut timers);
        }
    }
}

/// Sends what the peer has to send, handles its events, and schedules its next timer.
fn drain(
    peer: &mut Peer,
    id: usize,
    started: Instant,
    report: &mut Report,
    timers: &mut BinaryHeap<Reverse<(Instant, usize)>>,
) {
    let mut schedule = |timer: &mut Option<Instant>, at: Instant| {
        // One live timer per peer: a new one only when the deadline moves earlier.
        if timer.is_none_or(|current| at < current) {
            *timer = Some(at);
            timers.push(Reverse((at, id)));
        }
    };
    let engine = match &mut peer.engine {
        Engine::Lean(lean) => {
            peer.connected |= lean.connected();
            if let Some(at) = lean.poll_timeout() {
                schedule(&mut peer.timer, at);
            }
            return;
        }
        Engine::Str0m(engine) => engine,
    };
    loop {
        match engine.rtc.poll_output() {
            Ok(Output::Transmit(transmit)) => {
                let _ = peer
                    .socket
                    .send_to(&transmit.contents, transmit.destination);
            }
            Ok(Output::Timeout(at)) => {
                schedule(&mut peer.timer, at);
                return;
            }
            Ok(Output::Event(event)) => match event {
                Event::Connected => peer.connected = true,
                Event::RtpPacket(packet) => {
                    let arrival = packet.timestamp.saturating_duration_since(started);
                    record(
                        &mut peer.jitter,
                        &mut peer.transit,
                        report,
                        &packet.payload,
                        arrival,
                    );
                }
                _ => {}
            },
            Err(_) => return,
        }
    }
}

/// One of our packets came back (its payload) at `arrival` since the start: its round trip,
/// and the peer's jitter.
fn record(
    jitter: &mut u64,
    transit: &mut Option<i64>,
    report: &mut Report,
    payload: &[u8],
    arrival: Duration,
) {
    let Some(sent) = payload.get(8..16) else {
        return;
    };
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(sent);
    let sent = u64::from_be_bytes(bytes);
    let now = arrival.as_micros() as u64;
    report.received += 1;
    report.rtts.push(now.saturating_sub(sent) as u32);
    // Jitter of the arrival against the 20 ms send rhythm (RFC 3550 A.8).
    let this = now as i64 - sent as i64;
    if let Some(previous) = *transit {
        let d = (this - previous).unsigned_abs();
        *jitter = *jitter + d - ((*jitter + 8) >> 4);
    }
    *transit = Some(this);
}

impl Peer {
    /// A peer on a socket of its own, lean or str0m, and its offer.
    fn new(
        base: std::net::IpAddr,
        video: bool,
        with_audio: bool,
        lean: bool,
    ) -> std::io::Result<(Peer, String)> {
        let socket = std::net::UdpSocket::bind(SocketAddr::new(base, 0))?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let socket = UdpSocket::from_std(socket);
        let (engine, offer) = if lean {
            let (lean, offer) = Lean::new(local)?;
            (Engine::Lean(Box::new(lean)), offer)
        } else {
            let (engine, offer) = Str0mPeer::new(local, video, with_audio)?;
            (Engine::Str0m(Box::new(engine)), offer)
        };
        Ok((
            Peer {
                engine,
                socket,
                ticks: 0,
                connected: false,
                seq: 1,
                timestamp: 0,
                next_send: Instant::now(),
                jitter: 0,
                transit: None,
                timer: None,
            },
            offer,
        ))
    }

    fn accept(&mut self, sdp: &str) {
        let outcome = match &mut self.engine {
            Engine::Lean(lean) => lean.accept(Instant::now(), sdp),
            Engine::Str0m(engine) => engine.accept(sdp),
        };
        if let Err(error) = outcome {
            eprintln!("an answer was refused: {error}");
        }
    }

    /// Sends this tick's packets; returns how many.
    fn send(&mut self, started: Instant, now: Instant) -> u64 {
        let sent = now.saturating_duration_since(started).as_micros() as u64;
        let engine = match &mut self.engine {
            Engine::Lean(lean) => {
                let mut payload = [0xffu8; PAYLOAD];
                payload[..8].copy_from_slice(&self.seq.to_be_bytes());
                payload[8..16].copy_from_slice(&sent.to_be_bytes());
                let header = RtpHeader {
                    pt: 0,
                    marker: false,
                    seq: self.seq as u16,
                    timestamp: self.timestamp,
                    ssrc: lean.ssrc,
                };
                let sent = lean.send(header, &payload, &self.socket);
                self.seq += 1;
                self.timestamp = self.timestamp.wrapping_add(8000 / RATE);
                self.ticks += 1;
                return u64::from(sent);
            }
            Engine::Str0m(engine) => engine,
        };
        let (mid, size, count, clock) = match engine.video {
            // A keyframe every 3 s: its extra packets paced over the next ticks, as a
            // browser's pacer spreads a keyframe (sent at once, a burst of 20 overflows
            // receive queues on this machine for every system alike).
            Some(video) if self.ticks % u64::from(VIDEO_RATE * 3) < KEYFRAME_EXTRA => {
                (video, VIDEO_PAYLOAD, 2, 90_000 / VIDEO_RATE)
            }
            Some(video) => (video, VIDEO_PAYLOAD, 1, 90_000 / VIDEO_RATE),
            None => (engine.mid, PAYLOAD, 1, 8000 / RATE),
        };
        let mut api = engine.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return 0;
        };
        let ssrc = *stream.ssrc();
        if !engine.expecting {
            engine.expecting = true;
            api.expect_stream_rx((ssrc ^ 0x5a5a_5a5a).into(), None, mid, None);
        }
        let pt = match engine.video {
            Some(_) => engine
                .rtc
                .codec_config()
                .params()
                .iter()
                .find(|params| params.spec().codec == Codec::Vp8)
                .map_or(96, |params| *params.pt()),
            None => stream_pt(),
        };
        let mut payload = vec![0xffu8; size];
        payload[8..16].copy_from_slice(&sent.to_be_bytes());
        let mut api = engine.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return 0;
        };
        for _ in 0..count {
            payload[..8].copy_from_slice(&self.seq.to_be_bytes());
            stream.write_rtp(RtpWrite::new(
                pt.into(),
                SeqNo::from(self.seq),
                self.timestamp,
                now,
                &payload[..],
            ));
            self.seq += 1;
        }
        self.timestamp = self.timestamp.wrapping_add(clock);
        self.ticks += 1;
        count
    }
}

impl Str0mPeer {
    fn new(
        local: SocketAddr,
        video: bool,
        with_audio: bool,
    ) -> std::io::Result<(Str0mPeer, String)> {
        let mut config = RtcConfig::new().clear_codecs().set_rtp_mode(true);
        config.codec_config().enable_pcmu(true, false);
        if video {
            config.codec_config().enable_vp8(true);
        }
        let mut rtc = config.build(Instant::now());
        let candidate =
            Candidate::host(local, "udp").map_err(|e| std::io::Error::other(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        let audio = (with_audio || !video)
            .then(|| api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None));
        let video =
            video.then(|| api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None));
        let mid = audio
            .or(video)
            .ok_or_else(|| std::io::Error::other("no m-line"))?;
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| std::io::Error::other("no offer"))?;
        Ok((
            Str0mPeer {
                rtc,
                local,
                pending: Some(pending),
                mid,
                video,
                expecting: false,
            },
            offer.to_sdp_string(),
        ))
    }

    fn accept(&mut self, sdp: &str) -> Result<(), String> {
        let pending = self.pending.take().ok_or("no offer pending")?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|error| error.to_string())?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|error| error.to_string())
    }
}

/// PCMU's static payload type.
fn stream_pt() -> u8 {
    let _ = Codec::PCMU;
    0
}

/// This thread's CPU time (user + system), in seconds.
pub(crate) fn thread_cpu() -> f64 {
    let Ok(text) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}
