//! The video stream of a relay: one m-line on each leg, relayed without transcoding.
//!
//! * Formats: VP8, VP9 and H.264 as configured, payload types mapped per m-line as audio's;
//!   H.264 only between payload types of the same packetization mode and profile, the level
//!   being the lower of the two legs' (RFC 6184 section 8.1).
//! * Its own SIP-side port pair (or rtcp-mux), latched as audio's, its own SDES keys.
//! * Keyframes: a browser's PLI or FIR becomes a PLI for the SIP side, or a FIR (with the
//!   sequence number raised for each new request, RFC 5104 section 4.3.1) for a phone that
//!   says it takes FIR and not PLI; the SIP side's PLI or FIR becomes a PLI toward the browser.
//!   A keyframe is asked of both sides once media starts and after every new description.
//! * Loss on the browser leg is mended there: the WebRTC stack keeps what it sent and answers
//!   the browser's NACKs with RTX, and NACKs the browser's own losses; transport-wide
//!   congestion feedback lets the browser's encoder ramp up.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::media::KeyframeRequestKind;

use super::Relay;
use super::browser_leg::h264_fmtp;
use super::sip_leg::{SipLeg, answered_key};
use super::track::Track;
use crate::codec::{Format, Payload, Video};
use crate::error::Result;
use crate::rtp::{write_fir, write_pli};
use crate::sdp::{Description, Direction, MediaLine, VideoDescription, answered_payloads};
use crate::srtp::{Crypto, SessionKeys};

/// What we sent on a video stream is kept for the browser's NACKs this long (libwebrtc keeps at
/// least a second of its own): a NACK later than that comes too late for the picture anyway.
/// Bounded by age, the history holds about 130 packets at 1 Mbit/s where a count of 256 held
/// two seconds' worth (653 KiB per call in the benchmark).
const HISTORY_AGE: Duration = Duration::from_secs(1);
/// ... and at most this many packets (a second of about 4 Mbit/s).
const HISTORY_PACKETS: usize = 512;
/// str0m's default: queued resends are dropped while they exceed 15% of what is sent.
const RTX_RATIO_CAP: Option<f32> = Some(0.15);

/// Keyframe requests toward one side go no more often than this: a browser repeats its PLI
/// while it waits, and every request makes an encoder spend a keyframe.
const REQUEST_INTERVAL: Duration = Duration::from_millis(300);

/// The video stream.
#[derive(Debug)]
pub(super) struct VideoStream {
    pub(super) track: Track,
    pub(super) sip: SipLeg,
    /// Our SIP-side address for video.
    pub(super) rtp: SocketAddr,
    /// The format both legs use, once agreed.
    pub(super) format: Option<Video>,
    /// Every video payload of our offer to the SIP side, for phones that send with another
    /// of its numbers than the one they answered.
    pub(super) offered: Vec<(u8, Video)>,
    /// The keys of our latest offer to the SIP side.
    pub(super) offered_keys: Vec<Crypto>,
    /// Whether our SIP-side descriptions say `RTP/SAVP`.
    pub(super) secure: bool,
    /// The index of the SIP offer's video m-line we answer.
    pub(super) offer_index: Option<usize>,
    /// Whether the SIP side asked for rtcp-mux (in its offer).
    pub(super) rtcp_mux_offered: bool,
    /// Whether the SIP side takes PLI, and FIR (its `a=rtcp-fb`); a phone whose feedback
    /// lists neither is asked by SIP INFO.
    pub(super) takes_pli: bool,
    pub(super) takes_fir: bool,
    pub(super) takes_info: bool,
    /// The FIR command sequence number toward the SIP side.
    pub(super) fir_sequence: u8,
    /// A keyframe is wanted from the SIP side (for the browser) / from the browser.
    pub(super) want_from_sip: bool,
    pub(super) want_from_browser: bool,
    pub(super) last_to_sip: Option<Instant>,
    pub(super) last_to_browser: Option<Instant>,
    /// The SIP side's video SSRC, from its RTP.
    pub(super) sip_source: Option<u32>,
    /// `b=` lines: the SIP side's (given to the browser) and the browser's (given to SIP).
    pub(super) sip_bandwidth: Vec<(String, u64)>,
    pub(super) browser_bandwidth: Vec<(String, u64)>,
    /// The SIP side's `a=fmtp` of the format in use (its H.264 level).
    pub(super) remote_fmtp: Option<String>,
    /// The browser's H.264 level, from its offer (incoming calls' answers are lowered to it).
    pub(super) browser_h264_level: Option<u8>,
    /// RTCP waiting to go to the SIP side.
    pub(super) rtcp_out: VecDeque<Vec<u8>>,
    /// A keyframe request by SIP INFO is due (raised as an event).
    pub(super) info_due: bool,
    /// The SIP side's latest TMMBR limit on the browser's video (bits per second), passed to
    /// the browser as REMB.
    pub(super) bitrate_limit: Option<u64>,
    /// The browser-side send stream whose history is bounded by age (each new stream's is).
    history_for: Option<str0m::rtp::Ssrc>,
}

