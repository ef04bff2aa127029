//! `session-update` from the browser: a new offer mid-call becomes a re-INVITE to the phone,
//! and the phone's answer comes back as the session's `update` `accepted` with the browser's
//! answer. Hold (sendonly) and resume, with baresip as the phone.

use std::time::Duration;

use gateway_tests::baresip::Baresip;
use gateway_tests::browser::{AudioCodec, Browser};
use protocol::{Event, ServerMessage, SessionEvent, SessionState, UpdateState};
use serde_json::json;

use crate::calls::{Setup, browser_tone, call_bob, next, payload_type, until, until_heard};

const WAIT: Duration = Duration::from_secs(15);

/// The session's next `update` event.
async fn update_of(client: &mut gateway_tests::Client, session: &str) -> UpdateState {
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
