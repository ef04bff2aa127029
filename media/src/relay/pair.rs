//! A call between two SIP phones through the gateway, sans-IO: two SIP legs (each plain RTP or
//! SDES-SRTP, as its phone and the policy agree), with RTP and RTCP passed from one to the other
//! unchanged but for the payload type numbers (mapped by format when the answerer numbered them
//! differently) and each leg's own SRTP. Both legs keep strict source: a packet is heard only
//! from the address latched after each description.
//!
//! The caller's offer becomes the offer to the callee (the configured codecs it has, the
//! caller's payload type numbers, our address and our keys), and the callee's answer becomes
//! the answer to the caller. Nothing is decoded, so nothing more is needed. Later offers from
//! either phone (hold, a new address) are answered here, the direction mirrored, as the
//! browser relay does.
//!
//! Video, when the caller offers it and the pair has a video port pair on each side, is a
//! second stream of two legs relayed the same way (its own latches and keys); keyframe
//! requests are RTCP and pass through. A callee that declines it leaves the call with audio.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Event;
use super::sip_leg::{SipLeg, answered_key};
use crate::codec::{Codec, Format, Payload, VideoCodec};
use crate::error::{Error, Result};
use crate::rtp::is_rtcp;
use crate::sdp::{
    Description, Direction, MediaLine, SipDescription, VideoDescription, answered_payloads,
    common_video, relayable,
};
use crate::srtp::{Crypto, SessionKeys, SrtpMode, SrtpPolicy};

/// A pair's settings.
#[derive(Debug, Clone)]
pub struct PairConfig {
    /// The caller's leg's RTP address as written in SDP (advertised address and port).
    pub caller_rtp: SocketAddr,
    /// The callee's leg's.
    pub callee_rtp: SocketAddr,
    /// The codecs relayed, first preferred.
    pub codecs: Vec<Codec>,
    /// How long a leg that should be sending may stay silent.
    pub media_timeout: Duration,
    /// SRTP toward the callee (our offer); the caller's leg follows the caller's offer within
    /// the same policy.
    pub srtp: SrtpPolicy,
    /// The video legs' RTP addresses as written in SDP (caller's, callee's), when the pair has
    /// video port pairs; without them video is declined.
    pub video: Option<(SocketAddr, SocketAddr)>,
    /// The video codecs relayed.
    pub video_codecs: Vec<VideoCodec>,
}

/// One of the two legs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The calling phone's.
    Caller,
    /// The called phone's.
    Callee,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Caller => 0,
            Side::Callee => 1,
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Caller => Side::Callee,
            Side::Callee => Side::Caller,
        }
    }
}

/// A datagram to send, or when to call back.
#[derive(Debug)]
pub enum PairOutput<'a> {
    /// To a phone, from its leg's RTP port (`rtcp`: from the RTCP port).
    Send {
        /// Which leg's ports.
        side: Side,
        /// From the video port pair (else the audio's).
        video: bool,
        /// From the RTCP port (else the RTP port).
        rtcp: bool,
        /// Where to.
        destination: SocketAddr,
        /// What.
        data: &'a [u8],
    },
    /// Nothing more now: call [`RtpPair::handle_timeout`] at this time.
    Timeout(Instant),
}

/// One leg's description state.
#[derive(Debug)]
struct Leg {
    sip: SipLeg,
    rtp: SocketAddr,
    /// The payloads of this leg, with its own numbers.
    payloads: Vec<Payload>,
    /// Whether our descriptions toward it say `RTP/SAVP`.
    secure: bool,
    /// The keys of our latest offer to it.
    offered_keys: Vec<Crypto>,
    version: u64,
    /// The latest description it sent (for answering in place).
    remote: Option<Description>,
    /// Every payload type this leg's phone was offered or offered (video: a phone that
    /// matched by codec name may send any of them for the agreed format).
    known: Vec<u8>,
}