impl VideoStream {
    pub(super) fn new(now: Instant, rtp: SocketAddr, ssrc: u32) -> VideoStream {
        VideoStream {
            track: Track {
                video: true,
                ..Track::default()
            },
            sip: SipLeg::new(now, ssrc),
            rtp,
            format: None,
            offered: Vec::new(),
            offered_keys: Vec::new(),
            secure: false,
            offer_index: None,
            rtcp_mux_offered: false,
            takes_pli: true,
            takes_fir: false,
            takes_info: false,
            fir_sequence: 0,
            want_from_sip: true,
            want_from_browser: true,
            last_to_sip: None,
            last_to_browser: None,
            sip_source: None,
            sip_bandwidth: Vec::new(),
            browser_bandwidth: Vec::new(),
            remote_fmtp: None,
            browser_h264_level: None,
            rtcp_out: VecDeque::new(),
            info_due: false,
            bitrate_limit: None,
            history_for: None,
        }
    }

    /// The video stream of an incoming call, from the SIP offer: its video m-line's formats
    /// that the configuration relays, when the call has a SIP-side video port.
    pub(super) fn from_sip_offer(
        now: Instant,
        config: &super::RelayConfig,
        offer: &Description,
    ) -> Option<VideoStream> {
        let rtp = config.sip_video?;
        let (index, line, _) = offer.sip_video_with(&config.srtp)?;
        let payloads = crate::sdp::common_video(&line.payloads, &config.video_codecs);
        if payloads.is_empty() {
            return None;
        }
        let mut video = VideoStream::new(now, rtp, 0);
        video.track.sip_payloads = payloads;
        video.offer_index = Some(index);
        video.rtcp_mux_offered = line.rtcp_mux;
        Some(video)
    }

    /// The browser's payload type for a video payload type from the SIP side: by its format
    /// (ours or the phone's numbering), else any payload type of our offer of the same codec
    /// and packetization: phones that match offers by codec name alone (baresip) send H.264
    /// with the number of the first offered payload of its packetization mode, whatever its
    /// profile.
    fn browser_pt(&self, pt: u8) -> Option<u8> {
        if let Some((pt, _)) = self.track.browser_pt_for(pt) {
            return Some(pt);
        }
        let agreed = self.format?;
        let (_, offered) = self.offered.iter().find(|(p, _)| *p == pt)?;
        let same = match (offered, agreed) {
            (Video::H264 { mode, .. }, Video::H264 { mode: agreed, .. }) => *mode == agreed,
            (offered, agreed) => offered.codec() == agreed.codec(),
        };
        let (pt, _) = same.then(|| self.track.mapping.to_browser(Format::Video(agreed)))??;
        Some(pt)
    }

