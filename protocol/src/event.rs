//! What the gateway sends: `ack` and `error` replies, and events.
//!
//! Replies are the same in both versions. Events are modelled once; [`ServerMessage::encode`]
//! writes them flat with hyphenated names for sylkRTC-2, and with underscored names and the
//! payload nested under `data` for sylkRTC-1 (seed 004), where an originator is a plain URI.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::Version;
use crate::error::{Error, Result};
use crate::fields::{self, Fields};

mod messages;
mod quality;
pub use messages::{DispositionNotification, IncomingMessage};
pub use quality::{CallQuality, LegQuality};

/// SIP headers passed to the browser, by name.
pub type Headers = BTreeMap<String, String>;

/// A message from the gateway to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// The request with this transaction succeeded (or was accepted and runs on).
    Ack {
        /// The request's transaction.
        transaction: String,
    },
    /// The request with this transaction failed.
    Error {
        /// The request's transaction.
        transaction: String,
        /// Why, for people.
        error: String,
    },
    /// An event.
    Event(Event),
}

/// An event: something that happened, with no transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The connection is ready for requests (the first message on every connection).
    Ready,
    /// An event of one account.
    Account {
        /// The account, as the client named it in `account-add` (without `sip:`).
        account: String,
        /// What happened.
        event: AccountEvent,
    },
    /// `lookup-public-key-event`: the answer to `lookup-public-key` (the same in both versions).
    PublicKey {
        /// The account asked about.
        uri: String,
        /// Its PGP public key, `None` (JSON null) when none is stored.
        public_key: Option<String>,
    },
    /// An event of one call.
    Session {
        /// The session id.
        session: String,
        /// What happened.
        event: SessionEvent,
    },
}

/// The events of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccountEvent {
    /// `registration-state`.
    RegistrationState(RegistrationState),
    /// `incoming-session`: a call arrived.
    IncomingSession {
        /// The id the gateway gave the call.
        session: String,
        /// The caller.
        originator: Party,
        /// The SDP offer for the browser.
        sdp: String,
        /// The SIP Call-ID (sylkRTC-2 only).
        call_id: Option<String>,
        /// The SIP headers that matched the account's `incoming_header_prefixes` (sylkRTC-2
        /// only).
        headers: Headers,
    },
    /// `missed-session`: a call was cancelled before it was answered.
    MissedSession {
        /// The caller.
        originator: Party,
    },
    /// `disposition-notification`: what became of a message the account sent (its SIP
    /// result, or an IMDN from the recipient).
    DispositionNotification(DispositionNotification),
    /// `message`: a message for the account (SIP MESSAGE, CPIM unwrapped).
    Message(IncomingMessage),
    /// `sync-conversations`: the answer to `account-sync-conversations`.
    SyncConversations {
        /// The stored messages, oldest first.
        messages: Vec<SyncedMessage>,
    },
    /// `sync`: something another connection of the account did, so that every device shows
    /// the same conversations.
    Sync(SyncAction),
    /// `addressbook-fetched`: the answer to `account-fetch-addressbook`.
    AddressbookFetched {
        /// `{contacts, groups, policies}`.
        addressbook: Value,
    },
    /// `addressbook-updated`: an item was added, changed or deleted (on this connection or
    /// another of the account).
    AddressbookUpdated {
        /// `contact`, `group` or `policy`.
        kind: String,
        /// `add`, `update` or `delete`.
        action: String,
        /// The item (for a deletion, what is known of it: at least its `id`).
        item: Value,
    },
    /// `presence` (an extension of this gateway): a contact of the account's address book is
    /// now online or offline.
    Presence {
        /// The contact (`user@domain`).
        contact: String,
        /// `online`, `offline`, or `unknown` (its presence cannot be learned: its server
        /// refused to tell, or the contact has not allowed the account yet).
        state: String,
        /// What the contact's presence document says besides (its first note), if anything.
        note: Option<String>,
    },
    /// `addressbook-update-failed`: an update that could not be made.
    AddressbookUpdateFailed {
        /// As the request said.
        kind: String,
        /// As the request said.
        action: String,
        /// Why.
        error: String,
        /// The item's id.
        id: String,
    },
}

