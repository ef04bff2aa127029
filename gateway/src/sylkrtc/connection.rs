//! One sylkRTC connection's protocol state, sans-IO.
//!
//! [`Connection`] takes the text of each client message and queues the replies and events to
//! send, in order; the WebSocket driver (`ws.rs`) moves text between it and the socket. It owns
//! everything the connection has (its accounts), so dropping it releases all of that.
//!
//! Ordering (spec section 1): requests are handled one at a time, and whatever a handler emits
//! itself is queued before its `ack` or `error`. No handler waits on the network: work that
//! needs SIP or media is started here as an [`Output`] for the driver, and reports back later as
//! events ([`Connection::handle_sip_event`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use protocol::{
    AccountAdd, AccountEvent, Aor, Error as ProtocolError, Event, RegistrationState, Request,
    RequestBody, RequestError, Secret, ServerMessage, SessionEvent, SessionState, Version,
};
use sip::RegistrationEvent;
use sip::driver::{Account as SipAccount, CallHandle, IncomingCall};
use sip::{Credentials, Secret as SipSecret};

use crate::call::{Command, Incoming, StartCall};
use crate::metrics::ErrorKind;
pub(crate) use domains::SipDomains;

/// An account added on this connection.
#[derive(Debug)]
struct Account {
    aor: Aor,
    secret: Secret,
    display_name: Option<String>,
    user_agent: Option<String>,
    incoming_header_prefixes: Vec<String>,
    /// The push parameters of its registrations' Contact (`account-devicetoken`).
    contact_params: Vec<(String, String)>,
    /// The account's SIP registration, when `account-register` started one.
    registration: Option<Registration>,
}

impl Account {
    /// The account as the SIP driver needs it.
    fn sip(&self) -> SipAccount {
        let secret = match &self.secret {
            Secret::Ha1(ha1) => SipSecret::Ha1(ha1.clone()),
            Secret::Password(password) => SipSecret::Password(password.clone()),
        };
        let domain = match self.aor.port() {
            Some(port) => format!("{}:{port}", self.aor.host()),
            None => self.aor.host().to_owned(),
        };
        SipAccount {
            user: self.aor.user().to_owned(),
            domain,
            display_name: self.display_name.clone(),
            credentials: Credentials {
                username: self.aor.user().to_owned(),
                secret,
            },
            user_agent: self.user_agent.clone(),
            contact_params: self.contact_params.clone(),
        }
    }
}

/// A registration of one account, as this connection sees it.
#[derive(Debug)]
struct Registration {
    /// Our number for it in the SIP driver.
    handle: u64,
    /// The last state sent to the client, so that repeats are not sent.
    reported: Option<Reported>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    Registering,
    Registered,
    Failed,
}

/// Work for the driver, in order with the messages.
#[derive(Debug)]
pub(crate) enum Output {
    /// Send this text to the client.
    Send(String),
    /// Start a SIP registration.
    Register {
        handle: u64,
        account: Box<SipAccount>,
    },
    /// Remove a SIP registration.
    Unregister { handle: u64 },
    /// Start an outgoing call (its task).
    StartCall(Box<StartCall>),
    /// An incoming call for one of our accounts: start its task.
    Incoming(Box<Incoming>),
    /// An incoming call no account of ours takes any more: refuse it.
    RefuseCall(CallHandle),
    /// Pass a command to a call's task.
    Call { session: String, command: Command },
    /// Ask the message store, for the request `transaction`, whose reply waits for the answer
    /// ([`Connection::handle_store`]).
    Store {
        transaction: String,
        query: StoreQuery,
    },
    /// Send a stored message over SIP; its outcome comes back through
    /// [`Connection::handle_message_sent`].
    SendMessage(Box<crate::messaging::Outgoing>),
    /// Tell the account's other connections (its other devices) of this.
    Fork { account: Aor, event: AccountEvent },
}

