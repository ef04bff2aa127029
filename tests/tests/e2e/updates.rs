//! `session-update` from the browser: a new offer mid-call becomes a re-INVITE to the phone,
//! and the phone's answer comes back as the session's `update` `accepted` with the browser's
//! answer. Hold (sendonly) and resume, with baresip as the phone.

use std::time::Duration;

use gateway_tests::Gateway;
use gateway_tests::baresip::Baresip;
use gateway_tests::browser::{AudioCodec, Browser};
use protocol::{Event, ServerMessage, SessionEvent, SessionState, UpdateState};
use serde_json::json;

use crate::calls::{
    Setup, answer_update, browser_tone, call_bob, next, payload_type, until, until_heard,
};
use crate::fork::incoming;
use crate::local::{
    DOMAIN, answer_in_browser, answered, local_client, place, shipped, tones_both_ways,
};

const WAIT: Duration = Duration::from_secs(15);

/// The session's next `update` event.
pub(crate) async fn update_of(client: &mut gateway_tests::Client, session: &str) -> UpdateState {
    loop {
        if let ServerMessage::Event(Event::Session {
            session: updated,
            event: SessionEvent::Update(update),
        }) = next(client).await
            && updated == session
        {
            return update;
        }
    }
}

#[tokio::test]
async fn the_browser_puts_the_phone_on_hold_and_resumes_it() {
    let mut setup = Setup::new(|_| {}).await;
    let account = format!(
        "<sip:bob@127.0.0.1:{};transport=udp>;auth_pass=bobpw;answermode=auto;\
         audio_codecs=PCMU/8000/1;regint=300\n",
        setup.kamailio.port
    );
    let bob = Baresip::start_account_traced(&account, 1000.0);
    setup.kamailio.wait_bindings("bob", 1, WAIT);
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = call_bob(&mut setup, &mut browser, "upd").await;
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    until(&mut setup.client, "upd", |state| {
        *state == SessionState::Established
    })
    .await;
    assert_eq!(
        until_heard(1000.0, || browser_tone(&browser, pt, AudioCodec::Pcmu))
            .await
            .0,
        1000.0
    );

    // The same session offered again (as after an ICE restart): answered on the browser leg
    // alone, bob hears nothing of it.
    let again = browser.offer().await;
    setup
        .client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": "upd", "sdp": again}),
        )
        .await;
    let UpdateState::Accepted { sdp } = update_of(&mut setup.client, "upd").await else {
        panic!("the update is accepted");
    };
    browser.accept_answer(&sdp).await;
    let invites = || bob.log.text().matches("INVITE sip:").count();
    assert_eq!(invites(), 1, "bob got no re-INVITE:\n{}", bob.log.text());

    // Hold: bob gets a sendonly re-INVITE and answers recvonly; the browser's answer says so.
    let hold = browser.offer_with_direction("sendonly").await;
    setup
        .client
        .expect_ack_amid_events(json!({"sylkrtc": "session-update", "session": "upd", "sdp": hold}))
        .await;
    let UpdateState::Accepted { sdp } = update_of(&mut setup.client, "upd").await else {
        panic!("the update is accepted");
    };
    assert!(sdp.contains("a=recvonly"), "{sdp}");
    assert!(
        bob.wait_log("a=sendonly", WAIT).await,
        "bob got the hold:\n{}",
        bob.log.text()
    );
    // Bob's audio no longer reaches the held browser (what was in flight aside). This waits a
    // second on purpose: it looks for something that must not come.
    browser.clear_received();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, packets) = browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert!(packets < 10, "{packets} packets reached the held browser");

    // Resume, as a browser does it: a new offer applied on its side, and the answer.
    let resume = browser.offer().await;
    setup
        .client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": "upd", "sdp": resume}),
        )
        .await;
    let UpdateState::Accepted { sdp } = update_of(&mut setup.client, "upd").await else {
        panic!("the update is accepted");
    };
    assert!(sdp.contains("a=sendrecv"), "{sdp}");
    browser.accept_answer(&sdp).await;
    browser.clear_received();
    let (tone, packets) =
        until_heard(1000.0, || browser_tone(&browser, pt, AudioCodec::Pcmu)).await;
    assert!(packets >= 50, "audio resumed: {packets} packets");
    assert_eq!(tone, 1000.0);
    setup
        .client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "upd"}))
        .await;
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    browser.close().await;
    setup.assert_nothing_left().await;
}

