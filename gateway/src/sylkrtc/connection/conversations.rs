//! The requests that change an account's stored conversations on every device:
//! `account-mark-conversation-read`, `account-remove-message` and
//! `account-remove-conversation`. Each is a store change with its journal entry (what a device
//! that syncs later replays), acked once both are committed, then told to the account's other
//! connections as a `sync` event.

use protocol::{AccountEvent, Aor, SyncAction};

use super::{Connection, Output, StoreQuery};
use crate::messaging;
use crate::metrics::ErrorKind;

type Refusal = (ErrorKind, String);

/// The journal entries' content types (the reference's names, which the Sylk apps read).
pub(crate) const CONVERSATION_READ: &str = "application/sylk-conversation-read";
pub(crate) const MESSAGE_REMOVE: &str = "application/sylk-message-remove";
pub(crate) const CONVERSATION_REMOVE: &str = "application/sylk-conversation-remove";

/// A change to an account's conversations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Every message from `contact` was read.
    Read { contact: Aor },
    /// One message goes.
    RemoveMessage { contact: Aor, message_id: String },
    /// The whole conversation with `contact` goes.
    RemoveConversation { contact: Aor },
}

impl Change {
    /// The journal entry that records the change at `at` (milliseconds since 1970), with its
    /// own fresh id, and the `sync` event that tells the other devices of it.
    pub(crate) fn journal(&self, account: &Aor, at: i64) -> (store::Message, SyncAction) {
        let timestamp = messaging::format_timestamp(at);
        let entry =
            |contact: &Aor, direction, content_type: &str, content: String| store::Message {
                account: account.key(),
                message_id: uuid::Uuid::new_v4().to_string(),
                contact: contact.key(),
                direction,
                content_type: content_type.to_owned(),
                content,
                timestamp: timestamp.clone(),
                at,
                state: store::State::Accepted,
                disposition: Vec::new(),
            };
        match self {
            Change::Read { contact } => (
                entry(
                    contact,
                    store::Direction::None,
                    CONVERSATION_READ,
                    contact.key(),
                ),
                SyncAction::ConversationRead {
                    contact: contact.key(),
                },
            ),
            Change::RemoveMessage {
                contact,
                message_id,
            } => {
                // The entry's content is the event's, as JSON: sylkrtc.js parses it on a sync.
                let content =
                    serde_json::json!({"contact": contact.key(), "message_id": message_id});
                (
                    entry(
                        contact,
                        store::Direction::Outgoing,
                        MESSAGE_REMOVE,
                        content.to_string(),
                    ),
                    SyncAction::MessageRemoved {
                        contact: contact.key(),
                        message_id: message_id.clone(),
                        direction: None,
                    },
                )
            }
            Change::RemoveConversation { contact } => (
                entry(
                    contact,
                    store::Direction::None,
                    CONVERSATION_REMOVE,
                    contact.key(),
                ),
                SyncAction::ConversationRemoved {
                    contact: contact.key(),
                    timestamp: timestamp.clone(),
                },
            ),
        }
    }
}

impl Connection {
    /// The three requests: for a registered account, stored (with the journal entry) before
    /// the ack.
    pub(super) fn change_conversation(
        &mut self,
        transaction: &str,
        account: Aor,
        change: Change,
    ) -> Result<(), Refusal> {
        self.authenticated(&account)?;
        if let Change::RemoveMessage { message_id, .. } = &change
            && !messaging::valid_message_id(message_id)
        {
            return Err((
                ErrorKind::Invalid,
                "message_id must be 1 to 128 visible ASCII characters".to_owned(),
            ));
        }
        self.ask_store(transaction, StoreQuery::Change { account, change });
        Ok(())
    }

