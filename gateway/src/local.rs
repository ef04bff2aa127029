//! The local domain: the gateway is the registrar of its users and connects their calls.
//!
//! * The domain's users and where they are live in one location service (the `sip` crate's
//!   [`Location`], in memory here): one table of credentials, which the SIP registrar consults
//!   too, and the bindings of phones and browsers.
//! * Browser accounts of the local domain "register" here: `account-register` checks the HA1
//!   against the location service's users (any password with open registration) and records
//!   the connection as a binding; no SIP is involved. Which connection's channel a binding
//!   reaches is this gateway's own business, kept beside it.
//! * Softphones register to the SIP listener (the `sip` crate's registrar) and call in; the
//!   driver hands those calls to the `inbound` module, which routes them with the dial plan to a
//!   browser binding of the callee, to the echo test, or refuses them.
//! * A browser calling a browser of the local domain is bridged inside the gateway: each side's
//!   call task talks to the other through its [`BridgeEnd`], which turns its commands into the
//!   other side's events (both in the calls' own words, `call::leg`), and their relays exchange
//!   plain RTP over the host's own address, as they would with a phone. A phone's call offered
//!   to several browsers of its callee reaches each through a [`BridgeEnd::Phone`], whose
//!   commands go to the task that holds the phone's call and speaks for the fork.
//! * Calls reach a browser's connection as an [`Arrival`] on the channel its binding names,
//!   with the far end they come from: a SIP call, or a bridge.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sip::driver::{CallEvents, CallHandle, IncomingCall, SipHandle};
use sip::{Credential, Location, MemoryLocation, ha1};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::LocalConfig;
use crate::cpim::{DISPOSITION, Received};
use crate::leg::{LegCommand, LegEnding, LegEvent};

mod shared;

pub(crate) use shared::SharedLocation;

/// An incoming call for a browser connection of the local domain.
#[derive(Debug)]
pub(crate) struct Arrival {
    /// The connection's number for the registration it came to.
    pub(crate) handle: u64,
    /// The call's number (from the SIP user agent's series, whatever its far end).
    pub(crate) call: CallHandle,
    pub(crate) invite: IncomingCall,
    /// Its far end.
    pub(crate) from: Arriving,
}

/// Where an incoming call's far end is.
#[derive(Debug)]
pub(crate) enum Arriving {
    /// A SIP call, through the SIP user agent: its events.
    Sip(CallEvents),
    /// A bridge inside the gateway (another browser, or a phone's call offered to several
    /// browsers): this side's end of it and its events.
    Bridge {
        end: BridgeEnd,
        events: mpsc::UnboundedReceiver<LegEvent>,
    },
}

/// A browser connection where a local user takes calls.
#[derive(Debug, Clone)]
pub(crate) struct BrowserBinding {
    /// Where the connection takes its incoming calls.
    pub(crate) calls: mpsc::UnboundedSender<Arrival>,
    /// The connection's number for this registration.
    pub(crate) handle: u64,
    /// The connection.
    pub(crate) owner: u64,
}

impl BrowserBinding {
    /// Where it is, to the location service.
    fn at(&self) -> sip::BrowserBinding {
        sip::BrowserBinding {
            owner: self.owner,
            handle: self.handle,
        }
    }
}

/// The local domain's users and bindings, and the calls bridged between browsers.
#[derive(Debug)]
pub(crate) struct Local {
    location: Arc<dyn Location>,
    /// Where the browser bindings held by this gateway's connections are reached.
    channels: Mutex<HashMap<sip::BrowserBinding, mpsc::UnboundedSender<Arrival>>>,
    /// What the users' phones published (presence).
    publications: Mutex<crate::publications::Publications>,
    /// Which of the domain's names are Matrix users (the Matrix bridge, when it runs).
    matrix_users: std::sync::OnceLock<Arc<dyn MatrixUsers>>,
    /// The other gateways that serve the domain (`[instance] peers`).
    peers: Vec<std::net::SocketAddr>,
    /// The phone bindings the gateways share through the store (with peers).
    shared: Option<Arc<SharedLocation>>,
}

/// The Request-URI parameter of a branch sent to a peer when the sender rang the UDP phones
/// of the stored location itself: the peer then rings only its browsers and the phones whose
/// connection it holds (without it, as when the store could not be read, all its places).
pub(crate) const STORED_PHONES_RUNG: &str = "stored-phones-rung";

