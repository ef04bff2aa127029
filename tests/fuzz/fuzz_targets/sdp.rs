//! SDP from the network into the translator: a browser offer (outgoing call), a SIP answer to
//! a real offer, a SIP offer (incoming call) and a re-offer in an established call. Nothing may
//! panic; whatever SIP SDP the translator writes must read back.

#![no_main]

#[path = "relay_setup.rs"]
mod relay_setup;

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use media::Relay;
use media::sdp::Description;
use relay_setup::{CHROME, config};

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
