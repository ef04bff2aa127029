//! The NextRTC conversation protocol, sans-IO: every member's messages go in, the messages for
//! members come out, with `now` for the pings and the pair set-up timeout.
//!
//! The wire format is one JSON object per frame, `{"from","to","signal","content","custom"}`.
//! The server assigns member ids and sets `from` itself. A member creates or joins one
//! conversation (MESH, BROADCAST or MESH_WITH_MASTER); for every pair of members that must
//! connect, the existing member is asked for the offer (`offerRequest`), which goes to the new
//! member as `answerRequest`; its answer goes back as `finalize`. Candidates sent before the
//! pair is finalised wait, in order, and follow the `finalize`. Errors are `error` messages
//! whose content names the exception; the connection stays open.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// A member's id: assigned by the server, one per WebSocket connection.
pub(crate) type MemberId = String;

/// The settings of the protocol (the reference's `nextrtc.properties`).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Between the application-level pings every connection gets (the first comes after 1 s).
    pub(crate) ping_period: Duration,
    /// How long a pair may stay in one state of its set-up; then its messages are dropped.
    pub(crate) max_connection_setup_time: Duration,
    /// `join` to a conversation that does not exist is an error instead of creating it.
    pub(crate) join_only_to_existing: bool,
    /// The type of conversations created without one (and by `join`).
    pub(crate) default_type: Kind,
}

/// A conversation's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Every member connects to every other.
    Mesh,
    /// The first member sends to everyone else; the audience does not connect to itself.
    Broadcast,
    /// A mesh that ends for everyone when its creator leaves.
    MeshWithMaster,
}

impl Kind {
    pub(crate) fn parse(name: &str) -> Option<Kind> {
        match name.to_ascii_uppercase().as_str() {
            "MESH" => Some(Kind::Mesh),
            "BROADCAST" => Some(Kind::Broadcast),
            "MESH_WITH_MASTER" => Some(Kind::MeshWithMaster),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Mesh => "MESH",
            Kind::Broadcast => "BROADCAST",
            Kind::MeshWithMaster => "MESH_WITH_MASTER",
        }
    }
}

/// One frame, either way. A field that is absent or `null` is empty: JSON clients send `null`
/// for unset fields, and the reference's decoder reads it as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Message {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(crate) from: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(crate) to: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(crate) signal: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(crate) content: String,
    /// String values only, as in the reference (whose decoder fails on anything else).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub(crate) custom: BTreeMap<String, String>,
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// The reference's exception names, sent as an error's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    MemberInOtherConversation,
    ConversationNameOccupied,
    ConversationNotFound,
    InvalidRecipient,
    UnknownError,
}

impl Failure {
    fn name(self) -> &'static str {
        match self {
            Failure::MemberInOtherConversation => "MEMBER_IN_OTHER_CONVERSATION",
            Failure::ConversationNameOccupied => "CONVERSATION_NAME_OCCUPIED",
            Failure::ConversationNotFound => "CONVERSATION_NOT_FOUND",
            Failure::InvalidRecipient => "INVALID_RECIPIENT",
            Failure::UnknownError => "UNKNOWN_ERROR",
        }
    }
}

struct Conversation {
    kind: Kind,
    /// In joining order: the first is the creator (the broadcaster, the master).
    members: Vec<MemberId>,
}

/// Where a pair's negotiation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    /// The existing member was asked for an offer.
    OfferRequested,
    /// The new member got the offer and was asked for an answer.
    AnswerRequested,
    /// Finalised: candidates pass.
    ExchangeCandidates,
}

struct Pair {
    /// The member asked for the offer (the one that was there first).
    offerer: MemberId,
    /// The member that joined.
    answerer: MemberId,
    state: PairState,
    /// Candidates sent before the pair was finalised: (from, to, content), in order.
    queued: Vec<(MemberId, MemberId, String)>,
    changed: Instant,
}

