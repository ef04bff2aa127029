//! DTLS-SRTP toward SIP (RFC 5763, RFC 5764) with baresip's `dtls_srtp` module: a phone that
//! offers `UDP/TLS/RTP/SAVP` (an RSA certificate, RTCP on its own port) calls the browser, the
//! gateway answers with its fingerprint as the active side and does a handshake on each port;
//! the call then holds and resumes from both sides on the same associations. A video phone, the
//! echo test, our own DTLS-SRTP offer to a phone that takes nothing else; with SRTP off the
//! offer gets 488.

use std::time::Duration;

use gateway::{SrtpOffer, SrtpSetting};
use gateway_tests::baresip::Baresip;
use gateway_tests::browser::{AudioCodec, Browser};
use protocol::{SessionState, UpdateState};
use serde_json::json;

use crate::calls::{Setup, answer_and_talk, answer_update, browser_tone, state, until_heard};
use crate::srtp::bob;
use crate::updates::update_of;

const WAIT: Duration = Duration::from_secs(15);

/// The browser hears bob's 1 kHz tone again, and bob the browser's 440 Hz one.
async fn tones_both_ways(browser: &Browser, bob: &Baresip, pt: u8) {
    browser.clear_received();
    let (tone, packets) = until_heard(1000.0, || browser_tone(browser, pt, AudioCodec::Pcmu)).await;
    assert!(packets >= 50, "the browser got {packets} packets");
    assert_eq!(tone, 1000.0, "the browser hears bob through DTLS-SRTP");
    assert!(
        bob.until_received(440.0, 1.0, WAIT).await,
        "bob hears the browser through DTLS-SRTP"
    );
}

#[tokio::test]
async fn a_dtls_srtp_phone_calls_the_browser_and_holds_and_is_held() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    let bob = bob(&setup, "dtls_srtp", 1000.0);
    setup.dial(&bob, "alice");
    let (session, browser, pt) = answer_and_talk(&mut setup.client).await;
    tones_both_ways(&browser, &bob, pt).await;
    let log = bob.log.text();
    assert!(
        log.contains("verified sha-256 fingerprint OK"),
        "bob checked the gateway's certificate:\n{log}"
    );
    assert!(
        log.matches("m=audio").count() >= 2
            && log
                .lines()
                .filter(|line| line.starts_with("m=audio"))
                .all(|line| line.contains("UDP/TLS/RTP/SAVP")),
        "offer and answer are DTLS-SRTP:\n{log}"
    );
    assert!(log.contains("a=setup:active"), "{log}");
    assert!(!log.contains("a=crypto:"), "no SDES keys:\n{log}");

    // The browser holds and resumes: our re-offers keep the associations (same fingerprint,
    // same roles), audio comes back under the same keys.
    let hold = browser.offer_with_direction("sendonly").await;
    setup
        .client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": session, "sdp": hold}),
        )
        .await;
    let UpdateState::Accepted { sdp } = update_of(&mut setup.client, &session).await else {
        panic!("the hold is accepted");
    };
    assert!(sdp.contains("a=recvonly"), "{sdp}");
    assert!(bob.wait_log("a=sendonly", WAIT).await, "bob got the hold");
    let resume = browser.offer().await;
    setup
        .client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": session, "sdp": resume}),
        )
        .await;
    let UpdateState::Accepted { sdp } = update_of(&mut setup.client, &session).await else {
        panic!("the resume is accepted");
    };
    browser.accept_answer(&sdp).await;
    tones_both_ways(&browser, &bob, pt).await;

    // bob holds and resumes.
    bob.command("hold", "");
    answer_update(&mut setup.client, &browser, &session).await;
    let deadline = std::time::Instant::now() + WAIT;
    while bob.log.text().matches("a=sendonly").count() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        bob.log.text().matches("a=sendonly").count(),
        2,
        "bob held the call"
    );
    bob.command("resume", "");
    answer_update(&mut setup.client, &browser, &session).await;
    tones_both_ways(&browser, &bob, pt).await;
    // One handshake per port (RTCP has its own, without rtcp-mux) for the whole call: four
    // re-INVITEs kept the associations.
    let log = bob.log.text();
    assert_eq!(
        log.matches("DTLS-SRTP complete (audio/RTP)").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("DTLS-SRTP complete (audio/RTCP)").count(),
        1,
        "{log}"
    );

    bob.command("hangup", "");
    assert!(matches!(
        state(&mut setup.client, &session).await,
        SessionState::Terminated { .. }
    ));
    browser.close().await;
    setup.assert_nothing_left().await;
}

/// With SRTP off, a DTLS-SRTP offer is refused with 488 and `Warning: 302` saying why.
#[tokio::test]
async fn with_srtp_off_a_dtls_srtp_phone_is_refused() {
    let mut setup = Setup::new(|config| config.media.srtp = SrtpSetting::Never).await;
    setup.register_alice().await;
    let bob = bob(&setup, "dtls_srtp", 1000.0);
    setup.dial(&bob, "alice");
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    let log = bob.log.text();
    assert!(log.contains("SIP/2.0 488"), "{log}");
    assert!(
        log.contains("Warning: 302") && log.contains("UDP/TLS/RTP/SAVP"),
        "the 488 says why:\n{log}"
    );
}

