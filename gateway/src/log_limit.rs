//! Rate limiting of a connection's warnings, sans-IO.
//!
//! A client that sends nothing but malformed messages must not flood the log: each connection
//! shows a few warnings per window, and the next line it shows says how many it held back, so
//! the operator still learns the scale of the problem.

use std::time::{Duration, Instant};

/// How many warnings one connection logs per window.
const PER_WINDOW: u32 = 5;
/// The window.
const WINDOW: Duration = Duration::from_secs(10);

/// The warning budget of one connection.
#[derive(Debug)]
pub(crate) struct LogLimit {
    window_start: Option<Instant>,
    shown: u32,
    suppressed: u64,
}

impl LogLimit {
    pub(crate) fn new() -> Self {
        LogLimit {
            window_start: None,
            shown: 0,
            suppressed: 0,
        }
    }

    /// Whether a warning may be logged now. `Some(n)`: log it, and say that `n` were held back
    /// since the last one shown; `None`: hold it back.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= WINDOW);
        if fresh {
            self.window_start = Some(now);
            self.shown = 0;
        }
        if self.shown >= PER_WINDOW {
            self.suppressed += 1;
            return None;
        }
        self.shown += 1;
        Some(std::mem::take(&mut self.suppressed))
    }

    /// Warnings held back and not reported yet (for a last line when the connection ends).
    pub(crate) fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_per_window_then_a_count_of_those_held_back() {
        let start = Instant::now();
        let mut limit = LogLimit::new();
        for _ in 0..PER_WINDOW {
            assert_eq!(limit.allow(start), Some(0));
        }
        for _ in 0..1000 {
            assert_eq!(limit.allow(start + Duration::from_secs(9)), None);
        }
        // The next window shows the next warning with the count held back.
        assert_eq!(limit.allow(start + WINDOW), Some(1000));
        assert_eq!(limit.allow(start + WINDOW), Some(0));
        for _ in 1..PER_WINDOW {
            limit.allow(start + WINDOW);
        }
        assert_eq!(limit.allow(start + WINDOW), None);
        assert_eq!(limit.take_suppressed(), 2);
        assert_eq!(limit.take_suppressed(), 0);
    }
}
