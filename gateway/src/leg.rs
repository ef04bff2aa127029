//! What a call and its far end say to each other, in no signalling protocol's words: the
//! commands the call machine (and a fork set) gives the far end, and the far end's events. A
//! leg of any kind (a SIP dialog, a browser bridged inside the gateway, later a Matrix user or
//! another gateway) is translated into these at its edge, so that the machine is the same for
//! all of them; SIP's translation is here, since SIP is the leg most calls have.
//!
//! Session descriptions are text: what the relay writes for the far end and reads from it.

use bytes::Bytes;
use protocol::Aor;
use sip::Warning;
use sip::driver::CallCommand;
use tracing::debug;

use crate::cpim::{self, Incoming, Received};

/// What a call asks of its far end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LegCommand {
    /// The call rings here (an incoming call).
    Ring,
    /// The call rings with early media: a 183 with our answer (an incoming call); the answer
    /// that follows carries the same SDP.
    EarlyMedia { sdp: String },
    /// Accept the incoming call with this answer.
    Answer {
        sdp: String,
        /// Extra headers, for a far end that has headers.
        headers: Vec<(String, String)>,
    },
    /// Refuse the incoming call.
    Reject(Refusal),
    /// End it, as it stands: cancel it if it is not answered, else hang up.
    Hangup,
    /// Another branch of the fork answered: end this one, saying so (no missed call there).
    AnsweredElsewhere,
    /// One DTMF tone, out of band.
    Dtmf { digit: char, duration: u32 },
    /// Ask the far end for a video keyframe out of band (SIP INFO `picture_fast_update`, for
    /// phones that take no RTCP keyframe request).
    PictureFastUpdate,
    /// The answer to the far end's new offer (or the offer it asked for).
    AnswerOffer(String),
    /// The far end's new offer cannot be taken; the session stays as it was.
    RefuseOffer(Refusal),
    /// A new offer of ours mid-call (hold, resume).
    Reoffer(String),
    /// A message in the call (a SIP MESSAGE in the dialog, RFC 3428); one at a time, the
    /// next after `MessageAnswered`.
    Message(Box<Text>),
    /// A MESSAGE the other phone of a call between two phones said, passed on as it came.
    Relay { content_type: String, body: Bytes },
}

/// A message said in a call, by the front-end's account to the far end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text {
    /// The sender (the front-end's account) and its display name.
    pub(crate) from: Aor,
    pub(crate) display_name: Option<String>,
    /// The far end.
    pub(crate) to: Aor,
    pub(crate) message_id: String,
    /// RFC 3339.
    pub(crate) timestamp: String,
    pub(crate) content_type: String,
    pub(crate) content: String,
}

/// A refusal: a SIP status, as every far end understands one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: u16,
    pub(crate) reason: String,
    /// Why, for the person at the other end.
    pub(crate) warning: Option<Warning>,
}

impl Refusal {
    pub(crate) fn new(code: u16, reason: &str, warning: Option<Warning>) -> Refusal {
        Refusal {
            code,
            reason: reason.to_owned(),
            warning,
        }
    }
}

