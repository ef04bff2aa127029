//! Call corner cases against sipp playing the far end: CANCEL rules, a 2xx crossing our
//! CANCEL, a 407 on our BYE.

use std::process::Stdio;
use std::time::Duration;

use gateway::Config;
use gateway_tests::browser::{AudioCodec, Browser};
use gateway_tests::peers::{data_dir, free_port, require};
use gateway_tests::{Client, Gateway};
use protocol::{Event, ServerMessage, SessionEvent, SessionState};
use serde_json::json;
use tokio::process::Child;

use crate::calls::{state, until};

/// sipp running `scenario` as the far end, on a free port.
pub(crate) fn sipp_uas(scenario: &str) -> (u16, Child) {
    sipp_uas_with(scenario, &[])
}

/// As [`sipp_uas`], with more arguments (`-key name value` for the scenario's `[name]`).
pub(crate) fn sipp_uas_with(scenario: &str, extra: &[&str]) -> (u16, Child) {
    let sipp = require("sipp", "sip-tester");
    let port = free_port();
    let child = tokio::process::Command::new(sipp)
        .arg("-sf")
        .arg(data_dir().join("sipp").join(scenario))
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
            "-nostdin",
        ])
        .args(["-mp", &gateway_tests::peers::free_ports(4).to_string()])
        .args(["-timeout", "20", "-timeout_error"])
        .args(extra)
        .arg("-trace_err")
        // Its error log goes to the working directory.
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sipp");
    (port, child)
}

pub(crate) async fn sipp_done(child: Child) {
    let output = tokio::time::timeout(Duration::from_secs(25), child.wait_with_output())
        .await
        .expect("sipp ends")
        .expect("sipp's output");
    assert!(
        output.status.success(),
        "sipp failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A gateway whose calls go to sipp, with alice added, and a call started.
async fn call(port: u16, session: &str) -> (Gateway, Client, Browser) {
    call_as(port, session, protocol::Version::V2).await
}

/// As [`call`], with a client of the given protocol version.
async fn call_as(
    port: u16,
    session: &str,
    version: protocol::Version,
) -> (Gateway, Client, Browser) {
    let mut config = Config::default();
    config.sip.outbound_proxy = format!("sip:127.0.0.1:{port}");
    let gateway = Gateway::start(config).await;
    let mut client = gateway.client_version(version).await;
    let ha1 = sip::ha1("alice", "127.0.0.1", "alicepw");
    client
        .expect_ack(
            json!({"sylkrtc": "account-add", "account": "alice@127.0.0.1", "password": ha1}),
        )
        .await;
    let browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let offer = browser.offer().await;
    client
        .expect_ack(json!({"sylkrtc": "session-create", "account": "alice@127.0.0.1", "session": session, "uri": "callee@127.0.0.1", "sdp": offer}))
        .await;
    assert_eq!(state(&mut client, session).await, SessionState::Progress);
    (gateway, client, browser)
}

#[tokio::test]
async fn a_hangup_before_any_provisional_response_cancels_only_after_one() {
    let (port, sipp) = sipp_uas("uas_cancel_before_1xx.xml");
    let (gateway, mut client, browser) = call(port, "early-hangup").await;
    client
        .expect_ack(json!({"sylkrtc": "session-terminate", "session": "early-hangup"}))
        .await;
    // The browser hears at once; SIP waits for the 100, then CANCELs.
    assert!(matches!(
        state(&mut client, "early-hangup").await,
        SessionState::Terminated { .. }
    ));
    sipp_done(sipp).await;
    assert_eq!(gateway.metric("sylkrtc_calls").await, 0.0);
    browser.close().await;
}

#[tokio::test]
async fn a_2xx_that_crosses_our_cancel_is_acked_then_ended_with_bye() {
    let (port, sipp) = sipp_uas("uas_2xx_crosses_cancel.xml");
    let (gateway, mut client, browser) = call(port, "crossing").await;
    until(&mut client, "crossing", |state| {
        *state == SessionState::Ringing
    })
    .await;
    client
        .expect_ack(json!({"sylkrtc": "session-terminate", "session": "crossing"}))
        .await;
    assert!(matches!(
        state(&mut client, "crossing").await,
        SessionState::Terminated { .. }
    ));
    sipp_done(sipp).await;
    assert_eq!(gateway.metric("sylkrtc_calls").await, 0.0);
    browser.close().await;
}

#[tokio::test]
async fn a_bye_challenged_with_407_is_sent_again_with_credentials() {
    let (port, sipp) = sipp_uas("uas_407_on_bye.xml");
    let (gateway, mut client, browser) = call(port, "bye-auth").await;
    until(&mut client, "bye-auth", |state| {
        matches!(state, SessionState::Accepted { .. })
    })
    .await;
    client
        .expect_ack(json!({"sylkrtc": "session-terminate", "session": "bye-auth"}))
        .await;
    assert!(matches!(
        state(&mut client, "bye-auth").await,
        SessionState::Terminated { .. }
    ));
    sipp_done(sipp).await;
    assert_eq!(gateway.metric("sylkrtc_calls").await, 0.0);
    browser.close().await;
}

/// A callee with early media (183 with SDP, then 200): a sylkRTC-2 client gets `early-media`
/// with the answer and then `accepted` without one; a sylkRTC-1 client, which knows no
/// `early-media`, gets the answer in `accepted`. Either way the browser connects.
#[tokio::test]
async fn early_media_reaches_both_protocol_versions() {
    for version in protocol::Version::PREFERENCE {
        let (port, sipp) = sipp_uas("uas_183_then_200.xml");
        let (gateway, mut client, mut browser) = call_as(port, "early", version).await;
        let mut answer = None;
        loop {
            match state(&mut client, "early").await {
                SessionState::EarlyMedia { sdp, .. } => {
                    assert_eq!(
                        version,
                        protocol::Version::V2,
                        "sylkRTC-1 has no early-media"
                    );
                    answer = Some(sdp);
                }
                SessionState::Accepted { sdp, .. } => {
                    match version {
                        protocol::Version::V1 => answer = sdp,
                        protocol::Version::V2 => assert!(sdp.is_none()),
                    }
                    break;
                }
                SessionState::Terminated { reason } => panic!("ended: {reason:?}"),
                _ => {}
            }
        }
        let answer = answer.expect("an answer SDP");
        browser.accept_answer(&answer).await;
        assert!(
            browser.connected(Duration::from_secs(10)).await,
            "{version:?}: the browser connects"
        );
        client
            .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "early"}))
            .await;
        sipp_done(sipp).await;
        browser.close().await;
        drop(gateway);
    }
}

