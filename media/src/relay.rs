//! One call's media relay, sans-IO: the browser leg (str0m: ICE-lite, DTLS-SRTP, rtcp-mux,
//! BUNDLE) and the SIP leg (plain RTP/AVP, SDES-SRTP or DTLS-SRTP as the policy and the phone
//! agree), with RTP forwarded both ways without decoding.
//!
//! The relay negotiates both sides: for an outgoing call it turns the browser's offer into a SIP
//! offer, then the SIP answer into the browser's answer (which can only be made once the SIP
//! side has chosen the codec, since nothing is transcoded); for an incoming call it turns the
//! SIP offer into an offer for the browser and the browser's answer into the SIP answer.
//! Re-offers from the SIP side are answered here (direction mirrored, so that hold works).
//!
//! It is fed datagrams from both legs and timer expiries, and drained with
//! [`Relay::poll_output`] (datagrams to send, then the next timeout) and [`Relay::poll_event`].
//!
//! Inside, a relay is a browser leg (`browser_leg.rs`: str0m's peer, how it is built and what
//! is known of the browser), a SIP leg (`sip_leg.rs`: target, strict-source latches, SSRC,
//! statistics, RTCP reports, keys and DTLS-SRTP handshakes) and a track per m-line
//! (`track.rs`: codec, payload type map, rewriting each way). The SIP side's descriptions, read
//! and written, are in `sip_side.rs`, the mid-call changes in `renegotiate.rs`, the video
//! stream in `video.rs`, and the packet paths between the legs in `forward.rs`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use str0m::Rtc;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction as WebRtcDirection, MediaKind, Mid};

use crate::codec::{Codec, Format, Payload, VideoCodec};
use crate::error::{Error, Result};
use crate::sdp::{Description, Direction, answered_payloads, declined_as_offered, relayable};
use crate::srtp::{Crypto, SrtpPolicy};

mod browser_leg;
mod dtls_provider;
mod forward;
mod latch;
pub mod pair;
mod quality;
mod renegotiate;
mod sip_leg;
mod sip_side;
mod track;
mod video;

use browser_leg::{BrowserLeg, browser_formats, build_rtc, spare_video};
use sip_leg::SipLeg;
use track::{Track, chosen, default_payloads, free_pt};
use video::VideoStream;

pub use forward::is_stun;
pub use quality::{CallQuality, LegQuality};

/// Makes the browser legs' shared DTLS certificate and configuration (see [`crate::init_crypto`]).
pub(crate) fn prepare_shared() {
    browser_leg::prepare_shared();
    #[cfg(test)]
    PREPARED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// How many times [`prepare_shared`] ran: the shared configuration may come from any test's
/// relay as well, so the start-up test counts the preparation itself.
#[cfg(test)]
pub(crate) static PREPARED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A relay's settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Where browsers reach the gateway: the advertised address and the shared UDP port (the
    /// ICE candidate given to the browser).
    pub browser: SocketAddr,
    /// The SIP leg's RTP address as written in SDP (the advertised address and the call's
    /// port).
    pub sip_rtp: SocketAddr,
    /// The codecs relayed, first preferred.
    pub codecs: Vec<Codec>,
    /// How long a leg that should be sending may stay silent.
    pub media_timeout: Duration,
    /// How long the browser may go without an ICE check (consent, RFC 7675).
    pub ice_timeout: Duration,
    /// The wall-clock time at `now` of creation, for RTCP sender reports.
    pub wallclock: SystemTime,
    /// The CNAME of our RTCP toward the SIP side.
    pub cname: String,
    /// SRTP toward the SIP side.
    pub srtp: SrtpPolicy,
    /// The SIP leg's video RTP address as written in SDP, when the call has a port pair for
    /// video (without one, video is declined).
    pub sip_video: Option<SocketAddr>,
    /// The video codecs relayed, first preferred (none: video is declined).
    pub video_codecs: Vec<VideoCodec>,
}

/// What the relay tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// ICE and DTLS are up on the browser leg.
    Connected,
    /// The call must end: a leg went silent, or the browser leg failed.
    Failed(String),
    /// The SIP side should send a keyframe and takes neither PLI nor FIR: ask with a SIP INFO
    /// (`application/media_control+xml`, `picture_fast_update`).
    KeyframeByInfo,
}