    /// The format both legs use from now on: the SIP side's payloads keep that one alone.
    pub(super) fn agree(&mut self, format: Video) {
        self.format = Some(format);
        self.track
            .sip_payloads
            .retain(|payload| payload.format == Format::Video(format));
        self.track.sip_payloads.truncate(1);
    }

    /// The keys our next description gives: the one in use, else those of our offer.
    pub(super) fn keys(&self) -> Vec<Crypto> {
        if self.sip.dtls.is_some() {
            return Vec::new();
        }
        match &self.sip.srtp {
            Some(srtp) => vec![srtp.local.clone()],
            None => self.offered_keys.clone(),
        }
    }

    /// Our video m-line for the SIP side.
    pub(super) fn description<'a>(
        &'a self,
        direction: Direction,
        keys: &'a [Crypto],
    ) -> VideoDescription<'a> {
        VideoDescription {
            index: self.offer_index,
            rtp: self.rtp,
            payloads: &self.track.sip_payloads,
            direction,
            crypto: keys,
            secure: self.secure,
            rtcp_mux: self.rtcp_mux_offered,
            bandwidth: &self.browser_bandwidth,
            dtls: self.sip.dtls.as_ref().map(|dtls| &dtls.line),
        }
    }

    /// Takes the SIP side's video m-line: payload types, target, direction, keys, feedback.
    fn take_remote(
        &mut self,
        line: &MediaLine,
        key: Option<&Crypto>,
        offer: bool,
        created: Instant,
    ) -> Result<()> {
        if line.is_dtls_profile() {
            self.sip.take_dtls(line, offer)?;
        } else {
            self.sip.dtls = None;
            self.sip.rtcp_keys = None;
        }
        match key {
            _ if self.sip.dtls.is_some() => {}
            None => {
                self.sip.srtp = None;
                if offer {
                    self.secure = false;
                }
            }
            Some(remote) => {
                let local = if offer {
                    self.secure = line.is_srtp_profile();
                    SessionKeys::answer_key(self.sip.srtp.as_ref(), remote)
                } else {
                    answered_key(&self.offered_keys, remote, &line.proto)?
                };
                self.sip.srtp = Some(SessionKeys::rekey(
                    self.sip.srtp.take(),
                    local,
                    remote.clone(),
                ));
            }
        }
        let formats: Vec<Format> = self.track.sip_payloads.iter().map(|p| p.format).collect();
        self.track.mapping.sip = line
            .payloads
            .iter()
            .filter(|payload| formats.contains(&payload.format))
            .map(|payload| (payload.pt, payload.format))
            .collect();
        if let Some((pt, _)) = self.track.mapping.sip.first() {
            self.remote_fmtp = line
                .payloads
                .iter()
                .find(|payload| payload.pt == *pt)
                .and_then(|payload| payload.fmtp.clone());
            let pli = line.has_feedback(*pt, "nack pli");
            let fir = line.has_feedback(*pt, "ccm fir");
            let says_any = line
                .feedback
                .iter()
                .any(|(of, _)| of.is_none_or(|of| of == *pt));
            // A phone that says nothing of feedback gets PLI, which most honour; one that
            // lists feedback without either is asked by SIP INFO.
            self.takes_info = says_any && !pli && !fir;
            self.takes_pli = pli || (!fir && !self.takes_info);
            self.takes_fir = fir;
        }
        self.sip.take_remote(line, offer);
        self.sip.last_rtp = self.sip.last_rtp.max(created);
        self.sip_bandwidth = line.bandwidth.clone();
        // A new description: the new decoder starts from a keyframe.
        self.want_from_sip = true;
        self.want_from_browser = true;
        Ok(())
    }

    /// A TMMBR from the SIP side on the video we send it: its limit is kept (for the browser,
    /// as REMB) and acknowledged with a TMMBN whose bounding set is that request (RFC 5104
    /// section 4.2.2; we are the only sender on the stream).
    fn take_tmmbr(&mut self, request: &crate::rtp::Tmmbr) {
        self.bitrate_limit = Some(request.bitrate);
        let mut packet = Vec::with_capacity(20);
        crate::rtp::write_tmmbn(&mut packet, self.sip.ssrc, request);
        self.queue_rtcp(packet);
    }

    /// Queues RTCP for the SIP side, protected when the leg is SRTP.
    fn queue_rtcp(&mut self, packet: Vec<u8>) {
        if let Some(packet) = self.sip.protect_rtcp(packet) {
            self.rtcp_out.push_back(packet);
        }
    }

    /// Queues a keyframe request toward the SIP side (PLI, or FIR for a phone that takes only
    /// that), unless one went very recently.
    fn request_from_sip(&mut self, now: Instant) {
        let Some(media) = self.sip_source else {
            // Not heard yet: asked for once it is.
            self.want_from_sip = true;
            return;
        };
        if self.sip.rtcp_destination().is_none() || !self.sip.direction.receives() {
            return;
        }
        if self
            .last_to_sip
            .is_some_and(|last| now.saturating_duration_since(last) < REQUEST_INTERVAL)
        {
            return;
        }
        self.last_to_sip = Some(now);
        self.want_from_sip = false;
        if self.takes_info {
            self.info_due = true;
            return;
        }
        let mut packet = Vec::with_capacity(20);
        if self.takes_pli {
            write_pli(&mut packet, self.sip.ssrc, media);
        } else {
            self.fir_sequence = self.fir_sequence.wrapping_add(1);
            write_fir(&mut packet, self.sip.ssrc, media, self.fir_sequence);
        }
        self.queue_rtcp(packet);
    }
}

