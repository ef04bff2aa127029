//! The SIP leg of a relay: where the SIP side's SDP says to send, the sources its RTP and RTCP
//! are accepted from (strict source, learnt anew after each remote SDP), our SSRC toward it,
//! what was sent and received (for RTCP reports), the report waiting to go, and its SRTP keys
//! when the SIP side protects its media (SDES, or DTLS-SRTP with its handshakes).

use std::net::SocketAddr;
use std::time::Instant;

use super::latch::Latch;
use super::quality::FarReports;
use crate::dtls::{Component, DtlsSrtp, Progress, Setup, local_fingerprint};
use crate::error::{Error, Result};
use crate::rtp::{ReceiveStats, SendStats};
use crate::sdp::{Direction, DtlsLine, MediaLine};
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
    /// Payload bytes received.
    pub(super) bytes_received: u64,
    /// What the SIP side reports of our stream, and the round trip.
    pub(super) far: FarReports,
    pub(super) next_report: Option<Instant>,
    /// A report for the SIP side waiting to go.
    pub(super) report: Option<Vec<u8>>,
    /// When the SIP side was last heard (RTP).
    pub(super) last_rtp: Instant,
    /// SRTP, when the descriptions agreed on keys.
    pub(super) srtp: Option<SessionKeys>,
    /// Packets from the SIP side that failed SRTP's checks (for the reason of a silence).
    pub(super) srtp_rejected: u64,
    /// DTLS-SRTP, when the SIP side's m-line is `UDP/TLS/RTP/SAVP`: what our descriptions say,
    /// and the handshakes once our answer is out. Its keys go to `srtp` (and `rtcp_keys`).
    pub(super) dtls: Option<SipDtls>,
    /// SRTCP on the RTCP port, keyed by its own DTLS handshake (DTLS-SRTP without rtcp-mux).
    pub(super) rtcp_keys: Option<SessionKeys>,
}

