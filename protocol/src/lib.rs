//! The sylkRTC WebSocket protocol: the JSON messages a browser and the gateway exchange.
//!
//! This crate is pure: it parses text into a typed model and encodes the model back into text,
//! and does no I/O at all (it does not depend on tokio). Both wire versions share one model:
//! [`Version::V2`] (`sylkRTC-2`, the current one, with hyphenated names and flat fields) and
//! [`Version::V1`] (`sylkRTC-1`, the 2015 one, with underscored event names and a nested `data`
//! object). Requests are the same in both versions; events and the ready message differ.
//!
//! * [`Request::parse`] turns a client message into a [`Request`], or into a [`RequestError`]
//!   that carries the `transaction` whenever it could be read, so that the error can be answered.
//! * [`ServerMessage::encode`] writes an `ack`, an `error` or an [`Event`] in either version;
//!   [`ServerMessage::parse`] reads them back (for clients and tests).
//!
//! Unknown extra fields are ignored everywhere. A missing or mistyped mandatory field is an
//! [`Error`] that names the field.

#![deny(missing_docs)]

mod aor;
mod error;
mod event;
mod fields;
mod request;

pub use aor::Aor;
pub use error::{Error, RequestError, Result};
pub use event::{
    AccountEvent, CallQuality, DispositionNotification, Event, Headers, IncomingMessage,
    LegQuality, Party, RegistrationState, ServerMessage, SessionEvent, SessionState, SyncAction,
    SyncedMessage, UpdateState,
};
pub use request::{
    AccountAdd, AccountDisposition, AccountMessage, AddressbookUpdate, Candidate, DeviceToken,
    Header, NOT_MODELLED, REQUEST_NAMES, Request, RequestBody, Secret, SessionAnswer,
    SessionCreate, SessionDtmfInfo, SessionMessage, SessionTrickle, SessionUpdate,
    SyncConversations,
};

/// A wire version of the protocol, chosen by the WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `sylkRTC-1`: the 2015 encoding (`{"sylkrtc":"event","event":"ready"}`, `account_event`,
    /// `session_event`, payload under `data`).
    V1,
    /// `sylkRTC-2`: the current encoding (`ready-event`, `account-event`, `session-event`, flat
    /// fields).
    V2,
}

impl Version {
    /// Every version, in the order of preference when a client offers several.
    pub const PREFERENCE: [Version; 2] = [Version::V2, Version::V1];

    /// The WebSocket subprotocol that selects this version, spelled exactly as it is echoed.
    pub const fn subprotocol(self) -> &'static str {
        match self {
            Version::V1 => "sylkRTC-1",
            Version::V2 => "sylkRTC-2",
        }
    }

    /// The version a subprotocol name selects (the match is exact and case-sensitive).
    pub fn from_subprotocol(name: &str) -> Option<Self> {
        Self::PREFERENCE
            .into_iter()
            .find(|version| version.subprotocol() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mutated valid messages (flipped, inserted, deleted bytes; truncation) must give errors,
    /// never panics: this is network input.
    #[test]
    fn arbitrary_input_never_panics() {
        let seeds = [
            r#"{"sylkrtc":"account-add","transaction":"t","account":"sip:alice@example.com","password":"884edfee38ed471b8a15006700139485","display_name":"A","incoming_header_prefixes":["X-"]}"#,
            r#"{"sylkrtc":"session-trickle","transaction":"t","session":"s","candidates":[{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}]}"#,
            r#"{"sylkrtc":"session-create","transaction":"t","account":"a@b.c","session":"s","uri":"b@[::1]:5060","sdp":"v=0","headers":[{"name":"X-A","value":"1"}]}"#,
            r#"{"sylkrtc":"session-dtmf-info","transaction":"t","session":"s","digit":"1#","duration":100}"#,
            r#"{"sylkrtc":"account-event","account":"a@b.c","event":"incoming-session","session":"s","originator":{"uri":"b@c.d"},"sdp":"v=0","headers":{"X":"1"}}"#,
            r#"{"sylkrtc":"account_event","account":"a@b.c","event":"incoming_session","session":"s","data":{"originator":"b@c.d","sdp":"v=0"}}"#,
            r#"{"sylkrtc":"session_event","session":"s","event":"state","data":{"state":"proceeding","code":180}}"#,
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            // xorshift64: a fixed sequence, so any failure reproduces.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..=(next() % 4) {
                let at = (next() as usize) % (bytes.len() + 1);
                match next() % 4 {
                    0 if at < bytes.len() => bytes[at] = next() as u8,
                    1 => {
                        let alphabet = b"{}[]\\\":,0-9azAZ@.\x01\xff";
                        bytes.insert(at, alphabet[(next() as usize) % alphabet.len()]);
                    }
                    2 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.truncate(at),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = Request::parse(&text);
            for version in Version::PREFERENCE {
                let _ = ServerMessage::parse(&text, version);
            }
        }
    }

    /// The inputs that once broke the `ws_json` fuzz target (tests/fuzz/regressions) still
    /// parse or fail cleanly, and what parses encodes back to itself.
    #[test]
    fn the_fuzz_regressions_replay() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fuzz/regressions/ws_json"
        );
        for entry in std::fs::read_dir(dir).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            if let Ok(request) = Request::parse(text) {
                assert_eq!(Request::parse(&request.encode()).unwrap(), request);
            }
            for version in Version::PREFERENCE {
                let _ = ServerMessage::parse(text, version);
            }
        }
    }

    #[test]
    fn subprotocols_are_exact() {
        assert_eq!(Version::from_subprotocol("sylkRTC-2"), Some(Version::V2));
        assert_eq!(Version::from_subprotocol("sylkRTC-1"), Some(Version::V1));
        assert_eq!(Version::from_subprotocol("sylkrtc-2"), None);
        assert_eq!(Version::from_subprotocol("sylkRTC-3"), None);
        assert_eq!(Version::V2.subprotocol(), "sylkRTC-2");
    }
}
