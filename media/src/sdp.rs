//! Session descriptions, read into a small model and written for the SIP side (RTP/AVP,
//! RTP/SAVP with SDES keys, or DTLS-SRTP's UDP/TLS/RTP/SAVP), with the `sdp` crate: reading
//! and choosing streams here, writing in `write.rs`, edits of descriptions as text in
//! `edit.rs`. The browser side's descriptions are read here and written by str0m.

use std::fmt;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use sdp::description::common::ConnectionInformation;
use sdp::description::media::MediaDescription;
use sdp::description::session::SessionDescription;

use crate::codec::{Codec, Format, Payload, Video, VideoCodec};
use crate::dtls::{Fingerprint, Setup};
use crate::error::{Error, Result};
use crate::srtp::{Crypto, SrtpMode, SrtpPolicy};

/// The direction of a stream (RFC 3264 section 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Both ways.
    SendRecv,
    /// Only from the describing side.
    SendOnly,
    /// Only to the describing side.
    RecvOnly,
    /// Neither (on hold both ways).
    Inactive,
}

impl Direction {
    /// The direction an answer takes to this offered one: sendonly becomes recvonly, so that
    /// holding works.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether the describing side sends.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the describing side receives.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// What both allow: sending where both send, receiving where both receive.
    pub fn narrowed(self, other: Direction) -> Direction {
        match (
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        ) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    fn from_attribute(key: &str) -> Option<Direction> {
        match key {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        })
    }
}

/// One m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaLine {
    /// `audio`, `video`, `application`, ...
    pub kind: String,
    /// The port (0: declined).
    pub port: u16,
    /// The transport profile (`RTP/AVP`, `UDP/TLS/RTP/SAVPF`, ...).
    pub proto: String,
    /// The format list as written.
    pub formats: Vec<String>,
    /// `a=mid`.
    pub mid: Option<String>,
    /// The audio payloads the relay can carry, in the m-line's order.
    pub payloads: Vec<Payload>,
    /// The encoding names of every payload, as written (for messages about codecs).
    pub codec_names: Vec<String>,
    /// The stream's direction (the session's, or sendrecv, when the m-line says none).
    pub direction: Direction,
    /// The connection address of the m-line (or the session's).
    pub connection: Option<IpAddr>,
    /// `a=rtcp`: where RTCP goes when it is not port+1.
    pub rtcp: Option<SocketAddr>,
    /// `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// The `a=crypto` lines the relay could honour, in the offerer's order (RFC 4568).
    pub crypto: Vec<Crypto>,
    /// Retransmission payload types (`rtx`): (its number, the payload type it repairs).
    pub rtx: Vec<(u8, u8)>,
    /// `a=rtcp-fb` values: the payload type (`None` for `*`) and the feedback (`nack pli`).
    pub feedback: Vec<(Option<u8>, String)>,
    /// `b=` lines of the m-line: the type (`AS`, `TIAS`) and the value.
    pub bandwidth: Vec<(String, u64)>,
    /// `a=fingerprint` (the m-line's, else the session's) when it is SHA-256 (DTLS-SRTP).
    pub fingerprint: Option<Fingerprint>,
    /// `a=setup` (the m-line's, else the session's): who starts the DTLS handshake.
    pub setup: Option<String>,
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// The m-lines, in order.
    pub lines: Vec<MediaLine>,
}

impl Description {
    /// Parses SDP text.
    pub fn parse(text: &str) -> Result<Description> {
        let session = SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
            .map_err(|error| Error::Sdp(without_keys(&error.to_string())))?;
        let session_connection = connection_address(session.connection_information.as_ref());
        let session_direction = session
            .attributes
            .iter()
            .find_map(|attribute| Direction::from_attribute(&attribute.key));
        let session_value = |key: &str| {
            session
                .attributes
                .iter()
                .find(|attribute| attribute.key == key)
                .and_then(|attribute| attribute.value.clone())
        };
        let session_dtls = (session_value("fingerprint"), session_value("setup"));
        let lines = session
            .media_descriptions
            .iter()
            .map(|media| media_line(media, session_connection, session_direction, &session_dtls))
            .collect();
        Ok(Description { lines })
    }

    /// The first audio m-line that is not declined, with its index.
    pub fn audio(&self) -> Option<(usize, &MediaLine)> {
        self.lines
            .iter()
            .enumerate()
            .find(|(_, line)| line.kind == "audio" && line.port != 0)
    }

