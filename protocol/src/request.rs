//! Requests: what a client asks of the gateway. Every request carries `sylkrtc` (its name) and
//! `transaction` (an id the reply echoes).

use std::fmt;

use serde_json::{Map, Value, json};

use crate::aor::Aor;
use crate::error::{Error, RequestError, Result};
use crate::fields::{self, Fields};

/// The name of every request the protocol defines (spec section 2), modelled or not.
pub const REQUEST_NAMES: &[&str] = &[
    "ping",
    "lookup-public-key",
    "account-add",
    "account-remove",
    "account-register",
    "account-unregister",
    "account-devicetoken",
    "account-message",
    "account-disposition-notification",
    "account-sync-conversations",
    "account-mark-conversation-read",
    "account-remove-message",
    "account-remove-conversation",
    "account-fetch-addressbook",
    "account-update-addressbook",
    "session-create",
    "session-answer",
    "session-trickle",
    "session-terminate",
    "session-update",
    "session-message",
    "session-dtmf-info",
    "videoroom-join",
    "videoroom-leave",
    "videoroom-configure",
    "videoroom-feed-attach",
    "videoroom-feed-answer",
    "videoroom-feed-detach",
    "videoroom-invite",
    "videoroom-session-trickle",
    "videoroom-session-update",
    "videoroom-message",
    "videoroom-composing-indication",
    "videoroom-mute-audio-participants",
    "videoroom-toggle-hand",
];

/// The requests of [`REQUEST_NAMES`] whose fields this model does not carry: they parse into
/// [`RequestBody::NotModelled`], so that the gateway can say "not supported yet" rather than
/// "unknown request".
pub const NOT_MODELLED: &[&str] = &[
    "videoroom-join",
    "videoroom-leave",
    "videoroom-configure",
    "videoroom-feed-attach",
    "videoroom-feed-answer",
    "videoroom-feed-detach",
    "videoroom-invite",
    "videoroom-session-trickle",
    "videoroom-session-update",
    "videoroom-message",
    "videoroom-composing-indication",
    "videoroom-mute-audio-participants",
    "videoroom-toggle-hand",
];

/// A client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The client's id for this request, echoed in the `ack` or `error`.
    pub transaction: String,
    /// What is asked.
    pub body: RequestBody,
}

/// What a request asks, by request name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestBody {
    /// `ping`: a keepalive, answered with an ack.
    Ping,
    /// `lookup-public-key`: the PGP public key stored for an account, answered with an ack and
    /// a `lookup-public-key-event`.
    LookupPublicKey {
        /// The account whose key is asked for.
        uri: Aor,
    },
    /// `account-add`: configure an account on this connection.
    AccountAdd(AccountAdd),
    /// `account-remove`: forget an account (and unregister it).
    AccountRemove {
        /// The account.
        account: Aor,
    },
    /// `account-register`: register the account via SIP.
    AccountRegister {
        /// The account.
        account: Aor,
    },
    /// `account-unregister`: remove the account's SIP registration.
    AccountUnregister {
        /// The account.
        account: Aor,
    },
    /// `session-create`: place an outgoing call.
    SessionCreate(SessionCreate),
    /// `session-answer`: answer an incoming call.
    SessionAnswer(SessionAnswer),
    /// `session-trickle`: ICE candidates for a call.
    SessionTrickle(SessionTrickle),
    /// `session-terminate`: hang up, cancel or decline a call.
    SessionTerminate {
        /// The session id.
        session: String,
    },
    /// `session-update`: a re-INVITE offer, or the answer to a remote re-INVITE.
    SessionUpdate(SessionUpdate),
    /// `session-dtmf-info`: DTMF tones sent as SIP INFO.
    SessionDtmfInfo(SessionDtmfInfo),
    /// `session-message`: a message in the call's dialog (SIP MESSAGE).
    SessionMessage(SessionMessage),
    /// `account-message`: a message from an account, sent as SIP MESSAGE.
    AccountMessage(AccountMessage),
    /// `account-sync-conversations`: the account's stored messages, from a point on.
    AccountSyncConversations(SyncConversations),
    /// `account-disposition-notification`: tell a message's sender what became of it (an
    /// IMDN).
    AccountDispositionNotification(AccountDisposition),
    /// `account-mark-conversation-read`: every message from a contact was read.
    AccountMarkConversationRead {
        /// The account.
        account: Aor,
        /// The other party of the conversation.
        contact: Aor,
    },
    /// `account-remove-message`: remove one stored message of a conversation.
    AccountRemoveMessage {
        /// The account.
        account: Aor,
        /// The message.
        message_id: String,
        /// The other party of the conversation.
        contact: Aor,
    },
    /// `account-remove-conversation`: remove a whole stored conversation.
    AccountRemoveConversation {
        /// The account.
        account: Aor,
        /// The other party of the conversation.
        contact: Aor,
    },
    /// `account-devicetoken`: the push notification token of the device the account is on.
    AccountDevicetoken(DeviceToken),
    /// `account-fetch-addressbook`: the account's stored address book.
    AccountFetchAddressbook {
        /// The account.
        account: Aor,
    },
    /// `account-update-addressbook`: add, change or delete an item of the address book.
    AccountUpdateAddressbook(AddressbookUpdate),
    /// A request of the protocol whose fields this model does not carry (see [`NOT_MODELLED`]).
    NotModelled(&'static str),
}

