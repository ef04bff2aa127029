//! Session descriptions, read into a small model and written for the SIP side (RTP/AVP, or
//! RTP/SAVP with SDES keys), with the `sdp` crate. The browser side's descriptions are read here and written by str0m.

use std::fmt;
use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use sdp::description::common::{Address, Attribute, Bandwidth, ConnectionInformation};
use sdp::description::media::{MediaDescription, MediaName, RangedPort};
use sdp::description::session::{Origin, SessionDescription, TimeDescription, Timing};

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

/// A SIP-side description to write: one audio stream, plus the other m-lines of the description
/// it answers, declined with port 0 in their places.
#[derive(Debug, Clone)]
pub struct SipDescription<'a> {
    /// The o= session id (stays the same for a call).
    pub session_id: u64,
    /// The o= version (grows with each new description of the call).
    pub version: u64,
    /// Our RTP address and port.
    pub rtp: SocketAddr,
    /// The payloads, first preferred.
    pub payloads: &'a [Payload],
    /// The direction.
    pub direction: Direction,
    /// When answering: the offer's m-lines, so that the others are declined in place.
    pub answering: Option<(&'a Description, usize)>,
    /// The keys to give (SDES-SRTP; none for plain RTP).
    pub crypto: &'a [Crypto],
    /// Whether the profile says SRTP (`RTP/SAVP`), or plain (`RTP/AVP`, with best-effort keys
    /// when `crypto` has some).
    pub secure: bool,
    /// The video stream, if the call has one: written after the audio (an offer), or in the
    /// place of the offer's video m-line (an answer; `index`).
    pub video: Option<VideoDescription<'a>>,
    /// A video m-line no longer in the session (its payload type): an offer keeps it in its
    /// place, declined (RFC 3264 section 8: m-lines are never removed).
    pub removed_video: Option<u8>,
    /// DTLS-SRTP on the audio m-line (instead of `crypto` and `secure`).
    pub dtls: Option<&'a DtlsLine>,
}

/// What an m-line of ours says of DTLS-SRTP: its profile, our certificate's fingerprint and
/// our role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsLine {
    /// `UDP/TLS/RTP/SAVP` or `UDP/TLS/RTP/SAVPF`, as the far end wrote it.
    pub proto: String,
    /// Our certificate's fingerprint.
    pub fingerprint: Fingerprint,
    /// Our role.
    pub setup: Setup,
}

/// The video m-line of a SIP-side description.
#[derive(Debug, Clone)]
pub struct VideoDescription<'a> {
    /// When answering: the index of the offer's video m-line this answers.
    pub index: Option<usize>,
    /// Our RTP address and port for video.
    pub rtp: SocketAddr,
    /// The payloads, first preferred.
    pub payloads: &'a [Payload],
    /// The direction.
    pub direction: Direction,
    /// The keys to give (none for plain RTP).
    pub crypto: &'a [Crypto],
    /// Whether the profile says SRTP.
    pub secure: bool,
    /// RTCP on the RTP port (the offer asked for it).
    pub rtcp_mux: bool,
    /// `b=` lines to carry across (type, value).
    pub bandwidth: &'a [(String, u64)],
    /// DTLS-SRTP (instead of `crypto` and `secure`).
    pub dtls: Option<&'a DtlsLine>,
}

