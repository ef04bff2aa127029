//! GStreamer's newer signalling, the JSON protocol of gst-plugins-rs' webrtcsink and webrtcsrc
//! (its reference server is `gst-webrtc-signalling-server`), sans-IO. Peers get an id
//! (`welcome`), declare roles (producer, consumer, listener), and a consumer starts a session
//! with a producer (or a producer with a passive consumer); the session's SDP and ICE messages
//! are relayed between its two peers. Listeners hear every peer's status changes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Deserialize;
use serde_json::{Value, json};

#[cfg(test)]
mod tests;

/// A peer's id: assigned by the server.
pub(crate) type PeerId = String;

#[derive(Debug, Clone, Default, PartialEq)]
struct Status {
    roles: Vec<String>,
    meta: Value,
    /// Set once a status was declared. The reference compares it too, so only a first status
    /// equal to the initial one (or one that repeats the peer's own id) counts as unchanged.
    peer_id: Option<String>,
}

impl Status {
    fn has(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

struct Session {
    producer: PeerId,
    consumer: PeerId,
}

impl Session {
    fn other(&self, id: &str) -> Option<&PeerId> {
        if self.producer == id {
            Some(&self.consumer)
        } else if self.consumer == id {
            Some(&self.producer)
        } else {
            None
        }
    }
}

/// A message from a peer (`type` in camelCase).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Incoming {
    NewPeer,
    #[serde(rename_all = "camelCase")]
    SetPeerStatus {
        roles: Vec<Role>,
        #[serde(default)]
        meta: Value,
        #[serde(default)]
        peer_id: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    StartSession {
        peer_id: String,
        #[serde(default)]
        offer: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    EndSession {
        session_id: String,
    },
    #[serde(rename_all = "camelCase")]
    Peer {
        session_id: String,
        #[serde(flatten)]
        body: PeerBody,
    },
    List,
    ListConsumers,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
enum Role {
    Producer,
    Listener,
    Consumer,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Listener => "listener",
            Role::Consumer => "consumer",
        }
    }

    /// As the reference prints roles in its errors (Rust's Debug of its enum).
    fn debug_name(self) -> &'static str {
        match self {
            Role::Producer => "Producer",
            Role::Listener => "Listener",
            Role::Consumer => "Consumer",
        }
    }
}

/// A session message: SDP or an ICE candidate, checked for shape and relayed as it came.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum PeerBody {
    Sdp(Sdp),
    #[serde(rename_all = "camelCase")]
    Ice {
        candidate: String,
        sdp_m_line_index: u32,
    },
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Sdp {
    Offer { sdp: String },
    Answer { sdp: String },
}

/// The peers and their sessions.
pub(crate) struct Hub {
    peers: BTreeMap<PeerId, Status>,
    sessions: BTreeMap<String, Session>,
    /// Each peer's sessions as producer and as consumer.
    producing: BTreeMap<PeerId, BTreeSet<String>>,
    consuming: BTreeMap<PeerId, BTreeSet<String>>,
    out: VecDeque<(PeerId, Value)>,
    new_id: Box<dyn FnMut() -> String + Send>,
}

impl Hub {
    /// A hub that names sessions with `new_id`.
    pub(crate) fn new(new_id: Box<dyn FnMut() -> String + Send>) -> Hub {
        Hub {
            peers: BTreeMap::new(),
            sessions: BTreeMap::new(),
            producing: BTreeMap::new(),
            consuming: BTreeMap::new(),
            out: VecDeque::new(),
            new_id,
        }
    }

    /// A new connection, as peer `id`: it is welcomed.
    pub(crate) fn connect(&mut self, id: &str) {
        self.new_peer(id);
    }

    pub(crate) fn poll_output(&mut self) -> Option<(PeerId, Value)> {
        self.out.pop_front()
    }

    fn send(&mut self, to: &str, message: Value) {
        self.out.push_back((to.to_owned(), message));
    }

