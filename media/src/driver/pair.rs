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

    fn ports(&self, side: Side) -> &PortPair {
        match side {
            Side::Caller => &self.caller,
            Side::Callee => &self.callee,
        }
    }

    /// Waits for the next thing for the pair. Cancel-safe.
    pub async fn next(&mut self) -> PairInput {
        if let Some(deadline) = self.deadline.take() {
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
        }
        // Readiness first, the read after: the four sockets share one buffer.
        let (side, rtcp) = tokio::select! {
            biased;
            Ok(()) = self.caller.rtp.readable() => (Side::Caller, false),
            Ok(()) = self.callee.rtp.readable() => (Side::Callee, false),
            Ok(()) = self.caller.rtcp.readable() => (Side::Caller, true),
            Ok(()) = self.callee.rtcp.readable() => (Side::Callee, true),
            () = &mut self.timer => return PairInput::Timeout,
        };
        let ports = match side {
            Side::Caller => &self.caller,
            Side::Callee => &self.callee,
        };
        let socket = if rtcp { &ports.rtcp } else { &ports.rtp };
        match socket.try_recv_from(&mut self.buffer) {
            Ok((length, source)) => PairInput::Datagram {
                side,
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
                rtcp,
                length,
                source,
            } => pair.handle(Instant::now(), side, source, &self.buffer[..length], rtcp),
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
                    rtcp,
                    destination,
                    data,
                } => {
                    let ports = self.ports(side);
                    let socket = if rtcp { &ports.rtcp } else { &ports.rtp };
                    let _ = socket.try_send_to(data, destination);
                }
                PairOutput::Timeout(at) => {
                    self.deadline = Some(at);
                    return;
                }
            }
        }
    }
}