impl SipDescription<'_> {
    /// The SDP text (CRLF line ends).
    pub fn write(&self) -> String {
        let ip = self.rtp.ip();
        let (network, address_type) = match ip {
            IpAddr::V4(_) => ("IN", "IP4"),
            IpAddr::V6(_) => ("IN", "IP6"),
        };
        let connection = ConnectionInformation {
            network_type: network.to_owned(),
            address_type: address_type.to_owned(),
            address: Some(Address {
                address: ip.to_string(),
                ttl: None,
                range: None,
            }),
        };
        let mut session = SessionDescription {
            origin: Origin {
                username: "-".to_owned(),
                session_id: self.session_id,
                session_version: self.version,
                network_type: network.to_owned(),
                address_type: address_type.to_owned(),
                unicast_address: ip.to_string(),
            },
            session_name: "sylkrtc-gateway".to_owned(),
            connection_information: Some(connection),
            time_descriptions: vec![TimeDescription {
                timing: Timing {
                    start_time: 0,
                    stop_time: 0,
                },
                repeat_times: Vec::new(),
            }],
            ..SessionDescription::default()
        };
        let audio = self.audio_line();
        let video = self.video.as_ref().map(VideoDescription::line);
        match self.answering {
            Some((offer, audio_index)) => {
                let video_index = self.video.as_ref().and_then(|video| video.index);
                for (index, line) in offer.lines.iter().enumerate() {
                    if index == audio_index {
                        session.media_descriptions.push(audio.clone());
                    } else if Some(index) == video_index
                        && let Some(video) = &video
                    {
                        session.media_descriptions.push(video.clone());
                    } else {
                        session.media_descriptions.push(declined(line));
                    }
                }
            }
            None => {
                session.media_descriptions.push(audio);
                session.media_descriptions.extend(video);
                if let (None, Some(pt)) = (&self.video, self.removed_video) {
                    let proto = match self.dtls {
                        Some(dtls) => dtls.proto.as_str(),
                        None if self.secure => "RTP/SAVP",
                        None => "RTP/AVP",
                    };
                    session.media_descriptions.push(declined_line(
                        "video",
                        proto,
                        &[pt.to_string()],
                    ));
                }
            }
        }
        session.marshal()
    }

    fn audio_line(&self) -> MediaDescription {
        // RTCP on the RTP port when the offer asks for it (RFC 5761); port+1 otherwise.
        let mux = self
            .answering
            .and_then(|(offer, index)| offer.lines.get(index))
            .is_some_and(|line| line.rtcp_mux);
        let line = Line {
            kind: "audio",
            rtp: self.rtp,
            payloads: self.payloads,
            direction: self.direction,
            crypto: self.crypto,
            secure: self.secure,
            rtcp_mux: mux,
            dtls: self.dtls,
        };
        line.write(
            &[],
            &[Attribute::new("ptime".to_owned(), Some("20".to_owned()))],
        )
    }
}

/// What an audio and a video m-line of ours have in common.
struct Line<'a> {
    kind: &'static str,
    rtp: SocketAddr,
    payloads: &'a [Payload],
    direction: Direction,
    crypto: &'a [Crypto],
    secure: bool,
    rtcp_mux: bool,
    dtls: Option<&'a DtlsLine>,
}

impl Line<'_> {
    /// The m-line: each payload's `rtpmap`, `fmtp` and the given `rtcp-fb` values, then
    /// `extra`, rtcp-mux, the direction and the keys.
    fn write(&self, feedback: &[&str], extra: &[Attribute]) -> MediaDescription {
        let mut attributes: Vec<Attribute> = Vec::new();
        for payload in self.payloads {
            attributes.push(Attribute::new("rtpmap".to_owned(), Some(payload.rtpmap())));
            if let Some(fmtp) = &payload.fmtp {
                attributes.push(Attribute::new(
                    "fmtp".to_owned(),
                    Some(format!("{} {fmtp}", payload.pt)),
                ));
            }
            for value in feedback {
                attributes.push(Attribute::new(
                    "rtcp-fb".to_owned(),
                    Some(format!("{} {value}", payload.pt)),
                ));
            }
        }
        attributes.extend(extra.iter().cloned());
        if self.rtcp_mux {
            attributes.push(Attribute::new("rtcp-mux".to_owned(), None));
        }
        attributes.push(Attribute::new(self.direction.to_string(), None));
        for crypto in self.crypto {
            attributes.push(Attribute::new(
                "crypto".to_owned(),
                Some(crypto.attribute()),
            ));
        }
        let protos = match self.dtls {
            Some(dtls) => {
                attributes.push(Attribute::new(
                    "fingerprint".to_owned(),
                    Some(dtls.fingerprint.attribute()),
                ));
                attributes.push(Attribute::new(
                    "setup".to_owned(),
                    Some(dtls.setup.attribute().to_owned()),
                ));
                dtls.proto.split('/').map(str::to_owned).collect()
            }
            None => vec![
                "RTP".to_owned(),
                if self.secure { "SAVP" } else { "AVP" }.to_owned(),
            ],
        };
        MediaDescription {
            media_name: MediaName {
                media: self.kind.to_owned(),
                port: RangedPort {
                    value: isize::try_from(self.rtp.port()).unwrap_or(0),
                    range: None,
                },
                protos,
                formats: self
                    .payloads
                    .iter()
                    .map(|payload| payload.pt.to_string())
                    .collect(),
            },
            attributes,
            ..MediaDescription::default()
        }
    }
}

