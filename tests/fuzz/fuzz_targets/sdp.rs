//! SDP from the network into the translator: a browser offer (outgoing call), a SIP answer to
//! a real offer, a SIP offer (incoming call), a re-offer in an established call and what it
//! offers the browser, the browser's answer to that, and the browser's new offer mid-call.
//! Nothing may panic; whatever SDP the translator writes must read back.

#![no_main]

#[path = "relay_setup.rs"]
mod relay_setup;

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use media::Relay;
use media::sdp::Description;
use relay_setup::{CHROME, PHONE_ANSWER, config};

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
        if relay.answer_sip_offer(text).is_ok() {
            // The SIP side's change offered to the browser (a codec moved, video added or
            // removed), and the text as the browser's answer to it.
            if let Ok(Some(offer)) = relay.browser_update() {
                Description::parse(&offer).expect("our browser offer reads back");
                if let Ok(Some(answer)) = relay.accept_browser_update(now, text) {
                    Description::parse(&answer).expect("our SIP answer reads back");
                }
            }
        }
    }
    // The text as the browser's new offer mid-call, and as the phone's answer to it.
    if let Ok((mut relay, _)) = Relay::outgoing(now, config(), CHROME)
        && relay.accept_sip_answer(now, PHONE_ANSWER).is_ok()
        && relay.browser_offer_concerns_sip(text).is_ok()
        && let Ok(sip_offer) = relay.browser_reoffer(text)
    {
        Description::parse(&sip_offer).expect("our SIP offer reads back");
        let _ = relay.finish_browser_reoffer(now, text);
    }
    // The text edited as the relay edits browser descriptions.
    let _ = media::sdp::keep_formats(text, "audio", &[0, 8, 101]);
    let _ = media::sdp::restrict_video(text, Some(&[96, 97]));
    let _ = media::sdp::restrict_video(text, None);
    let _ = media::sdp::is_dtls_offer(text);
    if let Ok((mut relay, _)) = Relay::incoming(now, config(), Some(text)) {
        let _ = relay.answer_sip_offer(text);
        let _ = relay.accept_sip_reanswer(text);
    }
});
