//! The gateway as registrar of its local domain (RFC 3261 section 10.3), sans-IO: softphones
//! register their Contacts here with digest authentication, and the gateway finds them to call
//! them.
//!
//! Challenges carry a nonce the registrar can check without remembering it: the time it was
//! made and a MAC of that time under a secret. A nonce older than its lifetime gets a fresh
//! challenge with `stale=true`; a nonce count that does not grow is a replay and is refused.
//! With open registration any user may register with any password (the challenge is still
//! made, so that phones run their usual authentication), which only suits a demonstration.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ezk_sip_types::Name;
use ezk_sip_types::header::typed::{AuthResponse, Contact};
use md5::{Digest as _, Md5};
use sha2::Sha256;

use crate::location::{Credential, Location};
use crate::message::{Message, header_param, list};
use crate::transport::Target;
use crate::transport::Transport;
pub(crate) use crate::uri::uri_user;

/// The local domain's settings.
#[derive(Debug, Clone)]
pub struct LocalDomain {
    /// Its location service: the domain (also the digest realm), its users' credentials, and
    /// where the registrar keeps the phones' bindings.
    pub location: Arc<dyn Location>,
    /// The key of the nonces' MACs (random per run).
    pub secret: String,
    /// How long a nonce may be used.
    pub nonce_lifetime: Duration,
    /// The longest registration granted, and the shortest accepted.
    pub max_expires: u32,
    /// The shortest registration accepted (423 below it).
    pub min_expires: u32,
    /// How often phones that do not do SIP Outbound are sent an OPTIONS ping over their
    /// registration's flow (UDP only), which keeps their NAT binding open and finds phones that
    /// are gone; none: never.
    pub ping_interval: Option<Duration>,
    /// The other gateways that serve the domain with this one, by their SIP address (UDP, which
    /// their requests come from): an INVITE from one of them for a user of the domain, from a
    /// user of the domain, is taken without a digest challenge (that gateway challenged the
    /// caller), and it is sent straight to them as a branch of a call (see
    /// `Endpoint::is_peer`). The whole address counts, not the host alone: a proxy or phone on
    /// a peer's host is no peer.
    pub peers: Vec<std::net::SocketAddr>,
}

pub(crate) use crate::location::Binding;

/// A binding whose OPTIONS ping is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// The user.
    pub user: String,
    /// The Contact URI (the OPTIONS's Request-URI).
    pub contact: String,
    /// Where it goes: the flow of the registration.
    pub target: Target,
}

/// The keep-alive interval a phone doing SIP Outbound is told to use (`Flow-Timer`, RFC 5626
/// section 4.4.1): under the usual 30 s and more of NAT bindings for UDP.
pub(crate) const FLOW_TIMER: u32 = 25;

/// Why a request is not authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No credentials (or for another realm): challenge.
    Missing,
    /// A nonce too old: challenge again with `stale=true`.
    Stale,
    /// Wrong credentials, an unknown user, or a replayed nonce count.
    Forbidden,
}

/// The most nonces remembered at once; past it the oldest are forgotten (their replays within
/// their lifetime are then no longer recognised, which a flood of that size may cost).
const MAX_NONCES: usize = 100_000;
/// The most Contacts one REGISTER may add, and one user may have.
pub(crate) const MAX_CONTACTS: usize = 10;
/// The most bindings in all (open registration lets anyone create users).
const MAX_BINDINGS: usize = 100_000;
/// How often expired bindings of users no request touches are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The registrar.
#[derive(Debug)]
pub(crate) struct Registrar {
    config: LocalDomain,
    epoch: Instant,
    /// When expired bindings of users nobody looks up are swept next.
    next_sweep: Instant,
    /// The last nonce count seen per nonce in use, to refuse replays.
    counts: HashMap<String, u32>,
    /// The nonces of `counts` in the order they were first used, to forget them once they are
    /// stale (a stale nonce is refused before its count matters): constant cost per request.
    nonce_order: VecDeque<(Instant, String)>,
    /// Makes nonces of the same millisecond distinct.
    serial: u64,
    /// Pings by due time (user, contact): entries are only added at `now + interval`, so the
    /// queue is in time order; an entry whose binding has moved on is skipped when it comes up.
    pings: VecDeque<(Instant, String, String)>,
    /// When each pinged binding (user, contact) is pinged next: a queue entry due at another
    /// time is stale. Kept here, not in the location service: pinging is this instance's
    /// duty toward the flows it holds, and a shared location is written only on change.
    ping_due: HashMap<(String, String), Instant>,
}

