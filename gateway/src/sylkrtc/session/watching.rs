//! The handler's side of presence over SIP, for accounts of other domains (registered through
//! their SIP server) and for the contacts of other domains of the local domain's accounts:
//! while the account is registered here, the gateway SUBSCRIBEs (RFC 3856; through the
//! account's server with its credentials, or for a local account straight to each contact's
//! domain) to the first [`MAX_REMOTE`] such contacts of its address book, and each NOTIFY's
//! PIDF becomes a `presence` account event (`online`, `offline` with the document's note, or
//! `unknown` when the contact's server will not tell).
//!
//! Subscriptions are refreshed before they run out, and ended (Expires 0) when a contact
//! leaves the address book, the account leaves, or the connection closes. A refusal backs off:
//! 489 (the server does no presence) for every contact of that domain for an hour, 403 or a
//! `rejected` NOTIFY for that contact for an hour, other failures from 30 s doubling to an
//! hour, and a Retry-After the server gives is taken when longer.
//!
//! Where the account's domain keeps presence lists (`[accounts] presence_lists`), one
//! subscription to the account's list (RFC 4662, [`list`]) covers every contact that is on
//! it; only the contacts the list does not name are watched one by one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::{AccountEvent, Aor};
use sip::SubscriptionEvent;
use sip::driver::{OutgoingSubscription, SubscriptionHandle};
use tokio::sync::mpsc;
use tracing::debug;

use super::Session;

mod list;

/// The most contacts one account of another domain watches (the first of its address book).
pub(super) const MAX_REMOTE: usize = 50;
/// The duration asked for in SUBSCRIBEs.
const EXPIRES: u32 = 600;
/// The wait after a first failure, doubled for each next one up to [`LONG_WAIT`].
const FIRST_RETRY: Duration = Duration::from_secs(30);
/// The wait after a refusal (403, 489, `rejected`), and the longest wait.
const LONG_WAIT: Duration = Duration::from_secs(3600);

/// A subscription's event, with whose it is.
pub(super) type Notice = (Aor, Aor, SubscriptionHandle, SubscriptionEvent);

/// The channel subscriptions report on.
pub(super) fn channel() -> (
    mpsc::UnboundedSender<Notice>,
    mpsc::UnboundedReceiver<Notice>,
) {
    mpsc::unbounded_channel()
}

/// One watched contact.
#[derive(Debug, Default)]
struct Watched {
    handle: Option<SubscriptionHandle>,
    /// When to refresh the live subscription.
    refresh: Option<Instant>,
    /// When to subscribe again after a failure.
    retry: Option<Instant>,
    failures: u32,
}

/// What the client is told of a contact: its state and note.
type Told = (String, Option<String>);

/// What one account of another domain watches.
#[derive(Debug, Default)]
pub(super) struct Remote {
    /// The contacts watched one by one.
    contacts: HashMap<Aor, Watched>,
    /// Domains that do no presence (489), until when.
    quiet_domains: HashMap<String, Instant>,
    /// The account's presence list, when its domain keeps them.
    list: Option<list::Listed>,
    /// The contacts the account watches (the address book's), as of the last look.
    wanted: Vec<Aor>,
    /// What the client was told of each.
    told: HashMap<Aor, Told>,
}

/// Reasons a server ends a subscription with that mean "not again soon" (RFC 6665 section
/// 4.1.3).
fn is_final_reason(reason: &str) -> bool {
    matches!(reason, "rejected" | "noresource" | "giveup")
}

/// How long to wait before subscribing again after a subscription ended with `code` (0: a
/// `terminated` NOTIFY or our unsubscribe, with its `reason`), after `failures` transient
/// failures in a row, the server's Retry-After taken when longer (up to a day).
fn backoff(code: u16, reason: &str, failures: u32, retry_after: Option<u32>) -> Duration {
    let wait = match code {
        0 if is_final_reason(reason) => LONG_WAIT,
        // The server ended it to make us subscribe again.
        0 => Duration::ZERO,
        403 | 404 | 489 | 604 => LONG_WAIT,
        _ => (FIRST_RETRY * 2u32.saturating_pow(failures.saturating_sub(1))).min(LONG_WAIT),
    };
    let asked = Duration::from_secs(u64::from(retry_after.unwrap_or(0))).min(LONG_WAIT * 24);
    wait.max(asked)
}