/// The fields of `account-devicetoken`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceToken {
    /// The account.
    pub account: Aor,
    /// The push token; none (`null`) stops push notifications.
    pub token: Option<String>,
    /// The push platform (`ios`, `android`, `firebase`, `apple`, ...).
    pub platform: Option<String>,
    /// The device's id.
    pub device: Option<String>,
    /// The app's id.
    pub app: Option<String>,
    /// Whether pushes are silent.
    pub silent: Option<bool>,
}

/// The fields of `account-update-addressbook`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressbookUpdate {
    /// The account.
    pub account: Aor,
    /// `add`, `update` or `delete`.
    pub action: String,
    /// `contact`, `group`, `policy`, or `groupMember` (sylkrtc.js's: `data` is then
    /// `{groupId, contactId}`).
    pub kind: String,
    /// The item (its `id` names it), as the client gave it.
    pub data: Map<String, Value>,
}

/// The fields of `account-add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountAdd {
    /// The account's address of record.
    pub account: Aor,
    /// The credential: an HA1 digest by default, a plain password with `ha1: false`.
    pub secret: Secret,
    /// The display name for SIP From headers.
    pub display_name: Option<String>,
    /// The User-Agent for the account's SIP requests.
    pub user_agent: Option<String>,
    /// Prefixes of SIP header names to pass to the browser on incoming calls.
    pub incoming_header_prefixes: Vec<String>,
}

/// An account's credential. Its `Debug` output never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The HA1 digest `md5(user:realm:password)` as 32 lower-case hex digits.
    Ha1(String),
    /// A plain password (sent with `ha1: false`).
    Password(String),
}

impl Secret {
    /// The secret's text (the HA1 hex or the password): for the SIP digest, never for logs.
    pub fn expose(&self) -> &str {
        match self {
            Secret::Ha1(text) | Secret::Password(text) => text,
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Ha1(_) => f.write_str("Ha1(<redacted>)"),
            Secret::Password(_) => f.write_str("Password(<redacted>)"),
        }
    }
}

/// A SIP header a client adds to an INVITE or its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header name (a SIP token).
    pub name: String,
    /// The header value (a single line).
    pub value: String,
}

/// The fields of `session-create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCreate {
    /// The calling account.
    pub account: Aor,
    /// The client-chosen session id.
    pub session: String,
    /// The callee.
    pub uri: Aor,
    /// The browser's SDP offer.
    pub sdp: String,
    /// Extra SIP headers for the INVITE.
    pub headers: Vec<Header>,
}

/// The fields of `session-answer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAnswer {
    /// The session id.
    pub session: String,
    /// The browser's SDP answer.
    pub sdp: String,
    /// Extra SIP headers for the 200 OK.
    pub headers: Vec<Header>,
}

/// The fields of `session-trickle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTrickle {
    /// The session id.
    pub session: String,
    /// The candidates; an empty list marks the end of candidates.
    pub candidates: Vec<Candidate>,
}

/// One trickled ICE candidate, as the browser's `RTCIceCandidate` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The `candidate:` line.
    pub candidate: String,
    /// The media stream id the candidate belongs to.
    pub sdp_mid: Option<String>,
    /// The index of the m-line the candidate belongs to.
    pub sdp_mline_index: Option<u32>,
}

