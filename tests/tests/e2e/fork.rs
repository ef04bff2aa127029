//! Calls to a user of the local domain who takes calls in several places. A browser's call
//! rings two browsers and a phone of the user at once; a phone's call rings both browsers. The
//! first to answer gets the call and the others are told it was answered elsewhere (no missed
//! call; a phone's CANCEL says so in its `Reason`).

use gateway_tests::baresip::Baresip;
use gateway_tests::browser::{AudioCodec, Browser};
use gateway_tests::{Client, Gateway};
use protocol::{AccountEvent, Event, ServerMessage, SessionEvent, SessionState};
use serde_json::json;

use crate::calls::{next, until};
use crate::local::{
    DOMAIN, WAIT, answer_in_browser, answered, closed_reason, hears_the_phone, local_client, phone,
    place, shipped, tones_both_ways,
};

/// The next incoming session of a client: its id and offer.
pub(crate) async fn incoming(client: &mut Client) -> (String, String) {
    loop {
        if let ServerMessage::Event(Event::Account {
            event: AccountEvent::IncomingSession { session, sdp, .. },
            ..
        }) = next(client).await
        {
            return (session, sdp);
        }
    }
}

/// Waits for `session` of a callee that did not answer to end; its reason. A missed-session
/// event on the way fails the test.
pub(crate) async fn ended_unmissed(client: &mut Client, session: &str) -> String {
    loop {
        match next(client).await {
            ServerMessage::Event(Event::Account {
                event: AccountEvent::MissedSession { .. },
                ..
            }) => panic!("a call answered elsewhere is not a missed call"),
            ServerMessage::Event(Event::Session {
                session: ended,
                event: SessionEvent::State(SessionState::Terminated { reason }),
            }) if ended == session => return reason.unwrap_or_default(),
            _ => {}
        }
    }
}

/// Waits for `session` of a callee to end as a missed call (the missed-session event may come
/// before or after the end).
pub(crate) async fn ended_missed(client: &mut Client, session: &str) {
    let (mut missed, mut ended) = (false, false);
    while !(missed && ended) {
        match next(client).await {
            ServerMessage::Event(Event::Account {
                event: AccountEvent::MissedSession { .. },
                ..
            }) => missed = true,
            ServerMessage::Event(Event::Session {
                session: over,
                event: SessionEvent::State(SessionState::Terminated { .. }),
            }) if over == session => ended = true,
            _ => {}
        }
    }
}

#[tokio::test]
async fn every_place_of_a_local_user_rings_and_the_first_answer_wins() {
    let gateway = Gateway::start(shipped()).await;
    let mut first = local_client(&gateway, "carol").await;
    let mut second = local_client(&gateway, "carol").await;
    // Carol's phone rings until told to answer, and shows the SIP it gets.
    let account = format!(
        "<sip:carol@{DOMAIN};transport=udp>;outbound=\"sip:127.0.0.1:{};transport=udp\";\
         auth_pass=anything;answermode=manual;audio_codecs=PCMU/8000/1;regint=300\n",
        gateway.sip.0.port()
    );
    let phone = Baresip::start_account_traced(&account, 1000.0);
    assert!(
        phone.wait_log("200 OK", WAIT).await,
        "the phone registers at the gateway:\n{}",
        phone.log.text()
    );
    let mut alice = local_client(&gateway, "alice").await;

    // The second browser answers: the caller is connected to it, both ways.
    let mut caller = Browser::new(&[AudioCodec::Pcmu]).await;
    place(&mut alice, &caller, "fork", &format!("carol@{DOMAIN}")).await;
    let (lost, _) = incoming(&mut first).await;
    let (won, offer) = incoming(&mut second).await;
    assert!(phone.wait_for("CALL_INCOMING", 1, WAIT).await);
    until(&mut alice, "fork", |state| *state == SessionState::Ringing).await;
    let mut callee = answer_in_browser(&mut second, &won, &offer).await;
    let caller_answer = answered(&mut alice, "fork").await;
    tones_both_ways(&mut caller, &caller_answer, &mut callee, &offer).await;
    // The other browser and the phone: answered elsewhere, not missed.
    assert_eq!(
        ended_unmissed(&mut first, &lost).await,
        "answered elsewhere"
    );
    assert!(phone.wait_for("CALL_CLOSED", 1, WAIT).await);
    assert!(
        phone
            .log
            .text()
            .contains("Reason: SIP;cause=200;text=\"Call completed elsewhere\""),
        "the phone's CANCEL says why:\n{}",
        phone.log.text()
    );
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "fork"}))
        .await;
    until(&mut second, &won, |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;
    caller.close().await;
    callee.close().await;

    // The phone answers: both browsers are told, and the caller hears the phone.
    let mut caller = Browser::new(&[AudioCodec::Pcmu]).await;
    place(&mut alice, &caller, "fork-2", &format!("carol@{DOMAIN}")).await;
    let (first_session, _) = incoming(&mut first).await;
    let (second_session, _) = incoming(&mut second).await;
    assert!(phone.wait_for("CALL_INCOMING", 2, WAIT).await);
    phone.command("accept", "");
    let caller_answer = answered(&mut alice, "fork-2").await;
    caller.accept_answer(&caller_answer).await;
    hears_the_phone(&mut caller, &caller_answer).await;
    assert_eq!(
        ended_unmissed(&mut first, &first_session).await,
        "answered elsewhere"
    );
    assert_eq!(
        ended_unmissed(&mut second, &second_session).await,
        "answered elsewhere"
    );
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "fork-2"}))
        .await;
    assert!(phone.wait_for("CALL_CLOSED", 2, WAIT).await);
    assert_eq!(
        phone.received_tone().expect("the phone's recording").0,
        440.0
    );
    caller.close().await;

    // The caller gives up while all three ring: a missed call in each browser, and the
    // phone's CANCEL says nothing of an answer elsewhere.
    let caller = Browser::new(&[AudioCodec::Pcmu]).await;
    place(&mut alice, &caller, "fork-3", &format!("carol@{DOMAIN}")).await;
    let (one, _) = incoming(&mut first).await;
    let (two, _) = incoming(&mut second).await;
    assert!(phone.wait_for("CALL_INCOMING", 3, WAIT).await);
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "fork-3"}))
        .await;
    ended_missed(&mut first, &one).await;
    ended_missed(&mut second, &two).await;
    assert!(phone.wait_for("CALL_CLOSED", 3, WAIT).await);
    let reasons = phone.log.text().matches("Reason: SIP;cause=200").count();
    assert_eq!(reasons, 1, "only the CANCEL of the first call said so");
    caller.close().await;
    assert_eq!(gateway.metric("sylkrtc_calls").await, 0.0);
}

