//! Calls from Matrix users to the ghosts' SIP addresses (MSC2746 VoIP, versions 0 and 1), from
//! the local domain: the caller is `ESCAPED-USER-ID@LOCAL-DOMAIN` (the Matrix user id escaped
//! as ghosts' localparts are, `@alice:hs` -> `=40alice=3ahs`), and the call goes where the
//! local domain's dial plan sends it (the echo test, the domain's users, other domains when
//! registration is closed), through the same call task and media relay as a browser's: the
//! invite's offer is the browser leg's, terminated by the relay (ICE-lite, so the Matrix
//! client's trickled candidates are not needed: its checks find the relay's one candidate in
//! the answer).
//!
//! The answer goes back as `m.call.answer`, followed (version 1) by `m.call.candidates` with
//! the end-of-candidates marker; the call's end as `m.call.reject` (version 1, before an
//! answer) or `m.call.hangup` with the reason the SIP status maps to. The Matrix side's
//! `m.call.hangup` or `m.call.reject`, an `m.call.select_answer` that picks another party, or
//! the caller leaving the room, hang up. `m.call.negotiate` carries new offers and their
//! answers both ways, as a browser's `session-update` and `update` events do. Early media (SIP
//! 183) has no Matrix counterpart and is not passed on.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use ruma_events::call::answer::CallAnswerEventContent;
use ruma_events::call::hangup::Reason;
use ruma_events::call::invite::CallInviteEventContent;
use ruma_events::call::negotiate::CallNegotiateEventContent;

use super::events::{CallEvent, Speaker, is_version_0};
use super::to_matrix::SipCall;
use super::{Bridge, ghosts, party_id};
use crate::call::{CallServices, CallTask, CallUpdate, Command, Ending, Incoming, StartCall};
use crate::local::Arriving;
use crate::routing::Route;

/// The most calls one Matrix user has through the bridge at once: each holds relay ports, and
/// a user's invites cost the bridge nothing else to send.
const MAX_CALLS_PER_USER: usize = 4;

/// A Matrix call in progress.
struct MatrixCall {
    room: String,
    call_id: String,
    /// The Matrix user in the call: who called, or whom the SIP caller calls.
    user: String,
    ghost: String,
    /// The bridge called the Matrix user (a call from SIP): it picks the answer.
    to_matrix: bool,
    /// The Matrix party whose answer was taken (a call to Matrix, version 1).
    selected: Option<String>,
    version_0: bool,
    task: CallTask,
    /// The answer SDP of early media, for an answer that brings none.
    early_sdp: Option<String>,
    answered: bool,
    /// The Matrix side ended it: nothing to tell it.
    ended_there: bool,
}

impl MatrixCall {
    /// The ghost's events in this call.
    fn speaker(&self) -> Speaker<'_> {
        Speaker {
            call_id: &self.call_id,
            version_0: self.version_0,
            party_id: party_id(&self.ghost),
        }
    }
}

/// The bridge's calls, by session (room and call id).
pub(super) struct Calls {
    services: Arc<CallServices>,
    calls: HashMap<String, MatrixCall>,
    reports: mpsc::UnboundedSender<(String, CallUpdate)>,
}

/// What the caller of a session learns, and the news channel's other end.
pub(super) type Reports = mpsc::UnboundedReceiver<(String, CallUpdate)>;

fn session_of(room: &str, call_id: &str) -> String {
    format!("{room}|{call_id}")
}

impl Calls {
    pub(super) fn new(services: Arc<CallServices>) -> (Calls, Reports) {
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let calls = Calls {
            services,
            calls: HashMap::new(),
            reports,
        };
        (calls, reports_rx)
    }