/// A datagram waiting to go.
#[derive(Debug)]
struct Outgoing {
    side: Side,
    video: bool,
    rtcp: bool,
    destination: SocketAddr,
    data: Vec<u8>,
}

/// Two phones' legs and the media between them.
#[derive(Debug)]
pub struct RtpPair {
    config: PairConfig,
    legs: [Leg; 2],
    /// The video legs, when the call has video.
    video: Option<[Leg; 2]>,
    session_id: u64,
    answered: bool,
    /// Answered early (the callee's 183): media flows, silence is not counted yet (the
    /// caller's phone need not send before the 200).
    early: bool,
    /// The caller's INVITE had no offer: our answer to it is an offer.
    offerless: bool,
    created: Instant,
    next_check: Instant,
    failed: bool,
    plain: Vec<u8>,
    out: VecDeque<Outgoing>,
    /// A sent datagram's buffer, for the next one.
    spare: Vec<Vec<u8>>,
    current: Option<Outgoing>,
    events: VecDeque<Event>,
}

/// Datagrams waiting past this are dropped (the driver polls after every batch).
const QUEUE: usize = 256;

impl RtpPair {
    /// A call from the phone that offered `caller_offer`: the pair, and the offer for the
    /// callee.
    pub fn new(now: Instant, config: PairConfig, caller_offer: &str) -> Result<(RtpPair, String)> {
        let description = Description::parse(caller_offer)?;
        let (_, audio, _) = description.sip_audio_with(&config.srtp)?;
        let payloads = relayable(audio, &config.codecs)?;
        let mut pair = RtpPair::with_payloads(now, config, &payloads, Some(&description));
        pair.take_description(Side::Caller, description, true)?;
        Ok(pair.offer_to_callee())
    }

    /// A call from a phone whose INVITE had no offer: the pair, and our offer for the callee
    /// (every configured codec, audio alone). The callee's answer makes our offer to the
    /// caller ([`RtpPair::accept_answer`]), whose answer comes in its ACK
    /// ([`RtpPair::accept_reanswer`]).
    pub fn offerless(now: Instant, config: PairConfig) -> (RtpPair, String) {
        let payloads = super::track::default_payloads(&config.codecs);
        let mut pair = RtpPair::with_payloads(now, config, &payloads, None);
        pair.offerless = true;
        let caller = &mut pair.legs[0];
        caller.offered_keys = pair.config.srtp.offer();
        caller.secure = pair.config.srtp.mode == SrtpMode::Mandatory;
        pair.offer_to_callee()
    }

    /// Keys for the callee's leg, and our offer to it.
    fn offer_to_callee(mut self) -> (RtpPair, String) {
        let callee = &mut self.legs[1];
        callee.offered_keys = self.config.srtp.offer();
        callee.secure = self.config.srtp.mode == SrtpMode::Mandatory;
        if let Some(video) = &mut self.video {
            video[1].offered_keys = self.config.srtp.offer();
            video[1].secure = self.config.srtp.mode == SrtpMode::Mandatory;
        }
        let offer = self.describe(Side::Callee, Direction::SendRecv, false);
        (self, offer)
    }

    /// A pair whose legs start with `payloads` (video as the caller's offer has it).
    fn with_payloads(
        now: Instant,
        config: PairConfig,
        payloads: &[Payload],
        description: Option<&Description>,
    ) -> RtpPair {
        let leg = |rtp: SocketAddr, ssrc: u32, payloads: &[Payload]| Leg {
            sip: SipLeg::new(now, ssrc),
            rtp,
            payloads: payloads.to_vec(),
            secure: false,
            offered_keys: Vec::new(),
            version: 1,
            remote: None,
            known: payloads.iter().map(|payload| payload.pt).collect(),
        };
        let video = config.video.and_then(|(caller, callee)| {
            let (_, line, _) = description?.sip_video_with(&config.srtp)?;
            let payloads = common_video(&line.payloads, &config.video_codecs);
            (!payloads.is_empty()).then(|| [leg(caller, 3, &payloads), leg(callee, 4, &payloads)])
        });
        let session_id =
            u64::from(config.caller_rtp.port()) << 20 | u64::from(config.callee_rtp.port());
        RtpPair {
            legs: [
                leg(config.caller_rtp, 1, payloads),
                leg(config.callee_rtp, 2, payloads),
            ],
            video,
            session_id,
            answered: false,
            early: false,
            offerless: false,
            created: now,
            next_check: now + Duration::from_secs(1),
            failed: false,
            plain: Vec::with_capacity(1500),
            out: VecDeque::new(),
            spare: Vec::new(),
            current: None,
            events: VecDeque::new(),
            config,
        }
    }