impl Session<'_> {
    /// Brings an account's subscriptions in line with `contacts` (its address book's), through
    /// its presence list where there is one and one by one for the rest (the first
    /// [`MAX_REMOTE`]), subscribing, refreshing and retrying as due.
    pub(super) fn remote_sync(&mut self, account: &Aor, contacts: &[Aor]) {
        let Some(sip_account) = self.connection.sip_account(account) else {
            return;
        };
        // An account of the local domain has no server elsewhere: each contact's own domain is
        // asked (no list: the local domain's users keep none there).
        let direct = self.is_local_account(account);
        let list_address = (!direct)
            .then(|| self.connection.presence_list(account))
            .flatten();
        let (sip, notices) = (self.sip, self.notices.clone());
        let now = Instant::now();
        let remote = self.remote.entry(account.clone()).or_default();
        remote.wanted = contacts.to_vec();
        remote.told.retain(|contact, _| contacts.contains(contact));
        let coverage = match list_address {
            Some(address) => list::sync(remote, &address, (sip, &notices), account, &sip_account),
            None => list::Coverage::Members(Default::default()),
        };
        // While the list's first NOTIFY is awaited, no one-by-one subscription starts (most
        // would end as soon as it comes).
        let (individual, waiting) = match &coverage {
            list::Coverage::Waiting => (contacts.to_vec(), true),
            list::Coverage::Members(members) => (
                contacts
                    .iter()
                    .filter(|contact| !members.contains(*contact))
                    .take(MAX_REMOTE)
                    .cloned()
                    .collect(),
                false,
            ),
        };
        let gone: Vec<Aor> = remote
            .contacts
            .keys()
            .filter(|contact| !individual.contains(contact))
            .cloned()
            .collect();
        for contact in gone {
            if let Some(Watched {
                handle: Some(handle),
                ..
            }) = remote.contacts.remove(&contact)
            {
                sip.refresh_subscription(handle, 0);
            }
        }
        remote.quiet_domains.retain(|_, until| *until > now);
        for contact in individual.iter().take(MAX_REMOTE) {
            if waiting && !remote.contacts.contains_key(contact) {
                continue;
            }
            let watched = remote.contacts.entry(contact.clone()).or_default();
            if let Some(handle) = watched.handle {
                if watched.refresh.is_some_and(|at| at <= now) {
                    watched.refresh = None;
                    sip.refresh_subscription(handle, EXPIRES);
                }
                continue;
            }
            if watched.retry.is_some_and(|at| at > now)
                || remote.quiet_domains.contains_key(contact.host())
            {
                continue;
            }
            let Some(uri) = sip::RequestUri::parse(&format!("sip:{contact}")) else {
                continue;
            };
            let (handle, events) = sip.subscribe(OutgoingSubscription {
                account: sip_account.clone(),
                uri,
                event: "presence".to_owned(),
                accept: "application/pidf+xml".to_owned(),
                expires: EXPIRES,
                call_id: uuid::Uuid::new_v4().to_string(),
                eventlist: false,
                server: direct.then(|| contact.to_string()),
            });
            debug!(%account, %contact, "subscribing to a contact's presence");
            watched.handle = Some(handle);
            watched.retry = None;
            forward(events, &notices, account, contact, handle);
        }
    }

    /// Ends every subscription of accounts no longer registered here (all of them when
    /// `keep` is empty).
    pub(super) fn remote_leave(&mut self, keep: &[Aor]) {
        let gone: Vec<Aor> = self
            .remote
            .keys()
            .filter(|account| !keep.contains(account))
            .cloned()
            .collect();
        for account in gone {
            if let Some(remote) = self.remote.remove(&account) {
                let list = remote.list.and_then(|list| list.handle());
                for handle in remote
                    .contacts
                    .into_values()
                    .filter_map(|watched| watched.handle)
                    .chain(list)
                {
                    self.sip.refresh_subscription(handle, 0);
                }
            }
        }
    }

    /// A subscription's event: a NOTIFY's state goes to the client; an end is retried later.
    pub(super) fn remote_notice(&mut self, (account, contact, handle, event): Notice) {
        let Some(remote) = self.remote.get_mut(&account) else {
            return;
        };
        if remote
            .list
            .as_ref()
            .is_some_and(|list| list.handle() == Some(handle))
        {
            return self.list_notice(&account, event);
        }
        let Some(watched) = remote.contacts.get_mut(&contact) else {
            return;
        };
        if watched.handle != Some(handle) {
            return;
        }
        let now = Instant::now();
        let tell = match event {
            SubscriptionEvent::Accepted { expires } => {
                watched.failures = 0;
                // Refreshed at four fifths of its life (RFC 6665 leaves the margin to us).
                let life = Duration::from_secs(u64::from(expires.max(30)) * 4 / 5);
                watched.refresh = Some(now + life);
                None
            }
            SubscriptionEvent::Notify {
                state,
                content_type,
                body,
                ..
            } => {
                let pidf = content_type.split(';').next().is_some_and(|essence| {
                    essence.trim().eq_ignore_ascii_case("application/pidf+xml")
                });
                let status = std::str::from_utf8(&body)
                    .ok()
                    .filter(|_| pidf)
                    .and_then(crate::presence::pidf::read);
                match (state.as_str(), status) {
                    (_, Some(status)) => Some((
                        if status.open { "online" } else { "offline" }.to_owned(),
                        status.note,
                    )),
                    ("pending", None) => Some(("unknown".to_owned(), None)),
                    _ => None,
                }
            }
            SubscriptionEvent::Ended {
                code,
                reason,
                retry_after,
            } => {
                debug!(%account, %contact, code, %reason, "a presence subscription ended");
                watched.handle = None;
                watched.refresh = None;
                if code != 0 && !matches!(code, 403 | 404 | 489 | 604) {
                    watched.failures += 1;
                }
                let wait = backoff(code, &reason, watched.failures, retry_after);
                if code == 489 {
                    remote
                        .quiet_domains
                        .insert(contact.host().to_owned(), now + wait);
                }
                let Some(watched) = remote.contacts.get_mut(&contact) else {
                    return;
                };
                watched.retry = Some(now + wait);
                (wait >= LONG_WAIT || code != 0).then(|| ("unknown".to_owned(), None))
            }
            SubscriptionEvent::Refreshed { .. } => None,
        };
        if let Some(told) = tell {
            self.tell_remote(&account, &contact, told);
        }
    }

    /// Tells the client of `account` what it now knows of `contact`, unless that is what it
    /// was told last or the contact is not watched.
    fn tell_remote(&mut self, account: &Aor, contact: &Aor, told: Told) {
        let Some(remote) = self.remote.get_mut(account) else {
            return;
        };
        if !remote.wanted.contains(contact) || remote.told.get(contact) == Some(&told) {
            return;
        }
        remote.told.insert(contact.clone(), told.clone());
        let (state, note) = told;
        self.connection.account_event(
            account,
            AccountEvent::Presence {
                contact: contact.to_string(),
                state,
                note,
            },
        );
    }
}

