//! The gateway's media relay: WebRTC termination (ICE-lite, DTLS-SRTP) toward the browser and
//! RTP toward SIP endpoints (plain, SDES-SRTP in [`srtp`], or DTLS-SRTP in [`dtls`]), relaying
//! audio and video without decoding them.
//!
//! The protocol logic is sans-IO: session descriptions are read and written by [`sdp`], and a
//! call's relay is a state machine fed with datagrams and `now` (str0m does the WebRTC side).
//! The sockets live in a thin tokio driver behind the `tokio` feature. The gateway never sees
//! str0m types.

#![deny(missing_docs)]

pub mod codec;
#[cfg(feature = "tokio")]
pub mod driver;
pub mod dtls;
pub mod echo;
mod error;
pub mod relay;
pub mod rtp;
pub mod sdp;
pub mod srtp;
pub mod stun;

pub use codec::{Codec, Format, H264Profile, Payload, Video, VideoCodec};
pub use echo::Echo;
pub use error::{Error, Result};
pub use relay::pair::{PairConfig, PairOutput, RtpPair, Side};
pub use relay::{CallQuality, Event, LegQuality, Output, Relay, RelayConfig};

/// Installs the process-wide crypto provider of the WebRTC stack (DTLS, SRTP) and starts making
/// what every browser leg shares (the DTLS certificate and configuration) on a thread of its
/// own, so that neither start-up nor the first call waits for them (a call that comes first
/// makes them itself). Call once at start-up, before any relay is made; later calls do nothing.
pub fn init_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        str0m::crypto::from_feature_flags().install_process_default();
        let _ = std::thread::Builder::new()
            .name("dtls-prepare".into())
            .spawn(relay::prepare_shared);
    });
}