/// A video phone on DTLS-SRTP (baresip, VP8) calls the browser: each m-line has its own
/// associations (RTP and RTCP ports), the browser sees the phone's picture moving and the phone
/// decodes the browser's.
#[tokio::test]
async fn a_dtls_srtp_video_phone_and_a_browser_see_each_other() {
    use crate::local::{local_client, shipped};
    use crate::video::{
        hang_up_on_phone, page_at, phone_calls_browser, phone_sees_video, video_phone_with,
        watch_moving,
    };
    let dir = gateway_tests::TempDir::new();
    let gateway = gateway_tests::Gateway::start(shipped()).await;
    let bob = video_phone_with(&gateway, "bob", "VP8", ";mediaenc=dtls_srtp").await;
    let mut client = local_client(&gateway, "alice").await;
    let mut page = page_at(&dir, &gateway).await;
    let (session, _) = phone_calls_browser(&mut client, &mut page, &bob).await;
    let stats = watch_moving(&mut page, "pc", 5).await;
    assert_eq!(stats.codec, "video/VP8");
    phone_sees_video(&bob, &dir, "from-browser").await;
    let log = bob.log.text();
    for component in ["audio/RTP", "audio/RTCP", "video/RTP", "video/RTCP"] {
        assert_eq!(
            log.matches(&format!("DTLS-SRTP complete ({component})"))
                .count(),
            1,
            "{component}:\n{log}"
        );
    }
    hang_up_on_phone(&mut client, &session, &bob, page, &gateway).await;
}

/// Where DTLS-SRTP is not built yet (a call to another phone of the local domain), the offer
/// gets 488 with a `Warning` that says so; the echo test takes it, and the phone hears itself.
#[tokio::test]
async fn a_dtls_srtp_phone_hears_itself_at_the_echo_and_why_another_phone_is_refused() {
    use crate::local::{DOMAIN, shipped};
    let gateway = gateway_tests::Gateway::start(shipped()).await;
    let account = |user: &str, extra: &str| {
        format!(
            "<sip:{user}@{DOMAIN};transport=udp>;outbound=\"sip:127.0.0.1:{};transport=udp\";\
             auth_pass=x;answermode=auto;audio_codecs=PCMU/8000/1;regint=300{extra}\n",
            gateway.sip.0.port()
        )
    };
    let bob = Baresip::start_account_traced(&account("bob", ";mediaenc=dtls_srtp"), 1000.0);
    let carol = Baresip::start_account(&account("carol", ""), 500.0);
    for phone in [&bob, &carol] {
        assert!(phone.wait_log("200 OK", WAIT).await, "{}", phone.log.text());
    }
    bob.command("dial", &format!("sip:carol@{DOMAIN}"));
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    let log = bob.log.text();
    assert!(
        log.lines()
            .any(|line| line.starts_with("Warning: 302") && line.contains("between two phones")),
        "the 488 says why:\n{log}"
    );
    assert_eq!(carol.count("CALL_INCOMING"), 0, "carol never rang");

    bob.command("dial", &format!("sip:echo@{DOMAIN}"));
    assert!(bob.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    assert!(
        bob.until_received(1000.0, 2.0, WAIT).await,
        "the echo returns the tone through DTLS-SRTP: {:?}\n{}",
        bob.received_tone(),
        bob.log.text()
    );
    assert_eq!(
        bob.log
            .text()
            .matches("DTLS-SRTP complete (audio/RTP)")
            .count(),
        1,
        "{}",
        bob.log.text()
    );
    bob.command("hangup", "");
    assert!(bob.wait_for("CALL_CLOSED", 2, WAIT).await);
}

/// With `media.srtp_offer = "dtls"` the browser calls a phone that takes only DTLS-SRTP (it
/// refuses an RTP/AVP offer with 488): our offer is `UDP/TLS/RTP/SAVP` with `a=setup:actpass`,
/// bob answers as the server, the gateway connects, and audio flows both ways.
#[tokio::test]
async fn the_browser_calls_a_dtls_srtp_only_phone() {
    let mut setup = Setup::new(|config| config.media.srtp_offer = SrtpOffer::Dtls).await;
    let bob = bob(&setup, "dtls_srtp", 1000.0);
    crate::srtp::browser_calls_bob(&mut setup, &bob, "to-bob").await;
    let log = bob.log.text();
    assert!(log.contains("a=setup:actpass"), "{log}");
    assert!(!log.contains("a=crypto:"), "no SDES keys:\n{log}");
    assert_eq!(
        log.matches("DTLS-SRTP complete (audio/RTP)").count(),
        1,
        "{log}"
    );
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    setup.assert_nothing_left().await;
}