impl Relay {
    /// Makes the video stream for an outgoing call from the browser's offer: its video m-line's
    /// formats that the configuration relays, when the call has a SIP-side video port.
    pub(super) fn video_from_browser_offer(&mut self, offer: &Description) {
        let (Some(rtp), Some((_, line))) = (self.config.sip_video, offer.video()) else {
            return;
        };
        let payloads = crate::sdp::common_video(&line.payloads, &self.config.video_codecs);
        if payloads.is_empty() {
            return;
        }
        let mut video = VideoStream::new(self.now, rtp, self.sip.ssrc ^ 0x5555_5555);
        video.track.mid = line.mid.as_deref().map(str0m::media::Mid::from);
        video.offered = payloads
            .iter()
            .filter_map(|payload| match payload.format {
                Format::Video(format) => Some((payload.pt, format)),
                _ => None,
            })
            .collect();
        video.track.sip_payloads = payloads;
        video.browser_bandwidth = line.bandwidth.clone();
        video.offered_keys = self.config.srtp.offer();
        video.secure = self.sip_secure;
        // Video offered on a DTLS-SRTP call is DTLS-SRTP too, on its own association.
        if self.sip.dtls.is_some() && video.sip.offer_dtls().is_ok() {
            video.offered_keys.clear();
        }
        self.video = Some(video);
    }

    /// Makes the video stream for the SIP side's new offer that adds video (a call without it
    /// so far): the first of its formats the configuration relays and the browser leg's peer
    /// knows, when the call has a SIP-side video port.
    pub(super) fn video_from_sip_reoffer(&mut self, offer: &Description) {
        let Some(mut video) = VideoStream::from_sip_offer(self.now, &self.config, offer) else {
            return;
        };
        let Some(rtc) = &self.browser.rtc else { return };
        let known = super::browser_leg::browser_formats(rtc, None, true);
        let Some(format) =
            video
                .track
                .sip_payloads
                .iter()
                .find_map(|payload| match payload.format {
                    Format::Video(format)
                        if known
                            .iter()
                            .any(|(_, known)| *known == Format::Video(format)) =>
                    {
                        Some(format)
                    }
                    _ => None,
                })
        else {
            return;
        };
        video.agree(format);
        video.sip.ssrc = self.sip.ssrc ^ 0x5555_5555;
        self.video = Some(video);
    }

