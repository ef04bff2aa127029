//! A call's entry in the metrics: how long it took to reach its far end, and how it ended,
//! read off the updates it gives its front-end; its media per leg, added every few seconds
//! while it lasts; and at its end, the quality summary logged and given to the front-end.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::CallUpdate;
use crate::metrics::Metrics;
use crate::metrics::calls::{Direction, Outcome};

pub(super) struct Record {
    metrics: Arc<Metrics>,
    direction: Direction,
    started: Instant,
    reached: Cell<bool>,
    answered: Cell<bool>,
    ended: Cell<bool>,
    /// The media added to the metrics so far, and when to add again.
    tallied: Cell<media::CallQuality>,
    tally_at: Cell<Instant>,
    /// The call's quality was taken at its end.
    finished: Cell<bool>,
}

impl Record {
    pub(super) fn new(metrics: Arc<Metrics>, direction: Direction) -> Record {
        Record {
            metrics,
            direction,
            started: Instant::now(),
            reached: Cell::new(false),
            answered: Cell::new(false),
            ended: Cell::new(false),
            tallied: Cell::new(media::CallQuality::default()),
            tally_at: Cell::new(Instant::now() + TALLY_EVERY),
            finished: Cell::new(false),
        }
    }

    pub(super) fn update(&self, update: &CallUpdate) {
        let reached = matches!(
            update,
            CallUpdate::Ringing | CallUpdate::EarlyMedia { .. } | CallUpdate::Accepted { .. }
        );
        if reached && !self.reached.replace(true) {
            self.metrics.calls_ended.reached(self.started.elapsed());
        }
        if matches!(update, CallUpdate::Accepted { .. }) {
            self.answered.set(true);
        }
        if let CallUpdate::Terminated(ending) = update
            && !self.ended.replace(true)
        {
            let outcome = if self.answered.get() {
                Outcome::Answered
            } else {
                Outcome::unanswered(ending.code)
            };
            self.metrics.calls_ended.ended(self.direction, outcome);
        }
    }
}

/// How often a call adds its media to the metrics' counters while it lasts.
const TALLY_EVERY: Duration = Duration::from_secs(5);

impl Record {
    /// When the call's media is next added to the metrics.
    pub(super) fn tally_at(&self) -> Instant {
        self.tally_at.get()
    }

    /// Adds what the call's media did since the last tally to the metrics.
    pub(super) fn tally(&self, quality: media::CallQuality) {
        let before = self.tallied.replace(quality);
        self.metrics.media.add(&before, &quality);
        self.tally_at.set(Instant::now() + TALLY_EVERY);
    }

    /// The call's end: its media's last tally, its jitter and round trips in the metrics, a
    /// `call quality` log line, and the summary for the front-end; nothing when no media
    /// flowed (or the end was taken already).
    pub(super) fn finish(&self, quality: media::CallQuality) -> Option<protocol::CallQuality> {
        if self.finished.replace(true) {
            return None;
        }
        self.tally(quality);
        let (browser, sip) = (&quality.browser, &quality.sip);
        if browser.packets_received + browser.packets_sent + sip.packets_received + sip.packets_sent
            == 0
        {
            return None;
        }
        self.metrics.media.ended(&quality);
        let duration = self.started.elapsed();
        let millis = |value: Duration| format!("{:.1}", value.as_secs_f64() * 1000.0);
        let rtt = |leg: &media::LegQuality| leg.round_trip_time.map(millis);
        tracing::info!(
            codec = quality.codec.map(|codec| codec.name()),
            duration_s = duration.as_secs(),
            browser_sent = browser.packets_sent,
            browser_received = browser.packets_received,
            browser_lost = browser.packets_lost,
            browser_jitter_ms = millis(browser.jitter),
            browser_remote_lost = browser.remote_packets_lost,
            browser_rtt_ms = rtt(browser),
            sip_sent = sip.packets_sent,
            sip_received = sip.packets_received,
            sip_lost = sip.packets_lost,
            sip_jitter_ms = millis(sip.jitter),
            sip_remote_lost = sip.remote_packets_lost,
            sip_rtt_ms = rtt(sip),
            "call quality"
        );
        Some(protocol::CallQuality {
            codec: quality.codec.map(|codec| codec.name().to_owned()),
            duration,
            browser: leg(browser),
            sip: leg(sip),
        })
    }
}

/// A leg's quality in the protocol's words.
fn leg(leg: &media::LegQuality) -> protocol::LegQuality {
    protocol::LegQuality {
        packets_sent: leg.packets_sent,
        bytes_sent: leg.bytes_sent,
        packets_received: leg.packets_received,
        bytes_received: leg.bytes_received,
        packets_lost: leg.packets_lost,
        jitter: leg.jitter,
        remote_packets_lost: leg.remote_packets_lost,
        remote_jitter: leg.remote_jitter,
        round_trip_time: leg.round_trip_time,
    }
}

impl Drop for Record {
    // A call whose task is dropped (its client went away) ended without a last update.
    fn drop(&mut self) {
        if !self.ended.get() {
            let outcome = if self.answered.get() {
                Outcome::Answered
            } else {
                Outcome::Cancelled
            };
            self.metrics.calls_ended.ended(self.direction, outcome);
        }
    }
}
