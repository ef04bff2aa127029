//! What the local domain's phones publish (PUBLISH, RFC 3903), pure: each publication has an
//! entity tag, a user, a state and an expiry; a refresh or a change names the entity tag it
//! replaces (SIP-If-Match). A user's publications that are live say whether they are online:
//! their tuples composed, a tuple id's latest state replacing its older ones (a phone that
//! made two publications for one service, say two PUBLISHes racing at start-up, is in the
//! state it published last), and the user open when any tuple is.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The most publications held (for the whole domain): past it a new one is refused.
pub(crate) const MAX_PUBLICATIONS: usize = 10_000;

/// A publication's tuples: each one's id (when it has one) and whether it is open.
pub(crate) type Tuples = Vec<(Option<String>, bool)>;

#[derive(Debug, Clone)]
struct Publication {
    user: String,
    tuples: Tuples,
    /// When its state was last given (the table's counter): newer tuples win.
    changed: u64,
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
    /// A PUBLISH from `user`: a new publication (`if_match` none, `tuples` given), a refresh
    /// (`if_match`, no body) or a change (both), or its removal (`expires` zero). The entity
    /// tag to answer with (none for a removal).
    pub(crate) fn publish(
        &mut self,
        now: Instant,
        user: &str,
        if_match: Option<&str>,
        tuples: Option<Tuples>,
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
                Some((
                    tag.to_owned(),
                    (publication.tuples.clone(), publication.changed),
                ))
            }
            None => None,
        };
        if let Some((tag, _)) = &previous {
            self.by_tag.remove(tag);
        }
        if expires.is_zero() {
            return Ok(None);
        }
        let (tuples, changed) = match (tuples, previous) {
            (Some(tuples), _) => (tuples, self.counter + 1),
            // A refresh: the state and its age as they were.
            (None, Some((_, kept))) => kept,
            (None, None) => {
                return Err((400, "Bad Request (a new publication needs a PIDF body)"));
            }
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
                tuples,
                changed,
                expires: now + expires,
            },
        );
        Ok(Some(tag))
    }

    /// What `user` published, if anything live: open when any of their tuples is, a tuple
    /// id's newest state standing for it.
    pub(crate) fn state(&self, now: Instant, user: &str) -> Option<bool> {
        let mut live: Vec<&Publication> = self
            .by_tag
            .values()
            .filter(|publication| publication.user == user && publication.expires > now)
            .collect();
        if live.is_empty() {
            return None;
        }
        live.sort_by_key(|publication| std::cmp::Reverse(publication.changed));
        let mut seen: Vec<&str> = Vec::new();
        let mut open = false;
        for (id, tuple_open) in live.iter().flat_map(|publication| &publication.tuples) {
            if let Some(id) = id {
                if seen.contains(&id.as_str()) {
                    continue;
                }
                seen.push(id);
            }
            open |= *tuple_open;
        }
        Some(open)
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
            .publish(now, "bob", None, Some(one(true)), MINUTE)
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
                .publish(now, "eve", Some(&refreshed), Some(one(false)), MINUTE)
                .is_err()
        );
        let changed = table
            .publish(now, "bob", Some(&refreshed), Some(one(false)), MINUTE)
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

    /// One tuple, `t`.
    fn one(open: bool) -> Tuples {
        vec![(Some("t".to_owned()), open)]
    }

    #[test]
    fn any_open_tuple_makes_the_user_open() {
        let now = Instant::now();
        let mut table = Publications::default();
        let other = vec![(Some("other".to_owned()), false)];
        table
            .publish(now, "bob", None, Some(other), MINUTE)
            .unwrap();
        table
            .publish(now, "bob", None, Some(one(true)), MINUTE)
            .unwrap();
        assert_eq!(table.state(now, "bob"), Some(true));
        let anonymous = vec![(None, true), (None, false)];
        table
            .publish(now, "carol", None, Some(anonymous), MINUTE)
            .unwrap();
        assert_eq!(table.state(now, "carol"), Some(true));
    }

    /// Two publications of one tuple (a phone's PUBLISHes that raced at start-up): the one
    /// changed last says the state, even after the other is refreshed.
    #[test]
    fn a_tuples_newest_state_stands_for_it() {
        let now = Instant::now();
        let mut table = Publications::default();
        let first = table
            .publish(now, "bob", None, Some(one(true)), MINUTE)
            .unwrap()
            .unwrap();
        let second = table
            .publish(now, "bob", None, Some(one(true)), MINUTE)
            .unwrap()
            .unwrap();
        assert_eq!(table.state(now, "bob"), Some(true));
        let second = table
            .publish(now, "bob", Some(&second), Some(one(false)), MINUTE)
            .unwrap()
            .unwrap();
        assert_eq!(table.state(now, "bob"), Some(false));
        // A refresh of the stale one does not make it newer.
        table
            .publish(now, "bob", Some(&first), None, MINUTE)
            .unwrap();
        assert_eq!(table.state(now, "bob"), Some(false));
        table
            .publish(now, "bob", Some(&second), Some(one(true)), MINUTE)
            .unwrap();
        assert_eq!(table.state(now, "bob"), Some(true));
    }
}
