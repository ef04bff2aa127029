//! Matrix VoIP through the gateway: the gateway is an application service (a bridge) of a
//! homeserver (`[matrix]`), whose ghost users stand for SIP addresses ([`ghosts`]). The
//! homeserver pushes the events of the ghosts' rooms to the gateway's routes
//! ([`appservice`]); the gateway acts as its ghosts through the homeserver's client-server API
//! ([`client`]).
//!
//! What is built: the registration file, the routes with the homeserver's token checked and
//! transactions taken once, ghosts registered when the homeserver asks about them, a ghost
//! that is invited to a room joins it, and a Matrix user's call to a ghost goes to its SIP
//! address from the local domain, and a SIP call for an address of the local domain that is a
//! Matrix user goes to them from the caller's ghost ([`to_matrix`], [`calls`]). Encrypted
//! rooms cannot carry the bridge's calls: the ghost says so there.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::{Config, HttpUrl, MatrixConfig};

pub(crate) mod appservice;
mod calls;
mod client;
mod events;
pub(crate) mod ghosts;
mod to_matrix;

use crate::call::CallServices;
use crate::storage::Storage;
use calls::{Calls, Reports};
use client::Homeserver;
use events::CallEvent;
use ruma_events::call::invite::CallInviteEventContent;
use to_matrix::Setup;
pub(crate) use to_matrix::{SipCall, ToMatrix};

/// How many event ids are remembered (a homeserver sends again only its latest
/// transactions).
const MAX_SEEN: usize = 10_000;
/// Events waiting for the bridge's worker; past it, a transaction is refused for now (the
/// homeserver sends it again later).
const QUEUE: usize = 10_000;

/// The bridge: the tokens, the homeserver, what it has seen.
pub(crate) struct Bridge {
    config: MatrixConfig,
    homeserver: Homeserver,
    /// Event ids taken.
    seen: Mutex<Seen>,
    /// The events taken, in order, for the worker.
    events: mpsc::Sender<Value>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Bridge {
    /// The bridge of an enabled `[matrix]` section (checked when the configuration was read),
    /// with its worker started, and the local domain's way to it.
    pub(crate) fn start(
        config: &MatrixConfig,
        services: Arc<CallServices>,
        storage: Arc<Storage>,
    ) -> Option<(Arc<Bridge>, ToMatrix)> {
        if !config.enabled {
            return None;
        }
        let url = HttpUrl::parse(&config.homeserver_url).ok()?;
        let homeserver = Homeserver::new(url, config.as_token.clone());
        let (events, events_rx) = mpsc::channel(QUEUE);
        let bridge = Arc::new(Bridge {
            config: config.clone(),
            homeserver,
            seen: Mutex::new(Seen::default()),
            events,
        });
        let (sip_calls, sip_calls_rx) = mpsc::unbounded_channel();
        let to_matrix = ToMatrix::new(config, sip_calls);
        let (calls, reports) = Calls::new(services.clone());
        let rooms = Rooms {
            storage,
            known: HashMap::new(),
            loaded: false,
            told_encrypted: HashSet::new(),
        };
        let worker = Worker {
            bridge: bridge.clone(),
            sip: services.sip.clone(),
            rooms,
            calls,
        };
        tokio::spawn(worker.run(events_rx, reports, sip_calls_rx));
        info!(
            homeserver = %config.homeserver_url,
            server_name = %config.server_name,
            "Matrix application service on"
        );
        Some((bridge, to_matrix))
    }

    /// Whether an event is new (and remembers it).
    fn first_time(&self, event_id: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .first(event_id)
    }

    /// The SIP address a user id stands for, when it is one of our ghosts.
    fn ghost(&self, user_id: &str) -> Option<protocol::Aor> {
        ghosts::address(&self.config.user_prefix, &self.config.server_name, user_id)
    }

    /// Makes sure the ghost `user_id` exists on the homeserver.
    async fn register(&self, user_id: &str) -> Result<(), String> {
        let localpart = user_id
            .strip_prefix('@')
            .and_then(|rest| rest.split_once(':'))
            .map(|(localpart, _)| localpart)
            .ok_or_else(|| format!("{user_id} is no user id"))?;
        self.homeserver.register(localpart).await
    }
}

/// The latest [`MAX_SEEN`] event ids, in order.
#[derive(Debug, Default)]
struct Seen {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Seen {
    /// Whether `id` is new (and remembers it, forgetting the oldest past [`MAX_SEEN`]).
    fn first(&mut self, id: &str) -> bool {
        if !self.set.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > MAX_SEEN
            && let Some(oldest) = self.order.pop_front()
        {
            self.set.remove(&oldest);
        }
        true
    }
}

/// The rooms the ghosts are in, and which ghost (one per room: a direct room with a user),
/// kept in the store so that a restarted gateway still knows them.
struct Rooms {
    storage: Arc<Storage>,
    /// What the store said, and what happened since.
    known: HashMap<String, String>,
    /// Whether the store was read.
    loaded: bool,
    /// The encrypted rooms whose ghost said it cannot read them (this run).
    told_encrypted: HashSet<String>,
}

impl Rooms {
    /// The ghost in `room`: as known, else as the store says (read again: it may have been
    /// out of reach before).
    async fn ghost(&mut self, room: &str) -> Option<String> {
        if !self.known.contains_key(room) {
            self.load().await;
        }
        self.known.get(room).cloned()
    }

