//! An account's presence list (RFC 4662): one SUBSCRIBE to the list's address on the
//! account's server, with `Supported: eventlist`, whose NOTIFYs carry the state of every
//! resource on the list (`crate::presence::rlmi`). The resources that are contacts of the
//! account go to the client as `presence` events; the contacts the list does not name are
//! watched one by one by the caller.
//!
//! The list's first NOTIFY is waited for up to [`LIST_WAIT`] before contacts are watched one
//! by one. A list server that refuses is asked again after the same back-off as a contact
//! (`super::backoff`); an address that turns out to be no list (a NOTIFY that does not require
//! `eventlist`: the server took it for a presentity) or whose NOTIFY cannot be read is
//! unsubscribed and asked again after an hour. Meanwhile every contact is watched one by one. A partial NOTIFY whose
//! version does not follow the last one's makes the subscription refresh at once, for the full
//! state (RFC 4662 section 5.2).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use protocol::Aor;
use sip::SubscriptionEvent;
use sip::driver::{Account as SipAccount, OutgoingSubscription, SipHandle, SubscriptionHandle};
use tokio::sync::mpsc;
use tracing::debug;

use super::{EXPIRES, LONG_WAIT, Notice, Remote, Session, Told, backoff, forward};
use crate::presence::rlmi::{self, State};

/// How long the list's first NOTIFY is waited for before contacts are watched one by one.
const LIST_WAIT: Duration = Duration::from_secs(10);
/// The most resources of a list remembered.
const MAX_MEMBERS: usize = 1000;

/// The account's subscription to its list.
#[derive(Debug)]
pub(in crate::sylkrtc::session) struct Listed {
    address: Aor,
    handle: Option<SubscriptionHandle>,
    /// When the live subscription was asked for, until its first list NOTIFY.
    asked: Option<Instant>,
    /// The resources on the list, once a NOTIFY said.
    members: Option<HashSet<Aor>>,
    /// The last NOTIFY's version.
    version: Option<u32>,
    refresh: Option<Instant>,
    retry: Option<Instant>,
    failures: u32,
}

impl Listed {
    pub(super) fn handle(&self) -> Option<SubscriptionHandle> {
        self.handle
    }
}

/// Which contacts the list covers.
pub(super) enum Coverage {
    /// Not known yet: its first NOTIFY is awaited.
    Waiting,
    /// These (none while there is no list to rely on).
    Members(HashSet<Aor>),
}

/// Subscribes to the list at `address`, refreshes or retries it as due, and says which
/// contacts it covers.
pub(super) fn sync(
    remote: &mut Remote,
    address: &Aor,
    (sip, notices): (&SipHandle, &mpsc::UnboundedSender<Notice>),
    account: &Aor,
    sip_account: &SipAccount,
) -> Coverage {
    let now = Instant::now();
    let list = remote.list.get_or_insert_with(|| Listed {
        address: address.clone(),
        handle: None,
        asked: None,
        members: None,
        version: None,
        refresh: None,
        retry: None,
        failures: 0,
    });
    match list.handle {
        Some(handle) if list.refresh.is_some_and(|at| at <= now) => {
            list.refresh = None;
            sip.refresh_subscription(handle, EXPIRES);
        }
        Some(_) => {}
        None if list.retry.is_none_or(|at| at <= now) => {
            let Some(uri) = sip::RequestUri::parse(&format!("sip:{}", list.address)) else {
                return Coverage::Members(HashSet::new());
            };
            let (handle, events) = sip.subscribe(OutgoingSubscription {
                account: sip_account.clone(),
                uri,
                event: "presence".to_owned(),
                accept: "multipart/related, application/rlmi+xml, application/pidf+xml".to_owned(),
                expires: EXPIRES,
                call_id: uuid::Uuid::new_v4().to_string(),
                eventlist: true,
                server: None,
            });
            debug!(%account, list = %list.address, "subscribing to a presence list");
            list.handle = Some(handle);
            list.asked = Some(now);
            list.retry = None;
            forward(events, notices, account, &list.address, handle);
        }
        None => {}
    }
    match &list.members {
        Some(members) => Coverage::Members(members.clone()),
        None if list.handle.is_some()
            && list
                .asked
                .is_some_and(|at| now.duration_since(at) < LIST_WAIT) =>
        {
            Coverage::Waiting
        }
        None => Coverage::Members(HashSet::new()),
    }
}

