//! The address book requests: `account-fetch-addressbook` answers with the account's stored
//! contacts, groups and policies; `account-update-addressbook` adds, changes or deletes one,
//! then tells this connection and the account's other ones (`addressbook-updated`), or says
//! why not (`addressbook-update-failed`). Both need the account registered: an address book is
//! private.

use protocol::{AccountEvent, AddressbookUpdate, Aor};

use super::{Connection, StoreQuery};
use crate::metrics::ErrorKind;

type Refusal = (ErrorKind, String);

/// The largest item, as JSON.
pub(crate) const MAX_ITEM: usize = 16 * 1024;
/// The most items an account's address book holds.
pub(crate) const MAX_ITEMS: u32 = 5000;

/// What became of an update.
#[derive(Debug)]
pub(crate) enum Updated {
    /// Made: every connection of the account hears of it.
    Done(AccountEvent),
    /// Not made, and why: this connection hears of it.
    Failed(AccountEvent),
}

impl Connection {
    pub(super) fn fetch_addressbook(
        &mut self,
        transaction: &str,
        account: Aor,
    ) -> Result<(), Refusal> {
        self.authenticated(&account)?;
        self.ask_store(transaction, StoreQuery::Addressbook { account });
        Ok(())
    }

    pub(super) fn update_addressbook(
        &mut self,
        transaction: &str,
        update: AddressbookUpdate,
    ) -> Result<(), Refusal> {
        self.authenticated(&update.account)?;
        let size = serde_json::Value::Object(update.data.clone())
            .to_string()
            .len();
        if size > MAX_ITEM {
            return Err((
                ErrorKind::Invalid,
                format!("an address book item is at most {MAX_ITEM} bytes of JSON, not {size}"),
            ));
        }
        self.ask_store(transaction, StoreQuery::UpdateAddressbook(Box::new(update)));
        Ok(())
    }

    /// An update's outcome, after its ack.
    pub(super) fn addressbook_updated(&mut self, account: &Aor, updated: Updated) {
        match updated {
            Updated::Done(event) => {
                self.fork(account, event.clone());
                self.account_event(account, event);
            }
            Updated::Failed(event) => self.account_event(account, event),
        }
    }
}
