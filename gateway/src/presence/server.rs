//! The local domain's presence server for SIP phones (RFC 3856): a phone SUBSCRIBEs to a
//! user of the domain and hears NOTIFYs with a PIDF document as the user goes online and
//! offline (a browser connected and registered, a phone registered, or what their phones
//! PUBLISH, which outranks a registration); phones PUBLISH their own state (RFC 3903).
//!
//! Watchers are authorized by the user's address book (`crate::presence::decide`): allowed
//! ones see the state, politely blocked ones always see it closed, blocked ones are refused
//! (403, or a `terminated;reason=rejected` NOTIFY once the policy appears), and strangers wait
//! in `pending` (202) until the user allows them. The address books are read again every
//! [`REREAD`], and the states looked at every [`POLL`] as for browsers.
//!
//! One task serves the domain: it holds the subscriptions and answers PUBLISH; the address
//! book reads run in tasks of their own so that nothing waits on the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ezk_sip_types::{Method, Name};
use protocol::Aor;
use sip::SubscriptionEvent;
use sip::driver::{Answer, RequestHandle, SipHandle, SubscriptionHandle};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::Decision;
use crate::local::Local;
use crate::storage::Storage;

/// How often the watched users' states are looked at.
const POLL: Duration = Duration::from_secs(2);
/// How often the watched users' address books are read again.
const REREAD: Duration = Duration::from_secs(30);
/// The longest subscription or publication granted (a phone asking more gets this).
const MAX_EXPIRES: u32 = 600;
/// The shortest one taken (RFC 3903 and 6665 let a server ask for longer, 423).
const MIN_EXPIRES: u32 = 60;
/// The expiry of a SUBSCRIBE or PUBLISH that names none (RFC 3856 section 6.4 suggests an
/// hour; we grant at most [`MAX_EXPIRES`]).
const DEFAULT_EXPIRES: u32 = 3600;
/// The most subscriptions held for the domain, and for one watcher.
const MAX_WATCHERS: usize = 10_000;
const MAX_PER_WATCHER: usize = 200;

/// A request for the presence server (SUBSCRIBE or PUBLISH for a user of the domain).
#[derive(Debug)]
pub(crate) struct PresenceRequest {
    pub(crate) request: RequestHandle,
    pub(crate) authenticated: bool,
    pub(crate) message: sip::Message,
}

/// Where the domain's SUBSCRIBE and PUBLISH requests go.
#[derive(Debug, Clone)]
pub(crate) struct PresenceServer(mpsc::UnboundedSender<PresenceRequest>);

impl PresenceServer {
    /// Starts the domain's presence server.
    pub(crate) fn start(local: Arc<Local>, sip: SipHandle, storage: Arc<Storage>) -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        tokio::spawn(serve(local, sip, storage, receiver));
        PresenceServer(requests)
    }

    /// Hands it a request; false when it has stopped.
    pub(crate) fn handle(&self, request: PresenceRequest) -> bool {
        self.0.send(request).is_ok()
    }
}

/// What the server last told a watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    Pending,
    Open(bool),
}

#[derive(Debug)]
struct Watcher {
    /// The user watched (of the domain).
    user: String,
    watcher: Aor,
    expires: Instant,
    decision: Decision,
    told: Told,
}

/// What reading tasks and subscriptions report to the server.
enum Input {
    /// A SUBSCRIBE's watched user's address book was read: accept or refuse it.
    Decided(Box<(PresenceRequest, String, Aor, u32, Decision)>),
    /// A watched user's address book, read again.
    Reread(String, Vec<store::Entry>),
    Subscription(SubscriptionHandle, SubscriptionEvent),
}

struct Server {
    local: Arc<Local>,
    sip: SipHandle,
    storage: Arc<Storage>,
    watchers: HashMap<SubscriptionHandle, Watcher>,
    inputs: mpsc::UnboundedSender<Input>,
}

