//! GStreamer's webrtc signalling (gst-examples' `simple_server.py`), sans-IO: one line of text
//! per frame. A peer registers with `HELLO <uid>`, then either asks for a 1:1 session
//! (`SESSION <peer>`, after which every frame either side sends is relayed verbatim to the
//! other) or joins a room (`ROOM <id>`, then `ROOM_PEER_MSG <peer> <msg>` and
//! `ROOM_PEER_LIST`). Frames come in with the connection they came from; frames and closes for
//! connections come out.

use std::collections::{HashMap, VecDeque};

#[cfg(test)]
mod tests;

/// A connection, numbered by the endpoint.
pub(crate) type ConnId = u64;

/// What the hub has for a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Output {
    /// A text frame.
    Send(ConnId, String),
    /// Close it with this code and reason (and forget it: no `disconnect` is needed).
    Close(ConnId, u16, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Idle,
    /// In a session with this peer.
    Session(String),
    /// In this room.
    Room(String),
}

struct Peer {
    conn: ConnId,
    state: State,
}

/// The registered peers and the rooms.
#[derive(Default)]
pub(crate) struct Hub {
    /// Every open connection, with the uid it registered (None before `HELLO`).
    conns: HashMap<ConnId, Option<String>>,
    peers: HashMap<String, Peer>,
    /// Each room's members in joining order. Rooms stay when they empty, as in the reference.
    rooms: HashMap<String, Vec<String>>,
    out: VecDeque<Output>,
}