/// A datagram to send, or when to call back.
#[derive(Debug)]
pub enum Output<'a> {
    /// To a browser, from the shared browser port.
    Browser {
        /// Where to.
        destination: SocketAddr,
        /// What.
        data: &'a [u8],
    },
    /// To the SIP side, from the call's RTP port.
    SipRtp {
        /// Where to.
        destination: SocketAddr,
        /// What.
        data: &'a [u8],
    },
    /// To the SIP side, from the call's RTCP port (the RTP port with rtcp-mux).
    SipRtcp {
        /// Where to.
        destination: SocketAddr,
        /// What.
        data: &'a [u8],
    },
    /// Video to the SIP side, from the call's video RTP port.
    SipVideoRtp {
        /// Where to.
        destination: SocketAddr,
        /// What.
        data: &'a [u8],
    },
    /// Video RTCP to the SIP side, from the call's video RTCP port.
    SipVideoRtcp {
        /// Where to.
        destination: SocketAddr,
        /// What.
        data: &'a [u8],
    },
    /// Nothing more now: call [`Relay::handle_timeout`] at this time.
    Timeout(Instant),
}

/// Where the negotiation stands.
#[derive(Debug)]
enum Negotiation {
    /// Outgoing: the browser's offer (checked to be one the WebRTC peer reads) waits for the
    /// SIP answer.
    AwaitingSipAnswer { offer_text: String },
    /// Incoming: our offer to the browser waits for its answer.
    AwaitingBrowserAnswer {
        pending: Box<SdpPendingOffer>,
        sip_offer: Option<Description>,
    },
    /// Incoming, offerless INVITE: the browser answered; the SIP answer comes in the ACK.
    AwaitingSipAck,
    /// Our new offer to the browser (the SIP side changed the session) waits for its answer.
    AwaitingBrowserUpdate { pending: Box<SdpPendingOffer> },
    /// The browser's new offer mid-call went to the SIP side; its answer makes the browser's.
    AwaitingSipReanswer { offer_text: String },
    /// Both sides agreed.
    Done,
}

/// One call's relay.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    created: Instant,
    /// The browser leg: str0m's peer and what is known of the browser.
    browser: BrowserLeg,
    negotiation: Negotiation,
    session_id: u64,
    version: u64,
    /// The SIP leg: its address, sources, SSRC, statistics and reports.
    sip: SipLeg,
    /// The audio track (one m-line on each leg).
    track: Track,
    /// The video stream (its track and its SIP leg), when the call has video.
    video: Option<VideoStream>,
    /// The video direction of the browser's latest new offer (for our re-offer to SIP).
    video_offer_direction: Option<Direction>,
    /// The browser's new offer removes the video (its m-line at port 0): our re-offer to the
    /// SIP side declines it.
    removing_video: bool,
    /// The payload type of a video m-line the SIP side had and no longer has: our later offers
    /// keep it, declined, so that m-lines keep their places (RFC 3264 section 8).
    video_gone: Option<u8>,
    /// The browser leg's video m-line to stop at our next offer to the browser (the SIP side
    /// removed the video).
    stop_browser_video: Option<Mid>,
    /// The SIP side moved the call to another codec: our next offer to the browser has only
    /// that one, so that the browser sends it.
    codec_switched: bool,
    /// The SIP side's latest offer and its audio m-line, while its answer may still change
    /// with the browser's (video the browser declines).
    answering: Option<(Description, usize)>,
    /// The keys of our latest offer to the SIP side, which its answer picks from.
    offered_keys: Vec<Crypto>,
    /// Whether our SIP-side descriptions say `RTP/SAVP`.
    sip_secure: bool,
    /// A buffer for the SIP side's packets once SRTP is taken off.
    plain: Vec<u8>,

    /// The latest time the relay was given (by a datagram or a timeout).
    now: Instant,
    /// When the silence checks run next.
    next_check: Instant,
    failed: bool,
    scratch: Vec<u8>,
    events: VecDeque<Event>,
}