impl Registrar {
    /// A registrar with no bindings.
    pub(crate) fn new(config: LocalDomain, now: Instant) -> Registrar {
        Registrar {
            config,
            epoch: now,
            next_sweep: now + SWEEP_INTERVAL,
            counts: HashMap::new(),
            nonce_order: VecDeque::new(),
            serial: 0,
            pings: VecDeque::new(),
            ping_due: HashMap::new(),
        }
    }

    /// The local domain.
    pub(crate) fn domain(&self) -> &str {
        self.config.location.domain()
    }

    /// Whether `addr` is another gateway's of the domain.
    pub(crate) fn is_peer(&self, addr: std::net::SocketAddr) -> bool {
        self.config.peers.contains(&addr)
    }

    /// Whether `host` is the local domain.
    pub(crate) fn is_local(&self, host: &str) -> bool {
        self.config.location.is_local(host)
    }

    /// Whether `user` is a user of the domain (any name is, when registration is open), so
    /// that a call to one with no binding is 480, not 404.
    pub(crate) fn knows(&self, user: &str) -> bool {
        self.config.location.knows(user)
    }

    fn mac(&self, stamp: &str) -> String {
        let digest = Sha256::digest(format!("{}:{stamp}", self.config.secret).as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn nonce(&mut self, now: Instant) -> String {
        self.serial += 1;
        let stamp = format!(
            "{:x}.{:x}",
            now.saturating_duration_since(self.epoch).as_millis(),
            self.serial
        );
        format!("{stamp}.{}", self.mac(&stamp))
    }

    /// The age of a nonce we made, `None` for one we did not.
    fn nonce_age(&self, nonce: &str, now: Instant) -> Option<Duration> {
        let (stamp, mac) = nonce.rsplit_once('.')?;
        if self.mac(stamp) != mac {
            return None;
        }
        let (millis, _) = stamp.split_once('.')?;
        let millis = u64::from_str_radix(millis, 16).ok()?;
        let made = self.epoch + Duration::from_millis(millis);
        Some(now.saturating_duration_since(made))
    }

    /// A challenge (401 for REGISTER, 407 for other requests) to `request`.
    pub(crate) fn challenge(
        &mut self,
        now: Instant,
        request: &Message,
        code: u16,
        stale: bool,
        tag: &str,
    ) -> Message {
        let (reason, name) = if code == 407 {
            ("Proxy Authentication Required", Name::PROXY_AUTHENTICATE)
        } else {
            ("Unauthorized", Name::WWW_AUTHENTICATE)
        };
        let mut response = request.response(code, reason, Some(tag));
        let nonce = self.nonce(now);
        let mut value = format!(
            "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"",
            self.domain()
        );
        if stale {
            value.push_str(", stale=true");
        }
        response.headers.insert(name, value);
        response
    }

    /// Checks a request's credentials (`header`: Authorization or Proxy-Authorization) for
    /// `user` of the local domain.
    pub(crate) fn authenticate(
        &mut self,
        now: Instant,
        request: &Message,
        header: &Name,
        user: &str,
    ) -> Result<(), Refusal> {
        let Some(method) = request.method().map(|m| m.to_string()) else {
            return Err(Refusal::Forbidden);
        };
        let responses = list::<AuthResponse>(&request.headers, header).unwrap_or_default();
        let digest = responses.into_iter().find_map(|response| match response {
            AuthResponse::Digest(digest) if self.is_local(&digest.realm) => Some(digest),
            _ => None,
        });
        let Some(digest) = digest else {
            return Err(Refusal::Missing);
        };
        let username = match &digest.username {
            ezk_sip_types::header::typed::Username::Username(name)
            | ezk_sip_types::header::typed::Username::UsernameNonASCII(name) => name.to_string(),
        };
        let Some(age) = self.nonce_age(&digest.nonce, now) else {
            return Err(Refusal::Missing); // Not our nonce (another run's): a fresh challenge.
        };
        if age > self.config.nonce_lifetime {
            return Err(Refusal::Stale);
        }
        if !username.eq_ignore_ascii_case(user) {
            return Err(Refusal::Forbidden);
        }
        // Replays: the nonce count must grow (without qop there is none: one use per nonce).
        let count = digest.qop_response.as_ref().map_or(1, |qop| qop.nc);
        self.forget_stale_nonces(now);
        if let Some(last) = self.counts.get(digest.nonce.as_str())
            && count <= *last
        {
            return Err(Refusal::Forbidden);
        }
        match self.config.location.credential(user) {
            None => return Err(Refusal::Forbidden),
            Some(Credential::Any) => {}
            Some(Credential::Ha1(ha1)) => {
                let hex = |data: String| -> String {
                    Md5::digest(data.as_bytes())
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect()
                };
                let ha2 = hex(format!("{method}:{}", digest.uri));
                let expected = match &digest.qop_response {
                    Some(qop) => hex(format!(
                        "{}:{}:{:08x}:{}:auth:{ha2}",
                        ha1.to_ascii_lowercase(),
                        digest.nonce,
                        qop.nc,
                        qop.cnonce
                    )),
                    None => hex(format!(
                        "{}:{}:{ha2}",
                        ha1.to_ascii_lowercase(),
                        digest.nonce
                    )),
                };
                if !expected.eq_ignore_ascii_case(&digest.response) {
                    return Err(Refusal::Forbidden);
                }
            }
        }
        if self
            .counts
            .insert(digest.nonce.to_string(), count)
            .is_none()
        {
            self.nonce_order.push_back((now, digest.nonce.to_string()));
            while self.counts.len() > MAX_NONCES {
                let Some((_, oldest)) = self.nonce_order.pop_front() else {
                    break;
                };
                self.counts.remove(&oldest);
            }
        }
        Ok(())
    }

    /// Forgets the nonces first used more than a lifetime ago: they are stale by now.
    fn forget_stale_nonces(&mut self, now: Instant) {
        while let Some((first_used, _)) = self.nonce_order.front() {
            if now.saturating_duration_since(*first_used) <= self.config.nonce_lifetime {
                break;
            }
            if let Some((_, nonce)) = self.nonce_order.pop_front() {
                self.counts.remove(&nonce);
            }
        }
    }

    /// How many nonces are remembered.
    #[cfg(test)]
    pub(crate) fn nonces_remembered(&self) -> usize {
        self.counts.len()
    }

    /// Drops expired bindings of every user, once per [`SWEEP_INTERVAL`].
    fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        for user in self.config.location.phone_users() {
            self.live_bindings(now, &user);
        }
    }

    /// The bindings of `user` that have not expired; the expired ones are removed.
    fn live_bindings(&self, now: Instant, user: &str) -> Vec<Binding> {
        let bindings = self.config.location.phones(user);
        let live: Vec<Binding> = bindings
            .iter()
            .filter(|binding| binding.expires > now)
            .cloned()
            .collect();
        if live.len() < bindings.len() {
            self.config.location.set_phones(user, live.clone());
        }
        live
    }

    /// How many bindings there are (expired ones not swept yet included).
    #[cfg(test)]
    pub(crate) fn binding_count(&self) -> usize {
        self.config.location.phone_count()
    }

    /// Handles a REGISTER for the local domain from `source`: the response to send.
    pub(crate) fn handle_register(
        &mut self,
        now: Instant,
        request: &Message,
        source: Target,
        tag: &str,
    ) -> Message {
        let Some(user) = request
            .header(&Name::TO)
            .and_then(|to| uri_user(crate::uri::bare_uri(to)).map(str::to_owned))
        else {
            return request.response(400, "Bad Request (no user in To)", Some(tag));
        };
        match self.authenticate(now, request, &Name::AUTHORIZATION, &user) {
            Ok(()) => {}
            Err(Refusal::Missing) => return self.challenge(now, request, 401, false, tag),
            Err(Refusal::Stale) => return self.challenge(now, request, 401, true, tag),
            Err(Refusal::Forbidden) => return request.response(403, "Forbidden", Some(tag)),
        }
        let default = request
            .header(&Name::EXPIRES)
            .and_then(|value| value.trim().parse::<u32>().ok())
            .unwrap_or(3600);
        let raw_contacts: Vec<String> = request
            .headers
            .get_raw(&Name::CONTACT)
            .flat_map(|value| crate::message::split_list(value.as_str()))
            .map(|entry| entry.trim().to_owned())
            .filter(|entry| !entry.is_empty())
            .collect();
        if raw_contacts.len() > MAX_CONTACTS {
            return request.response(
                403,
                &format!("Forbidden (at most {MAX_CONTACTS} Contacts)"),
                Some(tag),
            );
        }
        self.sweep(now);
        let mut outbound_used = false;
        let mut fresh_pings = Vec::new();
        // The user's bindings are changed on a copy, taken only if the whole REGISTER is.
        let stored = self.config.location.phones(&user);
        let before = stored.len();
        let mut bindings = stored.clone();
        bindings.retain(|binding| binding.expires > now);
        if raw_contacts.iter().any(|contact| contact == "*") {
            if default != 0 {
                return request.response(400, "Bad Request (* needs Expires: 0)", Some(tag));
            }
            bindings.clear();
        } else {
            if list::<Contact>(&request.headers, &Name::CONTACT).is_err() {
                return request.response(400, "Bad Request (invalid Contact)", Some(tag));
            }
            for entry in &raw_contacts {
                let uri = crate::uri::bare_uri(entry).to_owned();
                let expires = header_param(entry, "expires")
                    .and_then(|value| value.parse::<u32>().ok())
                    .unwrap_or(default);
                if expires != 0 && expires < self.config.min_expires {
                    let mut response = request.response(423, "Interval Too Brief", Some(tag));
                    response
                        .headers
                        .insert(Name::MIN_EXPIRES, self.config.min_expires.to_string());
                    return response;
                }
                bindings.retain(|binding| binding.contact != uri);
                if expires > 0 {
                    let granted = expires.min(self.config.max_expires);
                    let outbound = does_outbound(entry);
                    outbound_used |= outbound;
                    let next_ping = self
                        .config
                        .ping_interval
                        .filter(|_| !outbound && source.transport == Transport::Udp)
                        .map(|interval| now + interval);
                    fresh_pings.push((next_ping, uri.clone()));
                    bindings.push(Binding {
                        contact: uri,
                        target: source,
                        expires: now + Duration::from_secs(u64::from(granted)),
                        outbound,
                        shared: false,
                    });
                }
            }
        }
        if bindings.len() > MAX_CONTACTS {
            return request.response(
                403,
                &format!("Forbidden (at most {MAX_CONTACTS} Contacts per user)"),
                Some(tag),
            );
        }
        let total = self.config.location.phone_count() - before + bindings.len();
        if bindings.len() > before && total > MAX_BINDINGS {
            let mut response = request.response(503, "Service Unavailable", Some(tag));
            response.headers.insert(Name::RETRY_AFTER, "60");
            return response;
        }
        let mut response = request.response(200, "OK", Some(tag));
        if outbound_used {
            // RFC 5626 section 6: the flow is kept; the phone keeps it alive this often.
            response.headers.insert(Name::REQUIRE, "outbound");
            response
                .headers
                .insert(Name::from("Flow-Timer".to_owned()), FLOW_TIMER.to_string());
        }
        for binding in bindings.iter() {
            let left = binding.expires.saturating_duration_since(now).as_secs();
            response.headers.insert(
                Name::CONTACT,
                format!("<{}>;expires={left}", binding.contact),
            );
        }
        for (due, contact) in fresh_pings {
            let key = (user.clone(), contact);
            match due {
                Some(due) => {
                    self.ping_due.insert(key.clone(), due);
                    self.pings.push_back((due, key.0, key.1));
                }
                None => {
                    self.ping_due.remove(&key);
                }
            }
        }
        // Written on change only: a shared location pays for each write.
        if bindings != stored {
            self.config.location.set_phones(&user, bindings);
        }
        response
    }

    /// The live bindings of `user`.
    pub(crate) fn lookup(&mut self, now: Instant, user: &str) -> Vec<Binding> {
        self.sweep(now);
        self.live_bindings(now, user)
    }

    /// Users with at least one binding.
    #[cfg(test)]
    pub(crate) fn registered_count(&self) -> usize {
        self.config.location.phone_users().len()
    }

    /// When the next ping may be due (possibly early: its binding may have moved on).
    pub(crate) fn next_ping(&self) -> Option<Instant> {
        self.pings.front().map(|(due, _, _)| *due)
    }

    /// The pings due at `now`; each binding's next one is scheduled an interval later.
    pub(crate) fn due_pings(&mut self, now: Instant) -> Vec<Ping> {
        let Some(interval) = self.config.ping_interval else {
            return Vec::new();
        };
        let mut due = Vec::new();
        while self.pings.front().is_some_and(|(at, _, _)| *at <= now) {
            let Some((at, user, contact)) = self.pings.pop_front() else {
                break;
            };
            let key = (user, contact);
            if self.ping_due.get(&key) != Some(&at) {
                continue;
            }
            let target = self
                .config
                .location
                .phones(&key.0)
                .into_iter()
                .find(|binding| binding.contact == key.1 && binding.expires > now)
                .map(|binding| binding.target);
            let Some(target) = target else {
                self.ping_due.remove(&key);
                continue;
            };
            due.push(Ping {
                user: key.0.clone(),
                contact: key.1.clone(),
                target,
            });
            self.ping_due.insert(key.clone(), now + interval);
            self.pings.push_back((now + interval, key.0, key.1));
        }
        due
    }

    /// A ping got no response at all (or its flow failed): the phone is gone, its binding too,
    /// unless a REGISTER since moved it to another flow. Returns whether it was removed.
    pub(crate) fn ping_failed(&mut self, ping: &Ping) -> bool {
        let mut bindings = self.config.location.phones(&ping.user);
        let before = bindings.len();
        bindings
            .retain(|binding| !(binding.contact == ping.contact && binding.target == ping.target));
        let removed = before > bindings.len();
        if removed {
            self.ping_due
                .remove(&(ping.user.clone(), ping.contact.clone()));
            self.config.location.set_phones(&ping.user, bindings);
        }
        removed
    }
}

/// Whether a Contact of a REGISTER asks for SIP Outbound: `+sip.instance` with `reg-id`, or the
/// URI's `ob` parameter (RFC 5626 section 4.2).
fn does_outbound(contact: &str) -> bool {
    let instance = header_param(contact, "+sip.instance").is_some();
    let reg_id = header_param(contact, "reg-id").is_some();
    let uri = crate::uri::bare_uri(contact);
    let ob = uri
        .split(';')
        .skip(1)
        .any(|param| param.trim().eq_ignore_ascii_case("ob"));
    (instance && reg_id) || ob
}

#[cfg(test)]
mod tests;
