//! The session requests of a connection (calls): checked here, carried out by each call's task.

use std::collections::BTreeMap;

use protocol::{
    AccountEvent, DispositionNotification, Event, IncomingMessage, Party, SessionAnswer,
    SessionCreate, SessionDtmfInfo, SessionEvent, SessionMessage, SessionState, SessionUpdate,
    UpdateState,
};
use sip::driver::{CallHandle, IncomingCall};
use tracing::warn;

use super::messages::checked_timestamp;
use super::{Connection, Output, Session};
use crate::call::{CallUpdate, Caller, Command, Incoming, StartCall};
use crate::leg::Text;
use crate::messaging;
use crate::metrics::ErrorKind;

type Refusal = (ErrorKind, String);

/// The DTMF tones `session-dtmf-info` can carry (RFC 4733 events 0 to 15).
const DTMF_TONES: &str = "0123456789*#ABCDabcd";
/// A tone's duration when the client names none, in milliseconds.
const DTMF_DURATION: u32 = 100;

impl Connection {
    /// `session-create`: the call starts after the ack; its states arrive as events.
    pub(super) fn session_create(&mut self, create: SessionCreate) -> Result<(), Refusal> {
        let index = self.account_index(&create.account)?;
        if self.sessions.contains_key(&create.session) {
            return Err((
                ErrorKind::Refused,
                format!("Session ID {} already in use", create.session),
            ));
        }
        if create.session.is_empty() {
            return Err((ErrorKind::Invalid, "session must not be empty".to_owned()));
        }
        if create.sdp.trim().is_empty() {
            return Err((ErrorKind::Invalid, "sdp must hold an SDP offer".to_owned()));
        }
        let text = match create.uri.port() {
            Some(port) => format!("sip:{}@{}:{port}", create.uri.user(), create.uri.host()),
            None => format!("sip:{}@{}", create.uri.user(), create.uri.host()),
        };
        // Made once here, and kept typed down to the INVITE's Request-URI.
        let Some(uri) = sip::RequestUri::parse(&text) else {
            return Err((ErrorKind::Invalid, format!("uri {text} is not a SIP URI")));
        };
        self.sessions.insert(
            create.session.clone(),
            Session {
                account: create.account.clone(),
                incoming: false,
                announced: true,
                answered: true,
                accepted: false,
                early_media: false,
                early_sdp: None,
                peer: Some(Party {
                    uri: create.uri.to_string(),
                    display_name: None,
                }),
                progressed: false,
                rung: false,
            },
        );
        let account = self.accounts[index].sip();
        self.deferred.push(Output::StartCall(Box::new(StartCall {
            session: create.session,
            account,
            uri,
            sdp: create.sdp,
            headers: create
                .headers
                .into_iter()
                .map(|header| (header.name, header.value))
                .collect(),
        })));
        Ok(())
    }

    /// The session, if it is one of ours and not over.
    pub(super) fn session_live(&mut self, session: &str) -> Result<&mut Session, Refusal> {
        self.sessions
            .get_mut(session)
            .ok_or_else(|| (ErrorKind::Refused, format!("Unknown session: {session}")))
    }

    /// `session-answer`: only for an incoming call not answered yet.
    pub(super) fn session_answer(&mut self, answer: SessionAnswer) -> Result<(), Refusal> {
        let session = self.session_live(&answer.session)?;
        if !session.incoming || session.answered {
            return Err((
                ErrorKind::Refused,
                format!(
                    "Session {} is not an incoming call waiting for an answer",
                    answer.session
                ),
            ));
        }
        if answer.sdp.trim().is_empty() {
            return Err((ErrorKind::Invalid, "sdp must hold an SDP answer".to_owned()));
        }
        session.answered = true;
        self.deferred.push(Output::Call {
            session: answer.session,
            command: Command::Answer {
                sdp: answer.sdp,
                headers: answer
                    .headers
                    .into_iter()
                    .map(|header| (header.name, header.value))
                    .collect(),
            },
        });
        Ok(())
    }

    /// `session-terminate`: declines, cancels or hangs up, in the call's task.
    pub(super) fn session_terminate(&mut self, session: String) -> Result<(), Refusal> {
        self.session_live(&session)?;
        self.deferred.push(Output::Call {
            session,
            command: Command::Hangup,
        });
        Ok(())
    }