/// What a `sync` event replicates (its `type` and `action`, and its `content`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncAction {
    /// `message` / `add`: the account sent a message from another connection (its content is
    /// that `account-message` request's fields).
    MessageAdded {
        /// The account.
        account: String,
        /// The recipient.
        uri: String,
        /// The message's id.
        message_id: String,
        /// Its body.
        content: String,
        /// Its MIME type.
        content_type: String,
        /// When it was written.
        timestamp: String,
    },
    /// `message` / `remove`: a message was removed.
    MessageRemoved {
        /// The conversation's other party.
        contact: String,
        /// The message.
        message_id: String,
        /// Which way the message had gone (`incoming`, `outgoing`).
        direction: Option<String>,
    },
    /// `conversation` / `read`: a conversation was read.
    ConversationRead {
        /// The conversation's other party.
        contact: String,
    },
    /// `conversation` / `remove`: a conversation was removed.
    ConversationRemoved {
        /// The conversation's other party.
        contact: String,
        /// When.
        timestamp: String,
    },
}

impl SyncAction {
    /// The event's `type`, `action` and `content`.
    fn to_json(&self) -> (&'static str, &'static str, Value) {
        match self {
            SyncAction::MessageAdded {
                account,
                uri,
                message_id,
                content,
                content_type,
                timestamp,
            } => (
                "message",
                "add",
                json!({"account": account, "uri": uri, "message_id": message_id,
                    "content": content, "content_type": content_type, "timestamp": timestamp}),
            ),
            SyncAction::MessageRemoved {
                contact,
                message_id,
                direction,
            } => {
                let mut content = json!({"contact": contact, "message_id": message_id});
                if let Some(direction) = direction {
                    content["direction"] = json!(direction);
                }
                ("message", "remove", content)
            }
            SyncAction::ConversationRead { contact } => {
                ("conversation", "read", json!({"contact": contact}))
            }
            SyncAction::ConversationRemoved { contact, timestamp } => (
                "conversation",
                "remove",
                json!({"contact": contact, "timestamp": timestamp}),
            ),
        }
    }

    fn from_fields(fields: Fields<'_>) -> Result<SyncAction> {
        let path = fields.name("content");
        let content = Fields::nested(fields.object("content")?, &path);
        let string = |key: &str| content.string(key).map(str::to_owned);
        Ok(match (fields.string("type")?, fields.string("action")?) {
            ("message", "add") => SyncAction::MessageAdded {
                account: string("account")?,
                uri: string("uri")?,
                message_id: string("message_id")?,
                content: string("content")?,
                content_type: string("content_type")?,
                timestamp: string("timestamp")?,
            },
            ("message", "remove") => SyncAction::MessageRemoved {
                contact: string("contact")?,
                message_id: string("message_id")?,
                direction: content.opt_string("direction")?.map(str::to_owned),
            },
            ("conversation", "read") => SyncAction::ConversationRead {
                contact: string("contact")?,
            },
            ("conversation", "remove") => SyncAction::ConversationRemoved {
                contact: string("contact")?,
                timestamp: string("timestamp")?,
            },
            (kind, action) => {
                return Err(Error::invalid(
                    fields.name("action"),
                    format!("unknown sync {kind} {action}"),
                ));
            }
        })
    }
}

/// One message of a `sync-conversations` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedMessage {
    /// The other party.
    pub contact: String,
    /// When it was written (RFC 3339).
    pub timestamp: String,
    /// Its id.
    pub message_id: String,
    /// Its MIME type.
    pub content_type: String,
    /// Its body.
    pub content: String,
    /// The notifications its sender asked for.
    pub disposition: Vec<String>,
    /// `incoming` or `outgoing`.
    pub direction: String,
    /// Its delivery state (`pending`, `accepted`, `delivered`, `displayed`, `failed`,
    /// `received`, ...).
    pub state: String,
}

