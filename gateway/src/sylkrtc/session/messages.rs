//! The handler's side of messages: sending an account's stored message (a task of its own),
//! and the MESSAGEs that reach an account's registration (stored, delivered to the client,
//! answered).

use ezk_sip_types::Method;
use protocol::{AccountEvent, Aor, DispositionNotification, IncomingMessage, Party};
use sip::driver::{Answer, RequestHandle};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::Session;
use crate::messaging::local::{Letter, Post};
use crate::messaging::{self, Incoming, Outgoing};
use crate::sylkrtc::connection::StoreAnswer;
use crate::sylkrtc::connection::conversations::Change;

/// What a task sending a message reports: the message, its new state and the SIP outcome.
pub(super) type Sent = (Box<Outgoing>, store::State, sip::RequestOutcome);

/// What a task handling a MESSAGE for an account reports: the request to answer, the account,
/// and the event for the account's connections with the id that tells repeats apart (none for
/// an is-composing indication or a notification dropped).
pub(super) struct Arrived {
    request: RequestHandle,
    account: Aor,
    event: Option<(String, AccountEvent)>,
    /// The message is in the store (now or from before).
    stored: bool,
}

impl Arrived {
    /// Answered, with nothing for the client.
    fn answered(request: RequestHandle, account: Aor) -> Arrived {
        Arrived {
            request,
            account,
            event: None,
            stored: false,
        }
    }
}

impl Session<'_> {
    /// Sends a stored message in a task of its own: its outcome goes to the store, then to
    /// the connection (when it is still there).
    pub(super) fn send_message(&self, outgoing: Box<Outgoing>) {
        let sip = self.sip.clone();
        let store = self.storage.get().ok();
        let sent = self.sent.clone();
        // Within the local domain the gateway delivers it itself.
        let post = self
            .services
            .local
            .as_ref()
            .filter(|local| local.is_local(outgoing.from.host()))
            .and(self.post.cloned());
        tokio::spawn(async move {
            let outcome = match &post {
                Some(post) => local_send(post, &outgoing).await,
                None => outgoing.send(&sip).await,
            };
            if outgoing.notification {
                // An IMDN: nobody is told of its own result (as in the reference).
                debug!(to = %outgoing.to, code = outcome.code, "notification sent");
                return;
            }
            let state = if (200..300).contains(&outcome.code) {
                store::State::Accepted
            } else {
                store::State::Failed
            };
            debug!(id = %outgoing.message_id, code = outcome.code, "message sent");
            if let Some(store) = store
                && let Err(error) = store
                    .update_state(&outgoing.from.key(), &outgoing.message_id, state)
                    .await
            {
                warn!("a message's state was not stored: {error}");
            }
            let _ = sent.send((outgoing, state, outcome));
        });
    }

    /// An out-of-dialog request for one of the connection's registrations: a MESSAGE is read,
    /// then stored and delivered by a task (its answer waits for that); other methods get 405.
    pub(super) fn account_request(
        &mut self,
        handle: u64,
        request: RequestHandle,
        message: &sip::Message,
        arrived: &mpsc::UnboundedSender<Arrived>,
    ) {
        let account = self.connection.registration_account(handle);
        let (Some(account), Some(&Method::MESSAGE)) = (account, message.method()) else {
            debug!(method = ?message.method(), "out-of-dialog request for an account");
            return self
                .sip
                .answer(request, crate::routing::request_answer(message));
        };
        if message.body.len() > self.max_message_size {
            return self
                .sip
                .answer(request, answer(413, "Request Entity Too Large"));
        }
        let messaging::Request {
            from,
            display_name,
            incoming,
        } = match messaging::read_request(message) {
            Ok(request) => request,
            Err((code, reason)) => {
                debug!(code, reason, "a MESSAGE for an account was refused");
                return self.sip.answer(request, answer(code, reason));
            }
        };
        let store = self.storage.get().ok();
        let arrived = arrived.clone();
        match incoming {
            Incoming::Composing => self.sip.answer(request, answer(200, "OK")),
            Incoming::Message(received) => {
                tokio::spawn(async move {
                    let stored = store::Message {
                        account: account.key(),
                        message_id: received.message_id.clone(),
                        contact: from.key(),
                        direction: store::Direction::Incoming,
                        content_type: received.content_type.clone(),
                        content: received.content.clone(),
                        timestamp: received.timestamp.clone(),
                        at: messaging::parse_timestamp(&received.timestamp)
                            .unwrap_or_else(store::now_millis),
                        state: store::State::Received,
                        disposition: received.disposition.clone(),
                    };
                    // A store that fails does not stop delivery to the live connections.
                    let stored = match store {
                        Some(store) => match store.add_message(&stored).await {
                            Ok(_) => true,
                            Err(error) => {
                                warn!("an incoming message was not stored: {error}");
                                false
                            }
                        },
                        None => false,
                    };
                    let key = received.message_id.clone();
                    let event = AccountEvent::Message(IncomingMessage {
                        sender: Party {
                            uri: from.to_string(),
                            display_name,
                        },
                        timestamp: received.timestamp,
                        message_id: received.message_id,
                        content: received.content,
                        content_type: received.content_type,
                        disposition_notification: received.disposition,
                    });
                    let _ = arrived.send(Arrived {
                        request,
                        account,
                        event: Some((key, event)),
                        stored,
                    });
                });
            }
            Incoming::Notification {
                message_id,
                state,
                datetime,
            } => {
                tokio::spawn(async move {
                    // Only the recipient of a message the account sent speaks for it: an IMDN
                    // from anyone else (a SIP From anybody can write), about a message the
                    // store does not know, or that cannot be checked, is answered and dropped.
                    let Some(store) = store else {
                        warn!("a notification was dropped: the message store is unavailable");
                        let _ = arrived.send(Arrived::answered(request, account));
                        return;
                    };
                    let about = store.message(&account.key(), &message_id).await;
                    let from_recipient = matches!(&about, Ok(Some(message))
                        if message.direction == store::Direction::Outgoing
                            && message.contact == from.key());
                    if !from_recipient {
                        debug!(%from, %message_id, "a notification not from the message's recipient was dropped");
                        let _ = arrived.send(Arrived::answered(request, account));
                        return;
                    }
                    let stored = match store.update_state(&account.key(), &message_id, state).await
                    {
                        Ok(_) => true,
                        Err(error) => {
                            warn!("a notification's state was not stored: {error}");
                            false
                        }
                    };
                    let key = format!("imdn {message_id} {}", state.as_str());
                    let event = AccountEvent::DispositionNotification(DispositionNotification {
                        message_id,
                        message_timestamp: datetime,
                        state: state.as_str().to_owned(),
                        code: None,
                        reason: None,
                    });
                    let _ = arrived.send(Arrived {
                        request,
                        account,
                        event: Some((key, event)),
                        stored,
                    });
                });
            }
        }
    }

    /// A MESSAGE was read and stored: every connection holding the account hears of it (this
    /// one too, through the same path), once however many copies the proxy forked here; the
    /// sender gets 200 when it reached a connection (or did before), 202 when it is only stored
    /// (the account's connections all went meanwhile), 480 when it is neither.
    pub(super) fn arrived(&mut self, arrived: Arrived) {
        let Some((key, event)) = arrived.event else {
            return self.sip.answer(arrived.request, answer(200, "OK"));
        };
        let delivery =
            self.devices
                .deliver(&arrived.account, &key, &event, std::time::Instant::now());
        let reply = match delivery.status(false, arrived.stored) {
            200 => answer(200, "OK"),
            202 => answer(202, "Accepted"),
            _ => answer(480, "Temporarily Unavailable"),
        };
        self.sip.answer(arrived.request, reply);
    }
}

