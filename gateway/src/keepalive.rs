//! The server side of WebSocket keepalive, sans-IO: when to send a Ping frame, and when a
//! connection that did not answer with a Pong is dead.
//!
//! The reference server pings every `websocket_ping_interval` and drops a connection that sends
//! no Pong within half of it. The clock is passed in, so the tests need no sleeps.

use std::time::{Duration, Instant};

/// Keepalive state of one connection.
#[derive(Debug)]
pub(crate) struct Keepalive {
    /// `None` when pings are off.
    interval: Option<Duration>,
    /// When the next Ping is due.
    next_ping: Option<Instant>,
    /// When the connection is dead unless a Pong arrives first.
    pong_deadline: Option<Instant>,
}

/// What the connection must do when a keepalive timer fires.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send a Ping frame.
    Ping,
    /// No Pong came in time: close the connection.
    Expired,
}

impl Keepalive {
    pub(crate) fn new(interval: Option<Duration>, now: Instant) -> Self {
        Keepalive {
            interval,
            next_ping: interval.map(|interval| now + interval),
            pong_deadline: None,
        }
    }

    /// The next instant at which [`Keepalive::handle_timeout`] has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_ping, self.pong_deadline) {
            (Some(ping), Some(deadline)) => Some(ping.min(deadline)),
            (ping, deadline) => ping.or(deadline),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Option<Action> {
        let interval = self.interval?;
        if self.pong_deadline.is_some_and(|deadline| now >= deadline) {
            self.pong_deadline = None;
            self.next_ping = None;
            return Some(Action::Expired);
        }
        if self.next_ping.is_some_and(|due| now >= due) {
            self.next_ping = Some(now + interval);
            // A Ping sent while an earlier one is unanswered keeps the earlier deadline.
            self.pong_deadline.get_or_insert(now + interval / 2);
            return Some(Action::Ping);
        }
        None
    }

    /// Any Pong proves the peer alive (RFC 6455 allows unsolicited Pongs, and a peer may answer
    /// only the latest Ping).
    pub(crate) fn handle_pong(&mut self) {
        self.pong_deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn pings_every_interval_while_pongs_arrive() {
        let start = Instant::now();
        let mut keepalive = Keepalive::new(Some(120 * SECOND), start);
        assert_eq!(keepalive.poll_timeout(), Some(start + 120 * SECOND));
        assert_eq!(keepalive.handle_timeout(start + 119 * SECOND), None);
        for round in 1..=5 {
            let now = start + round * 120 * SECOND;
            assert_eq!(keepalive.handle_timeout(now), Some(Action::Ping));
            assert_eq!(keepalive.poll_timeout(), Some(now + 60 * SECOND));
            keepalive.handle_pong();
            assert_eq!(keepalive.poll_timeout(), Some(now + 120 * SECOND));
        }
    }

    #[test]
    fn no_pong_within_half_the_interval_expires() {
        let start = Instant::now();
        let mut keepalive = Keepalive::new(Some(120 * SECOND), start);
        assert_eq!(
            keepalive.handle_timeout(start + 120 * SECOND),
            Some(Action::Ping)
        );
        assert_eq!(keepalive.handle_timeout(start + 179 * SECOND), None);
        assert_eq!(
            keepalive.handle_timeout(start + 180 * SECOND),
            Some(Action::Expired)
        );
        assert_eq!(keepalive.poll_timeout(), None);
    }

    #[test]
    fn a_late_timer_still_expires_rather_than_pinging_again() {
        let start = Instant::now();
        let mut keepalive = Keepalive::new(Some(10 * SECOND), start);
        assert_eq!(
            keepalive.handle_timeout(start + 10 * SECOND),
            Some(Action::Ping)
        );
        // The task was not polled for a long time: the deadline passed first.
        assert_eq!(
            keepalive.handle_timeout(start + 30 * SECOND),
            Some(Action::Expired)
        );
    }

    #[test]
    fn off_means_never() {
        let start = Instant::now();
        let mut keepalive = Keepalive::new(None, start);
        assert_eq!(keepalive.poll_timeout(), None);
        assert_eq!(keepalive.handle_timeout(start + 1000 * SECOND), None);
    }
}
