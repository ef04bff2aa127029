//! One call's media I/O, for whatever sans-IO engine carries the call's media (a [`Relay`], the
//! [`Echo`]): its claim on the shared browser port and the queue that claim fills, the SIP
//! leg's port pair when it has one, and the engine's timer. The call's task selects on
//! [`MediaSession::next`] beside its own signalling, feeds what came with
//! [`MediaSession::feed`], and sends what the engine has with [`MediaSession::flush`]: one
//! drive loop, whoever owns the engine.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::time::Sleep;

use super::{BrowserPort, BrowserQueue, Datagram, PortPair, RecvBatch, Route};
use crate::echo::Echo;
use crate::relay::{Output, Relay};

/// What one read takes from a SIP-side RTP port: up to 4 datagrams (a phone sends one every
/// 20 ms, a few at once for video frames), each up to 2048 bytes.
type RtpBatch = RecvBatch<4, 2048>;
/// From an RTCP port: reports, a few a second.
type RtcpBatch = RecvBatch<2, 1500>;

thread_local! {
    /// The read buffers of every session whose task runs on this thread. A session reads a
    /// SIP-side socket and gives what it read to its engine in one call ([`MediaSession::feed`]),
    /// so nothing else can read in between and one set serves them all: 11 KiB per thread
    /// instead of per call, and buffers that stay in the cache.
    static BATCHES: RefCell<(RtpBatch, RtcpBatch)> =
        RefCell::new((RtpBatch::new(), RtcpBatch::new()));
}

/// A sans-IO media engine a session drives.
pub trait Engine {
    /// A datagram from the browser (on the shared port).
    fn handle_browser(&mut self, now: Instant, source: SocketAddr, data: &[u8]);
    /// A datagram from the SIP side, on the RTP port or (`rtcp_port`) the RTCP port.
    fn handle_sip(&mut self, now: Instant, source: SocketAddr, data: &[u8], rtcp_port: bool);
    /// A datagram from the SIP side's video, on the video RTP port or (`rtcp_port`) its RTCP
    /// port. Engines without video ignore it.
    fn handle_sip_video(
        &mut self,
        _now: Instant,
        _source: SocketAddr,
        _data: &[u8],
        _rtcp_port: bool,
    ) {
    }
    /// Timers that are due.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send, or when to call back.
    fn poll_output(&mut self) -> Output<'_>;
}

impl Engine for Relay {
    fn handle_browser(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        Relay::handle_browser(self, now, source, data);
    }

    fn handle_sip(&mut self, now: Instant, source: SocketAddr, data: &[u8], rtcp_port: bool) {
        Relay::handle_sip(self, now, source, data, rtcp_port);
    }

    fn handle_sip_video(&mut self, now: Instant, source: SocketAddr, data: &[u8], rtcp_port: bool) {
        Relay::handle_sip_video(self, now, source, data, rtcp_port);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Relay::handle_timeout(self, now);
    }

    fn poll_output(&mut self) -> Output<'_> {
        Relay::poll_output(self)
    }
}

impl Engine for Echo {
    fn handle_browser(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        Echo::handle_browser(self, now, source, data);
    }

    /// The echo has no SIP leg.
    fn handle_sip(&mut self, _: Instant, _: SocketAddr, _: &[u8], _: bool) {}

    fn handle_timeout(&mut self, now: Instant) {
        Echo::handle_timeout(self, now);
    }

    fn poll_output(&mut self) -> Output<'_> {
        Echo::poll_output(self)
    }
}

/// What came for the engine (the data stays in the session until [`MediaSession::feed`]).
#[derive(Debug)]
pub enum MediaInput {
    /// A datagram from the browser.
    Browser(Datagram),
    /// Datagrams wait on a SIP-side port (read by [`MediaSession::feed`]): the RTP port or
    /// (`rtcp`) the RTCP port, of the audio or (`video`) the video port pair.
    Sip {
        /// On the video port pair.
        video: bool,
        /// On the RTCP port.
        rtcp: bool,
    },
    /// The engine's timer fired.
    Timeout,
    /// Nothing: a socket error, or the browser port's queue closed.
    Nothing,
}