/// A question for the message store.
#[derive(Debug)]
pub(crate) enum StoreQuery {
    /// The public key an account published.
    PublicKey { uri: Aor },
    /// Store a message an account sends, as pending.
    AddMessage(Box<crate::messaging::Outgoing>),
    /// A message the account received moves to `state`; `imdn` then tells its sender.
    Notify {
        account: Aor,
        message_id: String,
        state: store::State,
        imdn: Box<crate::messaging::Outgoing>,
    },
    /// An account's stored messages from a point on.
    Sync {
        account: Aor,
        from: SyncFrom,
        limit: u32,
    },
    /// A change to the account's conversations, with its journal entry.
    Change {
        account: Aor,
        change: conversations::Change,
    },
    /// The account's address book.
    Addressbook { account: Aor },
    /// A change to the account's address book.
    UpdateAddressbook(Box<protocol::AddressbookUpdate>),
    /// Keep (or, with no token, forget) the push token of a device of a local account.
    PushToken {
        account: Aor,
        device: String,
        app: String,
        token: Option<store::PushToken>,
    },
}

/// Where a sync starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncFrom {
    Start,
    /// After this message.
    Message(String),
    /// From this time (milliseconds since 1970).
    Time(i64),
}

/// The message store's answer to a [`StoreQuery`].
#[derive(Debug)]
pub(crate) enum StoreAnswer {
    PublicKey {
        uri: Aor,
        key: Option<String>,
    },
    /// The message is stored: new, or a repeat of one stored before (its state then).
    MessageStored {
        outgoing: Box<crate::messaging::Outgoing>,
        repeat_of: Option<store::State>,
    },
    /// A received message's state was stored (or was already further on): the IMDN to send.
    Notified(Box<crate::messaging::Outgoing>),
    /// An account's messages, oldest first.
    Synced {
        account: Aor,
        messages: Vec<store::Message>,
    },
    /// A change is stored: what the other connections are told (none when it changed
    /// nothing).
    Changed {
        account: Aor,
        sync: Option<protocol::SyncAction>,
    },
    /// The account's address book, as the event gives it.
    Addressbook {
        account: Aor,
        addressbook: serde_json::Value,
    },
    /// What became of an address book update.
    AddressbookUpdated {
        account: Aor,
        updated: addressbook::Updated,
    },
    /// The write is durable: nothing more to say than `ack`.
    Stored,
}

/// A call of this connection, as far as requests need to know.
#[derive(Debug)]
struct Session {
    /// The account the call belongs to (removing the account ends it).
    account: Aor,
    incoming: bool,
    /// The client knows of the call (an outgoing one it made, an incoming one it was told
    /// of): an incoming call refused before that ends without a word to it.
    announced: bool,
    answered: bool,
    accepted: bool,
    /// The far end's early media reached the client: DTMF may go before the answer.
    early_media: bool,
    /// The answer SDP an `early-media` state carried, held for a sylkRTC-1 client (which
    /// knows no such state) until `accepted`.
    early_sdp: Option<String>,
    /// The far end (whom the call's messages go to and come from), once known.
    peer: Option<protocol::Party>,
    /// The client was told `progress`, `ringing`: each once (a call that waits for the
    /// callee's woken devices rings from the start, and the call placed then says it again).
    progressed: bool,
    rung: bool,
}

/// What became of one client message: for metrics and logs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Handled {
    /// The request name, when the message had one (any string the client sent).
    pub(crate) name: Option<String>,
    pub(crate) outcome: Outcome,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered with `ack`.
    Ack,
    /// Answered with `error`.
    Error { kind: ErrorKind, text: String },
    /// Not answerable (no transaction could be read): only logged.
    Unanswered { kind: ErrorKind, reason: String },
    /// Answered later, once the message store has answered ([`Connection::handle_store`]).
    Deferred,
}

/// The protocol state of one connection.
#[derive(Debug)]
pub(crate) struct Connection {
    version: Version,
    domains: Arc<SipDomains>,
    /// Accounts in the order they were added; a connection holds few, so a list is enough.
    accounts: Vec<Account>,
    /// Messages and driver work waiting, in order.
    out: VecDeque<Output>,
    /// Driver work a handler started, queued after its reply: the client hears "ack" before
    /// anything the work causes.
    deferred: Vec<Output>,
    /// Numbers registrations for the driver.
    next_handle: u64,
    /// Live calls by session id.
    sessions: HashMap<String, Session>,
    /// The request being handled asked the store: its reply waits for the answer.
    asked_store: bool,
}