    /// An `m.call.invite` for `ghost` from `caller`: the call is placed, or refused saying why.
    pub(super) async fn invite(
        &mut self,
        bridge: &Bridge,
        room: &str,
        ghost: &str,
        caller: &str,
        invite: &CallInviteEventContent,
    ) {
        let call_id = invite.call_id.as_str();
        let version_0 = is_version_0(&invite.version);
        let session = session_of(room, call_id);
        if self.calls.contains_key(&session) {
            debug!(%room, %call_id, "the same call again");
            return;
        }
        let refusal = Refusal {
            room,
            call_id,
            ghost,
            version_0,
            answered: false,
        };
        let Some(address) = bridge.ghost(ghost) else {
            return;
        };
        if let Some(ours) = self.crossing(room, caller) {
            // Glare (MSC2746): the smaller call id goes on.
            if ours.as_str() < call_id {
                debug!(%room, %call_id, "an invite crossed ours: ours goes on");
                return;
            }
            info!(%room, %call_id, "an invite crossed ours: theirs goes on");
            self.withdraw(bridge, &session_of(room, &ours), caller)
                .await;
        }
        let ongoing = self
            .calls
            .values()
            .filter(|call| call.user == caller)
            .count();
        if ongoing >= MAX_CALLS_PER_USER {
            let why = format!("{caller} has {ongoing} calls through this bridge already");
            return refusal.refuse(bridge, Some(486), &why);
        }
        let offer = invite.offer.sdp.as_str();
        let Some(local) = self.services.local.clone() else {
            return refusal.refuse(
                bridge,
                None,
                "this gateway has no local SIP domain for Matrix callers ([local] domain)",
            );
        };
        let Some(uri) = sip::RequestUri::parse(&format!("sip:{address}")) else {
            let why = format!("{address} is not a SIP address");
            return refusal.refuse(bridge, None, &why);
        };
        let account = sip::driver::Account {
            user: ghosts::escape(caller),
            domain: local.domain().to_owned(),
            display_name: Some(caller.to_owned()),
            credentials: sip::Credentials {
                username: ghosts::escape(caller),
                secret: sip::Secret::Password(String::new()),
            },
            user_agent: None,
            contact_params: Vec::new(),
        };
        let start = StartCall {
            session: session.clone(),
            account,
            uri: uri.clone(),
            sdp: offer.to_owned(),
            headers: Vec::new(),
        };
        let route = crate::routing::outgoing(Some(local.as_ref()), u64::MAX, local.domain(), &uri);
        let services = self.services.clone();
        let reports = self.reports.clone();
        let task = match route {
            Route::Echo => crate::echo::browser(services, start, reports),
            Route::Call(far_end) => crate::call::outgoing(services, start, far_end, reports),
            Route::Refuse(ending) => {
                let why = format!("{address}: {}", ending.text);
                return refusal.refuse(bridge, ending.code, &why);
            }
        };
        info!(%room, %call_id, %caller, %address, "a Matrix call placed");
        self.calls.insert(
            session,
            MatrixCall {
                room: room.to_owned(),
                call_id: call_id.to_owned(),
                user: caller.to_owned(),
                ghost: ghost.to_owned(),
                to_matrix: false,
                selected: None,
                version_0,
                task,
                early_sdp: None,
                answered: false,
                ended_there: false,
            },
        );
    }

    /// The Matrix side's `m.call.hangup`, `m.call.reject` or `m.call.select_answer`.
    pub(super) fn ended_there(&mut self, room: &str, event: &CallEvent) {
        let call_id = event.call_id();
        let Some(call) = self.calls.get_mut(&session_of(room, call_id)) else {
            return;
        };
        let select_answer = match event {
            CallEvent::SelectAnswer(select) => Some(select.selected_party_id.as_str()),
            _ => None,
        };
        if call.to_matrix {
            // We called: a select_answer is not theirs to send, and once an answer is taken
            // the other devices' rejections and hang-ups are theirs alone.
            let other_party = call
                .selected
                .as_deref()
                .is_some_and(|selected| event.party_id().is_some_and(|party| party != selected));
            if select_answer.is_some() || other_party {
                return;
            }
        } else if select_answer == Some(party_id(&call.ghost).as_str()) {
            return;
        }
        debug!(%room, %call_id, ?event, "the Matrix side ends the call");
        call.ended_there = true;
        let _ = call.task.commands.send(Command::Hangup);
    }

    /// A SIP call for `callee` goes to them through `room`, the caller's ghost calling: the
    /// call task makes the relay's offer, which becomes the `m.call.invite`.
    pub(super) fn call_matrix_user(&mut self, room: &str, ghost: &str, sip: SipCall) {
        let SipCall {
            call,
            invite,
            events,
            callee,
        } = sip;
        let ongoing = self.calls.values().filter(|c| c.user == callee).count();
        if ongoing >= MAX_CALLS_PER_USER {
            let why = format!("{callee} has {ongoing} calls through the Matrix bridge already");
            return self.services.sip.call(
                call,
                sip::driver::CallCommand::Reject {
                    code: 486,
                    reason: "Busy Here".to_owned(),
                    warning: Some(sip::Warning::new(sip::Warning::MISCELLANEOUS, why)),
                },
            );
        }
        let call_id = uuid::Uuid::new_v4().simple().to_string();
        let session = session_of(room, &call_id);
        info!(%room, %call_id, from = %invite.from_uri, %callee, "a SIP call to a Matrix user");
        let incoming = Incoming {
            session: session.clone(),
            call,
            invite,
            header_prefixes: Vec::new(),
        };
        let task = crate::call::incoming(
            self.services.clone(),
            incoming,
            Arriving::Sip(events),
            self.reports.clone(),
        );
        self.calls.insert(
            session,
            MatrixCall {
                room: room.to_owned(),
                call_id,
                user: callee,
                ghost: ghost.to_owned(),
                to_matrix: true,
                selected: None,
                version_0: false,
                task,
                early_sdp: None,
                answered: false,
                ended_there: false,
            },
        );
    }

