//! The media I/O of a call between two phones ([`RtpPair`]): each leg's port pair and the
//! pair's timer. The call's task selects on [`PairSession::next`] beside its signalling, feeds
//! what came with [`PairSession::feed`] and sends what the pair has with
//! [`PairSession::flush`], as [`super::MediaSession`] does for a browser's call.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

use tokio::time::Sleep;

use super::PortPair;
use crate::relay::pair::{PairOutput, RtpPair, Side};

/// What came for the pair (the data stays in the session until [`PairSession::feed`]).
#[derive(Debug)]
pub enum PairInput {
    /// A datagram of this length from `side`'s phone, on the RTP port or (`rtcp`) the RTCP
    /// port, in the session's buffer.
    Datagram {
        /// Whose leg.
        side: Side,
        /// On the video port pair.
        video: bool,
        /// On the RTCP port.
        rtcp: bool,
        /// Its length.
        length: usize,
        /// Where from.
        source: SocketAddr,
    },
    /// The pair's timer fired.
    Timeout,
    /// Nothing: a socket error.
    Nothing,
}

/// The ports of both legs and the timer.
#[derive(Debug)]
pub struct PairSession {
    caller: PortPair,
    callee: PortPair,
    /// The video legs' port pairs (caller's, callee's), when the call has video.
    video: Option<(PortPair, PortPair)>,
    buffer: Vec<u8>,
    timer: Pin<Box<Sleep>>,
    deadline: Option<Instant>,
}

impl PairSession {
    /// A session on the two legs' ports.
    pub fn new(caller: PortPair, callee: PortPair) -> PairSession {
        PairSession {
            caller,
            callee,
            video: None,
            buffer: vec![0; 2048],
            timer: Box::pin(tokio::time::sleep_until(tokio::time::Instant::now())),
            deadline: None,
        }
    }

    /// The bound RTP ports: (caller's leg, callee's leg).
    pub fn rtp_ports(&self) -> (Option<u16>, Option<u16>) {
        let port = |pair: &PortPair| pair.rtp.local_addr().ok().map(|addr| addr.port());
        (port(&self.caller), port(&self.callee))
    }

    /// Gives the session the video legs' port pairs (caller's, callee's).
    pub fn add_video(&mut self, caller: PortPair, callee: PortPair) {
        self.video = Some((caller, callee));
    }

    /// The bound video RTP ports, when there are video legs.
    pub fn video_ports(&self) -> Option<(u16, u16)> {
        let (caller, callee) = self.video.as_ref()?;
        let port = |pair: &PortPair| pair.rtp.local_addr().ok().map(|addr| addr.port());
        Some((port(caller)?, port(callee)?))
    }

    fn ports(&self, side: Side, video: bool) -> Option<&PortPair> {
        ports(&self.caller, &self.callee, self.video.as_ref(), side, video)
    }

    /// Waits for the next thing for the pair. Cancel-safe.
    pub async fn next(&mut self) -> PairInput {
        if let Some(deadline) = self.deadline.take() {
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
        }
        // Readiness first, the read after: the sockets share one buffer.
        let video = self.video.as_ref();
        let readable = |pick: fn(&(PortPair, PortPair)) -> &tokio::net::UdpSocket| async move {
            match video {
                Some(pairs) => pick(pairs).readable().await,
                None => std::future::pending().await,
            }
        };
        let (side, video, rtcp) = tokio::select! {
            biased;
            Ok(()) = self.caller.rtp.readable() => (Side::Caller, false, false),
            Ok(()) = self.callee.rtp.readable() => (Side::Callee, false, false),
            Ok(()) = readable(|pairs| &pairs.0.rtp) => (Side::Caller, true, false),
            Ok(()) = readable(|pairs| &pairs.1.rtp) => (Side::Callee, true, false),
            Ok(()) = self.caller.rtcp.readable() => (Side::Caller, false, true),
            Ok(()) = self.callee.rtcp.readable() => (Side::Callee, false, true),
            Ok(()) = readable(|pairs| &pairs.0.rtcp) => (Side::Caller, true, true),
            Ok(()) = readable(|pairs| &pairs.1.rtcp) => (Side::Callee, true, true),
            () = &mut self.timer => return PairInput::Timeout,
        };
        let Some(ports) = ports(&self.caller, &self.callee, self.video.as_ref(), side, video)
        else {
            return PairInput::Nothing;
        };
        let socket = if rtcp { &ports.rtcp } else { &ports.rtp };
        match socket.try_recv_from(&mut self.buffer) {
            Ok((length, source)) => PairInput::Datagram {
                side,
                video,
                rtcp,
                length,
                source,
            },
            Err(_) => PairInput::Nothing,
        }
    }

    /// Gives what [`PairSession::next`] found to the pair.
    pub fn feed(&mut self, pair: &mut RtpPair, input: PairInput) {
        match input {
            PairInput::Datagram {
                side,
                video: false,
                rtcp,
                length,
                source,
            } => pair.handle(Instant::now(), side, source, &self.buffer[..length], rtcp),
            PairInput::Datagram {
                side,
                video: true,
                rtcp,
                length,
                source,
            } => pair.handle_video(Instant::now(), side, source, &self.buffer[..length], rtcp),
            PairInput::Timeout => pair.handle_timeout(Instant::now()),
            PairInput::Nothing => {}
        }
    }

    /// Sends everything the pair has and learns when it wants its timer. Sends never wait.
    pub fn flush(&mut self, pair: &mut RtpPair) {
        loop {
            match pair.poll_output() {
                PairOutput::Send {
                    side,
                    video,
                    rtcp,
                    destination,
                    data,
                } => {
                    if let Some(ports) = self.ports(side, video) {
                        let socket = if rtcp { &ports.rtcp } else { &ports.rtp };
                        let _ = socket.try_send_to(data, destination);
                    }
                }
                PairOutput::Timeout(at) => {
                    self.deadline = Some(at);
                    return;
                }
            }
        }
    }
}

/// The port pair of one leg (`video`: of its video stream).
fn ports<'a>(
    caller: &'a PortPair,
    callee: &'a PortPair,
    video_pairs: Option<&'a (PortPair, PortPair)>,
    side: Side,
    video: bool,
) -> Option<&'a PortPair> {
    match (side, video, video_pairs) {
        (Side::Caller, false, _) => Some(caller),
        (Side::Callee, false, _) => Some(callee),
        (Side::Caller, true, Some((pair, _))) => Some(pair),
        (Side::Callee, true, Some((_, pair))) => Some(pair),
        (_, true, None) => None,
    }
}
