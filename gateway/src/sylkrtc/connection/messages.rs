//! The message requests of a connection: `account-message` is checked here, stored (the
//! handler asks the store, [`Connection::handle_store`]), acked, then sent by the handler,
//! whose outcome comes back as a `disposition-notification`.

use protocol::{
    AccountDisposition, AccountEvent, AccountMessage, DispositionNotification, Event,
    ServerMessage, SyncAction, SyncConversations, SyncedMessage,
};

use super::{Connection, Reported, StoreQuery, SyncFrom};
use crate::messaging::{self, Outgoing};
use crate::metrics::ErrorKind;

type Refusal = (ErrorKind, String);

/// The most messages one sync sends (the reference's default).
const SYNC_LIMIT: u32 = 5000;

/// A stored message as a sync gives it.
pub(super) fn synced(message: store::Message) -> SyncedMessage {
    SyncedMessage {
        contact: message.contact,
        timestamp: message.timestamp,
        message_id: message.message_id,
        content_type: message.content_type,
        content: message.content,
        disposition: message.disposition,
        direction: message.direction.as_str().to_owned(),
        state: message.state.as_str().to_owned(),
    }
}

/// A timestamp the client gave (RFC 3339), or now.
pub(super) fn checked_timestamp(timestamp: Option<String>) -> Result<String, Refusal> {
    match timestamp {
        Some(timestamp) if messaging::parse_timestamp(&timestamp).is_some() => Ok(timestamp),
        Some(_) => Err((
            ErrorKind::Invalid,
            "timestamp must be an RFC 3339 date and time".to_owned(),
        )),
        None => Ok(messaging::format_timestamp(store::now_millis())),
    }
}

/// The `sync` event that tells an account's other devices of a message it sent: the fields of
/// its `account-message`.
pub(super) fn added(outgoing: &Outgoing) -> SyncAction {
    SyncAction::MessageAdded {
        account: outgoing.from.to_string(),
        uri: outgoing.to.to_string(),
        message_id: outgoing.message_id.clone(),
        content: outgoing.content.clone(),
        content_type: outgoing.content_type.clone(),
        timestamp: outgoing.timestamp.clone(),
    }
}

impl Connection {
    /// An account added here and registered: its credentials were accepted, so its stored
    /// conversations are the client's to read and change (adding an account proves nothing).
    pub(super) fn authenticated(&self, aor: &protocol::Aor) -> Result<usize, Refusal> {
        let index = self.account_index(aor)?;
        let registered = self.accounts[index]
            .registration
            .as_ref()
            .is_some_and(|registration| registration.reported == Some(Reported::Registered));
        if !registered {
            return Err((ErrorKind::Refused, "Account not authenticated".to_owned()));
        }
        Ok(index)
    }

    /// The account a message or notification goes out for: authenticated here, and a message
    /// id that can go into a header.
    fn sending_account(&self, aor: &protocol::Aor, message_id: &str) -> Result<usize, Refusal> {
        let index = self.authenticated(aor)?;
        if !messaging::valid_message_id(message_id) {
            return Err((
                ErrorKind::Invalid,
                "message_id must be 1 to 128 visible ASCII characters".to_owned(),
            ));
        }
        Ok(index)
    }

    /// `account-message`: a registered account's message, stored as pending before its ack.
    pub(super) fn account_message(
        &mut self,
        transaction: &str,
        message: AccountMessage,
    ) -> Result<(), Refusal> {
        let index = self.sending_account(&message.account, &message.message_id)?;
        let account = &self.accounts[index];
        if !messaging::valid_content_type(&message.content_type) {
            return Err((
                ErrorKind::Invalid,
                "content_type must be a MIME type (type/subtype)".to_owned(),
            ));
        }
        let timestamp = checked_timestamp(message.timestamp)?;
        let outgoing = Outgoing {
            account: account.sip(),
            from: message.account,
            to: message.uri,
            message_id: message.message_id,
            timestamp,
            content_type: message.content_type,
            content: message.content,
            notification: false,
        };
        self.ask_store(transaction, StoreQuery::AddMessage(Box::new(outgoing)));
        Ok(())
    }

