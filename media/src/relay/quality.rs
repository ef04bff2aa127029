//! How a call's audio fares on each leg, as the gateway sees it: packets and payload bytes each
//! way, what was lost on the way in (by sequence number) and its interarrival jitter (RFC 3550
//! appendix A), and what the far end reports of our stream in its RTCP (its loss and jitter,
//! and the round trip from our sender reports' LSR/DLSR, section 6.4.1).
//!
//! The browser leg's reports are read by str0m (its egress statistics); the SIP leg's by the
//! relay itself, which keeps the times of its last sender reports so that a report block that
//! names one gives the round trip without a wall clock.

use std::time::{Duration, Instant};

use str0m::stats::{MediaEgressStats, RemoteIngressStats};

use super::Relay;
use crate::codec::Codec;
use crate::rtp::{ReceiveStats, ReportBlock};

/// One leg's audio since the call began.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegQuality {
    /// RTP packets sent on this leg.
    pub packets_sent: u64,
    /// Their payload bytes.
    pub bytes_sent: u64,
    /// RTP packets received on this leg.
    pub packets_received: u64,
    /// Their payload bytes.
    pub bytes_received: u64,
    /// Packets the far end sent that never came (by sequence number).
    pub packets_lost: u64,
    /// Interarrival jitter of what came.
    pub jitter: Duration,
    /// What the far end reports losing of our packets, once it reported.
    pub remote_packets_lost: Option<u64>,
    /// The jitter the far end reports of our packets, once it reported.
    pub remote_jitter: Option<Duration>,
    /// The round trip from RTCP, once the far end answered one of our sender reports.
    pub round_trip_time: Option<Duration>,
}

/// A call's audio on both legs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallQuality {
    /// The codec relayed, once negotiated.
    pub codec: Option<Codec>,
    /// The WebRTC leg, toward the browser.
    pub browser: LegQuality,
    /// The RTP leg, toward the SIP side.
    pub sip: LegQuality,
}

/// How many of our last sender reports are remembered: reports go every few seconds and the
/// far end's answer names the latest it had, which can be one or two behind.
const SENT_REPORTS: usize = 4;

/// What the far end of a SIP leg reports of our stream, and the round trip it gives.
#[derive(Debug, Default)]
pub(super) struct FarReports {
    /// Our last sender reports: the middle 32 bits of their NTP time, and when they went.
    sent: [Option<(u32, Instant)>; SENT_REPORTS],
    next: usize,
    /// The far end's latest report block on our SSRC.
    latest: Option<ReportBlock>,
    round_trip: Option<Duration>,
}

impl FarReports {
    /// A sender report with NTP time `ntp` goes out `now`.
    pub(super) fn sent(&mut self, ntp: u64, now: Instant) {
        self.sent[self.next] = Some(((ntp >> 16) as u32, now));
        self.next = (self.next + 1) % SENT_REPORTS;
    }

    /// A report block of the far end on our stream came `now`.
    pub(super) fn take(&mut self, block: ReportBlock, now: Instant) {
        self.latest = Some(block);
        if block.lsr == 0 {
            return;
        }
        let Some((_, at)) = self
            .sent
            .iter()
            .flatten()
            .find(|(lsr, _)| *lsr == block.lsr)
        else {
            return;
        };
        // RTT = arrival - LSR - DLSR (RFC 3550 section 6.4.1), with LSR's local send time.
        let held = Duration::from_secs_f64(f64::from(block.dlsr) / 65_536.0);
        self.round_trip = Some(now.saturating_duration_since(*at).saturating_sub(held));
    }
}

/// A jitter in RTP clock units as a duration.
fn jitter(units: u32, clock: u32) -> Duration {
    Duration::from_secs_f64(f64::from(units) / f64::from(clock.max(1)))
}