    /// The rooms `ghost` is in.
    async fn of(&mut self, ghost: &str) -> Vec<String> {
        if !self.loaded {
            self.load().await;
        }
        let mut rooms: Vec<String> = self
            .known
            .iter()
            .filter(|(_, known)| *known == ghost)
            .map(|(room, _)| room.clone())
            .collect();
        rooms.sort();
        rooms
    }

    async fn load(&mut self) {
        let stored = match self.storage.get() {
            Ok(store) => store.matrix_rooms().await,
            Err(error) => Err(error),
        };
        match stored {
            Ok(rooms) => {
                self.loaded = true;
                for (room, ghost) in rooms {
                    self.known.entry(room).or_insert(ghost);
                }
            }
            Err(error) => warn!("the ghosts' rooms cannot be read: {error}"),
        }
    }

    async fn joined(&mut self, room: &str, ghost: &str) {
        self.known.insert(room.to_owned(), ghost.to_owned());
        let stored = match self.storage.get() {
            Ok(store) => {
                store
                    .set_matrix_room(room, ghost, store::now_millis())
                    .await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = stored {
            warn!(%room, "a ghost's room is not stored (kept until a restart): {error}");
        }
    }

    async fn left(&mut self, room: &str) {
        self.known.remove(room);
        let removed = match self.storage.get() {
            Ok(store) => store.remove_matrix_room(room).await.map(|_| ()),
            Err(error) => Err(error),
        };
        if let Err(error) = removed {
            warn!(%room, "a ghost's room is not forgotten in the store: {error}");
        }
    }
}

/// The bridge's worker: the homeserver's events in order, its calls' news, the calls from
/// SIP for Matrix users and their rooms as they are set up.
struct Worker {
    bridge: Arc<Bridge>,
    sip: sip::driver::SipHandle,
    rooms: Rooms,
    calls: Calls,
}

impl Worker {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Value>,
        mut reports: Reports,
        mut sip_calls: mpsc::UnboundedReceiver<SipCall>,
    ) {
        let (setup, mut setups) = mpsc::unbounded_channel();
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        handle(&self.bridge, &mut self.rooms, &mut self.calls, &event).await;
                    }
                    None => return,
                },
                Some((session, update)) = reports.recv() => {
                    self.calls.report(&self.bridge, &session, update).await;
                }
                Some(call) = sip_calls.recv() => {
                    let Some(ghost) = self.caller_ghost(&call) else {
                        to_matrix::reject(&self.sip, call.call, "the caller has no Matrix ghost");
                        continue;
                    };
                    let rooms = self.rooms.of(&ghost).await;
                    tokio::spawn(to_matrix::open_room(
                        self.bridge.clone(), self.sip.clone(), call, ghost, rooms, setup.clone(),
                    ));
                }
                Some(ready) = setups.recv() => match ready {
                    Setup::Opened { room, ghost } => {
                        if self.rooms.ghost(&room).await.is_none() {
                            self.rooms.joined(&room, &ghost).await;
                        }
                    }
                    Setup::Ready { room, ghost, call } => self.calls.call_matrix_user(&room, &ghost, call),
                },
            }
        }
    }

    /// The ghost user id of a SIP call's caller (its From address).
    fn caller_ghost(&self, call: &SipCall) -> Option<String> {
        let from = call
            .invite
            .from_uri
            .trim_start_matches("sips:")
            .trim_start_matches("sip:");
        let address = protocol::Aor::parse(from.split(';').next().unwrap_or_default()).ok()?;
        let config = &self.bridge.config;
        Some(format!(
            "@{}:{}",
            ghosts::localpart(&config.user_prefix, &address),
            config.server_name
        ))
    }
}

