//! The SIP leg of a relay: where the SIP side's SDP says to send, the sources its RTP and RTCP
//! are accepted from (strict source, learnt anew after each remote SDP), our SSRC toward it,
//! what was sent and received (for RTCP reports), the report waiting to go, and its SRTP keys
//! when the SIP side protects its media (SDES).

use std::net::SocketAddr;
use std::time::Instant;

use super::latch::Latch;
use crate::error::{Error, Result};
use crate::rtp::{ReceiveStats, SendStats};
use crate::sdp::{Direction, MediaLine};
use crate::srtp::{Crypto, SessionKeys};

/// The SIP leg.
#[derive(Debug)]
pub(super) struct SipLeg {
    /// Our direction toward the SIP side, as written in our SDP.
    pub(super) direction: Direction,
    /// Where the SIP side's SDP says to send RTP.
    pub(super) target: Option<SocketAddr>,
    pub(super) rtcp_mux: bool,
    /// The sources the SIP side's RTP and RTCP are accepted from, and sent back to (symmetric
    /// RTP): learnt anew after each remote SDP, then only those.
    pub(super) rtp_source: Latch,
    pub(super) rtcp_source: Latch,
    pub(super) ssrc: u32,
    pub(super) sent: SendStats,
    pub(super) received: ReceiveStats,
    pub(super) next_report: Option<Instant>,
    /// A report for the SIP side waiting to go.
    pub(super) report: Option<Vec<u8>>,
    /// When the SIP side was last heard (RTP).
    pub(super) last_rtp: Instant,
    /// SRTP, when the descriptions agreed on keys.
    pub(super) srtp: Option<SessionKeys>,
    /// Packets from the SIP side that failed SRTP's checks (for the reason of a silence).
    pub(super) srtp_rejected: u64,
}

impl SipLeg {
    pub(super) fn new(now: Instant, ssrc: u32) -> SipLeg {
        SipLeg {
            direction: Direction::SendRecv,
            target: None,
            rtcp_mux: false,
            rtp_source: Latch::default(),
            rtcp_source: Latch::default(),
            ssrc,
            sent: SendStats::default(),
            received: ReceiveStats::default(),
            next_report: None,
            report: None,
            last_rtp: now,
            srtp: None,
            srtp_rejected: 0,
        }
    }

    /// Takes the far end's description (an offer we answer, or the answer to our sendrecv
    /// offer): where to send, the sources to learn anew (the phone may have moved, or a NAT
    /// binding changed), rtcp-mux, and our direction.
    pub(super) fn take_remote(&mut self, audio: &MediaLine, offer: bool) {
        self.target = audio.rtp_target();
        self.rtp_source.reset(self.target);
        self.rtcp_source.reset(audio.rtcp_target());
        self.rtcp_mux = audio.rtcp_mux;
        self.direction = if offer {
            audio.direction.answer()
        } else {
            // We offered sendrecv: we send where they receive, and the reverse.
            match (audio.direction.receives(), audio.direction.sends()) {
                (true, true) => Direction::SendRecv,
                (true, false) => Direction::SendOnly,
                (false, true) => Direction::RecvOnly,
                (false, false) => Direction::Inactive,
            }
        };
    }

    /// Takes SRTP off a datagram from the SIP side into `plain` when the leg is SRTP: `Some(true)`
    /// when `plain` holds it, `Some(false)` for a plain leg (the datagram is used as it is),
    /// `None` when it fails SRTP's checks (counted for the reason of a silence). Nothing else
    /// is done with a packet before this, so one that fails does not teach the latch a source.
    pub(super) fn unprotect(
        &mut self,
        data: &[u8],
        rtcp: bool,
        plain: &mut Vec<u8>,
    ) -> Option<bool> {
        let Some(srtp) = &mut self.srtp else {
            return Some(false);
        };
        let checked = if rtcp {
            srtp.receive.unprotect_rtcp(data, plain)
        } else {
            srtp.receive.unprotect_rtp(data, plain)
        };
        match checked {
            Ok(()) => Some(true),
            Err(_) => {
                self.srtp_rejected += 1;
                None
            }
        }
    }

    /// RTCP from the SIP side, in the clear: whether its source is the one latched (RTCP on
    /// its own port is latched on its own; multiplexed, it follows RTP's source), and its
    /// sender report's time, kept for our reports.
    pub(super) fn take_rtcp(
        &mut self,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
        rtcp_port: bool,
    ) -> bool {
        let taken = if rtcp_port {
            self.rtcp_source.accept(now, source)
        } else {
            self.rtp_source.accept(now, source)
        };
        if taken && let Some((_, ntp)) = crate::rtp::read_sender_report(data) {
            self.received.record_sender_report(ntp, now);
        }
        taken
    }

    /// Where RTCP goes: the RTCP source (or the RTP source with rtcp-mux).
    pub(super) fn rtcp_destination(&self) -> Option<SocketAddr> {
        if self.rtcp_mux {
            self.rtp_source.destination()
        } else {
            self.rtcp_source.destination()
        }
    }
}

/// Our key that an answer's key answers: the offered one of its tag and suite.
pub(super) fn answered_key(offered: &[Crypto], remote: &Crypto, proto: &str) -> Result<Crypto> {
    offered
        .iter()
        .find(|ours| ours.tag == remote.tag && ours.suite == remote.suite)
        .cloned()
        .ok_or_else(|| {
            Error::IncompatibleTransport(format!(
                "{proto}: the answer's key ({} {}) answers none of the offered ones",
                remote.tag, remote.suite
            ))
        })
}
