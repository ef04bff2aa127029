//! The local domain's location service: who its users are (one table of their credentials) and
//! where each can be reached, phones registered over SIP and browsers signed in over WebSocket
//! alike. The registrar writes phone bindings into it and checks digests against it; the
//! gateway records browser bindings in it and routes calls with it.
//!
//! It is a trait so that several gateways can share one (a database) where one gateway keeps
//! it in memory ([`MemoryLocation`]). Its methods do no I/O of their own that a caller waits
//! on: a shared implementation answers from what it holds and writes through, which is why
//! phone bindings are written only when they change.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Instant;

use crate::transport::Target;

/// How a user of the local domain signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// With a password whose HA1 (`md5(user:domain:password)`, lowercase hex) is this.
    Ha1(String),
    /// With any password: registration is open.
    Any,
}

/// A phone's registered Contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI.
    pub contact: String,
    /// Where its REGISTER came from: requests to it go there (NAT, connection reuse).
    pub target: Target,
    /// When it expires.
    pub expires: Instant,
    /// The phone does SIP Outbound (RFC 5626: `+sip.instance` and `reg-id`, or `;ob`): it keeps
    /// its flow alive itself (CRLF or STUN keep-alives), so it needs no OPTIONS pings.
    pub outbound: bool,
    /// Read from the location the gateways of a cluster share, for a registration another
    /// gateway holds: a call goes to it as it is, not checked against this gateway's own.
    pub shared: bool,
}

/// A browser connection where a user takes calls: the connection's number and its number for
/// this registration (a connection may register the same user twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BrowserBinding {
    /// The connection.
    pub owner: u64,
    /// The registration on that connection.
    pub handle: u64,
}

/// The location service of the local domain (see the module's documentation).
pub trait Location: Send + Sync + fmt::Debug {
    /// The domain, lowercase; also the digest realm.
    fn domain(&self) -> &str;
    /// Whether registration is open: any user name, any password.
    fn open_registration(&self) -> bool;
    /// How `user` signs in; `None` for no such user.
    fn credential(&self, user: &str) -> Option<Credential>;
    /// The phone bindings of `user`, expired ones possibly included.
    fn phones(&self, user: &str) -> Vec<Binding>;
    /// Replaces the phone bindings of `user` (none: the user has no phone).
    fn set_phones(&self, user: &str, bindings: Vec<Binding>);
    /// The users with phone bindings.
    fn phone_users(&self) -> Vec<String>;
    /// How many phone bindings there are, in all.
    fn phone_count(&self) -> usize;
    /// Records that `user` takes calls at `binding`.
    fn add_browser(&self, user: &str, binding: BrowserBinding);
    /// Removes a browser binding, whichever user it was for.
    fn remove_browser(&self, binding: BrowserBinding);
    /// The browser bindings of `user`, oldest first.
    fn browsers(&self, user: &str) -> Vec<BrowserBinding>;
    /// How many browser bindings there are, in all.
    fn browser_count(&self) -> usize;

    /// Whether `user` is a user of the domain (any name is, when registration is open).
    fn knows(&self, user: &str) -> bool {
        self.credential(user).is_some()
    }

    /// Whether `host` is the domain (a trailing dot and a port ignored).
    fn is_local(&self, host: &str) -> bool {
        let host = host.split(':').next().unwrap_or(host);
        host.trim_end_matches('.')
            .eq_ignore_ascii_case(self.domain())
    }
}

/// A location service in this process's memory.
#[derive(Debug)]
pub struct MemoryLocation {
    domain: String,
    open: bool,
    users: HashMap<String, String>,
    places: Mutex<Places>,
}

#[derive(Debug, Default)]
struct Places {
    phones: HashMap<String, Vec<Binding>>,
    phone_count: usize,
    browsers: HashMap<String, Vec<BrowserBinding>>,
}

impl MemoryLocation {
    /// The domain `domain` with `users` (name, HA1); with `open` anyone signs in as anyone.
    pub fn new(domain: &str, users: HashMap<String, String>, open: bool) -> MemoryLocation {
        let users = users
            .into_iter()
            .map(|(user, ha1)| (user, ha1.to_ascii_lowercase()))
            .collect();
        MemoryLocation {
            domain: domain.to_ascii_lowercase(),
            open,
            users,
            places: Mutex::default(),
        }
    }