    /// An `m.call.answer` from `sender` to a call the bridge placed: the first one is taken
    /// (and selected, MSC2746), later ones are not.
    pub(super) async fn answer(
        &mut self,
        bridge: &Bridge,
        room: &str,
        sender: &str,
        answer: &CallAnswerEventContent,
    ) {
        let call_id = answer.call_id.as_str();
        let Some(call) = self.calls.get_mut(&session_of(room, call_id)) else {
            return;
        };
        if !call.to_matrix || call.user != sender || call.answered {
            debug!(%room, %call_id, %sender, "an answer not taken");
            return;
        }
        call.answered = true;
        call.selected = answer
            .party_id
            .as_ref()
            .map(|party| party.as_str().to_owned());
        let _ = call.task.commands.send(Command::Answer {
            sdp: answer.answer.sdp.clone(),
            headers: Vec::new(),
        });
        if let Some(selected) = &call.selected {
            let select = call.speaker().select_answer(selected);
            if let Err(error) = bridge
                .homeserver
                .send(&call.room, &call.ghost, "m.call.select_answer", &select)
                .await
            {
                warn!(%room, "the ghost cannot select the answer: {error}");
            }
        }
    }

    /// The bridge's unanswered call to `user` in `room`, when there is one (its call id).
    fn crossing(&self, room: &str, user: &str) -> Option<String> {
        self.calls
            .values()
            .find(|call| call.to_matrix && !call.answered && call.room == room && call.user == user)
            .map(|call| call.call_id.clone())
    }

    /// Withdraws the bridge's call `session`, which lost a glare to `user`'s: the SIP caller
    /// is told the two crossed (486, `user`'s call to them goes on), the Matrix side that it
    /// was replaced.
    async fn withdraw(&mut self, bridge: &Bridge, session: &str, user: &str) {
        let Some(call) = self.calls.get_mut(session) else {
            return;
        };
        call.ended_there = true;
        let _ = call.task.commands.send(Command::Refuse {
            code: 486,
            reason: "Busy Here".to_owned(),
            text: format!("the call crossed one from {user}, which rings you now"),
        });
        let hangup = call.speaker().hangup(Reason::UserHangup);
        bridge
            .homeserver
            .send_reliably(&call.room, &call.ghost, "m.call.hangup", hangup);
    }

    /// The Matrix side's `m.call.negotiate`: its new offer (hold, resume, a new codec) goes
    /// to the call as the browser's would, and its answer to ours too.
    pub(super) fn negotiate(&mut self, room: &str, negotiate: &CallNegotiateEventContent) {
        let call_id = negotiate.call_id.as_str();
        let Some(call) = self.calls.get_mut(&session_of(room, call_id)) else {
            return;
        };
        let description = &negotiate.description;
        debug!(%room, %call_id, kind = %description.session_type, "a renegotiation from Matrix");
        let _ = call.task.commands.send(Command::Update {
            sdp: description.sdp.clone(),
        });
    }

    /// `user` left `room`: their calls there end.
    pub(super) fn left(&mut self, room: &str, user: &str) {
        for call in self.calls.values_mut() {
            if call.room == room && call.user == user {
                call.ended_there = true;
                let _ = call.task.commands.send(Command::Hangup);
            }
        }
    }