    /// The callee's early answer (its 183): the answer for the caller's 183. Media flows from
    /// now on; silence counts from the final answer ([`RtpPair::accept_answer`]).
    pub fn accept_early_answer(&mut self, now: Instant, answer: &str) -> Result<String> {
        let answer = self.accept_answer(now, answer)?;
        self.early = true;
        Ok(answer)
    }

    /// The callee answered without SDP, its early answer standing (a reliable 183's): silence
    /// counts from now.
    pub fn confirm(&mut self, now: Instant) {
        self.early = false;
        for leg in &mut self.legs {
            leg.sip.last_rtp = now;
        }
    }

    /// The callee's answer: the answer for the caller (after an early answer, the same), or,
    /// when the caller made no offer, our offer to it.
    pub fn accept_answer(&mut self, now: Instant, answer: &str) -> Result<String> {
        self.early = false;
        let description = Description::parse(answer)?;
        let (_, audio, _) = description.sip_audio_with(&self.config.srtp)?;
        let answered = answered_payloads(audio, &self.legs[1].payloads);
        if !answered
            .iter()
            .any(|payload| matches!(payload.format, Format::Audio(_)))
        {
            return Err(Error::NoCommonCodec(format!(
                "the callee's answer has none of the offered codecs (it has {})",
                audio.codec_names.join(", ")
            )));
        }
        self.take_video_answer(&description)?;
        self.take_description(Side::Callee, description, false)?;
        // The caller's leg carries what the callee chose, with the caller's numbers.
        let formats: Vec<Format> = answered.iter().map(|payload| payload.format).collect();
        self.legs[1].payloads = answered;
        self.legs[0]
            .payloads
            .retain(|payload| formats.contains(&payload.format));
        self.answered = true;
        self.legs[0].sip.last_rtp = now;
        self.legs[1].sip.last_rtp = now;
        if self.offerless {
            // Our offer for the caller's 200, in what the callee chose.
            return Ok(self.describe(Side::Caller, Direction::SendRecv, false));
        }
        let direction = self.legs[0].sip.direction;
        Ok(self.describe(Side::Caller, direction, true))
    }

    /// A new offer from one phone (re-INVITE, UPDATE): the answer, the direction mirrored.
    pub fn answer_offer(&mut self, side: Side, offer: &str) -> Result<String> {
        let description = Description::parse(offer)?;
        let (_, audio, _) = description.sip_audio_with(&self.config.srtp)?;
        let kept: Vec<Format> = self.legs[side.index()]
            .payloads
            .iter()
            .map(|p| p.format)
            .collect();
        if !audio.payloads.iter().any(|payload| {
            kept.contains(&payload.format) && matches!(payload.format, Format::Audio(_))
        }) {
            return Err(Error::NoCommonCodec(format!(
                "the new offer drops the call's codec (it has {})",
                audio.codec_names.join(", ")
            )));
        }
        let payloads: Vec<Payload> = audio
            .payloads
            .iter()
            .filter(|payload| kept.contains(&payload.format))
            .cloned()
            .collect();
        self.take_description(side, description, true)?;
        let leg = &mut self.legs[side.index()];
        leg.payloads = payloads;
        leg.version += 1;
        let direction = leg.sip.direction;
        Ok(self.describe(side, direction, true))
    }