    /// The SIP side declined or removed the video: the call goes on with audio. Video that was
    /// in the session keeps a declined m-line in our later offers, and the browser's video
    /// m-line is stopped at our next offer to it (unless the browser removed it itself).
    pub(super) fn drop_video(&mut self) {
        let Some(video) = self.video.take() else {
            return;
        };
        if video.format.is_none() {
            return;
        }
        self.video_gone = video.track.sip_payloads.first().map(|payload| payload.pt);
        if !self.removing_video && matches!(self.negotiation, super::Negotiation::Done) {
            self.stop_browser_video = video.track.mid;
        }
    }

    /// The browser leg's payload type (and retransmission type) for the call's video format,
    /// as its peer numbers it.
    pub(super) fn local_video_pts(&self) -> Option<Vec<u8>> {
        let format = self.video.as_ref()?.format?;
        let rtc = self.browser.rtc.as_ref()?;
        let (pt, _) = super::browser_leg::browser_formats(rtc, None, true)
            .into_iter()
            .find(|(_, known)| *known == Format::Video(format))?;
        let rtx = rtc
            .codec_config()
            .params()
            .iter()
            .find(|params| *params.pt() == pt)
            .and_then(|params| params.resend())
            .map(|rtx| *rtx);
        Some(std::iter::once(pt).chain(rtx).collect())
    }

    /// Reads the SIP side's video m-line of a description (an offer we answer, or the answer
    /// to ours). A description without a usable video m-line stops the video: the stream is
    /// declined, the call goes on with audio.
    pub(super) fn apply_sip_video(&mut self, description: &Description, offer: bool) -> Result<()> {
        let Some(video) = &mut self.video else {
            return Ok(());
        };
        let Some((index, line, key)) = description.sip_video_with(&self.config.srtp) else {
            self.drop_video();
            return Ok(());
        };
        if !offer && video.format.is_none() {
            let answered = answered_payloads(line, &video.track.sip_payloads);
            let Some(format) = answered.iter().find_map(|payload| match payload.format {
                Format::Video(format) => Some(format),
                _ => None,
            }) else {
                self.drop_video();
                return Ok(());
            };
            video.format = Some(format);
            video
                .track
                .sip_payloads
                .retain(|payload| payload.format == Format::Video(format));
        }
        if offer {
            video.offer_index = Some(index);
            video.rtcp_mux_offered = line.rtcp_mux;
        }
        video.take_remote(line, key, offer, self.created)
    }

