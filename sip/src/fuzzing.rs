//! The checks every input of the robustness tests goes through: the fuzz target
//! (`tests/fuzz`) and the unit test that replays the RFC 4475 messages and mutations of the
//! whole corpus call the same code, so that what the fuzzer checks is what CI checks.

use std::time::Instant;

use crate::endpoint::{Endpoint, Target};
use crate::message::{Frame, Message, StreamFramer};

/// Parses `data` as a datagram (a valid message must print and parse again, still valid) and
/// as a stream cut at a point `data` chooses. Panics on a broken invariant, never on input.
pub fn check_message(data: &[u8]) {
    if let Ok(message) = Message::parse_datagram(data, 65_536) {
        if message.validate().is_ok() {
            let printed = message.to_bytes();
            let again =
                Message::parse_datagram(&printed, 131_072).expect("a printed message parses again");
            assert!(
                again.validate().is_ok(),
                "a printed valid message stays valid"
            );
        }
        let _ = message.vias();
        let _ = message.cseq();
    }
    let split = data
        .first()
        .map_or(0, |first| usize::from(*first) % (data.len() + 1));
    let mut framer = StreamFramer::new(65_536);
    for piece in [&data[..split], &data[split..]] {
        framer.push(piece);
        while let Ok(Some(frame)) = framer.next_frame() {
            if let Frame::Message(message) = frame {
                let _ = message.validate();
            }
        }
    }
}

/// Feeds `data` to an endpoint as a datagram from `source`, then drains what it sends: any
/// input gets at most an answer, never a panic.
pub fn feed_endpoint(endpoint: &mut Endpoint, now: Instant, source: Target, data: &[u8]) {
    let _ = endpoint.handle_datagram(now, source, data);
    while endpoint.poll_transmit().is_some() {}
    while endpoint.poll_event().is_some() {}
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::endpoint::EndpointConfig;
    use crate::registrar::LocalDomain;
    use crate::transaction::Timers;
    use crate::transport::Transport;

    /// Every message of the corpus: captured, synthetic, and RFC 4475's valid and invalid ones.
    fn corpus() -> Vec<Vec<u8>> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/sip");
        let mut messages = Vec::new();
        for dir in ["real", "synth", "rfc4475/valid", "rfc4475/invalid"] {
            let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
                .unwrap_or_else(|error| panic!("{dir}: {error}"))
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.file_name().is_some_and(|name| name != "README.md"))
                .collect();
            files.sort();
            messages.extend(files.iter().map(|file| std::fs::read(file).unwrap()));
        }
        messages
    }

    /// A small deterministic generator (xorshift64*), so that a failure can be replayed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// One mutation of `data`: the kinds of damage fuzzers and broken stacks produce.
    fn mutate(data: &[u8], rng: &mut Rng) -> Vec<u8> {
        const NASTY: &[u8] = b"\r\n\0\xff:;,<>\"\\ =%@\t";
        let mut out = data.to_vec();
        for _ in 0..=rng.below(3) {
            let at = rng.below(out.len() + 1);
            match rng.below(7) {
                0 if !out.is_empty() => {
                    let at = at.min(out.len() - 1);
                    out[at] = NASTY[rng.below(NASTY.len())];
                }
                1 => {
                    let end = (at + rng.below(16)).min(out.len());
                    out.drain(at..end);
                }
                2 => {
                    let byte = NASTY[rng.below(NASTY.len())];
                    let count = 1 + rng.below(8);
                    out.splice(at..at, std::iter::repeat_n(byte, count));
                }
                3 => out.truncate(at),
                4 => {
                    // A line repeated (a duplicate header, or a second start line).
                    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
                    let line = lines[rng.below(lines.len())].to_vec();
                    out.splice(at..at, line.into_iter().chain([b'\n']));
                }
                5 => {
                    // A number made huge or negative.
                    let text: &[u8] =
                        [&b"4294967296"[..], b"-1", b"99999999999999999999"][rng.below(3)];
                    out.splice(at..at, text.iter().copied());
                }
                _ => out.extend(std::iter::repeat_n(b'a', rng.below(70_000))),
            }
        }
        out
    }

    fn endpoint(now: Instant) -> Endpoint {
        let mut users = HashMap::new();
        users.insert(
            "carol".to_owned(),
            crate::auth::ha1("carol", "local.test", "pw"),
        );
        Endpoint::new(
            EndpointConfig {
                timers: Timers::default(),
                max_message_size: 65_536,
                user_agent: "robustness".into(),
                tag_seed: "r".into(),
                session_expires: Some(1800),
                min_se: 90,
                local: Some(LocalDomain {
                    location: std::sync::Arc::new(crate::location::MemoryLocation::new(
                        "local.test",
                        users,
                        false,
                    )),
                    secret: "s".into(),
                    nonce_lifetime: Duration::from_secs(300),
                    max_expires: 3600,
                    min_expires: 60,
                    ping_interval: Some(Duration::from_secs(30)),
                    peers: Vec::new(),
                }),
                max_server_transactions: 1000,
                siblings: Vec::new(),
            },
            now,
        )
    }

    /// The RFC 4475 messages and 200 mutations of every corpus message go through the fuzz
    /// target's checks and into an endpoint (with a local domain): nothing panics, and the
    /// transaction table stays within its bound.
    #[test]
    fn the_corpus_and_its_mutations_break_nothing() {
        let messages = corpus();
        assert!(messages.len() > 100, "{} messages", messages.len());
        let now = Instant::now();
        let mut endpoint = endpoint(now);
        let source = Target {
            transport: Transport::Udp,
            addr: "127.0.0.1:5080".parse().unwrap(),
        };
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let mut inputs = 0;
        for message in &messages {
            check_message(message);
            feed_endpoint(&mut endpoint, now, source, message);
            inputs += 1;
            for round in 0..200 {
                let mutated = mutate(message, &mut rng);
                check_message(&mutated);
                feed_endpoint(
                    &mut endpoint,
                    now + Duration::from_millis(round),
                    source,
                    &mutated,
                );
                inputs += 1;
            }
        }
        assert!(endpoint.server_transactions() <= 1000);
        eprintln!("{inputs} inputs, {} messages of the corpus", messages.len());
    }
}
