//! The codecs the relay carries (it never transcodes), audio and video, and the payload types
//! that name them.

use std::fmt;
use std::str::FromStr;

/// An audio codec the gateway relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus, 48 kHz, two channels in SDP.
    Opus,
    /// G.722 (16 kHz audio with an 8 kHz RTP clock, RFC 3551).
    G722,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
}

impl Codec {
    /// Every codec, in the default order of preference.
    pub const ALL: [Codec; 4] = [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma];

    /// The encoding name of `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::G722 => "G722",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::G722 | Codec::Pcmu | Codec::Pcma => 8_000,
        }
    }

    /// The channel count written in `a=rtpmap` (opus always says 2).
    pub fn channels(self) -> Option<u8> {
        match self {
            Codec::Opus => Some(2),
            _ => None,
        }
    }

    /// The static payload type (RFC 3551), when the codec has one.
    pub fn static_pt(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
            Codec::Opus => None,
        }
    }

    /// The codec an `a=rtpmap` line names, if the relay carries it.
    pub fn from_rtpmap(name: &str, clock_rate: u32) -> Option<Codec> {
        Codec::ALL.into_iter().find(|codec| {
            codec.name().eq_ignore_ascii_case(name) && codec.clock_rate() == clock_rate
        })
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Codec {
    type Err = String;

    /// Parses a configured codec name (`opus`, `G722`, `PCMU`, `PCMA`; any case).
    fn from_str(name: &str) -> Result<Codec, String> {
        Codec::ALL
            .into_iter()
            .find(|codec| codec.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!("unknown codec {name:?} (the relay carries opus, G722, PCMU and PCMA)")
            })
    }
}

/// A video codec the gateway relays (90 kHz RTP clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// VP8 (RFC 7741).
    Vp8,
    /// VP9.
    Vp9,
    /// H.264 (RFC 6184).
    H264,
}

impl VideoCodec {
    /// Every video codec, in the default order of preference.
    pub const ALL: [VideoCodec; 3] = [VideoCodec::Vp8, VideoCodec::Vp9, VideoCodec::H264];

    /// The encoding name of `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "VP8",
            VideoCodec::Vp9 => "VP9",
            VideoCodec::H264 => "H264",
        }
    }
}

impl fmt::Display for VideoCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VideoCodec {
    type Err = String;

    /// Parses a configured video codec name (`VP8`, `VP9`, `H264`; any case).
    fn from_str(name: &str) -> Result<VideoCodec, String> {
        VideoCodec::ALL
            .into_iter()
            .find(|codec| codec.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!("unknown video codec {name:?} (the relay carries VP8, VP9 and H264)")
            })
    }
}

/// A video payload format. Two payload types carry the same format only when a packet of one
/// can be read as the other: for H.264 the packetization mode and the profile must be the
/// same (RFC 6184 section 8.1); the level is negotiated (the lower of the two), so it is no
/// part of the format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Video {
    /// VP8.
    Vp8,
    /// VP9 of this profile (`profile-id`, 0 when absent: profile 2 is 10-bit video, another
    /// format).
    Vp9 {
        /// `profile-id`.
        profile: u8,
    },
    /// H.264 with this packetization mode and profile (`profile_idc` and the constraint flags
    /// that matter: see [`H264Profile`]).
    H264 {
        /// `packetization-mode` (0 when absent).
        mode: u8,
        /// The profile.
        profile: H264Profile,
    },
}

/// The H.264 profiles as far as payload formats tell them apart (RFC 6184 section 8.1; the
/// constrained baseline profile is written in several ways: `42e0`, `42c0`, `4de0`, `58e0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum H264Profile {
    /// Constrained baseline: what phones and browsers have in common.
    ConstrainedBaseline,
    /// Baseline without the constraint.
    Baseline,
    /// Main.
    Main,
    /// High.
    High,
    /// Any other `profile_idc`.
    Other(u8),
}