    /// An event every other connection holding `account` must see.
    pub(super) fn fork(&mut self, account: &Aor, event: AccountEvent) {
        self.out.push_back(Output::Fork {
            account: account.clone(),
            event,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::tests::{fork, register_alice};
    use super::super::{Connection, Output, SipDomains, StoreAnswer, StoreQuery};
    use super::*;
    use protocol::{SyncAction, Version};
    use serde_json::{Value, json};

    fn drain(connection: &mut Connection) -> Vec<Value> {
        std::iter::from_fn(|| connection.poll_output())
            .map(|output| match output {
                Output::Send(text) => serde_json::from_str(&text).expect("JSON"),
                Output::Store {
                    transaction,
                    query: StoreQuery::Change { account, change },
                } => {
                    let contact = match change {
                        Change::Read { contact }
                        | Change::RemoveMessage { contact, .. }
                        | Change::RemoveConversation { contact } => contact.to_string(),
                    };
                    json!({"store": transaction, "account": account.to_string(),
                        "contact": contact})
                }
                Output::Fork { account, event } => fork(account, event),
                other => json!({"other": format!("{other:?}")}),
            })
            .collect()
    }

    fn request(connection: &mut Connection, request: Value) -> Vec<Value> {
        connection.handle_text(&request.to_string());
        drain(connection)
    }

    fn aor(text: &str) -> Aor {
        Aor::parse(text).expect("an address")
    }

    /// Each request needs the account registered, is stored before its ack, and its `sync`
    /// goes to the other connections once stored; a change that changed nothing is acked and
    /// told to nobody.
    #[test]
    fn a_change_is_stored_acked_then_told_to_the_other_devices() {
        let mut connection = Connection::new(Version::V2, Arc::new(SipDomains::new(&["*".into()])));
        drain(&mut connection);
        let read = json!({"sylkrtc": "account-mark-conversation-read", "transaction": "t",
            "account": "alice@example.com", "contact": "sip:bob@example.org"});
        let out = request(&mut connection, read.clone());
        assert_eq!(
            out[0]["error"],
            "Unknown account specified: alice@example.com"
        );
        register_alice(&mut connection);

        let out = request(&mut connection, read);
        assert_eq!(
            out,
            [json!({"store": "t", "account": "alice@example.com", "contact": "bob@example.org"})]
        );
        connection.handle_store(
            "t".into(),
            Ok(StoreAnswer::Changed {
                account: aor("alice@example.com"),
                sync: Some(SyncAction::ConversationRead {
                    contact: "bob@example.org".into(),
                }),
            }),
        );
        assert_eq!(
            drain(&mut connection),
            [
                json!({"sylkrtc": "ack", "transaction": "t"}),
                json!({"fork": {"sylkrtc": "account-event", "account": "alice@example.com",
                    "event": "sync", "type": "conversation", "action": "read",
                    "content": {"contact": "bob@example.org"}}})
            ]
        );
        connection.handle_store(
            "u".into(),
            Ok(StoreAnswer::Changed {
                account: aor("alice@example.com"),
                sync: None,
            }),
        );
        assert_eq!(
            drain(&mut connection),
            [json!({"sylkrtc": "ack", "transaction": "u"})]
        );
        let out = request(
            &mut connection,
            json!({"sylkrtc": "account-remove-message", "transaction": "v",
                "account": "alice@example.com", "contact": "bob@example.org",
                "message_id": "bad\r\nid"}),
        );
        assert_eq!(
            out[0]["error"],
            "message_id must be 1 to 128 visible ASCII characters"
        );
        let out = request(
            &mut connection,
            json!({"sylkrtc": "account-remove-conversation", "transaction": "w",
                "account": "alice@example.com", "contact": "bob@example.org"}),
        );
        assert_eq!(out[0]["store"], "w");
    }

    /// The journal entries are what the reference stores and sylkrtc.js reads back.
    #[test]
    fn journal_entries_take_the_references_shape() {
        let alice = aor("alice@example.com");
        let bob = aor("sip:bob@Example.org");
        let (entry, sync) = Change::Read {
            contact: bob.clone(),
        }
        .journal(&alice, 1_000);
        assert_eq!(entry.content_type, CONVERSATION_READ);
        assert_eq!(entry.content, "bob@example.org");
        assert_eq!(entry.direction, store::Direction::None);
        assert_eq!(entry.timestamp, "1970-01-01T00:00:01.000Z");
        assert_eq!(
            sync,
            SyncAction::ConversationRead {
                contact: "bob@example.org".into()
            }
        );
        let (entry, _) = Change::RemoveMessage {
            contact: bob.clone(),
            message_id: "m1".into(),
        }
        .journal(&alice, 1_000);
        assert_eq!(entry.content_type, MESSAGE_REMOVE);
        assert_eq!(
            serde_json::from_str::<Value>(&entry.content).expect("JSON"),
            json!({"contact": "bob@example.org", "message_id": "m1"})
        );
        assert_eq!(entry.direction, store::Direction::Outgoing);
        let (first, sync) = Change::RemoveConversation { contact: bob }.journal(&alice, 1_000);
        assert_eq!(first.content_type, CONVERSATION_REMOVE);
        assert_eq!(
            sync,
            SyncAction::ConversationRemoved {
                contact: "bob@example.org".into(),
                timestamp: "1970-01-01T00:00:01.000Z".into()
            }
        );
        let (second, _) = Change::RemoveConversation {
            contact: aor("bob@example.org"),
        }
        .journal(&alice, 1_000);
        assert_ne!(first.message_id, second.message_id);
    }
}