/// How long a call waits for the stored location before it rings without it.
const STORED_LOOKUP: std::time::Duration = std::time::Duration::from_secs(1);

/// Which of the local domain's names are Matrix users, reached through the Matrix bridge.
pub(crate) trait MatrixUsers: Send + Sync + std::fmt::Debug {
    /// The Matrix user `user` is, if it is one.
    fn matrix_user(&self, user: &str) -> Option<String>;
}

/// Why a local registration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(pub(crate) String);

/// The location service of the local domain configured in `config`, if one is.
pub(crate) fn location(config: &LocalConfig) -> Option<Arc<dyn Location>> {
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
    Some(Arc::new(MemoryLocation::new(
        &domain,
        users,
        config.open_registration,
    )))
}

impl Local {
    /// The local domain of `location`.
    pub(crate) fn new(location: Arc<dyn Location>) -> Local {
        if location.open_registration() {
            warn!(
                domain = %location.domain(),
                "OPEN REGISTRATION: anyone may sign in to the local domain with any user name and \
                 password; local accounts can call only the local domain. Turn it off in [local] \
                 for anything but a demonstration."
            );
        }
        Local {
            location,
            channels: Mutex::new(HashMap::new()),
            publications: Mutex::new(crate::publications::Publications::default()),
            matrix_users: std::sync::OnceLock::new(),
            peers: Vec::new(),
            shared: None,
        }
    }

    /// With the phone bindings the gateways share (see [`SharedLocation`]).
    pub(crate) fn with_shared(mut self, shared: Arc<SharedLocation>) -> Local {
        self.shared = Some(shared);
        self
    }

