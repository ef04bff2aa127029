//! What a front-end and a call say to each other, in no protocol's words: how a call starts,
//! the commands a front-end gives it, and the news it hears back. The front-end (today the
//! sylkRTC connection) translates these from and into its own messages, and keeps what its
//! requests need to know (answered, early media, over) from the news, so that a call's state
//! lives in the call and reaches the front-end once.

use std::collections::BTreeMap;
use std::fmt;

use sip::driver::{Account, CallHandle, IncomingCall};

use crate::cpim::Received;
use crate::leg::Text;
use crate::local::BrowserBinding;

/// What an outgoing call's task starts from.
#[derive(Debug)]
pub(crate) struct StartCall {
    pub(crate) session: String,
    pub(crate) account: Account,
    /// Whom to call, parsed once from the request.
    pub(crate) uri: sip::RequestUri,
    pub(crate) sdp: String,
    pub(crate) headers: Vec<(String, String)>,
}

/// Where an outgoing call goes, as the dial plan (the `routing` module) decided.
#[derive(Debug)]
pub(crate) enum FarEnd {
    /// A user of the local domain, rung in every place they take calls at once (a fork set):
    /// their browsers, each bridged inside the gateway, and their phones, each through the
    /// SIP user agent over that phone's registration (its Contact, on the flow it registered
    /// from). At least one place.
    Local {
        browsers: Vec<BrowserBinding>,
        phones: Vec<sip::Binding>,
    },
    /// Through the SIP user agent: to the outbound proxy or the account's own domain, or to
    /// `server` (an account of the local domain calling elsewhere: there is no registrar above
    /// us to send it to).
    Sip { server: Option<String> },
}

/// What an incoming call's task starts from.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) session: String,
    pub(crate) call: CallHandle,
    pub(crate) invite: IncomingCall,
    /// Which headers go to the client.
    pub(crate) header_prefixes: Vec<String>,
}

/// What the client asks of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Answer {
        sdp: String,
        headers: Vec<(String, String)>,
    },
    /// Hang up (decline, cancel or end, as the call stands).
    Hangup,
    /// Decline an incoming call with this status and why (a `Warning`), when the front-end
    /// cannot take it; a call past ringing is hung up.
    Refuse {
        code: u16,
        reason: String,
        text: String,
    },
    Dtmf {
        digits: String,
        duration: u32,
    },
    /// A message in the call (SIP MESSAGE in the dialog); its outcome comes as
    /// `CallUpdate::MessageAnswered`.
    Message(Box<Text>),
    /// The front-end's SDP mid-call: a new offer (hold, resume), re-offered to the far end, or
    /// the answer to the far end's (`CallUpdate::UpdateReceived`).
    Update {
        sdp: String,
    },
}

/// The far end of an incoming call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// Its address (`user@host`).
    pub(crate) uri: String,
    /// Its display name.
    pub(crate) display_name: Option<String>,
}

/// Why a call ended: the SIP status when there is one, and the words said (which start with
/// the status, as in `486 Busy Here`, or say what happened, as in `local hangup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ending {
    /// The SIP status code, when the words start with one.
    pub(crate) code: Option<u16>,
    /// The words.
    pub(crate) text: String,
}

impl Ending {
    /// An ending told in words; a leading status code is read from them.
    pub(crate) fn new(text: impl Into<String>) -> Ending {
        let text = text.into();
        let code = text
            .get(..3)
            .filter(|_| text.len() == 3 || text.as_bytes()[3] == b' ')
            .and_then(|digits| digits.parse::<u16>().ok())
            .filter(|code| (100..700).contains(code));
        Ending { code, text }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A call's news, in the order it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallUpdate {
    /// An incoming call for the front-end's account: the offer made for it.
    Incoming {
        caller: Caller,
        sdp: String,
        call_id: Option<String>,
        /// The far end's headers the account asked for.
        headers: BTreeMap<String, String>,
    },
    /// The outgoing request is on its way.
    Progress,
    /// The far end rings.
    Ringing,
    /// Another provisional status.
    Proceeding { code: u16 },
    /// The far end's media comes before the answer: the answer for the front-end's offer.
    EarlyMedia {
        sdp: String,
        call_id: Option<String>,
    },
    /// Answered (with the answer, unless early media gave it already).
    Accepted {
        sdp: Option<String>,
        call_id: Option<String>,
    },
    /// Media flows with the front-end.
    Established,
    /// The front-end's new offer was taken by the far end: the answer for it.
    Updated { sdp: String },
    /// The front-end's new offer was not taken; the call goes on as it was.
    UpdateFailed { reason: String },
    /// The far end changed the session (hold, resume): an offer for the front-end, whose
    /// answer comes as `Command::Update`.
    UpdateReceived { sdp: String },
    /// An incoming call was given up before it was answered (the caller cancelled, or no one
    /// answered in time). `Terminated` follows.
    Missed { caller: Caller },
    /// What became of the front-end's message: the far end's status (2xx: taken).
    MessageAnswered {
        message_id: String,
        /// The message's own timestamp.
        timestamp: String,
        code: u16,
        reason: String,
    },
    /// A message from the far end in the call.
    Message(Box<Received>),
    /// The far end's notification (IMDN) about a message of the front-end's.
    Notification {
        message_id: String,
        state: store::State,
    },
    /// How the call's audio fared on each leg, once, just before `Terminated` (calls that
    /// carried media only).
    Quality(Box<protocol::CallQuality>),
    /// Over: nothing more comes.
    Terminated(Ending),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_read_their_status_code() {
        assert_eq!(Ending::new("486 Busy Here").code, Some(486));
        assert_eq!(Ending::new("408").code, Some(408));
        assert_eq!(Ending::new("local hangup").code, None);
        assert_eq!(Ending::new("4860 things").code, None);
        assert_eq!(Ending::new("no RTP from the SIP side for 60 s").code, None);
        assert_eq!(Ending::new("486 Busy Here").to_string(), "486 Busy Here");
    }
}