/// The registration states an account goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// A REGISTER is on its way.
    Registering,
    /// The registrar accepted the registration.
    Registered,
    /// The registration failed.
    Failed {
        /// Why: a SIP status line such as "401 Unauthorized", or a transport failure.
        reason: Option<String>,
    },
}

/// A party of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    /// The party's address.
    pub uri: String,
    /// The party's display name.
    pub display_name: Option<String>,
}

/// The events of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// `state`: the call's state changed.
    State(SessionState),
    /// `update`: a re-INVITE's progress.
    Update(UpdateState),
    /// `message`: a MESSAGE in the call's dialog.
    Message(IncomingMessage),
    /// `disposition-notification`: what became of a `session-message`, or an IMDN in the
    /// dialog.
    DispositionNotification(DispositionNotification),
    /// `quality`: how the call's audio fared on each leg, once, as it ends (an extension).
    Quality(Box<CallQuality>),
}

/// The states of a call, as sent in `state` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// The outgoing INVITE was sent.
    Progress,
    /// A provisional response arrived.
    Proceeding {
        /// Its status code.
        code: u16,
    },
    /// The callee is ringing (180).
    Ringing,
    /// Early media (183 with SDP): the browser applies the answer now.
    EarlyMedia {
        /// The SDP answer.
        sdp: String,
        /// The SIP Call-ID.
        call_id: Option<String>,
    },
    /// The call was answered.
    Accepted {
        /// The SDP answer (outgoing calls without early media).
        sdp: Option<String>,
        /// The SIP Call-ID.
        call_id: Option<String>,
        /// SIP headers of the answer.
        headers: Headers,
    },
    /// ICE and DTLS are up: media flows.
    Established,
    /// The call ended.
    Terminated {
        /// Why: "486 Busy Here", "200 to BYE", a media failure, ...
        reason: Option<String>,
    },
}

/// The progress of a re-INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateState {
    /// The remote party sent a re-INVITE: here is its offer.
    Received {
        /// The offer.
        sdp: String,
    },
    /// Our re-INVITE was answered.
    Accepted {
        /// The answer.
        sdp: String,
    },
    /// Our re-INVITE failed.
    Failed {
        /// Why.
        reason: Option<String>,
    },
}

impl ServerMessage {
    /// Writes the message as JSON text in the given protocol version.
    pub fn encode(&self, version: Version) -> String {
        match self {
            // The hot path: written directly, with the transaction escaped by serde_json.
            ServerMessage::Ack { transaction } => {
                format!(
                    r#"{{"sylkrtc":"ack","transaction":{}}}"#,
                    Value::from(transaction.as_str())
                )
            }
            ServerMessage::Error { transaction, error } => format!(
                r#"{{"sylkrtc":"error","transaction":{},"error":{}}}"#,
                Value::from(transaction.as_str()),
                Value::from(error.as_str())
            ),
            ServerMessage::Event(event) => event.to_json(version).to_string(),
        }
    }

    /// Reads a message the gateway sent, in the given protocol version.
    pub fn parse(text: &str, version: Version) -> Result<ServerMessage> {
        let map = fields::object(text)?;
        let fields = Fields::new(&map);
        let kind = fields.string("sylkrtc")?;
        match kind {
            "ack" => Ok(ServerMessage::Ack {
                transaction: fields.string("transaction")?.to_owned(),
            }),
            "error" => Ok(ServerMessage::Error {
                transaction: fields.string("transaction")?.to_owned(),
                error: fields.string("error")?.to_owned(),
            }),
            _ => Event::from_fields(kind, fields, version).map(ServerMessage::Event),
        }
    }
}

