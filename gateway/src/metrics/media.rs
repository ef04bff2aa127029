//! Media per leg (the browser's WebRTC leg, the SIP side's RTP leg): RTP packets and payload
//! bytes each way, packets lost on the way in, what the far ends report losing of ours, and,
//! once per call at its end, each leg's jitter and round trip. Calls add what changed every
//! few seconds (`call::record`), so long calls show in the counters while they last.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::family;
use super::histogram::Histogram;

/// Jitter buckets, seconds: a jitter buffer absorbs tens of milliseconds.
const JITTER: [f64; 8] = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25];
/// Round-trip buckets, seconds: ITU-T G.114 puts one-way delay trouble past 150 ms.
const ROUND_TRIP: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6];

const LEGS: [&str; 2] = ["browser", "sip"];

/// The counters of one leg.
#[derive(Debug)]
struct LegStats {
    packets_sent: AtomicU64,
    packets_received: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    lost: AtomicU64,
    remote_lost: AtomicU64,
    jitter: Histogram,
    round_trip: Histogram,
}

impl Default for LegStats {
    fn default() -> Self {
        LegStats {
            packets_sent: AtomicU64::new(0),
            packets_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            remote_lost: AtomicU64::new(0),
            jitter: Histogram::new(&JITTER),
            round_trip: Histogram::new(&ROUND_TRIP),
        }
    }
}

impl LegStats {
    /// Adds what changed from `before` to `now` (counts only grow; a count that went back, as
    /// when a new SSRC restarts the receive statistics, adds nothing).
    fn add(&self, before: &media::LegQuality, now: &media::LegQuality) {
        let grow = |counter: &AtomicU64, before: u64, now: u64| {
            let delta = now.saturating_sub(before);
            if delta > 0 {
                counter.fetch_add(delta, Relaxed);
            }
        };
        grow(&self.packets_sent, before.packets_sent, now.packets_sent);
        grow(&self.bytes_sent, before.bytes_sent, now.bytes_sent);
        grow(
            &self.packets_received,
            before.packets_received,
            now.packets_received,
        );
        grow(
            &self.bytes_received,
            before.bytes_received,
            now.bytes_received,
        );
        grow(&self.lost, before.packets_lost, now.packets_lost);
        grow(
            &self.remote_lost,
            before.remote_packets_lost.unwrap_or(0),
            now.remote_packets_lost.unwrap_or(0),
        );
    }

    fn ended(&self, leg: &media::LegQuality) {
        if leg.packets_received > 0 {
            self.jitter.observe(leg.jitter);
        }
        if let Some(rtt) = leg.round_trip_time {
            self.round_trip.observe(rtt);
        }
    }
}

/// The media counters, per leg.
#[derive(Debug, Default)]
pub(crate) struct MediaStats {
    legs: [LegStats; 2],
}

impl MediaStats {
    /// Adds what a call's media did since its last tally (`before`).
    pub(crate) fn add(&self, before: &media::CallQuality, now: &media::CallQuality) {
        self.legs[0].add(&before.browser, &now.browser);
        self.legs[1].add(&before.sip, &now.sip);
    }

    /// A call ended with this quality: its jitter and round trip per leg.
    pub(crate) fn ended(&self, quality: &media::CallQuality) {
        self.legs[0].ended(&quality.browser);
        self.legs[1].ended(&quality.sip);
    }