    /// Our offer to one phone for its offerless re-INVITE (the call as it is).
    pub fn offer(&mut self, side: Side) -> String {
        let leg = &mut self.legs[side.index()];
        leg.version += 1;
        leg.offered_keys = leg.sip.srtp.iter().map(|keys| keys.local.clone()).collect();
        self.describe(side, Direction::SendRecv, false)
    }

    /// That phone's answer (in its ACK) to [`RtpPair::offer`].
    pub fn accept_reanswer(&mut self, side: Side, answer: &str) -> Result<()> {
        let description = Description::parse(answer)?;
        self.take_description(side, description, false)
    }

    /// Reads a phone's description: target, direction, keys.
    fn take_description(
        &mut self,
        side: Side,
        description: Description,
        offer: bool,
    ) -> Result<()> {
        let policy = self.config.srtp.clone();
        let (_, audio, key) = description.sip_audio_with(&policy)?;
        // DTLS-SRTP is taken from phones that call browsers; between two phones the pair
        // would need a handshake on each leg, which it does not do yet.
        if let Some(line) = std::iter::once(audio)
            .chain(description.sip_video_with(&policy).map(|(_, line, _)| line))
            .find(|line| line.is_dtls_profile())
        {
            return Err(Error::IncompatibleTransport(format!(
                "{}: DTLS-SRTP between two phones of the local domain is not supported yet \
                 (SDES-SRTP, RTP/SAVP, is)",
                line.proto
            )));
        }
        let audio: MediaLine = audio.clone();
        let key = key.cloned();
        let leg = &mut self.legs[side.index()];
        take_keys(leg, &audio, key, offer)?;
        leg.sip.take_remote(&audio, offer);
        if let Some(video) = &mut self.video
            && let Some((_, line, key)) = description.sip_video_with(&policy)
        {
            let leg = &mut video[side.index()];
            take_keys(leg, line, key.cloned(), offer)?;
            leg.sip.take_remote(line, offer);
            leg.known
                .extend(line.payloads.iter().map(|payload| payload.pt));
            leg.remote = Some(description.clone());
        }
        let leg = &mut self.legs[side.index()];
        leg.remote = Some(description);
        Ok(())
    }

    /// The callee's answer for video: the formats it took, on both legs with each leg's
    /// numbers; a callee that declined video leaves the call without (the caller's answer
    /// declines it).
    fn take_video_answer(&mut self, description: &Description) -> Result<()> {
        let Some(video) = &mut self.video else {
            return Ok(());
        };
        let Some((_, line, _)) = description.sip_video_with(&self.config.srtp) else {
            self.video = None;
            return Ok(());
        };
        let answered = answered_payloads(line, &video[1].payloads);
        let Some(first) = answered.first() else {
            self.video = None;
            return Ok(());
        };
        let format = first.format;
        video[1].payloads = vec![first.clone()];
        video[0].payloads.retain(|payload| payload.format == format);
        video[0].payloads.truncate(1);
        video[0].sip.last_rtp = video[0].sip.last_rtp.max(self.created);
        Ok(())
    }

    /// Our description toward one phone.
    fn describe(&self, side: Side, direction: Direction, answering: bool) -> String {
        let leg = &self.legs[side.index()];
        let keys: Vec<Crypto> = match &leg.sip.srtp {
            Some(keys) => vec![keys.local.clone()],
            None => leg.offered_keys.clone(),
        };
        let remote = leg.remote.as_ref().filter(|_| answering);
        let index = remote
            .and_then(|remote| remote.sip_audio_with(&self.config.srtp).ok())
            .map(|(index, _, _)| index)
            .unwrap_or(0);
        let video_keys: Vec<Crypto>;
        let video = match &self.video {
            Some(video) => {
                let leg = &video[side.index()];
                video_keys = match &leg.sip.srtp {
                    Some(keys) => vec![keys.local.clone()],
                    None => leg.offered_keys.clone(),
                };
                let answered_line = remote.and_then(|remote| {
                    remote
                        .sip_video_with(&self.config.srtp)
                        .map(|(index, line, _)| (index, line.rtcp_mux))
                });
                Some(VideoDescription {
                    index: answered_line.map(|(index, _)| index),
                    rtp: leg.rtp,
                    payloads: &leg.payloads,
                    direction: if answering {
                        leg.sip.direction
                    } else {
                        direction
                    },
                    crypto: &video_keys,
                    secure: leg.secure,
                    rtcp_mux: answered_line.is_some_and(|(_, mux)| mux),
                    bandwidth: &[],
                    dtls: None,
                })
            }
            None => None,
        };
        SipDescription {
            session_id: self.session_id,
            version: leg.version,
            rtp: leg.rtp,
            payloads: &leg.payloads,
            direction,
            answering: remote.map(|remote| (remote, index)),
            crypto: &keys,
            secure: leg.secure,
            video,
            removed_video: None,
            dtls: None,
        }
        .write()
    }

