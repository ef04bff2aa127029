//! The browser leg of a relay: str0m's peer (ICE-lite, DTLS-SRTP, rtcp-mux, BUNDLE) and what
//! the relay knows of the browser: whether it is connected, when it was last heard, and the
//! datagram handed out for it; and how its peer is built (codecs, extensions, the process's
//! DTLS certificate) and read (the payload types it negotiated).

use std::time::Instant;

use str0m::format::{Codec as WebRtcCodec, FormatParams};
use str0m::media::{Frequency, Mid};
use str0m::net::Transmit;
use str0m::rtp::Extension;
use str0m::{Candidate, Rtc, RtcConfig};

use super::RelayConfig;
use super::quality::BrowserCounts;
use crate::codec::{Codec, Format, H264Profile, Payload, Video, VideoCodec};
use crate::error::{Error, Result};

/// The browser leg.
#[derive(Debug)]
pub(super) struct BrowserLeg {
    /// str0m's peer; none until it can be built (an outgoing call's waits for the SIP answer,
    /// which chooses the codec).
    pub(super) rtc: Option<Rtc>,
    /// ICE and DTLS are up.
    pub(super) connected: bool,
    /// When the browser's last ICE check came (consent, RFC 7675).
    pub(super) last_stun: Instant,
    /// When the browser's RTP was last heard.
    pub(super) last_rtp: Instant,
    /// The browser sends (its latest description's direction): a held browser's silence is
    /// no failure.
    pub(super) sends: bool,
    /// The datagram handed out by `poll_output`, kept until the next call.
    pub(super) held: Option<Transmit>,
    /// The audio sent and received, and the browser's reports on it.
    pub(super) counts: BrowserCounts,
}

impl BrowserLeg {
    pub(super) fn new(now: Instant, rtc: Option<Rtc>) -> BrowserLeg {
        BrowserLeg {
            rtc,
            connected: false,
            last_stun: now,
            last_rtp: now,
            sends: true,
            held: None,
            counts: BrowserCounts::default(),
        }
    }
}

/// The payload types of the browser leg's m-line `mid`, audio (and telephone-event) or video.
pub(super) fn browser_formats(rtc: &Rtc, mid: Option<Mid>, video: bool) -> Vec<(u8, Format)> {
    let remote: Vec<u8> = mid
        .and_then(|mid| rtc.media(mid))
        .map(|media| media.remote_pts().iter().map(|pt| **pt).collect())
        .unwrap_or_default();
    rtc.codec_config()
        .params()
        .iter()
        .filter(|params| remote.is_empty() || remote.contains(&*params.pt()))
        .filter_map(|params| {
            let spec = params.spec();
            let format = match spec.codec {
                WebRtcCodec::Opus => Format::Audio(Codec::Opus),
                WebRtcCodec::PCMU => Format::Audio(Codec::Pcmu),
                WebRtcCodec::PCMA => Format::Audio(Codec::Pcma),
                WebRtcCodec::G722 => Format::Audio(Codec::G722),
                WebRtcCodec::Tele => Format::TelephoneEvent(spec.clock_rate.get()),
                WebRtcCodec::Vp8 => Format::Video(Video::Vp8),
                WebRtcCodec::Vp9 => Format::Video(Video::Vp9 {
                    profile: spec.format.profile_id.unwrap_or(0) as u8,
                }),
                WebRtcCodec::H264 => {
                    let id = spec.format.profile_level_id.unwrap_or(0x42_00_0a);
                    let (profile, _) = H264Profile::parse(&format!("{id:06x}"))?;
                    Format::Video(Video::H264 {
                        mode: spec.format.packetization_mode.unwrap_or(0),
                        profile,
                    })
                }
                _ => return None,
            };
            (matches!(format, Format::Video(_)) == video).then_some((*params.pt(), format))
        })
        .collect()
}