    pub(crate) fn render(&self, out: &mut String) {
        type Read = fn(&LegStats) -> [(&'static str, u64); 2];
        let counters: [(&str, &str, Read); 2] = [
            (
                "sylkrtc_media_packets_total",
                "RTP packets of calls' audio, by leg (browser: WebRTC, sip: the SIP side) and \
                 direction (sent by the gateway, received by it).",
                |stats| {
                    [
                        (",direction=\"sent\"", stats.packets_sent.load(Relaxed)),
                        (
                            ",direction=\"received\"",
                            stats.packets_received.load(Relaxed),
                        ),
                    ]
                },
            ),
            (
                "sylkrtc_media_bytes_total",
                "RTP payload bytes of calls' audio, by leg and direction.",
                |stats| {
                    [
                        (",direction=\"sent\"", stats.bytes_sent.load(Relaxed)),
                        (
                            ",direction=\"received\"",
                            stats.bytes_received.load(Relaxed),
                        ),
                    ]
                },
            ),
        ];
        for (name, help, read) in counters {
            family(out, name, "counter", help);
            for (leg, stats) in LEGS.iter().zip(&self.legs) {
                for (direction, value) in read(stats) {
                    let _ = writeln!(out, "{name}{{leg=\"{leg}\"{direction}}} {value}");
                }
            }
        }
        type Count = fn(&LegStats) -> u64;
        let losses: [(&str, &str, Count); 2] = [
            (
                "sylkrtc_media_lost_packets_total",
                "RTP packets the far end of a leg sent that never reached the gateway (by \
                 sequence number).",
                |stats| stats.lost.load(Relaxed),
            ),
            (
                "sylkrtc_media_remote_lost_packets_total",
                "RTP packets the far end of a leg reports (RTCP) not receiving of the \
                 gateway's, including those lost before they reached the gateway.",
                |stats| stats.remote_lost.load(Relaxed),
            ),
        ];
        for (name, help, read) in losses {
            family(out, name, "counter", help);
            for (leg, stats) in LEGS.iter().zip(&self.legs) {
                let _ = writeln!(out, "{name}{{leg=\"{leg}\"}} {}", read(stats));
            }
        }
        family(
            out,
            "sylkrtc_media_jitter_seconds",
            "histogram",
            "Interarrival jitter (RFC 3550) of what a leg's far end sent, one sample per call \
             at its end.",
        );
        for (leg, stats) in LEGS.iter().zip(&self.legs) {
            let labels = format!("leg=\"{leg}\"");
            stats
                .jitter
                .render(out, "sylkrtc_media_jitter_seconds", &labels);
        }
        family(
            out,
            "sylkrtc_media_round_trip_seconds",
            "histogram",
            "Round trip from RTCP sender and receiver reports on a leg, one sample per call \
             at its end (calls whose far end never answered a sender report have none).",
        );
        for (leg, stats) in LEGS.iter().zip(&self.legs) {
            let labels = format!("leg=\"{leg}\"");
            stats
                .round_trip
                .render(out, "sylkrtc_media_round_trip_seconds", &labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn tallies_add_what_changed_and_calls_end_in_the_histograms() {
        let stats = MediaStats::default();
        let mut first = media::CallQuality::default();
        first.sip.packets_received = 100;
        first.sip.packets_lost = 4;
        first.browser.packets_sent = 96;
        first.browser.remote_packets_lost = Some(5);
        stats.add(&media::CallQuality::default(), &first);
        let mut second = first;
        second.sip.packets_received = 150;
        second.browser.bytes_sent = 1000;
        second.browser.remote_packets_lost = Some(4);
        second.sip.jitter = Duration::from_millis(3);
        second.sip.round_trip_time = Some(Duration::from_millis(30));
        stats.add(&first, &second);
        stats.ended(&second);
        let mut out = String::new();
        stats.render(&mut out);
        for line in [
            "sylkrtc_media_packets_total{leg=\"sip\",direction=\"received\"} 150",
            "sylkrtc_media_packets_total{leg=\"browser\",direction=\"sent\"} 96",
            "sylkrtc_media_bytes_total{leg=\"browser\",direction=\"sent\"} 1000",
            "sylkrtc_media_lost_packets_total{leg=\"sip\"} 4",
            "sylkrtc_media_lost_packets_total{leg=\"browser\"} 0",
            // The far end's count went back (a duplicate): nothing is taken off.
            "sylkrtc_media_remote_lost_packets_total{leg=\"browser\"} 5",
            "sylkrtc_media_jitter_seconds_bucket{leg=\"sip\",le=\"0.005\"} 1",
            "sylkrtc_media_jitter_seconds_count{leg=\"browser\"} 0",
            "sylkrtc_media_round_trip_seconds_bucket{leg=\"sip\",le=\"0.025\"} 0",
            "sylkrtc_media_round_trip_seconds_bucket{leg=\"sip\",le=\"0.05\"} 1",
            "sylkrtc_media_round_trip_seconds_count{leg=\"browser\"} 0",
        ] {
            assert!(out.lines().any(|got| got == line), "no {line:?} in\n{out}");
        }
    }
}