impl Connection {
    /// A new connection; its first output is the ready event.
    pub(crate) fn new(version: Version, domains: Arc<SipDomains>) -> Self {
        let mut connection = Connection {
            version,
            domains,
            accounts: Vec::new(),
            out: VecDeque::new(),
            deferred: Vec::new(),
            next_handle: 1,
            sessions: HashMap::new(),
            asked_store: false,
        };
        connection.send(ServerMessage::Event(Event::Ready));
        connection
    }

    /// The next message to send or work to start.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The account whose registration `handle` is.
    pub(crate) fn registration_account(&self, handle: u64) -> Option<Aor> {
        self.accounts
            .iter()
            .find(|account| {
                account
                    .registration
                    .as_ref()
                    .is_some_and(|registration| registration.handle == handle)
            })
            .map(|account| account.aor.clone())
    }

    /// An account event (a message for it, a notification about one it sent) for the client.
    pub(crate) fn account_event(&mut self, account: &Aor, event: protocol::AccountEvent) {
        self.send(ServerMessage::Event(Event::Account {
            account: account.to_string(),
            event,
        }));
    }

    /// The account `aor` as the SIP driver needs it, if it was added here.
    /// The presence list of `aor` on its domain's server, when it keeps them.
    pub(crate) fn presence_list(&self, aor: &Aor) -> Option<Aor> {
        self.domains.presence_list(aor)
    }

    pub(crate) fn sip_account(&self, aor: &Aor) -> Option<SipAccount> {
        self.accounts
            .iter()
            .find(|account| account.aor == *aor)
            .map(Account::sip)
    }