/// What a far end tells its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LegEvent {
    /// It is on its way: ringing (180, 181) or another provisional status, with the answer
    /// for early media when there is one.
    Progress {
        code: u16,
        reason: String,
        sdp: Option<String>,
    },
    /// Our call was answered (with the answer, which must be there).
    Answered { sdp: Option<String> },
    /// Our answer to its call was taken: the call is up (with its answer to our offer, when
    /// its call came without one).
    Confirmed { sdp: Option<String> },
    /// A new offer mid-call, or (`None`) a request for ours.
    Offer { sdp: Option<String> },
    /// Its answer to the offer we gave it.
    Answer { sdp: String },
    /// Our offer was refused (or could not be made); the session stays as it was.
    OfferRefused { code: u16, reason: String },
    /// Our DTMF tone (or other INFO) was taken (or refused, 300 and up), so the next may go.
    DtmfAnswered { code: u16 },
    /// A DTMF tone from it.
    Dtmf { digit: char, duration: u32 },
    /// It asks for a video keyframe out of band (SIP INFO `picture_fast_update`).
    PictureFastUpdate,
    /// A MESSAGE from it in the call, as it came: a front-end reads it ([`read_said`]), a
    /// call between two phones passes it on.
    Said { content_type: String, body: Bytes },
    /// A message from it in the call (CPIM unwrapped).
    Message(Box<Received>),
    /// A notification (IMDN) about a message we sent it in the call.
    Notification {
        message_id: String,
        state: store::State,
    },
    /// Our message was taken (2xx) or refused.
    MessageAnswered { code: u16, reason: String },
    /// It is over (reported once).
    Terminated(LegEnding),
}

/// How a far end ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LegEnding {
    /// The status, when there is one.
    pub(crate) code: Option<u16>,
    /// In words (starting with the status when there is one).
    pub(crate) reason: String,
    /// It was the caller who gave up before an answer: a missed call.
    pub(crate) cancelled: bool,
    /// Another branch of the caller's fork took the call: no missed call, and a phone gets a
    /// CANCEL saying so (RFC 3326).
    pub(crate) elsewhere: bool,
}

impl LegEnding {
    pub(crate) fn new(code: Option<u16>, reason: impl Into<String>, cancelled: bool) -> Self {
        LegEnding {
            code,
            reason: reason.into(),
            cancelled,
            elsewhere: false,
        }
    }

    /// The end of a ringing branch whose caller another branch answered.
    pub(crate) fn answered_elsewhere() -> Self {
        LegEnding {
            elsewhere: true,
            ..LegEnding::new(Some(487), "answered elsewhere", false)
        }
    }
}

/// A command for a SIP leg, in SIP's words.
pub(crate) fn to_sip(command: LegCommand) -> CallCommand {
    let refusal = |refusal: Refusal| (refusal.code, refusal.reason, refusal.warning);
    match command {
        LegCommand::Ring => CallCommand::Ring,
        LegCommand::EarlyMedia { sdp } => CallCommand::EarlyMedia(Bytes::from(sdp)),
        LegCommand::Answer { sdp, headers } => CallCommand::Answer {
            sdp: Bytes::from(sdp),
            headers,
        },
        LegCommand::Reject(refused) => {
            let (code, reason, warning) = refusal(refused);
            CallCommand::Reject {
                code,
                reason,
                warning,
            }
        }
        LegCommand::Hangup => CallCommand::Hangup,
        LegCommand::AnsweredElsewhere => CallCommand::AnsweredElsewhere,
        // One INFO per tone (`application/dtmf-relay`), as SIP phones take them.
        LegCommand::Dtmf { digit, duration } => CallCommand::Info {
            content_type: DTMF_RELAY.to_owned(),
            body: Bytes::from(format!("Signal={digit}\r\nDuration={duration}\r\n")),
        },
        LegCommand::PictureFastUpdate => CallCommand::Info {
            content_type: MEDIA_CONTROL.to_owned(),
            body: Bytes::from_static(PICTURE_FAST_UPDATE.as_bytes()),
        },
        LegCommand::AnswerOffer(sdp) => CallCommand::AnswerOffer(Bytes::from(sdp)),
        LegCommand::Reoffer(sdp) => CallCommand::Reoffer(Bytes::from(sdp)),
        LegCommand::RefuseOffer(refused) => {
            let (code, reason, warning) = refusal(refused);
            CallCommand::RefuseOffer {
                code,
                reason,
                warning,
            }
        }
        // In CPIM with the IMDN headers, as an account's messages go.
        LegCommand::Relay { content_type, body } => CallCommand::Message { content_type, body },
        LegCommand::Message(text) => CallCommand::Message {
            content_type: "message/cpim".to_owned(),
            body: Bytes::from(
                cpim::Cpim {
                    from: &text.from,
                    display_name: text.display_name.as_deref(),
                    to: &text.to,
                    message_id: &text.message_id,
                    timestamp: &text.timestamp,
                    content_type: &text.content_type,
                    content: &text.content,
                    notification: false,
                }
                .to_string(),
            ),
        },
    }
}