/// The fields of `session-update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUpdate {
    /// The session id.
    pub session: String,
    /// An SDP offer (re-INVITE) or the answer to a remote re-INVITE.
    pub sdp: String,
    /// Extra SIP headers.
    pub headers: Vec<Header>,
}

/// The fields of `session-dtmf-info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDtmfInfo {
    /// The session id.
    pub session: String,
    /// One or more tones: `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: String,
    /// The duration of each tone in milliseconds.
    pub duration: Option<u32>,
}

/// The fields of `session-message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMessage {
    /// The session id.
    pub session: String,
    /// The client's id for the message (the CPIM `imdn.Message-ID`).
    pub message_id: String,
    /// The body.
    pub content: String,
    /// Its MIME type.
    pub content_type: String,
    /// When it was written (ISO 8601), as the client says; none: now.
    pub timestamp: Option<String>,
}

/// The fields of `account-message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountMessage {
    /// The sending account.
    pub account: Aor,
    /// The recipient.
    pub uri: Aor,
    /// The client's id for the message (the CPIM `imdn.Message-ID`).
    pub message_id: String,
    /// The body.
    pub content: String,
    /// Its MIME type.
    pub content_type: String,
    /// When it was written (ISO 8601), as the client says; none: now.
    pub timestamp: Option<String>,
}

/// The fields of `account-disposition-notification`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDisposition {
    /// The account that received the message.
    pub account: Aor,
    /// The message's sender, who gets the notification.
    pub uri: Aor,
    /// The message's id.
    pub message_id: String,
    /// `delivered`, `displayed`, `failed`, `forbidden` or `error`.
    pub state: String,
    /// The message's own timestamp (RFC 3339).
    pub timestamp: Option<String>,
}

/// The fields of `account-sync-conversations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConversations {
    /// The account.
    pub account: Aor,
    /// The last message the client has: the sync starts after it.
    pub message_id: Option<String>,
    /// Or a time (RFC 3339): the sync starts there.
    pub since: Option<String>,
    /// The most messages to send.
    pub limit: Option<u32>,
}

/// The longest password (or HA1) the reference server accepts.
const MAX_PASSWORD_LEN: usize = 9999;
/// The DTMF duration range accepted, in milliseconds.
const DTMF_DURATION_MS: std::ops::RangeInclusive<u32> = 1..=10_000;