impl Event {
    /// The event as a JSON object in the given protocol version.
    pub fn to_json(&self, version: Version) -> Value {
        let mut out = Map::new();
        match (self, version) {
            (Event::Ready, Version::V2) => {
                out.insert("sylkrtc".into(), json!("ready-event"));
            }
            (Event::Ready, Version::V1) => {
                out.insert("sylkrtc".into(), json!("event"));
                out.insert("event".into(), json!("ready"));
            }
            (Event::PublicKey { uri, public_key }, _) => {
                out.insert("sylkrtc".into(), json!("lookup-public-key-event"));
                out.insert("uri".into(), json!(uri));
                out.insert("public_key".into(), json!(public_key));
            }
            (Event::Account { account, event }, _) => {
                let (name, mut payload) = event.payload(version);
                out.insert("account".into(), json!(account));
                match version {
                    Version::V2 => {
                        out.insert("sylkrtc".into(), json!("account-event"));
                        out.insert("event".into(), json!(name));
                        out.append(&mut payload);
                    }
                    Version::V1 => {
                        out.insert("sylkrtc".into(), json!("account_event"));
                        out.insert("event".into(), json!(name.replace('-', "_")));
                        // sylkRTC-1 has the new call's id beside `account`, not in `data`.
                        if let Some(session) = payload.remove("session") {
                            out.insert("session".into(), session);
                        }
                        out.insert("data".into(), Value::Object(payload));
                    }
                }
            }
            (Event::Session { session, event }, _) => {
                let (name, mut payload) = event.payload();
                out.insert("session".into(), json!(session));
                out.insert("event".into(), json!(name));
                match version {
                    Version::V2 => {
                        out.insert("sylkrtc".into(), json!("session-event"));
                        out.append(&mut payload);
                    }
                    Version::V1 => {
                        out.insert("sylkrtc".into(), json!("session_event"));
                        out.insert("data".into(), Value::Object(payload));
                    }
                }
            }
        }
        Value::Object(out)
    }

    fn from_fields(kind: &str, fields: Fields<'_>, version: Version) -> Result<Event> {
        match (kind, version) {
            ("ready-event", Version::V2) => Ok(Event::Ready),
            ("event", Version::V1) if fields.string("event")? == "ready" => Ok(Event::Ready),
            ("lookup-public-key-event", _) => Ok(Event::PublicKey {
                uri: fields.string("uri")?.to_owned(),
                public_key: fields.opt_string("public_key")?.map(str::to_owned),
            }),
            ("account-event", Version::V2) => Ok(Event::Account {
                account: fields.string("account")?.to_owned(),
                event: AccountEvent::from_fields(fields.string("event")?, fields, version)?,
            }),
            ("account_event", Version::V1) => {
                let data = fields.object("data")?;
                let mut data = data.clone();
                if let Some(session) = fields.opt_string("session")? {
                    data.insert("session".into(), json!(session));
                }
                let name = fields.string("event")?.replace('_', "-");
                Ok(Event::Account {
                    account: fields.string("account")?.to_owned(),
                    event: AccountEvent::from_fields(
                        &name,
                        Fields::nested(&data, "data"),
                        version,
                    )?,
                })
            }
            ("session-event", Version::V2) => Ok(Event::Session {
                session: fields.string("session")?.to_owned(),
                event: SessionEvent::from_fields(fields.string("event")?, fields)?,
            }),
            ("session_event", Version::V1) => Ok(Event::Session {
                session: fields.string("session")?.to_owned(),
                event: SessionEvent::from_fields(
                    fields.string("event")?,
                    Fields::nested(fields.object("data")?, "data"),
                )?,
            }),
            _ => Err(Error::UnknownMessage(kind.to_owned())),
        }
    }
}