/// All members and conversations of one endpoint.
pub(crate) struct Hub {
    settings: Settings,
    /// Every connected member, with its conversation.
    members: HashMap<MemberId, Option<String>>,
    conversations: HashMap<String, Conversation>,
    /// Keyed by the two ids in order.
    pairs: HashMap<(MemberId, MemberId), Pair>,
    out: VecDeque<(MemberId, Message)>,
    next_ping: Instant,
    /// Makes conversation ids for `create` without one.
    new_id: Box<dyn FnMut() -> String + Send>,
}

fn pair_key(a: &str, b: &str) -> (MemberId, MemberId) {
    if a < b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

impl Hub {
    /// A hub that names unnamed conversations with `new_id`.
    pub(crate) fn new(
        now: Instant,
        settings: Settings,
        new_id: Box<dyn FnMut() -> String + Send>,
    ) -> Hub {
        Hub {
            settings,
            members: HashMap::new(),
            conversations: HashMap::new(),
            pairs: HashMap::new(),
            out: VecDeque::new(),
            next_ping: now + Duration::from_secs(1),
            new_id,
        }
    }

    /// A new connection, as member `id`.
    pub(crate) fn connect(&mut self, id: MemberId) {
        self.members.insert(id, None);
    }

    /// How many members are connected.
    #[cfg(test)]
    pub(crate) fn members(&self) -> usize {
        self.members.len()
    }

    /// A text frame from member `from`.
    pub(crate) fn receive(&mut self, now: Instant, from: &str, text: &str) {
        if !self.members.contains_key(from) {
            return;
        }
        let message: Message = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(error) => {
                return self.fail(
                    from,
                    Failure::UnknownError,
                    &format!("the message cannot be read: {error}"),
                );
            }
        };
        match message.signal.to_ascii_lowercase().as_str() {
            "create" => self.create(now, from, &message),
            "join" => self.join(now, from, &message),
            "offerresponse" => self.offer_response(now, from, &message),
            "answerresponse" => self.answer_response(now, from, &message),
            "candidate" => self.candidate(from, &message),
            "text" => self.text(from, &message),
            "left" => {
                if self.conversation_of(from).is_none() {
                    self.fail(from, Failure::ConversationNotFound, "not in a conversation");
                } else {
                    self.leave(from);
                }
            }
            // The reference dispatches other names to handlers an application registers;
            // with none registered, nothing happens.
            _ => {}
        }
    }

    /// Member `id`'s connection closed: it leaves its conversation.
    pub(crate) fn disconnect(&mut self, id: &str) {
        if self.conversation_of(id).is_some() {
            self.leave(id);
        }
        self.members.remove(id);
    }

    /// Sends the pings that are due and forgets pairs stuck in their set-up.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_ping {
            self.next_ping = now + self.settings.ping_period;
            let mut ids: Vec<&MemberId> = self.members.keys().collect();
            ids.sort();
            for id in ids {
                self.out.push_back((
                    id.clone(),
                    Message {
                        to: id.clone(),
                        signal: "ping".to_owned(),
                        ..Message::default()
                    },
                ));
            }
        }
        let limit = self.settings.max_connection_setup_time;
        self.pairs
            .retain(|_, pair| now.saturating_duration_since(pair.changed) < limit);
    }

    /// When [`Hub::handle_timeout`] is due next.
    pub(crate) fn poll_timeout(&self) -> Instant {
        let expiry = self
            .pairs
            .values()
            .map(|pair| pair.changed + self.settings.max_connection_setup_time)
            .min();
        expiry.map_or(self.next_ping, |expiry| expiry.min(self.next_ping))
    }

    /// The next message for a member.
    pub(crate) fn poll_output(&mut self) -> Option<(MemberId, Message)> {
        self.out.pop_front()
    }

    fn conversation_of(&self, id: &str) -> Option<&String> {
        self.members.get(id).and_then(Option::as_ref)
    }

    fn send(&mut self, to: &str, from: &str, signal: &str, content: &str) {
        self.send_custom(to, from, signal, content, BTreeMap::new());
    }

    fn send_custom(
        &mut self,
        to: &str,
        from: &str,
        signal: &str,
        content: &str,
        custom: BTreeMap<String, String>,
    ) {
        self.out.push_back((
            to.to_owned(),
            Message {
                from: from.to_owned(),
                to: to.to_owned(),
                signal: signal.to_owned(),
                content: content.to_owned(),
                custom,
            },
        ));
    }

    fn fail(&mut self, to: &str, failure: Failure, detail: &str) {
        let custom = BTreeMap::from([(
            "stackTrace".to_owned(),
            format!("SignalingException: {}: {detail}", failure.name()),
        )]);
        self.send_custom(to, "", "error", failure.name(), custom);
    }

    fn create(&mut self, now: Instant, from: &str, message: &Message) {
        if self.conversation_of(from).is_some() {
            return self.fail(
                from,
                Failure::MemberInOtherConversation,
                "a member is in one conversation at a time",
            );
        }
        let id = if message.content.trim().is_empty() {
            (self.new_id)()
        } else {
            message.content.clone()
        };
        if self.conversations.contains_key(&id) {
            return self.fail(
                from,
                Failure::ConversationNameOccupied,
                &format!("conversation {id} exists"),
            );
        }
        let kind = message
            .custom
            .get("type")
            .and_then(|name| Kind::parse(name))
            .unwrap_or(self.settings.default_type);
        self.open(now, from, id, kind);
    }

    fn join(&mut self, now: Instant, from: &str, message: &Message) {
        if self.conversation_of(from).is_some() {
            return self.fail(
                from,
                Failure::MemberInOtherConversation,
                "a member is in one conversation at a time",
            );
        }
        let id = message.content.clone();
        if !self.conversations.contains_key(&id) {
            if self.settings.join_only_to_existing || id.trim().is_empty() {
                return self.fail(
                    from,
                    Failure::ConversationNotFound,
                    &format!("no conversation {id}"),
                );
            }
            let kind = self.settings.default_type;
            return self.open(now, from, id, kind);
        }
        let Some(conversation) = self.conversations.get_mut(&id) else {
            return;
        };
        let existing = conversation.members.clone();
        let kind = conversation.kind;
        conversation.members.push(from.to_owned());
        self.members.insert(from.to_owned(), Some(id.clone()));
        self.send(from, "", "joined", &id);
        // Who connects to the newcomer: everyone, or in a broadcast the broadcaster alone.
        let peers: Vec<MemberId> = match kind {
            Kind::Broadcast => existing.into_iter().take(1).collect(),
            Kind::Mesh | Kind::MeshWithMaster => existing,
        };
        for peer in peers {
            self.send(&peer, from, "newJoined", from);
            self.send(from, &peer, "newJoined", &peer);
            self.send(&peer, from, "offerRequest", "");
            self.pairs.insert(
                pair_key(&peer, from),
                Pair {
                    offerer: peer.clone(),
                    answerer: from.to_owned(),
                    state: PairState::OfferRequested,
                    queued: Vec::new(),
                    changed: now,
                },
            );
        }
    }

    /// A new conversation with `from` as its first member.
    fn open(&mut self, _now: Instant, from: &str, id: String, kind: Kind) {
        self.conversations.insert(
            id.clone(),
            Conversation {
                kind,
                members: vec![from.to_owned()],
            },
        );
        self.members.insert(from.to_owned(), Some(id.clone()));
        let custom = BTreeMap::from([("type".to_owned(), kind.name().to_owned())]);
        self.send_custom(from, "", "created", &id, custom);
    }

    /// The pair of `from` and the message's recipient, if it exists and is in `state`.
    fn pair_in(&mut self, from: &str, to: &str, state: PairState) -> Option<&mut Pair> {
        self.pairs
            .get_mut(&pair_key(from, to))
            .filter(|pair| pair.state == state)
    }

    fn offer_response(&mut self, now: Instant, from: &str, message: &Message) {
        let to = message.to.clone();
        let Some(pair) = self.pair_in(from, &to, PairState::OfferRequested) else {
            return;
        };
        if pair.offerer != from {
            return;
        }
        pair.state = PairState::AnswerRequested;
        pair.changed = now;
        self.send(&to, from, "answerRequest", &message.content);
    }

    fn answer_response(&mut self, now: Instant, from: &str, message: &Message) {
        let to = message.to.clone();
        let Some(pair) = self.pair_in(from, &to, PairState::AnswerRequested) else {
            return;
        };
        if pair.answerer != from {
            return;
        }
        pair.state = PairState::ExchangeCandidates;
        pair.changed = now;
        let queued = std::mem::take(&mut pair.queued);
        self.send(&to, from, "finalize", &message.content);
        for (sender, recipient, content) in queued {
            self.send(&recipient, &sender, "candidate", &content);
        }
    }

    fn candidate(&mut self, from: &str, message: &Message) {
        let to = message.to.clone();
        let Some(pair) = self.pairs.get_mut(&pair_key(from, &to)) else {
            return;
        };
        if pair.state == PairState::ExchangeCandidates {
            self.send(&to, from, "candidate", &message.content);
        } else {
            pair.queued
                .push((from.to_owned(), to, message.content.clone()));
        }
    }

    fn text(&mut self, from: &str, message: &Message) {
        let Some(id) = self.conversation_of(from).cloned() else {
            return self.fail(from, Failure::ConversationNotFound, "not in a conversation");
        };
        let Some(conversation) = self.conversations.get(&id) else {
            return;
        };
        // Without a recipient, everyone else: in a broadcast that is the audience, and the
        // broadcaster too when an audience member wrote.
        let recipients: Vec<MemberId> = if message.to.is_empty() {
            conversation
                .members
                .iter()
                .filter(|member| *member != from)
                .cloned()
                .collect()
        } else if conversation.members.contains(&message.to) {
            vec![message.to.clone()]
        } else {
            return self.fail(
                from,
                Failure::InvalidRecipient,
                &format!("{} is not in conversation {id}", message.to),
            );
        };
        for to in recipients {
            self.send_custom(&to, from, "text", &message.content, message.custom.clone());
        }
    }

    /// `id` leaves its conversation, with the reference's notices to those who stay.
    fn leave(&mut self, id: &str) {
        let Some(conversation_id) = self.members.get_mut(id).and_then(Option::take) else {
            return;
        };
        self.pairs.retain(|(a, b), _| a != id && b != id);
        let Some(conversation) = self.conversations.get_mut(&conversation_id) else {
            return;
        };
        let creator = conversation
            .members
            .first()
            .is_some_and(|first| first == id);
        conversation.members.retain(|member| member != id);
        let kind = conversation.kind;
        let rest = conversation.members.clone();
        match kind {
            Kind::Broadcast if creator => {
                for member in &rest {
                    self.send(member, id, "left", "");
                    self.send(member, "", "end", &conversation_id);
                }
                self.dissolve(&conversation_id, &rest);
            }
            Kind::Broadcast => {
                if let Some(broadcaster) = rest.first() {
                    let broadcaster = broadcaster.clone();
                    self.send(&broadcaster, id, "left", "");
                }
            }
            Kind::MeshWithMaster if creator => {
                for member in &rest {
                    self.send(member, id, "left", "");
                }
                self.dissolve(&conversation_id, &rest);
            }
            Kind::Mesh | Kind::MeshWithMaster => {
                for member in &rest {
                    self.send(member, id, "left", "");
                }
            }
        }
        if self
            .conversations
            .get(&conversation_id)
            .is_some_and(|conversation| conversation.members.is_empty())
        {
            self.conversations.remove(&conversation_id);
        }
    }

    /// Ends a conversation: its members are in none any more.
    fn dissolve(&mut self, id: &str, members: &[MemberId]) {
        for member in members {
            if let Some(slot) = self.members.get_mut(member) {
                *slot = None;
            }
            self.pairs.retain(|(a, b), _| a != member && b != member);
        }
        self.conversations.remove(id);
    }
}
