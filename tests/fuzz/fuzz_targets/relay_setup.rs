//! What the relay fuzz targets share: a relay's configuration and the browser offer they call
//! with.

use std::time::{Duration, SystemTime};

use media::srtp::{SrtpMode, SrtpPolicy};
use media::{Codec, RelayConfig, VideoCodec};

/// Chrome's audio and video offer.
pub const CHROME: &str = include_str!("../../data/sdp/chrome-offer-audio-video.sdp");

/// A video phone's answer to it (not every target uses it).
#[allow(dead_code)]
pub const PHONE_ANSWER: &str = include_str!("../../data/sdp/baresip-answer-video.sdp");

/// A relay's configuration with every codec and best-effort SRTP (so that keys in the SDP are
/// read and used).
pub fn config() -> RelayConfig {
    RelayConfig {
        browser: "127.0.0.1:40000".parse().expect("addr"),
        sip_rtp: "127.0.0.1:30000".parse().expect("addr"),
        codecs: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
        media_timeout: Duration::from_secs(30),
        ice_timeout: Duration::from_secs(30),
        wallclock: SystemTime::UNIX_EPOCH,
        cname: "fuzz".into(),
        srtp: SrtpPolicy::with_all_suites(SrtpMode::Optional),
        // Video on, so that video m-lines are read and relayed too.
        sip_video: Some("127.0.0.1:30002".parse().expect("addr")),
        video_codecs: VideoCodec::ALL.to_vec(),
    }
}