    /// Whether the shared store has this gateway's latest of `user`'s phone at `contact`: a
    /// peer that rang the stored phones rang it (one changed a moment ago, or while the store
    /// was away, it did not).
    pub(crate) fn in_store(&self, user: &str, contact: &str) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|shared| shared.in_store(user, contact))
    }

    /// Adds to the places of a call for `user` the UDP phones other gateways hold, from the
    /// shared store, and tells the peers' branches among `phones` so. A store that does not
    /// answer within [`STORED_LOOKUP`] leaves `phones` as they are: the peers then ring their
    /// phones themselves.
    pub(crate) async fn add_stored_phones(&self, user: &str, phones: &mut Vec<sip::Binding>) {
        let Some(shared) = &self.shared else {
            return;
        };
        // Only the gateway the call entered asks: the one that rings its peers.
        if !phones.iter().any(|phone| self.is_peer(phone.target.addr)) {
            return;
        }
        let stored = match tokio::time::timeout(STORED_LOOKUP, shared.others(user)).await {
            Ok(Ok(stored)) => stored,
            Ok(Err(error)) => {
                warn!(%user, "the stored phone bindings cannot be read ({error}): the peers ring their own");
                return;
            }
            Err(_) => {
                warn!(%user, "the stored phone bindings did not come within {} s: the peers ring their own",
                        STORED_LOOKUP.as_secs());
                return;
            }
        };
        for phone in phones.iter_mut() {
            if self.is_peer(phone.target.addr) {
                phone.contact = format!("{};{STORED_PHONES_RUNG}", phone.contact);
            }
        }
        for binding in stored {
            if phones.iter().all(|known| known.contact != binding.contact) {
                phones.push(binding);
            }
        }
    }

    /// With `peers`: the other gateways that serve the domain, whose places of a user its
    /// calls ring too.
    pub(crate) fn with_peers(mut self, peers: &[std::net::SocketAddr]) -> Local {
        self.peers = peers.to_vec();
        self
    }

    /// The other gateways as branches of a call to `user`: each rings the places it holds of
    /// the user (and answers 480 when it holds none).
    pub(crate) fn peer_branches(&self, user: &str) -> Vec<sip::Binding> {
        // Never expires: the branch lives as long as the call's fork.
        let expires = std::time::Instant::now() + std::time::Duration::from_secs(24 * 3600);
        self.peers
            .iter()
            .map(|peer| sip::Binding {
                contact: format!("sip:{user}@{peer}"),
                target: sip::Target {
                    transport: sip::Transport::Udp,
                    addr: *peer,
                },
                expires,
                outbound: true,
                shared: false,
            })
            .collect()
    }

    /// Whether `source` is another gateway of the domain (its calls ring this one's places
    /// only, so that a call never goes round): its SIP address exactly, since a proxy or phone
    /// may share its host.
    pub(crate) fn is_peer(&self, source: std::net::SocketAddr) -> bool {
        self.peers.contains(&source)
    }

    /// Tells the domain which of its names are Matrix users (once, when the bridge starts).
    pub(crate) fn set_matrix_users(&self, users: Arc<dyn MatrixUsers>) {
        let _ = self.matrix_users.set(users);
    }

    /// The Matrix user the domain's `user` is, if it is one.
    pub(crate) fn matrix_user(&self, user: &str) -> Option<String> {
        self.matrix_users.get()?.matrix_user(user)
    }

    /// The domain.
    pub(crate) fn domain(&self) -> &str {
        self.location.domain()
    }

    /// Whether `host` is the local domain.
    pub(crate) fn is_local(&self, host: &str) -> bool {
        self.location.is_local(host)
    }

    /// Whether registration is open (local accounts may then call only the local domain).
    pub(crate) fn is_open(&self) -> bool {
        self.location.open_registration()
    }

    /// Whether `user` is a user of the domain.
    pub(crate) fn knows(&self, user: &str) -> bool {
        self.location.knows(user)
    }

    /// The phones `user` has registered now.
    pub(crate) fn phone_bindings(&self, user: &str) -> Vec<sip::Binding> {
        let now = std::time::Instant::now();
        let mut phones = self.location.phones(user);
        phones.retain(|phone| phone.expires > now);
        phones
    }

    /// Whether `user` is online: a browser of theirs is connected and registered, or their
    /// phones say so (what they published outranks their registrations).
    pub(crate) fn online(&self, user: &str) -> bool {
        if !self.browsers(user).is_empty() {
            return true;
        }
        let published = self
            .publications
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .state(std::time::Instant::now(), user);
        published.unwrap_or_else(|| !self.phone_bindings(user).is_empty())
    }

    /// A phone of `user` publishes their presence (see
    /// [`crate::publications::Publications::publish`]).
    pub(crate) fn publish(
        &self,
        user: &str,
        if_match: Option<&str>,
        tuples: Option<crate::publications::Tuples>,
        expires: std::time::Duration,
    ) -> Result<Option<String>, crate::publications::Refusal> {
        self.publications
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .publish(std::time::Instant::now(), user, if_match, tuples, expires)
    }

    /// The location service.
    #[cfg(test)]
    pub(crate) fn location(&self) -> &dyn Location {
        &*self.location
    }

    /// Registers a browser account of the local domain, checking its HA1.
    pub(crate) fn register(
        &self,
        user: &str,
        secret: &sip::Secret,
        binding: BrowserBinding,
    ) -> Result<(), Refused> {
        let domain = self.location.domain();
        match self.location.credential(user) {
            None => {
                return Err(Refused(format!(
                    "404 Not Found (no user {user} in {domain})"
                )));
            }
            Some(Credential::Any) => {}
            Some(Credential::Ha1(expected)) => {
                let given = match secret {
                    sip::Secret::Ha1(ha1) => ha1.to_ascii_lowercase(),
                    sip::Secret::Password(password) => ha1(user, domain, password),
                };
                if given != expected {
                    return Err(Refused("403 Forbidden (wrong password)".to_owned()));
                }
            }
        }
        let at = binding.at();
        if let Ok(mut channels) = self.channels.lock() {
            channels.insert(at, binding.calls);
        }
        self.location.add_browser(user, at);
        info!(%user, %domain, "browser registered at the local domain");
        Ok(())
    }

    /// Removes a browser binding.
    pub(crate) fn unregister(&self, owner: u64, handle: u64) {
        let at = sip::BrowserBinding { owner, handle };
        self.location.remove_browser(at);
        if let Ok(mut channels) = self.channels.lock() {
            channels.remove(&at);
        }
    }

    /// The browser bindings of `user` held by this gateway, oldest first.
    pub(crate) fn browsers(&self, user: &str) -> Vec<BrowserBinding> {
        let Ok(channels) = self.channels.lock() else {
            return Vec::new();
        };
        self.location
            .browsers(user)
            .iter()
            .filter_map(|at| {
                channels.get(at).map(|calls| BrowserBinding {
                    calls: calls.clone(),
                    handle: at.handle,
                    owner: at.owner,
                })
            })
            .collect()
    }

    /// Sets up a bridge between a calling browser and `callee`'s browser: returns the caller's
    /// end of it and the caller's events, after handing the callee its incoming call with
    /// `invite` and the other end.
    pub(crate) fn bridge(
        &self,
        sip: &SipHandle,
        callee: &BrowserBinding,
        invite: IncomingCall,
    ) -> (BridgeEnd, mpsc::UnboundedReceiver<LegEvent>) {
        let (caller_events, caller_rx) = mpsc::unbounded_channel();
        let (called_events, called_rx) = mpsc::unbounded_channel();
        let state = Arc::new(BridgeState::default());
        let caller_end = BridgeEnd::Browser(Bridged {
            own: caller_events.clone(),
            peer: called_events.clone(),
            caller: true,
            state: state.clone(),
        });
        let called_end = BridgeEnd::Browser(Bridged {
            own: called_events,
            peer: caller_events.clone(),
            caller: false,
            state,
        });
        let from = Arriving::Bridge {
            end: called_end,
            events: called_rx,
        };
        if !deliver(sip, callee, invite, from) {
            // The callee's connection went away meanwhile.
            let _ = caller_events.send(LegEvent::Terminated(LegEnding::new(
                Some(480),
                "480 Temporarily Unavailable (the callee's browser went away)",
                false,
            )));
        }
        (caller_end, caller_rx)
    }

    /// Offers a phone's call to `callee`'s browser as one branch of a fork: returns the sender
    /// of the branch's call events and the receiver of its commands, which the branch's call
    /// task sends as it would to any far end.
    pub(crate) fn offer(
        &self,
        sip: &SipHandle,
        callee: &BrowserBinding,
        invite: IncomingCall,
    ) -> (
        mpsc::UnboundedSender<LegEvent>,
        mpsc::UnboundedReceiver<LegCommand>,
    ) {
        let (events, events_rx) = mpsc::unbounded_channel();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let from = Arriving::Bridge {
            end: BridgeEnd::Phone(commands),
            events: events_rx,
        };
        // A connection that went away drops the commands' sender: the fork hears it gone.
        deliver(sip, callee, invite, from);
        (events, commands_rx)
    }
}