    fn places(&self) -> std::sync::MutexGuard<'_, Places> {
        // A panic while the lock was held leaves whole maps behind: they are still usable.
        self.places
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Location for MemoryLocation {
    fn domain(&self) -> &str {
        &self.domain
    }

    fn open_registration(&self) -> bool {
        self.open
    }

    fn credential(&self, user: &str) -> Option<Credential> {
        if self.open {
            return Some(Credential::Any);
        }
        self.users.get(user).cloned().map(Credential::Ha1)
    }

    fn phones(&self, user: &str) -> Vec<Binding> {
        self.places().phones.get(user).cloned().unwrap_or_default()
    }

    fn set_phones(&self, user: &str, bindings: Vec<Binding>) {
        let mut places = self.places();
        let before = places.phones.get(user).map_or(0, Vec::len);
        places.phone_count = places.phone_count - before + bindings.len();
        if bindings.is_empty() {
            places.phones.remove(user);
        } else {
            places.phones.insert(user.to_owned(), bindings);
        }
    }

    fn phone_users(&self) -> Vec<String> {
        self.places().phones.keys().cloned().collect()
    }

    fn phone_count(&self) -> usize {
        self.places().phone_count
    }

    fn add_browser(&self, user: &str, binding: BrowserBinding) {
        let mut places = self.places();
        let bindings = places.browsers.entry(user.to_owned()).or_default();
        bindings.retain(|known| *known != binding);
        bindings.push(binding);
    }

    fn remove_browser(&self, binding: BrowserBinding) {
        let mut places = self.places();
        for bindings in places.browsers.values_mut() {
            bindings.retain(|known| *known != binding);
        }
        places.browsers.retain(|_, bindings| !bindings.is_empty());
    }

    fn browsers(&self, user: &str) -> Vec<BrowserBinding> {
        self.places()
            .browsers
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    fn browser_count(&self) -> usize {
        self.places().browsers.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transport::Transport;

    fn phone(contact: &str, now: Instant) -> Binding {
        Binding {
            contact: contact.to_owned(),
            target: Target {
                transport: Transport::Udp,
                addr: "127.0.0.1:5080".parse().expect("addr"),
            },
            expires: now + Duration::from_secs(60),
            outbound: false,
            shared: false,
        }
    }

    #[test]
    fn credentials_come_from_one_table_unless_registration_is_open() {
        let users = HashMap::from([("carol".to_owned(), "ABCDEF".to_owned())]);
        let closed = MemoryLocation::new("Local.Test", users.clone(), false);
        assert_eq!(closed.domain(), "local.test");
        assert_eq!(
            closed.credential("carol"),
            Some(Credential::Ha1("abcdef".into()))
        );
        assert_eq!(closed.credential("mallory"), None);
        assert!(!closed.knows("mallory"));
        let open = MemoryLocation::new("local.test", users, true);
        assert_eq!(open.credential("mallory"), Some(Credential::Any));
        assert!(open.open_registration() && !closed.open_registration());
        assert!(open.is_local("LOCAL.test.:5060"));
        assert!(!open.is_local("local.test.evil"));
    }

    #[test]
    fn phones_are_counted_across_users_and_replaced_whole() {
        let now = Instant::now();
        let location = MemoryLocation::new("local.test", HashMap::new(), true);
        location.set_phones("carol", vec![phone("sip:a@x", now), phone("sip:b@x", now)]);
        location.set_phones("dave", vec![phone("sip:c@x", now)]);
        assert_eq!(location.phone_count(), 3);
        location.set_phones("carol", vec![phone("sip:b@x", now)]);
        assert_eq!(location.phone_count(), 2);
        assert_eq!(location.phones("carol")[0].contact, "sip:b@x");
        location.set_phones("dave", Vec::new());
        assert_eq!(location.phone_count(), 1);
        assert_eq!(location.phone_users(), vec!["carol".to_owned()]);
    }

    #[test]
    fn browsers_keep_their_order_and_leave_whichever_user_they_had() {
        let location = MemoryLocation::new("local.test", HashMap::new(), true);
        let first = BrowserBinding {
            owner: 1,
            handle: 1,
        };
        let second = BrowserBinding {
            owner: 2,
            handle: 1,
        };
        location.add_browser("alice", first);
        location.add_browser("alice", second);
        location.add_browser("alice", first);
        assert_eq!(location.browsers("alice"), vec![second, first]);
        assert_eq!(location.browser_count(), 2);
        location.remove_browser(second);
        assert_eq!(location.browsers("alice"), vec![first]);
        location.remove_browser(first);
        assert!(location.browsers("alice").is_empty());
    }
}
