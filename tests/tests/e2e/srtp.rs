//! SDES-SRTP toward SIP (RFC 4568 keys in SDP, RFC 3711 packets) with baresip's `srtp` module:
//! a phone that insists on it (`RTP/SAVP`) both ways and with each suite, a phone that takes it
//! when offered (best effort, RFC 8643), and a gateway with SRTP off refusing `RTP/SAVP`.

use std::time::Duration;

use gateway::SrtpSetting;
use gateway_tests::baresip::Baresip;
use gateway_tests::browser::{AudioCodec, Browser};
use protocol::SessionState;
use serde_json::json;

use crate::calls::{
    Setup, answer_and_talk, answer_update, browser_tone, call_bob, payload_type, state, until_heard,
};

const WAIT: Duration = Duration::from_secs(15);

/// bob (baresip) with `mediaenc` (`srtp`: best effort, `srtp-mand`: `RTP/SAVP` only),
/// registered, tracing its SIP messages (and so their SDP) to its log.
pub(crate) fn bob(setup: &Setup, mediaenc: &str, tone: f64) -> Baresip {
    let account = format!(
        "<sip:bob@127.0.0.1:{port};transport=udp>;auth_pass=bobpw;answermode=auto;\
         audio_codecs=PCMU/8000/1;mediaenc={mediaenc};regint=300\n",
        port = setup.kamailio.port
    );
    let bob = Baresip::start_account_traced(&account, tone);
    setup.kamailio.wait_bindings("bob", 1, WAIT);
    bob
}

/// The browser calls bob; tones go both ways, then the browser hangs up.
pub(crate) async fn browser_calls_bob(setup: &mut Setup, bob: &Baresip, session: &str) {
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = call_bob(setup, &mut browser, session).await;
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    let (tone, packets) =
        until_heard(1000.0, || browser_tone(&browser, pt, AudioCodec::Pcmu)).await;
    assert!(packets >= 50, "the browser got {packets} packets");
    assert_eq!(tone, 1000.0, "the browser hears bob through SRTP");
    assert!(
        bob.until_received(440.0, 1.0, WAIT).await,
        "bob hears the browser through SRTP"
    );
    setup
        .client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": session}))
        .await;
    browser.close().await;
}

/// The SDP bodies bob sent and received, as its trace shows them.
fn crypto_lines(bob: &Baresip) -> Vec<String> {
    bob.log
        .text()
        .lines()
        .filter(|line| line.contains("a=crypto:") || line.starts_with("m=audio"))
        .map(str::to_owned)
        .collect()
}

/// A phone that speaks only SRTP (`RTP/SAVP`) calls and is called by the browser, with a
/// gateway whose SRTP is mandatory: its offers are `RTP/SAVP` with keys, its answers too, and
/// audio flows both ways.
#[tokio::test]
async fn a_phone_that_insists_on_srtp_talks_both_ways() {
    let mut setup = Setup::new(|config| config.media.srtp = SrtpSetting::Mandatory).await;
    setup.register_alice().await;
    let bob = bob(&setup, "srtp-mand", 1000.0);
    browser_calls_bob(&mut setup, &bob, "out-1").await;
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);

    // bob calls the browser: its RTP/SAVP offer is answered with a key.
    setup.dial(&bob, "alice");
    let (session, browser, pt) = answer_and_talk(&mut setup.client).await;
    let (tone, _) = until_heard(1000.0, || browser_tone(&browser, pt, AudioCodec::Pcmu)).await;
    assert_eq!(tone, 1000.0);
    assert!(bob.until_received(440.0, 1.0, WAIT).await);
    bob.command("hangup", "");
    assert!(matches!(
        state(&mut setup.client, &session).await,
        SessionState::Terminated { .. }
    ));
    browser.close().await;
    let sdp = crypto_lines(&bob);
    assert!(
        sdp.iter().filter(|line| line.contains("RTP/SAVP")).count() >= 4,
        "offers and answers both ways are RTP/SAVP: {sdp:#?}"
    );
    assert!(
        sdp.iter().filter(|line| line.contains("a=crypto:")).count() >= 4,
        "with keys: {sdp:#?}"
    );
    setup.assert_nothing_left().await;
}