/// One call's media I/O.
#[derive(Debug)]
pub struct MediaSession {
    browser: Arc<UdpSocket>,
    port: BrowserPort,
    /// What the browser port has for this call.
    queue: BrowserQueue,
    route: Option<Route>,
    ports: Option<PortPair>,
    /// The SIP leg's video port pair, when the call has video.
    video_ports: Option<PortPair>,
    timer: Pin<Box<Sleep>>,
    /// When the timer is set for (it only ever moves earlier between fires).
    armed: Option<Instant>,
    /// When the engine wants its timer.
    deadline: Option<Instant>,
}

impl Drop for MediaSession {
    fn drop(&mut self) {
        // The port may push until it reads the route's end: nothing more is kept.
        self.queue.close();
    }
}

impl MediaSession {
    /// A session on the shared browser port, with the SIP leg's ports when there is one.
    pub fn new(port: &BrowserPort, ports: Option<PortPair>) -> MediaSession {
        MediaSession {
            browser: port.socket().clone(),
            port: port.clone(),
            queue: BrowserQueue::default(),
            route: None,
            ports,
            video_ports: None,
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            armed: None,
            deadline: None,
        }
    }

    /// Claims the browser datagrams for the ICE username fragment `ufrag` (and, once learnt,
    /// their source address); the claim ends with the session. A later ufrag (after an ICE
    /// restart) is claimed as well.
    pub fn claim(&mut self, ufrag: String) {
        match &self.route {
            // A new ufrag (an ICE restart): claimed as well.
            Some(route) => route.also(ufrag),
            None => self.route = Some(self.port.register(ufrag, self.queue.clone())),
        }
    }

    /// Gives the session the SIP leg's video port pair.
    pub fn add_video_ports(&mut self, ports: PortPair) {
        self.video_ports = Some(ports);
    }

    /// The SIP leg's RTP address (the bound one), when there is a leg.
    pub fn sip_port(&self) -> Option<u16> {
        let ports = self.ports.as_ref()?;
        ports.rtp.local_addr().ok().map(|addr| addr.port())
    }

    /// Waits for the next thing for the engine. Cancel-safe: it can lose a race in a select
    /// without losing a datagram. Media goes first: it arrives 100 times a second.
    pub async fn next(&mut self) -> MediaInput {
        if let Some(deadline) = self.deadline
            && self.armed.is_none_or(|armed| deadline < armed)
        {
            // A later deadline lets the timer fire early, which costs one spare poll of the
            // engine, instead of a timer-wheel update per packet.
            self.armed = Some(deadline);
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
        }
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// One poll of everything the session waits on, media first. The sockets are polled for
    /// readiness directly (their reader's waker slot) rather than through a future per socket
    /// and wait: a call waits on up to four sockets a hundred times a second or more.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<MediaInput> {
        if let Poll::Ready(datagram) = self.queue.poll_pop(cx) {
            return Poll::Ready(MediaInput::Browser(datagram));
        }
        let ready = |polled: Poll<std::io::Result<()>>, video, rtcp| match polled {
            Poll::Ready(Ok(())) => Some(MediaInput::Sip { video, rtcp }),
            Poll::Ready(Err(_)) => Some(MediaInput::Nothing),
            Poll::Pending => None,
        };
        for (ports, video) in [(&self.ports, false), (&self.video_ports, true)] {
            let Some(ports) = ports else { continue };
            if let Some(input) = ready(ports.rtp.poll_recv_ready(cx), video, false) {
                return Poll::Ready(input);
            }
            if let Some(input) = ready(ports.rtcp.poll_recv_ready(cx), video, true) {
                return Poll::Ready(input);
            }
        }
        if self.armed.is_some() && self.timer.as_mut().poll(cx).is_ready() {
            self.armed = None;
            self.deadline = None;
            return Poll::Ready(MediaInput::Timeout);
        }
        Poll::Pending
    }

