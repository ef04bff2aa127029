//! The accounts the live connections of this gateway hold, so that what one device of an
//! account does, or what arrives for the account, reaches all of its devices: the `sync`
//! events, messages and notifications the protocol forks. A connection is a member for an
//! account while the account is registered on it (its credentials were accepted): adding an
//! account proves nothing, and its conversations are private.
//!
//! The registry also remembers which incoming messages it delivered lately. A SIP proxy forks one
//! MESSAGE to every registration of the account, so one browser tab's registration and
//! another's each receive it: the first copy reaches every connection, the others nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protocol::{AccountEvent, Aor};
use tokio::sync::mpsc;

/// An event for one of a connection's accounts, from elsewhere in the gateway.
#[derive(Debug)]
pub(crate) struct Forked {
    pub(crate) account: Aor,
    pub(crate) event: AccountEvent,
}

/// How long a delivered message is remembered: longer than SIP's transaction lifetime (32 s),
/// in which a proxy's forks and retransmissions arrive.
const REMEMBERED: Duration = Duration::from_secs(600);
/// The most delivered messages remembered at once, whatever their age: memory stays bounded
/// under a flood.
const REMEMBERED_MAX: usize = 100_000;

/// What became of an incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Delivered lately already: nobody heard of it again.
    Repeat,
    /// Sent to this many connections.
    Reached(usize),
}

impl Delivery {
    /// The status for the message's sender (RFC 3428): 200 when it reached a connection (or
    /// did before) or `elsewhere` took it (a phone), 202 when it is only `kept` for later,
    /// 480 when neither.
    pub(crate) fn status(self, elsewhere: bool, kept: bool) -> u16 {
        match self {
            Delivery::Repeat | Delivery::Reached(1..) => 200,
            Delivery::Reached(0) if elsewhere => 200,
            Delivery::Reached(0) if kept => 202,
            Delivery::Reached(0) => 480,
        }
    }
}

/// The gateway's accounts and their connections.
#[derive(Debug, Default)]
pub(crate) struct Devices {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Connections by account (its key, `user@domain`).
    members: HashMap<String, Vec<Member>>,
    /// Delivered messages (account key, id), oldest first, with when.
    delivered: VecDeque<(Instant, (String, String))>,
    delivered_set: HashSet<(String, String)>,
}

#[derive(Debug)]
struct Member {
    connection: u64,
    events: mpsc::UnboundedSender<Forked>,
}

impl Devices {
    /// `connection` holds `account` and hears of it on `events`.
    pub(crate) fn join(
        &self,
        account: &Aor,
        connection: u64,
        events: &mpsc::UnboundedSender<Forked>,
    ) {
        let mut inner = self.inner.lock().expect("the devices lock");
        let members = inner.members.entry(account.key()).or_default();
        if !members.iter().any(|member| member.connection == connection) {
            members.push(Member {
                connection,
                events: events.clone(),
            });
        }
    }

    /// `connection` no longer holds `account`.
    pub(crate) fn leave(&self, account: &Aor, connection: u64) {
        let mut inner = self.inner.lock().expect("the devices lock");
        let key = account.key();
        if let Some(members) = inner.members.get_mut(&key) {
            members.retain(|member| member.connection != connection);
            if members.is_empty() {
                inner.members.remove(&key);
            }
        }
    }

    /// Sends `event` to every connection holding `account` but `except`; returns how many it
    /// reached.
    pub(crate) fn fork(&self, account: &Aor, except: Option<u64>, event: &AccountEvent) -> usize {
        let inner = self.inner.lock().expect("the devices lock");
        send(inner.members.get(&account.key()), account, except, event)
    }

    /// Delivers an incoming message (or notification), `id`, to every connection holding
    /// `account`, unless it was delivered lately: a repeat reaches nobody. It is remembered
    /// only once it reached a connection, so that a copy that comes again later (a
    /// retransmission, another fork) is not lost when this one reached nobody.
    pub(crate) fn deliver(
        &self,
        account: &Aor,
        id: &str,
        event: &AccountEvent,
        now: Instant,
    ) -> Delivery {
        let mut inner = self.inner.lock().expect("the devices lock");
        while let Some((at, _)) = inner.delivered.front() {
            if now.duration_since(*at) < REMEMBERED && inner.delivered.len() < REMEMBERED_MAX {
                break;
            }
            if let Some((_, key)) = inner.delivered.pop_front() {
                inner.delivered_set.remove(&key);
            }
        }
        let key = (account.key(), id.to_owned());
        if inner.delivered_set.contains(&key) {
            return Delivery::Repeat;
        }
        let reached = send(inner.members.get(&key.0), account, None, event);
        if reached > 0 {
            inner.delivered_set.insert(key.clone());
            inner.delivered.push_back((now, key));
        }
        Delivery::Reached(reached)
    }

