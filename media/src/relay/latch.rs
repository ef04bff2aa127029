//! Which source the SIP leg accepts RTP (or RTCP) from, sans-IO.
//!
//! A port that forwards whatever reaches it lets anyone who can send to the port range inject
//! audio into a call, or steal its media by being the first to send ("RTP bleed"). Phones behind
//! NAT send from another address than their SDP says, so the source is learnt (latched), as
//! rtpengine's strict-source mode does: during a short learning window that opens with the
//! first packet after each new remote SDP, a source matching the SDP exactly wins, else the
//! first source is taken; after the window only the latched source is accepted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a source may still be learnt after the first packet of a new remote SDP.
pub(crate) const LEARNING: Duration = Duration::from_secs(3);

/// The accepted source of one flow of the SIP leg.
#[derive(Debug, Clone, Default)]
pub(crate) struct Latch {
    /// Where the remote SDP says the flow comes from (its address for the flow).
    expected: Option<SocketAddr>,
    /// The source taken.
    latched: Option<SocketAddr>,
    /// When learning ends; `None` until the first packet after the last SDP.
    learning_until: Option<Instant>,
}

impl Latch {
    /// A new remote SDP (offer, answer, re-INVITE, UPDATE): learning opens again.
    pub(crate) fn reset(&mut self, expected: Option<SocketAddr>) {
        self.expected = expected;
        self.latched = None;
        self.learning_until = None;
    }

    /// Whether a packet from `source` is taken (and the source learnt).
    pub(crate) fn accept(&mut self, now: Instant, source: SocketAddr) -> bool {
        let until = *self.learning_until.get_or_insert(now + LEARNING);
        if self.latched == Some(source) {
            return true;
        }
        if now >= until {
            return false;
        }
        if self.latched.is_none() || self.expected == Some(source) {
            self.latched = Some(source);
            return true;
        }
        false
    }

    /// Whether `source` is where the SDP says the flow comes from.
    pub(crate) fn is_expected(&self, source: SocketAddr) -> bool {
        self.expected == Some(source)
    }

    /// Where to send: the latched source, else the SDP's address.
    pub(crate) fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn the_first_source_is_latched_and_no_other_is_heard() {
        let now = Instant::now();
        let mut latch = Latch::default();
        latch.reset(Some(addr("10.0.0.5:4000")));
        // A phone behind NAT: its packets come from elsewhere than its SDP.
        assert!(latch.accept(now, addr("127.0.0.2:6000")));
        assert_eq!(latch.destination(), Some(addr("127.0.0.2:6000")));
        // A third party during learning is not heard, nor after it.
        assert!(!latch.accept(now + Duration::from_millis(10), addr("127.0.0.9:7000")));
        assert!(!latch.accept(now + LEARNING * 2, addr("127.0.0.9:7000")));
        assert!(latch.accept(now + LEARNING * 2, addr("127.0.0.2:6000")));
        assert_eq!(latch.destination(), Some(addr("127.0.0.2:6000")));
    }

    #[test]
    fn the_sdp_address_wins_during_learning_only() {
        let now = Instant::now();
        let sdp = addr("127.0.0.1:4000");
        let mut latch = Latch::default();
        latch.reset(Some(sdp));
        // An attacker is first, then the real phone, from its SDP address: the phone wins.
        assert!(latch.accept(now, addr("127.0.0.9:7000")));
        assert!(latch.accept(now + Duration::from_millis(20), sdp));
        assert!(!latch.accept(now + Duration::from_millis(40), addr("127.0.0.9:7000")));
        assert_eq!(latch.destination(), Some(sdp));

        // After learning, not even the SDP's address takes over another latched source.
        let mut latch = Latch::default();
        latch.reset(Some(sdp));
        assert!(latch.accept(now, addr("127.0.0.2:6000")));
        assert!(!latch.accept(now + LEARNING, sdp));
    }

    #[test]
    fn a_new_sdp_opens_learning_again() {
        let now = Instant::now();
        let mut latch = Latch::default();
        latch.reset(Some(addr("127.0.0.1:4000")));
        assert!(latch.accept(now, addr("127.0.0.1:4000")));
        // The phone moved (re-INVITE): its new source is learnt, the old one no longer heard.
        latch.reset(Some(addr("127.0.0.1:5000")));
        assert_eq!(latch.destination(), Some(addr("127.0.0.1:5000")));
        let later = now + LEARNING * 10;
        assert!(latch.accept(later, addr("127.0.0.1:5000")));
        assert!(!latch.accept(later, addr("127.0.0.1:4000")));
        // Nothing before any SDP or packet: the window opens with the first packet.
        let mut latch = Latch::default();
        assert_eq!(latch.destination(), None);
        assert!(latch.accept(later, addr("127.0.0.3:1")));
    }
}