/// The browser leg's counts, kept by the relay: str0m's own statistics come only every few
/// seconds, and the last ones before the call's end would be missed.
#[derive(Debug, Default)]
pub(super) struct BrowserCounts {
    pub(super) received: ReceiveStats,
    pub(super) bytes_received: u64,
    pub(super) packets_sent: u64,
    pub(super) bytes_sent: u64,
    /// The browser's latest report on our audio (from str0m's egress statistics).
    remote: Option<RemoteIngressStats>,
    /// The latest round trip str0m measured from the browser's reports.
    round_trip: Option<Duration>,
}

impl BrowserCounts {
    /// str0m's egress statistics of the audio: what they have replaces what was known (a
    /// period without a report from the browser keeps the last one).
    pub(super) fn take_egress(&mut self, stats: MediaEgressStats) {
        if let Some(remote) = stats.remote {
            self.remote = Some(remote);
        }
        if let Some(rtt) = stats.rtt {
            self.round_trip = Some(rtt);
        }
    }
}

impl Relay {
    /// How the call's audio has fared so far on each leg.
    pub fn quality(&self) -> CallQuality {
        let codec = self.codec();
        let clock = codec.map_or(8000, Codec::clock_rate);
        let counts = &self.browser.counts;
        let (received, lost, jitter_units) = counts.received.totals();
        let browser = LegQuality {
            packets_sent: counts.packets_sent,
            bytes_sent: counts.bytes_sent,
            packets_received: u64::from(received),
            bytes_received: counts.bytes_received,
            packets_lost: u64::from(lost),
            jitter: jitter(jitter_units, clock),
            remote_packets_lost: counts.remote.as_ref().map(|remote| remote.packets_lost),
            remote_jitter: counts
                .remote
                .as_ref()
                .map(|remote| jitter(remote.jitter, clock)),
            round_trip_time: counts.round_trip,
        };
        let sip = &self.sip;
        let (received, lost, jitter_units) = sip.received.totals();
        let far = sip.far.latest;
        let sip = LegQuality {
            packets_sent: u64::from(sip.sent.packets),
            bytes_sent: u64::from(sip.sent.octets),
            packets_received: u64::from(received),
            bytes_received: sip.bytes_received,
            packets_lost: u64::from(lost),
            jitter: jitter(jitter_units, clock),
            remote_packets_lost: far.map(|block| block.cumulative_lost.max(0) as u64),
            remote_jitter: far.map(|block| jitter(block.jitter, clock)),
            round_trip_time: sip.far.round_trip,
        };
        CallQuality {
            codec,
            browser,
            sip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(lsr: u32, dlsr: u32) -> ReportBlock {
        ReportBlock {
            ssrc: 1,
            fraction_lost: 0,
            cumulative_lost: 2,
            highest_seq: 100,
            jitter: 80,
            lsr,
            dlsr,
        }
    }

    #[test]
    fn the_round_trip_comes_from_a_remembered_sender_report() {
        let start = Instant::now();
        let mut far = FarReports::default();
        // Five reports a second apart: the first is forgotten.
        for second in 0..5u64 {
            far.sent((second + 1) << 32, start + Duration::from_secs(second));
        }
        // The far end held our third report (sent at 2 s) half a second and answered at 2.6 s.
        far.take(block(3 << 16, 32_768), start + Duration::from_millis(2600));
        assert_eq!(far.round_trip, Some(Duration::from_millis(100)));
        assert_eq!(far.latest.map(|b| b.cumulative_lost), Some(2));
        // A block naming a forgotten report, or none, keeps the last round trip.
        far.take(block(1 << 16, 0), start + Duration::from_secs(9));
        far.take(block(0, 0), start + Duration::from_secs(9));
        assert_eq!(far.round_trip, Some(Duration::from_millis(100)));
        // A DLSR longer than the time since the report gives zero, not a wrap.
        far.take(block(5 << 16, 65_536 * 10), start + Duration::from_secs(5));
        assert_eq!(far.round_trip, Some(Duration::ZERO));
    }

    #[test]
    fn jitter_is_in_the_codec_clock() {
        assert_eq!(jitter(80, 8000), Duration::from_millis(10));
        assert_eq!(jitter(480, 48_000), Duration::from_millis(10));
    }
}