/// Each suite on its own (`media.srtp_suites`), with the phone that insists on SRTP.
#[tokio::test]
async fn every_srtp_suite_carries_a_call() {
    for suite in [
        "AES_CM_128_HMAC_SHA1_80",
        "AES_CM_128_HMAC_SHA1_32",
        "AEAD_AES_128_GCM",
    ] {
        let mut setup = Setup::new(|config| {
            config.media.srtp = SrtpSetting::Mandatory;
            config.media.srtp_suites = vec![suite.to_owned()];
        })
        .await;
        let bob = bob(&setup, "srtp-mand", 1000.0);
        browser_calls_bob(&mut setup, &bob, "call").await;
        let sdp = crypto_lines(&bob);
        assert!(
            sdp.iter()
                .filter(|line| line.contains("a=crypto:"))
                .all(|line| line.contains(suite)),
            "{suite} only: {sdp:#?}"
        );
        setup.assert_nothing_left().await;
    }
}

/// Best effort (the default): the gateway's offer is `RTP/AVP` with keys, a phone that takes
/// SRTP when it is offered (`mediaenc=srtp`) answers with a key, and the call is SRTP.
#[tokio::test]
async fn best_effort_srtp_is_taken_by_a_phone_that_can() {
    let mut setup = Setup::new(|_| {}).await;
    let bob = bob(&setup, "srtp", 1000.0);
    browser_calls_bob(&mut setup, &bob, "call").await;
    let sdp = crypto_lines(&bob);
    assert!(
        sdp.iter()
            .any(|line| line.starts_with("m=audio") && line.contains("RTP/AVP")),
        "{sdp:#?}"
    );
    assert!(
        sdp.iter().filter(|line| line.contains("a=crypto:")).count() >= 2,
        "keys in the offer and in bob's answer: {sdp:#?}"
    );
    setup.assert_nothing_left().await;
}

/// With SRTP off, a phone that insists on it is refused with 488 (and `Warning: 302`).
#[tokio::test]
async fn with_srtp_off_an_srtp_only_phone_is_refused() {
    let mut setup = Setup::new(|config| config.media.srtp = SrtpSetting::Never).await;
    setup.register_alice().await;
    let bob = bob(&setup, "srtp-mand", 1000.0);
    setup.dial(&bob, "alice");
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    let closed = bob
        .events()
        .into_iter()
        .find(|event| event["type"] == "CALL_CLOSED")
        .expect("closed");
    assert!(
        closed["param"].as_str().unwrap_or_default().contains("488"),
        "{closed}"
    );
    assert!(
        bob.wait_log("Warning: 302", WAIT).await,
        "the 488 says why:\n{}",
        bob.log.text()
    );
}

/// A phone's hold and resume (re-INVITEs with their keys) keep an SRTP call: the relay answers
/// each with its own key, keeps the contexts of keys that did not change (and their rollover
/// counters), and audio flows again after the resume.
#[tokio::test]
async fn srtp_survives_hold_and_resume_from_the_phone() {
    let mut setup = Setup::new(|config| config.media.srtp = SrtpSetting::Mandatory).await;
    let bob = bob(&setup, "srtp-mand", 1000.0);
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = call_bob(&mut setup, &mut browser, "held").await;
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0);
    bob.command("hold", "");
    answer_update(&mut setup.client, &browser, "held").await;
    let reinvites = || {
        bob.log
            .text()
            .lines()
            .filter(|line| line.starts_with("INVITE sip:"))
            .count()
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !bob.log.text().contains("a=sendonly") && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(bob.log.text().contains("a=sendonly"), "bob held the call");
    bob.command("resume", "");
    answer_update(&mut setup.client, &browser, "held").await;
    let deadline = std::time::Instant::now() + WAIT;
    // The first INVITE came from the gateway; hold and resume are bob's.
    while reinvites() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.clear_received();
    let (tone, packets) =
        until_heard(1000.0, || browser_tone(&browser, pt, AudioCodec::Pcmu)).await;
    assert!(packets >= 100, "audio resumed: {packets} packets");
    assert_eq!(tone, 1000.0);
    let sdp = crypto_lines(&bob);
    assert!(
        sdp.iter().filter(|line| line.contains("a=crypto:")).count() >= 6,
        "the offer, the answer and both re-INVITEs' offers and answers carry keys: {sdp:#?}"
    );
    setup
        .client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "held"}))
        .await;
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    browser.close().await;
    setup.assert_nothing_left().await;
}