    /// The first video m-line that is not declined, with its index.
    pub fn video(&self) -> Option<(usize, &MediaLine)> {
        self.lines
            .iter()
            .enumerate()
            .find(|(_, line)| line.kind == "video" && line.port != 0)
    }

    /// The SIP side's video stream under `policy`, as [`Description::sip_audio_with`] chooses
    /// audio: the first video m-line, not declined, whose transport the relay takes, with its
    /// key. None when there is no such line (the video is then declined, the call goes on).
    pub fn sip_video_with(
        &self,
        policy: &SrtpPolicy,
    ) -> Option<(usize, &MediaLine, Option<&Crypto>)> {
        self.lines.iter().enumerate().find_map(|(index, line)| {
            if line.kind != "video" || line.port == 0 {
                return None;
            }
            let key = line
                .crypto
                .iter()
                .find(|crypto| policy.suites.contains(&crypto.suite));
            match (line.profile(), policy.mode, key) {
                (Profile::Plain, SrtpMode::Never, _) => Some((index, line, None)),
                (Profile::Plain, SrtpMode::Optional, key) => Some((index, line, key)),
                (Profile::Plain | Profile::Secure, SrtpMode::Mandatory, Some(key))
                | (Profile::Secure, SrtpMode::Optional, Some(key)) => {
                    Some((index, line, Some(key)))
                }
                (Profile::Dtls, SrtpMode::Optional | SrtpMode::Mandatory, _) => {
                    line.dtls_refusal().is_none().then_some((index, line, None))
                }
                _ => None,
            }
        })
    }

    /// The SIP side's audio stream when SRTP is off: the first audio m-line, not declined, on
    /// plain RTP (`RTP/AVP` or `RTP/AVPF`). See [`Description::sip_audio_with`].
    pub fn sip_audio(&self) -> Result<(usize, &MediaLine)> {
        self.sip_audio_with(&SrtpPolicy::never())
            .map(|(index, line, _)| (index, line))
    }

    /// The SIP side's audio stream under `policy`: the first audio m-line, not declined, that
    /// the relay can take, with the key it will use when the stream is SRTP. Plain RTP
    /// (`RTP/AVP`, `RTP/AVPF`) is taken unless SRTP is mandatory, with SRTP when it carries a
    /// usable `a=crypto` line and SRTP is not off (best-effort SRTP, RFC 8643); `RTP/SAVP` and
    /// `RTP/SAVPF` only with a usable key and SRTP not off. Other audio m-lines are declined in
    /// the answer; when none fits, the description is refused as an incompatible transport
    /// (never answered with a profile it did not offer), with the reason in words.
    pub fn sip_audio_with(
        &self,
        policy: &SrtpPolicy,
    ) -> Result<(usize, &MediaLine, Option<&Crypto>)> {
        let mut refusal = None;
        for (index, line) in self.lines.iter().enumerate() {
            if line.kind != "audio" || line.port == 0 {
                continue;
            }
            let key = line
                .crypto
                .iter()
                .find(|crypto| policy.suites.contains(&crypto.suite));
            let why = match (line.profile(), policy.mode, key) {
                (Profile::Plain, SrtpMode::Never, _) => return Ok((index, line, None)),
                (Profile::Plain, _, Some(key)) => return Ok((index, line, Some(key))),
                (Profile::Plain, SrtpMode::Optional, None) => return Ok((index, line, None)),
                (Profile::Secure, SrtpMode::Optional | SrtpMode::Mandatory, Some(key)) => {
                    return Ok((index, line, Some(key)));
                }
                (Profile::Plain, SrtpMode::Mandatory, None) => {
                    format!("{}: the gateway requires SRTP toward SIP", line.proto)
                }
                (Profile::Secure | Profile::Dtls, SrtpMode::Never, _) => {
                    format!("{}: SRTP toward SIP is turned off here", line.proto)
                }
                (Profile::Dtls, _, _) => match line.dtls_refusal() {
                    None => return Ok((index, line, None)),
                    Some(why) => why,
                },
                (Profile::Secure, _, None) => format!(
                    "{} without a key the gateway can use (it takes {})",
                    line.proto,
                    policy
                        .suites
                        .iter()
                        .map(|suite| suite.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (Profile::Other, _, _) => format!(
                    "{}: the gateway speaks RTP/AVP, SDES-SRTP (RTP/SAVP) and DTLS-SRTP \
                     (UDP/TLS/RTP/SAVP) toward SIP",
                    line.proto
                ),
            };
            refusal.get_or_insert(why);
        }
        Err(refusal.map_or(Error::NoAudio, Error::IncompatibleTransport))
    }
}

/// How an m-line's transport profile is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    /// `RTP/AVP`, `RTP/AVPF`.
    Plain,
    /// `RTP/SAVP`, `RTP/SAVPF` (SDES keys).
    Secure,
    /// `UDP/TLS/RTP/SAVP`, `UDP/TLS/RTP/SAVPF` (DTLS-SRTP).
    Dtls,
    /// Anything else (T.38, TCP, ...).
    Other,
}

impl MediaLine {
    fn profile(&self) -> Profile {
        let proto = self.proto.to_ascii_uppercase();
        match proto.as_str() {
            "RTP/AVP" | "RTP/AVPF" => Profile::Plain,
            "RTP/SAVP" | "RTP/SAVPF" => Profile::Secure,
            "UDP/TLS/RTP/SAVP" | "UDP/TLS/RTP/SAVPF" => Profile::Dtls,
            _ => Profile::Other,
        }
    }

