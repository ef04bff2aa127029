//! The MSC2746 call events (`m.call.*`) as the bridge reads and writes them, in ruma's types:
//! an event of the Matrix side that does not read as its type (a field missing or of the
//! wrong type) is left alone, and every event the bridge sends is built for the call's version
//! (0, or 1 with the ghost's `party_id`).

use ruma_common::{OwnedUserId, VoipVersionId};
use ruma_events::call::SessionDescription;
use ruma_events::call::answer::CallAnswerEventContent;
use ruma_events::call::candidates::{CallCandidatesEventContent, Candidate};
use ruma_events::call::hangup::{CallHangupEventContent, Reason};
use ruma_events::call::invite::CallInviteEventContent;
use ruma_events::call::negotiate::CallNegotiateEventContent;
use ruma_events::call::reject::CallRejectEventContent;
use ruma_events::call::select_answer::CallSelectAnswerEventContent;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A call event of the Matrix side.
#[derive(Debug)]
pub(super) enum CallEvent {
    Invite(CallInviteEventContent),
    Answer(CallAnswerEventContent),
    Candidates(CallCandidatesEventContent),
    Hangup(CallHangupEventContent),
    Reject(CallRejectEventContent),
    SelectAnswer(CallSelectAnswerEventContent),
    Negotiate(CallNegotiateEventContent),
}

impl CallEvent {
    /// The call event of type `kind` in `content`: `None` when `kind` is no call event, an
    /// error when the content does not read as one.
    pub(super) fn read(kind: &str, content: &Value) -> Option<Result<CallEvent, String>> {
        fn parse<T: DeserializeOwned>(content: &Value) -> Result<T, String> {
            T::deserialize(content).map_err(|error| error.to_string())
        }
        Some(match kind {
            "m.call.invite" => parse(content).map(CallEvent::Invite),
            "m.call.answer" => parse(content).map(CallEvent::Answer),
            "m.call.candidates" => parse(content).map(CallEvent::Candidates),
            "m.call.hangup" => parse(content).map(CallEvent::Hangup),
            "m.call.reject" => parse(content).map(CallEvent::Reject),
            "m.call.select_answer" => parse(content).map(CallEvent::SelectAnswer),
            "m.call.negotiate" => parse(content).map(CallEvent::Negotiate),
            _ => return None,
        })
    }

    /// The call it is about.
    pub(super) fn call_id(&self) -> &str {
        match self {
            CallEvent::Invite(event) => event.call_id.as_str(),
            CallEvent::Answer(event) => event.call_id.as_str(),
            CallEvent::Candidates(event) => event.call_id.as_str(),
            CallEvent::Hangup(event) => event.call_id.as_str(),
            CallEvent::Reject(event) => event.call_id.as_str(),
            CallEvent::SelectAnswer(event) => event.call_id.as_str(),
            CallEvent::Negotiate(event) => event.call_id.as_str(),
        }
    }

    /// The sender's party (version 1).
    pub(super) fn party_id(&self) -> Option<&str> {
        match self {
            CallEvent::Invite(event) => event.party_id.as_deref().map(|id| id.as_str()),
            CallEvent::Answer(event) => event.party_id.as_deref().map(|id| id.as_str()),
            CallEvent::Candidates(event) => event.party_id.as_deref().map(|id| id.as_str()),
            CallEvent::Hangup(event) => event.party_id.as_deref().map(|id| id.as_str()),
            CallEvent::Reject(event) => Some(event.party_id.as_str()),
            CallEvent::SelectAnswer(event) => Some(event.party_id.as_str()),
            CallEvent::Negotiate(event) => Some(event.party_id.as_str()),
        }
    }
}

/// Whether a call's first event is version 0 (any other version is 1, as MSC2746 says).
pub(super) fn is_version_0(version: &VoipVersionId) -> bool {
    *version == VoipVersionId::V0
}

/// The ghost's events in one call: its version and, in version 1, the ghost's party.
pub(super) struct Speaker<'a> {
    pub(super) call_id: &'a str,
    pub(super) version_0: bool,
    pub(super) party_id: String,
}

