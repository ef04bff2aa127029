//! What crosses the wire, for the operator: every SIP message in and out is logged under the
//! target `sip::wire` at debug level (digest responses and SDES keys masked, as the WebSocket
//! trace masks passwords), and counted by direction, method and status code ([`WireStats`],
//! which the gateway renders in `/metrics`). Methods outside RFC 3261 and its common
//! extensions are counted as `other`, so hostile input cannot grow the set of counters.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracing::debug;

use crate::endpoint::Target;
use crate::message::{Message, StartLine};

/// The methods counted by name; others are `other`.
const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "CANCEL",
    "BYE",
    "REGISTER",
    "MESSAGE",
    "UPDATE",
    "PRACK",
    "OPTIONS",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
];

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// Received.
    In,
    /// Sent.
    Out,
}

impl Direction {
    /// `in` or `out`.
    pub fn label(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// A message's counter: its direction, its method (a response's, from its CSeq) and, for a
/// response, its status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WireKey {
    /// Which way.
    pub direction: Direction,
    /// The method, or `other`.
    pub method: &'static str,
    /// The status code of a response; `None` for a request.
    pub code: Option<u16>,
}

/// The counters of one driver. Cheap to read from another thread.
#[derive(Debug, Default)]
pub struct WireStats {
    counts: Mutex<BTreeMap<WireKey, u64>>,
    server_transactions: AtomicUsize,
    client_transactions: AtomicUsize,
    registered: AtomicUsize,
    registrations: AtomicUsize,
}

impl WireStats {
    /// Every counter that is not zero.
    pub fn counts(&self) -> Vec<(WireKey, u64)> {
        self.counts
            .lock()
            .map(|counts| counts.iter().map(|(key, count)| (*key, *count)).collect())
            .unwrap_or_default()
    }

    /// The transactions held: (server, client).
    pub fn transactions(&self) -> (usize, usize) {
        (
            self.server_transactions.load(Ordering::Relaxed),
            self.client_transactions.load(Ordering::Relaxed),
        )
    }

    /// The accounts' registrations: (those whose binding is in place, all).
    pub fn registrations(&self) -> (usize, usize) {
        (
            self.registered.load(Ordering::Relaxed),
            self.registrations.load(Ordering::Relaxed),
        )
    }

    pub(super) fn set_registrations(&self, registered: usize, all: usize) {
        self.registered.store(registered, Ordering::Relaxed);
        self.registrations.store(all, Ordering::Relaxed);
    }

    pub(super) fn set_transactions(&self, server: usize, client: usize) {
        self.server_transactions.store(server, Ordering::Relaxed);
        self.client_transactions.store(client, Ordering::Relaxed);
    }

    fn count(&self, key: WireKey) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(key).or_default() += 1;
        }
    }

    /// A message in or out as bytes (a datagram, or a transmit): counted and logged. Bytes that
    /// are no SIP message (keep-alives, STUN) are neither.
    pub(super) fn bytes(&self, direction: Direction, remote: Target, bytes: &[u8]) {
        let Some(key) = key_of_bytes(direction, bytes) else {
            return;
        };
        self.count(key);
        debug!(
            target: "sip::wire",
            direction = direction.label(),
            transport = ?remote.transport,
            remote = %remote.addr,
            "{}",
            masked(&String::from_utf8_lossy(bytes))
        );
    }

    /// A message received on a stream connection, already parsed.
    pub(super) fn message(&self, remote: Target, message: &Message) {
        let method = match &message.start {
            StartLine::Request { method, .. } => Some(method.to_string()),
            StartLine::Response { .. } => message.cseq().ok().map(|cseq| cseq.method.to_string()),
        };
        self.count(WireKey {
            direction: Direction::In,
            method: known(method.as_deref().unwrap_or("")),
            code: message.code(),
        });
        if tracing::enabled!(target: "sip::wire", tracing::Level::DEBUG) {
            let text = String::from_utf8_lossy(&message.to_bytes()).into_owned();
            debug!(
                target: "sip::wire",
                direction = "in",
                transport = ?remote.transport,
                remote = %remote.addr,
                "{}",
                masked(&text)
            );
        }
    }
}

/// The counted name of `method`.
fn known(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|known| known.eq_ignore_ascii_case(method))
        .copied()
        .unwrap_or("other")
}