    /// Whether the m-line's profile is DTLS-SRTP (`UDP/TLS/RTP/SAVP`, `UDP/TLS/RTP/SAVPF`).
    pub fn is_dtls_profile(&self) -> bool {
        self.profile() == Profile::Dtls
    }

    /// Why a DTLS-SRTP m-line cannot be taken: no SHA-256 fingerprint, or a setup role that
    /// cannot be answered. `None` when it can.
    fn dtls_refusal(&self) -> Option<String> {
        if self.fingerprint.is_none() {
            return Some(format!(
                "{} without a SHA-256 certificate fingerprint (a=fingerprint)",
                self.proto
            ));
        }
        if Setup::answering(self.setup.as_deref()).is_none() {
            return Some(format!(
                "{} with a=setup:{}, which the gateway cannot answer",
                self.proto,
                self.setup.as_deref().unwrap_or_default()
            ));
        }
        None
    }

    /// Whether the m-line's profile is SDES-SRTP (`RTP/SAVP`, `RTP/SAVPF`).
    pub fn is_srtp_profile(&self) -> bool {
        self.profile() == Profile::Secure
    }

    /// Where the far end wants RTP (the connection address and the port); `None` when the
    /// address is unspecified (`0.0.0.0`, an old way to say hold) or missing.
    pub fn rtp_target(&self) -> Option<SocketAddr> {
        let ip = self.connection?;
        (!ip.is_unspecified() && self.port != 0).then(|| SocketAddr::new(ip, self.port))
    }

    /// Where the far end wants RTCP: `a=rtcp`, the RTP port with rtcp-mux, else port+1.
    pub fn rtcp_target(&self) -> Option<SocketAddr> {
        if self.rtcp_mux {
            return self.rtp_target();
        }
        match self.rtcp {
            Some(rtcp) => Some(rtcp),
            None => self
                .rtp_target()
                .map(|rtp| SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))),
        }
    }

    /// The telephone-event payload at `clock_rate`, if offered.
    pub fn telephone_event(&self, clock_rate: u32) -> Option<&Payload> {
        self.payloads
            .iter()
            .find(|payload| payload.format == Format::TelephoneEvent(clock_rate))
    }

    /// The retransmission payload type that repairs `pt`, if offered.
    pub fn rtx_for(&self, pt: u8) -> Option<u8> {
        self.rtx
            .iter()
            .find_map(|(rtx, apt)| (*apt == pt).then_some(*rtx))
    }

    /// Whether the m-line asks for this RTCP feedback (`nack pli`, `ccm fir`) for `pt` or
    /// for every payload type.
    pub fn has_feedback(&self, pt: u8, feedback: &str) -> bool {
        self.feedback
            .iter()
            .any(|(of, value)| of.is_none_or(|of| of == pt) && value.eq_ignore_ascii_case(feedback))
    }

    /// The first video payload.
    pub fn first_video(&self) -> Option<&Payload> {
        self.payloads
            .iter()
            .find(|payload| matches!(payload.format, Format::Video(_)))
    }

    /// The first audio codec payload.
    pub fn first_codec(&self) -> Option<&Payload> {
        self.payloads
            .iter()
            .find(|payload| matches!(payload.format, Format::Audio(_)))
    }
}

