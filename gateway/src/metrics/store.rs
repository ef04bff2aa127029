//! The message store's latency: how long each kind of operation took, and how many failed,
//! as the gateway waited for them (pool wait and network included).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::family;
use super::histogram::Histogram;

/// Store operations, by what they do for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreOp {
    /// A message or journal entry stored.
    AddMessage,
    /// A message's state moved on.
    UpdateState,
    /// Messages read (one, or a history sync).
    ReadMessages,
    /// A conversation marked read, a message or conversation removed.
    Conversation,
    /// Address book read or changed.
    Addressbook,
    /// Public keys, push tokens.
    Keys,
    /// Matrix rooms.
    Matrix,
    /// Retention.
    Prune,
    /// The local domain's shared phone bindings: written, removed, looked up.
    Phones,
}

impl StoreOp {
    const ALL: [StoreOp; 9] = [
        StoreOp::AddMessage,
        StoreOp::UpdateState,
        StoreOp::ReadMessages,
        StoreOp::Conversation,
        StoreOp::Addressbook,
        StoreOp::Keys,
        StoreOp::Matrix,
        StoreOp::Prune,
        StoreOp::Phones,
    ];

    fn label(self) -> &'static str {
        match self {
            StoreOp::AddMessage => "add_message",
            StoreOp::UpdateState => "update_state",
            StoreOp::ReadMessages => "read_messages",
            StoreOp::Conversation => "conversation",
            StoreOp::Addressbook => "addressbook",
            StoreOp::Keys => "keys",
            StoreOp::Matrix => "matrix",
            StoreOp::Prune => "prune",
            StoreOp::Phones => "phones",
        }
    }
}

/// Buckets, seconds: a local SQLite write takes well under a millisecond, a PostgreSQL round
/// trip on a LAN about one; seconds mean trouble.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// The store's counters.
#[derive(Debug)]
pub(crate) struct StoreStats {
    latency: Box<[Histogram]>,
    errors: [AtomicU64; StoreOp::ALL.len()],
}

impl Default for StoreStats {
    fn default() -> Self {
        StoreStats {
            latency: StoreOp::ALL
                .iter()
                .map(|_| Histogram::new(&BUCKETS))
                .collect(),
            errors: Default::default(),
        }
    }
}

impl StoreStats {
    /// An operation took `took`; `failed` when it ended in an error.
    pub(crate) fn observe(&self, op: StoreOp, took: Duration, failed: bool) {
        self.latency[op as usize].observe(took);
        if failed {
            self.errors[op as usize].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn render(&self, out: &mut String) {
        family(
            out,
            "sylkrtc_store_seconds",
            "histogram",
            "How long message store operations took, by operation (failures included).",
        );
        for op in StoreOp::ALL {
            let labels = format!("operation=\"{}\"", op.label());
            self.latency[op as usize].render(out, "sylkrtc_store_seconds", &labels);
        }
        family(
            out,
            "sylkrtc_store_errors_total",
            "counter",
            "Message store operations that failed (database unreachable, refused, ...).",
        );
        for op in StoreOp::ALL {
            let _ = writeln!(
                out,
                "sylkrtc_store_errors_total{{operation=\"{}\"}} {}",
                op.label(),
                self.errors[op as usize].load(Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_timed_and_failures_counted() {
        let stats = StoreStats::default();
        stats.observe(StoreOp::AddMessage, Duration::from_micros(700), false);
        stats.observe(StoreOp::AddMessage, Duration::from_secs(3), true);
        let mut out = String::new();
        stats.render(&mut out);
        for line in [
            "sylkrtc_store_seconds_bucket{operation=\"add_message\",le=\"0.001\"} 1",
            "sylkrtc_store_seconds_count{operation=\"add_message\"} 2",
            "sylkrtc_store_seconds_count{operation=\"prune\"} 0",
            "sylkrtc_store_errors_total{operation=\"add_message\"} 1",
            "sylkrtc_store_errors_total{operation=\"keys\"} 0",
        ] {
            assert!(out.lines().any(|got| got == line), "no {line:?} in\n{out}");
        }
    }
}