    /// `account-disposition-notification`: the stored state of a message the account received
    /// moves on, then (after the ack) an IMDN goes to its sender. Nothing reports the IMDN's
    /// own SIP result, as in the reference.
    pub(super) fn account_disposition(
        &mut self,
        transaction: &str,
        notification: AccountDisposition,
    ) -> Result<(), Refusal> {
        let index = self.sending_account(&notification.account, &notification.message_id)?;
        let account = &self.accounts[index];
        let now = messaging::format_timestamp(store::now_millis());
        let datetime = checked_timestamp(notification.timestamp)?;
        let Some(state) = store::State::parse(&notification.state) else {
            return Err((ErrorKind::Invalid, "unknown state".to_owned()));
        };
        let imdn = Outgoing {
            account: account.sip(),
            from: notification.account.clone(),
            to: notification.uri,
            message_id: uuid::Uuid::new_v4().to_string(),
            timestamp: now,
            content_type: "message/imdn+xml".to_owned(),
            content: messaging::imdn(&notification.message_id, &datetime, &notification.state),
            notification: true,
        };
        self.ask_store(
            transaction,
            StoreQuery::Notify {
                account: notification.account,
                message_id: notification.message_id,
                state,
                imdn: Box::new(imdn),
            },
        );
        Ok(())
    }

    /// `account-sync-conversations`: the account's stored messages (after `message_id`, or
    /// from `since`), at most `limit` (5,000), as `sync-conversations` after the ack.
    pub(super) fn account_sync(
        &mut self,
        transaction: &str,
        sync: SyncConversations,
    ) -> Result<(), Refusal> {
        self.authenticated(&sync.account)?;
        let from = match (sync.message_id, sync.since) {
            (Some(id), _) => SyncFrom::Message(id),
            (None, Some(since)) => match messaging::parse_timestamp(&since) {
                Some(at) => SyncFrom::Time(at),
                None => {
                    return Err((
                        ErrorKind::Invalid,
                        "since must be an RFC 3339 date and time".to_owned(),
                    ));
                }
            },
            (None, None) => SyncFrom::Start,
        };
        let limit = sync.limit.unwrap_or(SYNC_LIMIT).clamp(1, SYNC_LIMIT);
        self.ask_store(
            transaction,
            StoreQuery::Sync {
                account: sync.account,
                from,
                limit,
            },
        );
        Ok(())
    }