fn connection_address(info: Option<&ConnectionInformation>) -> Option<IpAddr> {
    info?
        .address
        .as_ref()?
        .address
        .split('/')
        .next()?
        .parse()
        .ok()
}

fn media_line(
    media: &MediaDescription,
    session_connection: Option<IpAddr>,
    session_direction: Option<Direction>,
    (session_fingerprint, session_setup): &(Option<String>, Option<String>),
) -> MediaLine {
    let value = |key: &str| -> Vec<&str> {
        media
            .attributes
            .iter()
            .filter(|attribute| attribute.key == key)
            .filter_map(|attribute| attribute.value.as_deref())
            .collect()
    };
    let rtpmaps: Vec<(u8, String, u32)> = value("rtpmap")
        .into_iter()
        .filter_map(|rtpmap| {
            let (pt, encoding) = rtpmap.split_once(' ')?;
            let mut parts = encoding.trim().split('/');
            let name = parts.next()?.to_owned();
            let rate = parts.next()?.parse().ok()?;
            Some((pt.parse().ok()?, name, rate))
        })
        .collect();
    let fmtp = |pt: u8| {
        value("fmtp").into_iter().find_map(|line| {
            let (number, params) = line.split_once(' ')?;
            (number.parse::<u8>().ok()? == pt).then(|| params.trim().to_owned())
        })
    };
    let mut payloads = Vec::new();
    let mut codec_names = Vec::new();
    for format in &media.media_name.formats {
        let Ok(pt) = format.parse::<u8>() else {
            continue;
        };
        // A static payload type may come without an rtpmap (RFC 3551).
        let (name, rate) = match rtpmaps.iter().find(|(number, _, _)| *number == pt) {
            Some((_, name, rate)) => (name.clone(), *rate),
            None => match pt {
                0 => ("PCMU".to_owned(), 8_000),
                8 => ("PCMA".to_owned(), 8_000),
                9 => ("G722".to_owned(), 8_000),
                _ => (format!("payload {pt}"), 0),
            },
        };
        let format = if name.eq_ignore_ascii_case("telephone-event") {
            Some(Format::TelephoneEvent(rate))
        } else if media.media_name.media == "video" {
            Video::from_rtpmap(&name, rate, fmtp(pt).as_deref()).map(Format::Video)
        } else {
            Codec::from_rtpmap(&name, rate).map(Format::Audio)
        };
        if let Some(format) = format {
            payloads.push(Payload {
                pt,
                format,
                fmtp: fmtp(pt),
            });
        }
        codec_names.push(name);
    }
    let direction = media
        .attributes
        .iter()
        .find_map(|attribute| Direction::from_attribute(&attribute.key))
        .or(session_direction)
        .unwrap_or(Direction::SendRecv);
    let connection =
        connection_address(media.connection_information.as_ref()).or(session_connection);
    let rtcp = value("rtcp").first().and_then(|rtcp| {
        let mut parts = rtcp.split_whitespace();
        let port: u16 = parts.next()?.parse().ok()?;
        let ip = parts.nth(2).and_then(|ip| ip.parse().ok()).or(connection)?;
        Some(SocketAddr::new(ip, port))
    });
    MediaLine {
        kind: media.media_name.media.clone(),
        port: u16::try_from(media.media_name.port.value).unwrap_or(0),
        proto: media.media_name.protos.join("/"),
        formats: media.media_name.formats.clone(),
        mid: value("mid").first().map(|mid| (*mid).to_owned()),
        payloads,
        codec_names,
        direction,
        connection,
        rtcp,
        rtcp_mux: media
            .attributes
            .iter()
            .any(|attribute| attribute.key == "rtcp-mux"),
        crypto: value("crypto")
            .into_iter()
            .filter_map(Crypto::parse)
            .collect(),
        rtx: rtpmaps
            .iter()
            .filter(|(_, name, _)| name.eq_ignore_ascii_case("rtx"))
            .filter_map(|(pt, _, _)| {
                let apt = fmtp(*pt)?;
                let apt = crate::codec::fmtp_value(&apt, "apt")?.parse().ok()?;
                Some((*pt, apt))
            })
            .collect(),
        feedback: value("rtcp-fb")
            .into_iter()
            .filter_map(|line| {
                let (pt, feedback) = line.trim().split_once(' ')?;
                let pt = if pt == "*" {
                    None
                } else {
                    Some(pt.parse().ok()?)
                };
                Some((pt, feedback.trim().to_owned()))
            })
            .collect(),
        bandwidth: media
            .bandwidth
            .iter()
            .map(|bandwidth| (bandwidth.bandwidth_type.clone(), bandwidth.bandwidth))
            .collect(),
        // The first SHA-256 one (an m-line may list several hash functions, RFC 8122).
        fingerprint: {
            let lines = value("fingerprint");
            match lines.is_empty() {
                false => lines.into_iter().find_map(Fingerprint::parse),
                true => session_fingerprint.as_deref().and_then(Fingerprint::parse),
            }
        },
        setup: value("setup")
            .first()
            .map(|setup| (*setup).to_owned())
            .or_else(|| session_setup.clone()),
    }
}