const DTMF_RELAY: &str = "application/dtmf-relay";
const MEDIA_CONTROL: &str = "application/media_control+xml";
/// The keyframe request of RFC 5168 (XML schema for media control).
const PICTURE_FAST_UPDATE: &str = "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n\
<media_control><vc_primitive><to_encoder><picture_fast_update/></to_encoder></vc_primitive>\
</media_control>\r\n";

/// An event of a SIP leg, in the call's words; `None` for what a call has no use for (a
/// redirection, which the SIP user agent follows itself; an INFO that is not a DTMF tone).
pub(crate) fn from_sip(event: sip::CallEvent) -> Option<LegEvent> {
    let text = |sdp: Bytes| String::from_utf8_lossy(&sdp).into_owned();
    Some(match event {
        sip::CallEvent::Provisional {
            code, reason, sdp, ..
        } => LegEvent::Progress {
            code,
            reason,
            sdp: sdp.map(text),
        },
        sip::CallEvent::Answered { sdp } => LegEvent::Answered { sdp: sdp.map(text) },
        sip::CallEvent::Confirmed { sdp } => LegEvent::Confirmed { sdp: sdp.map(text) },
        sip::CallEvent::Offer { sdp } => LegEvent::Offer { sdp: sdp.map(text) },
        sip::CallEvent::Answer { sdp } => LegEvent::Answer { sdp: text(sdp) },
        sip::CallEvent::InfoAnswered { code } => LegEvent::DtmfAnswered { code },
        sip::CallEvent::OfferRefused { code, reason } => LegEvent::OfferRefused { code, reason },
        sip::CallEvent::Info { content_type, body }
            if content_type.trim().eq_ignore_ascii_case(MEDIA_CONTROL) =>
        {
            if !String::from_utf8_lossy(&body).contains("picture_fast_update") {
                debug!("a media control INFO that asks for no keyframe");
                return None;
            }
            LegEvent::PictureFastUpdate
        }
        sip::CallEvent::Info { content_type, body } => {
            let tone = content_type
                .trim()
                .eq_ignore_ascii_case(DTMF_RELAY)
                .then(|| dtmf_relay(&String::from_utf8_lossy(&body)))
                .flatten();
            if tone.is_none() {
                debug!(%content_type, "an INFO from the SIP side that is no DTMF tone");
            }
            let (digit, duration) = tone?;
            LegEvent::Dtmf { digit, duration }
        }
        sip::CallEvent::MessageAnswered { code, reason } => {
            LegEvent::MessageAnswered { code, reason }
        }
        sip::CallEvent::Message { content_type, body } => LegEvent::Said { content_type, body },
        sip::CallEvent::Redirected { code, contacts, .. } => {
            // The SIP user agent follows it or ends the call, as its policy says.
            debug!(code, ?contacts, "call redirected");
            return None;
        }
        sip::CallEvent::Terminated(ending) => {
            LegEvent::Terminated(LegEnding::new(ending.code, ending.reason, ending.cancelled))
        }
    })
}

/// What a MESSAGE said in a call means to a front-end: a message (CPIM unwrapped) or a
/// notification (IMDN) about one it sent; `None` for what is neither (a composing indication,
/// or what cannot be read: the dialog took it already, 200, so nothing more can be said).
pub(crate) fn read_said(content_type: &str, body: &[u8]) -> Option<LegEvent> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = cpim::format_timestamp(store::now_millis());
    match cpim::read(content_type, body, &id, &now) {
        Ok(Incoming::Message(received)) => Some(LegEvent::Message(Box::new(received))),
        Ok(Incoming::Notification {
            message_id, state, ..
        }) => Some(LegEvent::Notification { message_id, state }),
        Ok(Incoming::Composing) => None,
        Err((code, reason)) => {
            debug!(code, reason, %content_type, "a MESSAGE in the call that cannot be read");
            None
        }
    }
}

