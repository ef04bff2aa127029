//! Writing the SIP side's descriptions: our offers and answers toward SIP (one audio stream,
//! video when the call has it, the offer's other m-lines declined in place), with SDES keys or
//! DTLS-SRTP's fingerprint and role.

use std::net::{IpAddr, SocketAddr};

use sdp::description::common::{Address, Attribute, Bandwidth, ConnectionInformation};
use sdp::description::media::{MediaDescription, MediaName, RangedPort};
use sdp::description::session::{Origin, SessionDescription, TimeDescription, Timing};

use super::{Description, Direction, MediaLine};
use crate::codec::Payload;
use crate::dtls::{Fingerprint, Setup};
use crate::srtp::Crypto;

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