/// Several tones in one `session-dtmf-info` go as one INFO each, the next only after the
/// previous one's response (sipp answers each 300 ms late and fails on an INFO that overtakes,
/// then hangs up once it has the three).
#[tokio::test]
async fn multi_digit_dtmf_is_paced_one_info_after_another() {
    let (port, sipp) = sipp_uas("uas_info_paced.xml");
    let (gateway, mut client, browser) = call(port, "dtmf").await;
    until(&mut client, "dtmf", |state| {
        matches!(state, SessionState::Accepted { .. })
    })
    .await;
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-dtmf-info", "session": "dtmf", "digit": "123", "duration": 100}),
        )
        .await;
    until(&mut client, "dtmf", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;
    sipp_done(sipp).await;
    assert_eq!(gateway.metric("sylkrtc_calls").await, 0.0);
    browser.close().await;
}

/// DTMF before the answer: an IVR that sends early media and answers only once it has a digit
/// by INFO in that early dialog (as the reference allows DTMF in early media).
#[tokio::test]
async fn dtmf_goes_in_early_media_before_the_answer() {
    let (port, sipp) = sipp_uas("uas_early_info.xml");
    let (gateway, mut client, browser) = call(port, "ivr").await;
    let answer = loop {
        match state(&mut client, "ivr").await {
            SessionState::EarlyMedia { sdp, .. } => break sdp,
            SessionState::Terminated { reason } => panic!("ended: {reason:?}"),
            _ => {}
        }
    };
    browser.accept_answer(&answer).await;
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-dtmf-info", "session": "ivr", "digit": "4"}),
        )
        .await;
    until(&mut client, "ivr", |state| {
        matches!(state, SessionState::Accepted { .. })
    })
    .await;
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "ivr"}))
        .await;
    sipp_done(sipp).await;
    assert_eq!(gateway.metric("sylkrtc_calls").await, 0.0);
    browser.close().await;
}

/// Messages in a call (`session-message`, RFC 3428 in the dialog) with sipp as the phone: two
/// sent at once go one after the other in CPIM with the IMDN headers (sipp fails on one that
/// overtakes), the first taken and the second refused, each outcome a session
/// `disposition-notification`; the phone's own message (CPIM) and its IMDN come back as the
/// session's `message` and `disposition-notification`.
#[tokio::test]
async fn messages_in_a_call_go_both_ways() {
    let (port, sipp) = sipp_uas("uas_messages.xml");
    let (gateway, mut client, browser) = call(port, "chat").await;
    until(&mut client, "chat", |state| {
        matches!(state, SessionState::Accepted { .. })
    })
    .await;
    for (id, text) in [("m1", "hello phone"), ("m2", "again")] {
        client
            .expect_ack_amid_events(json!({"sylkrtc": "session-message", "session": "chat",
                "message_id": id, "content": text, "content_type": "text/plain"}))
            .await;
    }
    let mut heard = Vec::new();
    loop {
        match crate::calls::next(&mut client).await {
            ServerMessage::Event(Event::Session { session, event }) if session == "chat" => {
                if let SessionEvent::State(SessionState::Terminated { .. }) = event {
                    break;
                }
                heard.push(event);
            }
            _ => {}
        }
    }
    let notification = |id: &str, state: &str, code: Option<u16>| {
        heard.iter().any(|event| {
            matches!(event, SessionEvent::DispositionNotification(n)
                if n.message_id == id && n.state == state && n.code == code)
        })
    };
    assert!(notification("m1", "accepted", Some(200)), "{heard:#?}");
    assert!(notification("m2", "failed", Some(415)), "{heard:#?}");
    assert!(notification("m1", "displayed", None), "{heard:#?}");
    let messages: Vec<_> = heard
        .iter()
        .filter_map(|event| match event {
            SessionEvent::Message(message) => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(messages.len(), 1, "{heard:#?}");
    assert_eq!(messages[0].message_id, "p1");
    assert_eq!(messages[0].content.trim(), "hello browser");
    assert_eq!(messages[0].content_type, "text/plain");
    assert_eq!(messages[0].sender.uri, "callee@127.0.0.1");
    assert_eq!(messages[0].disposition_notification, ["positive-delivery"]);
    sipp_done(sipp).await;
    // Once the call is over, there is no session to send in.
    let error = client
        .expect_error(json!({"sylkrtc": "session-message", "session": "chat",
            "message_id": "m3", "content": "late", "content_type": "text/plain"}))
        .await;
    assert_eq!(error, "Unknown session: chat");
    assert_eq!(gateway.metric("sylkrtc_calls").await, 0.0);
    browser.close().await;
}