    /// A call's news: the answer and the end go to the Matrix side.
    pub(super) async fn report(&mut self, bridge: &Bridge, session: &str, update: CallUpdate) {
        let Some(call) = self.calls.get_mut(session) else {
            return;
        };
        match update {
            CallUpdate::Incoming { sdp, .. } => self.invite_matrix(bridge, session, sdp).await,
            // A call to Matrix: its answer came from there.
            CallUpdate::EarlyMedia { .. } | CallUpdate::Accepted { .. } if call.to_matrix => {}
            // Early media (SIP 183) has no Matrix counterpart: with `answer_on_183` the call
            // is answered on Matrix now (announcements and ringing tones are heard), else its
            // description waits for the answer.
            CallUpdate::EarlyMedia { sdp, .. } if bridge.config.answer_on_183 => {
                self.answer_matrix(bridge, session, sdp).await;
            }
            CallUpdate::EarlyMedia { sdp, .. } => call.early_sdp = Some(sdp),
            CallUpdate::Accepted { .. } if call.answered => {}
            CallUpdate::Accepted { sdp, .. } => {
                let Some(sdp) = sdp.or_else(|| call.early_sdp.take()) else {
                    warn!(call_id = %call.call_id, "an answer without a description");
                    let _ = call.task.commands.send(Command::Hangup);
                    return;
                };
                self.answer_matrix(bridge, session, sdp).await;
            }
            // Our answer to the Matrix side's new offer, and the far end's new offer for it.
            CallUpdate::Updated { sdp } => {
                self.renegotiate(bridge, session, "answer", sdp).await;
            }
            CallUpdate::UpdateReceived { sdp } => {
                self.renegotiate(bridge, session, "offer", sdp).await;
            }
            CallUpdate::UpdateFailed { reason } => {
                // MSC2746 has no refusal of a negotiate: the ghost says why, the call goes on
                // as it was.
                let (room, ghost) = (call.room.clone(), call.ghost.clone());
                let notice = json!({"msgtype": "m.notice",
                    "body": format!("The change to the call failed: {reason}")});
                if let Err(error) = bridge
                    .homeserver
                    .send(&room, &ghost, "m.room.message", &notice)
                    .await
                {
                    warn!(%room, "the ghost cannot say why: {error}");
                }
            }
            CallUpdate::Terminated(ending) => {
                let Some(call) = self.calls.remove(session) else {
                    return;
                };
                info!(call_id = %call.call_id, reason = %ending.text, "a Matrix call ended");
                if call.ended_there {
                    return;
                }
                if call.to_matrix {
                    return hang_up_matrix(bridge, &call, &ending);
                }
                let refusal = Refusal {
                    room: &call.room,
                    call_id: &call.call_id,
                    ghost: &call.ghost,
                    version_0: call.version_0,
                    answered: call.answered,
                };
                refusal.ended(bridge, &ending);
            }
            _ => {}
        }
    }
}

impl Calls {
    /// Answers the Matrix caller of `session` with `sdp` (`m.call.answer`, then in version 1
    /// the end of candidates: the relay's one candidate is in the answer).
    async fn answer_matrix(&mut self, bridge: &Bridge, session: &str, sdp: String) {
        let Some(call) = self.calls.get_mut(session) else {
            return;
        };
        call.answered = true;
        let speaker = call.speaker();
        let mut events = vec![("m.call.answer", speaker.answer(&sdp))];
        if !call.version_0 {
            events.push(("m.call.candidates", speaker.end_of_candidates()));
        }
        for (kind, content) in events {
            if let Err(error) = bridge
                .homeserver
                .send(&call.room, &call.ghost, kind, &content)
                .await
            {
                warn!(room = %call.room, %kind, "the ghost cannot answer: {error}");
            }
        }
    }

    /// Sends the Matrix user the `m.call.invite` of the bridge's call `session` with `sdp`,
    /// the relay's offer (its one candidate in it: the end of candidates follows at once).
    async fn invite_matrix(&mut self, bridge: &Bridge, session: &str, sdp: String) {
        let Some(call) = self.calls.get_mut(session) else {
            return;
        };
        let lifetime =
            u32::try_from(self.services.media.ring_timeout.as_millis()).unwrap_or(u32::MAX);
        let speaker = call.speaker();
        let invite = speaker.invite(lifetime, &call.user, &sdp);
        let candidates = speaker.end_of_candidates();
        for (kind, content) in [("m.call.invite", invite), ("m.call.candidates", candidates)] {
            if let Err(error) = bridge
                .homeserver
                .send(&call.room, &call.ghost, kind, &content)
                .await
            {
                warn!(room = %call.room, %kind, "the ghost cannot call: {error}");
                call.ended_there = true;
                let _ = call.task.commands.send(Command::Refuse {
                    code: 480,
                    reason: "Temporarily Unavailable".to_owned(),
                    text: format!("the Matrix homeserver: {error}"),
                });
                return;
            }
        }
    }

