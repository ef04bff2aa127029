//! The audio codecs the relay carries (it never transcodes) and the payload types that name them.

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

/// What a payload type carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Audio in a codec the relay carries.
    Audio(Codec),
    /// RFC 4733 events (DTMF) at this clock rate.
    TelephoneEvent(u32),
}

impl Format {
    /// The RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Format::Audio(codec) => codec.clock_rate(),
            Format::TelephoneEvent(rate) => rate,
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
}
