//! A call's entry in the metrics: how long it took to reach its far end, and how it ended,
//! read off the updates it gives its front-end.

use std::cell::Cell;
use std::sync::Arc;

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

impl Record {
    /// The call's end: how its SIP leg's audio fared, in the log and the metrics.
    pub(super) fn quality(&self, quality: media::SipQuality, codec: Option<media::Codec>) {
        if quality.sent == 0 && quality.received == 0 {
            return;
        }
        tracing::info!(
            codec = codec.map(|codec| codec.name()),
            duration_s = self.started.elapsed().as_secs(),
            sip_sent = quality.sent,
            sip_received = quality.received,
            sip_lost = quality.lost,
            sip_jitter_ms = format!("{:.1}", quality.jitter_ms),
            "call quality"
        );
        self.metrics.calls_ended.media(quality);
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