/// Between two browsers of the local domain the new offer crosses the bridge as a re-INVITE
/// would: the callee's side answers it (mirrored), the caller's browser gets its answer, and
/// after the resume both hear each other again. The echo test takes an update too.
#[tokio::test]
async fn an_update_crosses_a_call_between_browsers_and_reaches_the_echo() {
    let gateway = Gateway::start(shipped()).await;
    let mut alice = local_client(&gateway, "alice").await;
    let mut carol = local_client(&gateway, "carol").await;
    let mut caller = Browser::new(&[AudioCodec::Pcmu]).await;
    place(&mut alice, &caller, "b2b", &format!("carol@{DOMAIN}")).await;
    let (session, offer) = incoming(&mut carol).await;
    let mut callee = answer_in_browser(&mut carol, &session, &offer).await;
    let caller_answer = answered(&mut alice, "b2b").await;
    tones_both_ways(&mut caller, &caller_answer, &mut callee, &offer).await;

    // Carol's browser is asked too, as it would be by a phone's re-INVITE, and answers.
    let hold = caller.offer_with_direction("sendonly").await;
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "session-update", "session": "b2b", "sdp": hold}))
        .await;
    let asked = answer_update(&mut carol, &callee, &session).await;
    assert!(asked.contains("a=sendonly"), "{asked}");
    let UpdateState::Accepted { sdp } = update_of(&mut alice, "b2b").await else {
        panic!("the update is accepted");
    };
    assert!(sdp.contains("a=recvonly"), "{sdp}");
    let resume = caller.offer().await;
    alice
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": "b2b", "sdp": resume}),
        )
        .await;
    answer_update(&mut carol, &callee, &session).await;
    let UpdateState::Accepted { sdp } = update_of(&mut alice, "b2b").await else {
        panic!("the update is accepted");
    };
    caller.accept_answer(&sdp).await;
    caller.clear_received();
    callee.clear_received();
    let pt = payload_type(&sdp, media::Format::Audio(media::Codec::Pcmu));
    let tone = || browser_tone(&caller, pt, AudioCodec::Pcmu);
    assert_eq!(
        until_heard(1000.0, tone).await.0,
        1000.0,
        "alice hears carol again"
    );
    let pt = payload_type(&offer, media::Format::Audio(media::Codec::Pcmu));
    let tone = || browser_tone(&callee, pt, AudioCodec::Pcmu);
    assert_eq!(
        until_heard(440.0, tone).await.0,
        440.0,
        "carol hears alice again"
    );
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "b2b"}))
        .await;
    caller.close().await;
    callee.close().await;

    // The echo test.
    let echo = Browser::new(&[AudioCodec::Pcmu]).await;
    place(&mut alice, &echo, "echo", &format!("echo@{DOMAIN}")).await;
    let answer = answered(&mut alice, "echo").await;
    echo.accept_answer(&answer).await;
    let hold = echo.offer_with_direction("sendonly").await;
    alice
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": "echo", "sdp": hold}),
        )
        .await;
    let UpdateState::Accepted { sdp } = update_of(&mut alice, "echo").await else {
        panic!("the echo takes the update");
    };
    assert!(sdp.contains("a=recvonly"), "{sdp}");
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "echo"}))
        .await;
    echo.close().await;
    assert_eq!(gateway.metric("sylkrtc_calls").await, 0.0);
}