    /// A datagram from one phone, on its leg's RTP port or (`rtcp_port`) its RTCP port.
    pub fn handle(
        &mut self,
        now: Instant,
        side: Side,
        source: SocketAddr,
        data: &[u8],
        rtcp_port: bool,
    ) {
        self.handle_stream(now, side, false, source, data, rtcp_port);
    }

    /// A datagram from one phone on its video leg's ports.
    pub fn handle_video(
        &mut self,
        now: Instant,
        side: Side,
        source: SocketAddr,
        data: &[u8],
        rtcp_port: bool,
    ) {
        self.handle_stream(now, side, true, source, data, rtcp_port);
    }

    fn handle_stream(
        &mut self,
        now: Instant,
        side: Side,
        video: bool,
        source: SocketAddr,
        data: &[u8],
        rtcp_port: bool,
    ) {
        let rtcp = rtcp_port || is_rtcp(data);
        let mut plain = std::mem::take(&mut self.plain);
        let legs = match (video, &mut self.video) {
            (false, _) => &mut self.legs,
            (true, Some(legs)) => legs,
            (true, None) => {
                self.plain = plain;
                return;
            }
        };
        let from = &mut legs[side.index()].sip;
        let data = match &mut from.srtp {
            Some(keys) => {
                let checked = if rtcp {
                    keys.receive.unprotect_rtcp(data, &mut plain)
                } else {
                    keys.receive.unprotect_rtp(data, &mut plain)
                };
                if checked.is_err() {
                    from.srtp_rejected += 1;
                    self.plain = plain;
                    return;
                }
                &plain[..]
            }
            None => data,
        };
        let taken = if rtcp_port {
            from.rtcp_source.accept(now, source)
        } else {
            from.rtp_source.accept(now, source)
        };
        if taken && (rtcp || data.len() >= 12) {
            if !rtcp {
                from.last_rtp = now;
            }
            self.forward(side, video, rtcp, data);
        }
        self.plain = plain;
    }