/// The tone of an `application/dtmf-relay` body (`Signal=5`, `Duration=160`).
fn dtmf_relay(body: &str) -> Option<(char, u32)> {
    let mut signal = None;
    let mut duration = 100;
    for line in body.lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "signal" => signal = value.trim().chars().next(),
            "duration" => duration = value.trim().parse().unwrap_or(duration),
            _ => {}
        }
    }
    signal
        .filter(|digit| digit.is_ascii_digit() || "*#ABCDabcd".contains(*digit))
        .map(|digit| (digit, duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyframe_request_goes_to_sip_as_picture_fast_update_and_comes_back() {
        let CallCommand::Info { content_type, body } = to_sip(LegCommand::PictureFastUpdate) else {
            panic!("an INFO");
        };
        assert_eq!(content_type, "application/media_control+xml");
        assert!(String::from_utf8_lossy(&body).contains("<picture_fast_update/>"));
        let back = from_sip(sip::CallEvent::Info {
            content_type: "Application/Media_Control+XML".to_owned(),
            body,
        });
        assert_eq!(back, Some(LegEvent::PictureFastUpdate));
        // Media control that asks for something else means nothing to a call.
        let other = from_sip(sip::CallEvent::Info {
            content_type: "application/media_control+xml".to_owned(),
            body: Bytes::from_static(
                b"<media_control><general_error>x</general_error></media_control>",
            ),
        });
        assert_eq!(other, None);
    }

    #[test]
    fn dtmf_goes_to_sip_as_an_info_and_comes_back_as_a_tone() {
        let CallCommand::Info { content_type, body } = to_sip(LegCommand::Dtmf {
            digit: '#',
            duration: 160,
        }) else {
            panic!("an INFO");
        };
        assert_eq!(content_type, "application/dtmf-relay");
        let back = from_sip(sip::CallEvent::Info { content_type, body });
        assert_eq!(
            back,
            Some(LegEvent::Dtmf {
                digit: '#',
                duration: 160
            })
        );
        let other = sip::CallEvent::Info {
            content_type: "application/media_control+xml".to_owned(),
            body: Bytes::from_static(b"<media_control/>"),
        };
        assert_eq!(from_sip(other), None);
        let bad = sip::CallEvent::Info {
            content_type: "application/dtmf-relay".to_owned(),
            body: Bytes::from_static(b"Signal=x\r\n"),
        };
        assert_eq!(from_sip(bad), None);
    }

    #[test]
    fn endings_and_descriptions_carry_across() {
        let ended = from_sip(sip::CallEvent::Terminated(sip::Ending {
            code: Some(487),
            reason: "487 Request Terminated".to_owned(),
            cancelled: true,
        }));
        assert_eq!(
            ended,
            Some(LegEvent::Terminated(LegEnding::new(
                Some(487),
                "487 Request Terminated",
                true
            )))
        );
        let early = from_sip(sip::CallEvent::Provisional {
            code: 183,
            reason: "Session Progress".to_owned(),
            sdp: Some(Bytes::from_static(b"v=0\r\n")),
            tag: Some("a".to_owned()),
        });
        assert_eq!(
            early,
            Some(LegEvent::Progress {
                code: 183,
                reason: "Session Progress".to_owned(),
                sdp: Some("v=0\r\n".to_owned())
            })
        );
        assert!(matches!(
            to_sip(LegCommand::RefuseOffer(Refusal::new(
                488,
                "Not Acceptable Here",
                None
            ))),
            CallCommand::RefuseOffer { code: 488, .. }
        ));
    }
}