    /// `session-update`, once the call is answered: the client's new offer (hold, resume) for
    /// a re-INVITE, whose answer comes back as the session's `update` `accepted` and a refusal
    /// as `update` `failed` (the call goes on); or, after an `update` `received`, the client's
    /// answer to the far end's offer. Which of the two it is, the call knows.
    pub(super) fn session_update(&mut self, update: SessionUpdate) -> Result<(), Refusal> {
        let session = self.session_live(&update.session)?;
        if !session.accepted && !session.answered {
            return Err((
                ErrorKind::Refused,
                format!("Session {} is not answered yet: no update", update.session),
            ));
        }
        if update.sdp.trim().is_empty() {
            return Err((ErrorKind::Invalid, "sdp must be an offer".to_owned()));
        }
        self.deferred.push(Output::Call {
            session: update.session,
            command: Command::Update { sdp: update.sdp },
        });
        Ok(())
    }

    /// `session-dtmf-info`: SIP INFO, once the call is answered or has early media (as the
    /// reference allows: IVRs and calling-card numbers take digits before they answer).
    pub(super) fn session_dtmf(&mut self, dtmf: SessionDtmfInfo) -> Result<(), Refusal> {
        let session = self.session_live(&dtmf.session)?;
        if !session.accepted && !session.early_media {
            return Err((
                ErrorKind::Refused,
                format!(
                    "Session {} has neither an answer nor early media yet: no DTMF",
                    dtmf.session
                ),
            ));
        }
        if dtmf.digit.is_empty() || !dtmf.digit.chars().all(|tone| DTMF_TONES.contains(tone)) {
            return Err((
                ErrorKind::Invalid,
                format!(
                    "digit must be DTMF tones (0-9, *, #, A-D), not {:?}",
                    dtmf.digit
                ),
            ));
        }
        self.deferred.push(Output::Call {
            session: dtmf.session,
            command: Command::Dtmf {
                digits: dtmf.digit,
                duration: dtmf.duration.unwrap_or(DTMF_DURATION),
            },
        });
        Ok(())
    }

    /// `session-message`: a message in the answered call (SIP MESSAGE in its dialog, CPIM
    /// with the IMDN headers); its outcome comes as the session's `disposition-notification`.
    pub(super) fn session_message(&mut self, message: SessionMessage) -> Result<(), Refusal> {
        let session = self.session_live(&message.session)?;
        if !session.accepted {
            return Err((
                ErrorKind::Refused,
                format!(
                    "Session {} is not established: no message yet",
                    message.session
                ),
            ));
        }
        let peer = session
            .peer
            .as_ref()
            .and_then(|peer| protocol::Aor::parse(&peer.uri).ok());
        let Some(to) = peer else {
            return Err((
                ErrorKind::Refused,
                "the far end of the call has no address to send a message to".to_owned(),
            ));
        };
        let from = session.account.clone();
        if !messaging::valid_message_id(&message.message_id) {
            return Err((
                ErrorKind::Invalid,
                "message_id must be 1 to 128 visible ASCII characters".to_owned(),
            ));
        }
        if !messaging::valid_content_type(&message.content_type) {
            return Err((
                ErrorKind::Invalid,
                "content_type must be a MIME type (type/subtype)".to_owned(),
            ));
        }
        let timestamp = checked_timestamp(message.timestamp)?;
        let display_name = self
            .accounts
            .iter()
            .find(|account| account.aor == from)
            .and_then(|account| account.display_name.clone());
        self.deferred.push(Output::Call {
            session: message.session,
            command: Command::Message(Box::new(Text {
                from,
                display_name,
                to,
                message_id: message.message_id,
                timestamp,
                content_type: message.content_type,
                content: message.content,
            })),
        });
        Ok(())
    }

    /// An INVITE reached the registration `handle`: a new session for its account.
    pub(super) fn incoming(&mut self, handle: u64, call: CallHandle, invite: IncomingCall) {
        let account = self.accounts.iter().find(|account| {
            account
                .registration
                .as_ref()
                .is_some_and(|registration| registration.handle == handle)
        });
        let Some(account) = account else {
            self.out.push_back(Output::RefuseCall(call));
            return;
        };
        let session = uuid::Uuid::new_v4().to_string();
        let incoming = Incoming {
            session: session.clone(),
            call,
            invite,
            header_prefixes: account.incoming_header_prefixes.clone(),
        };
        self.sessions.insert(
            session,
            Session {
                account: account.aor.clone(),
                incoming: true,
                announced: false,
                answered: false,
                accepted: false,
                early_media: false,
                early_sdp: None,
                peer: None,
                progressed: false,
                rung: false,
            },
        );
        self.out.push_back(Output::Incoming(Box::new(incoming)));
    }