impl VideoDescription<'_> {
    fn line(&self) -> MediaDescription {
        let line = Line {
            kind: "video",
            rtp: self.rtp,
            payloads: self.payloads,
            direction: self.direction,
            crypto: self.crypto,
            secure: self.secure,
            rtcp_mux: self.rtcp_mux,
            dtls: self.dtls,
        };
        // The keyframe requests we take (RFC 4585, RFC 5104); phones on RTP/AVP send and
        // honour them as well.
        let mut description = line.write(&["nack pli", "ccm fir"], &[]);
        description.bandwidth = self
            .bandwidth
            .iter()
            .map(|(kind, value)| Bandwidth {
                experimental: false,
                bandwidth_type: kind.clone(),
                bandwidth: *value,
            })
            .collect();
        description
    }
}

/// An m-line refused in an answer: same kind, proto and formats, port 0 (RFC 3264 section 6).
fn declined(line: &MediaLine) -> MediaDescription {
    declined_line(&line.kind, &line.proto, &line.formats)
}

/// A declined m-line (port 0) of `kind`, `proto` and `formats` (at least one).
fn declined_line(kind: &str, proto: &str, formats: &[String]) -> MediaDescription {
    MediaDescription {
        media_name: MediaName {
            media: kind.to_owned(),
            port: RangedPort {
                value: 0,
                range: None,
            },
            protos: proto.split('/').map(str::to_owned).collect(),
            formats: if formats.is_empty() {
                vec!["0".to_owned()]
            } else {
                formats.to_vec()
            },
        },
        ..MediaDescription::default()
    }
}

/// Rewrites the declined m-lines (port 0) of `answer` to keep the proto of the m-line they
/// answer in `offer` and list its first format. RFC 3264 only asks for some format, but strict
/// parsers (aiortc and others) refuse a whole answer whose declined m-line names a format the
/// offer did not have, and the WebRTC engine writes `0` there.
pub fn declined_as_offered(answer: &str, offer: &Description) -> String {
    let mut index = 0;
    let mut out = String::with_capacity(answer.len());
    // In a declined m-line rewritten: its formats' lines go with its other formats.
    let mut declined = false;
    for line in answer.split_inclusive('\n') {
        let Some(media) = line.strip_prefix("m=") else {
            let format_line = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:", "a=ssrc"]
                .iter()
                .any(|prefix| line.starts_with(prefix));
            if !(declined && format_line) {
                out.push_str(line);
            }
            continue;
        };
        declined = false;
        let offered = offer.lines.get(index);
        index += 1;
        let mut fields = media.trim_end().split(' ');
        let (Some(kind), Some("0"), Some(offered)) = (fields.next(), fields.next(), offered) else {
            out.push_str(line);
            continue;
        };
        let Some(format) = offered.formats.first() else {
            out.push_str(line);
            continue;
        };
        declined = true;
        let ending = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
        out.push_str(&format!("m={kind} 0 {} {format}{ending}", offered.proto));
    }
    out
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

/// The browser's offer as the browser leg's WebRTC peer is to answer it: its first video m-line
/// (not declined) carries only the payload types in `keep` (the format agreed with the far end
/// and its retransmission type), or is declined (port 0, out of the BUNDLE group) when `keep`
/// is `None`; any further video m-line is declined. The peer knows every relayable video
/// format (so that video can come later), so what it may answer is said here.
pub fn restrict_video(offer: &str, keep: Option<&[u8]>) -> String {
    let lines: Vec<&str> = offer.split_inclusive('\n').collect();
    let sections = sections(&lines);
    // The video m-lines declined, and their mids to take out of the group.
    let mut declined_mids: Vec<String> = Vec::new();
    let mut declined: Vec<usize> = Vec::new();
    let mut relayed = false;
    for (number, (start, end)) in sections.iter().enumerate() {
        let mut fields = lines[*start][2..].split_whitespace();
        let (Some("video"), Some(port)) = (fields.next(), fields.next()) else {
            continue;
        };
        if port == "0" {
            continue;
        }
        if !relayed && keep.is_some() {
            relayed = true;
        } else {
            declined.push(number);
            if let Some(mid) = lines[*start..*end]
                .iter()
                .find_map(|line| line.trim_end().strip_prefix("a=mid:"))
            {
                declined_mids.push(mid.to_owned());
            }
        }
    }
    let mut out = String::with_capacity(offer.len());
    for (index, line) in lines.iter().enumerate() {
        let ending = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
        let text = line.trim_end();
        if let Some(group) = text.strip_prefix("a=group:BUNDLE") {
            let mids: Vec<&str> = group
                .split_whitespace()
                .filter(|mid| !declined_mids.iter().any(|declined| declined == mid))
                .collect();
            out.push_str(&format!("a=group:BUNDLE {}{ending}", mids.join(" ")));
            continue;
        }
        if let Some(section) = sections.iter().position(|(start, _)| *start == index)
            && declined.contains(&section)
        {
            let mut fields: Vec<&str> = text.split(' ').collect();
            if fields.len() > 1 {
                fields[1] = "0";
            }
            out.push_str(&format!("{}{ending}", fields.join(" ")));
            continue;
        }
        out.push_str(line);
    }
    match keep {
        Some(keep) => keep_formats(&out, "video", keep),
        None => out,
    }
}

/// An SDP text whose first m-line of `kind` (not declined) carries only the payload types in
/// `keep`, in that order (the first preferred): the others leave its format list and their
/// `rtpmap`, `fmtp` and `rtcp-fb` lines go.
pub fn keep_formats(sdp: &str, kind: &str, keep: &[u8]) -> String {
    let lines: Vec<&str> = sdp.split_inclusive('\n').collect();
    let chosen = sections(&lines).into_iter().find(|(start, _)| {
        let mut fields = lines[*start][2..].split_whitespace();
        fields.next() == Some(kind) && fields.next().is_some_and(|port| port != "0")
    });
    let Some((start, end)) = chosen else {
        return sdp.to_owned();
    };
    let pt_of = |line: &str| -> Option<u8> {
        let rest = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .find_map(|prefix| line.strip_prefix(prefix))?;
        rest.split_whitespace().next()?.parse().ok()
    };
    let mut out = String::with_capacity(sdp.len());
    for (index, line) in lines.iter().enumerate() {
        if index == start {
            let ending = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
            let fields: Vec<&str> = line.trim_end().split(' ').collect();
            let mut kept: Vec<String> = fields.iter().take(3).map(|f| (*f).to_owned()).collect();
            kept.extend(
                keep.iter()
                    .map(u8::to_string)
                    .filter(|pt| fields.iter().skip(3).any(|field| field == pt)),
            );
            out.push_str(&format!("{}{ending}", kept.join(" ")));
            continue;
        }
        if (start..end).contains(&index)
            && pt_of(line.trim_end()).is_some_and(|pt| !keep.contains(&pt))
        {
            continue;
        }
        out.push_str(line);
    }
    out
}

/// The m-line sections of an SDP text split in lines: (first line, end), by line index.
fn sections(lines: &[&str]) -> Vec<(usize, usize)> {
    let mut sections: Vec<(usize, usize)> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if line.starts_with("m=") {
            if let Some(last) = sections.last_mut() {
                last.1 = index;
            }
            sections.push((index, lines.len()));
        }
    }
    sections
}

