//! The handler's side of presence in the local domain: for each account of the domain
//! registered here, the contacts of its address book who let it see them (`crate::presence`)
//! are looked at every [`POLL`], and a change (online, offline) goes to the client as a
//! `presence` account event; the first look sends every watched contact's state. Looking is
//! cheap (the location service, in memory), and a poll needs no notification path from the
//! registrar to every watcher.
//!
//! Whom an account may watch takes reading its address book and each contact's (up to 201
//! store reads): that runs in a task of its own, every [`REFRESH`] and at once after the
//! account changes its address book, so the connection's requests never wait for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{AccountEvent, Aor};
use store::Store;
use tokio::sync::mpsc;
use tracing::warn;

use super::Session;

/// How often watched contacts are looked at.
pub(super) const POLL: Duration = Duration::from_secs(2);
/// How often the address books (the watcher's and its contacts') are read again.
const REFRESH: Duration = Duration::from_secs(30);

/// What a reading task reports: the account, the reading's generation, whom it may watch (for
/// an account of the local domain: its contacts there, then those of other domains).
pub(super) type Read = (Aor, u64, Vec<Aor>, Vec<Aor>);

/// What one account of this connection watches.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// The contacts it may see, as of `read`.
    contacts: Vec<Aor>,
    /// An account of the local domain: its contacts of other domains, watched over SIP.
    foreign: Vec<Aor>,
    read: Option<Instant>,
    /// A reading is under way.
    reading: bool,
    /// Counts readings asked for: a reading that an address book change overtook is dropped.
    generation: u64,
    /// What the client was told of each (online or not).
    told: HashMap<Aor, bool>,
}

impl Session<'_> {
    pub(super) fn presence_tick(&mut self) {
        let local = self.services.local.clone();
        let accounts: Vec<Aor> = self.joined.clone();
        self.watches.retain(|aor, _| accounts.contains(aor));
        self.remote_leave(&accounts);
        for account in accounts {
            let domain = match &local {
                Some(local) if local.is_local(account.host()) => Some(local.domain().to_owned()),
                _ => None,
            };
            let watch = self.watches.entry(account.clone()).or_default();
            let stale = watch.read.is_none_or(|read| read.elapsed() >= REFRESH);
            if stale && !watch.reading {
                watch.reading = true;
                watch.generation += 1;
                let generation = watch.generation;
                self.read_watchable(account.clone(), generation, domain.clone());
            }
            if domain.is_some() {
                self.tell_presence(&account);
            }
            if let Some(watch) = self.watches.get(&account)
                && watch.read.is_some()
            {
                let contacts = self.over_sip(&account, watch);
                self.remote_sync(&account, &contacts);
            }
        }
    }

    /// The account changed its address book: whom it watches is read again now.
    pub(super) fn address_book_changed(&mut self, account: &Aor) {
        if let Some(watch) = self.watches.get_mut(account) {
            watch.read = None;
            watch.reading = false;
            watch.generation += 1;
        }
    }

    /// A reading task's result: taken unless a change made it stale; the client hears the
    /// contacts' states at once.
    pub(super) fn presence_read(&mut self, (account, generation, contacts, foreign): Read) {
        let Some(watch) = self.watches.get_mut(&account) else {
            return;
        };
        if watch.generation != generation {
            return;
        }
        watch.reading = false;
        watch.read = Some(Instant::now());
        watch.told.retain(|contact, _| contacts.contains(contact));
        watch.contacts = contacts;
        watch.foreign = foreign;
        let over_sip = self.over_sip(&account, &self.watches[&account]);
        self.remote_sync(&account, &over_sip);
        if self.is_local_account(&account) {
            self.tell_presence(&account);
        }
    }

    /// The contacts `account` watches over SIP: all of an account of another domain's; the
    /// other domains' contacts of an account of the local domain, unless registration is open
    /// (an open domain must not reach out to other domains, as for calls).
    fn over_sip(&self, account: &Aor, watch: &Watch) -> Vec<Aor> {
        match &self.services.local {
            Some(local) if local.is_local(account.host()) => {
                if local.is_open() {
                    Vec::new()
                } else {
                    watch.foreign.clone()
                }
            }
            _ => watch.contacts.clone(),
        }
    }

    /// Tells the client of `account` each watched contact whose state changed.
    fn tell_presence(&mut self, account: &Aor) {
        let (Some(local), Some(watch)) = (&self.services.local, self.watches.get_mut(account))
        else {
            return;
        };
        let mut changes = Vec::new();
        for contact in &watch.contacts {
            let user = contact.user();
            let online = local.online(user);
            if watch.told.insert(contact.clone(), online) != Some(online) {
                changes.push((contact.to_string(), online));
            }
        }
        for (contact, online) in changes {
            let state = if online { "online" } else { "offline" };
            self.connection.account_event(
                account,
                AccountEvent::Presence {
                    contact,
                    state: state.to_owned(),
                    note: None,
                },
            );
        }
    }

    pub(super) fn is_local_account(&self, account: &Aor) -> bool {
        self.services
            .local
            .as_ref()
            .is_some_and(|local| local.is_local(account.host()))
    }

    /// Reads whom `account` may watch, in a task: for an account of the local `domain`, its
    /// contacts there who let it; for another domain's, its contacts (their servers decide).
    fn read_watchable(&self, account: Aor, generation: u64, domain: Option<String>) {
        let store = match self.storage.get() {
            Ok(store) => store,
            Err(error) => {
                warn!("no presence: {error}");
                let _ = self
                    .presence_reads
                    .send((account, generation, Vec::new(), Vec::new()));
                return;
            }
        };
        let reads = self.presence_reads.clone();
        tokio::spawn(async move {
            let (contacts, foreign) = match domain {
                Some(domain) => watchable(store, &account, &domain.to_ascii_lowercase()).await,
                None => match store.addressbook(&account.key()).await {
                    Ok(book) => (
                        crate::presence::contacts_anywhere(&book, &account),
                        Vec::new(),
                    ),
                    Err(error) => {
                        warn!("no presence: {error}");
                        (Vec::new(), Vec::new())
                    }
                },
            };
            let _ = reads.send((account, generation, contacts, foreign));
        });
    }
}

/// The contacts of `account`'s address book in `domain` who let it see them, and its contacts
/// of other domains (whose servers decide).
async fn watchable(store: Arc<dyn Store>, account: &Aor, domain: &str) -> (Vec<Aor>, Vec<Aor>) {
    let book = match store.addressbook(&account.key()).await {
        Ok(book) => book,
        Err(error) => {
            warn!("no presence: {error}");
            return (Vec::new(), Vec::new());
        }
    };
    let foreign = crate::presence::contacts_anywhere(&book, account)
        .into_iter()
        .filter(|contact| contact.domain() != domain)
        .collect();
    let mut allowed = Vec::new();
    for contact in crate::presence::contacts(&book, domain) {
        if &contact == account {
            continue;
        }
        match store.addressbook(&contact.key()).await {
            Ok(theirs) if crate::presence::allows(&theirs, account) => allowed.push(contact),
            Ok(_) => {}
            Err(error) => warn!("no presence of {contact}: {error}"),
        }
    }
    (allowed, foreign)
}

/// The channel reading tasks report on.
pub(super) fn channel() -> (mpsc::UnboundedSender<Read>, mpsc::UnboundedReceiver<Read>) {
    mpsc::unbounded_channel()
}
