//! Calls between softphones of the local domain, through the gateway's relay: two phones talk
//! both ways (with SRTP on one leg and plain RTP on the other), a user with a browser and a
//! phone gets both ringing and the phone takes the call (the browser is told it was answered
//! elsewhere, the phone's CANCEL says so when the browser wins), a busy phone's refusal
//! reaches the caller, and a MESSAGE in the call reaches the other phone.

use gateway_tests::Gateway;
use gateway_tests::baresip::Baresip;

use crate::fork::{ended_missed, ended_unmissed, incoming};
use crate::local::{
    DOMAIN, WAIT, answer_in_browser, closed_reason, hears_the_phone, local_client, phone, shipped,
};

/// A phone of the local domain with this account line's extra parameters, ringing until told
/// (`answermode=manual`) or answering at once, tracing its SIP.
pub(crate) async fn phone_with(gateway: &Gateway, user: &str, tone: f64, extra: &str) -> Baresip {
    let account = format!(
        "<sip:{user}@{DOMAIN};transport=udp>;outbound=\"sip:127.0.0.1:{};transport=udp\";\
         auth_pass=anything;audio_codecs=PCMU/8000/1;regint=300;{extra}\n",
        gateway.sip.0.port()
    );
    let phone = Baresip::start_account_traced(&account, tone);
    assert!(
        phone.wait_log("200 OK", WAIT).await,
        "the phone registers at the gateway:\n{}",
        phone.log.text()
    );
    phone
}

/// No call and no media port left, once the calls have had time to end.
async fn nothing_left(gateway: &Gateway) {
    for _ in 0..50 {
        if gateway.metric("sylkrtc_calls").await == 0.0
            && gateway.metric("sylkrtc_media_ports").await == 0.0
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "left behind: {} calls, {} media ports",
        gateway.metric("sylkrtc_calls").await,
        gateway.metric("sylkrtc_media_ports").await
    );
}

