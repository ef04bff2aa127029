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

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Bridge, ghosts, party_id};
use crate::call::{CallServices, CallTask, CallUpdate, Command, Ending, StartCall};
use crate::routing::Route;

/// The most calls one Matrix user has through the bridge at once: each holds relay ports, and
/// a user's invites cost the bridge nothing else to send.
const MAX_CALLS_PER_USER: usize = 4;

/// A Matrix call in progress.
struct MatrixCall {
    room: String,
    call_id: String,
    /// The Matrix user who called.
    caller: String,
    ghost: String,
    version_0: bool,
    task: CallTask,
    /// The answer SDP of early media, for an answer that brings none.
    early_sdp: Option<String>,
    answered: bool,
    /// The Matrix side ended it: nothing to tell it.
    ended_there: bool,
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
        invite: &Value,
    ) {
        let Some(call_id) = invite["call_id"].as_str() else {
            return;
        };
        let version_0 = invite["version"].as_u64() == Some(0);
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
        let ongoing = self
            .calls
            .values()
            .filter(|call| call.caller == caller)
            .count();
        if ongoing >= MAX_CALLS_PER_USER {
            let why = format!("{caller} has {ongoing} calls through this bridge already");
            return refusal.refuse(bridge, Some(486), &why).await;
        }
        let Some(offer) = invite["offer"]["sdp"].as_str() else {
            return refusal
                .refuse(bridge, None, "the call came without an offer")
                .await;
        };
        let Some(local) = self.services.local.clone() else {
            return refusal
                .refuse(
                    bridge,
                    None,
                    "this gateway has no local SIP domain for Matrix callers ([local] domain)",
                )
                .await;
        };
        let Some(uri) = sip::RequestUri::parse(&format!("sip:{address}")) else {
            let why = format!("{address} is not a SIP address");
            return refusal.refuse(bridge, None, &why).await;
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
                return refusal.refuse(bridge, ending.code, &why).await;
            }
        };
        info!(%room, %call_id, %caller, %address, "a Matrix call placed");
        self.calls.insert(
            session,
            MatrixCall {
                room: room.to_owned(),
                call_id: call_id.to_owned(),
                caller: caller.to_owned(),
                ghost: ghost.to_owned(),
                version_0,
                task,
                early_sdp: None,
                answered: false,
                ended_there: false,
            },
        );
    }

    /// The Matrix side's `m.call.hangup`, `m.call.reject` or `m.call.select_answer`.
    pub(super) fn ended_there(&mut self, room: &str, kind: &str, content: &Value) {
        let Some(call_id) = content["call_id"].as_str() else {
            return;
        };
        let Some(call) = self.calls.get_mut(&session_of(room, call_id)) else {
            return;
        };
        if kind == "m.call.select_answer"
            && content["selected_party_id"].as_str() == Some(party_id(&call.ghost).as_str())
        {
            return;
        }
        debug!(%room, %call_id, %kind, "the Matrix side ends the call");
        call.ended_there = true;
        let _ = call.task.commands.send(Command::Hangup);
    }

    /// The Matrix side's `m.call.negotiate`: its new offer (hold, resume, a new codec) goes
    /// to the call as the browser's would, and its answer to ours too.
    pub(super) fn negotiate(&mut self, room: &str, content: &Value) {
        let Some(call_id) = content["call_id"].as_str() else {
            return;
        };
        let Some(call) = self.calls.get_mut(&session_of(room, call_id)) else {
            return;
        };
        let Some(sdp) = content["description"]["sdp"].as_str() else {
            return;
        };
        debug!(%room, %call_id, kind = ?content["description"]["type"], "a renegotiation from Matrix");
        let _ = call.task.commands.send(Command::Update {
            sdp: sdp.to_owned(),
        });
    }

    /// `user` left `room`: their calls there end.
    pub(super) fn left(&mut self, room: &str, user: &str) {
        for call in self.calls.values_mut() {
            if call.room == room && call.caller == user {
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
            CallUpdate::EarlyMedia { sdp, .. } => call.early_sdp = Some(sdp),
            CallUpdate::Accepted { sdp, .. } => {
                let Some(sdp) = sdp.or_else(|| call.early_sdp.take()) else {
                    warn!(call_id = %call.call_id, "an answer without a description");
                    let _ = call.task.commands.send(Command::Hangup);
                    return;
                };
                call.answered = true;
                let (room, ghost) = (call.room.clone(), call.ghost.clone());
                let mut answer = json!({"call_id": call.call_id,
                    "answer": {"type": "answer", "sdp": sdp}});
                stamp(&mut answer, call.version_0, &ghost);
                let mut events = vec![("m.call.answer", answer)];
                if !call.version_0 {
                    // The relay's one candidate is in the answer: the end of candidates now.
                    let mut candidates = json!({"call_id": call.call_id,
                        "candidates": [{"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}]});
                    stamp(&mut candidates, false, &ghost);
                    events.push(("m.call.candidates", candidates));
                }
                for (kind, content) in events {
                    if let Err(error) = bridge.homeserver.send(&room, &ghost, kind, &content).await
                    {
                        warn!(%room, %kind, "the ghost cannot answer: {error}");
                    }
                }
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
                let refusal = Refusal {
                    room: &call.room,
                    call_id: &call.call_id,
                    ghost: &call.ghost,
                    version_0: call.version_0,
                    answered: call.answered,
                };
                refusal.ended(bridge, &ending).await;
            }
            _ => {}
        }
    }
}

impl Calls {
    /// Sends `m.call.negotiate` with our description of `kind` (offer or answer).
    async fn renegotiate(&self, bridge: &Bridge, session: &str, kind: &str, sdp: String) {
        let Some(call) = self.calls.get(session) else {
            return;
        };
        let mut content = json!({"call_id": call.call_id, "lifetime": NEGOTIATE_LIFETIME,
            "description": {"type": kind, "sdp": sdp}});
        stamp(&mut content, call.version_0, &call.ghost);
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
const NEGOTIATE_LIFETIME: u64 = 10_000;

/// Adds the version fields: `version` 0, or `version` "1" and the ghost's `party_id`.
fn stamp(content: &mut Value, version_0: bool, ghost: &str) {
    if version_0 {
        content["version"] = json!(0);
    } else {
        content["version"] = json!("1");
        content["party_id"] = json!(party_id(ghost));
    }
}

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
    async fn ended(&self, bridge: &Bridge, ending: &Ending) {
        self.send_event(bridge, ending.code, &ending.text).await;
        if !self.answered && ending.code.is_some_and(|code| code >= 300) {
            self.notice(bridge, &ending.text).await;
        }
    }

    /// Refuses the call before it is placed, with a notice saying why.
    async fn refuse(&self, bridge: &Bridge, code: Option<u16>, why: &str) {
        self.send_event(bridge, code, why).await;
        self.notice(bridge, why).await;
    }

    async fn notice(&self, bridge: &Bridge, why: &str) {
        let notice = json!({"msgtype": "m.notice", "body": format!("The call failed: {why}")});
        if let Err(error) = bridge
            .homeserver
            .send(self.room, self.ghost, "m.room.message", &notice)
            .await
        {
            warn!(room = %self.room, "the ghost cannot say why: {error}");
        }
    }

    async fn send_event(&self, bridge: &Bridge, code: Option<u16>, text: &str) {
        // MSC2746: a version 1 call never answered is rejected; otherwise it is hung up, with
        // the reason its SIP status maps to.
        let (kind, mut content) = if !self.version_0 && !self.answered {
            ("m.call.reject", json!({"call_id": self.call_id}))
        } else {
            (
                "m.call.hangup",
                json!({"call_id": self.call_id, "reason": hangup_reason(code, text)}),
            )
        };
        stamp(&mut content, self.version_0, self.ghost);
        if let Err(error) = bridge
            .homeserver
            .send(self.room, self.ghost, kind, &content)
            .await
        {
            warn!(room = %self.room, %kind, "the ghost cannot end the call: {error}");
        }
    }
}

/// The `m.call.hangup` reason of a SIP ending (MSC2746's list).
pub(super) fn hangup_reason(code: Option<u16>, text: &str) -> &'static str {
    match code {
        Some(486 | 600) => "user_busy",
        Some(408 | 480 | 487) => "invite_timeout",
        Some(code) if code >= 400 => "unknown_error",
        _ if text.contains("ICE") || text.contains("ice") => "ice_failed",
        _ => "user_hangup",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_endings_become_hangup_reasons() {
        assert_eq!(hangup_reason(Some(486), "486 Busy Here"), "user_busy");
        assert_eq!(
            hangup_reason(Some(480), "480 Temporarily Unavailable"),
            "invite_timeout"
        );
        assert_eq!(
            hangup_reason(Some(408), "408 Request Timeout"),
            "invite_timeout"
        );
        assert_eq!(
            hangup_reason(Some(503), "503 Service Unavailable"),
            "unknown_error"
        );
        assert_eq!(hangup_reason(Some(404), "404 Not Found"), "unknown_error");
        assert_eq!(hangup_reason(None, "remote hangup"), "user_hangup");
        assert_eq!(hangup_reason(None, "ICE failed"), "ice_failed");
    }
}