impl H264Profile {
    /// The profile of a `profile-level-id` (six hex digits), with the level.
    pub fn parse(profile_level_id: &str) -> Option<(H264Profile, u8)> {
        let value = u32::from_str_radix(profile_level_id.get(..6)?, 16).ok()?;
        let [_, idc, iop, level] = value.to_be_bytes();
        let profile = match idc {
            0x42 if iop & 0x40 != 0 => H264Profile::ConstrainedBaseline,
            0x4d if iop & 0x80 != 0 => H264Profile::ConstrainedBaseline,
            0x58 if iop & 0xc0 == 0xc0 => H264Profile::ConstrainedBaseline,
            0x42 => H264Profile::Baseline,
            0x4d => H264Profile::Main,
            0x64 => H264Profile::High,
            other => H264Profile::Other(other),
        };
        Some((profile, level))
    }

    /// The `profile-level-id` for this profile at `level`.
    pub fn profile_level_id(self, level: u8) -> String {
        let (idc, iop) = match self {
            H264Profile::ConstrainedBaseline => (0x42, 0xe0),
            H264Profile::Baseline => (0x42, 0x00),
            H264Profile::Main => (0x4d, 0x00),
            H264Profile::High => (0x64, 0x00),
            H264Profile::Other(idc) => (idc, 0x00),
        };
        format!("{idc:02x}{iop:02x}{level:02x}")
    }
}

/// The value of `name` in an `a=fmtp` parameter list (`a=1;b=2`).
pub fn fmtp_value<'a>(fmtp: &'a str, name: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

impl Video {
    /// The format of an `a=rtpmap` encoding (with its `a=fmtp`), if the relay carries it.
    pub fn from_rtpmap(name: &str, clock_rate: u32, fmtp: Option<&str>) -> Option<Video> {
        if clock_rate != 90_000 {
            return None;
        }
        let codec = VideoCodec::ALL
            .into_iter()
            .find(|codec| codec.name().eq_ignore_ascii_case(name))?;
        Some(match codec {
            VideoCodec::Vp8 => Video::Vp8,
            VideoCodec::Vp9 => Video::Vp9 {
                profile: fmtp
                    .and_then(|fmtp| fmtp_value(fmtp, "profile-id"))
                    .and_then(|profile| profile.parse().ok())
                    .unwrap_or(0),
            },
            VideoCodec::H264 => {
                let fmtp = fmtp.unwrap_or_default();
                let mode = fmtp_value(fmtp, "packetization-mode")
                    .and_then(|mode| mode.parse().ok())
                    .unwrap_or(0);
                // RFC 6184: without profile-level-id, baseline at level 1.0 (42000a).
                let (profile, _) =
                    H264Profile::parse(fmtp_value(fmtp, "profile-level-id").unwrap_or("42000a"))?;
                Video::H264 { mode, profile }
            }
        })
    }

    /// The codec.
    pub fn codec(self) -> VideoCodec {
        match self {
            Video::Vp8 => VideoCodec::Vp8,
            Video::Vp9 { .. } => VideoCodec::Vp9,
            Video::H264 { .. } => VideoCodec::H264,
        }
    }

    /// The H.264 level of an `a=fmtp` (level 1.0 when it says none).
    pub fn h264_level(fmtp: Option<&str>) -> u8 {
        fmtp.and_then(|fmtp| fmtp_value(fmtp, "profile-level-id"))
            .and_then(H264Profile::parse)
            .map_or(0x0a, |(_, level)| level)
    }
}

/// What a payload type carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Audio in a codec the relay carries.
    Audio(Codec),
    /// RFC 4733 events (DTMF) at this clock rate.
    TelephoneEvent(u32),
    /// Video in a format the relay carries.
    Video(Video),
}

impl Format {
    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Format::Audio(codec) => codec.clock_rate(),
            Format::TelephoneEvent(rate) => rate,
            Format::Video(_) => 90_000,
        }
    }
}

/// One payload type of an m-line: its number, what it carries, and its `a=fmtp` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The payload type number.
    pub pt: u8,
    /// What it carries.
    pub format: Format,
    /// The `a=fmtp` parameters, if any.
    pub fmtp: Option<String>,
}