impl RequestBody {
    /// The request's `sylkrtc` name.
    pub fn name(&self) -> &'static str {
        match self {
            RequestBody::Ping => "ping",
            RequestBody::LookupPublicKey { .. } => "lookup-public-key",
            RequestBody::AccountAdd(_) => "account-add",
            RequestBody::AccountRemove { .. } => "account-remove",
            RequestBody::AccountRegister { .. } => "account-register",
            RequestBody::AccountUnregister { .. } => "account-unregister",
            RequestBody::SessionCreate(_) => "session-create",
            RequestBody::SessionAnswer(_) => "session-answer",
            RequestBody::SessionTrickle(_) => "session-trickle",
            RequestBody::SessionTerminate { .. } => "session-terminate",
            RequestBody::SessionUpdate(_) => "session-update",
            RequestBody::SessionDtmfInfo(_) => "session-dtmf-info",
            RequestBody::SessionMessage(_) => "session-message",
            RequestBody::AccountMessage(_) => "account-message",
            RequestBody::AccountSyncConversations(_) => "account-sync-conversations",
            RequestBody::AccountDispositionNotification(_) => "account-disposition-notification",
            RequestBody::AccountMarkConversationRead { .. } => "account-mark-conversation-read",
            RequestBody::AccountRemoveMessage { .. } => "account-remove-message",
            RequestBody::AccountRemoveConversation { .. } => "account-remove-conversation",
            RequestBody::AccountDevicetoken(_) => "account-devicetoken",
            RequestBody::AccountFetchAddressbook { .. } => "account-fetch-addressbook",
            RequestBody::AccountUpdateAddressbook(_) => "account-update-addressbook",
            RequestBody::NotModelled(name) => name,
        }
    }

    fn parse(name: &str, fields: Fields<'_>) -> Result<RequestBody> {
        Ok(match name {
            "ping" => RequestBody::Ping,
            "lookup-public-key" => RequestBody::LookupPublicKey {
                uri: aor(fields, "uri")?,
            },
            "account-add" => RequestBody::AccountAdd(AccountAdd::parse(fields)?),
            "account-remove" => RequestBody::AccountRemove {
                account: aor(fields, "account")?,
            },
            "account-register" => RequestBody::AccountRegister {
                account: aor(fields, "account")?,
            },
            "account-unregister" => RequestBody::AccountUnregister {
                account: aor(fields, "account")?,
            },
            "session-create" => RequestBody::SessionCreate(SessionCreate {
                account: aor(fields, "account")?,
                session: session(fields)?,
                uri: aor(fields, "uri")?,
                sdp: fields.string("sdp")?.to_owned(),
                headers: headers(fields)?,
            }),
            "session-answer" => RequestBody::SessionAnswer(SessionAnswer {
                session: session(fields)?,
                sdp: fields.string("sdp")?.to_owned(),
                headers: headers(fields)?,
            }),
            "session-trickle" => RequestBody::SessionTrickle(SessionTrickle {
                session: session(fields)?,
                candidates: candidates(fields)?,
            }),
            "session-terminate" => RequestBody::SessionTerminate {
                session: session(fields)?,
            },
            "session-update" => RequestBody::SessionUpdate(SessionUpdate {
                session: session(fields)?,
                sdp: fields.string("sdp")?.to_owned(),
                headers: headers(fields)?,
            }),
            "session-dtmf-info" => RequestBody::SessionDtmfInfo(SessionDtmfInfo::parse(fields)?),
            "session-message" => RequestBody::SessionMessage(SessionMessage {
                session: session(fields)?,
                message_id: fields.non_empty("message_id")?.to_owned(),
                content: fields.string("content")?.to_owned(),
                content_type: fields.non_empty("content_type")?.to_owned(),
                timestamp: fields.opt_string("timestamp")?.map(str::to_owned),
            }),
            "account-disposition-notification" => {
                let state = fields.string("state")?;
                if !["delivered", "displayed", "failed", "forbidden", "error"].contains(&state) {
                    return Err(Error::invalid(
                        "state",
                        "must be delivered, displayed, failed, forbidden or error",
                    ));
                }
                RequestBody::AccountDispositionNotification(AccountDisposition {
                    account: aor(fields, "account")?,
                    uri: aor(fields, "uri")?,
                    message_id: fields.non_empty("message_id")?.to_owned(),
                    state: state.to_owned(),
                    timestamp: fields.opt_string("timestamp")?.map(str::to_owned),
                })
            }
            "account-sync-conversations" => {
                RequestBody::AccountSyncConversations(SyncConversations {
                    account: aor(fields, "account")?,
                    message_id: fields.opt_string("message_id")?.map(str::to_owned),
                    since: fields.opt_string("since")?.map(str::to_owned),
                    limit: fields.opt_u32("limit")?,
                })
            }
            "account-message" => RequestBody::AccountMessage(AccountMessage {
                account: aor(fields, "account")?,
                uri: aor(fields, "uri")?,
                message_id: fields.non_empty("message_id")?.to_owned(),
                content: fields.string("content")?.to_owned(),
                content_type: fields.non_empty("content_type")?.to_owned(),
                timestamp: fields.opt_string("timestamp")?.map(str::to_owned),
            }),
            "account-mark-conversation-read" => RequestBody::AccountMarkConversationRead {
                account: aor(fields, "account")?,
                contact: aor(fields, "contact")?,
            },
            "account-remove-message" => RequestBody::AccountRemoveMessage {
                account: aor(fields, "account")?,
                message_id: fields.non_empty("message_id")?.to_owned(),
                contact: aor(fields, "contact")?,
            },
            "account-remove-conversation" => RequestBody::AccountRemoveConversation {
                account: aor(fields, "account")?,
                contact: aor(fields, "contact")?,
            },
            "account-devicetoken" => RequestBody::AccountDevicetoken(DeviceToken {
                account: aor(fields, "account")?,
                token: fields.opt_string("token")?.map(str::to_owned),
                platform: fields.opt_string("platform")?.map(str::to_owned),
                device: fields.opt_string("device")?.map(str::to_owned),
                app: fields.opt_string("app")?.map(str::to_owned),
                silent: fields.opt_bool("silent")?,
            }),
            "account-fetch-addressbook" => RequestBody::AccountFetchAddressbook {
                account: aor(fields, "account")?,
            },
            "account-update-addressbook" => {
                let action = fields.string("action")?;
                if !["add", "update", "delete"].contains(&action) {
                    return Err(Error::invalid("action", "must be add, update or delete"));
                }
                let kind = fields.string("type")?;
                if !["contact", "group", "policy", "groupMember"].contains(&kind) {
                    return Err(Error::invalid(
                        "type",
                        "must be contact, group, policy or groupMember",
                    ));
                }
                let data = fields.object("data")?;
                let names: &[&str] = if kind == "groupMember" {
                    &["groupId", "contactId"]
                } else {
                    &["id"]
                };
                let path = fields.name("data");
                let nested = Fields::nested(data, &path);
                for name in names {
                    let id = nested.non_empty(name)?;
                    if id.len() > 128 {
                        return Err(Error::invalid(
                            nested.name(name),
                            "must be at most 128 bytes",
                        ));
                    }
                }
                RequestBody::AccountUpdateAddressbook(AddressbookUpdate {
                    account: aor(fields, "account")?,
                    action: action.to_owned(),
                    kind: kind.to_owned(),
                    data: data.clone(),
                })
            }
            other => match NOT_MODELLED.iter().find(|known| **known == other) {
                Some(known) => RequestBody::NotModelled(known),
                None => return Err(Error::UnknownRequest(other.to_owned())),
            },
        })
    }

    fn write(&self, out: &mut Map<String, Value>) {
        let mut put = |key: &str, value: Value| {
            out.insert(key.to_owned(), value);
        };
        match self {
            RequestBody::Ping | RequestBody::NotModelled(_) => {}
            RequestBody::LookupPublicKey { uri } => put("uri", json!(uri.to_string())),
            RequestBody::AccountAdd(add) => {
                put("account", json!(add.account.to_string()));
                put("password", json!(add.secret.expose()));
                if let Secret::Password(_) = add.secret {
                    put("ha1", json!(false));
                }
                if let Some(name) = &add.display_name {
                    put("display_name", json!(name));
                }
                if let Some(agent) = &add.user_agent {
                    put("user_agent", json!(agent));
                }
                if !add.incoming_header_prefixes.is_empty() {
                    put(
                        "incoming_header_prefixes",
                        json!(add.incoming_header_prefixes),
                    );
                }
            }
            RequestBody::AccountRemove { account }
            | RequestBody::AccountRegister { account }
            | RequestBody::AccountUnregister { account } => {
                put("account", json!(account.to_string()))
            }
            RequestBody::SessionCreate(create) => {
                put("account", json!(create.account.to_string()));
                put("session", json!(create.session));
                put("uri", json!(create.uri.to_string()));
                put("sdp", json!(create.sdp));
                write_headers(&mut put, &create.headers);
            }
            RequestBody::SessionAnswer(answer) => {
                put("session", json!(answer.session));
                put("sdp", json!(answer.sdp));
                write_headers(&mut put, &answer.headers);
            }
            RequestBody::SessionTrickle(trickle) => {
                put("session", json!(trickle.session));
                let candidates: Vec<Value> =
                    trickle.candidates.iter().map(Candidate::to_json).collect();
                put("candidates", Value::Array(candidates));
            }
            RequestBody::SessionTerminate { session } => put("session", json!(session)),
            RequestBody::SessionUpdate(update) => {
                put("session", json!(update.session));
                put("sdp", json!(update.sdp));
                write_headers(&mut put, &update.headers);
            }
            RequestBody::AccountDispositionNotification(notification) => {
                put("account", json!(notification.account.to_string()));
                put("uri", json!(notification.uri.to_string()));
                put("message_id", json!(notification.message_id));
                put("state", json!(notification.state));
                if let Some(timestamp) = &notification.timestamp {
                    put("timestamp", json!(timestamp));
                }
            }
            RequestBody::AccountSyncConversations(sync) => {
                put("account", json!(sync.account.to_string()));
                if let Some(id) = &sync.message_id {
                    put("message_id", json!(id));
                }
                if let Some(since) = &sync.since {
                    put("since", json!(since));
                }
                if let Some(limit) = sync.limit {
                    put("limit", json!(limit));
                }
            }
            RequestBody::AccountMessage(message) => {
                put("account", json!(message.account.to_string()));
                put("uri", json!(message.uri.to_string()));
                put("message_id", json!(message.message_id));
                put("content", json!(message.content));
                put("content_type", json!(message.content_type));
                if let Some(timestamp) = &message.timestamp {
                    put("timestamp", json!(timestamp));
                }
            }
            RequestBody::AccountMarkConversationRead { account, contact }
            | RequestBody::AccountRemoveConversation { account, contact } => {
                put("account", json!(account.to_string()));
                put("contact", json!(contact.to_string()));
            }
            RequestBody::AccountFetchAddressbook { account } => {
                put("account", json!(account.to_string()));
            }
            RequestBody::AccountDevicetoken(token) => {
                put("account", json!(token.account.to_string()));
                put("token", json!(token.token));
                for (name, value) in [
                    ("platform", &token.platform),
                    ("device", &token.device),
                    ("app", &token.app),
                ] {
                    if let Some(value) = value {
                        put(name, json!(value));
                    }
                }
                if let Some(silent) = token.silent {
                    put("silent", json!(silent));
                }
            }
            RequestBody::AccountUpdateAddressbook(update) => {
                put("account", json!(update.account.to_string()));
                put("action", json!(update.action));
                put("type", json!(update.kind));
                put("data", Value::Object(update.data.clone()));
            }
            RequestBody::AccountRemoveMessage {
                account,
                message_id,
                contact,
            } => {
                put("account", json!(account.to_string()));
                put("message_id", json!(message_id));
                put("contact", json!(contact.to_string()));
            }
            RequestBody::SessionMessage(message) => {
                put("session", json!(message.session));
                put("message_id", json!(message.message_id));
                put("content", json!(message.content));
                put("content_type", json!(message.content_type));
                if let Some(timestamp) = &message.timestamp {
                    put("timestamp", json!(timestamp));
                }
            }
            RequestBody::SessionDtmfInfo(dtmf) => {
                put("session", json!(dtmf.session));
                put("digit", json!(dtmf.digit));
                if let Some(duration) = dtmf.duration {
                    put("duration", json!(duration));
                }
            }
        }
    }
}