async fn serve(
    local: Arc<Local>,
    sip: SipHandle,
    storage: Arc<Storage>,
    mut requests: mpsc::UnboundedReceiver<PresenceRequest>,
) {
    let (inputs, mut inputs_rx) = mpsc::unbounded_channel();
    let mut server = Server {
        local,
        sip,
        storage,
        watchers: HashMap::new(),
        inputs,
    };
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reread = tokio::time::interval(REREAD);
    reread.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            request = requests.recv() => match request {
                Some(request) => server.request(request),
                None => return,
            },
            Some(input) = inputs_rx.recv() => server.input(input),
            _ = poll.tick() => server.poll(),
            _ = reread.tick() => server.reread(),
        }
    }
}

fn answer(code: u16, reason: &str, headers: Vec<(String, String)>) -> Answer {
    Answer {
        code,
        reason: reason.to_owned(),
        headers,
    }
}

/// The Expires of a SUBSCRIBE or PUBLISH, as granted: too brief is refused (423).
fn expires_of(message: &sip::Message) -> Result<u32, Answer> {
    let asked = match message.header(&Name::EXPIRES) {
        Some(value) => value
            .trim()
            .parse::<u32>()
            .map_err(|_| answer(400, "Bad Request (Expires)", Vec::new()))?,
        None => DEFAULT_EXPIRES,
    };
    if asked != 0 && asked < MIN_EXPIRES {
        return Err(answer(
            423,
            "Interval Too Brief",
            vec![("Min-Expires".to_owned(), MIN_EXPIRES.to_string())],
        ));
    }
    Ok(asked.min(MAX_EXPIRES))
}

impl Server {
    fn request(&mut self, request: PresenceRequest) {
        let PresenceRequest {
            request: handle,
            message,
            ..
        } = &request;
        let event = message
            .header(&Name::EVENT)
            .map(|value| value.split(';').next().unwrap_or_default().trim());
        if !event.is_some_and(|event| event.eq_ignore_ascii_case("presence")) {
            return self.sip.answer(
                handle.clone(),
                answer(
                    489,
                    "Bad Event",
                    vec![("Allow-Events".to_owned(), "presence".to_owned())],
                ),
            );
        }
        let user = match &message.start {
            sip::StartLine::Request { uri, .. } => uri.user().map(str::to_owned),
            sip::StartLine::Response { .. } => None,
        };
        let Some(user) = user.filter(|user| self.local.knows(user)) else {
            return self
                .sip
                .answer(handle.clone(), answer(404, "Not Found", Vec::new()));
        };
        let (from, _) = sip::driver::sender(message);
        let Ok(watcher) = Aor::parse(&from) else {
            return self.sip.answer(
                handle.clone(),
                answer(403, "Forbidden (no SIP sender)", Vec::new()),
            );
        };
        // One of ours who did not prove it is not taken at their word.
        if self.local.is_local(watcher.host()) && !request.authenticated {
            return self.sip.answer(
                handle.clone(),
                answer(403, "Forbidden (authenticate first)", Vec::new()),
            );
        }
        let expires = match expires_of(message) {
            Ok(expires) => expires,
            Err(refusal) => return self.sip.answer(handle.clone(), refusal),
        };
        if message.method() == Some(&Method::PUBLISH) {
            return self.publish(request, &user, &watcher, expires);
        }
        let theirs = self
            .watchers
            .values()
            .filter(|watching| watching.watcher == watcher)
            .count();
        if self.watchers.len() >= MAX_WATCHERS || theirs >= MAX_PER_WATCHER {
            return self.sip.answer(
                handle.clone(),
                answer(
                    503,
                    "Service Unavailable (too many subscriptions)",
                    vec![("Retry-After".to_owned(), "300".to_owned())],
                ),
            );
        }
        let store = match self.storage.get() {
            Ok(store) => store,
            Err(error) => {
                warn!("a SUBSCRIBE refused: {error}");
                return self.sip.answer(
                    handle.clone(),
                    answer(503, "Service Unavailable (the store is down)", Vec::new()),
                );
            }
        };
        let inputs = self.inputs.clone();
        let key = Aor::parse(&format!("{user}@{}", self.local.domain()))
            .map(|aor| aor.key())
            .unwrap_or_default();
        tokio::spawn(async move {
            let decision = match store.addressbook(&key).await {
                Ok(book) => super::decide(&book, &watcher),
                Err(error) => {
                    warn!("presence of {key}: {error}");
                    Decision::Pending
                }
            };
            let _ = inputs.send(Input::Decided(Box::new((
                request, user, watcher, expires, decision,
            ))));
        });
    }