    /// How many accounts have connections (for tests).
    #[cfg(test)]
    fn accounts(&self) -> usize {
        self.inner.lock().expect("the devices lock").members.len()
    }
}

/// Sends `event` to each of `members` but `except`; how many it reached.
fn send(
    members: Option<&Vec<Member>>,
    account: &Aor,
    except: Option<u64>,
    event: &AccountEvent,
) -> usize {
    members.map_or(0, |members| {
        members
            .iter()
            .filter(|member| Some(member.connection) != except)
            .filter(|member| {
                member
                    .events
                    .send(Forked {
                        account: account.clone(),
                        event: event.clone(),
                    })
                    .is_ok()
            })
            .count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aor(text: &str) -> Aor {
        Aor::parse(text).expect("an address")
    }

    fn event() -> AccountEvent {
        AccountEvent::Sync(protocol::SyncAction::ConversationRead {
            contact: "bob@example.com".into(),
        })
    }

    /// Every member but the one excepted hears; a connection that left, or that is gone,
    /// does not count.
    #[test]
    fn an_event_reaches_the_accounts_other_connections() {
        let devices = Devices::default();
        let alice = aor("alice@example.com");
        let (one, mut one_rx) = mpsc::unbounded_channel();
        let (two, mut two_rx) = mpsc::unbounded_channel();
        let (three, three_rx) = mpsc::unbounded_channel();
        devices.join(&alice, 1, &one);
        devices.join(&alice, 1, &one);
        devices.join(&alice, 2, &two);
        devices.join(&alice, 3, &three);
        devices.join(&aor("bob@example.com"), 2, &two);
        drop(three_rx);
        assert_eq!(devices.fork(&alice, Some(1), &event()), 1);
        assert!(one_rx.try_recv().is_err());
        let forked = two_rx.try_recv().expect("connection 2 hears");
        assert_eq!(forked.account, alice);
        assert_eq!(
            devices.fork(&aor("sip:alice@EXAMPLE.com"), None, &event()),
            2
        );
        devices.leave(&alice, 1);
        devices.leave(&alice, 2);
        devices.leave(&alice, 3);
        assert_eq!(devices.fork(&alice, None, &event()), 0);
        assert_eq!(devices.accounts(), 1);
    }

    #[test]
    fn the_sender_hears_where_the_message_went() {
        assert_eq!(Delivery::Reached(2).status(false, false), 200);
        assert_eq!(Delivery::Repeat.status(false, false), 200);
        assert_eq!(Delivery::Reached(0).status(true, false), 200);
        assert_eq!(Delivery::Reached(0).status(false, true), 202);
        assert_eq!(Delivery::Reached(0).status(false, false), 480);
    }

    /// A message is delivered once per account until it is forgotten (ten minutes on); one
    /// that reached nobody is not remembered; the memory stays bounded.
    #[test]
    fn a_message_is_delivered_once() {
        let devices = Devices::default();
        let alice = aor("alice@example.com");
        let start = Instant::now();
        let event = event();
        assert_eq!(
            devices.deliver(&alice, "m1", &event, start),
            Delivery::Reached(0)
        );
        let (one, mut one_rx) = mpsc::unbounded_channel();
        let (two, mut two_rx) = mpsc::unbounded_channel();
        devices.join(&alice, 1, &one);
        devices.join(&alice, 2, &two);
        assert_eq!(
            devices.deliver(&alice, "m1", &event, start),
            Delivery::Reached(2)
        );
        assert!(one_rx.try_recv().is_ok() && two_rx.try_recv().is_ok());
        let later = start + Duration::from_secs(30);
        assert_eq!(
            devices.deliver(&alice, "m1", &event, later),
            Delivery::Repeat
        );
        assert!(one_rx.try_recv().is_err());
        assert_eq!(
            devices.deliver(&alice, "m1", &event, start + REMEMBERED),
            Delivery::Reached(2)
        );
        for index in 0..REMEMBERED_MAX + 10 {
            devices.deliver(&alice, &index.to_string(), &event, start + REMEMBERED);
        }
        let inner = devices.inner.lock().expect("the devices lock");
        assert!(inner.delivered.len() <= REMEMBERED_MAX);
        assert_eq!(inner.delivered.len(), inner.delivered_set.len());
    }
}
