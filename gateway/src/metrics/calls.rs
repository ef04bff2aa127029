//! Calls by direction and outcome, and how long they take to reach the far end.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::family;
use super::histogram::Histogram;

/// Which way a call goes, seen from the gateway's client (browser or Matrix user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The client called.
    Out,
    /// The client was called.
    In,
}

impl Direction {
    const ALL: [Direction; 2] = [Direction::Out, Direction::In];

    fn label(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It was answered (whoever hung up).
    Answered,
    /// The callee was busy or declined (486, 600, 603).
    Declined,
    /// The caller gave up before an answer (487).
    Cancelled,
    /// Nobody answered in time, or nobody could be reached (408, 480).
    Unanswered,
    /// Anything else: no route, no common codec, an error on the way (the other codes).
    Failed,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Answered,
        Outcome::Declined,
        Outcome::Cancelled,
        Outcome::Unanswered,
        Outcome::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Declined => "declined",
            Outcome::Cancelled => "cancelled",
            Outcome::Unanswered => "unanswered",
            Outcome::Failed => "failed",
        }
    }

    /// The outcome of a call that was not answered and ended with `code`.
    pub(crate) fn unanswered(code: Option<u16>) -> Outcome {
        match code {
            Some(486 | 600 | 603) => Outcome::Declined,
            Some(487) => Outcome::Cancelled,
            Some(408 | 480) => Outcome::Unanswered,
            _ => Outcome::Failed,
        }
    }
}

/// The upper bounds of the set-up time histogram's buckets, in seconds.
const BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The counters.
#[derive(Debug)]
pub(crate) struct CallStats {
    ended: [[AtomicU64; Outcome::ALL.len()]; Direction::ALL.len()],
    setup: Histogram,
}

impl Default for CallStats {
    fn default() -> Self {
        CallStats {
            ended: Default::default(),
            setup: Histogram::new(&BUCKETS),
        }
    }
}

impl CallStats {
    pub(crate) fn ended(&self, direction: Direction, outcome: Outcome) {
        self.ended[direction as usize][outcome as usize].fetch_add(1, Relaxed);
    }

    /// A call reached its far end (ringing, early media or an answer) `after` it started.
    pub(crate) fn reached(&self, after: Duration) {
        self.setup.observe(after);
    }

    pub(crate) fn render(&self, out: &mut String) {
        family(
            out,
            "sylkrtc_calls_ended_total",
            "counter",
            "Calls of sylkRTC and Matrix clients that ended, by direction and outcome.",
        );
        for direction in Direction::ALL {
            for outcome in Outcome::ALL {
                let count = self.ended[direction as usize][outcome as usize].load(Relaxed);
                let _ = writeln!(
                    out,
                    "sylkrtc_calls_ended_total{{direction=\"{}\",outcome=\"{}\"}} {count}",
                    direction.label(),
                    outcome.label()
                );
            }
        }
        family(
            out,
            "sylkrtc_call_setup_seconds",
            "histogram",
            "Time from a call's start to its far end's first sign (ringing, early media or \
             an answer).",
        );
        self.setup.render(out, "sylkrtc_call_setup_seconds", "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_the_histogram_render() {
        let stats = CallStats::default();
        stats.ended(Direction::Out, Outcome::Answered);
        stats.ended(Direction::In, Outcome::unanswered(Some(487)));
        stats.reached(Duration::from_millis(30));
        stats.reached(Duration::from_millis(700));
        stats.reached(Duration::from_secs(45));
        let mut text = String::new();
        stats.render(&mut text);
        for line in [
            "sylkrtc_calls_ended_total{direction=\"out\",outcome=\"answered\"} 1",
            "sylkrtc_calls_ended_total{direction=\"in\",outcome=\"cancelled\"} 1",
            "sylkrtc_calls_ended_total{direction=\"in\",outcome=\"failed\"} 0",
            "sylkrtc_call_setup_seconds_bucket{le=\"0.05\"} 1",
            "sylkrtc_call_setup_seconds_bucket{le=\"0.5\"} 1",
            "sylkrtc_call_setup_seconds_bucket{le=\"1\"} 2",
            "sylkrtc_call_setup_seconds_bucket{le=\"30\"} 2",
            "sylkrtc_call_setup_seconds_bucket{le=\"+Inf\"} 3",
            "sylkrtc_call_setup_seconds_sum 45.73",
            "sylkrtc_call_setup_seconds_count 3",
        ] {
            assert!(
                text.lines().any(|got| got == line),
                "no {line:?} in\n{text}"
            );
        }
        assert_eq!(Outcome::unanswered(Some(603)), Outcome::Declined);
        assert_eq!(Outcome::unanswered(Some(480)), Outcome::Unanswered);
        assert_eq!(Outcome::unanswered(None), Outcome::Failed);
        assert_eq!(Outcome::unanswered(Some(488)), Outcome::Failed);
    }
}