/// A string as Python's `repr` prints it, which the reference's error texts use.
fn repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str.split(maxsplit=n)`: runs of whitespace separate, none at either end.
fn split(text: &str, maxsplit: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if parts.len() == maxsplit {
            parts.push(rest.trim_end());
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        parts.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    parts
}

/// An id the reference accepts: not empty, no whitespace.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && !id.contains(char::is_whitespace)
}

impl Hub {
    /// A new connection; it must say `HELLO` first.
    pub(crate) fn connect(&mut self, conn: ConnId) {
        self.conns.insert(conn, None);
    }

    /// A text frame from `conn`.
    pub(crate) fn receive(&mut self, conn: ConnId, text: &str) {
        let Some(registered) = self.conns.get(&conn) else {
            return;
        };
        let Some(uid) = registered.clone() else {
            return self.hello(conn, text);
        };
        let state = self
            .peers
            .get(&uid)
            .map_or(State::Idle, |peer| peer.state.clone());
        match state {
            State::Session(other) => {
                if let Some(peer) = self.peers.get(&other) {
                    self.out.push_back(Output::Send(peer.conn, text.to_owned()));
                }
            }
            State::Room(room) => self.in_room(conn, &uid, &room, text),
            State::Idle => self.idle(conn, &uid, text),
        }
    }

    /// `conn` closed: its session partner is closed too, its room is told.
    pub(crate) fn disconnect(&mut self, conn: ConnId) {
        let Some(Some(uid)) = self.conns.remove(&conn) else {
            return;
        };
        self.remove(&uid);
    }

    /// The next frame or close for a connection.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn send(&mut self, conn: ConnId, text: String) {
        self.out.push_back(Output::Send(conn, text));
    }

    fn hello(&mut self, conn: ConnId, text: &str) {
        let parts = split(text, 1);
        if parts.first() != Some(&"HELLO") {
            return self.refuse(conn, "invalid protocol");
        }
        // The reference fails to unpack a bare HELLO and drops the connection; its uid is as
        // invalid as an empty one.
        let uid = parts.get(1).copied().unwrap_or_default();
        if !valid_id(uid) || self.peers.contains_key(uid) {
            return self.refuse(conn, "invalid peer uid");
        }
        self.conns.insert(conn, Some(uid.to_owned()));
        self.peers.insert(
            uid.to_owned(),
            Peer {
                conn,
                state: State::Idle,
            },
        );
        self.send(conn, "HELLO".to_owned());
    }

    /// Closes a connection that did not register properly (code 1002, protocol error).
    fn refuse(&mut self, conn: ConnId, reason: &str) {
        self.conns.remove(&conn);
        self.out
            .push_back(Output::Close(conn, 1002, reason.to_owned()));
    }

    fn idle(&mut self, conn: ConnId, uid: &str, text: &str) {
        if text.starts_with("SESSION") {
            let parts = split(text, 1);
            let callee = parts.get(1).copied().unwrap_or_default();
            let Some(peer) = self.peers.get(callee) else {
                return self.send(conn, format!("ERROR peer {} not found", repr(callee)));
            };
            if peer.state != State::Idle {
                return self.send(conn, format!("ERROR peer {} busy", repr(callee)));
            }
            self.send(conn, "SESSION_OK".to_owned());
            let callee = callee.to_owned();
            if let Some(peer) = self.peers.get_mut(&callee) {
                peer.state = State::Session(uid.to_owned());
            }
            if let Some(peer) = self.peers.get_mut(uid) {
                peer.state = State::Session(callee);
            }
        } else if text.starts_with("ROOM") {
            let parts = split(text, 1);
            let room = parts.get(1).copied().unwrap_or_default();
            if room == "session" || !valid_id(room) {
                return self.send(conn, format!("ERROR invalid room id {}", repr(room)));
            }
            let members = self.rooms.entry(room.to_owned()).or_default();
            let others: Vec<String> = members.clone();
            members.push(uid.to_owned());
            if let Some(peer) = self.peers.get_mut(uid) {
                peer.state = State::Room(room.to_owned());
            }
            // "ROOM_OK " with a trailing space for an empty room, as the reference prints it.
            self.send(conn, format!("ROOM_OK {}", others.join(" ")));
            for other in others {
                if let Some(peer) = self.peers.get(&other) {
                    let conn = peer.conn;
                    self.send(conn, format!("ROOM_PEER_JOINED {uid}"));
                }
            }
        }
        // Anything else outside a session or room is ignored, as in the reference.
    }

    fn in_room(&mut self, conn: ConnId, uid: &str, room: &str, text: &str) {
        let members = self.rooms.get(room).cloned().unwrap_or_default();
        if text.starts_with("ROOM_PEER_MSG") {
            let parts = split(text, 2);
            let (Some(other), Some(message)) = (parts.get(1), parts.get(2)) else {
                return self.send(conn, "ERROR invalid msg, no peer or message".to_owned());
            };
            let Some(peer) = self.peers.get(*other) else {
                return self.send(conn, format!("ERROR peer {} not found", repr(other)));
            };
            if !members.iter().any(|member| member == other) {
                return self.send(
                    conn,
                    format!("ERROR peer {} is not in the room", repr(other)),
                );
            }
            let target = peer.conn;
            self.send(target, format!("ROOM_PEER_MSG {uid} {message}"));
        } else if text.trim() == "ROOM_PEER_LIST" {
            // The reference crashes here (an undefined name); this is the documented reply.
            let others: Vec<&str> = members
                .iter()
                .filter(|member| *member != uid)
                .map(String::as_str)
                .collect();
            self.send(conn, format!("ROOM_PEER_LIST {}", others.join(" ")));
        } else {
            self.send(conn, "ERROR invalid msg, already in room".to_owned());
        }
    }

    /// Unregisters `uid`: a session partner is closed (it must say HELLO again), a room is told.
    fn remove(&mut self, uid: &str) {
        let Some(peer) = self.peers.remove(uid) else {
            return;
        };
        match peer.state {
            State::Idle => {}
            State::Session(other) => {
                if other != uid
                    && let Some(partner) = self.peers.remove(&other)
                {
                    self.conns.remove(&partner.conn);
                    // As the reference: a normal close, no reason.
                    self.out
                        .push_back(Output::Close(partner.conn, 1000, String::new()));
                }
            }
            State::Room(room) => {
                let Some(members) = self.rooms.get_mut(&room) else {
                    return;
                };
                members.retain(|member| member != uid);
                let members = members.clone();
                for member in members {
                    if let Some(peer) = self.peers.get(&member) {
                        let conn = peer.conn;
                        self.send(conn, format!("ROOM_PEER_LEFT {uid}"));
                    }
                }
            }
        }
    }
}
