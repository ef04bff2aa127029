//! Registration of one account binding (RFC 3261 section 10), sans-IO.
//!
//! The machine builds each REGISTER, reads the final response to it, and schedules refreshes and
//! retries on the clock it is given. It does not send anything itself: the driver runs each
//! request in a client transaction and reports back its final response, or its failure.
//!
//! * The Contact is this binding's own (its own user part and `+sip.instance`), so several
//!   connections registering one account each hold a binding, and un-registering removes only
//!   ours (`Expires: 0` on our Contact, never `*`).
//! * The granted expiry is read from our Contact's `expires` in the 200 OK, else from the
//!   Expires header; 423 Interval Too Brief is honoured with the Min-Expires it names.
//! * Digest challenges are answered from the HA1; a second challenge is a failure, never retried.
//! * A refresh is sent before the binding expires; a failed one is retried with backoff, except
//!   after 401/403/404, which the same credentials would only repeat.
//! * When the response's Via shows that the registrar saw another source address (`received`,
//!   `rport`: a NAT), the Contact is rewritten to that address and registered again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ezk_sip_types::header::typed::Contact;
use ezk_sip_types::{Headers, Method, Name};

use crate::auth::{AuthError, Credentials, DigestClient};
use crate::call::ALLOW;
use crate::message::{Message, RequestUri, StartLine, list};
pub(crate) use crate::transport::Transport;

/// Everything a binding needs to build its REGISTERs.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The account's user part.
    pub user: String,
    /// The account's domain (host, optionally `:port`).
    pub domain: String,
    /// The display name for From and To.
    pub display_name: Option<String>,
    /// The digest credentials.
    pub credentials: Credentials,
    /// A Route for an outbound proxy (`<sip:proxy;lr>`), if one is used.
    pub route: Option<String>,
    /// The transport the REGISTERs go over.
    pub transport: Transport,
    /// Our address as the Via `sent-by` and the Contact host (`host:port`).
    pub local: String,
    /// Whether `local` was configured (an advertised address): then responses never rewrite it.
    pub local_fixed: bool,
    /// The Contact's user part: unique to this binding, so that requests to it find it.
    pub contact_user: String,
    /// The `+sip.instance` URN of this binding (`urn:uuid:...`).
    pub instance: String,
    /// Parameters of the Contact URI (name, value), escaped here as RFC 3261 requires.
    pub contact_params: Vec<(String, String)>,
    /// The expiry to ask for, in seconds.
    pub expires: u32,
    /// The User-Agent header.
    pub user_agent: String,
    /// The Call-ID of every REGISTER of this binding.
    pub call_id: String,
    /// The From tag of every REGISTER of this binding.
    pub from_tag: String,
    /// Random text to build branches and cnonces from (with a counter).
    pub nonce_seed: String,
}

/// What the registration reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    /// A REGISTER is on its way (not reported again for refreshes).
    Registering,
    /// The binding is in place for `expires` seconds.
    Registered {
        /// The granted expiry.
        expires: u32,
    },
    /// Registration failed: the reason is a status line ("401 Unauthorized") or a transport
    /// failure; `retry_in` says when it is tried again, if ever.
    Failed {
        /// Why.
        reason: String,
        /// When the next attempt is made.
        retry_in: Option<Duration>,
    },
    /// The binding was removed (or the un-REGISTER failed: it expires by itself).
    Unregistered,
}

/// Why a request got no final response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No response in time (a local 408).
    Timeout,
    /// The transport could not deliver (connection refused, unreachable, ...).
    Transport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// A REGISTER is outstanding; `refresh` tells whether the binding was up before it.
    Registering {
        refresh: bool,
    },
    Registered,
    /// Waiting to try again after a failure (or forever, when `retry` is `None`).
    Failed,
    Unregistering,
    Done,
}

/// The first retry interval after a failure, doubled each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(1800);

/// The wait before retry number `attempt` (0 for the first) of something that failed:
/// 30 s, doubling up to 30 min. Registrations and the DNS look-ups before them share it.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