/// Hands `callee`'s connection an incoming call from `from`, under a new call number; false
/// when the connection is gone.
pub(crate) fn deliver(
    sip: &SipHandle,
    callee: &BrowserBinding,
    invite: IncomingCall,
    from: Arriving,
) -> bool {
    let arrival = Arrival {
        handle: callee.handle,
        call: sip.new_call_handle(),
        invite,
        from,
    };
    callee.calls.send(arrival).is_ok()
}

#[derive(Debug, Default)]
struct BridgeState {
    answered: AtomicBool,
    /// One side has ended the call (its last word went to the other).
    ended: AtomicBool,
}

/// What a call task of the local domain uses instead of the SIP driver for its far end.
#[derive(Debug)]
pub(crate) enum BridgeEnd {
    /// One side of a call bridged between two browsers.
    Browser(Bridged),
    /// One browser of several a phone's call is offered to: its commands go as they are to
    /// the task holding the phone's call (`inbound`), which answers the phone for the fork.
    Phone(mpsc::UnboundedSender<LegCommand>),
}

impl BridgeEnd {
    /// Carries this side's command to the other side.
    pub(crate) fn command(&self, command: LegCommand) {
        match self {
            BridgeEnd::Browser(bridged) => bridged.command(command),
            BridgeEnd::Phone(commands) => {
                let _ = commands.send(command);
            }
        }
    }
}

/// One side's end of a call bridged between two browsers. Each end belongs to its side's
/// task; nothing is shared but the answered flag.
#[derive(Debug)]
pub(crate) struct Bridged {
    /// This side's call events (for what the other side's SIP would answer at once).
    own: mpsc::UnboundedSender<LegEvent>,
    /// The other side's call events.
    peer: mpsc::UnboundedSender<LegEvent>,
    caller: bool,
    state: Arc<BridgeState>,
}

