//! The media half of a call, shared by the call's task and the browser port's task.
//!
//! The browser port's task relays each browser datagram as it reads it (decrypt, rewrite, send
//! toward SIP), under the leg's lock, instead of queueing it for the call's task: no task hop,
//! no copy, no wake-up per packet. The call's task does everything else (the SIP side's
//! packets, timers, signalling) under the same lock, and is woken by the port's task only when
//! the relay has an event for it or wants its timer earlier.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use media::driver::{BrowserLeg, PortPair};
use media::{Output, Relay};
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

pub(super) struct Leg {
    state: Mutex<LegState>,
    /// The SIP leg's sockets, once allocated.
    ports: OnceLock<PortPair>,
    /// The shared browser port, to send from.
    browser: Arc<UdpSocket>,
    wake: Notify,
}

#[derive(Default)]
pub(super) struct LegState {
    pub(super) relay: Option<Relay>,
    /// When the relay wants its timer.
    pub(super) deadline: Option<Instant>,
    /// When the call task's timer is set to fire, if it is set.
    pub(super) armed: Option<Instant>,
}

impl Leg {
    pub(super) fn new(browser: Arc<UdpSocket>) -> Leg {
        Leg {
            state: Mutex::new(LegState::default()),
            ports: OnceLock::new(),
            browser,
            wake: Notify::new(),
        }
    }

    /// The relay's state. A panic while it was held leaves the state as it was; the call goes
    /// on with it rather than take the port's task down.
    pub(super) fn lock(&self) -> MutexGuard<'_, LegState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the leg its SIP-side sockets (once; a second pair is dropped).
    pub(super) fn set_ports(&self, ports: PortPair) {
        let _ = self.ports.set(ports);
    }

    pub(super) fn ports(&self) -> Option<&PortPair> {
        self.ports.get()
    }

    /// Completes when the port's task has something for the call's task.
    pub(super) fn notified(&self) -> Notified<'_> {
        self.wake.notified()
    }

    /// Sends what the relay has for the network (sends never wait: a full socket buffer drops
    /// the datagram, as the network would) and notes when it wants its timer.
    pub(super) fn flush(&self, state: &mut LegState) {
        let Some(relay) = &mut state.relay else {
            return;
        };
        let ports = self.ports.get();
        loop {
            match relay.poll_output() {
                Output::Browser { destination, data } => {
                    let _ = self.browser.try_send_to(data, destination);
                }
                Output::SipRtp { destination, data } => {
                    if let Some(ports) = ports {
                        let _ = ports.rtp.try_send_to(data, destination);
                    }
                }
                Output::SipRtcp { destination, data } => {
                    if let Some(ports) = ports {
                        let _ = ports.rtcp.try_send_to(data, destination);
                    }
                }
                Output::Timeout(at) => {
                    state.deadline = Some(at);
                    break;
                }
            }
        }
    }
}

impl BrowserLeg for Leg {
    fn receive(&self, at: Instant, source: SocketAddr, data: &[u8]) -> bool {
        let mut state = self.lock();
        let Some(relay) = &mut state.relay else {
            return false;
        };
        relay.handle_browser(at, source, data);
        self.flush(&mut state);
        let events = state.relay.as_ref().is_some_and(Relay::has_events);
        let earlier = match (state.deadline, state.armed) {
            (Some(deadline), Some(armed)) => deadline < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        drop(state);
        if events || earlier {
            self.wake.notify_one();
        }
        true
    }
}