    /// The SIP side's video datagram in the clear.
    pub(super) fn handle_sip_video_plain(
        &mut self,
        now: Instant,
        source: std::net::SocketAddr,
        data: &[u8],
        rtcp: bool,
        rtcp_port: bool,
    ) {
        let Some(video) = &mut self.video else { return };
        if rtcp {
            if !video.sip.take_rtcp(now, source, data, rtcp_port) {
                return;
            }
            let ask = crate::rtp::read_keyframe_requests(data);
            if let Some(request) = crate::rtp::read_tmmbr(data, video.sip.ssrc) {
                video.take_tmmbr(&request);
            }
            if ask.pli || ask.fir {
                video.want_from_browser = true;
                self.request_from_browser(now);
            }
            // The limit goes to the browser again with each report of the phone's, so that a
            // browser stream not known at the request, or a lost REMB, still gets it.
            self.limit_browser();
            return;
        }
        let Some(view) = crate::rtp::RtpView::parse(data) else {
            return;
        };
        if !video.sip.rtp_source.accept(now, source) {
            return;
        }
        video.sip.last_rtp = now;
        video.sip_source = Some(view.ssrc());
        let arrival = (now.saturating_duration_since(self.created).as_secs_f64() * 90_000.0) as i64;
        video
            .sip
            .received
            .record(view.ssrc(), view.seq(), view.timestamp(), arrival);
        if video.want_from_sip {
            video.request_from_sip(now);
        }
        if !video.sip.direction.receives() {
            return;
        }
        let Some(pt) = video.browser_pt(view.pt()) else {
            return;
        };
        let (Some(rtc), Some(mid)) = (&mut self.browser.rtc, video.track.mid) else {
            return;
        };
        let (seq, timestamp) =
            video
                .track
                .to_browser
                .apply(view.ssrc(), view.seq(), view.timestamp(), 90_000, now);
        let payload: std::sync::Arc<[u8]> = std::sync::Arc::from(view.payload());
        let mut api = rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        if video.history_for != Some(stream.ssrc()) {
            // A new stream (nothing sent on it yet, so nothing to lose): its history by age.
            stream.set_rtx_cache(HISTORY_PACKETS, HISTORY_AGE, RTX_RATIO_CAP);
            video.history_for = Some(stream.ssrc());
        }
        stream.write_rtp(
            str0m::rtp::RtpWrite::new(
                pt.into(),
                str0m::rtp::SeqNo::from(seq),
                timestamp,
                now,
                payload,
            )
            .marker(view.marker())
            // Kept for the browser's NACKs (answered with RTX from what we sent).
            .nackable(true),
        );
    }

    /// Asks the browser for a keyframe (for the SIP side), unless one went very recently.
    pub(super) fn request_from_browser(&mut self, now: Instant) {
        let (Some(video), Some(rtc)) = (&mut self.video, &mut self.browser.rtc) else {
            return;
        };
        let Some(mid) = video.track.mid else { return };
        if video
            .last_to_browser
            .is_some_and(|last| now.saturating_duration_since(last) < REQUEST_INTERVAL)
        {
            return;
        }
        let mut api = rtc.direct_api();
        let Some(stream) = api.stream_rx_by_mid(mid, None) else {
            // The browser's stream is not known yet: asked for once it is.
            return;
        };
        stream.request_keyframe(KeyframeRequestKind::Pli);
        video.last_to_browser = Some(now);
        video.want_from_browser = false;
    }

    /// Passes the SIP side's bit rate limit to the browser as REMB (RFC 5104's TMMBR has no
    /// WebRTC counterpart; browsers honour REMB as a cap on their estimate).
    fn limit_browser(&mut self) {
        let (Some(video), Some(rtc)) = (&mut self.video, &mut self.browser.rtc) else {
            return;
        };
        let (Some(mid), Some(limit)) = (video.track.mid, video.bitrate_limit) else {
            return;
        };
        let mut api = rtc.direct_api();
        if let Some(stream) = api.stream_rx_by_mid(mid, None) {
            stream.request_remb(str0m::bwe::Bitrate::bps(limit));
        }
    }

    /// The browser asked for a keyframe on our video toward it.
    pub(super) fn browser_wants_keyframe(&mut self, now: Instant, mid: str0m::media::Mid) {
        if let Some(video) = &mut self.video
            && video.track.mid == Some(mid)
        {
            video.want_from_sip = true;
            video.request_from_sip(now);
        }
    }

    /// The SIP side asked for a keyframe by SIP INFO (`picture_fast_update`): the browser is
    /// asked for one.
    pub fn keyframe_requested_by_info(&mut self, now: Instant) {
        if let Some(video) = &mut self.video {
            video.want_from_browser = true;
        }
        self.request_from_browser(now);
    }

    /// Raises the event for a keyframe request by SIP INFO, when one is due.
    pub(super) fn raise_info_request(&mut self) {
        if let Some(video) = &mut self.video
            && std::mem::take(&mut video.info_due)
        {
            self.events.push_back(super::Event::KeyframeByInfo);
        }
    }

