//! Presence within the local domain, pure: which contacts of an account's address book it
//! watches, and whether a user lets a watcher see them (the address book's policies). A user
//! is online while one of their browsers is connected and registered or a phone of theirs is
//! registered; the sylkRTC handler sends the changes as `presence` account events (an
//! extension of this gateway, `docs/protocol.md`).

use protocol::Aor;
use serde_json::Value;

pub(crate) mod pidf;
pub(crate) mod rlmi;
pub(crate) mod server;

/// The most contacts one account watches (the first ones of its address book).
pub(crate) const MAX_WATCHED: usize = 200;

/// The address of an address book item (`uri`, with or without `sip:`).
fn uri_of(item: &Value) -> Option<Aor> {
    let uri = item.get("uri")?.as_str()?;
    let bare = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
        .unwrap_or(uri);
    Aor::parse(bare).ok()
}

fn items<'a>(book: &'a [store::Entry], kind: &'a str) -> impl Iterator<Item = Value> + 'a {
    book.iter()
        .filter(move |entry| entry.kind == kind)
        .filter_map(|entry| serde_json::from_str(&entry.item).ok())
}

/// The contacts of `book` in `domain` (lower case), once each, at most [`MAX_WATCHED`].
pub(crate) fn contacts(book: &[store::Entry], domain: &str) -> Vec<Aor> {
    let mut found: Vec<Aor> = Vec::new();
    for item in items(book, "contact") {
        if let Some(uri) = uri_of(&item)
            && uri.domain() == domain
            && !found.contains(&uri)
        {
            found.push(uri);
            if found.len() == MAX_WATCHED {
                break;
            }
        }
    }
    found
}

/// The contacts of `book` in any domain but `owner`'s own address, once each, at most
/// [`MAX_WATCHED`].
pub(crate) fn contacts_anywhere(book: &[store::Entry], owner: &Aor) -> Vec<Aor> {
    let mut found: Vec<Aor> = Vec::new();
    for item in items(book, "contact") {
        if let Some(uri) = uri_of(&item)
            && &uri != owner
            && !found.contains(&uri)
        {
            found.push(uri);
            if found.len() == MAX_WATCHED {
                break;
            }
        }
    }
    found
}

/// What the owner of an address book lets a watcher see of their presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Their state: a policy says `allow`, or the watcher is one of the owner's contacts.
    Allow,
    /// Nothing yet: a stranger waits until the owner decides (RFC 3857's `pending`).
    Pending,
    /// Always offline (`polite-block`, RFC 5025).
    PoliteBlock,
    /// Refused (`block` or `deny`).
    Block,
}

/// What the owner of `book` lets `watcher` see: a `block`/`deny` policy for the watcher wins,
/// then `polite-block`, then `allow` or being a contact; a stranger waits.
pub(crate) fn decide(book: &[store::Entry], watcher: &Aor) -> Decision {
    let mut decision = None;
    for policy in items(book, "policy") {
        if uri_of(&policy).as_ref() != Some(watcher) {
            continue;
        }
        match policy.get("action").and_then(Value::as_str) {
            Some("block" | "deny") => return Decision::Block,
            Some("polite-block") => decision = Some(Decision::PoliteBlock),
            Some("allow") => {
                decision.get_or_insert(Decision::Allow);
            }
            _ => {}
        }
    }
    if let Some(decision) = decision {
        return decision;
    }
    if items(book, "contact").any(|contact| uri_of(&contact).as_ref() == Some(watcher)) {
        Decision::Allow
    } else {
        Decision::Pending
    }
}

/// Whether the owner of `book` lets `watcher` see their presence (a browser watching in the
/// domain: only [`Decision::Allow`]; a stranger learns nothing).
pub(crate) fn allows(book: &[store::Entry], watcher: &Aor) -> bool {
    decide(book, watcher) == Decision::Allow
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, id: &str, item: Value) -> store::Entry {
        store::Entry {
            kind: kind.into(),
            id: id.into(),
            item: item.to_string(),
        }
    }

    #[test]
    fn contacts_are_the_domains_once_each() {
        let book = [
            entry(
                "contact",
                "1",
                serde_json::json!({"id": "1", "uri": "sip:bob@local.test"}),
            ),
            entry(
                "contact",
                "2",
                serde_json::json!({"id": "2", "uri": "bob@local.test"}),
            ),
            entry(
                "contact",
                "3",
                serde_json::json!({"id": "3", "uri": "carol@example.com"}),
            ),
            entry("contact", "4", serde_json::json!({"id": "4"})),
            entry(
                "group",
                "g",
                serde_json::json!({"id": "g", "uri": "dave@local.test"}),
            ),
        ];
        assert_eq!(
            contacts(&book, "local.test"),
            [Aor::parse("bob@local.test").unwrap()]
        );
    }

    #[test]
    fn watchers_see_only_whom_they_are_allowed_to() {
        let alice = Aor::parse("alice@local.test").unwrap();
        let contact = entry(
            "contact",
            "1",
            serde_json::json!({"id": "1", "uri": "alice@local.test"}),
        );
        let block = entry(
            "policy",
            "p",
            serde_json::json!({"id": "p", "uri": "alice@local.test", "action": "block"}),
        );
        let allow = entry(
            "policy",
            "q",
            serde_json::json!({"id": "q", "uri": "sip:alice@local.test", "action": "allow"}),
        );
        assert!(!allows(&[], &alice), "a stranger");
        assert!(allows(std::slice::from_ref(&contact), &alice));
        assert!(allows(std::slice::from_ref(&allow), &alice));
        assert!(
            !allows(&[contact.clone(), block], &alice),
            "blocked though a contact"
        );
        let polite = entry(
            "policy",
            "r",
            serde_json::json!({"id": "r", "uri": "alice@local.test", "action": "polite-block"}),
        );
        assert_eq!(decide(&[], &alice), Decision::Pending);
        assert_eq!(decide(&[contact, polite], &alice), Decision::PoliteBlock);
    }
}