/// One account binding's registration.
#[derive(Debug)]
pub(crate) struct Registration {
    config: RegistrationConfig,
    auth: DigestClient,
    phase: Phase,
    cseq: u32,
    counter: u64,
    /// The expiry asked for (raised by 423).
    expires: u32,
    /// A Contact we must remove in the next REGISTER (our old address, after a NAT rewrite).
    stale_contact: Option<String>,
    /// The account's other Contacts the registrar listed when our binding was first made,
    /// for the endpoint to look at ([`Registration::poll_other_contact`]).
    others: VecDeque<String>,
    /// Other Contacts to remove ([`Registration::remove_contact`]): sent with each REGISTER
    /// until one is accepted (a challenge's retry carries them again).
    removals: Vec<String>,
    /// The removals the outstanding REGISTER carries.
    removals_sent: usize,
    /// When to refresh or retry.
    timer: Option<Instant>,
    backoff: Duration,
    /// The last state reported, so that repeats are not sent.
    reported: Option<RegistrationEvent>,
    out: VecDeque<Message>,
    events: VecDeque<RegistrationEvent>,
}

impl Registration {
    /// A registration that has not started.
    pub(crate) fn new(config: RegistrationConfig) -> Self {
        Registration {
            auth: DigestClient::new(config.credentials.clone()),
            expires: config.expires,
            config,
            phase: Phase::Idle,
            cseq: 0,
            counter: 0,
            stale_contact: None,
            others: VecDeque::new(),
            removals: Vec::new(),
            removals_sent: 0,
            timer: None,
            backoff: FIRST_BACKOFF,
            reported: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The binding's configuration.
    pub(crate) fn config(&self) -> &RegistrationConfig {
        &self.config
    }

    /// Whether the binding is in place.
    pub(crate) fn is_registered(&self) -> bool {
        matches!(
            self.phase,
            Phase::Registered | Phase::Registering { refresh: true }
        )
    }

    /// Whether an attempt just ended: registered or failed, nothing outstanding.
    pub(crate) fn is_settled(&self) -> bool {
        matches!(self.phase, Phase::Registered | Phase::Failed)
    }

    /// Whether nothing more will happen (un-registered).
    pub(crate) fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Starts (or restarts) registering.
    pub(crate) fn register(&mut self) {
        if matches!(self.phase, Phase::Registering { .. } | Phase::Unregistering) {
            return;
        }
        let refresh = self.phase == Phase::Registered;
        self.phase = Phase::Registering { refresh };
        if !refresh {
            self.report(RegistrationEvent::Registering);
        }
        self.send_register(self.expires);
    }

    /// Removes our binding (`Expires: 0` on our Contact). Nothing is sent if it never
    /// succeeded.
    pub(crate) fn unregister(&mut self) {
        let was_bound = self.is_registered() || matches!(self.phase, Phase::Registering { .. });
        self.timer = None;
        if !was_bound {
            self.phase = Phase::Done;
            self.events.push_back(RegistrationEvent::Unregistered);
            return;
        }
        self.phase = Phase::Unregistering;
        self.send_register(0);
    }

    /// Removes another binding of the account, `contact` (one a gateway that is gone left
    /// behind): with the next REGISTER, at once when ours is in place.
    pub(crate) fn remove_contact(&mut self, contact: String) {
        if self.removals.contains(&contact)
            || matches!(self.phase, Phase::Unregistering | Phase::Done)
        {
            return;
        }
        self.removals.push(contact);
        if self.phase == Phase::Registered {
            self.register();
        }
    }

    /// The next of the account's other Contacts seen when our binding was first made.
    pub(crate) fn poll_other_contact(&mut self) -> Option<String> {
        self.others.pop_front()
    }

    /// The outstanding REGISTER's server failed (no response, a transport error, 503): the
    /// same REGISTER again in a new transaction, for the next server of the domain (RFC 3263
    /// section 4.3). False when nothing is outstanding.
    pub(crate) fn failover(&mut self) -> bool {
        match self.phase {
            Phase::Registering { .. } => self.send_register(self.expires),
            Phase::Unregistering => self.send_register(0),
            _ => return false,
        }
        true
    }

    /// The final response to the outstanding REGISTER.
    pub(crate) fn handle_response(&mut self, now: Instant, response: &Message) {
        let Some(code) = response.code() else { return };
        if code < 200 {
            return;
        }
        let status = status_line(response);
        match self.phase {
            Phase::Registering { .. } => self.registering_response(now, response, code, status),
            Phase::Unregistering => match code {
                401 | 407 if self.auth.challenge(response).is_ok() => self.send_register(0),
                _ => {
                    self.phase = Phase::Done;
                    self.events.push_back(RegistrationEvent::Unregistered);
                }
            },
            _ => {}
        }
    }

    fn registering_response(
        &mut self,
        now: Instant,
        response: &Message,
        code: u16,
        status: String,
    ) {
        let first = self.phase == Phase::Registering { refresh: false };
        match code {
            200..=299 => {
                self.auth.succeeded();
                if self.learn_address(response) {
                    // Register the address the registrar sees, and drop the old binding.
                    self.send_register(self.expires);
                    return;
                }
                let granted = self.granted_expiry(response);
                if granted == 0 {
                    return self.fail(now, format!("{status} (no binding granted)"), true);
                }
                self.phase = Phase::Registered;
                self.backoff = FIRST_BACKOFF;
                self.timer = Some(now + refresh_delay(granted));
                self.report(RegistrationEvent::Registered { expires: granted });
                if first {
                    self.others = self.other_contacts(response).into();
                }
                self.removals
                    .drain(..self.removals_sent.min(self.removals.len()));
                self.removals_sent = 0;
                if !self.removals.is_empty() {
                    // Asked for while this REGISTER was out.
                    self.register();
                }
            }
            401 | 407 => match self.auth.challenge(response) {
                Ok(()) => self.send_register(self.expires),
                Err(AuthError::Rejected) => self.fail(now, status, false),
                Err(error) => self.fail(now, format!("{status} ({error})"), false),
            },
            423 => {
                let minimum = response
                    .header(&Name::MIN_EXPIRES)
                    .and_then(|value| value.trim().parse::<u32>().ok());
                match minimum {
                    Some(minimum) if minimum > self.expires => {
                        self.expires = minimum;
                        self.send_register(self.expires);
                    }
                    _ => self.fail(now, status, true),
                }
            }
            // The same credentials would be refused again: do not retry.
            403 | 404 => self.fail(now, status, false),
            _ => self.fail(now, status, true),
        }
    }

    /// The outstanding REGISTER got no response.
    pub(crate) fn handle_failure(&mut self, now: Instant, failure: Failure) {
        let reason = match failure {
            Failure::Timeout => "408 Request Timeout",
            Failure::Transport => "503 Service Unavailable (transport error)",
        };
        match self.phase {
            Phase::Registering { .. } => self.fail(now, reason.to_owned(), true),
            Phase::Unregistering => {
                self.phase = Phase::Done;
                self.events.push_back(RegistrationEvent::Unregistered);
            }
            _ => {}
        }
    }

    /// Refreshes and retries that are due.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.timer.is_none_or(|due| now < due) {
            return;
        }
        self.timer = None;
        match self.phase {
            Phase::Registered | Phase::Failed => self.register(),
            _ => {}
        }
    }

