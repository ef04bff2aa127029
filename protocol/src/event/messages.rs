//! The two events that carry messages, as account events and as session events (a MESSAGE
//! in a call's dialog) alike: `message` and `disposition-notification`.

use serde_json::{Map, Value, json};

use super::Party;
use crate::error::Result;
use crate::fields::Fields;

/// The fields of a `message` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// Who sent it.
    pub sender: Party,
    /// When it was written (RFC 3339).
    pub timestamp: String,
    /// Its id (the CPIM `imdn.Message-ID`, or one the gateway gave it).
    pub message_id: String,
    /// Its body.
    pub content: String,
    /// Its MIME type.
    pub content_type: String,
    /// The notifications the sender asked for (`positive-delivery`, `display`, ...).
    pub disposition_notification: Vec<String>,
}

impl IncomingMessage {
    pub(super) fn write(&self, out: &mut Map<String, Value>) {
        let mut sender = Map::new();
        sender.insert("uri".into(), json!(self.sender.uri));
        if let Some(name) = &self.sender.display_name {
            sender.insert("display_name".into(), json!(name));
        }
        out.insert("sender".into(), Value::Object(sender));
        out.insert("timestamp".into(), json!(self.timestamp));
        out.insert("message_id".into(), json!(self.message_id));
        out.insert("content".into(), json!(self.content));
        out.insert("content_type".into(), json!(self.content_type));
        out.insert(
            "disposition_notification".into(),
            json!(self.disposition_notification),
        );
        out.insert("direction".into(), json!("incoming"));
    }

    pub(super) fn read(fields: Fields<'_>) -> Result<IncomingMessage> {
        let path = fields.name("sender");
        let sender = Fields::nested(fields.object("sender")?, &path);
        Ok(IncomingMessage {
            sender: Party {
                uri: sender.string("uri")?.to_owned(),
                display_name: sender.opt_string("display_name")?.map(str::to_owned),
            },
            timestamp: fields.string("timestamp")?.to_owned(),
            message_id: fields.string("message_id")?.to_owned(),
            content: fields.string("content")?.to_owned(),
            content_type: fields.string("content_type")?.to_owned(),
            disposition_notification: fields
                .opt_strings("disposition_notification")?
                .unwrap_or_default(),
        })
    }
}

/// The fields of a `disposition-notification` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispositionNotification {
    /// The message's id.
    pub message_id: String,
    /// The message's own timestamp.
    pub message_timestamp: Option<String>,
    /// `accepted`, `delivered`, `displayed`, `failed`, ...
    pub state: String,
    /// The SIP status code, when a SIP response decided it.
    pub code: Option<u16>,
    /// Its reason phrase.
    pub reason: Option<String>,
}

impl DispositionNotification {
    pub(super) fn write(&self, out: &mut Map<String, Value>) {
        out.insert("message_id".into(), json!(self.message_id));
        if let Some(timestamp) = &self.message_timestamp {
            out.insert("message_timestamp".into(), json!(timestamp));
        }
        out.insert("state".into(), json!(self.state));
        if let Some(code) = self.code {
            out.insert("code".into(), json!(code));
        }
        if let Some(reason) = &self.reason {
            out.insert("reason".into(), json!(reason));
        }
    }

    pub(super) fn read(fields: Fields<'_>) -> Result<DispositionNotification> {
        Ok(DispositionNotification {
            message_id: fields.string("message_id")?.to_owned(),
            message_timestamp: fields.opt_string("message_timestamp")?.map(str::to_owned),
            state: fields.string("state")?.to_owned(),
            code: fields
                .opt_u32("code")?
                .map(|code| u16::try_from(code).unwrap_or(u16::MAX)),
            reason: fields.opt_string("reason")?.map(str::to_owned),
        })
    }
}