    fn new_peer(&mut self, id: &str) {
        self.peers.insert(id.to_owned(), Status::default());
        self.send(id, json!({"type": "welcome", "peerId": id}));
    }

    /// A text frame from peer `from`. One that is not a message is dropped, as the reference
    /// does.
    pub(crate) fn receive(&mut self, from: &str, text: &str) {
        let Ok(message) = serde_json::from_str::<Incoming>(text) else {
            return;
        };
        let result = match message {
            Incoming::NewPeer => {
                self.new_peer(from);
                Ok(())
            }
            Incoming::SetPeerStatus {
                roles,
                meta,
                peer_id,
            } => self.set_status(from, &roles, meta, peer_id),
            Incoming::StartSession { peer_id, offer } => self.start_session(from, &peer_id, offer),
            Incoming::EndSession { session_id } => self.end_session(from, &session_id),
            Incoming::Peer { session_id, body } => self.relay(from, &session_id, &body),
            Incoming::List => {
                let producers = self.listed("producer");
                self.send(from, json!({"type": "list", "producers": producers}));
                Ok(())
            }
            Incoming::ListConsumers => {
                let consumers = self.listed("consumer");
                self.send(
                    from,
                    json!({"type": "listConsumers", "consumers": consumers}),
                );
                Ok(())
            }
        };
        if let Err(details) = result {
            self.send(from, json!({"type": "error", "details": details}));
        }
    }

    /// Peer `id` left: its sessions end (the other sides get `endSession`) and listeners
    /// see it with no roles.
    pub(crate) fn disconnect(&mut self, id: &str) {
        let Some(status) = self.peers.remove(id) else {
            return;
        };
        self.stop(id, true);
        self.stop(id, false);
        let listeners = self.listeners();
        for listener in listeners {
            self.send(
                &listener,
                json!({"type": "peerStatusChanged", "roles": [], "meta": status.meta, "peerId": id}),
            );
        }
    }

    fn listeners(&self) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(_, status)| status.has("listener"))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn listed(&self, role: &str) -> Vec<Value> {
        self.peers
            .iter()
            .filter(|(_, status)| status.has(role))
            .map(|(id, status)| json!({"id": id, "meta": status.meta}))
            .collect()
    }

    fn set_status(
        &mut self,
        id: &str,
        roles: &[Role],
        meta: Value,
        claimed_id: Option<String>,
    ) -> Result<(), String> {
        let Some(old) = self.peers.get(id) else {
            return Err(format!("Peer '{id}' hasn't been welcomed"));
        };
        let mut status = Status {
            roles: roles.iter().map(|role| role.name().to_owned()).collect(),
            meta,
            peer_id: claimed_id,
        };
        if &status == old {
            return Ok(());
        }
        status.peer_id = Some(id.to_owned());
        if status.has("producer") && status.has("consumer") {
            return Err(format!(
                "Cannot register peer {id} as both producer and passive consumer"
            ));
        }
        let (was_producing, was_consuming) = (old.has("producer"), old.has("consumer"));
        if was_producing && !status.has("producer") {
            self.stop(id, true);
        } else if was_consuming && !status.has("consumer") {
            self.stop(id, false);
        }
        self.peers.insert(id.to_owned(), status.clone());
        for listener in self.listeners() {
            self.send(
                &listener,
                json!({"type": "peerStatusChanged", "roles": status.roles, "meta": status.meta, "peerId": id}),
            );
        }
        Ok(())
    }

    /// Ends `id`'s sessions as producer (or as consumer).
    fn stop(&mut self, id: &str, as_producer: bool) {
        let sessions = if as_producer {
            self.producing.remove(id)
        } else {
            self.consuming.remove(id)
        };
        for session in sessions.unwrap_or_default() {
            let _ = self.end_session(id, &session);
        }
    }