impl Request {
    /// Parses a client message.
    ///
    /// The `transaction` is read first, so that every later failure can still be answered.
    pub fn parse(text: &str) -> Result<Request, RequestError> {
        let map = fields::object(text).map_err(|error| RequestError {
            transaction: None,
            name: None,
            error,
        })?;
        Self::from_object(&map)
    }

    /// Reads a request out of an already parsed JSON object.
    pub fn from_object(map: &Map<String, Value>) -> Result<Request, RequestError> {
        let fields = Fields::new(map);
        let parse = || -> Result<Request> {
            let transaction = fields.string("transaction")?.to_owned();
            let body = RequestBody::parse(fields.string("sylkrtc")?, fields)?;
            Ok(Request { transaction, body })
        };
        parse().map_err(|error| RequestError {
            transaction: fields.string("transaction").ok().map(str::to_owned),
            name: fields.string("sylkrtc").ok().map(str::to_owned),
            error,
        })
    }

    /// The request as a JSON object (both protocol versions encode requests alike).
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("sylkrtc".to_owned(), json!(self.body.name()));
        map.insert("transaction".to_owned(), json!(self.transaction));
        self.body.write(&mut map);
        Value::Object(map)
    }

    /// The request as JSON text.
    pub fn encode(&self) -> String {
        self.to_json().to_string()
    }
}