/// Passes a subscription's events on to the connection's handler, as `contact`'s.
fn forward(
    mut events: mpsc::UnboundedReceiver<SubscriptionEvent>,
    notices: &mpsc::UnboundedSender<Notice>,
    account: &Aor,
    contact: &Aor,
    handle: SubscriptionHandle,
) {
    let notices = notices.clone();
    let (account, contact) = (account.clone(), contact.clone());
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let notice = (account.clone(), contact.clone(), handle, event);
            if notices.send(notice).is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_wait_long_failures_double_and_retry_after_wins() {
        assert_eq!(backoff(489, "Bad Event", 0, None), LONG_WAIT);
        assert_eq!(backoff(403, "Forbidden", 0, None), LONG_WAIT);
        assert_eq!(backoff(0, "rejected", 0, None), LONG_WAIT);
        assert_eq!(backoff(0, "deactivated", 0, None), Duration::ZERO);
        assert_eq!(backoff(0, "timeout", 0, None), Duration::ZERO);
        assert_eq!(backoff(408, "Request Timeout", 1, None), FIRST_RETRY);
        assert_eq!(
            backoff(503, "Service Unavailable", 3, None),
            FIRST_RETRY * 4
        );
        assert_eq!(backoff(500, "Server Error", 40, None), LONG_WAIT);
        assert_eq!(
            backoff(0, "probation", 0, Some(120)),
            Duration::from_secs(120)
        );
        assert_eq!(
            backoff(503, "Service Unavailable", 1, Some(u32::MAX)),
            LONG_WAIT * 24
        );
    }
}