    fn roles_of(&self, id: &str) -> String {
        let roles: Vec<&str> = self
            .peers
            .get(id)
            .map(|status| {
                status
                    .roles
                    .iter()
                    .filter_map(|name| {
                        [Role::Producer, Role::Listener, Role::Consumer]
                            .into_iter()
                            .find(|role| role.name() == name)
                            .map(Role::debug_name)
                    })
                    .collect()
            })
            .unwrap_or_default();
        format!("[{}]", roles.join(", "))
    }

    fn start_session(&mut self, from: &str, to: &str, offer: Option<String>) -> Result<(), String> {
        if !self.peers.contains_key(from) {
            return Err(format!("Peer with ID '{from}' not found"));
        }
        let Some(target) = self.peers.get(to) else {
            return Err(format!("Peer with ID '{to}' not found"));
        };
        let (producer, consumer) = if target.has("producer") {
            (to.to_owned(), from.to_owned())
        } else if target.has("consumer") {
            (from.to_owned(), to.to_owned())
        } else {
            return Err(format!(
                "Missing a producer or a consumer: id {from} roles {}, id {to} roles {}",
                self.roles_of(from),
                self.roles_of(to)
            ));
        };
        let session = (self.new_id)();
        self.sessions.insert(
            session.clone(),
            Session {
                producer: producer.clone(),
                consumer: consumer.clone(),
            },
        );
        self.producing
            .entry(producer.clone())
            .or_default()
            .insert(session.clone());
        self.consuming
            .entry(consumer.clone())
            .or_default()
            .insert(session.clone());
        self.send(
            &consumer,
            json!({"type": "sessionStarted", "peerId": producer, "sessionId": session}),
        );
        self.send(
            &producer,
            json!({"type": "startSession", "peerId": consumer, "sessionId": session, "offer": offer}),
        );
        Ok(())
    }

    fn end_session(&mut self, from: &str, session_id: &str) -> Result<(), String> {
        // An unknown session is ignored, as in the reference.
        let Some(session) = self.sessions.remove(session_id) else {
            return Ok(());
        };
        if let Some(sessions) = self.producing.get_mut(&session.producer) {
            sessions.remove(session_id);
        }
        if let Some(sessions) = self.consuming.get_mut(&session.consumer) {
            sessions.remove(session_id);
        }
        let Some(other) = session.other(from) else {
            return Err(format!("Peer {from} is not part of {session_id}"));
        };
        let other = other.clone();
        self.send(
            &other,
            json!({"type": "endSession", "sessionId": session_id}),
        );
        Ok(())
    }

    fn relay(&mut self, from: &str, session_id: &str, body: &PeerBody) -> Result<(), String> {
        let Some(session) = self.sessions.get(session_id) else {
            return Ok(());
        };
        if matches!(body, PeerBody::Sdp(Sdp::Offer { .. })) && session.consumer == from {
            return Err(format!(
                r#"cannot forward offer from "{from}" to "{}" as "{from}" is not the producer"#,
                session.producer
            ));
        }
        let Some(other) = session.other(from).cloned() else {
            return Err(format!("Peer {from} is not part of {session_id}"));
        };
        // Written anew, as the reference does: only the fields of the protocol pass.
        let message = match body {
            PeerBody::Sdp(Sdp::Offer { sdp }) => {
                json!({"type": "peer", "sessionId": session_id, "sdp": {"type": "offer", "sdp": sdp}})
            }
            PeerBody::Sdp(Sdp::Answer { sdp }) => {
                json!({"type": "peer", "sessionId": session_id, "sdp": {"type": "answer", "sdp": sdp}})
            }
            PeerBody::Ice {
                candidate,
                sdp_m_line_index,
            } => json!({"type": "peer", "sessionId": session_id,
                "ice": {"candidate": candidate, "sdpMLineIndex": sdp_m_line_index}}),
        };
        self.send(&other, message);
        Ok(())
    }
}
