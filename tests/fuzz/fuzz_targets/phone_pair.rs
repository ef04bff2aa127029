//! RTP and RTCP from the network into a call between two phones (`media::RtpPair`): each
//! datagram on each leg's RTP and RTCP ports, from that leg's phone and from a stranger, with
//! the caller's leg in plain RTP and the callee's in SRTP. Nothing may panic; what goes out is
//! bounded by what came in (plus SRTP's index and tag); nothing goes back to the leg it came
//! from; a stranger is never forwarded; and nothing from the callee's SRTP leg passes, since
//! the fuzzer does not have its key.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use media::srtp::{SrtpMode, SrtpPolicy};
use media::{Codec, PairConfig, PairOutput, RtpPair, Side};

const CALLER: &str = include_str!("../../data/sdp/baresip-answer.sdp");

fuzz_target!(|data: &[u8]| {
    media::init_crypto();
    let now = Instant::now();
    let config = PairConfig {
        caller_rtp: "127.0.0.1:30000".parse().expect("addr"),
        callee_rtp: "127.0.0.1:30002".parse().expect("addr"),
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        media_timeout: Duration::from_secs(30),
        srtp: SrtpPolicy::with_all_suites(SrtpMode::Optional),
        video: None,
        video_codecs: Vec::new(),
    };
    let Ok((mut pair, offer)) = RtpPair::new(now, config, CALLER) else {
        panic!("the caller's offer is taken");
    };
    // The callee answers with a key for the first offered line.
    let key = offer
        .lines()
        .find_map(|line| line.strip_prefix("a=crypto:"))
        .expect("a key offered");
    let tag = key.split(' ').next().expect("a tag");
    let callee_answer = CALLER.replace("10020", "10030").replace(
        "a=sendrecv",
        &format!(
            "a=sendrecv\r\na=crypto:{tag} AES_CM_128_HMAC_SHA1_80 inline:WnD7c1ksDGs+dIefCEo8omPg4uO8DYIinNGL5yxQ"
        ),
    );
    pair.accept_answer(now, &callee_answer)
        .expect("the callee's answer is taken");
    let caller = "127.0.0.1:10020".parse().expect("addr");
    let callee = "127.0.0.1:10030".parse().expect("addr");
    let stranger = "198.51.100.9:4000".parse().expect("addr");
    for (side, source, rtcp_port) in [
        (Side::Caller, caller, false),
        (Side::Caller, caller, true),
        (Side::Callee, callee, false),
        (Side::Callee, callee, true),
        (Side::Caller, stranger, false),
    ] {
        pair.handle(now, side, source, data, rtcp_port);
        let mut sent = 0;
        loop {
            match pair.poll_output() {
                PairOutput::Timeout(_) => break,
                PairOutput::Send { data: out, side: to, .. } => {
                    sent += 1;
                    assert!(out.len() <= data.len() + 14 + 4, "{} from {}", out.len(), data.len());
                    assert_ne!(to, side, "sent back to the leg it came from");
                    assert_ne!(source, stranger, "a stranger is forwarded");
                    assert_ne!(side, Side::Callee, "unprotected packets pass the SRTP leg");
                }
            }
        }
        assert!(sent <= 1);
    }
});