    /// News from a call's task: what the session's requests need to know (answered, early
    /// media, over) is kept, and the client told in sylkRTC's words.
    pub(crate) fn handle_update(&mut self, session: &str, update: CallUpdate) {
        let Some(live) = self.sessions.get_mut(session) else {
            return;
        };
        let party = |caller: Caller| Party {
            uri: caller.uri,
            display_name: caller.display_name,
        };
        let state = match update {
            CallUpdate::Incoming {
                caller,
                sdp,
                call_id,
                headers,
            } => {
                live.announced = true;
                live.peer = Some(party(caller.clone()));
                let account = live.account.to_string();
                return self.send_event(Event::Account {
                    account,
                    event: AccountEvent::IncomingSession {
                        session: session.to_owned(),
                        originator: party(caller),
                        sdp,
                        call_id,
                        headers,
                    },
                });
            }
            CallUpdate::Missed { caller } => {
                let account = live.account.to_string();
                return self.send_event(Event::Account {
                    account,
                    event: AccountEvent::MissedSession {
                        originator: party(caller),
                    },
                });
            }
            CallUpdate::Progress if std::mem::replace(&mut live.progressed, true) => return,
            CallUpdate::Progress => SessionState::Progress,
            CallUpdate::Ringing if std::mem::replace(&mut live.rung, true) => return,
            CallUpdate::Ringing => SessionState::Ringing,
            CallUpdate::Proceeding { code } => SessionState::Proceeding { code },
            CallUpdate::EarlyMedia { sdp, call_id } => {
                live.early_media = true;
                SessionState::EarlyMedia { sdp, call_id }
            }
            CallUpdate::Accepted { sdp, call_id } => {
                live.accepted = true;
                SessionState::Accepted {
                    sdp,
                    call_id,
                    headers: BTreeMap::new(),
                }
            }
            CallUpdate::Established => SessionState::Established,
            CallUpdate::Updated { sdp } => {
                return self.send_event(Event::Session {
                    session: session.to_owned(),
                    event: SessionEvent::Update(UpdateState::Accepted { sdp }),
                });
            }
            CallUpdate::Quality(quality) => {
                return self.send_event(Event::Session {
                    session: session.to_owned(),
                    event: SessionEvent::Quality(quality),
                });
            }
            CallUpdate::UpdateReceived { sdp } => {
                return self.send_event(Event::Session {
                    session: session.to_owned(),
                    event: SessionEvent::Update(UpdateState::Received { sdp }),
                });
            }
            CallUpdate::UpdateFailed { reason } => {
                return self.send_event(Event::Session {
                    session: session.to_owned(),
                    event: SessionEvent::Update(UpdateState::Failed {
                        reason: Some(reason),
                    }),
                });
            }
            CallUpdate::MessageAnswered {
                message_id,
                timestamp,
                code,
                reason,
            } => {
                let state = if (200..300).contains(&code) {
                    "accepted"
                } else {
                    "failed"
                };
                return self.send_event(Event::Session {
                    session: session.to_owned(),
                    event: SessionEvent::DispositionNotification(DispositionNotification {
                        message_id,
                        message_timestamp: Some(timestamp),
                        state: state.to_owned(),
                        code: Some(code),
                        reason: Some(reason),
                    }),
                });
            }
            CallUpdate::Message(received) => {
                // The sender is the far end of the call; a CPIM From that names someone else
                // is not believed (as out of the dialog, where it gets 403).
                let Some(sender) = live.peer.clone() else {
                    return;
                };
                if let Some(cpim) = &received.cpim_from
                    && protocol::Aor::parse(cpim).ok() != protocol::Aor::parse(&sender.uri).ok()
                {
                    warn!(%cpim, peer = %sender.uri, "a message in the call names another sender: dropped");
                    return;
                }
                let received = *received;
                return self.send_event(Event::Session {
                    session: session.to_owned(),
                    event: SessionEvent::Message(IncomingMessage {
                        sender,
                        timestamp: received.timestamp,
                        message_id: received.message_id,
                        content: received.content,
                        content_type: received.content_type,
                        disposition_notification: received.disposition,
                    }),
                });
            }
            CallUpdate::Notification { message_id, state } => {
                return self.send_event(Event::Session {
                    session: session.to_owned(),
                    event: SessionEvent::DispositionNotification(DispositionNotification {
                        message_id,
                        message_timestamp: None,
                        state: state.as_str().to_owned(),
                        code: None,
                        reason: None,
                    }),
                });
            }
            CallUpdate::Terminated(ending) => {
                // The id is free again.
                let announced = live.announced;
                self.sessions.remove(session);
                if !announced {
                    return;
                }
                SessionState::Terminated {
                    reason: Some(ending.text),
                }
            }
        };
        self.send_event(Event::Session {
            session: session.to_owned(),
            event: SessionEvent::State(state),
        });
    }
}