    /// Passes a packet from `side` to the other phone.
    fn forward(&mut self, side: Side, video: bool, rtcp: bool, packet: &[u8]) {
        if !self.answered || self.out.len() >= QUEUE {
            return;
        }
        let legs = match (video, &mut self.video) {
            (false, _) => &mut self.legs,
            (true, Some(legs)) => legs,
            (true, None) => return,
        };
        let (from, to) = match side {
            Side::Caller => (&legs[0], &legs[1]),
            Side::Callee => (&legs[1], &legs[0]),
        };
        if !rtcp && (!from.sip.direction.receives() || !to.sip.direction.sends()) {
            return;
        }
        let destination = match (rtcp, to.sip.rtcp_mux) {
            (false, _) | (true, true) => to.sip.rtp_source.destination(),
            (true, false) => to.sip.rtcp_source.destination(),
        };
        let Some(destination) = destination else {
            return;
        };
        let mut data = self.spare.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(packet);
        if !rtcp {
            // The payload type by format: the answerer may have numbered it otherwise.
            let pt = packet[1] & 0x7f;
            let format = from
                .payloads
                .iter()
                .find(|p| p.pt == pt)
                .map(|p| p.format)
                // Video carries one agreed format: a phone that matched our offer by codec name
                // may send it with another number it was offered.
                .or_else(|| {
                    (video && from.known.contains(&pt))
                        .then(|| from.payloads.first().map(|p| p.format))
                        .flatten()
                });
            let Some(mapped) =
                format.and_then(|format| to.payloads.iter().find(|p| p.format == format))
            else {
                self.spare.push(data);
                return;
            };
            data[1] = (packet[1] & 0x80) | mapped.pt;
        }
        let to_side = side.other();
        let to = &mut legs[to_side.index()].sip;
        if let Some(keys) = &mut to.srtp {
            let mut protected = std::mem::take(&mut self.plain);
            let done = if rtcp {
                keys.send.protect_rtcp(&data, &mut protected)
            } else {
                keys.send.protect_rtp(&data, &mut protected)
            };
            std::mem::swap(&mut data, &mut protected);
            self.plain = protected;
            if done.is_err() {
                self.spare.push(data);
                return;
            }
        }
        self.out.push_back(Outgoing {
            side: to_side,
            video,
            rtcp: rtcp && !to.rtcp_mux,
            destination,
            data,
        });
    }

    /// Timers that are due: a phone that should be sending and went silent ends the call.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + Duration::from_secs(1);
        if !self.answered || self.early || self.failed {
            return;
        }
        let timeout = self.config.media_timeout;
        for (leg, name) in self.legs.iter().zip(["caller", "callee"]) {
            if leg.sip.direction.receives()
                && now.saturating_duration_since(leg.sip.last_rtp.max(self.created)) > timeout
            {
                let rejected = match leg.sip.srtp_rejected {
                    0 => String::new(),
                    count => format!(" ({count} packets failed SRTP authentication)"),
                };
                self.failed = true;
                self.events.push_back(Event::Failed(format!(
                    "no RTP from the {name} for {} s{rejected}",
                    timeout.as_secs()
                )));
                return;
            }
        }
    }

    /// The next datagram to send, or when to call [`RtpPair::handle_timeout`]; each datagram
    /// is valid until the next call.
    pub fn poll_output(&mut self) -> PairOutput<'_> {
        if let Some(sent) = self.current.take() {
            self.spare.push(sent.data);
        }
        match self.out.pop_front() {
            Some(outgoing) => {
                let current = self.current.insert(outgoing);
                PairOutput::Send {
                    side: current.side,
                    video: current.video,
                    rtcp: current.rtcp,
                    destination: current.destination,
                    data: &current.data,
                }
            }
            None => PairOutput::Timeout(self.next_check),
        }
    }

    /// The next event (a failure).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether the call has video (the callee took it).
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// The SRTP suite of a leg, when its media is protected.
    pub fn srtp(&self, side: Side) -> Option<crate::srtp::Suite> {
        self.legs[side.index()]
            .sip
            .srtp
            .as_ref()
            .map(|keys| keys.local.suite)
    }
}

/// Takes a phone's key from its m-line: an offer's (answered with ours) or the answer to ours.
fn take_keys(leg: &mut Leg, line: &MediaLine, key: Option<Crypto>, offer: bool) -> Result<()> {
    match (key, offer) {
        (None, _) => {
            leg.sip.srtp = None;
            if offer {
                leg.secure = false;
            }
        }
        (Some(remote), true) => {
            let local = SessionKeys::answer_key(leg.sip.srtp.as_ref(), &remote);
            leg.secure = line.is_srtp_profile();
            leg.sip.srtp = Some(SessionKeys::rekey(leg.sip.srtp.take(), local, remote));
        }
        (Some(remote), false) => {
            let local = answered_key(&leg.offered_keys, &remote, &line.proto)?;
            leg.sip.srtp = Some(SessionKeys::rekey(leg.sip.srtp.take(), local, remote));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