impl Relay {
    fn new(now: Instant, config: RelayConfig, negotiation: Negotiation, rtc: Option<Rtc>) -> Self {
        // Not secret, only distinct per call: the wall clock's nanoseconds and the port.
        let seed = config
            .wallclock
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|since| since.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(config.sip_rtp.port()) << 40);
        Relay {
            created: now,
            browser: BrowserLeg::new(now, rtc),
            negotiation,
            session_id: seed & 0x7fff_ffff_ffff,
            version: 1,
            sip: SipLeg::new(now, (seed as u32) ^ (seed >> 32) as u32 | 1),
            track: Track::default(),
            video: None,
            video_offer_direction: None,
            removing_video: false,
            video_gone: None,
            stop_browser_video: None,
            codec_switched: false,
            answering: None,
            offered_keys: Vec::new(),
            sip_secure: false,
            plain: Vec::with_capacity(1500),
            now,
            next_check: now + Duration::from_secs(1),
            failed: false,
            scratch: Vec::with_capacity(1500),
            events: VecDeque::new(),
            config,
        }
    }

    /// An outgoing call: takes the browser's offer and returns the relay with the SIP offer
    /// (the codecs both the browser and the configuration have, and telephone-event).
    pub fn outgoing(
        now: Instant,
        config: RelayConfig,
        browser_offer: &str,
    ) -> Result<(Relay, String)> {
        let description = Description::parse(browser_offer)?;
        let (_, audio) = description.audio().ok_or(Error::NoAudio)?;
        let payloads = relayable(audio, &config.codecs)?;
        // Read now, so that an offer the WebRTC peer would refuse fails before any SIP.
        SdpOffer::from_sdp_string(browser_offer)
            .map_err(|error| Error::Sdp(crate::sdp::without_keys(&error.to_string())))?;
        let mut relay = Relay::new(
            now,
            config,
            Negotiation::AwaitingSipAnswer {
                offer_text: browser_offer.to_owned(),
            },
            None,
        );
        relay.track.mid = audio.mid.as_deref().map(Mid::from);
        relay.track.sip_payloads = payloads;
        relay.offer_keys()?;
        relay.video_from_browser_offer(&description);
        let sip_offer = relay.sip_description(Direction::SendRecv, None);
        Ok((relay, sip_offer))
    }

    /// An incoming call: takes the SIP offer (none for an offerless INVITE) and returns the
    /// relay with the offer for the browser.
    pub fn incoming(
        now: Instant,
        config: RelayConfig,
        sip_offer: Option<&str>,
    ) -> Result<(Relay, String)> {
        let (description, payloads) = match sip_offer {
            Some(text) => {
                let description = Description::parse(text)?;
                let (_, audio, _) = description.sip_audio_with(&config.srtp)?;
                let payloads = relayable(audio, &config.codecs)?;
                (Some(description), payloads)
            }
            None => (None, default_payloads(&config.codecs)),
        };
        // The browser gets the same payload types, plus telephone-event at each codec's own
        // rate (browsers send DTMF only at the rate of the audio codec in use).
        let mut browser = payloads.clone();
        for payload in &payloads {
            if let Format::Audio(codec) = payload.format {
                track::add_telephone_event(&mut browser, codec.clock_rate());
            }
        }
        // Video for the browser: the SIP offer's formats, each with a retransmission payload
        // type of its own.
        let mut video = description
            .as_ref()
            .and_then(|description| VideoStream::from_sip_offer(now, &config, description));
        let mut rtx = Vec::new();
        // What the browser is offered of the video: the SIP side's formats and their RTX.
        let mut offered_video: Option<Vec<u8>> = None;
        if let Some(video) = &video {
            let payloads = &video.track.sip_payloads;
            let mut taken = browser.clone();
            taken.extend(payloads.iter().cloned());
            for payload in payloads {
                // Without a free payload type the format goes without retransmission.
                let Some(pt) = free_pt(&taken) else { break };
                taken.push(Payload {
                    pt,
                    format: Format::TelephoneEvent(0),
                    fmtp: None,
                });
                rtx.push((pt, payload.pt));
            }
            browser.extend(payloads.iter().cloned());
            offered_video = Some(
                payloads
                    .iter()
                    .map(|payload| payload.pt)
                    .chain(rtx.iter().map(|(repair, _)| *repair))
                    .collect(),
            );
        }
        // Video may come later (either side adds it), or come back in another format after it
        // was removed: the peer knows every configured format (the offer's video m-line is
        // restricted to the SIP side's).
        spare_video(&config.video_codecs, &mut browser, &mut rtx);
        let mut rtc = build_rtc(now, &config, &browser, &rtx, video.is_some())?;
        let mut api = rtc.sdp_api();
        let mid = api.add_media(
            MediaKind::Audio,
            WebRtcDirection::SendRecv,
            None,
            None,
            None,
        );
        if let Some(video) = &mut video {
            video.track.mid = Some(api.add_media(
                MediaKind::Video,
                WebRtcDirection::SendRecv,
                None,
                None,
                None,
            ));
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| Error::WebRtc("no offer was made".to_owned()))?;
        let mut relay = Relay::new(
            now,
            config,
            Negotiation::AwaitingBrowserAnswer {
                pending: Box::new(pending),
                sip_offer: description.clone(),
            },
            Some(rtc),
        );
        if let Some(mut video) = video {
            video.sip.ssrc = relay.sip.ssrc ^ 0x5555_5555;
            relay.video = Some(video);
        }
        relay.track.mid = Some(mid);
        relay.track.sip_payloads = payloads;
        match &description {
            Some(description) => relay.apply_sip_side(description, true)?,
            // Offerless INVITE: our offer goes in the 200.
            None => relay.offer_keys()?,
        }
        let offer = offer.to_sdp_string();
        Ok((
            relay,
            match offered_video {
                Some(keep) => crate::sdp::keep_formats(&offer, "video", &keep),
                None => offer,
            },
        ))
    }

    /// The SIP side's answer (or early answer, from a 183) to our offer. The first time, returns
    /// the answer for the browser; later (another fork's early media, the 200 after a 183), it
    /// only moves the SIP leg to the new description.
    pub fn accept_sip_answer(&mut self, now: Instant, sip_answer: &str) -> Result<Option<String>> {
        let description = Description::parse(sip_answer)?;
        let (_, audio, _) = description.sip_audio_with(&self.config.srtp)?;
        let answered = answered_payloads(audio, &self.track.sip_payloads);
        let Some(codec) = answered.iter().find_map(|payload| match payload.format {
            Format::Audio(codec) => Some(codec),
            Format::TelephoneEvent(_) | Format::Video(_) => None,
        }) else {
            return Err(Error::NoCommonCodec(format!(
                "the SIP answer has none of the offered codecs (it has {})",
                audio.codec_names.join(", ")
            )));
        };
        match std::mem::replace(&mut self.negotiation, Negotiation::Done) {
            Negotiation::AwaitingSipAnswer { offer_text } => {
                self.track.codec = Some(codec);
                self.apply_sip_answer(&description)?;
                let browser = Description::parse(&offer_text)?;
                let (_, browser_audio) = browser.audio().ok_or(Error::NoAudio)?;
                let mut payloads: Vec<Payload> = browser_audio
                    .payloads
                    .iter()
                    .filter(|payload| payload.format == Format::Audio(codec))
                    .take(1)
                    .cloned()
                    .collect();
                // telephone-event at the codec's rate (what Chrome sends with opus), else at
                // the rate the browser has (Firefox offers only 8 kHz): the relay rescales.
                payloads.extend(
                    browser_audio
                        .telephone_event(codec.clock_rate())
                        .or_else(|| {
                            browser_audio
                                .payloads
                                .iter()
                                .find(|p| matches!(p.format, Format::TelephoneEvent(_)))
                        })
                        .cloned(),
                );
                // The browser's other codecs that the call relays, after the one in use (the
                // browser sends the first of the answer's): a later offer from the SIP side
                // may move the call to one of them.
                for payload in &browser_audio.payloads {
                    let Format::Audio(other) = payload.format else {
                        continue;
                    };
                    if !self.config.codecs.contains(&other)
                        || payloads.iter().any(|p| p.format == payload.format)
                    {
                        continue;
                    }
                    payloads.push(payload.clone());
                    let rate = other.clock_rate();
                    if let Some(event) = browser_audio.telephone_event(rate)
                        && !payloads.iter().any(|p| p.format == event.format)
                    {
                        payloads.push(event.clone());
                    }
                }
                let mut rtx = self.browser_video_payload(&browser, &mut payloads);
                let keep = self.browser_video_keep(&browser);
                let video = self.video.is_some();
                // Video may come later (the browser or the phone adds it), or come back in
                // another format after it was removed: the peer knows every configured format
                // (the browser's answer is restricted to the agreed one).
                spare_video(&self.config.video_codecs, &mut payloads, &mut rtx);
                let mut rtc = build_rtc(now, &self.config, &payloads, &rtx, video)?;
                let offer = SdpOffer::from_sdp_string(&crate::sdp::restrict_video(
                    &offer_text,
                    keep.as_deref(),
                ))
                .map_err(|error| Error::Sdp(crate::sdp::without_keys(&error.to_string())))?;
                let answer = rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .map_err(|error| Error::WebRtc(error.to_string()))?;
                self.browser.rtc = Some(rtc);
                self.browser.last_stun = now;
                self.learn_browser_pts();
                if !self
                    .track
                    .mapping
                    .browser
                    .iter()
                    .any(|(_, format)| *format == Format::Audio(codec))
                {
                    return Err(Error::NoCommonCodec(format!(
                        "the browser's answer could not carry {}, the SIP side's codec",
                        codec.name()
                    )));
                }
                let answer = declined_as_offered(&answer.to_sdp_string(), &browser);
                let answer = crate::sdp::own_msid(&answer, &offer_text);
                Ok(Some(self.with_sip_bandwidth(answer)))
            }
            Negotiation::AwaitingSipAck => {
                self.track.codec = Some(codec);
                self.apply_sip_answer(&description)?;
                Ok(None)
            }
            other => {
                self.negotiation = other;
                if Some(codec) != self.track.codec {
                    return Err(Error::NoCommonCodec(format!(
                        "the SIP side changed codec to {} (the call uses {})",
                        codec.name(),
                        self.track.codec.map_or("none", Codec::name)
                    )));
                }
                self.apply_sip_answer(&description)?;
                Ok(None)
            }
        }
    }

    /// The browser's answer to our offer (incoming calls): returns the SIP answer, or for an
    /// offerless INVITE the SIP offer to put in the 200.
    pub fn accept_browser_answer(&mut self, now: Instant, answer: &str) -> Result<String> {
        let Negotiation::AwaitingBrowserAnswer { pending, sip_offer } =
            std::mem::replace(&mut self.negotiation, Negotiation::Done)
        else {
            return Err(Error::WebRtc(
                "no offer is waiting for an answer".to_owned(),
            ));
        };
        self.apply_browser_answer(*pending, answer)?;
        self.browser.last_stun = now;
        let codec = self
            .track
            .mapping
            .browser
            .iter()
            .find_map(|(_, format)| match format {
                Format::Audio(codec) => Some(*codec),
                Format::TelephoneEvent(_) | Format::Video(_) => None,
            })
            .ok_or_else(|| {
                Error::NoCommonCodec("the browser answered no audio codec".to_owned())
            })?;
        if !self
            .track
            .sip_payloads
            .iter()
            .any(|payload| payload.format == Format::Audio(codec))
        {
            return Err(Error::NoCommonCodec(format!(
                "the browser answered {}, which the SIP side did not offer",
                codec.name()
            )));
        }
        self.track.codec = Some(codec);
        self.take_browser_video_answer();
        let Some(sip_offer) = sip_offer else {
            // Offerless INVITE: our offer goes in the 200, the answer in the ACK.
            self.negotiation = Negotiation::AwaitingSipAck;
            self.track.sip_payloads = chosen(&self.track.sip_payloads, codec);
            return Ok(self.sip_description(Direction::SendRecv, None));
        };
        self.track.sip_payloads = chosen(&self.track.sip_payloads, codec);
        self.apply_sip_side(&sip_offer, true)?;
        let audio_index = sip_offer
            .sip_audio_with(&self.config.srtp)
            .map(|(index, _, _)| index)
            .unwrap_or(0);
        let answer = self.sip_description(self.sip.direction, Some((&sip_offer, audio_index)));
        self.now = self.now.max(now);
        self.start_sip_dtls()?;
        Ok(answer)
    }

    /// A new offer from the SIP side (re-INVITE or UPDATE): the answer, with the direction
    /// mirrored (sendonly gets recvonly, so that hold works) and the RTP target moved. An offer
    /// without the call's codec moves the call to another the browser leg knows (the browser
    /// is then offered that one alone, [`Relay::browser_update`]); one with none is refused.
    pub fn answer_sip_offer(&mut self, sdp: &str) -> Result<String> {
        let description = Description::parse(sdp)?;
        if self.video.is_none() {
            // The SIP side adds video: taken in a format the browser leg knows, offered to the
            // browser by `browser_update`.
            self.video_from_sip_reoffer(&description);
        }
        let (audio_index, audio, _) = description.sip_audio_with(&self.config.srtp)?;
        let current = self
            .track
            .codec
            .ok_or_else(|| Error::WebRtc("no codec chosen yet".to_owned()))?;
        let has = |codec: Codec| {
            audio
                .payloads
                .iter()
                .any(|p| p.format == Format::Audio(codec))
        };
        let codec = if has(current) {
            current
        } else {
            let known: Vec<Codec> = self
                .track
                .mapping
                .browser
                .iter()
                .filter_map(|(_, format)| match format {
                    Format::Audio(codec) if self.config.codecs.contains(codec) => Some(*codec),
                    _ => None,
                })
                .collect();
            audio
                .payloads
                .iter()
                .find_map(|payload| match payload.format {
                    Format::Audio(codec) if known.contains(&codec) => Some(codec),
                    _ => None,
                })
                .ok_or_else(|| {
                    Error::NoCommonCodec(format!(
                        "the new offer drops {} and has no other codec the browser leg takes \
                         (it has {})",
                        current.name(),
                        audio.codec_names.join(", ")
                    ))
                })?
        };
        let mut sip_payloads: Vec<Payload> = audio
            .payloads
            .iter()
            .filter(|p| p.format == Format::Audio(codec))
            .take(1)
            .cloned()
            .collect();
        sip_payloads.extend(
            audio
                .payloads
                .iter()
                .filter(|p| matches!(p.format, Format::TelephoneEvent(_)))
                .cloned(),
        );
        self.track.sip_payloads = sip_payloads;
        self.apply_sip_side(&description, true)?;
        if codec != current {
            self.track.codec = Some(codec);
            self.codec_switched = true;
        }
        self.version += 1;
        let answer = self.sip_description(self.sip.direction, Some((&description, audio_index)));
        self.answering = Some((description, audio_index));
        self.start_sip_dtls()?;
        Ok(answer)
    }

    /// Our offer for an offerless re-INVITE from the SIP side (the call as it is).
    pub fn sip_offer(&mut self) -> String {
        self.version += 1;
        // The keys in use, so that the answer can keep them.
        self.offered_keys = self.sip_keys();
        self.sip_description(Direction::SendRecv, None)
    }

    /// The answer (in the ACK) to [`Relay::sip_offer`].
    pub fn accept_sip_reanswer(&mut self, sdp: &str) -> Result<()> {
        let description = Description::parse(sdp)?;
        self.apply_sip_side(&description, false)
    }

    /// Applies the browser's answer to our pending offer, and reads the payload types it chose.
    fn apply_browser_answer(&mut self, pending: SdpPendingOffer, answer: &str) -> Result<()> {
        let answer = SdpAnswer::from_sdp_string(answer)
            .map_err(|error| Error::Sdp(crate::sdp::without_keys(&error.to_string())))?;
        let rtc = self
            .browser
            .rtc
            .as_mut()
            .ok_or_else(|| Error::WebRtc("no WebRTC peer".to_owned()))?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|error| Error::WebRtc(error.to_string()))?;
        self.learn_browser_pts();
        Ok(())
    }

    /// Reads the browser leg's negotiated payload types from str0m.
    fn learn_browser_pts(&mut self) {
        let Some(rtc) = &self.browser.rtc else { return };
        self.track.mapping.browser = browser_formats(rtc, self.track.mid, false);
        if let Some(video) = &mut self.video {
            video.track.mapping.browser = browser_formats(rtc, video.track.mid, true);
        }
    }

    /// The ICE username fragment browsers use toward this relay (for demultiplexing), once
    /// the browser leg exists.
    pub fn ice_ufrag(&mut self) -> Option<String> {
        self.browser
            .rtc
            .as_mut()
            .map(|rtc| rtc.direct_api().local_ice_credentials().ufrag)
    }

    /// The codec in use, once negotiated.
    pub fn codec(&self) -> Option<Codec> {
        self.track.codec
    }

    /// Our direction toward the SIP side.
    pub fn sip_direction(&self) -> Direction {
        self.sip.direction
    }

    /// The SRTP suite of the SIP leg, when its media is protected.
    pub fn sip_srtp(&self) -> Option<crate::srtp::Suite> {
        self.sip.srtp.as_ref().map(|srtp| srtp.local.suite)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Ends the browser leg (DTLS close), and DTLS-SRTP toward the SIP side, so that the
    /// last datagrams go out.
    pub fn close(&mut self) {
        if let Some(rtc) = &mut self.browser.rtc {
            let _ = rtc.close();
        }
        let now = self.now;
        for sip in std::iter::once(&mut self.sip).chain(self.video.as_mut().map(|v| &mut v.sip)) {
            if let Some(session) = sip.dtls.as_mut().and_then(|dtls| dtls.session.as_mut()) {
                session.close(now);
            }
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod two_peers;