    /// Sends `m.call.negotiate` with our description of `kind` (offer or answer).
    async fn renegotiate(&self, bridge: &Bridge, session: &str, kind: &str, sdp: String) {
        let Some(call) = self.calls.get(session) else {
            return;
        };
        let content = call.speaker().negotiate(kind, &sdp, NEGOTIATE_LIFETIME);
        if let Err(error) = bridge
            .homeserver
            .send(&call.room, &call.ghost, "m.call.negotiate", &content)
            .await
        {
            warn!(room = %call.room, "the ghost cannot renegotiate: {error}");
        }
    }
}

/// How long our new offer waits for the Matrix side's answer (ms): the call task answers the
/// far end with the session as it stands after its own update timeout.
const NEGOTIATE_LIFETIME: u32 = 10_000;

/// A call ending on the ghost's side, before or after an answer.
struct Refusal<'a> {
    room: &'a str,
    call_id: &'a str,
    ghost: &'a str,
    version_0: bool,
    answered: bool,
}

impl Refusal<'_> {
    /// Ends the call as the SIP side's `ending` says; one that never connected also gets a
    /// notice saying why.
    fn ended(&self, bridge: &Bridge, ending: &Ending) {
        self.send_event(bridge, ending.code, &ending.text);
        if !self.answered && ending.code.is_some_and(|code| code >= 300) {
            self.notice(bridge, &ending.text);
        }
    }

    /// Refuses the call before it is placed, with a notice saying why.
    fn refuse(&self, bridge: &Bridge, code: Option<u16>, why: &str) {
        self.send_event(bridge, code, why);
        self.notice(bridge, why);
    }

    fn notice(&self, bridge: &Bridge, why: &str) {
        let notice = json!({"msgtype": "m.notice", "body": format!("The call failed: {why}")});
        bridge
            .homeserver
            .send_reliably(self.room, self.ghost, "m.room.message", notice);
    }

    fn send_event(&self, bridge: &Bridge, code: Option<u16>, text: &str) {
        // MSC2746: a version 1 call never answered is rejected; otherwise it is hung up, with
        // the reason its SIP status maps to.
        let speaker = Speaker {
            call_id: self.call_id,
            version_0: self.version_0,
            party_id: party_id(self.ghost),
        };
        let (kind, content) = if !self.version_0 && !self.answered {
            ("m.call.reject", speaker.reject())
        } else {
            ("m.call.hangup", speaker.hangup(hangup_reason(code, text)))
        };
        bridge
            .homeserver
            .send_reliably(self.room, self.ghost, kind, content);
    }
}

/// Ends the bridge's call to a Matrix user as the SIP side's `ending` says: `m.call.hangup`
/// (the caller has no reject), with `invite_timeout` when nobody answered in time.
fn hang_up_matrix(bridge: &Bridge, call: &MatrixCall, ending: &Ending) {
    let reason = if call.answered {
        hangup_reason(ending.code, &ending.text)
    } else if matches!(ending.code, Some(408 | 480)) {
        Reason::InviteTimeout
    } else {
        Reason::UserHangup
    };
    let hangup = call.speaker().hangup(reason);
    bridge
        .homeserver
        .send_reliably(&call.room, &call.ghost, "m.call.hangup", hangup);
}

/// The `m.call.hangup` reason of a SIP ending (MSC2746's list).
pub(super) fn hangup_reason(code: Option<u16>, text: &str) -> Reason {
    match code {
        Some(486 | 600) => Reason::UserBusy,
        Some(408 | 480 | 487) => Reason::InviteTimeout,
        Some(code) if code >= 400 => Reason::UnknownError,
        _ if text.contains("ICE") || text.contains("ice") => Reason::IceFailed,
        _ => Reason::UserHangup,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_endings_become_hangup_reasons() {
        assert_eq!(
            hangup_reason(Some(486), "486 Busy Here").as_str(),
            "user_busy"
        );
        assert_eq!(
            hangup_reason(Some(480), "480 Temporarily Unavailable").as_str(),
            "invite_timeout"
        );
        assert_eq!(
            hangup_reason(Some(408), "408 Request Timeout").as_str(),
            "invite_timeout"
        );
        assert_eq!(
            hangup_reason(Some(503), "503 Service Unavailable").as_str(),
            "unknown_error"
        );
        assert_eq!(
            hangup_reason(Some(404), "404 Not Found").as_str(),
            "unknown_error"
        );
        assert_eq!(hangup_reason(None, "remote hangup").as_str(), "user_hangup");
        assert_eq!(hangup_reason(None, "ICE failed").as_str(), "ice_failed");
    }
}