    fn publish(&mut self, request: PresenceRequest, user: &str, from: &Aor, expires: u32) {
        let PresenceRequest {
            request: handle,
            authenticated,
            message,
        } = request;
        // Only a user's own phones publish their state.
        if !authenticated || !self.local.is_local(from.host()) || from.user() != user {
            return self.sip.answer(
                handle,
                answer(403, "Forbidden (publish your own state)", Vec::new()),
            );
        }
        let tuples =
            if message.body.is_empty() {
                None
            } else {
                let content_type = message.header(&Name::CONTENT_TYPE).unwrap_or_default();
                if !content_type.split(';').next().is_some_and(|essence| {
                    essence.trim().eq_ignore_ascii_case("application/pidf+xml")
                }) {
                    return self.sip.answer(
                        handle,
                        answer(
                            415,
                            "Unsupported Media Type",
                            vec![("Accept".to_owned(), "application/pidf+xml".to_owned())],
                        ),
                    );
                }
                let body = std::str::from_utf8(&message.body).ok();
                let Some(status) = body.and_then(super::pidf::read) else {
                    return self.sip.answer(
                        handle,
                        answer(400, "Bad Request (malformed PIDF)", Vec::new()),
                    );
                };
                let mut tuples = body.map(super::pidf::tuples).unwrap_or_default();
                if tuples.is_empty() {
                    // Statuses outside any tuple: one tuple of no id.
                    tuples.push((None, status.open));
                }
                Some(tuples)
            };
        let if_match = message
            .header(&Name::from("SIP-If-Match"))
            .map(|value| value.trim().to_owned());
        let result = self.local.publish(
            user,
            if_match.as_deref(),
            tuples,
            Duration::from_secs(expires.into()),
        );
        match result {
            Ok(tag) => {
                let mut headers = vec![("Expires".to_owned(), expires.to_string())];
                if let Some(tag) = tag {
                    headers.push(("SIP-ETag".to_owned(), tag));
                }
                debug!(%user, expires, "presence published");
                self.sip.answer(handle, answer(200, "OK", headers));
                self.poll();
            }
            Err((code, reason)) => self.sip.answer(handle, answer(code, reason, Vec::new())),
        }
    }

    fn input(&mut self, input: Input) {
        match input {
            Input::Decided(decided) => {
                let (request, user, watcher, expires, decision) = *decided;
                self.accept(request, user, watcher, expires, decision);
            }
            Input::Reread(user, book) => {
                for watching in self.watchers.values_mut() {
                    if watching.user == user {
                        watching.decision = super::decide(&book, &watching.watcher);
                    }
                }
                self.poll();
            }
            Input::Subscription(handle, event) => match event {
                SubscriptionEvent::Refreshed { expires } => {
                    if let Some(watching) = self.watchers.get_mut(&handle) {
                        watching.expires = Instant::now() + Duration::from_secs(expires.into());
                        // RFC 6665 section 4.2.1.2: a NOTIFY follows every SUBSCRIBE.
                        let told = watching.told;
                        if expires == 0 {
                            self.end(handle, "timeout");
                        } else {
                            self.tell(handle, told, true);
                        }
                    }
                }
                SubscriptionEvent::Ended { code, reason, .. } => {
                    debug!(code, %reason, "a phone's presence subscription ended");
                    self.watchers.remove(&handle);
                }
                _ => {}
            },
        }
    }

