//! What the local domain's phones publish (PUBLISH, RFC 3903), pure: each publication has an
//! entity tag, a user, a state and an expiry; a refresh or a change names the entity tag it
//! replaces (SIP-If-Match). A user's publications that are live say whether they are online.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The most publications held (for the whole domain): past it a new one is refused.
pub(crate) const MAX_PUBLICATIONS: usize = 10_000;

#[derive(Debug, Clone)]
struct Publication {
    user: String,
    open: bool,
    expires: Instant,
}

/// Why a PUBLISH is refused: its status and reason.
pub(crate) type Refusal = (u16, &'static str);

/// The domain's live publications, by entity tag.
#[derive(Debug, Default)]
pub(crate) struct Publications {
    by_tag: HashMap<String, Publication>,
    counter: u64,
}

impl Publications {
    /// A PUBLISH from `user`: a new publication (`if_match` none, `open` given), a refresh
    /// (`if_match`, no body) or a change (both), or its removal (`expires` zero). The entity
    /// tag to answer with (none for a removal).
    pub(crate) fn publish(
        &mut self,
        now: Instant,
        user: &str,
        if_match: Option<&str>,
        open: Option<bool>,
        expires: Duration,
    ) -> Result<Option<String>, Refusal> {
        self.expire(now);
        let previous = match if_match {
            Some(tag) => {
                let publication = self
                    .by_tag
                    .get(tag)
                    .filter(|publication| publication.user == user)
                    .ok_or((412, "Conditional Request Failed"))?;
                Some((tag.to_owned(), publication.open))
            }
            None => None,
        };
        if let Some((tag, _)) = &previous {
            self.by_tag.remove(tag);
        }
        if expires.is_zero() {
            return Ok(None);
        }
        let Some(open) = open.or(previous.map(|(_, open)| open)) else {
            return Err((400, "Bad Request (a new publication needs a PIDF body)"));
        };
        if self.by_tag.len() >= MAX_PUBLICATIONS {
            return Err((503, "Service Unavailable (too many publications)"));
        }
        self.counter += 1;
        let tag = format!(
            "{:x}{:x}",
            self.counter,
            uuid::Uuid::new_v4().as_u128() as u64
        );
        self.by_tag.insert(
            tag.clone(),
            Publication {
                user: user.to_owned(),
                open,
                expires: now + expires,
            },
        );
        Ok(Some(tag))
    }

    /// What `user` published, if anything live: open when any of their publications says so.
    pub(crate) fn state(&self, now: Instant, user: &str) -> Option<bool> {
        let mut found = None;
        for publication in self.by_tag.values() {
            if publication.user == user && publication.expires > now {
                found = Some(found.unwrap_or(false) || publication.open);
            }
        }
        found
    }

    fn expire(&mut self, now: Instant) {
        self.by_tag
            .retain(|_, publication| publication.expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_publication_lives_is_refreshed_changed_and_removed() {
        let now = Instant::now();
        let mut table = Publications::default();
        assert_eq!(table.state(now, "bob"), None);
        let tag = table
            .publish(now, "bob", None, Some(true), MINUTE)
            .unwrap()
            .unwrap();
        assert_eq!(table.state(now, "bob"), Some(true));
        // A refresh without a body keeps the state under a new tag; the old one is gone.
        let refreshed = table
            .publish(now, "bob", Some(&tag), None, MINUTE)
            .unwrap()
            .unwrap();
        assert_ne!(refreshed, tag);
        assert_eq!(
            table.publish(now, "bob", Some(&tag), None, MINUTE),
            Err((412, "Conditional Request Failed"))
        );
        // Someone else cannot touch it.
        assert!(
            table
                .publish(now, "eve", Some(&refreshed), Some(false), MINUTE)
                .is_err()
        );
        let changed = table
            .publish(now, "bob", Some(&refreshed), Some(false), MINUTE)
            .unwrap()
            .unwrap();
        assert_eq!(table.state(now, "bob"), Some(false));
        // It runs out, or is removed.
        assert_eq!(table.state(now + MINUTE * 2, "bob"), None);
        assert_eq!(
            table.publish(now, "bob", Some(&changed), None, Duration::ZERO),
            Ok(None)
        );
        assert_eq!(table.state(now, "bob"), None);
        assert_eq!(
            table.publish(now, "bob", None, None, MINUTE),
            Err((400, "Bad Request (a new publication needs a PIDF body)"))
        );
    }

    #[test]
    fn any_open_publication_makes_the_user_open() {
        let now = Instant::now();
        let mut table = Publications::default();
        table
            .publish(now, "bob", None, Some(false), MINUTE)
            .unwrap();
        table.publish(now, "bob", None, Some(true), MINUTE).unwrap();
        assert_eq!(table.state(now, "bob"), Some(true));
    }
}
