//! The media relay's error type.

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the media relay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A session description could not be read.
    #[error("invalid SDP: {0}")]
    Sdp(String),
    /// The description has no audio stream.
    #[error("no audio stream in the session description")]
    NoAudio,
    /// The SIP side offers or answers audio only on a transport profile the relay may not use
    /// (SRTP when it is off here, plain RTP when SRTP is mandatory, DTLS-SRTP, ...): answered
    /// with 488 and `Warning: 302`. The text says which profile and why.
    #[error("incompatible transport protocol {0}")]
    IncompatibleTransport(String),
    /// The two sides share no codec; the text names what each side has.
    #[error("{0}")]
    NoCommonCodec(String),
    /// DTLS-SRTP toward the SIP side failed (handshake, fingerprint, keys).
    #[error("DTLS-SRTP: {0}")]
    Dtls(String),
    /// The WebRTC engine refused something.
    #[error("WebRTC: {0}")]
    WebRtc(String),
    /// A socket could not be bound or used.
    #[error("media I/O: {0}")]
    Io(#[from] std::io::Error),
    /// No free port in the configured range.
    #[error("no free RTP port in {0}")]
    NoPort(String),
}
