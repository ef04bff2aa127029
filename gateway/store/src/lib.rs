//! The gateway's stored state: the messages of every account (with their delivery state), the
//! public keys accounts published, address books, push tokens, the Matrix bridge's rooms, and
//! the local domain's phone bindings that several gateways share. One trait, [`Store`], and one implementation of it,
//! [`SqlStore`], over two real databases: **SQLite**, embedded, the default (a file under the
//! gateway's data directory, so that nothing else needs installing), and **PostgreSQL**, for
//! deployments where several gateways share one store.
//!
//! Both have the same logical schema, created and upgraded at start-up by numbered migrations
//! (one set per SQL dialect, `migrations/`). Every write returns only once it is committed,
//! so a reply sent after it never promises something a crash could lose, and every message
//! write is idempotent by (account, message id): UDP retransmissions, forked delivery and
//! client resends repeat messages. A store that is down or refuses a write answers with an
//! [`Error`] the caller turns into an error for that request alone.

#![deny(missing_docs)]

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

mod migrations;
mod sql;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use sql::{SqlStore, now_millis};

/// What the store's operations return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation of the store failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database cannot be reached or used (down, unreachable, a pool that stays busy).
    #[error("the message store is unavailable: {0}")]
    Unavailable(String),
    /// The database refused the operation (disk full, read-only, a constraint).
    #[error("the message store refused the write: {0}")]
    Refused(String),
    /// The database's schema is not one this gateway knows (a newer gateway migrated it).
    #[error("the message store's schema: {0}")]
    Schema(String),
    /// The configuration names no usable database.
    #[error("the message store's configuration: {0}")]
    Config(String),
}

/// Where the store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite database file (created with its directory when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL server: a `postgres://user:password@host:port/database` URL.
    Postgres(String),
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct Options {
    /// The database.
    pub backend: Backend,
    /// The most connections open at once.
    pub max_connections: u32,
    /// How long an operation waits for a connection before it fails as
    /// [`Error::Unavailable`].
    pub acquire_timeout: Duration,
}

impl Options {
    /// The defaults for `backend`: 8 connections, a 5 s wait.
    pub fn new(backend: Backend) -> Options {
        Options {
            backend,
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Which way a message went, seen from the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent to the account.
    Incoming,
    /// Sent by the account.
    Outgoing,
    /// Neither: a journal entry of something the account did to a whole conversation (read
    /// it, removed it), which the protocol gives with an empty direction.
    None,
}

impl Direction {
    /// The protocol's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
            Direction::None => "",
        }
    }

    fn parse(text: &str) -> Option<Direction> {
        match text {
            "incoming" => Some(Direction::Incoming),
            "outgoing" => Some(Direction::Outgoing),
            "" => Some(Direction::None),
            _ => None,
        }
    }
}

/// A message's delivery state: the sylkRTC protocol's `disposition-notification` states, and
/// `pending` for an outgoing message whose SIP request has no final answer yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Stored, not yet answered.
    Pending,
    /// A message for the account, delivered to it.
    Received,
    /// The SIP request got a 2xx.
    Accepted,
    /// Kept by a server for later delivery (an IMDN `stored`, or a 202).
    Stored,
    /// Processed by an intermediary (IMDN `processed`).
    Processed,
    /// Delivered to the recipient's device.
    Delivered,
    /// Shown to the recipient.
    Displayed,
    /// The SIP request failed.
    Failed,
    /// The recipient refused it.
    Forbidden,
    /// The recipient's device could not handle it.
    Error,
}