/// The address a list names a resource by (`sip:bob@example.com;param` -> bob@example.com).
fn aor_of(uri: &str) -> Option<Aor> {
    let bare = uri.trim();
    let bare = bare
        .strip_prefix("sip:")
        .or_else(|| bare.strip_prefix("sips:"))
        .unwrap_or(bare);
    let bare = bare.split([';', '?']).next().unwrap_or_default();
    Aor::parse(bare).ok()
}

/// What the client is told of a resource in the list's state.
fn told(state: State) -> Told {
    match state {
        State::Known(status) => (
            if status.open { "online" } else { "offline" }.to_owned(),
            status.note,
        ),
        State::Pending | State::Unknown(_) => ("unknown".to_owned(), None),
    }
}

impl Session<'_> {
    /// An event of `account`'s list subscription.
    pub(super) fn list_notice(&mut self, account: &Aor, event: SubscriptionEvent) {
        let Some(list) = self
            .remote
            .get_mut(account)
            .and_then(|remote| remote.list.as_mut())
        else {
            return;
        };
        let now = Instant::now();
        let mut tells = Vec::new();
        let mut changed = false;
        match event {
            SubscriptionEvent::Accepted { expires } => {
                list.failures = 0;
                let life = Duration::from_secs(u64::from(expires.max(30)) * 4 / 5);
                list.refresh = Some(now + life);
            }
            SubscriptionEvent::Notify {
                content_type,
                body,
                eventlist,
                ..
            } => match rlmi::read(&content_type, &body) {
                Some(document) if eventlist => {
                    let follows = list
                        .version
                        .is_some_and(|version| document.version == version.wrapping_add(1));
                    if !document.full_state && !follows {
                        debug!(%account, "a presence list's version skipped: asking for it all");
                        list.refresh = Some(now);
                    }
                    list.version = Some(document.version);
                    list.asked = None;
                    let before = list.members.clone();
                    let members = list.members.get_or_insert_with(HashSet::new);
                    if document.full_state {
                        members.clear();
                    }
                    for resource in document.resources {
                        let Some(contact) = aor_of(&resource.uri) else {
                            continue;
                        };
                        if members.len() < MAX_MEMBERS {
                            members.insert(contact.clone());
                        }
                        tells.push((contact, told(resource.state)));
                    }
                    changed = before.as_ref() != Some(members);
                }
                // A list whose subscription waits for authorization says nothing yet.
                None if eventlist && body.is_empty() => {}
                // Not a list after all (the server took the address for a presentity, or
                // sent what cannot be read): the contacts are watched one by one, and the
                // list asked for again later.
                _ => {
                    debug!(%account, list = %list.address, %content_type, "no presence list there");
                    if let Some(handle) = list.handle.take() {
                        self.sip.refresh_subscription(handle, 0);
                    }
                    list.members = None;
                    list.version = None;
                    list.refresh = None;
                    list.asked = None;
                    list.retry = Some(now + LONG_WAIT);
                    changed = true;
                }
            },
            SubscriptionEvent::Ended {
                code,
                reason,
                retry_after,
            } => {
                debug!(%account, list = %list.address, code, %reason, "a presence list subscription ended");
                list.handle = None;
                list.refresh = None;
                list.version = None;
                list.asked = None;
                if code != 0 && !matches!(code, 403 | 404 | 489 | 604) {
                    list.failures += 1;
                }
                let wait = backoff(code, &reason, list.failures, retry_after);
                list.retry = Some(now + wait);
                // Asked again at once: what it covered stays covered meanwhile.
                if !wait.is_zero() {
                    changed = list.members.take().is_some();
                }
            }
            SubscriptionEvent::Refreshed { .. } => {}
        }
        for (contact, told) in tells {
            self.tell_remote(account, &contact, told);
        }
        if changed && let Some(remote) = self.remote.get(account) {
            let wanted = remote.wanted.clone();
            self.remote_sync(account, &wanted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_named_by_their_address() {
        let bob = Aor::parse("bob@example.com").unwrap();
        assert_eq!(aor_of("sip:bob@example.com"), Some(bob.clone()));
        assert_eq!(
            aor_of(" sips:bob@EXAMPLE.com;transport=tls"),
            Some(bob.clone())
        );
        assert_eq!(aor_of("bob@example.com?subject=x"), Some(bob));
        assert_eq!(aor_of("sip:"), None);
        assert_eq!(aor_of("tel:+15551234"), None);
    }
}