/// One event of a ghost's room.
async fn handle(bridge: &Bridge, rooms: &mut Rooms, calls: &mut Calls, event: &Value) {
    let text = |field: &str| event.get(field).and_then(Value::as_str).unwrap_or_default();
    let (kind, room, sender) = (text("type"), text("room_id"), text("sender"));
    let content = event.get("content").cloned().unwrap_or(Value::Null);
    if room.is_empty() || bridge.ghost(sender).is_some() {
        // Our own events come back too.
        return;
    }
    if let Some(read) = CallEvent::read(kind, &content) {
        match read {
            Ok(call) => call_event(bridge, rooms, calls, event, call).await,
            Err(error) => debug!(%room, %kind, "a call event that cannot be read: {error}"),
        }
        return;
    }
    match kind {
        "m.room.member" => {
            let member = text("state_key");
            let membership = content.get("membership").and_then(Value::as_str);
            if bridge.ghost(member).is_none() {
                if matches!(membership, Some("leave" | "ban")) {
                    calls.left(room, member);
                }
                return;
            }
            match membership {
                Some("invite") => {
                    let joined = match bridge.register(member).await {
                        Ok(()) => bridge.homeserver.join(room, member).await,
                        Err(error) => Err(error),
                    };
                    match joined {
                        Ok(()) => {
                            info!(%room, ghost = %member, %sender, "a ghost joined the room it was invited to");
                            rooms.joined(room, member).await;
                        }
                        Err(error) => warn!(%room, ghost = %member, "a ghost cannot join: {error}"),
                    }
                }
                Some("leave" | "ban") => rooms.left(room).await,
                _ => {}
            }
        }
        "m.room.encryption" | "m.room.encrypted" => {
            let Some(ghost) = rooms.ghost(room).await else {
                return;
            };
            if rooms.told_encrypted.insert(room.to_owned()) {
                let notice = serde_json::json!({"msgtype": "m.notice", "body":
                    "This room is encrypted: the SIP bridge cannot read it, so calls here \
                     cannot reach SIP. Call from a room without encryption."});
                if let Err(error) = bridge
                    .homeserver
                    .send(room, &ghost, "m.room.message", &notice)
                    .await
                {
                    warn!(%room, "the ghost cannot say the room is encrypted: {error}");
                }
            }
        }
        _ => {}
    }
}

/// A call event of a ghost's room, read.
async fn call_event(
    bridge: &Bridge,
    rooms: &mut Rooms,
    calls: &mut Calls,
    event: &Value,
    call: CallEvent,
) {
    let text = |field: &str| event.get(field).and_then(Value::as_str).unwrap_or_default();
    let (room, sender) = (text("room_id"), text("sender"));
    match &call {
        CallEvent::Invite(invite) => {
            let Some(ghost) = rooms.ghost(room).await else {
                warn!(%room, "a call in a room the bridge knows no ghost of");
                return;
            };
            let age = event["unsigned"]["age"].as_u64().unwrap_or(0);
            if !for_ghost(invite, age, &ghost) {
                debug!(%room, "a call that is over or for someone else");
                return;
            }
            calls.invite(bridge, room, &ghost, sender, invite).await;
        }
        CallEvent::Answer(answer) => calls.answer(bridge, room, sender, answer).await,
        CallEvent::Hangup(_) | CallEvent::Reject(_) | CallEvent::SelectAnswer(_) => {
            calls.ended_there(room, &call);
        }
        CallEvent::Negotiate(negotiate) => calls.negotiate(room, negotiate),
        // The relay is ICE-lite: its own candidate is all the Matrix side needs.
        CallEvent::Candidates(_) => {}
    }
}

/// Whether an `m.call.invite` still rings for `ghost`: not expired (its age past its
/// `lifetime`, MSC2746) and for anybody in the room or for the ghost (`invitee`).
fn for_ghost(invite: &CallInviteEventContent, age: u64, ghost: &str) -> bool {
    let lifetime = u64::from(invite.lifetime);
    let for_ghost = invite
        .invitee
        .as_ref()
        .is_none_or(|invitee| invitee.as_str() == ghost);
    age <= lifetime && for_ghost
}