/// The payloads of `offered` the relay can carry, ordered by `preference`, followed by the
/// telephone-event payloads whose clock rates match a kept codec.
pub fn common_payloads(offered: &[Payload], preference: &[Codec]) -> Vec<Payload> {
    let mut kept: Vec<Payload> = preference
        .iter()
        .filter_map(|codec| {
            offered
                .iter()
                .find(|payload| payload.format == Format::Audio(*codec))
                .cloned()
        })
        .collect();
    let rates: Vec<u32> = kept
        .iter()
        .map(|payload| payload.format.clock_rate())
        .collect();
    let events: Vec<Payload> = offered
        .iter()
        .filter(|payload| matches!(payload.format, Format::TelephoneEvent(rate) if rates.contains(&rate)))
        .cloned()
        .collect();
    kept.extend(events);
    kept
}

/// The video payloads of `offered` the relay can carry, ordered by `preference`: for each
/// preferred codec, every offered format of it (H.264 in several modes or profiles), in the
/// offer's order, each format once.
pub fn common_video(offered: &[Payload], preference: &[VideoCodec]) -> Vec<Payload> {
    let mut kept: Vec<Payload> = Vec::new();
    for codec in preference {
        for payload in offered {
            let Format::Video(video) = payload.format else {
                continue;
            };
            // One payload type per format (the first): a phone listing H.264 at several
            // levels, or the same format many times, would use up the payload types the
            // browser leg needs for them and their retransmissions.
            if video.codec() == *codec && !kept.iter().any(|p| p.format == payload.format) {
                kept.push(payload.clone());
            }
        }
    }
    kept
}

/// An error's text with the value of any SDES key it quotes (`inline:...`) left out: parse
/// errors may quote the line they failed on, and keys never go to a log or a peer.
pub fn without_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("inline:") {
        out.push_str(&rest[..at + "inline:".len()]);
        out.push_str("(key)");
        rest = &rest[at + "inline:".len()..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ')')
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The payloads of an answer's `audio` that were offered (by format), in the answer's order
/// and with its numbers.
pub fn answered_payloads(audio: &MediaLine, offered: &[Payload]) -> Vec<Payload> {
    audio
        .payloads
        .iter()
        .filter(|payload| offered.iter().any(|ours| ours.format == payload.format))
        .cloned()
        .collect()
}

/// The payloads of `audio` the relay carries (see [`common_payloads`]), or why there is none
/// (no codec in common).
pub fn relayable(audio: &MediaLine, codecs: &[Codec]) -> Result<Vec<Payload>> {
    let payloads = common_payloads(&audio.payloads, codecs);
    if payloads
        .iter()
        .any(|payload| matches!(payload.format, Format::Audio(_)))
    {
        Ok(payloads)
    } else {
        Err(Error::NoCommonCodec(no_common_codec(audio, codecs)))
    }
}

/// Why codecs do not meet, in words for a `terminated` reason.
pub fn no_common_codec(offered: &MediaLine, preference: &[Codec]) -> String {
    let configured: Vec<&str> = preference.iter().map(|codec| codec.name()).collect();
    format!(
        "no common codec: the far end offers {}, the gateway relays {}",
        offered.codec_names.join(", "),
        configured.join(", ")
    )
}

mod edit;
mod write;

pub use edit::{
    declined_as_offered, is_dtls_offer, keep_formats, own_msid, restrict_video, with_bandwidth,
};
pub use write::{DtlsLine, SipDescription, VideoDescription};

#[cfg(test)]
mod tests;