/// Two softphones call each other through the relay: each hears the other's tone, the media
/// takes two port pairs of the gateway while the call lasts and none after it. The caller
/// insists on SRTP and the callee has none: each leg keeps its own.
#[tokio::test]
async fn two_softphones_talk_through_the_relay() {
    let gateway = Gateway::start(shipped()).await;
    let carol = phone_with(
        &gateway,
        "carol",
        1500.0,
        "answermode=auto;mediaenc=srtp-mand",
    )
    .await;
    let dave = phone(&gateway, "dave", "anything", 700.0).await;
    carol.command("dial", &format!("sip:dave@{DOMAIN}"));
    assert!(
        carol.wait_for("CALL_ESTABLISHED", 1, WAIT).await,
        "{}",
        carol.log.text()
    );
    assert!(dave.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    assert!(
        carol.until_received(700.0, 2.0, WAIT).await,
        "carol hears dave: {:?}",
        carol.received_tone()
    );
    assert!(
        dave.until_received(1500.0, 2.0, WAIT).await,
        "dave hears carol: {:?}",
        dave.received_tone()
    );
    assert_eq!(gateway.metric("sylkrtc_media_ports").await, 2.0 * 2.0);
    let log = carol.log.text();
    assert!(
        log.contains("RTP/SAVP") && log.contains("SRTP is Enabled"),
        "carol's leg is SRTP:\n{log}"
    );
    carol.command("hangup", "");
    assert!(carol.wait_for("CALL_CLOSED", 1, WAIT).await);
    assert!(
        dave.wait_for("CALL_CLOSED", 1, WAIT).await,
        "dave hears the hang-up"
    );
    nothing_left(&gateway).await;

    // A phone that refuses: its status reaches the caller.
    let erin = phone_with(&gateway, "erin", 1000.0, "answermode=manual").await;
    carol.command("dial", &format!("sip:erin@{DOMAIN}"));
    assert!(erin.wait_for("CALL_INCOMING", 1, WAIT).await);
    erin.command("hangup", "");
    assert!(closed_reason(&carol, 2).await.contains("486"), "busy here");
}

/// A phone calls a user with a browser and a phone: both ring. The phone answers: the caller
/// talks with it, the browser is told the call was answered elsewhere (no missed call). Then
/// the browser answers: the phone's CANCEL says the call was completed elsewhere.
#[tokio::test]
async fn a_phones_call_rings_the_callees_browser_and_phone() {
    let gateway = Gateway::start(shipped()).await;
    let mut browser_side = local_client(&gateway, "erin").await;
    let erin = phone_with(&gateway, "erin", 700.0, "answermode=manual").await;
    // 1000 Hz: the tone `hears_the_phone` listens for.
    let carol = phone(&gateway, "carol", "anything", 1000.0).await;

    carol.command("dial", &format!("sip:erin@{DOMAIN}"));
    let (session, _) = incoming(&mut browser_side).await;
    assert!(erin.wait_for("CALL_INCOMING", 1, WAIT).await);
    erin.command("accept", "");
    assert!(carol.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    assert_eq!(
        ended_unmissed(&mut browser_side, &session).await,
        "answered elsewhere"
    );
    assert!(
        carol.until_received(700.0, 2.0, WAIT).await,
        "carol hears erin's phone"
    );
    assert!(
        erin.until_received(1000.0, 2.0, WAIT).await,
        "erin's phone hears carol: {:?}",
        erin.received_tone()
    );
    carol.command("hangup", "");
    assert!(erin.wait_for("CALL_CLOSED", 1, WAIT).await);

    carol.command("dial", &format!("sip:erin@{DOMAIN}"));
    let (session, offer) = incoming(&mut browser_side).await;
    assert!(erin.wait_for("CALL_INCOMING", 2, WAIT).await);
    let mut browser = answer_in_browser(&mut browser_side, &session, &offer).await;
    hears_the_phone(&mut browser, &offer).await;
    assert!(erin.wait_for("CALL_CLOSED", 2, WAIT).await);
    assert!(
        erin.wait_log(
            "Reason: SIP;cause=200;text=\"Call completed elsewhere\"",
            WAIT
        )
        .await,
        "erin's phone's CANCEL says why:\n{}",
        erin.log.text()
    );
    carol.command("hangup", "");
    assert!(carol.wait_for("CALL_CLOSED", 2, WAIT).await);
    browser.close().await;

    // The caller gives up while both ring: a missed call in the browser, and the phone's
    // CANCEL says nothing of an answer elsewhere.
    carol.command("dial", &format!("sip:erin@{DOMAIN}"));
    let (session, _) = incoming(&mut browser_side).await;
    assert!(erin.wait_for("CALL_INCOMING", 3, WAIT).await);
    carol.command("hangup", "");
    ended_missed(&mut browser_side, &session).await;
    assert!(erin.wait_for("CALL_CLOSED", 3, WAIT).await);
    let reasons = erin.log.text().matches("Reason: SIP;cause=200").count();
    assert_eq!(reasons, 1, "only the CANCEL of the second call said so");
    nothing_left(&gateway).await;
}

/// A callee with early media (baresip's `answermode=early`: a 183 with its SDP, then the 200
/// once told to accept): the caller gets a 183 with our answer and the media path is up before
/// the answer (baresip's early mode sends nothing before it accepts, so the early path is seen
/// from the caller's side: the caller's RTP reaches the callee while its call still rings); the 200
/// repeats the 183's answer, and then each hears the other.
#[tokio::test]
async fn a_phones_early_media_reaches_the_calling_phone() {
    let gateway = Gateway::start(shipped()).await;
    let carol = phone_with(&gateway, "carol", 1500.0, "answermode=auto").await;
    let frank = phone_with(&gateway, "frank", 700.0, "answermode=early").await;
    carol.command("dial", &format!("sip:frank@{DOMAIN}"));
    assert!(
        frank
            .wait_log("incoming rtp for 'audio' established", WAIT)
            .await,
        "carol's audio reaches frank before he answers:\n{}",
        frank.log.text()
    );
    assert!(!frank.log.text().contains("CALL_ESTABLISHED"));
    let log = carol.log.text();
    assert!(
        log.contains("183 Session Progress (application/sdp)"),
        "{log}"
    );
    assert!(
        !log.contains("CALL_ESTABLISHED"),
        "not answered yet:\n{log}"
    );
    frank.command("accept", "");
    assert!(
        carol.wait_for("CALL_ESTABLISHED", 1, WAIT).await,
        "{}",
        carol.log.text()
    );
    assert!(
        carol.until_received(700.0, 2.0, WAIT).await,
        "carol hears frank: {:?}",
        carol.received_tone()
    );
    // The 200's SDP is the 183's (our o= line, the same both times).
    let log = carol.log.text();
    let origins: Vec<&str> = log.lines().filter(|line| line.starts_with("o=")).collect();
    // The first is carol's own (her INVITE's).
    let ours: Vec<&str> = origins
        .iter()
        .filter(|line| Some(*line) != origins.first())
        .copied()
        .collect();
    assert!(
        ours.len() >= 2 && ours.windows(2).all(|pair| pair[0] == pair[1]),
        "{ours:?}"
    );
    carol.command("hangup", "");
    assert!(frank.wait_for("CALL_CLOSED", 1, WAIT).await);
    nothing_left(&gateway).await;
}

/// A phone calls a phone of the local domain with an INVITE without an offer (sipp): the
/// callee gets our offer, its answer makes the offer in the caller's 200 (sipp checks it), and
/// the caller's answer in its ACK completes the call: the callee's tone goes round through the
/// caller's echo and comes back to it.
#[tokio::test]
async fn an_offerless_call_between_phones_is_connected() {
    let gateway = Gateway::start(shipped()).await;
    let grace = phone(&gateway, "grace", "anything", 700.0).await;
    let caller = tokio::spawn(crate::local::sipp_phone_with(
        gateway.sip.0,
        "uac_offerless_call.xml",
        "grace",
        &["-rtp_echo"],
    ));
    assert!(
        grace.until_received(700.0, 1.0, WAIT).await,
        "grace hears her own tone back: {:?}\n{}",
        grace.received_tone(),
        grace.log.text()
    );
    if let Err(output) = caller.await.expect("sipp ran") {
        panic!("the offerless call did not go as a call does:\n{output}");
    }
    assert!(grace.wait_for("CALL_CLOSED", 1, WAIT).await);
    nothing_left(&gateway).await;
}

#[tokio::test]
async fn a_message_in_a_call_between_phones_reaches_the_other_phone() {
    let gateway = Gateway::start(shipped()).await;
    let grace = phone_with(&gateway, "grace", 700.0, "answermode=auto").await;
    let caller = tokio::spawn(crate::local::sipp_phone_with(
        gateway.sip.0,
        "uac_message_in_call.xml",
        "grace",
        &["-rtp_echo"],
    ));
    // grace's phone gets the caller's MESSAGE in her own dialog with the gateway, as it was.
    assert!(
        grace.wait_log("hello from the caller", WAIT).await,
        "the MESSAGE reaches grace:\n{}",
        grace.log.text()
    );
    let text = grace.log.text();
    assert!(text.contains("MESSAGE sip:"), "{text}");
    assert!(text.contains("Content-Type: text/plain"), "{text}");
    if let Err(output) = caller.await.expect("sipp ran") {
        panic!("the call with a message did not go as it should:\n{output}");
    }
    assert!(grace.wait_for("CALL_CLOSED", 1, WAIT).await);
    nothing_left(&gateway).await;
}
