//! The server side of WebSocket keepalive, sans-IO: when to send a Ping frame, and when a
//! connection that did not answer with a Pong is dead. Every WebSocket endpoint of the gateway
//! uses it, in one of two styles:
//!
//! * **periodic** (sylkRTC, as the reference server): a Ping every `websocket_ping_interval`,
//!   and no Pong within half of it drops the connection;
//! * **when idle** (the other signalling protocols): a Ping after an interval without any frame
//!   from the client, and nothing at all for as long again drops it.
//!
//! The clock is passed in, so the tests need no sleeps.

use std::time::{Duration, Instant};

/// Keepalive state of one connection.
#[derive(Debug)]
pub(crate) struct Keepalive {
    /// `None` when pings are off.
    interval: Option<Duration>,
    /// How long a Ping waits for its answer.
    pong_wait: Duration,
    /// Any frame from the client proves it alive and postpones the next Ping.
    when_idle: bool,
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
    /// Periodic: a Ping every `interval`, answered within half of it.
    pub(crate) fn new(interval: Option<Duration>, now: Instant) -> Self {
        Keepalive {
            interval,
            pong_wait: interval.unwrap_or_default() / 2,
            when_idle: false,
            next_ping: interval.map(|interval| now + interval),
            pong_deadline: None,
        }
    }

    /// When idle: a Ping after `interval` without a frame, answered (by any frame) within as
    /// long again.
    pub(crate) fn when_idle(interval: Option<Duration>, now: Instant) -> Self {
        Keepalive {
            pong_wait: interval.unwrap_or_default(),
            when_idle: true,
            ..Keepalive::new(interval, now)
        }
    }

    /// A frame from the client. When idle-driven, it proves the client alive and postpones the
    /// next Ping; periodic keepalive waits for a Pong.
    pub(crate) fn handle_frame(&mut self, now: Instant) {
        if let (true, Some(interval)) = (self.when_idle, self.interval) {
            self.pong_deadline = None;
            self.next_ping = Some(now + interval);
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
            self.pong_deadline.get_or_insert(now + self.pong_wait);
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

    /// When idle: traffic postpones the Ping; after a Ping, any frame within the interval keeps
    /// the connection, and silence for as long again ends it.
    #[test]
    fn when_idle_traffic_postpones_and_silence_expires() {
        let start = Instant::now();
        let mut keepalive = Keepalive::when_idle(Some(30 * SECOND), start);
        keepalive.handle_frame(start + 20 * SECOND);
        assert_eq!(keepalive.handle_timeout(start + 30 * SECOND), None);
        assert_eq!(keepalive.poll_timeout(), Some(start + 50 * SECOND));
        assert_eq!(
            keepalive.handle_timeout(start + 50 * SECOND),
            Some(Action::Ping)
        );
        keepalive.handle_frame(start + 70 * SECOND);
        assert_eq!(keepalive.poll_timeout(), Some(start + 100 * SECOND));
        assert_eq!(
            keepalive.handle_timeout(start + 100 * SECOND),
            Some(Action::Ping)
        );
        assert_eq!(keepalive.handle_timeout(start + 129 * SECOND), None);
        assert_eq!(
            keepalive.handle_timeout(start + 130 * SECOND),
            Some(Action::Expired)
        );
        // Periodic keepalive is not moved by traffic.
        let mut periodic = Keepalive::new(Some(30 * SECOND), start);
        periodic.handle_frame(start + 20 * SECOND);
        assert_eq!(periodic.poll_timeout(), Some(start + 30 * SECOND));
    }

    #[test]
    fn off_means_never() {
        let start = Instant::now();
        let mut keepalive = Keepalive::new(None, start);
        assert_eq!(keepalive.poll_timeout(), None);
        assert_eq!(keepalive.handle_timeout(start + 1000 * SECOND), None);
    }
}