/// The key of a message from its start line (and, for a response, its CSeq).
fn key_of_bytes(direction: Direction, bytes: &[u8]) -> Option<WireKey> {
    let head = &bytes[..bytes.len().min(4096)];
    // The head up to the first byte that is not UTF-8 (a binary body, or a cut character).
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(error) => std::str::from_utf8(&head[..error.valid_up_to()]).ok()?,
    };
    let first = text.lines().next()?;
    if let Some(status) = first.strip_prefix("SIP/2.0 ") {
        let code: u16 = status.get(..3)?.parse().ok()?;
        if !(100..=699).contains(&code) {
            return None;
        }
        let method = text
            .split("\r\n")
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("CSeq")
                    .then(|| value.split_whitespace().nth(1))
                    .flatten()
            })
            .unwrap_or("");
        return Some(WireKey {
            direction,
            method: known(method),
            code: Some(code),
        });
    }
    let (method, rest) = first.split_once(' ')?;
    rest.ends_with("SIP/2.0").then_some(WireKey {
        direction,
        method: known(method),
        code: None,
    })
}

/// `text` with the secrets a trace must not show: the `response` of digest credentials
/// (offline guessing of the password starts from it) and SDES keys (`inline:KEY`, which decrypt
/// the call).
pub fn masked(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split("\r\n").enumerate() {
        if index > 0 {
            out.push_str("\r\n");
        }
        let name = line.split_once(':').map(|(name, _)| name.trim());
        let credentials = name.is_some_and(|name| {
            name.eq_ignore_ascii_case("Authorization")
                || name.eq_ignore_ascii_case("Proxy-Authorization")
        });
        if credentials {
            out.push_str(&mask_after(line, "response=", |c| c == ',' || c == ' '));
        } else if line.starts_with("a=crypto:") {
            out.push_str(&mask_after(line, "inline:", |c| c == '|' || c == ' '));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// `line` with the value after every `marker` (up to `end`, quotes kept) replaced by `***`.
fn mask_after(line: &str, marker: &str, end: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    loop {
        let lower = rest.to_ascii_lowercase();
        let Some(at) = lower.find(marker) else {
            out.push_str(rest);
            return out;
        };
        let value_start = at + marker.len();
        out.push_str(&rest[..value_start]);
        let value = &rest[value_start..];
        let quoted = value.starts_with('"');
        let body = if quoted { &value[1..] } else { value };
        let length = if quoted {
            body.find('"').unwrap_or(body.len())
        } else {
            body.find(&end).unwrap_or(body.len())
        };
        if quoted {
            out.push('"');
        }
        out.push_str("***");
        rest = &body[length..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let text = "REGISTER sip:example.com SIP/2.0\r\n\
            Authorization: Digest username=\"alice\", realm=\"example.com\", nonce=\"n1\", \
            uri=\"sip:example.com\", response=\"6629fae49393a05397450978507c4ef1\", qop=auth\r\n\
            proxy-authorization: Digest username=\"a\", RESPONSE=abcdef, nc=00000001\r\n\
            \r\n\
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:32\r\n\
            a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n";
        let shown = masked(text);
        for secret in [
            "6629fae49393a05397450978507c4ef1",
            "abcdef",
            "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
            "NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj",
        ] {
            assert!(!shown.contains(secret), "{secret} shown:\n{shown}");
        }
        assert!(shown.contains("username=\"alice\""), "{shown}");
        assert!(shown.contains("response=\"***\", qop=auth"), "{shown}");
        assert!(shown.contains("inline:***|2^20|1:32"), "{shown}");
        assert!(shown.contains("nc=00000001"), "{shown}");
    }

    #[test]
    fn messages_are_keyed_by_method_and_code() {
        let key = |bytes: &[u8]| key_of_bytes(Direction::In, bytes);
        assert_eq!(
            key(b"INVITE sip:bob@x SIP/2.0\r\nCSeq: 1 INVITE\r\n\r\n"),
            Some(WireKey {
                direction: Direction::In,
                method: "INVITE",
                code: None
            })
        );
        assert_eq!(
            key(b"SIP/2.0 486 Busy Here\r\nVia: x\r\ncseq: 7 invite\r\n\r\n"),
            Some(WireKey {
                direction: Direction::In,
                method: "INVITE",
                code: Some(486)
            })
        );
        // Unknown methods are "other"; keep-alives and garbage are not messages.
        assert_eq!(
            key(b"FROBNICATE sip:x SIP/2.0\r\n\r\n").map(|key| key.method),
            Some("other")
        );
        assert_eq!(key(b"\r\n\r\n"), None);
        assert_eq!(key(b"SIP/2.0 999 What\r\n\r\n"), None);
        assert_eq!(key(&[0xff, 0xfe, 0x00]), None);
    }
}