impl Bridged {
    /// Carries this side's command to the other side.
    fn command(&self, command: LegCommand) {
        // The other side takes these at once, as a phone's 200 would say.
        match &command {
            LegCommand::Dtmf { .. } => {
                let _ = self.own.send(LegEvent::DtmfAnswered { code: 200 });
            }
            LegCommand::Message(_) => {
                let _ = self.own.send(LegEvent::MessageAnswered {
                    code: 200,
                    reason: "OK".to_owned(),
                });
            }
            _ => {}
        }
        if let Some(event) = self.translate(command) {
            if matches!(event, LegEvent::Terminated(_)) {
                self.state.ended.store(true, Ordering::Relaxed);
            }
            let _ = self.peer.send(event);
        }
    }

    /// What one side's command means to the other side.
    fn translate(&self, command: LegCommand) -> Option<LegEvent> {
        let ended = |code: Option<u16>, reason: &str, cancelled: bool| {
            Some(LegEvent::Terminated(LegEnding::new(
                code, reason, cancelled,
            )))
        };
        // Every command is named: one a bridge cannot carry must be decided here, not dropped.
        match command {
            LegCommand::Ring if !self.caller => Some(LegEvent::Progress {
                code: 180,
                reason: "Ringing".to_owned(),
                sdp: None,
            }),
            LegCommand::Answer { sdp, .. } if !self.caller => {
                self.state.answered.store(true, Ordering::Relaxed);
                // The callee's side is confirmed at once: there is no ACK to wait for.
                let _ = self.peer.send(LegEvent::Answered { sdp: Some(sdp) });
                None
            }
            LegCommand::Reject(refusal) if !self.caller => ended(
                Some(refusal.code),
                &format!("{} {}", refusal.code, refusal.reason),
                false,
            ),
            // A called browser's side has no early media to give (only a phone's branch has).
            LegCommand::EarlyMedia { .. } if !self.caller => Some(LegEvent::Progress {
                code: 180,
                reason: "Ringing".to_owned(),
                sdp: None,
            }),
            // Only the called side rings, answers or refuses: the caller's machine never asks.
            LegCommand::Ring
            | LegCommand::EarlyMedia { .. }
            | LegCommand::Answer { .. }
            | LegCommand::Reject(_) => None,
            LegCommand::Hangup => {
                if self.caller && !self.state.answered.load(Ordering::Relaxed) {
                    ended(Some(487), "487 Request Terminated", true)
                } else {
                    ended(None, "remote hangup", false)
                }
            }
            // Another branch of the caller's fork answered: no missed call here, in the words
            // of a SIP CANCEL that says so.
            LegCommand::AnsweredElsewhere if !self.state.answered.load(Ordering::Relaxed) => {
                Some(LegEvent::Terminated(LegEnding::answered_elsewhere()))
            }
            LegCommand::AnsweredElsewhere => ended(None, "remote hangup", false),
            LegCommand::Dtmf { digit, duration } => Some(LegEvent::Dtmf { digit, duration }),
            LegCommand::PictureFastUpdate => Some(LegEvent::PictureFastUpdate),
            // As the CPIM a phone would get says it, asking for the same notifications.
            LegCommand::Message(text) => Some(LegEvent::Message(Box::new(Received {
                message_id: text.message_id,
                timestamp: text.timestamp,
                content_type: text.content_type,
                content: text.content,
                disposition: DISPOSITION.iter().map(|&kind| kind.to_owned()).collect(),
                cpim_from: Some(text.from.to_string()),
            }))),
            // What one phone said reaches the other side as it came.
            LegCommand::Relay { content_type, body } => Some(LegEvent::Said { content_type, body }),
            // A browser's new offer (hold, resume) reaches the other side's call as a
            // re-INVITE would, and its answer or refusal comes back the same way.
            LegCommand::Reoffer(sdp) => Some(LegEvent::Offer { sdp: Some(sdp) }),
            LegCommand::AnswerOffer(sdp) => Some(LegEvent::Answer { sdp }),
            LegCommand::RefuseOffer(refusal) => Some(LegEvent::OfferRefused {
                code: refusal.code,
                reason: format!("{} {}", refusal.code, refusal.reason),
            }),
        }
    }
}

