//! The local domain: the gateway is the registrar of its users and connects their calls.
//!
//! * Browser accounts of the local domain "register" here: `account-register` checks the HA1
//!   against the configured users (any password with open registration) and records the
//!   connection as a binding; no SIP is involved.
//! * Softphones register to the SIP listener (the `sip` crate's registrar) and call in; the
//!   driver hands those calls to the `inbound` module, which routes them with the dial plan to a
//!   browser binding of the callee, to the echo test, or refuses them.
//! * A browser calling a browser of the local domain is bridged inside the gateway: each side's
//!   call task talks to the other through a [`Bridge`] that turns one side's SIP commands into
//!   the other side's SIP events, and their relays exchange plain RTP over the host's own
//!   address, as they would with a phone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sip::driver::{CallCommand, CallEvents, CallHandle, IncomingCall, SipEvent, SipHandle};
use sip::ha1;
use sip::{CallEvent, Ending};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::LocalConfig;

/// A browser connection where a local user takes calls.
#[derive(Debug, Clone)]
pub(crate) struct BrowserBinding {
    /// The connection's SIP events channel (the driver's own for remote accounts).
    pub(crate) events: mpsc::UnboundedSender<SipEvent>,
    /// The connection's number for this registration.
    pub(crate) handle: u64,
    /// The connection.
    pub(crate) owner: u64,
}

/// The local domain's users and bindings, and the calls bridged between browsers.
#[derive(Debug)]
pub(crate) struct Local {
    domain: String,
    open: bool,
    users: HashMap<String, String>,
    browsers: Mutex<HashMap<String, Vec<BrowserBinding>>>,
    bridges: Mutex<HashMap<CallHandle, Bridge>>,
}

/// Why a local registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

impl Local {
    pub(crate) fn new(config: &LocalConfig) -> Option<Local> {
        if config.domain.is_empty() {
            return None;
        }
        let domain = config.domain.to_ascii_lowercase();
        let users = config
            .users
            .iter()
            .map(|user| {
                let secret = match (&user.ha1, &user.password) {
                    (Some(ha1), _) => ha1.to_ascii_lowercase(),
                    (None, Some(password)) => ha1(&user.user, &domain, password),
                    (None, None) => String::new(),
                };
                (user.user.clone(), secret)
            })
            .collect();
        if config.open_registration {
            warn!(
                domain = %domain,
                "OPEN REGISTRATION: anyone may sign in to the local domain with any user name and \
                 password; local accounts can call only the local domain. Turn it off in [local] \
                 for anything but a demonstration."
            );
        }
        Some(Local {
            domain,
            open: config.open_registration,
            users,
            browsers: Mutex::new(HashMap::new()),
            bridges: Mutex::new(HashMap::new()),
        })
    }

    /// The domain.
    pub(crate) fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether `host` is the local domain.
    pub(crate) fn is_local(&self, host: &str) -> bool {
        host.split(':')
            .next()
            .unwrap_or(host)
            .eq_ignore_ascii_case(&self.domain)
    }

    /// Whether registration is open (local accounts may then call only the local domain).
    pub(crate) fn is_open(&self) -> bool {
        self.open
    }

    /// Registers a browser account of the local domain, checking its HA1.
    pub(crate) fn register(
        &self,
        user: &str,
        secret: &sip::Secret,
        binding: BrowserBinding,
    ) -> Result<(), Refused> {
        if !self.open {
            let Some(expected) = self.users.get(user) else {
                return Err(Refused(format!(
                    "404 Not Found (no user {user} in {})",
                    self.domain
                )));
            };
            let given = match secret {
                sip::Secret::Ha1(ha1) => ha1.to_ascii_lowercase(),
                sip::Secret::Password(password) => ha1(user, &self.domain, password),
            };
            if given != *expected {
                return Err(Refused("403 Forbidden (wrong password)".to_owned()));
            }
        }
        if let Ok(mut browsers) = self.browsers.lock() {
            let bindings = browsers.entry(user.to_owned()).or_default();
            bindings.retain(|b| !(b.owner == binding.owner && b.handle == binding.handle));
            bindings.push(binding);
        }
        info!(%user, domain = %self.domain, "browser registered at the local domain");
        Ok(())
    }

    /// Removes a browser binding.
    pub(crate) fn unregister(&self, owner: u64, handle: u64) {
        if let Ok(mut browsers) = self.browsers.lock() {
            for bindings in browsers.values_mut() {
                bindings.retain(|b| !(b.owner == owner && b.handle == handle));
            }
            browsers.retain(|_, bindings| !bindings.is_empty());
        }
    }