    /// What became of a message this connection sent: a `disposition-notification` event,
    /// for the account's other connections too when it is the SIP outcome (they heard of the
    /// message as a `sync`).
    pub(crate) fn handle_message_sent(
        &mut self,
        outgoing: &Outgoing,
        state: store::State,
        outcome: Option<sip::RequestOutcome>,
    ) {
        let fork = outcome.is_some();
        let (code, reason) = match outcome {
            Some(outcome) => (Some(outcome.code), Some(outcome.reason)),
            None => (None, None),
        };
        let event = AccountEvent::DispositionNotification(DispositionNotification {
            message_id: outgoing.message_id.clone(),
            message_timestamp: Some(outgoing.timestamp.clone()),
            state: state.as_str().to_owned(),
            code,
            reason,
        });
        if fork {
            self.fork(&outgoing.from, event.clone());
        }
        self.send(ServerMessage::Event(Event::Account {
            account: outgoing.from.to_string(),
            event,
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use protocol::Version;
    use serde_json::{Value, json};
    use sip::RegistrationEvent;

    use super::super::{Connection, Outcome, Output, SipDomains, StoreAnswer, StoreQuery};

    /// Sends `request`; what the connection queued, as JSON (driver work by name).
    fn exchange(connection: &mut Connection, request: Value) -> (Outcome, Vec<Value>) {
        let handled = connection.handle_text(&request.to_string());
        (handled.outcome, drain(connection))
    }

    fn drain(connection: &mut Connection) -> Vec<Value> {
        std::iter::from_fn(|| connection.poll_output())
            .map(|output| match output {
                Output::Send(text) => serde_json::from_str(&text).expect("JSON"),
                Output::Store {
                    transaction,
                    query: StoreQuery::AddMessage(outgoing),
                } => json!({"store": transaction, "id": outgoing.message_id,
                    "to": outgoing.to.to_string(), "timestamp": outgoing.timestamp}),
                Output::SendMessage(outgoing) => json!({"send": outgoing.message_id}),
                Output::Fork { account, event } => super::super::tests::fork(account, event),
                Output::Store {
                    transaction,
                    query:
                        StoreQuery::Sync {
                            account,
                            from,
                            limit,
                        },
                } => json!({"sync": transaction, "account": account.to_string(),
                    "from": format!("{from:?}"), "limit": limit}),
                other => json!({"other": format!("{other:?}")}),
            })
            .collect()
    }

    fn message(transaction: &str, id: &str) -> Value {
        json!({"sylkrtc": "account-message", "transaction": transaction,
            "account": "alice@example.com", "uri": "sip:bob@example.org", "message_id": id,
            "content": "hi", "content_type": "text/plain", "timestamp": "2026-12-04T10:00:00Z"})
    }

    /// Stored before the ack, sent after it; a repeat already accepted is acked with its state
    /// and not sent again; the SIP outcome becomes a `disposition-notification`.
    #[test]
    fn a_message_is_stored_then_acked_then_sent() {
        let mut connection = Connection::new(Version::V2, Arc::new(SipDomains::new(&["*".into()])));
        drain(&mut connection);
        exchange(
            &mut connection,
            json!({"sylkrtc": "account-add", "transaction": "a", "account": "alice@example.com",
                "password": "884edfee38ed471b8a15006700139485"}),
        );
        let (outcome, out) = exchange(&mut connection, message("m", "id1"));
        assert_eq!(
            outcome,
            Outcome::Error {
                kind: crate::metrics::ErrorKind::Refused,
                text: "Account not authenticated".into()
            }
        );
        assert_eq!(out[0]["error"], "Account not authenticated");
        exchange(
            &mut connection,
            json!({"sylkrtc": "account-register", "transaction": "r", "account": "alice@example.com"}),
        );
        connection.handle_registration(1, RegistrationEvent::Registered { expires: 600 });
        drain(&mut connection);

        let (outcome, out) = exchange(&mut connection, message("m1", "id1"));
        assert_eq!(outcome, Outcome::Deferred);
        assert_eq!(
            out,
            [json!({"store": "m1", "id": "id1", "to": "bob@example.org",
                "timestamp": "2026-12-04T10:00:00Z"})]
        );
        let outgoing = || {
            Box::new(crate::messaging::Outgoing {
                account: sip::driver::Account {
                    user: "alice".into(),
                    domain: "example.com".into(),
                    display_name: None,
                    credentials: sip::Credentials {
                        username: "alice".into(),
                        secret: sip::Secret::Password("pw".into()),
                    },
                    user_agent: None,
                    contact_params: Vec::new(),
                },
                from: protocol::Aor::parse("alice@example.com").expect("an address"),
                to: protocol::Aor::parse("bob@example.org").expect("an address"),
                message_id: "id1".into(),
                timestamp: "2026-12-04T10:00:00Z".into(),
                content_type: "text/plain".into(),
                content: "hi".into(),
                notification: false,
            })
        };
        connection.handle_store(
            "m1".into(),
            Ok(StoreAnswer::MessageStored {
                outgoing: outgoing(),
                repeat_of: None,
            }),
        );
        // The account's other connections hear of the message (as sylkrtc.js reads it).
        assert_eq!(
            drain(&mut connection),
            [
                json!({"sylkrtc": "ack", "transaction": "m1"}),
                json!({"fork": {"sylkrtc": "account-event", "account": "alice@example.com",
                    "event": "sync", "type": "message", "action": "add",
                    "content": {"account": "alice@example.com", "uri": "bob@example.org",
                        "message_id": "id1", "content": "hi", "content_type": "text/plain",
                        "timestamp": "2026-12-04T10:00:00Z"}}}),
                json!({"send": "id1"})
            ]
        );
        connection.handle_message_sent(
            &outgoing(),
            store::State::Failed,
            Some(sip::RequestOutcome {
                code: 404,
                reason: "Not Found".into(),
            }),
        );
        let notification = json!({"sylkrtc": "account-event", "account": "alice@example.com",
            "event": "disposition-notification", "message_id": "id1",
            "message_timestamp": "2026-12-04T10:00:00Z", "state": "failed", "code": 404,
            "reason": "Not Found"});
        assert_eq!(
            drain(&mut connection),
            [json!({"fork": notification.clone()}), notification]
        );
        // A repeat of a message that went out: its state, nothing sent, nobody else told.
        connection.handle_store(
            "m2".into(),
            Ok(StoreAnswer::MessageStored {
                outgoing: outgoing(),
                repeat_of: Some(store::State::Delivered),
            }),
        );
        let out = drain(&mut connection);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[1]["state"], "delivered");

        // Fields that would break a SIP header are refused before anything is stored.
        let mut bad = message("m3", "id2");
        bad["content_type"] = json!("text/plain\r\nX-Injected: 1");
        let (_, out) = exchange(&mut connection, bad);
        assert_eq!(
            out[0]["error"],
            "content_type must be a MIME type (type/subtype)"
        );
    }

    /// A sync starts after a message, at a time, or at the start, for a registered account,
    /// and sends at most 5,000 messages.
    #[test]
    fn a_sync_asks_the_store_from_where_the_client_is() {
        let mut connection = Connection::new(Version::V2, Arc::new(SipDomains::new(&["*".into()])));
        drain(&mut connection);
        let sync = |more: Value| {
            let mut request = json!({"sylkrtc": "account-sync-conversations", "transaction": "s",
                "account": "alice@example.com"});
            request
                .as_object_mut()
                .expect("an object")
                .extend(more.as_object().expect("an object").clone());
            request
        };
        let (_, out) = exchange(&mut connection, sync(json!({})));
        assert_eq!(
            out[0]["error"],
            "Unknown account specified: alice@example.com"
        );
        exchange(
            &mut connection,
            json!({"sylkrtc": "account-add", "transaction": "a", "account": "alice@example.com",
                "password": "884edfee38ed471b8a15006700139485"}),
        );
        // Adding an account proves nothing: its conversations need its registration.
        let (_, out) = exchange(&mut connection, sync(json!({})));
        assert_eq!(out[0]["error"], "Account not authenticated");
        connection.handle_text(
            &json!({"sylkrtc": "account-register", "transaction": "r", "account": "alice@example.com"})
                .to_string(),
        );
        connection.handle_registration(1, RegistrationEvent::Registered { expires: 600 });
        drain(&mut connection);
        for (more, from, limit) in [
            (json!({"message_id": null}), "Start", 5000),
            (
                json!({"message_id": "m7", "limit": 10}),
                "Message(\"m7\")",
                10,
            ),
            (
                json!({"since": "1970-01-01T00:00:01Z", "limit": 99999}),
                "Time(1000)",
                5000,
            ),
        ] {
            let (outcome, out) = exchange(&mut connection, sync(more));
            assert_eq!(outcome, Outcome::Deferred);
            assert_eq!(
                out,
                [
                    json!({"sync": "s", "account": "alice@example.com", "from": from, "limit": limit})
                ]
            );
        }
        let (_, out) = exchange(&mut connection, sync(json!({"since": "soon"})));
        assert_eq!(out[0]["error"], "since must be an RFC 3339 date and time");
    }
}