impl AccountEvent {
    /// The event's name (sylkRTC-2 spelling) and its payload fields.
    fn payload(&self, version: Version) -> (&'static str, Map<String, Value>) {
        let mut out = Map::new();
        let name = match self {
            AccountEvent::RegistrationState(state) => {
                let (text, reason) = match state {
                    RegistrationState::Registering => ("registering", None),
                    RegistrationState::Registered => ("registered", None),
                    RegistrationState::Failed { reason } => ("failed", reason.as_ref()),
                };
                out.insert("state".into(), json!(text));
                if let Some(reason) = reason {
                    out.insert("reason".into(), json!(reason));
                }
                "registration-state"
            }
            AccountEvent::IncomingSession {
                session,
                originator,
                sdp,
                call_id,
                headers,
            } => {
                out.insert("session".into(), json!(session));
                out.insert("originator".into(), originator.to_json(version));
                out.insert("sdp".into(), json!(sdp));
                if version == Version::V2 {
                    if let Some(call_id) = call_id {
                        out.insert("call_id".into(), json!(call_id));
                    }
                    insert_headers(&mut out, headers);
                }
                "incoming-session"
            }
            AccountEvent::MissedSession { originator } => {
                out.insert("originator".into(), originator.to_json(version));
                "missed-session"
            }
            AccountEvent::Message(message) => {
                message.write(&mut out);
                "message"
            }
            AccountEvent::SyncConversations { messages } => {
                let messages: Vec<Value> = messages
                    .iter()
                    .map(|message| {
                        json!({"contact": message.contact, "timestamp": message.timestamp,
                            "message_id": message.message_id, "content_type": message.content_type,
                            "content": message.content, "disposition": message.disposition,
                            "direction": message.direction, "state": message.state})
                    })
                    .collect();
                out.insert("messages".into(), Value::Array(messages));
                "sync-conversations"
            }
            AccountEvent::AddressbookFetched { addressbook } => {
                out.insert("addressbook".into(), addressbook.clone());
                "addressbook-fetched"
            }
            AccountEvent::AddressbookUpdated { kind, action, item } => {
                out.insert("type".into(), json!(kind));
                out.insert("action".into(), json!(action));
                out.insert(kind.clone(), item.clone());
                "addressbook-updated"
            }
            AccountEvent::Presence {
                contact,
                state,
                note,
            } => {
                out.insert("contact".into(), json!(contact));
                out.insert("state".into(), json!(state));
                if let Some(note) = note {
                    out.insert("note".into(), json!(note));
                }
                "presence"
            }
            AccountEvent::AddressbookUpdateFailed {
                kind,
                action,
                error,
                id,
            } => {
                out.insert("type".into(), json!(kind));
                out.insert("action".into(), json!(action));
                out.insert("error".into(), json!(error));
                out.insert("id".into(), json!(id));
                "addressbook-update-failed"
            }
            AccountEvent::Sync(sync) => {
                let (kind, action, content) = sync.to_json();
                out.insert("type".into(), json!(kind));
                out.insert("action".into(), json!(action));
                out.insert("content".into(), content);
                "sync"
            }
            AccountEvent::DispositionNotification(notification) => {
                notification.write(&mut out);
                "disposition-notification"
            }
        };
        (name, out)
    }