impl Drop for Bridged {
    /// A called side that goes away without a last word (its connection closed before the
    /// call was announced, or its task ended) must not leave the caller ringing until the
    /// no-answer timeout: the caller hears it gone.
    fn drop(&mut self) {
        if !self.caller && !self.state.ended.swap(true, Ordering::Relaxed) {
            let reason = if self.state.answered.load(Ordering::Relaxed) {
                "remote hangup"
            } else {
                "480 Temporarily Unavailable (the callee's browser went away)"
            };
            let code = (!self.state.answered.load(Ordering::Relaxed)).then_some(480);
            let _ = self
                .peer
                .send(LegEvent::Terminated(LegEnding::new(code, reason, false)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two ends of a bridge and the events each side hears.
    fn bridge() -> (
        Bridged,
        mpsc::UnboundedReceiver<LegEvent>,
        Bridged,
        mpsc::UnboundedReceiver<LegEvent>,
    ) {
        let (caller_events, caller_rx) = mpsc::unbounded_channel();
        let (called_events, called_rx) = mpsc::unbounded_channel();
        let state = Arc::new(BridgeState::default());
        let caller = Bridged {
            own: caller_events.clone(),
            peer: called_events.clone(),
            caller: true,
            state: state.clone(),
        };
        let called = Bridged {
            own: called_events,
            peer: caller_events,
            caller: false,
            state,
        };
        (caller, caller_rx, called, called_rx)
    }

    #[test]
    fn a_callee_that_vanishes_unannounced_ends_the_callers_call() {
        let (_caller, mut caller_rx, called, _called_rx) = bridge();
        drop(called);
        assert_eq!(
            caller_rx.try_recv().ok(),
            Some(LegEvent::Terminated(LegEnding::new(
                Some(480),
                "480 Temporarily Unavailable (the callee's browser went away)",
                false
            )))
        );
    }

    #[test]
    fn commands_cross_the_bridge_and_the_last_word_is_said_once() {
        let (caller, mut caller_rx, called, mut called_rx) = bridge();
        called.command(LegCommand::Ring);
        called.command(LegCommand::Answer {
            sdp: "v=0".into(),
            headers: Vec::new(),
        });
        caller.command(LegCommand::Dtmf {
            digit: '5',
            duration: 100,
        });
        let heard: Vec<LegEvent> = std::iter::from_fn(|| caller_rx.try_recv().ok()).collect();
        assert!(matches!(heard[0], LegEvent::Progress { code: 180, .. }));
        assert_eq!(
            heard[1],
            LegEvent::Answered {
                sdp: Some("v=0".into())
            }
        );
        assert_eq!(heard[2], LegEvent::DtmfAnswered { code: 200 });
        assert_eq!(
            called_rx.try_recv().ok(),
            Some(LegEvent::Dtmf {
                digit: '5',
                duration: 100
            })
        );
        // A message is taken at once and reaches the other side as a phone's CPIM would.
        caller.command(LegCommand::Message(Box::new(crate::leg::Text {
            from: protocol::Aor::parse("alice@local").unwrap(),
            display_name: None,
            to: protocol::Aor::parse("bob@local").unwrap(),
            message_id: "m1".into(),
            timestamp: "2026-12-04T10:00:00Z".into(),
            content_type: "text/plain".into(),
            content: "hi".into(),
        })));
        assert!(matches!(
            caller_rx.try_recv().ok(),
            Some(LegEvent::MessageAnswered { code: 200, .. })
        ));
        let Some(LegEvent::Message(received)) = called_rx.try_recv().ok() else {
            panic!("the message crosses the bridge");
        };
        assert_eq!(received.message_id, "m1");
        assert_eq!(received.cpim_from.as_deref(), Some("alice@local"));
        assert_eq!(received.disposition, DISPOSITION);
        caller.command(LegCommand::Hangup);
        assert_eq!(
            called_rx.try_recv().ok(),
            Some(LegEvent::Terminated(LegEnding::new(
                None,
                "remote hangup",
                false
            )))
        );
        // The callee's task ends after that: nothing more for the caller.
        drop(called);
        assert!(caller_rx.try_recv().is_err());
    }
}