impl Payload {
    /// The `a=rtpmap` value (`111 opus/48000/2`).
    pub fn rtpmap(&self) -> String {
        match self.format {
            Format::Audio(codec) => match codec.channels() {
                Some(channels) => format!(
                    "{} {}/{}/{channels}",
                    self.pt,
                    codec.name(),
                    codec.clock_rate()
                ),
                None => format!("{} {}/{}", self.pt, codec.name(), codec.clock_rate()),
            },
            Format::TelephoneEvent(rate) => format!("{} telephone-event/{rate}", self.pt),
            Format::Video(video) => format!("{} {}/90000", self.pt, video.codec().name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_rates() {
        assert_eq!(Codec::from_rtpmap("opus", 48_000), Some(Codec::Opus));
        assert_eq!(Codec::from_rtpmap("PCMU", 8_000), Some(Codec::Pcmu));
        assert_eq!(Codec::from_rtpmap("pcma", 8_000), Some(Codec::Pcma));
        assert_eq!(Codec::from_rtpmap("G722", 8_000), Some(Codec::G722));
        assert_eq!(Codec::from_rtpmap("G722", 16_000), None);
        assert_eq!(Codec::from_rtpmap("AMR-WB", 16_000), None);
        assert_eq!("Opus".parse::<Codec>(), Ok(Codec::Opus));
        assert!("speex".parse::<Codec>().is_err());
        let opus = Payload {
            pt: 111,
            format: Format::Audio(Codec::Opus),
            fmtp: None,
        };
        assert_eq!(opus.rtpmap(), "111 opus/48000/2");
        let te = Payload {
            pt: 101,
            format: Format::TelephoneEvent(8_000),
            fmtp: Some("0-16".into()),
        };
        assert_eq!(te.rtpmap(), "101 telephone-event/8000");
    }

    #[test]
    fn video_formats() {
        assert_eq!(Video::from_rtpmap("vp8", 90_000, None), Some(Video::Vp8));
        assert_eq!(Video::from_rtpmap("VP8", 8_000, None), None);
        assert_eq!(
            Video::from_rtpmap("VP9", 90_000, None),
            Video::from_rtpmap("VP9", 90_000, Some("profile-id=0"))
        );
        assert_eq!(
            Video::from_rtpmap("VP9", 90_000, Some("profile-id=2")),
            Some(Video::Vp9 { profile: 2 })
        );
        let h264 = |fmtp| Video::from_rtpmap("H264", 90_000, Some(fmtp));
        let cb = |mode| Video::H264 {
            mode,
            profile: H264Profile::ConstrainedBaseline,
        };
        // Chrome's and baresip's ways of writing constrained baseline are one format.
        assert_eq!(
            h264("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
            Some(cb(1))
        );
        assert_eq!(
            h264("profile-level-id=42C01F; packetization-mode=1"),
            Some(cb(1))
        );
        assert_eq!(
            h264("packetization-mode=1;profile-level-id=4de01f"),
            Some(cb(1))
        );
        // A different packetization mode is a different format; no mode means 0.
        assert_eq!(h264("profile-level-id=42e01f"), Some(cb(0)));
        assert_eq!(
            h264("packetization-mode=1;profile-level-id=640c1f"),
            Some(Video::H264 {
                mode: 1,
                profile: H264Profile::High
            })
        );
        assert_eq!(
            Video::from_rtpmap("H264", 90_000, None),
            Some(Video::H264 {
                mode: 0,
                profile: H264Profile::Baseline
            })
        );
        assert_eq!(Video::h264_level(Some("profile-level-id=42e01f")), 0x1f);
        assert_eq!(Video::h264_level(None), 0x0a);
        assert_eq!(
            H264Profile::ConstrainedBaseline.profile_level_id(0x1f),
            "42e01f"
        );
        assert_eq!("h264".parse::<VideoCodec>(), Ok(VideoCodec::H264));
        assert!("av1".parse::<VideoCodec>().is_err());
    }
}
