//! The handler's side of presence in the local domain: for each account of the domain
//! registered here, the contacts of its address book who let it see them (`crate::presence`)
//! are looked at every [`POLL`], and a change (online, offline) goes to the client as a
//! `presence` account event; the first look sends every watched contact's state. The address
//! books are read again every [`REFRESH`], so a contact added (or a policy changed) shows
//! within that time. Looking is cheap (the location service, in memory), and a poll needs no
//! notification path from the registrar to every watcher.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::{AccountEvent, Aor};
use tracing::warn;

use super::Session;

/// How often watched contacts are looked at.
pub(super) const POLL: Duration = Duration::from_secs(2);
/// How often the address books (the watcher's and its contacts') are read again.
const REFRESH: Duration = Duration::from_secs(30);

/// What one account of this connection watches.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// The contacts it may see, as of `read`.
    contacts: Vec<Aor>,
    read: Option<Instant>,
    /// What the client was told of each (online or not).
    told: HashMap<Aor, bool>,
}

impl Session<'_> {
    pub(super) async fn presence_tick(&mut self) {
        let Some(local) = self.services.local.clone() else {
            return;
        };
        let accounts: Vec<Aor> = self
            .joined
            .iter()
            .filter(|aor| local.is_local(aor.host()))
            .cloned()
            .collect();
        self.watches.retain(|aor, _| accounts.contains(aor));
        for account in accounts {
            let stale = self
                .watches
                .get(&account)
                .and_then(|watch| watch.read)
                .is_none_or(|read| read.elapsed() >= REFRESH);
            if stale {
                let contacts = self.watchable(&account, local.domain()).await;
                let watch = self.watches.entry(account.clone()).or_default();
                watch.told.retain(|contact, _| contacts.contains(contact));
                watch.contacts = contacts;
                watch.read = Some(Instant::now());
            }
            let Some(watch) = self.watches.get_mut(&account) else {
                continue;
            };
            let mut changes = Vec::new();
            for contact in &watch.contacts {
                let user = contact.user();
                let online =
                    !local.browsers(user).is_empty() || !local.phone_bindings(user).is_empty();
                if watch.told.insert(contact.clone(), online) != Some(online) {
                    changes.push((contact.to_string(), online));
                }
            }
            for (contact, online) in changes {
                let state = if online { "online" } else { "offline" };
                self.connection.account_event(
                    &account,
                    AccountEvent::Presence {
                        contact,
                        state: state.to_owned(),
                    },
                );
            }
        }
    }

    /// The contacts of `account`'s address book in the domain who let it see them.
    async fn watchable(&self, account: &Aor, domain: &str) -> Vec<Aor> {
        let store = match self.storage.get() {
            Ok(store) => store,
            Err(error) => {
                warn!("no presence: {error}");
                return Vec::new();
            }
        };
        let book = match store.addressbook(&account.key()).await {
            Ok(book) => book,
            Err(error) => {
                warn!("no presence: {error}");
                return Vec::new();
            }
        };
        let mut allowed = Vec::new();
        for contact in crate::presence::contacts(&book, &domain.to_ascii_lowercase()) {
            if &contact == account {
                continue;
            }
            match store.addressbook(&contact.key()).await {
                Ok(theirs) if crate::presence::allows(&theirs, account) => allowed.push(contact),
                Ok(_) => {}
                Err(error) => warn!("no presence of {contact}: {error}"),
            }
        }
        allowed
    }
}