/// Delivers a message or notification of a local-domain account to its recipient in the
/// domain; the outcome as a SIP request's would be.
async fn local_send(post: &Post, outgoing: &Outgoing) -> sip::RequestOutcome {
    if !outgoing.notification {
        let letter = Letter {
            from: outgoing.from.clone(),
            display_name: outgoing.account.display_name.clone(),
            to: outgoing.to.clone(),
            received: messaging::Received {
                message_id: outgoing.message_id.clone(),
                timestamp: outgoing.timestamp.clone(),
                content_type: outgoing.content_type.clone(),
                content: outgoing.content.clone(),
                disposition: messaging::DISPOSITION.map(str::to_owned).to_vec(),
                cpim_from: None,
            },
        };
        return post.deliver(&letter, None).await;
    }
    // The IMDN this account's client asked for, read back for what it says.
    match messaging::read(
        &outgoing.content_type,
        outgoing.content.as_bytes(),
        &outgoing.message_id,
        &outgoing.timestamp,
    ) {
        Ok(Incoming::Notification {
            message_id,
            state,
            datetime,
        }) => {
            post.notify(&message_id, state, datetime, outgoing, None)
                .await
        }
        _ => sip::RequestOutcome {
            code: 500,
            reason: "Server Internal Error (an unreadable notification)".to_owned(),
        },
    }
}

fn answer(code: u16, reason: &str) -> Answer {
    Answer {
        code,
        reason: reason.to_owned(),
        headers: Vec::new(),
    }
}

/// Stores a message an account sends (pending); a repeat is found, with its state.
pub(super) async fn add_message(
    store: &dyn store::Store,
    outgoing: Box<Outgoing>,
) -> store::Result<StoreAnswer> {
    let account = outgoing.from.key();
    let message = store::Message {
        account: account.clone(),
        message_id: outgoing.message_id.clone(),
        contact: outgoing.to.key(),
        direction: store::Direction::Outgoing,
        content_type: outgoing.content_type.clone(),
        content: outgoing.content.clone(),
        timestamp: outgoing.timestamp.clone(),
        at: messaging::parse_timestamp(&outgoing.timestamp).unwrap_or_else(store::now_millis),
        state: store::State::Pending,
        disposition: messaging::DISPOSITION.map(str::to_owned).to_vec(),
    };
    // The key an account publishes in its own messages is its key (`lookup-public-key`); one
    // that comes in a MESSAGE from elsewhere is not, since a SIP From proves nothing.
    if outgoing
        .content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/pgp-public-key"))
    {
        store
            .set_public_key(&account, &outgoing.content, store::now_millis())
            .await?;
    }
    let repeat_of = match store.add_message(&message).await? {
        store::Added::New => None,
        store::Added::Duplicate => store
            .message(&account, &outgoing.message_id)
            .await?
            .map(|stored| stored.state),
    };
    Ok(StoreAnswer::MessageStored {
        outgoing,
        repeat_of,
    })
}

/// Stores a change to an account's conversations with its journal entry; the `sync` event for
/// the other connections, when something changed.
pub(super) async fn change(
    store: &dyn store::Store,
    account: Aor,
    change: Change,
) -> store::Result<StoreAnswer> {
    let (journal, sync) = change.journal(&account, store::now_millis());
    let key = account.key();
    let changed = match &change {
        Change::Read { contact } => {
            store.mark_read(&key, &contact.key(), &journal).await?;
            true
        }
        Change::RemoveMessage { message_id, .. } => {
            store.remove_message(&key, message_id, &journal).await?
        }
        Change::RemoveConversation { contact } => {
            store
                .remove_conversation(&key, &contact.key(), &journal)
                .await?;
            true
        }
    };
    Ok(StoreAnswer::Changed {
        account,
        sync: changed.then_some(sync),
    })
}