/// A ghost's `party_id` (the spec recommends 8 alphanumeric characters): the same for each
/// ghost, so that its own events, when they come back, are known.
fn party_id(ghost: &str) -> String {
    let hash = ghost.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{:08x}", hash & 0xffff_ffff)
}

/// The registration file the homeserver needs (YAML), from `[matrix]`.
pub fn registration(config: &Config) -> Result<String, String> {
    let matrix = &config.matrix;
    if !matrix.enabled {
        return Err("[matrix] enabled is false".into());
    }
    matrix.check()?;
    let url = if matrix.url.is_empty() {
        format!("http://{}", config.http.listen)
    } else {
        matrix.url.clone()
    };
    let namespace = format!(
        "@{}.*:{}",
        regex_escape(&matrix.user_prefix),
        regex_escape(&matrix.server_name)
    );
    // JSON strings are valid YAML scalars: each value quoted as JSON is read back as it is.
    let quote = |text: &str| Value::from(text).to_string();
    Ok(format!(
        "# The sylkrtc-gateway Matrix bridge: give this file to the homeserver\n\
         # (Synapse: app_service_config_files).\n\
         id: {id}\n\
         url: {url}\n\
         as_token: {as_token}\n\
         hs_token: {hs_token}\n\
         sender_localpart: {sender}\n\
         rate_limited: false\n\
         namespaces:\n\
         \x20 users:\n\
         \x20   - exclusive: true\n\
         \x20     regex: {namespace}\n\
         \x20 aliases: []\n\
         \x20 rooms: []\n",
        id = quote("sylkrtc-gateway"),
        url = quote(&url),
        as_token = quote(&matrix.as_token),
        hs_token = quote(&matrix.hs_token),
        sender = quote(&format!("{}bridge", matrix.user_prefix)),
        namespace = quote(&namespace),
    ))
}

/// `text` with the regular expression metacharacters escaped.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_registration_names_the_tokens_and_the_namespace() {
        let mut config = Config {
            matrix: MatrixConfig {
                enabled: true,
                server_name: "hs.example.com".into(),
                as_token: "as-0123456789abcdef".into(),
                hs_token: "hs-0123456789abcdef".into(),
                ..MatrixConfig::default()
            },
            ..Config::default()
        };
        let yaml = registration(&config).unwrap();
        assert!(
            yaml.contains("as_token: \"as-0123456789abcdef\"\n"),
            "{yaml}"
        );
        assert!(
            yaml.contains("hs_token: \"hs-0123456789abcdef\"\n"),
            "{yaml}"
        );
        assert!(
            yaml.contains("regex: \"@sip_.*:hs\\\\.example\\\\.com\"\n"),
            "{yaml}"
        );
        assert!(yaml.contains("url: \"http://127.0.0.1:10888\"\n"), "{yaml}");
        config.matrix.hs_token = "short".into();
        assert!(registration(&config).is_err());
    }

    #[test]
    fn an_event_is_taken_once() {
        let mut seen = Seen::default();
        assert!(seen.first("t1"));
        assert!(!seen.first("t1"));
        for index in 0..MAX_SEEN {
            assert!(seen.first(&format!("x{index}")));
        }
        // Long forgotten: a homeserver only ever sends its latest again.
        assert!(seen.first("t1"));
        assert_eq!(seen.order.len(), MAX_SEEN);
    }

    #[test]
    fn expired_invites_and_others_calls_are_not_the_ghosts() {
        let ghost = "@sip_bob=40example.com:hs.test";
        let invite = |invitee: Option<&str>| -> CallInviteEventContent {
            serde_json::from_value(json!({"call_id": "c", "version": "1", "party_id": "p",
                "lifetime": 60000, "invitee": invitee,
                "offer": {"type": "offer", "sdp": "v=0"}}))
            .unwrap()
        };
        assert!(for_ghost(&invite(None), 100, ghost));
        assert!(for_ghost(&invite(Some(ghost)), 100, ghost));
        assert!(!for_ghost(&invite(None), 60001, ghost), "expired");
        assert!(!for_ghost(&invite(Some("@carol:hs.test")), 100, ghost));
    }

    #[test]
    fn a_ghost_keeps_its_party_id() {
        let id = party_id("@sip_bob=40example.com:hs.test");
        assert_eq!(id.len(), 8);
        assert_eq!(id, party_id("@sip_bob=40example.com:hs.test"));
        assert_ne!(id, party_id("@sip_carol=40example.com:hs.test"));
    }
}