impl AccountAdd {
    fn parse(fields: Fields<'_>) -> Result<AccountAdd> {
        let account = aor(fields, "account")?;
        let password = fields.string("password")?;
        if password.is_empty() || password.chars().count() > MAX_PASSWORD_LEN {
            return Err(Error::invalid(
                "password",
                format!("must be 1 to {MAX_PASSWORD_LEN} characters"),
            ));
        }
        // sylkrtc.js sends `ha1: false` with a plain password only in some versions; others send
        // the plain password alone. As the reference server does, a password that is not an HA1
        // (32 hex digits) is taken as a plain one; an explicit `ha1: true` insists on the HA1.
        let is_ha1 = password.len() == 32 && password.bytes().all(|b| b.is_ascii_hexdigit());
        let secret = match fields.opt_bool("ha1")? {
            Some(false) => Secret::Password(password.to_owned()),
            Some(true) if !is_ha1 => {
                return Err(Error::invalid(
                    "password",
                    "`ha1: true` needs the HA1 as 32 hex digits",
                ));
            }
            _ if is_ha1 => Secret::Ha1(password.to_ascii_lowercase()),
            _ => Secret::Password(password.to_owned()),
        };
        Ok(AccountAdd {
            account,
            secret,
            display_name: fields.opt_string("display_name")?.map(str::to_owned),
            user_agent: single_line(fields, "user_agent")?,
            incoming_header_prefixes: fields
                .opt_strings("incoming_header_prefixes")?
                .unwrap_or_default(),
        })
    }
}

