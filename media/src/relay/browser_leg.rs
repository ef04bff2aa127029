//! The browser leg of a relay: str0m's peer (ICE-lite, DTLS-SRTP, rtcp-mux, BUNDLE) and what
//! the relay knows of the browser: whether it is connected, when it was last heard, and the
//! datagram handed out for it.

use std::time::Instant;

use str0m::Rtc;
use str0m::net::Transmit;

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
        }
    }
}
