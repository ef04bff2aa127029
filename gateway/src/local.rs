//! The local domain: the gateway is the registrar of its users and connects their calls.
//!
//! * Browser accounts of the local domain "register" here: `account-register` checks the HA1
//!   against the configured users (any password with open registration) and records the
//!   connection as a binding; no SIP is involved.
//! * Softphones register to the SIP listener (the `sip` crate's registrar) and call in; the
//!   driver hands those calls to the `inbound` module, which routes them with the dial plan to a
//!   browser binding of the callee, to the echo test, or refuses them.
//! * A browser calling a browser of the local domain is bridged inside the gateway: each side's
//!   call task talks to the other through its [`BridgeEnd`], which turns its SIP commands into
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
    /// The called side's end of each bridge, until the callee's call task takes it.
    unclaimed: Mutex<HashMap<CallHandle, BridgeEnd>>,
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
            unclaimed: Mutex::new(HashMap::new()),
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
    /// end of it and the caller's events, after handing the callee its incoming call with
    /// `invite` (whose task takes the other end with [`Local::take_bridge`]).
    pub(crate) fn bridge(
        &self,
        sip: &SipHandle,
        callee: &BrowserBinding,
        invite: IncomingCall,
    ) -> (BridgeEnd, CallEvents) {
        let called = sip.new_call_handle();
        let (caller_events, caller_rx) = mpsc::unbounded_channel();
        let (called_events, called_rx) = mpsc::unbounded_channel();
        let state = Arc::new(BridgeState::default());
        let caller_end = BridgeEnd {
            own: caller_events.clone(),
            peer: called_events.clone(),
            caller: true,
            state: state.clone(),
        };
        let called_end = BridgeEnd {
            own: called_events,
            peer: caller_events,
            caller: false,
            state,
        };
        if let Ok(mut unclaimed) = self.unclaimed.lock() {
            unclaimed.insert(called, called_end);
        }
        let _ = callee.events.send(SipEvent::Incoming {
            handle: callee.handle,
            call: called,
            invite: Box::new(invite),
            events: called_rx,
        });
        (caller_end, caller_rx)
    }

    /// The called side's end of the bridge of `call`, once, when `call` is bridged.
    pub(crate) fn take_bridge(&self, call: CallHandle) -> Option<BridgeEnd> {
        self.unclaimed.lock().ok()?.remove(&call)
    }
}

#[derive(Debug, Default)]
struct BridgeState {
    answered: AtomicBool,
}

/// One side's end of a call bridged between two browsers: what its call task uses instead of
/// the SIP driver. Each end belongs to its side's task; nothing is shared but the answered flag.
#[derive(Debug)]
pub(crate) struct BridgeEnd {
    /// This side's call events (for what SIP would answer at once).
    own: mpsc::UnboundedSender<CallEvent>,
    /// The other side's call events.
    peer: mpsc::UnboundedSender<CallEvent>,
    caller: bool,
    state: Arc<BridgeState>,
}

impl BridgeEnd {
    /// Carries this side's command to the other side, as SIP would have said it.
    pub(crate) fn command(&self, command: CallCommand) {
        if matches!(command, CallCommand::Info { .. }) {
            // The other side takes it at once, as a phone's 200 would say.
            let _ = self.own.send(CallEvent::InfoAnswered { code: 200 });
        }
        if let Some(event) = self.translate(command) {
            let _ = self.peer.send(event);
        }
    }

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