impl State {
    /// The protocol's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Received => "received",
            State::Accepted => "accepted",
            State::Stored => "stored",
            State::Processed => "processed",
            State::Delivered => "delivered",
            State::Displayed => "displayed",
            State::Failed => "failed",
            State::Forbidden => "forbidden",
            State::Error => "error",
        }
    }

    /// The state a name stands for.
    pub fn parse(text: &str) -> Option<State> {
        Some(match text {
            "pending" => State::Pending,
            "received" => State::Received,
            "accepted" => State::Accepted,
            "stored" => State::Stored,
            "processed" => State::Processed,
            "delivered" => State::Delivered,
            "displayed" => State::Displayed,
            "failed" => State::Failed,
            "forbidden" => State::Forbidden,
            "error" => State::Error,
            _ => return None,
        })
    }

    /// How far along the message is: a state only replaces one of a lower rank, since
    /// notifications overtake each other (a `delivered` that arrives after `displayed` must
    /// not take the message back), and a failure reported for a message already delivered is
    /// about a copy, not the message.
    fn rank(self) -> i64 {
        match self {
            State::Pending | State::Received => 0,
            State::Accepted | State::Stored | State::Processed => 1,
            State::Failed | State::Forbidden | State::Error => 2,
            State::Delivered => 3,
            State::Displayed => 4,
        }
    }
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The account (`user@domain`) it belongs to.
    pub account: String,
    /// Its id (the client's, or the CPIM `imdn.Message-ID`).
    pub message_id: String,
    /// The other party (`user@domain`): the conversation it is part of.
    pub contact: String,
    /// Which way it went.
    pub direction: Direction,
    /// Its MIME type.
    pub content_type: String,
    /// Its body, as it came.
    pub content: String,
    /// Its timestamp as the sender gave it (ISO 8601), given back as it is.
    pub timestamp: String,
    /// The same instant in milliseconds since 1970: what syncs "since a time" and retention
    /// compare.
    pub at: i64,
    /// Its delivery state.
    pub state: State,
    /// The notifications the sender asked for (`positive-delivery`, `display`, ...).
    pub disposition: Vec<String>,
}

/// An item of an account's address book: a contact, a group or a policy, as the protocol's
/// JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `contact`, `group` or `policy`.
    pub kind: String,
    /// Its id, unique within its kind.
    pub id: String,
    /// The item, JSON text.
    pub item: String,
}

/// The push token of one device of an account (what `account-devicetoken` gave).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushToken {
    /// The device's id (empty when the app gave none).
    pub device: String,
    /// The app's id (its bundle id).
    pub app: String,
    /// `apple`, `firebase`, ... as the app said.
    pub platform: String,
    /// The token.
    pub token: String,
    /// The app asked for silent notifications.
    pub silent: bool,
}

/// A phone's registration with the local domain, as the gateways that serve the domain share
/// it: one per (user, Contact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneBinding {
    /// The user of the domain.
    pub user: String,
    /// The Contact URI.
    pub contact: String,
    /// The gateway that took the registration (its `[instance] id`): it holds the flow.
    pub instance: String,
    /// The transport of the flow (`udp`, `tcp`, `tls`).
    pub transport: String,
    /// Where the REGISTER came from (`address:port`): requests to the phone go there.
    pub target: String,
    /// When it expires, in milliseconds since 1970.
    pub expires: i64,
    /// The phone does SIP Outbound (RFC 5626): it keeps its flow alive itself.
    pub outbound: bool,
}

/// The most phone bindings one [`Store::put_phones`] takes (a statement's parameters are
/// bounded: 7 per binding).
pub const MAX_PHONES_PER_PUT: usize = 500;

/// What storing an address book item did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// It is stored (new, or in place of the one with its id).
    Stored,
    /// The account has as many items as it may: nothing stored.
    Full,
}

/// Whether a write stored something new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Stored now.
    New,
    /// Already there (a repeat): nothing changed.
    Duplicate,
}

/// Where a sync starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since<'a> {
    /// From the first stored message.
    Start,
    /// After this message (the last one the client has); from the start when the store does
    /// not know it.
    Message(&'a str),
    /// From this instant (milliseconds since 1970) on.
    Time(i64),
}

/// How long messages are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Messages older than this many days go.
    pub days: Option<u32>,
    /// Past this many messages in one conversation, the oldest go.
    pub per_conversation: Option<u32>,
}