impl Speaker<'_> {
    fn version(&self) -> VoipVersionId {
        if self.version_0 {
            VoipVersionId::V0
        } else {
            VoipVersionId::V1
        }
    }

    fn party(&self) -> Option<ruma_common::OwnedVoipId> {
        (!self.version_0).then(|| self.party_id.as_str().into())
    }

    /// An `m.call.invite` of the relay's offer for `invitee`, ringing for `lifetime` ms.
    pub(super) fn invite(&self, lifetime: u32, invitee: &str, sdp: &str) -> Value {
        let offer = SessionDescription::new("offer".to_owned(), sdp.to_owned());
        let mut invite = CallInviteEventContent::new(
            self.call_id.into(),
            lifetime.into(),
            offer,
            self.version(),
        );
        invite.party_id = self.party();
        invite.invitee = OwnedUserId::try_from(invitee).ok();
        json(&invite)
    }

    /// An `m.call.answer` with `sdp`.
    pub(super) fn answer(&self, sdp: &str) -> Value {
        let answer = SessionDescription::new("answer".to_owned(), sdp.to_owned());
        let mut content = CallAnswerEventContent::new(answer, self.call_id.into(), self.version());
        content.party_id = self.party();
        json(&content)
    }

    /// `m.call.candidates` with the end-of-candidates marker alone: the relay's one candidate
    /// is in its description.
    pub(super) fn end_of_candidates(&self) -> Value {
        let mut end = Candidate::new(String::new());
        end.sdp_mid = Some("0".to_owned());
        end.sdp_m_line_index = Some(0_u32.into());
        let mut content =
            CallCandidatesEventContent::new(self.call_id.into(), vec![end], self.version());
        content.party_id = self.party();
        json(&content)
    }

    /// `m.call.select_answer` for `selected`'s answer.
    pub(super) fn select_answer(&self, selected: &str) -> Value {
        json(&CallSelectAnswerEventContent::version_1(
            self.call_id.into(),
            self.party_id.as_str().into(),
            selected.into(),
        ))
    }

    /// `m.call.hangup` with `reason`.
    pub(super) fn hangup(&self, reason: Reason) -> Value {
        let mut content = CallHangupEventContent::new(self.call_id.into(), self.version());
        content.party_id = self.party();
        content.reason = reason;
        json(&content)
    }

    /// `m.call.reject` (version 1 only: a version 0 call is hung up).
    pub(super) fn reject(&self) -> Value {
        json(&CallRejectEventContent::version_1(
            self.call_id.into(),
            self.party_id.as_str().into(),
        ))
    }

    /// `m.call.negotiate` with our description of `kind` (offer or answer).
    pub(super) fn negotiate(&self, kind: &str, sdp: &str, lifetime: u32) -> Value {
        let description = SessionDescription::new(kind.to_owned(), sdp.to_owned());
        json(&CallNegotiateEventContent::new(
            self.call_id.into(),
            self.party_id.as_str().into(),
            self.version(),
            lifetime.into(),
            description,
        ))
    }
}

fn json(content: &impl Serialize) -> Value {
    serde_json::to_value(content).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn call_events_are_read_in_both_versions_or_not_at_all() {
        let v0 = json!({"call_id": "c0", "version": 0, "lifetime": 60000,
            "offer": {"type": "offer", "sdp": "v=0"}});
        let Some(Ok(CallEvent::Invite(invite))) = CallEvent::read("m.call.invite", &v0) else {
            panic!("a version 0 invite");
        };
        assert!(is_version_0(&invite.version));
        let v1 = json!({"call_id": "c1", "version": "1", "party_id": "p1",
            "reason": "user_busy"});
        let Some(Ok(hangup)) = CallEvent::read("m.call.hangup", &v1) else {
            panic!("a version 1 hang-up");
        };
        assert_eq!((hangup.call_id(), hangup.party_id()), ("c1", Some("p1")));
        // A field of the wrong type, or one missing, is an error; other kinds are not calls.
        assert!(matches!(
            CallEvent::read("m.call.invite", &json!({"call_id": 7})),
            Some(Err(_))
        ));
        assert!(matches!(
            CallEvent::read("m.call.reject", &json!({"call_id": "c", "version": "1"})),
            Some(Err(_))
        ));
        assert!(CallEvent::read("m.room.message", &json!({})).is_none());
    }

    #[test]
    fn the_ghost_speaks_the_calls_version() {
        let v1 = Speaker {
            call_id: "c1",
            version_0: false,
            party_id: "ghost123".to_owned(),
        };
        assert_eq!(
            v1.answer("v=0"),
            json!({"call_id": "c1", "party_id": "ghost123", "version": "1",
                "answer": {"type": "answer", "sdp": "v=0"}})
        );
        assert_eq!(
            v1.end_of_candidates()["candidates"],
            json!([{"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}])
        );
        let invite = v1.invite(60000, "@alice:hs.test", "v=0");
        assert_eq!(invite["invitee"], "@alice:hs.test");
        assert_eq!(invite["lifetime"], 60000);
        assert_eq!(invite["party_id"], "ghost123");
        assert_eq!(
            v1.select_answer("alicedev")["selected_party_id"],
            "alicedev"
        );
        let v0 = Speaker {
            call_id: "c0",
            version_0: true,
            party_id: "ghost123".to_owned(),
        };
        let hangup = v0.hangup(Reason::InviteTimeout);
        assert_eq!(
            (
                &hangup["version"],
                &hangup["reason"],
                hangup.get("party_id")
            ),
            (&json!(0), &json!("invite_timeout"), None)
        );
    }
}