/// An H.264 `a=fmtp` with its `profile-level-id` set to `profile` at `level`, the other
/// parameters kept.
pub(super) fn h264_fmtp(fmtp: Option<&str>, profile: H264Profile, level: u8) -> String {
    let mut parts: Vec<String> = fmtp
        .unwrap_or_default()
        .split(';')
        .map(str::trim)
        .filter(|part| {
            !part.is_empty()
                && !part
                    .split('=')
                    .next()
                    .is_some_and(|key| key.trim().eq_ignore_ascii_case("profile-level-id"))
        })
        .map(str::to_owned)
        .collect();
    parts.push(format!(
        "profile-level-id={}",
        profile.profile_level_id(level)
    ));
    parts.join(";")
}

/// Video formats the browser leg's peer knows besides those of the first negotiation, so that
/// a later offer from the browser can add video: each configured codec (H.264 as constrained
/// baseline, both packetization modes) with a retransmission type, on payload types not taken
/// (the peer moves them to the browser's numbers when it offers).
pub(super) fn spare_video(
    codecs: &[VideoCodec],
    payloads: &mut Vec<Payload>,
    rtx: &mut Vec<(u8, u8)>,
) {
    for codec in codecs {
        let formats: &[(Video, Option<&str>)] = match codec {
            VideoCodec::Vp8 => &[(Video::Vp8, None)],
            VideoCodec::Vp9 => &[(Video::Vp9 { profile: 0 }, Some("profile-id=0"))],
            VideoCodec::H264 => &[
                (
                    Video::H264 {
                        mode: 1,
                        profile: H264Profile::ConstrainedBaseline,
                    },
                    Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
                ),
                (
                    Video::H264 {
                        mode: 0,
                        profile: H264Profile::ConstrainedBaseline,
                    },
                    Some("level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f"),
                ),
            ],
        };
        for (format, fmtp) in formats {
            if payloads.iter().any(|p| p.format == Format::Video(*format)) {
                continue;
            }
            let taken = |pt: u8, payloads: &[Payload], rtx: &[(u8, u8)]| {
                payloads.iter().any(|p| p.pt == pt) || rtx.iter().any(|(r, _)| *r == pt)
            };
            let Some(pt) = (96..=127).find(|pt| !taken(*pt, payloads, rtx)) else {
                return;
            };
            payloads.push(Payload {
                pt,
                format: Format::Video(*format),
                fmtp: fmtp.map(str::to_owned),
            });
            let Some(repair) = (96..=127).find(|pt| !taken(*pt, payloads, rtx)) else {
                return;
            };
            rtx.push((repair, pt));
        }
    }
}

/// The DTLS certificate of every browser leg: made once per process. A certificate per call
/// cost a key generation at each set-up and its memory for the call's life; browsers only
/// check that the fingerprint in the SDP matches.
pub(super) fn certificate() -> Option<str0m::config::DtlsCert> {
    static CERTIFICATE: std::sync::OnceLock<Option<str0m::config::DtlsCert>> =
        std::sync::OnceLock::new();
    CERTIFICATE
        .get_or_init(|| {
            str0m::crypto::from_feature_flags()
                .dtls_provider
                .generate_certificate()
        })
        .clone()
}

/// Makes the shared certificate and, by building a throwaway peer with it, the shared DTLS
/// configuration for str0m's default MTU: the first call took 70 ms instead of 3 ms making
/// them.
pub(super) fn prepare_shared() {
    let mut rtc_config =
        RtcConfig::new().set_crypto_provider(super::dtls_provider::crypto_provider());
    if let Some(certificate) = certificate() {
        rtc_config = rtc_config.set_dtls_cert(certificate);
    }
    drop(rtc_config.build(Instant::now()));
}