/// The DTLS-SRTP of a SIP leg.
#[derive(Debug)]
pub(super) struct SipDtls {
    /// What our m-line says: profile, fingerprint, role.
    pub(super) line: DtlsLine,
    /// The far end's certificate fingerprint (none while our offer waits for its answer).
    remote: Option<crate::dtls::Fingerprint>,
    /// The handshakes, once started.
    pub(super) session: Option<DtlsSrtp>,
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
            bytes_received: 0,
            far: FarReports::default(),
            next_report: None,
            report: None,
            last_rtp: now,
            srtp: None,
            srtp_rejected: 0,
            dtls: None,
            rtcp_keys: None,
        }
    }

    /// Takes a DTLS-SRTP m-line of the far end (an offer we answer, or the answer to an offer
    /// of ours that had DTLS): the associations in place are kept when the fingerprint and the
    /// roles stay (RFC 5763 section 6.7.1), else new ones are made, started by
    /// [`SipLeg::start_dtls`] (for an offer, once our answer is out). An answer with DTLS-SRTP
    /// to an offer of ours without it is refused.
    pub(super) fn take_dtls(&mut self, line: &MediaLine, offer: bool) -> Result<()> {
        if !offer && self.dtls.is_none() {
            return Err(Error::IncompatibleTransport(format!(
                "{}: the answer has DTLS-SRTP, which our offer did not",
                line.proto
            )));
        }
        let remote = line.fingerprint.clone().ok_or_else(|| {
            Error::IncompatibleTransport(format!("{} without a fingerprint", line.proto))
        })?;
        let setup = if offer {
            Setup::answering(line.setup.as_deref())
        } else {
            // Their answer to our offer: its role chooses ours; one that does not say (or says
            // `actpass`, as some phones answer a re-offer) keeps ours, and to our first offer
            // leaves us the one who starts.
            match line.setup.as_deref().map(str::trim) {
                Some(value) if value.eq_ignore_ascii_case("active") => Some(Setup::Passive),
                Some(value) if value.eq_ignore_ascii_case("passive") => Some(Setup::Active),
                _ => self.dtls.as_ref().map(|dtls| match dtls.line.setup {
                    Setup::ActPass => Setup::Active,
                    kept => kept,
                }),
            }
        }
        .ok_or_else(|| {
            Error::IncompatibleTransport(format!(
                "{} with a=setup:{}, which the gateway cannot answer",
                line.proto,
                line.setup.as_deref().unwrap_or_default()
            ))
        })?;
        if let Some(dtls) = &mut self.dtls
            && dtls.remote.as_ref() == Some(&remote)
            && dtls.line.setup == setup
        {
            dtls.line.proto = line.proto.clone();
            return Ok(());
        }
        self.srtp = None;
        self.rtcp_keys = None;
        self.dtls = Some(SipDtls {
            line: DtlsLine {
                proto: line.proto.clone(),
                fingerprint: local_fingerprint()?,
                setup,
            },
            remote: Some(remote),
            session: None,
        });
        Ok(())
    }

    /// DTLS-SRTP for our offer (`UDP/TLS/RTP/SAVP`, our fingerprint, `a=setup:actpass`): the
    /// answer says who starts the handshake.
    pub(super) fn offer_dtls(&mut self) -> Result<()> {
        self.srtp = None;
        self.rtcp_keys = None;
        self.dtls = Some(SipDtls {
            line: DtlsLine {
                proto: "UDP/TLS/RTP/SAVP".to_owned(),
                fingerprint: local_fingerprint()?,
                setup: Setup::ActPass,
            },
            remote: None,
            session: None,
        });
        Ok(())
    }

    /// Starts the DTLS handshakes of a new association (after our answer went out, or when
    /// the answer to our offer came): toward the far end's RTP port, and its RTCP port without
    /// rtcp-mux.
    pub(super) fn start_dtls(&mut self, now: Instant) -> Result<()> {
        let rtcp = (!self.rtcp_mux)
            .then(|| self.rtcp_source.destination())
            .flatten();
        let Some(target) = self.target else {
            return Ok(());
        };
        let Some(dtls) = &mut self.dtls else {
            return Ok(());
        };
        let Some(remote) = &dtls.remote else {
            return Ok(()); // Our offer waits for its answer.
        };
        if dtls.session.is_none() {
            dtls.session = Some(DtlsSrtp::new(
                now,
                dtls.line.setup,
                remote.clone(),
                target,
                rtcp,
            )?);
        }
        Ok(())
    }

    /// Whether the leg is DTLS-SRTP without keys yet: nothing is sent or taken until then.
    pub(super) fn awaiting_keys(&self) -> bool {
        self.dtls.is_some() && self.srtp.is_none()
    }

    /// A DTLS datagram from the SIP side: the keys when it completes a handshake (the RTP
    /// port's protect RTP, and RTCP with rtcp-mux; the RTCP port's protect RTCP there). Only a
    /// source the port's latch takes is heard (as for RTP: the SDP's address, or the first
    /// source after a new description). A failed handshake is an error when the datagram came
    /// from the SDP's address; from another source (a third party that guessed the port, or a
    /// phone behind NAT) it is dropped, and a handshake that never completes shows in the
    /// silence that ends the call.
    pub(super) fn handle_dtls(
        &mut self,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
        rtcp_port: bool,
    ) -> Result<()> {
        let Some(session) = self.dtls.as_mut().and_then(|dtls| dtls.session.as_mut()) else {
            return Ok(());
        };
        let (component, latch) = if rtcp_port {
            (Component::Rtcp, &mut self.rtcp_source)
        } else {
            (Component::Rtp, &mut self.rtp_source)
        };
        if !latch.accept(now, source) {
            return Ok(());
        }
        let done = session.is_done();
        match session.handle(now, component, data) {
            Ok(Progress::Keys(keys)) => {
                match component {
                    Component::Rtp => self.srtp = Some(*keys),
                    Component::Rtcp => self.rtcp_keys = Some(*keys),
                }
                Ok(())
            }
            Ok(Progress::Nothing) => Ok(()),
            // Once keyed, a stray or forged datagram does not end the call.
            Err(_) if done => Ok(()),
            Err(error) if latch.is_expected(source) => Err(error),
            Err(_) => Ok(()),
        }
    }

    /// The DTLS handshakes' next timer.
    pub(super) fn dtls_timeout(&self) -> Option<Instant> {
        self.dtls.as_ref()?.session.as_ref()?.poll_timeout()
    }

    /// Runs the DTLS handshakes' timers.
    pub(super) fn dtls_handle_timeout(&mut self, now: Instant) -> Result<()> {
        match self.dtls.as_mut().and_then(|dtls| dtls.session.as_mut()) {
            Some(session) => session.handle_timeout(now),
            None => Ok(()),
        }
    }

    /// The next DTLS datagram to send: whether it goes from the RTCP port, where to, what.
    pub(super) fn dtls_transmit(&mut self) -> Option<(bool, SocketAddr, Vec<u8>)> {
        let session = self.dtls.as_mut()?.session.as_mut()?;
        let (component, destination, data) = session.poll_transmit()?;
        Some((component == Component::Rtcp, destination, data))
    }

    /// Protects RTCP for the SIP side (SRTCP when the leg is SRTP); `None` when it cannot go
    /// (no keys yet, or protection failed).
    pub(super) fn protect_rtcp(&mut self, packet: Vec<u8>) -> Option<Vec<u8>> {
        if self.awaiting_keys() {
            return None;
        }
        let keys = match (&mut self.rtcp_keys, self.rtcp_mux) {
            (Some(keys), false) => keys,
            _ => match &mut self.srtp {
                Some(keys) => keys,
                None => return Some(packet),
            },
        };
        let mut protected = Vec::with_capacity(packet.len() + 20);
        keys.send.protect_rtcp(&packet, &mut protected).ok()?;
        Some(protected)
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
    /// `None` when it fails SRTP's checks (counted for the reason of a silence), or comes
    /// before DTLS-SRTP has keys. Nothing else is done with a packet before this, so one that
    /// fails does not teach the latch a source.
    pub(super) fn unprotect(
        &mut self,
        data: &[u8],
        rtcp: bool,
        rtcp_port: bool,
        plain: &mut Vec<u8>,
    ) -> Option<bool> {
        if self.awaiting_keys() {
            return None;
        }
        let keys = match (&mut self.rtcp_keys, rtcp_port) {
            (Some(keys), true) => Some(keys),
            _ => self.srtp.as_mut(),
        };
        let Some(srtp) = keys else {
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
        if !taken {
            return false;
        }
        if let Some((_, ntp)) = crate::rtp::read_sender_report(data) {
            self.received.record_sender_report(ntp, now);
        }
        for block in crate::rtp::read_report_blocks(data) {
            if block.ssrc == self.ssrc {
                self.far.take(block, now);
            }
        }
        true
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