/// Whether a WebRTC description is an offer: only an offer says `a=setup:actpass` (RFC 5763
/// section 5; an answer picks active or passive).
pub fn is_dtls_offer(sdp: &str) -> bool {
    sdp.lines().any(|line| line.trim_end() == "a=setup:actpass")
}

/// Adds `b=` lines to the m-line of `kind` in an SDP text (for the bandwidth a phone asked for,
/// given to the browser), after its `c=` line, or after the `m=` line when it has none.
pub fn with_bandwidth(sdp: &str, kind: &str, bandwidth: &[(String, u64)]) -> String {
    if bandwidth.is_empty() {
        return sdp.to_owned();
    }
    let lines: Vec<&str> = sdp.split_inclusive('\n').collect();
    let mut out = String::with_capacity(sdp.len() + 32);
    let mut in_section = false;
    let mut done = false;
    for (index, line) in lines.iter().enumerate() {
        out.push_str(line);
        if let Some(media) = line.strip_prefix("m=") {
            in_section =
                media.starts_with(kind) && media.split(' ').nth(1).is_none_or(|port| port != "0");
        }
        if !in_section || done {
            continue;
        }
        let next_is_connection = lines
            .get(index + 1)
            .is_some_and(|next| next.starts_with("c="));
        if (line.starts_with("m=") && !next_is_connection) || line.starts_with("c=") {
            let ending = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
            for (kind, value) in bandwidth {
                out.push_str(&format!("b={kind}:{value}{ending}"));
            }
            done = true;
        }
    }
    out
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

#[cfg(test)]
mod tests;