    /// Whether a browser RTP packet is video (by its payload type), and its stream's state.
    pub(super) fn is_browser_video(&self, pt: u8) -> bool {
        self.video
            .as_ref()
            .is_some_and(|video| video.track.mapping.browser.iter().any(|(p, _)| *p == pt))
    }
}

/// The browser's side of the video when the two legs agree on it.
impl Relay {
    /// The browser's video payload for the format the SIP side answered (outgoing calls),
    /// added to `payloads` with the lower H.264 level of the two; returns its retransmission
    /// payload type (rtx, the payload it repairs), when the browser offered one.
    pub(super) fn browser_video_payload(
        &self,
        browser: &Description,
        payloads: &mut Vec<Payload>,
    ) -> Vec<(u8, u8)> {
        let (Some(video), Some((_, line))) = (&self.video, browser.video()) else {
            return Vec::new();
        };
        let Some(format) = video.format else {
            return Vec::new();
        };
        let Some(payload) = line
            .payloads
            .iter()
            .find(|payload| payload.format == Format::Video(format))
        else {
            return Vec::new();
        };
        let mut payload = payload.clone();
        if let Video::H264 { profile, .. } = format {
            let level = Video::h264_level(payload.fmtp.as_deref())
                .min(Video::h264_level(video.remote_fmtp.as_deref()));
            payload.fmtp = Some(h264_fmtp(payload.fmtp.as_deref(), profile, level));
        }
        let rtx = line.rtx_for(payload.pt).map(|rtx| (rtx, payload.pt));
        payloads.push(payload);
        rtx.into_iter().collect()
    }

    /// The payload types of the browser's offer the browser leg may answer for video: the
    /// agreed format's and its retransmission type; none when the call has no video.
    pub(super) fn browser_video_keep(&self, browser: &Description) -> Option<Vec<u8>> {
        let format = self.video.as_ref()?.format?;
        let (_, line) = browser.video()?;
        let payload = line
            .payloads
            .iter()
            .find(|payload| payload.format == Format::Video(format))?;
        let mut keep = vec![payload.pt];
        keep.extend(line.rtx_for(payload.pt));
        Some(keep)
    }

    /// Gives the call a SIP-side video address (its port pair was taken after the call began,
    /// for the browser's offer that adds video).
    pub fn set_sip_video(&mut self, rtp: SocketAddr) {
        self.config.sip_video = Some(rtp);
    }

    /// Whether the call has a SIP-side video address.
    pub fn has_sip_video(&self) -> bool {
        self.config.sip_video.is_some()
    }

    /// The browser answered our offer (incoming calls): the video format it chose, and the
    /// SIP side's payload of that format (its H.264 level lowered to the browser's); a
    /// browser that refused video leaves the call without.
    pub(super) fn take_browser_video_answer(&mut self) {
        let Some(video) = &mut self.video else { return };
        let Some(format) =
            video
                .track
                .mapping
                .browser
                .iter()
                .find_map(|(_, format)| match format {
                    Format::Video(video) => Some(*video),
                    _ => None,
                })
        else {
            self.video = None;
            return;
        };
        video.agree(format);
        if let (Video::H264 { profile, .. }, Some(payload)) =
            (format, video.track.sip_payloads.first_mut())
        {
            let browser_level = video.browser_h264_level.unwrap_or(0xff);
            let level = Video::h264_level(payload.fmtp.as_deref()).min(browser_level);
            payload.fmtp = Some(h264_fmtp(payload.fmtp.as_deref(), profile, level));
        }
    }

    /// The browser's answer with the SIP side's `b=` lines in its video m-line.
    pub(super) fn with_sip_bandwidth(&self, answer: String) -> String {
        match &self.video {
            Some(video) if !video.sip_bandwidth.is_empty() => {
                crate::sdp::with_bandwidth(&answer, "video", &video.sip_bandwidth)
            }
            _ => answer,
        }
    }
}