    /// The latest browser binding of `user`.
    pub(crate) fn browser(&self, user: &str) -> Option<BrowserBinding> {
        self.browsers
            .lock()
            .ok()
            .and_then(|browsers| browsers.get(user).and_then(|b| b.last().cloned()))
    }

    /// Sets up a bridge between a calling browser and `callee`'s browser: returns the caller's
    /// handle and events, after handing the callee its incoming call with `invite`.
    pub(crate) fn bridge(
        &self,
        sip: &SipHandle,
        callee: &BrowserBinding,
        invite: IncomingCall,
    ) -> (CallHandle, CallEvents) {
        let (caller, called) = (sip.new_call_handle(), sip.new_call_handle());
        let (caller_events, caller_rx) = mpsc::unbounded_channel();
        let (called_events, called_rx) = mpsc::unbounded_channel();
        let state = Arc::new(BridgeState::default());
        if let Ok(mut bridges) = self.bridges.lock() {
            bridges.insert(
                caller,
                Bridge {
                    peer: called_events,
                    peer_handle: called,
                    caller: true,
                    state: state.clone(),
                },
            );
            bridges.insert(
                called,
                Bridge {
                    peer: caller_events,
                    peer_handle: caller,
                    caller: false,
                    state,
                },
            );
        }
        let _ = callee.events.send(SipEvent::Incoming {
            handle: callee.handle,
            call: called,
            invite: Box::new(invite),
            events: called_rx,
        });
        (caller, caller_rx)
    }

    /// Carries a command of a bridged call to its other side; false when `call` is not bridged
    /// (it goes to SIP).
    pub(crate) fn bridge_command(&self, call: CallHandle, command: CallCommand) -> bool {
        let Ok(mut bridges) = self.bridges.lock() else {
            return false;
        };
        let Some(bridge) = bridges.get(&call) else {
            return false;
        };
        let info = matches!(command, CallCommand::Info { .. });
        let event = bridge.translate(command);
        let ended = matches!(event, Some(CallEvent::Terminated(_)));
        if info && let Some(other) = bridges.get(&bridge.peer_handle) {
            // The other side takes it at once, as a phone's 200 would say.
            let _ = other.peer.send(CallEvent::InfoAnswered { code: 200 });
        }
        if let Some(event) = event {
            let _ = bridge.peer.send(event);
        }
        if ended {
            let peer = bridge.peer_handle;
            bridges.remove(&call);
            bridges.remove(&peer);
        }
        true
    }
}

#[derive(Debug, Default)]
struct BridgeState {
    answered: AtomicBool,
}

/// One side of a call bridged between two browsers.
#[derive(Debug)]
struct Bridge {
    /// The other side's call events.
    peer: mpsc::UnboundedSender<CallEvent>,
    peer_handle: CallHandle,
    caller: bool,
    state: Arc<BridgeState>,
}

impl Bridge {
    /// What one side's command means to the other side, as SIP would have said it.
    fn translate(&self, command: CallCommand) -> Option<CallEvent> {
        let ended = |code: Option<u16>, reason: &str, cancelled: bool| {
            Some(CallEvent::Terminated(Ending {
                code,
                reason: reason.to_owned(),
                cancelled,
            }))
        };
        match command {
            CallCommand::Ring if !self.caller => Some(CallEvent::Provisional {
                code: 180,
                reason: "Ringing".to_owned(),
                sdp: None,
                tag: None,
            }),
            CallCommand::Answer { sdp, .. } if !self.caller => {
                self.state.answered.store(true, Ordering::Relaxed);
                // The callee's side is confirmed at once: there is no ACK to wait for.
                let _ = self.peer.send(CallEvent::Answered { sdp: Some(sdp) });
                None
            }
            CallCommand::Reject { code, reason, .. } if !self.caller => {
                ended(Some(code), &format!("{code} {reason}"), false)
            }
            CallCommand::Hangup => {
                if self.caller && !self.state.answered.load(Ordering::Relaxed) {
                    ended(Some(487), "487 Request Terminated", true)
                } else {
                    ended(None, "remote hangup", false)
                }
            }
            CallCommand::Info { content_type, body } => {
                Some(CallEvent::Info { content_type, body })
            }
            _ => None,
        }
    }
}