impl SessionDtmfInfo {
    fn parse(fields: Fields<'_>) -> Result<SessionDtmfInfo> {
        let session = session(fields)?;
        let digit = fields.non_empty("digit")?;
        if !digit
            .bytes()
            .all(|b| b.is_ascii_digit() || b"*#ABCDabcd".contains(&b))
        {
            return Err(Error::invalid("digit", "DTMF tones are 0-9, *, # and A-D"));
        }
        let duration = fields.opt_u32("duration")?;
        if duration.is_some_and(|ms| !DTMF_DURATION_MS.contains(&ms)) {
            return Err(Error::invalid(
                "duration",
                format!(
                    "must be {} to {} milliseconds",
                    DTMF_DURATION_MS.start(),
                    DTMF_DURATION_MS.end()
                ),
            ));
        }
        Ok(SessionDtmfInfo {
            session,
            digit: digit.to_ascii_uppercase(),
            duration,
        })
    }
}

impl Candidate {
    fn parse(fields: Fields<'_>) -> Result<Candidate> {
        let candidate = Candidate {
            candidate: fields.string("candidate")?.to_owned(),
            sdp_mid: fields.opt_string("sdpMid")?.map(str::to_owned),
            sdp_mline_index: fields.opt_u32("sdpMLineIndex")?,
        };
        if candidate.sdp_mid.is_none() && candidate.sdp_mline_index.is_none() {
            // The browser API refuses such a candidate too: it cannot be tied to a stream.
            return Err(Error::MissingField(fields.name("sdpMid")));
        }
        Ok(candidate)
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("candidate".to_owned(), json!(self.candidate));
        if let Some(mid) = &self.sdp_mid {
            map.insert("sdpMid".to_owned(), json!(mid));
        }
        if let Some(index) = self.sdp_mline_index {
            map.insert("sdpMLineIndex".to_owned(), json!(index));
        }
        Value::Object(map)
    }
}

fn aor(fields: Fields<'_>, key: &str) -> Result<Aor> {
    let text = fields.string(key)?;
    Aor::parse(text)
        .map_err(|reason| Error::invalid(fields.name(key), format!("{reason}: {text:?}")))
}

fn session(fields: Fields<'_>) -> Result<String> {
    fields.non_empty("session").map(str::to_owned)
}

/// A string that will be copied into a SIP header, where CR or LF would inject headers.
fn single_line(fields: Fields<'_>, key: &str) -> Result<Option<String>> {
    let Some(text) = fields.opt_string(key)? else {
        return Ok(None);
    };
    if text.contains(['\r', '\n', '\0']) {
        return Err(Error::invalid(fields.name(key), "must be a single line"));
    }
    Ok(Some(text.to_owned()))
}

fn headers(fields: Fields<'_>) -> Result<Vec<Header>> {
    let Some(items) = fields.opt_array("headers")? else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let path = format!("headers[{index}]");
            let Value::Object(map) = item else {
                return Err(Error::invalid(
                    path,
                    "expected an object with `name` and `value`",
                ));
            };
            let header = Fields::nested(map, &path);
            let name = header.non_empty("name")?;
            // RFC 3261 token characters: anything else would corrupt the SIP message.
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
            {
                return Err(Error::invalid(
                    header.name("name"),
                    "not a valid SIP header name",
                ));
            }
            let value = single_line(header, "value")?
                .ok_or_else(|| Error::MissingField(header.name("value")))?;
            Ok(Header {
                name: name.to_owned(),
                value,
            })
        })
        .collect()
}

fn write_headers(put: &mut impl FnMut(&str, Value), headers: &[Header]) {
    if headers.is_empty() {
        return;
    }
    let list = headers
        .iter()
        .map(|header| json!({"name": header.name, "value": header.value}))
        .collect();
    put("headers", Value::Array(list));
}

fn candidates(fields: Fields<'_>) -> Result<Vec<Candidate>> {
    fields
        .array("candidates")?
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let path = format!("candidates[{index}]");
            match item {
                Value::Object(map) => Candidate::parse(Fields::nested(map, &path)),
                _ => Err(Error::invalid(path, "expected an object")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