    fn from_fields(name: &str, fields: Fields<'_>, version: Version) -> Result<AccountEvent> {
        match name {
            "registration-state" => {
                let state = match fields.string("state")? {
                    "registering" => RegistrationState::Registering,
                    "registered" => RegistrationState::Registered,
                    "failed" => RegistrationState::Failed {
                        reason: fields.opt_string("reason")?.map(str::to_owned),
                    },
                    other => {
                        return Err(Error::invalid(
                            fields.name("state"),
                            format!("unknown state {other:?}"),
                        ));
                    }
                };
                Ok(AccountEvent::RegistrationState(state))
            }
            "incoming-session" => Ok(AccountEvent::IncomingSession {
                session: fields.string("session")?.to_owned(),
                originator: Party::from_fields(fields, version)?,
                sdp: fields.string("sdp")?.to_owned(),
                call_id: fields.opt_string("call_id")?.map(str::to_owned),
                headers: read_headers(fields)?,
            }),
            "missed-session" => Ok(AccountEvent::MissedSession {
                originator: Party::from_fields(fields, version)?,
            }),
            "message" => Ok(AccountEvent::Message(IncomingMessage::read(fields)?)),
            "sync-conversations" => {
                let path = fields.name("messages");
                let messages = fields
                    .array("messages")?
                    .iter()
                    .map(|item| {
                        let map = item
                            .as_object()
                            .ok_or_else(|| Error::invalid(path.clone(), "expected objects"))?;
                        let message = Fields::nested(map, &path);
                        Ok(SyncedMessage {
                            contact: message.string("contact")?.to_owned(),
                            timestamp: message.string("timestamp")?.to_owned(),
                            message_id: message.string("message_id")?.to_owned(),
                            content_type: message.string("content_type")?.to_owned(),
                            content: message.string("content")?.to_owned(),
                            disposition: message.opt_strings("disposition")?.unwrap_or_default(),
                            direction: message.string("direction")?.to_owned(),
                            state: message.string("state")?.to_owned(),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(AccountEvent::SyncConversations { messages })
            }
            "disposition-notification" => Ok(AccountEvent::DispositionNotification(
                DispositionNotification::read(fields)?,
            )),
            "sync" => Ok(AccountEvent::Sync(SyncAction::from_fields(fields)?)),
            "addressbook-fetched" => Ok(AccountEvent::AddressbookFetched {
                addressbook: Value::Object(fields.object("addressbook")?.clone()),
            }),
            "addressbook-updated" => {
                let kind = fields.string("type")?.to_owned();
                Ok(AccountEvent::AddressbookUpdated {
                    action: fields.string("action")?.to_owned(),
                    item: Value::Object(fields.object(&kind)?.clone()),
                    kind,
                })
            }
            "addressbook-update-failed" => Ok(AccountEvent::AddressbookUpdateFailed {
                kind: fields.string("type")?.to_owned(),
                action: fields.string("action")?.to_owned(),
                error: fields.string("error")?.to_owned(),
                id: fields.string("id")?.to_owned(),
            }),
            "presence" => Ok(AccountEvent::Presence {
                contact: fields.string("contact")?.to_owned(),
                state: fields.string("state")?.to_owned(),
                note: fields.opt_string("note")?.map(str::to_owned),
            }),
            other => Err(Error::UnknownMessage(format!("account event {other}"))),
        }
    }
}

impl SessionEvent {
    fn payload(&self) -> (&'static str, Map<String, Value>) {
        let mut out = Map::new();
        let mut put = |key: &str, value: Value| {
            out.insert(key.to_owned(), value);
        };
        let name = match self {
            SessionEvent::State(state) => {
                let text = match state {
                    SessionState::Progress => "progress",
                    SessionState::Proceeding { code } => {
                        put("code", json!(code));
                        "proceeding"
                    }
                    SessionState::Ringing => "ringing",
                    SessionState::EarlyMedia { sdp, call_id } => {
                        put("sdp", json!(sdp));
                        if let Some(call_id) = call_id {
                            put("call_id", json!(call_id));
                        }
                        "early-media"
                    }
                    SessionState::Accepted { sdp, call_id, .. } => {
                        if let Some(sdp) = sdp {
                            put("sdp", json!(sdp));
                        }
                        if let Some(call_id) = call_id {
                            put("call_id", json!(call_id));
                        }
                        "accepted"
                    }
                    SessionState::Established => "established",
                    SessionState::Terminated { reason } => {
                        if let Some(reason) = reason {
                            put("reason", json!(reason));
                        }
                        "terminated"
                    }
                };
                put("state", json!(text));
                if let SessionState::Accepted { headers, .. } = state {
                    insert_headers(&mut out, headers);
                }
                "state"
            }
            SessionEvent::Update(update) => {
                let text = match update {
                    UpdateState::Received { sdp } => {
                        put("sdp", json!(sdp));
                        "received"
                    }
                    UpdateState::Accepted { sdp } => {
                        put("sdp", json!(sdp));
                        "accepted"
                    }
                    UpdateState::Failed { reason } => {
                        if let Some(reason) = reason {
                            put("reason", json!(reason));
                        }
                        "failed"
                    }
                };
                put("state", json!(text));
                "update"
            }
            SessionEvent::Message(message) => {
                message.write(&mut out);
                "message"
            }
            SessionEvent::DispositionNotification(notification) => {
                notification.write(&mut out);
                "disposition-notification"
            }
            SessionEvent::Quality(quality) => {
                quality.write(&mut out);
                "quality"
            }
        };
        (name, out)
    }

    fn from_fields(name: &str, fields: Fields<'_>) -> Result<SessionEvent> {
        match name {
            "message" => return Ok(SessionEvent::Message(IncomingMessage::read(fields)?)),
            "quality" => return Ok(SessionEvent::Quality(Box::new(CallQuality::read(fields)?))),
            "disposition-notification" => {
                return Ok(SessionEvent::DispositionNotification(
                    DispositionNotification::read(fields)?,
                ));
            }
            _ => {}
        }
        let reason = || Ok::<_, Error>(fields.opt_string("reason")?.map(str::to_owned));
        let call_id = || Ok::<_, Error>(fields.opt_string("call_id")?.map(str::to_owned));
        let state = fields.string("state")?;
        let unknown = || Error::invalid(fields.name("state"), format!("unknown state {state:?}"));
        match name {
            "state" => Ok(SessionEvent::State(match state {
                "progress" => SessionState::Progress,
                "proceeding" => SessionState::Proceeding {
                    code: fields
                        .opt_u32("code")?
                        .and_then(|code| u16::try_from(code).ok())
                        .ok_or_else(|| Error::MissingField(fields.name("code")))?,
                },
                "ringing" => SessionState::Ringing,
                "early-media" => SessionState::EarlyMedia {
                    sdp: fields.string("sdp")?.to_owned(),
                    call_id: call_id()?,
                },
                "accepted" => SessionState::Accepted {
                    sdp: fields.opt_string("sdp")?.map(str::to_owned),
                    call_id: call_id()?,
                    headers: read_headers(fields)?,
                },
                "established" => SessionState::Established,
                "terminated" => SessionState::Terminated { reason: reason()? },
                _ => return Err(unknown()),
            })),
            "update" => Ok(SessionEvent::Update(match state {
                "received" => UpdateState::Received {
                    sdp: fields.string("sdp")?.to_owned(),
                },
                "accepted" => UpdateState::Accepted {
                    sdp: fields.string("sdp")?.to_owned(),
                },
                "failed" => UpdateState::Failed { reason: reason()? },
                _ => return Err(unknown()),
            })),
            other => Err(Error::UnknownMessage(format!("session event {other}"))),
        }
    }
}

impl Party {
    fn to_json(&self, version: Version) -> Value {
        match version {
            // The 2015 protocol sends the originator as a bare URI.
            Version::V1 => json!(self.uri),
            Version::V2 => {
                let mut out = Map::new();
                out.insert("uri".into(), json!(self.uri));
                if let Some(name) = &self.display_name {
                    out.insert("display_name".into(), json!(name));
                }
                Value::Object(out)
            }
        }
    }

    fn from_fields(fields: Fields<'_>, version: Version) -> Result<Party> {
        if version == Version::V1 {
            return Ok(Party {
                uri: fields.string("originator")?.to_owned(),
                display_name: None,
            });
        }
        let path = fields.name("originator");
        let party = Fields::nested(fields.object("originator")?, &path);
        Ok(Party {
            uri: party.string("uri")?.to_owned(),
            display_name: party.opt_string("display_name")?.map(str::to_owned),
        })
    }
}

fn insert_headers(out: &mut Map<String, Value>, headers: &Headers) {
    if !headers.is_empty() {
        out.insert("headers".into(), json!(headers));
    }
}

fn read_headers(fields: Fields<'_>) -> Result<Headers> {
    let Some(map) = fields.opt_object("headers")? else {
        return Ok(Headers::new());
    };
    map.iter()
        .map(|(name, value)| match value {
            Value::String(text) => Ok((name.clone(), text.clone())),
            _ => Err(Error::invalid(
                format!("{}.{name}", fields.name("headers")),
                "expected a string",
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests;