    /// The accounts registered here (their credentials were accepted): the ones this
    /// connection hears of when another device of the account acts.
    pub(crate) fn registered_accounts(&self) -> impl Iterator<Item = &Aor> + '_ {
        self.accounts
            .iter()
            .filter(|account| {
                account
                    .registration
                    .as_ref()
                    .is_some_and(|registration| registration.reported == Some(Reported::Registered))
            })
            .map(|account| &account.aor)
    }

    /// The registrations to remove when the connection ends.
    pub(crate) fn registrations(&self) -> impl Iterator<Item = u64> + '_ {
        self.accounts.iter().filter_map(|account| {
            account
                .registration
                .as_ref()
                .map(|registration| registration.handle)
        })
    }

    /// A call reached one of our registrations.
    pub(crate) fn handle_incoming(&mut self, handle: u64, call: CallHandle, invite: IncomingCall) {
        self.incoming(handle, call, invite);
    }

    /// News from the SIP driver about one of our registrations.
    pub(crate) fn handle_registration(&mut self, handle: u64, event: RegistrationEvent) {
        let Some(account) = self.accounts.iter_mut().find(|account| {
            account
                .registration
                .as_ref()
                .is_some_and(|r| r.handle == handle)
        }) else {
            return; // A registration we already dropped.
        };
        let (state, kind) = match event {
            RegistrationEvent::Registering => {
                (RegistrationState::Registering, Reported::Registering)
            }
            RegistrationEvent::Registered { .. } => {
                (RegistrationState::Registered, Reported::Registered)
            }
            RegistrationEvent::Failed { reason, .. } => (
                RegistrationState::Failed {
                    reason: Some(reason),
                },
                Reported::Failed,
            ),
            RegistrationEvent::Unregistered => return,
        };
        let Some(registration) = account.registration.as_mut() else {
            return;
        };
        if registration.reported == Some(kind) {
            return;
        }
        registration.reported = Some(kind);
        let account = account.aor.to_string();
        self.send(ServerMessage::Event(Event::Account {
            account,
            event: AccountEvent::RegistrationState(state),
        }));
    }

    /// An event from one of the connection's calls, for the client, in its version's words.
    fn send_event(&mut self, mut event: Event) {
        if self.version == Version::V1
            && let Event::Session {
                session,
                event: SessionEvent::State(state),
            } = &mut event
        {
            // sylkRTC-1 has no `early-media` state: its answer SDP goes in `accepted`.
            match state {
                SessionState::EarlyMedia { sdp, .. } => {
                    if let Some(live) = self.sessions.get_mut(session.as_str()) {
                        live.early_sdp = Some(std::mem::take(sdp));
                    }
                    return;
                }
                SessionState::Accepted { sdp, .. } if sdp.is_none() => {
                    *sdp = self
                        .sessions
                        .get_mut(session.as_str())
                        .and_then(|live| live.early_sdp.take());
                }
                _ => {}
            }
        }
        self.send(ServerMessage::Event(event));
    }

    pub(crate) fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Handles a text frame.
    pub(crate) fn handle_text(&mut self, text: &str) -> Handled {
        match Request::parse(text) {
            Ok(request) => self.handle_request(request),
            Err(error) => self.handle_invalid(error),
        }
    }

    /// Handles a binary frame: the protocol is text only, but if the payload is a request with a
    /// transaction, the client gets told why nothing happened.
    pub(crate) fn handle_binary(&mut self, data: &[u8]) -> Handled {
        let transaction =
            std::str::from_utf8(data)
                .ok()
                .and_then(|text| match Request::parse(text) {
                    Ok(request) => Some(request.transaction),
                    Err(error) => error.transaction,
                });
        let kind = ErrorKind::BinaryFrame;
        match transaction {
            Some(transaction) => {
                let text =
                    "binary frames are not supported: send each request as a text frame".to_owned();
                self.reply_error(transaction, text.clone());
                Handled {
                    name: None,
                    outcome: Outcome::Error { kind, text },
                }
            }
            None => Handled {
                name: None,
                outcome: Outcome::Unanswered {
                    kind,
                    reason: format!("binary frame of {} bytes ignored", data.len()),
                },
            },
        }
    }

    fn handle_invalid(&mut self, error: RequestError) -> Handled {
        let kind = match error.error {
            ProtocolError::Json(_) | ProtocolError::NotAnObject => ErrorKind::Malformed,
            ProtocolError::UnknownRequest(_) => ErrorKind::UnknownRequest,
            _ if error.transaction.is_none() => ErrorKind::Malformed,
            _ => ErrorKind::Invalid,
        };
        let text = error.to_string();
        let outcome = match error.transaction {
            Some(transaction) => {
                self.reply_error(transaction, text.clone());
                Outcome::Error { kind, text }
            }
            None => Outcome::Unanswered { kind, reason: text },
        };
        Handled {
            name: error.name,
            outcome,
        }
    }

    fn handle_request(&mut self, request: Request) -> Handled {
        let name = request.body.name();
        let result = match request.body {
            RequestBody::Ping => Ok(()),
            RequestBody::LookupPublicKey { uri } => {
                self.ask_store(&request.transaction, StoreQuery::PublicKey { uri });
                Ok(())
            }
            RequestBody::AccountAdd(add) => self.account_add(add),
            RequestBody::AccountRemove { account } => self.account_remove(&account),
            RequestBody::AccountRegister { account } => self.account_register(&account),
            RequestBody::AccountUnregister { account } => self.account_unregister(&account),
            RequestBody::SessionCreate(create) => self.session_create(create),
            RequestBody::SessionAnswer(answer) => self.session_answer(answer),
            RequestBody::SessionTrickle(trickle) => self.session_live(&trickle.session).map(|_| ()),
            RequestBody::SessionTerminate { session } => self.session_terminate(session),
            RequestBody::SessionDtmfInfo(dtmf) => self.session_dtmf(dtmf),
            RequestBody::SessionMessage(message) => self.session_message(message),
            RequestBody::SessionUpdate(update) => self.session_update(update),
            RequestBody::AccountSyncConversations(sync) => {
                self.account_sync(&request.transaction, sync)
            }
            RequestBody::AccountDispositionNotification(notification) => {
                self.account_disposition(&request.transaction, notification)
            }
            RequestBody::AccountMessage(message) => {
                self.account_message(&request.transaction, message)
            }
            RequestBody::AccountMarkConversationRead { account, contact } => self
                .change_conversation(
                    &request.transaction,
                    account,
                    conversations::Change::Read { contact },
                ),
            RequestBody::AccountRemoveMessage {
                account,
                message_id,
                contact,
            } => self.change_conversation(
                &request.transaction,
                account,
                conversations::Change::RemoveMessage {
                    contact,
                    message_id,
                },
            ),
            RequestBody::AccountDevicetoken(token) => {
                self.account_devicetoken(&request.transaction, token)
            }
            RequestBody::AccountFetchAddressbook { account } => {
                self.fetch_addressbook(&request.transaction, account)
            }
            RequestBody::AccountUpdateAddressbook(update) => {
                self.update_addressbook(&request.transaction, update)
            }
            RequestBody::AccountRemoveConversation { account, contact } => self
                .change_conversation(
                    &request.transaction,
                    account,
                    conversations::Change::RemoveConversation { contact },
                ),
            _ => Err((
                ErrorKind::NotSupported,
                format!("not supported yet: {name}"),
            )),
        };
        let asked_store = std::mem::take(&mut self.asked_store);
        let outcome = match result {
            // The reply comes with the store's answer.
            Ok(()) if asked_store => Outcome::Deferred,
            Ok(()) => {
                self.send(ServerMessage::Ack {
                    transaction: request.transaction,
                });
                Outcome::Ack
            }
            Err((kind, text)) => {
                self.reply_error(request.transaction, text.clone());
                Outcome::Error { kind, text }
            }
        };
        self.out.extend(self.deferred.drain(..));
        Handled {
            name: Some(name.to_owned()),
            outcome,
        }
    }

    fn account_add(&mut self, add: AccountAdd) -> Result<(), (ErrorKind, String)> {
        if !self.domains.allows(&add.account.domain()) {
            return Err((
                ErrorKind::Refused,
                format!("SIP domain not allowed: {}", add.account.host()),
            ));
        }
        if self
            .accounts
            .iter()
            .any(|account| account.aor == add.account)
        {
            return Err((
                ErrorKind::Refused,
                format!("Account {} already added", add.account),
            ));
        }
        self.accounts.push(Account {
            aor: add.account,
            secret: add.secret,
            display_name: add.display_name,
            user_agent: add.user_agent,
            incoming_header_prefixes: add.incoming_header_prefixes,
            contact_params: Vec::new(),
            registration: None,
        });
        Ok(())
    }

    fn account_remove(&mut self, aor: &Aor) -> Result<(), (ErrorKind, String)> {
        let index = self.account_index(aor)?;
        let account = self.accounts.remove(index);
        if let Some(registration) = account.registration {
            self.deferred.push(Output::Unregister {
                handle: registration.handle,
            });
        }
        // Its calls end as a session-terminate would end them (BYE, CANCEL, or the decline
        // code for a call still ringing); their `terminated` events follow.
        let mut ended: Vec<&String> = self
            .sessions
            .iter()
            .filter(|(_, session)| session.account == account.aor)
            .map(|(id, _)| id)
            .collect();
        ended.sort();
        for session in ended {
            self.deferred.push(Output::Call {
                session: session.clone(),
                command: Command::Hangup,
            });
        }
        Ok(())
    }

    /// Starts registering; the outcome arrives as `registration-state` events. A registration
    /// that is running (or in place) is left alone; a failed one is started afresh.
    fn account_register(&mut self, aor: &Aor) -> Result<(), (ErrorKind, String)> {
        let index = self.account_index(aor)?;
        if let Some(registration) = &self.accounts[index].registration {
            if registration.reported != Some(Reported::Failed) {
                return Ok(());
            }
            let stale = registration.handle;
            self.deferred.push(Output::Unregister { handle: stale });
        }
        self.start_registration(index);
        Ok(())
    }

    /// Starts a new registration of the account at `index` (after the request's reply).
    fn start_registration(&mut self, index: usize) {
        let handle = self.next_handle;
        self.next_handle += 1;
        let account = &mut self.accounts[index];
        account.registration = Some(Registration {
            handle,
            reported: None,
        });
        self.deferred.push(Output::Register {
            handle,
            account: Box::new(account.sip()),
        });
    }

    /// Removes the registration. The un-REGISTER runs after the ack; its outcome is only
    /// logged, so that a dead registrar never holds up the client.
    fn account_unregister(&mut self, aor: &Aor) -> Result<(), (ErrorKind, String)> {
        let index = self.account_index(aor)?;
        if let Some(registration) = self.accounts[index].registration.take() {
            self.deferred.push(Output::Unregister {
                handle: registration.handle,
            });
        }
        Ok(())
    }

    fn account_index(&self, aor: &Aor) -> Result<usize, (ErrorKind, String)> {
        self.accounts
            .iter()
            .position(|account| account.aor == *aor)
            .ok_or_else(|| {
                (
                    ErrorKind::Refused,
                    format!("Unknown account specified: {aor}"),
                )
            })
    }

    fn reply_error(&mut self, transaction: String, error: String) {
        self.send(ServerMessage::Error { transaction, error });
    }

    /// Asks the store for the request `transaction`, whose reply then waits for the answer.
    fn ask_store(&mut self, transaction: &str, query: StoreQuery) {
        self.asked_store = true;
        self.out.push_back(Output::Store {
            transaction: transaction.to_owned(),
            query,
        });
    }

    /// The message store's answer for the request `transaction` (or why there is none): its
    /// `ack` and what follows it, or its `error`.
    pub(crate) fn handle_store(
        &mut self,
        transaction: String,
        answer: Result<StoreAnswer, String>,
    ) -> Handled {
        let outcome = match answer {
            Ok(StoreAnswer::PublicKey { uri, key }) => {
                self.send(ServerMessage::Ack { transaction });
                self.send(ServerMessage::Event(Event::PublicKey {
                    uri: uri.to_string(),
                    public_key: key,
                }));
                Outcome::Ack
            }
            Ok(StoreAnswer::Stored) => {
                self.send(ServerMessage::Ack { transaction });
                Outcome::Ack
            }
            Ok(StoreAnswer::Notified(imdn)) => {
                self.send(ServerMessage::Ack { transaction });
                self.out.push_back(Output::SendMessage(imdn));
                Outcome::Ack
            }
            Ok(StoreAnswer::Synced { account, messages }) => {
                self.send(ServerMessage::Ack { transaction });
                let messages = messages.into_iter().map(messages::synced).collect();
                self.account_event(
                    &account,
                    protocol::AccountEvent::SyncConversations { messages },
                );
                Outcome::Ack
            }
            Ok(StoreAnswer::Addressbook {
                account,
                addressbook,
            }) => {
                self.send(ServerMessage::Ack { transaction });
                self.account_event(&account, AccountEvent::AddressbookFetched { addressbook });
                Outcome::Ack
            }
            Ok(StoreAnswer::AddressbookUpdated { account, updated }) => {
                self.send(ServerMessage::Ack { transaction });
                self.addressbook_updated(&account, updated);
                Outcome::Ack
            }
            Ok(StoreAnswer::Changed { account, sync }) => {
                self.send(ServerMessage::Ack { transaction });
                if let Some(sync) = sync {
                    self.fork(&account, AccountEvent::Sync(sync));
                }
                Outcome::Ack
            }
            Ok(StoreAnswer::MessageStored {
                outgoing,
                repeat_of,
            }) => {
                self.send(ServerMessage::Ack { transaction });
                if repeat_of.is_none() && !outgoing.notification {
                    let event = AccountEvent::Sync(messages::added(&outgoing));
                    self.fork(&outgoing.from, event);
                }
                match repeat_of {
                    // A repeat of a message that went out already: its state again.
                    Some(state)
                        if !matches!(state, store::State::Pending | store::State::Failed) =>
                    {
                        self.handle_message_sent(&outgoing, state, None);
                    }
                    // New, or one that never went out (a restart) or failed: sent now.
                    _ => self.out.push_back(Output::SendMessage(outgoing)),
                }
                Outcome::Ack
            }
            Err(text) => {
                self.reply_error(transaction, text.clone());
                Outcome::Error {
                    kind: ErrorKind::Store,
                    text,
                }
            }
        };
        Handled {
            name: None,
            outcome,
        }
    }

    fn send(&mut self, message: ServerMessage) {
        self.out
            .push_back(Output::Send(message.encode(self.version)));
    }
}

/// A client message made safe for the log: the `password` of `account-add` is masked.
///
/// The message is parsed rather than searched, since JSON escapes (`"pass\u0077ord"`) would
/// slip past a text search; text that does not parse is shown only if it cannot hold a secret.
pub(crate) fn redact(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(mut map)) => {
            if let Some(password) = map.get_mut("password") {
                *password = serde_json::Value::from("<redacted>");
                return serde_json::Value::Object(map).to_string();
            }
            text.to_owned()
        }
        Ok(_) => text.to_owned(),
        Err(_) if text.contains("password") || text.contains("\\u") => {
            format!(
                "<{} bytes of malformed JSON, not shown as it may hold a password>",
                text.len()
            )
        }
        Err(_) => text.to_owned(),
    }
}

pub(crate) mod addressbook;
pub(crate) mod conversations;
mod domains;
mod messages;
mod push;
mod sessions;
#[cfg(test)]
mod tests;
