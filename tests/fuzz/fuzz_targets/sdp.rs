//! SDP from the network into the translator: a browser offer (outgoing call), a SIP answer to
//! a real offer, a SIP offer (incoming call) and a re-offer in an established call. Nothing may
//! panic; whatever SIP SDP the translator writes must read back.

#![no_main]

use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use media::sdp::Description;
use media::{Codec, Relay, RelayConfig};

const CHROME: &str = include_str!("../../data/sdp/chrome-offer-audio.sdp");

fn config() -> RelayConfig {
    RelayConfig {
        browser: "127.0.0.1:40000".parse().expect("addr"),
        sip_rtp: "127.0.0.1:30000".parse().expect("addr"),
        codecs: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
        media_timeout: Duration::from_secs(30),
        ice_timeout: Duration::from_secs(30),
        wallclock: SystemTime::UNIX_EPOCH,
        cname: "fuzz".into(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    media::init_crypto();
    let now = Instant::now();
    let _ = Description::parse(text);
    if let Ok((_, sip_offer)) = Relay::outgoing(now, config(), text) {
        Description::parse(&sip_offer).expect("our SIP offer reads back");
    }
    if let Ok((mut relay, _)) = Relay::outgoing(now, config(), CHROME) {
        let _ = relay.accept_sip_answer(now, text);
        let _ = relay.answer_sip_offer(text);
    }
    if let Ok((mut relay, _)) = Relay::incoming(now, config(), Some(text)) {
        let _ = relay.answer_sip_offer(text);
        let _ = relay.accept_sip_reanswer(text);
    }
});