/// A str0m peer for the browser leg: ICE-lite with one host candidate at the advertised
/// address, RTP mode, and exactly the given payloads; `video`: the call starts with video
/// (transport-cc on).
///
/// Its header extensions are str0m's standard ones without the two that only feed bandwidth
/// estimation (transport-wide sequence numbers and abs-send-time): the relay estimates nothing,
/// and transport-cc would cost a feedback packet each way every 100 ms or so per call.
pub(super) fn build_rtc(
    now: Instant,
    config: &RelayConfig,
    payloads: &[Payload],
    rtx: &[(u8, u8)],
    video: bool,
) -> Result<Rtc> {
    let mut rtc_config = RtcConfig::new()
        .clear_extension_map()
        .set_extension(1, Extension::AudioLevel)
        .set_extension(4, Extension::RtpMid)
        .set_extension(10, Extension::RtpStreamId)
        .set_extension(11, Extension::RepairedRtpStreamId)
        .set_extension(13, Extension::VideoOrientation);
    if video {
        // Congestion feedback lets the browser's encoder ramp up to the video's bitrate;
        // audio-only calls go without (a feedback packet each way every 100 ms or so).
        rtc_config = rtc_config.set_extension(3, Extension::TransportSequenceNumber);
    }
    let mut rtc_config = rtc_config
        .set_ice_lite(true)
        .set_rtp_mode(true)
        // The browser's reports on our audio (loss, jitter, round trip) for the call's quality:
        // a look every few seconds is plenty, and costs nothing per packet.
        .set_stats_interval(Some(STATS_INTERVAL))
        .set_send_buffer_audio(SEND_BUFFER_AUDIO)
        .set_send_buffer_video(SEND_BUFFER_VIDEO)
        .clear_codecs();
    if let Some(certificate) = certificate() {
        rtc_config = rtc_config.set_dtls_cert(certificate);
    }
    rtc_config = rtc_config.set_crypto_provider(super::dtls_provider::crypto_provider());
    let codecs = rtc_config.codec_config();
    for payload in payloads {
        let (codec, rate, channels) = match payload.format {
            Format::Audio(Codec::Opus) => (WebRtcCodec::Opus, 48_000, Some(2)),
            Format::Audio(Codec::Pcmu) => (WebRtcCodec::PCMU, 8_000, None),
            Format::Audio(Codec::Pcma) => (WebRtcCodec::PCMA, 8_000, None),
            // str0m models G.722 at its 16 kHz sampling rate and writes (and matches) the
            // 8 kHz RTP clock of RFC 3551 in SDP itself: configured at 8 kHz it matches no
            // offered G.722 and the answer is left with telephone-event alone.
            Format::Audio(Codec::G722) => (WebRtcCodec::G722, 16_000, None),
            Format::TelephoneEvent(rate) => (WebRtcCodec::Tele, rate, None),
            Format::Video(video) => (
                match video {
                    Video::Vp8 => WebRtcCodec::Vp8,
                    Video::Vp9 { .. } => WebRtcCodec::Vp9,
                    Video::H264 { .. } => WebRtcCodec::H264,
                },
                90_000,
                None,
            ),
        };
        let Some(rate) = Frequency::new(rate) else {
            continue;
        };
        let format = payload
            .fmtp
            .as_deref()
            .map(FormatParams::parse_line)
            .unwrap_or_default();
        let resend = rtx
            .iter()
            .find_map(|(rtx, apt)| (*apt == payload.pt).then_some((*rtx).into()));
        codecs.add_config(payload.pt.into(), resend, codec, rate, channels, format);
    }
    let mut rtc = rtc_config.build(now);
    let candidate =
        Candidate::host(config.browser, "udp").map_err(|error| Error::WebRtc(error.to_string()))?;
    rtc.add_local_candidate(candidate);
    Ok(rtc)
}

/// Outgoing audio waits in str0m's send buffer only between a write and the next poll (we
/// poll at once, and audio is not resent): a few packets suffice where the default keeps 50.
const SEND_BUFFER_AUDIO: usize = 4;

/// What we sent on a video stream is kept this many packets for the browser's NACKs until the
/// relay writes the stream's first packet and bounds its history by age instead
/// (`video::HISTORY_AGE`). str0m's default (1,000) cost a megabyte per video call.
const SEND_BUFFER_VIDEO: usize = 256;

/// How often str0m gives its statistics (the browser's receiver reports on our audio).
const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