    fn accept(
        &mut self,
        request: PresenceRequest,
        user: String,
        watcher: Aor,
        expires: u32,
        decision: Decision,
    ) {
        if decision == Decision::Block {
            return self
                .sip
                .answer(request.request, answer(403, "Forbidden", Vec::new()));
        }
        let code = if decision == Decision::Pending {
            202
        } else {
            200
        };
        let (handle, mut events) = self.sip.accept_subscription(request.request, code, expires);
        let inputs = self.inputs.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if inputs.send(Input::Subscription(handle, event)).is_err() {
                    return;
                }
            }
        });
        debug!(%user, %watcher, expires, ?decision, "a phone watches a user's presence");
        self.watchers.insert(
            handle,
            Watcher {
                user,
                watcher,
                expires: Instant::now() + Duration::from_secs(expires.into()),
                decision,
                told: Told::Pending,
            },
        );
        if expires == 0 {
            // A fetch (RFC 6665 section 4.4.3): one NOTIFY, which ends it.
            return self.end(handle, "timeout");
        }
        self.tell(handle, Told::Pending, true);
    }

    /// What a watcher should be told now.
    fn state_for(&self, watching: &Watcher) -> Told {
        match watching.decision {
            Decision::Allow => Told::Open(self.local.online(&watching.user)),
            Decision::PoliteBlock => Told::Open(false),
            Decision::Pending | Decision::Block => Told::Pending,
        }
    }

    /// Sends the watcher its state if it changed from `before` (or `always`).
    fn tell(&mut self, handle: SubscriptionHandle, before: Told, always: bool) {
        let Some(watching) = self.watchers.get(&handle) else {
            return;
        };
        if watching.decision == Decision::Block {
            return self.end(handle, "rejected");
        }
        let now = self.state_for(watching);
        if now == before && !always {
            return;
        }
        let left = watching
            .expires
            .saturating_duration_since(Instant::now())
            .as_secs();
        let (state, body) = match now {
            Told::Pending => (format!("pending;expires={left}"), Bytes::new()),
            Told::Open(open) => (
                format!("active;expires={left}"),
                Bytes::from(super::pidf::document(&self.entity(&watching.user), open)),
            ),
        };
        self.sip
            .notify(handle, state, "application/pidf+xml".to_owned(), body);
        if let Some(watching) = self.watchers.get_mut(&handle) {
            watching.told = now;
        }
    }

    /// Ends a subscription with a last NOTIFY (with the state when the watcher may see it).
    fn end(&mut self, handle: SubscriptionHandle, reason: &str) {
        let Some(watching) = self.watchers.remove(&handle) else {
            return;
        };
        let body = match self.state_for(&watching) {
            Told::Open(open) if reason != "rejected" => {
                Bytes::from(super::pidf::document(&self.entity(&watching.user), open))
            }
            _ => Bytes::new(),
        };
        self.sip.notify(
            handle,
            format!("terminated;reason={reason}"),
            "application/pidf+xml".to_owned(),
            body,
        );
    }

    fn entity(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.local.domain())
    }

    /// Looks at every watched user: changes are sent, subscriptions that ran out end.
    fn poll(&mut self) {
        let now = Instant::now();
        let handles: Vec<SubscriptionHandle> = self.watchers.keys().copied().collect();
        for handle in handles {
            let Some(watching) = self.watchers.get(&handle) else {
                continue;
            };
            if watching.expires <= now {
                self.end(handle, "timeout");
                continue;
            }
            let told = watching.told;
            self.tell(handle, told, false);
        }
    }

    /// Reads the watched users' address books again, in a task.
    fn reread(&self) {
        let mut users: Vec<String> = self
            .watchers
            .values()
            .map(|watching| watching.user.clone())
            .collect();
        users.sort();
        users.dedup();
        if users.is_empty() {
            return;
        }
        let Ok(store) = self.storage.get() else {
            return;
        };
        let inputs = self.inputs.clone();
        let domain = self.local.domain().to_owned();
        tokio::spawn(async move {
            for user in users {
                let Ok(aor) = Aor::parse(&format!("{user}@{domain}")) else {
                    continue;
                };
                match store.addressbook(&aor.key()).await {
                    Ok(book) => {
                        let _ = inputs.send(Input::Reread(user, book));
                    }
                    Err(error) => warn!("presence of {aor}: {error}"),
                }
            }
        });
    }
}