/// The gateway's stored state.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Which database this is ("sqlite", "postgres").
    fn backend(&self) -> &'static str;

    /// Stores a message unless its (account, message id) is already stored.
    fn add_message<'a>(&'a self, message: &'a Message) -> StoreFuture<'a, Added>;

    /// Moves a message to `state`, unless it is already as far or further along; `false` when
    /// it did not change (unknown, or already there).
    fn update_state<'a>(
        &'a self,
        account: &'a str,
        message_id: &'a str,
        state: State,
    ) -> StoreFuture<'a, bool>;

    /// One message of an account.
    fn message<'a>(
        &'a self,
        account: &'a str,
        message_id: &'a str,
    ) -> StoreFuture<'a, Option<Message>>;

    /// An account's messages in the order they were stored, at most `limit`, from `since` on.
    fn messages<'a>(
        &'a self,
        account: &'a str,
        since: Since<'a>,
        limit: u32,
    ) -> StoreFuture<'a, Vec<Message>>;

    /// Marks the account's conversation with `contact` read: every message it received there
    /// becomes `displayed` (with no notification left to send), and `journal` (an
    /// `application/sylk-conversation-read` entry) is stored, in one transaction. Returns how
    /// many messages changed.
    fn mark_read<'a>(
        &'a self,
        account: &'a str,
        contact: &'a str,
        journal: &'a Message,
    ) -> StoreFuture<'a, u64>;

    /// Removes one message of the account and stores `journal` (an
    /// `application/sylk-message-remove` entry), in one transaction; `false`, and no journal
    /// entry, when the store does not have the message.
    fn remove_message<'a>(
        &'a self,
        account: &'a str,
        message_id: &'a str,
        journal: &'a Message,
    ) -> StoreFuture<'a, bool>;

    /// Removes the account's whole conversation with `contact` (its journal entries too) and
    /// stores `journal` (an `application/sylk-conversation-remove` entry), in one transaction.
    /// Returns how many messages went.
    fn remove_conversation<'a>(
        &'a self,
        account: &'a str,
        contact: &'a str,
        journal: &'a Message,
    ) -> StoreFuture<'a, u64>;

    /// An account's address book, in the order its items were added.
    fn addressbook<'a>(&'a self, account: &'a str) -> StoreFuture<'a, Vec<Entry>>;

    /// Stores an item of an account's address book, in place of the one of its kind and id
    /// if there is one; a new one only while the account has fewer than `max` items.
    fn put_entry<'a>(
        &'a self,
        account: &'a str,
        entry: &'a Entry,
        max: u32,
    ) -> StoreFuture<'a, Put>;

    /// Removes an item; `false` when there was none.
    fn remove_entry<'a>(
        &'a self,
        account: &'a str,
        kind: &'a str,
        id: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// The public key an account published, if any.
    fn public_key<'a>(&'a self, account: &'a str) -> StoreFuture<'a, Option<String>>;

    /// Stores an account's public key (replacing the one before), `at` milliseconds since 1970.
    fn set_public_key<'a>(
        &'a self,
        account: &'a str,
        public_key: &'a str,
        at: i64,
    ) -> StoreFuture<'a, ()>;

    /// Stores the push token of one device and app of an account, in place of the one before,
    /// `at` milliseconds since 1970.
    fn set_push_token<'a>(
        &'a self,
        account: &'a str,
        token: &'a PushToken,
        at: i64,
    ) -> StoreFuture<'a, ()>;

    /// Removes the push token of one device and app; `false` when there was none.
    fn remove_push_token<'a>(
        &'a self,
        account: &'a str,
        device: &'a str,
        app: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// An account's push tokens, the latest first.
    fn push_tokens<'a>(&'a self, account: &'a str) -> StoreFuture<'a, Vec<PushToken>>;

    /// Deletes what `retention` no longer keeps, at `now` (milliseconds since 1970); returns
    /// how many messages went.
    fn prune(&self, retention: Retention, now: i64) -> StoreFuture<'_, u64>;

    /// Remembers that the Matrix bridge's ghost user `ghost` is in room `room` (in place of
    /// the one before), `at` milliseconds since 1970.
    fn set_matrix_room<'a>(&'a self, room: &'a str, ghost: &'a str, at: i64)
    -> StoreFuture<'a, ()>;

    /// Forgets a Matrix room; `false` when it was not known.
    fn remove_matrix_room<'a>(&'a self, room: &'a str) -> StoreFuture<'a, bool>;

    /// Every Matrix room a ghost is in: (room, ghost).
    fn matrix_rooms(&self) -> StoreFuture<'_, Vec<(String, String)>>;

    /// Stores phone bindings (each of its own user and Contact), each in place of the one of
    /// its user and Contact (whichever gateway had it), in one statement: at most
    /// [`MAX_PHONES_PER_PUT`].
    fn put_phones<'a>(&'a self, bindings: &'a [PhoneBinding]) -> StoreFuture<'a, ()>;

    /// Removes the binding of `user` at `contact` if gateway `instance` holds it (one another
    /// gateway took over stays); `false` when there was none.
    fn remove_phone<'a>(
        &'a self,
        user: &'a str,
        contact: &'a str,
        instance: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// The bindings of `user` that have not expired at `now` (milliseconds since 1970).
    fn phones<'a>(&'a self, user: &'a str, now: i64) -> StoreFuture<'a, Vec<PhoneBinding>>;

    /// The bindings gateway `instance` holds that have not expired at `now`, at most `limit`.
    fn instance_phones<'a>(
        &'a self,
        instance: &'a str,
        now: i64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<PhoneBinding>>;

    /// Deletes the bindings expired at `now`; returns how many went.
    fn remove_expired_phones(&self, now: i64) -> StoreFuture<'_, u64>;
}