    /// Gives what [`MediaSession::next`] found to the engine, with whatever else is already
    /// waiting on the same socket (a batch, before the engine's output is polled).
    pub fn feed(&mut self, engine: &mut impl Engine, input: MediaInput) {
        match input {
            MediaInput::Browser(datagram) => {
                engine.handle_browser(datagram.at, datagram.source, &datagram.data);
                while let Some(datagram) = self.queue.pop() {
                    // The WebRTC stack holds one received RTP packet until its output is
                    // polled: a second datagram fed before that would overwrite the first
                    // (half of a video frame's packets, which come in bursts).
                    self.flush(engine);
                    engine.handle_browser(datagram.at, datagram.source, &datagram.data);
                }
            }
            MediaInput::Sip { video, rtcp } => {
                let now = Instant::now();
                let mut give = |data: &[u8], source: SocketAddr| {
                    if video {
                        engine.handle_sip_video(now, source, data, rtcp);
                    } else {
                        engine.handle_sip(now, source, data, rtcp);
                    }
                };
                let ports = if video {
                    &self.video_ports
                } else {
                    &self.ports
                };
                let Some(ports) = ports else { return };
                // A readiness that turns out stale reads nothing and is cleared; the next wait
                // polls the socket again.
                BATCHES.with_borrow_mut(|(rtp_batch, rtcp_batch)| {
                    if rtcp {
                        if rtcp_batch.try_recv(&ports.rtcp).is_ok() {
                            rtcp_batch.iter().for_each(|(d, s)| give(d, s));
                        }
                    } else if rtp_batch.try_recv(&ports.rtp).is_ok() {
                        rtp_batch.iter().for_each(|(d, s)| give(d, s));
                    }
                });
            }
            MediaInput::Timeout => engine.handle_timeout(Instant::now()),
            MediaInput::Nothing => {}
        }
    }