/// A phone calls a user signed in in two browsers: both ring, the first to answer talks with
/// the phone and the other is told it was answered elsewhere; the phone's CANCEL is a missed
/// call in both; when both decline, the phone hears it once.
#[tokio::test]
async fn a_phones_call_rings_every_browser_of_the_callee() {
    let gateway = Gateway::start(shipped()).await;
    let mut first = local_client(&gateway, "carol").await;
    let mut second = local_client(&gateway, "carol").await;
    let dave = phone(&gateway, "dave", "anything", 1000.0).await;

    // The first browser answers.
    dave.command("dial", &format!("sip:carol@{DOMAIN}"));
    let (won, offer) = incoming(&mut first).await;
    let (lost, _) = incoming(&mut second).await;
    let mut browser = answer_in_browser(&mut first, &won, &offer).await;
    hears_the_phone(&mut browser, &offer).await;
    assert_eq!(
        ended_unmissed(&mut second, &lost).await,
        "answered elsewhere"
    );
    dave.command("hangup", "");
    until(&mut first, &won, |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;
    assert!(dave.wait_for("CALL_CLOSED", 1, WAIT).await);
    assert_eq!(dave.received_tone().expect("dave's recording").0, 440.0);
    browser.close().await;

    // The phone gives up while both ring: a missed call in each.
    dave.command("dial", &format!("sip:carol@{DOMAIN}"));
    let (one, _) = incoming(&mut first).await;
    let (two, _) = incoming(&mut second).await;
    dave.command("hangup", "");
    ended_missed(&mut first, &one).await;
    ended_missed(&mut second, &two).await;
    assert!(dave.wait_for("CALL_CLOSED", 2, WAIT).await);

    // Both decline: the phone hears busy, once.
    dave.command("dial", &format!("sip:carol@{DOMAIN}"));
    let (one, _) = incoming(&mut first).await;
    let (two, _) = incoming(&mut second).await;
    first
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": one}))
        .await;
    second
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": two}))
        .await;
    assert!(closed_reason(&dave, 3).await.contains("486"));

    // One browser goes away while both ring: the other still takes the call.
    dave.command("dial", &format!("sip:carol@{DOMAIN}"));
    incoming(&mut first).await;
    let (taken, offer) = incoming(&mut second).await;
    first.close().await;
    let mut browser = answer_in_browser(&mut second, &taken, &offer).await;
    hears_the_phone(&mut browser, &offer).await;
    dave.command("hangup", "");
    until(&mut second, &taken, |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;
    assert!(dave.wait_for("CALL_CLOSED", 4, WAIT).await);
    browser.close().await;
    assert_eq!(gateway.metric("sylkrtc_calls").await, 0.0);
}