    fn fail(&mut self, now: Instant, reason: String, retry: bool) {
        self.phase = Phase::Failed;
        let retry_in = retry.then_some(self.backoff);
        self.timer = retry_in.map(|delay| now + delay);
        if retry {
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        self.report(RegistrationEvent::Failed { reason, retry_in });
    }

    fn report(&mut self, event: RegistrationEvent) {
        let same = match (&self.reported, &event) {
            (Some(RegistrationEvent::Registered { .. }), RegistrationEvent::Registered { .. }) => {
                true
            }
            (
                Some(RegistrationEvent::Failed { reason: a, .. }),
                RegistrationEvent::Failed { reason: b, .. },
            ) => a == b,
            (Some(previous), event) => previous == event,
            (None, _) => false,
        };
        if !same {
            self.reported = Some(event.clone());
            self.events.push_back(event);
        }
    }

    /// Reads a NAT-mapped source address from the response's Via. Returns true when the
    /// Contact was rewritten and must be registered again.
    fn learn_address(&mut self, response: &Message) -> bool {
        if self.config.local_fixed {
            return false;
        }
        let Some(via) = response
            .vias()
            .ok()
            .and_then(|vias| vias.into_iter().next())
        else {
            return false;
        };
        let received = via
            .params
            .get_val("received")
            .map(|value| value.to_string());
        let rport = via
            .params
            .get_val("rport")
            .and_then(|value| value.parse::<u16>().ok());
        if received.is_none() && rport.is_none() {
            return false;
        }
        let (local_host, port) = split_host_port(&self.config.local);
        let host = received.unwrap_or_else(|| local_host.clone());
        // Over TCP and TLS the source port of our connection is always an ephemeral one, so a
        // different rport says nothing of NAT; only a different address does (and then the
        // connection is the way back, so its port goes in the Contact).
        if self.config.transport.reliable()
            && host.trim_matches(['[', ']']) == local_host.trim_matches(['[', ']'])
        {
            return false;
        }
        let port = rport.or(port);
        let seen = match port {
            Some(port) if host.contains(':') && !host.starts_with('[') => {
                format!("[{host}]:{port}")
            }
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        if seen == self.config.local || self.stale_contact.is_some() {
            return false;
        }
        self.stale_contact = Some(self.contact_uri());
        self.config.local = seen;
        true
    }

    fn granted_expiry(&self, response: &Message) -> u32 {
        let ours = self.contact_uri();
        let from_contact = list::<Contact>(&response.headers, &Name::CONTACT)
            .ok()
            .into_iter()
            .flatten()
            .find(|contact| {
                let instance = contact
                    .params
                    .get_val("+sip.instance")
                    .map(|value| value.trim_matches('"').to_owned());
                instance.as_deref() == Some(self.instance_param().as_str())
                    || same_uri(&print_uri(&contact.uri.uri), &ours)
            })
            .and_then(|contact| {
                contact
                    .params
                    .get_val("expires")
                    .and_then(|value| value.parse().ok())
            });
        from_contact
            .or_else(|| {
                response
                    .header(&Name::EXPIRES)
                    .and_then(|value| value.trim().parse().ok())
            })
            .unwrap_or(self.expires)
    }

    /// The Contacts of a 2xx that are not ours.
    fn other_contacts(&self, response: &Message) -> Vec<String> {
        let ours = self.contact_uri();
        let instance = self.instance_param();
        list::<Contact>(&response.headers, &Name::CONTACT)
            .ok()
            .into_iter()
            .flatten()
            .filter(|contact| {
                contact
                    .params
                    .get_val("+sip.instance")
                    .is_none_or(|value| value.trim_matches('"') != instance)
            })
            .map(|contact| print_uri(&contact.uri.uri))
            .filter(|uri| !same_uri(uri, &ours))
            .collect()
    }

    fn instance_param(&self) -> String {
        format!("<{}>", self.config.instance)
    }

    /// Our Contact URI (without brackets).
    fn contact_uri(&self) -> String {
        let mut uri = format!(
            "sip:{}@{};transport={}",
            self.config.contact_user,
            self.config.local,
            self.config.transport.param()
        );
        for (name, value) in &self.config.contact_params {
            uri.push(';');
            uri.push_str(&escape_param(name));
            uri.push('=');
            uri.push_str(&escape_param(value));
        }
        uri
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("{}{:x}", self.config.nonce_seed, self.counter)
    }

    fn send_register(&mut self, expires: u32) {
        self.cseq += 1;
        let config = &self.config;
        let aor = format!("sip:{}@{}", config.user, config.domain);
        let name_addr = crate::uri::name_addr(config.display_name.as_deref(), &aor);
        let registrar = format!("sip:{}", config.domain);
        let branch = format!("z9hG4bK{}", self.next_id());
        let mut headers = Headers::with_capacity(12);
        headers.insert(
            Name::VIA,
            format!(
                "SIP/2.0/{} {};rport;branch={branch}",
                self.config.transport.via_name(),
                self.config.local
            ),
        );
        headers.insert(Name::MAX_FORWARDS, "70");
        if let Some(route) = &self.config.route {
            headers.insert(Name::ROUTE, route.clone());
        }
        headers.insert(
            Name::FROM,
            format!("{name_addr};tag={}", self.config.from_tag),
        );
        headers.insert(Name::TO, name_addr);
        headers.insert(Name::CALL_ID, self.config.call_id.clone());
        headers.insert(Name::CSEQ, format!("{} REGISTER", self.cseq));
        // Our Contact only, with the instance quoted as RFC 5626 requires (`<` and `>` are
        // not token characters).
        let mut contact = format!(
            "<{}>;+sip.instance=\"{}\";expires={expires}",
            self.contact_uri(),
            self.instance_param()
        );
        if let Some(stale) = self.stale_contact.take() {
            contact.push_str(&format!(", <{stale}>;expires=0"));
        }
        if expires > 0 {
            for stale in &self.removals {
                contact.push_str(&format!(", <{stale}>;expires=0"));
            }
            self.removals_sent = self.removals.len();
        }
        headers.insert(Name::CONTACT, contact);
        headers.insert(Name::EXPIRES, expires.to_string());
        headers.insert(Name::ALLOW, ALLOW);
        headers.insert(Name::USER_AGENT, self.config.user_agent.clone());
        let cnonce = self.next_id();
        if let Some((name, value)) = self.auth.authorize("REGISTER", &registrar, b"", &cnonce) {
            headers.insert(name, value);
        }
        let Some(uri) = RequestUri::parse(&registrar) else {
            // The domain was checked when the account was added; nothing to send otherwise.
            return;
        };
        self.out.push_back(Message {
            start: StartLine::Request {
                method: Method::REGISTER,
                uri,
            },
            headers,
            body: Bytes::new(),
        });
    }

    /// The next REGISTER to send (in a new client transaction).
    pub(crate) fn poll_request(&mut self) -> Option<Message> {
        self.out.pop_front()
    }

    /// The next event.
    pub(crate) fn poll_event(&mut self) -> Option<RegistrationEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }
}

/// When to refresh a binding granted for `expires` seconds: a minute early for long ones, half
/// way for short ones, so that a lost refresh still has time for its retransmissions.
fn refresh_delay(expires: u32) -> Duration {
    let expires = u64::from(expires);
    let seconds = if expires > 120 {
        expires - 60
    } else {
        (expires / 2).max(1)
    };
    Duration::from_secs(seconds)
}

/// `SIP/2.0 401 Unauthorized` -> `401 Unauthorized`.
fn status_line(response: &Message) -> String {
    match &response.start {
        StartLine::Response { code, reason } if reason.is_empty() => code.to_string(),
        StartLine::Response { code, reason } => format!("{code} {reason}"),
        StartLine::Request { .. } => String::new(),
    }
}

fn split_host_port(text: &str) -> (String, Option<u16>) {
    if let Some(end) = text.find(']') {
        let port = text[end + 1..]
            .strip_prefix(':')
            .and_then(|port| port.parse().ok());
        return (text[..=end].to_owned(), port);
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_owned(), port.parse().ok()),
        _ => (text.to_owned(), None),
    }
}

/// Compares Contact URIs the way registrars echo them: scheme, user and host case-insensitive
/// for the host, parameters in any order.
fn same_uri(a: &str, b: &str) -> bool {
    let normal = |uri: &str| {
        let mut parts: Vec<String> = uri
            .split(';')
            .map(|part| part.to_ascii_lowercase())
            .collect();
        parts[1..].sort();
        parts
    };
    normal(a) == normal(b)
}

fn print_uri(uri: &ezk_sip_types::uri::SipUri) -> String {
    use ezk_sip_types::print::AppendCtx as _;
    uri.default_print_ctx().to_string()
}

/// A URI parameter's name or value with everything but its allowed characters (RFC 3261
/// `paramchar`: unreserved and `[]/:&+$`) percent-encoded.
fn escape_param(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()[]/:&+$".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