    /// Sends everything the engine has for the network and learns when it wants its timer.
    /// Sends never wait: a full socket buffer drops the datagram, as the network would.
    pub fn flush(&mut self, engine: &mut impl Engine) {
        loop {
            match engine.poll_output() {
                Output::Browser { destination, data } => {
                    let _ = self.browser.try_send_to(data, destination);
                }
                Output::SipRtp { destination, data } => {
                    if let Some(ports) = &self.ports {
                        let _ = ports.rtp.try_send_to(data, destination);
                    }
                }
                Output::SipRtcp { destination, data } => {
                    if let Some(ports) = &self.ports {
                        let _ = ports.rtcp.try_send_to(data, destination);
                    }
                }
                Output::SipVideoRtp { destination, data } => {
                    if let Some(ports) = &self.video_ports {
                        let _ = ports.rtp.try_send_to(data, destination);
                    }
                }
                Output::SipVideoRtcp { destination, data } => {
                    if let Some(ports) = &self.video_ports {
                        let _ = ports.rtcp.try_send_to(data, destination);
                    }
                }
                Output::Timeout(at) => {
                    self.deadline = Some(at);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::driver::PortRange;

    /// An engine that records what it is given and sends the last SIP datagram back to its
    /// source, asking for its timer at `deadline`.
    #[derive(Default)]
    struct Recorder {
        heard: Vec<Vec<u8>>,
        timeouts: usize,
        reply_to: Option<SocketAddr>,
        reply: Vec<u8>,
        deadline: Option<Instant>,
    }

    impl Engine for Recorder {
        fn handle_browser(&mut self, _: Instant, _: SocketAddr, _: &[u8]) {}

        fn handle_sip(&mut self, _: Instant, source: SocketAddr, data: &[u8], _: bool) {
            self.heard.push(data.to_vec());
            self.reply_to = Some(source);
            self.reply = data.to_vec();
        }

        fn handle_timeout(&mut self, _: Instant) {
            self.timeouts += 1;
            self.deadline = None;
        }

        fn poll_output(&mut self) -> Output<'_> {
            if let Some(destination) = self.reply_to.take() {
                return Output::SipRtp {
                    destination,
                    data: &self.reply,
                };
            }
            Output::Timeout(
                self.deadline
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
            )
        }
    }

    /// Datagrams on the SIP leg's RTP port reach the engine (a burst in one feed), what the
    /// engine sends leaves from that port, and the engine's timer fires when it asked.
    #[tokio::test]
    async fn a_session_feeds_its_engine_and_sends_what_it_has() {
        let browser = BrowserPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let ports = PortRange::new([127, 0, 0, 1].into(), 41_000, 41_100)
            .allocate()
            .unwrap();
        let rtp = ports.rtp.local_addr().unwrap();
        let mut session = MediaSession::new(&browser, Some(ports));
        assert_eq!(session.sip_port(), Some(rtp.port()));
        let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut engine = Recorder::default();
        for index in 0..3u8 {
            phone.send_to(&[0x80, index], rtp).await.unwrap();
        }
        let input = session.next().await;
        assert!(
            matches!(
                input,
                MediaInput::Sip {
                    video: false,
                    rtcp: false
                }
            ),
            "{input:?}"
        );
        session.feed(&mut engine, input);
        // The first datagram, and those already waiting behind it, in one feed.
        assert_eq!(engine.heard[0], [0x80, 0]);
        while engine.heard.len() < 3 {
            let input = session.next().await;
            session.feed(&mut engine, input);
        }
        assert_eq!(engine.heard, [[0x80, 0], [0x80, 1], [0x80, 2]]);
        session.flush(&mut engine);
        let mut buffer = [0u8; 16];
        let (length, from) = phone.recv_from(&mut buffer).await.unwrap();
        assert_eq!((from, &buffer[..length]), (rtp, &[0x80, 2][..]));
        // The timer.
        engine.deadline = Some(Instant::now() + Duration::from_millis(30));
        session.flush(&mut engine);
        loop {
            match session.next().await {
                MediaInput::Timeout => break,
                other => session.feed(&mut engine, other),
            }
        }
        session.feed(&mut engine, MediaInput::Timeout);
        assert_eq!(engine.timeouts, 1);
    }

    /// An engine that, like the WebRTC stack, keeps one received packet until its output is
    /// polled, and counts what it passes on.
    #[derive(Default)]
    struct OneSlot {
        held: Option<Vec<u8>>,
        overwritten: usize,
        passed: Vec<Vec<u8>>,
        out: Vec<u8>,
    }

    impl Engine for OneSlot {
        fn handle_browser(&mut self, _: Instant, _: SocketAddr, data: &[u8]) {
            if self.held.replace(data.to_vec()).is_some() {
                self.overwritten += 1;
            }
        }

        fn handle_sip(&mut self, _: Instant, _: SocketAddr, _: &[u8], _: bool) {}

        fn handle_timeout(&mut self, _: Instant) {}

        fn poll_output(&mut self) -> Output<'_> {
            if let Some(held) = self.held.take() {
                self.passed.push(held.clone());
                self.out = held;
                return Output::Browser {
                    destination: "127.0.0.1:9".parse().unwrap(),
                    data: &self.out,
                };
            }
            Output::Timeout(Instant::now() + Duration::from_secs(3600))
        }
    }

    /// A burst of browser datagrams (a video frame's packets) is fed one at a time, the
    /// engine's output polled between them: none is lost in an engine with one slot.
    #[tokio::test]
    async fn a_burst_from_the_browser_is_polled_between_datagrams() {
        let browser = BrowserPort::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut session = MediaSession::new(&browser, None);
        let source: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        for index in 0..5u8 {
            let datagram = Datagram {
                source,
                at: Instant::now(),
                data: bytes::Bytes::from(vec![0x80, index]),
            };
            assert!(session.queue.push(datagram));
        }
        let mut engine = OneSlot::default();
        let input = session.next().await;
        session.feed(&mut engine, input);
        session.flush(&mut engine);
        assert_eq!(engine.overwritten, 0);
        let passed: Vec<u8> = engine.passed.iter().map(|data| data[1]).collect();
        assert_eq!(passed, [0, 1, 2, 3, 4]);
    }
}
