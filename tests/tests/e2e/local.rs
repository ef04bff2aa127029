//! The local domain of the shipped configuration: softphones (baresip) registering to the
//! gateway and calling browsers and back with no other SIP server, browsers calling each
//! other, the echo test, and open registration never relaying elsewhere.

use std::path::PathBuf;
use std::time::Duration;

use gateway::{Config, LocalUser};
use gateway_tests::baresip::Baresip;
use gateway_tests::browser::{AudioCodec, Browser};
use gateway_tests::{Client, Gateway};
use protocol::SessionState;
use serde_json::json;

use crate::calls::{browser_tone, next, payload_type, state, until, until_heard};

pub(crate) const WAIT: Duration = Duration::from_secs(15);
pub(crate) const DOMAIN: &str = "local.test";

/// The shipped `config.toml` (ports and addresses moved to free loopback ones by the harness).
pub(crate) fn shipped() -> Config {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config.toml");
    let (config, _) = Config::load(Some(&path)).expect("the shipped configuration loads");
    assert_eq!(config.local.domain, DOMAIN);
    config
}

/// A client with `user@local.test` added (any password: open registration) and registered.
pub(crate) async fn local_client(gateway: &Gateway, user: &str) -> Client {
    let mut client = gateway.client().await;
    let account = format!("{user}@{DOMAIN}");
    let ha1 = sip::ha1(user, DOMAIN, "whatever");
    client
        .expect_ack(json!({"sylkrtc": "account-add", "account": account, "password": ha1}))
        .await;
    client
        .expect_ack(json!({"sylkrtc": "account-register", "account": account}))
        .await;
    until_registered(&mut client).await;
    client
}

/// Skips messages until an account of `client` is registered.
pub(crate) async fn until_registered(client: &mut Client) {
    loop {
        if let protocol::ServerMessage::Event(protocol::Event::Account {
            event:
                protocol::AccountEvent::RegistrationState(protocol::RegistrationState::Registered),
            ..
        }) = next(client).await
        {
            return;
        }
    }
}

/// A phone registered at the gateway's SIP port as `user@local.test`.
pub(crate) async fn phone(gateway: &Gateway, user: &str, password: &str, tone: f64) -> Baresip {
    let phone = Baresip::start_at_domain(
        user,
        password,
        DOMAIN,
        gateway.sip.0.port(),
        "PCMU/8000/1",
        tone,
    );
    assert!(
        phone.wait_log("200 OK", WAIT).await,
        "the phone registers at the gateway:\n{}",
        phone.log.text()
    );
    phone
}

/// The shipped configuration with registration closed to `users` (password: user + "pw").
pub(crate) fn closed(users: &[&str]) -> Config {
    let mut config = shipped();
    config.local.open_registration = false;
    config.local.users = users
        .iter()
        .map(|user| LocalUser {
            user: (*user).into(),
            password: Some(format!("{user}pw")),
            ha1: None,
        })
        .collect();
    config
}

/// A client with `user@local.test` of [`closed`] added (not registered).
pub(crate) async fn closed_client(gateway: &Gateway, user: &str) -> Client {
    let mut client = gateway.client().await;
    client
        .expect_ack(
            json!({"sylkrtc": "account-add", "account": format!("{user}@{DOMAIN}"),
            "password": sip::ha1(user, DOMAIN, &format!("{user}pw"))}),
        )
        .await;
    client
}

/// Calls `user@local.test` and returns why the call was refused.
pub(crate) async fn refused(
    client: &mut Client,
    browser: &Browser,
    session: &str,
    user: &str,
) -> String {
    place(client, browser, session, &format!("{user}@{DOMAIN}")).await;
    match until(client, session, |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await
    {
        SessionState::Terminated { reason } => reason.unwrap_or_default(),
        other => panic!("{other:?}"),
    }
}

pub(crate) async fn place(client: &mut Client, browser: &Browser, session: &str, uri: &str) {
    let offer = browser.offer().await;
    create_session(client, session, uri, &offer).await;
}

/// alice's `session-create` of `session` to `uri` with `offer`, acknowledged.
pub(crate) async fn create_session(client: &mut Client, session: &str, uri: &str, offer: &str) {
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-create",
            "account": format!("alice@{DOMAIN}"), "session": session, "uri": uri, "sdp": offer}))
        .await;
}

/// The answer SDP of an outgoing call, once accepted.
pub(crate) async fn answered(client: &mut Client, session: &str) -> String {
    match until(client, session, |state| {
        matches!(state, SessionState::Accepted { .. })
    })
    .await
    {
        SessionState::Accepted { sdp: Some(sdp), .. } => sdp,
        other => panic!("no answer: {other:?}"),
    }
}

#[tokio::test]
async fn softphones_register_with_digest_and_wrong_passwords_fail() {
    let mut config = shipped();
    config.local.open_registration = false;
    config.local.users = vec![LocalUser {
        user: "carol".into(),
        password: Some("carolpw".into()),
        ha1: None,
    }];
    let gateway = Gateway::start(config).await;
    let carol = phone(&gateway, "carol", "carolpw", 1000.0).await;
    let wrong = Baresip::start_at_domain(
        "carol",
        "nope",
        DOMAIN,
        gateway.sip.0.port(),
        "PCMU/8000/1",
        700.0,
    );
    assert!(
        wrong.wait_log("403 Forbidden", WAIT).await,
        "a wrong password is refused:\n{}",
        wrong.log.text()
    );
    // A browser account of the closed domain with a wrong password fails to register too.
    let mut client = gateway.client().await;
    let account = format!("carol@{DOMAIN}");
    client
        .expect_ack(json!({"sylkrtc": "account-add", "account": account,
            "password": sip::ha1("carol", DOMAIN, "nope")}))
        .await;
    client
        .expect_ack(json!({"sylkrtc": "account-register", "account": account}))
        .await;
    let mut failed = None;
    while failed.is_none() {
        if let protocol::ServerMessage::Event(protocol::Event::Account {
            event:
                protocol::AccountEvent::RegistrationState(protocol::RegistrationState::Failed {
                    reason,
                }),
            ..
        }) = next(&mut client).await
        {
            failed = reason;
        }
    }
    assert!(failed.unwrap_or_default().starts_with("403"));
    drop(carol);
}

#[tokio::test]
async fn a_browser_and_a_softphone_call_each_other_through_the_gateway_alone() {
    let gateway = Gateway::start(shipped()).await;
    let carol = phone(&gateway, "carol", "anything", 1000.0).await;
    let mut client = local_client(&gateway, "alice").await;

    // The browser calls the phone.
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    place(
        &mut client,
        &browser,
        "to-phone",
        &format!("carol@{DOMAIN}"),
    )
    .await;
    let answer = answered(&mut client, "to-phone").await;
    browser.accept_answer(&answer).await;
    hears_the_phone(&mut browser, &answer).await;
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "to-phone"}))
        .await;
    assert!(carol.wait_for("CALL_CLOSED", 1, WAIT).await);
    assert_eq!(carol.received_tone().expect("carol's recording").0, 440.0);
    browser.close().await;

    // The phone calls the browser.
    carol.command("dial", &format!("sip:alice@{DOMAIN}"));
    let (session, offer) = loop {
        if let protocol::ServerMessage::Event(protocol::Event::Account {
            event:
                protocol::AccountEvent::IncomingSession {
                    session,
                    sdp,
                    originator,
                    ..
                },
            ..
        }) = next(&mut client).await
        {
            assert!(originator.uri.starts_with("carol@"), "{originator:?}");
            break (session, sdp);
        }
    };
    let mut browser = answer_in_browser(&mut client, &session, &offer).await;
    hears_the_phone(&mut browser, &offer).await;
    carol.command("hangup", "");
    until(&mut client, &session, |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;
    assert!(carol.wait_for("CALL_CLOSED", 2, WAIT).await);
    assert_eq!(carol.received_tone().expect("carol's recording").0, 440.0);
    browser.close().await;
}

#[tokio::test]
async fn two_browsers_call_each_other_and_open_registration_stays_local() {
    let gateway = Gateway::start(shipped()).await;
    let mut alice = local_client(&gateway, "alice").await;
    let mut bob = local_client(&gateway, "bob").await;
    let mut caller = Browser::new(&[AudioCodec::Pcmu]).await;
    place(&mut alice, &caller, "b2b", &format!("bob@{DOMAIN}")).await;
    let (session, offer) = loop {
        if let protocol::ServerMessage::Event(protocol::Event::Account {
            event:
                protocol::AccountEvent::IncomingSession {
                    session,
                    sdp,
                    originator,
                    ..
                },
            ..
        }) = next(&mut bob).await
        {
            assert_eq!(originator.uri, format!("alice@{DOMAIN}"));
            break (session, sdp);
        }
    };
    until(&mut alice, "b2b", |state| *state == SessionState::Ringing).await;
    let mut callee = answer_in_browser(&mut bob, &session, &offer).await;
    let caller_answer = answered(&mut alice, "b2b").await;
    tones_both_ways(&mut caller, &caller_answer, &mut callee, &offer).await;
    // Messages in the call, both ways: each side hears the other by name, and the sender
    // hears it taken.
    chat(&mut alice, "b2b", &mut bob, &session, "alice").await;
    chat(&mut bob, &session, &mut alice, "b2b", "bob").await;
    bob.expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": session}))
        .await;
    until(&mut alice, "b2b", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;
    caller.close().await;
    callee.close().await;

    // Open registration: a local account may not call another domain.
    let browser = Browser::new(&[AudioCodec::Pcmu]).await;
    place(&mut alice, &browser, "outside", "bob@example.com").await;
    let SessionState::Terminated {
        reason: Some(reason),
    } = state(&mut alice, "outside").await
    else {
        panic!("refused");
    };
    assert!(reason.starts_with("403"), "{reason}");
    browser.close().await;
    assert_eq!(gateway.metric("sylkrtc_calls").await, 0.0);
}

/// `sender`'s message in a call of two browsers: the other side hears it by name, and the
/// sender hears it taken.
async fn chat(
    from: &mut Client,
    from_session: &str,
    to: &mut Client,
    to_session: &str,
    sender: &str,
) {
    let id = format!("from-{sender}");
    from.expect_ack_amid_events(
        json!({"sylkrtc": "session-message", "session": from_session,
        "message_id": id, "content": "hi", "content_type": "text/plain"}),
    )
    .await;
    let message = crate::calls::session_event(to, to_session, |event| {
        matches!(event, protocol::SessionEvent::Message(_))
    })
    .await;
    let protocol::SessionEvent::Message(message) = message else {
        unreachable!()
    };
    assert_eq!(message.sender.uri, format!("{sender}@{DOMAIN}"));
    assert_eq!(
        (message.message_id.as_str(), message.content.as_str()),
        (id.as_str(), "hi")
    );
    let taken = crate::calls::session_event(from, from_session, |event| {
        matches!(event, protocol::SessionEvent::DispositionNotification(_))
    })
    .await;
    assert!(
        matches!(&taken, protocol::SessionEvent::DispositionNotification(n)
            if n.message_id == id && n.state == "accepted"),
        "{taken:?}"
    );
}

/// A new test browser (PCMU) answers `client`'s incoming `session`, which offered `offer`.
pub(crate) async fn answer_in_browser(client: &mut Client, session: &str, offer: &str) -> Browser {
    let browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = browser.answer(offer).await;
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-answer", "session": session, "sdp": answer}),
        )
        .await;
    browser
}

/// A browser in a call with a phone playing 1000 Hz (`sdp`: the description that has the
/// browser's payload types) connects, sends 440 Hz, and hears the phone.
pub(crate) async fn hears_the_phone(browser: &mut Browser, sdp: &str) {
    assert!(browser.connected(WAIT).await);
    let pt = payload_type(sdp, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    let tone = || browser_tone(browser, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0);
}

/// Two browsers in a call connect, and each hears the other's tone (PCMU: 440 Hz from the
/// caller, which takes `caller_answer`, and 1000 Hz from the callee, which answered `offer`).
pub(crate) async fn tones_both_ways(
    caller: &mut Browser,
    caller_answer: &str,
    callee: &mut Browser,
    offer: &str,
) {
    caller.accept_answer(caller_answer).await;
    assert!(caller.connected(WAIT).await && callee.connected(WAIT).await);
    let pt_caller = payload_type(caller_answer, media::Format::Audio(media::Codec::Pcmu));
    let pt_callee = payload_type(offer, media::Format::Audio(media::Codec::Pcmu));
    caller.send_pcmu_tone(pt_caller, 440.0);
    callee.send_pcmu_tone(pt_callee, 1000.0);
    let tone = || browser_tone(caller, pt_caller, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0);
    let tone = || browser_tone(callee, pt_callee, AudioCodec::Pcmu);
    assert_eq!(until_heard(440.0, tone).await.0, 440.0);
}

#[tokio::test]
async fn the_echo_test_returns_the_callers_tone() {
    let gateway = Gateway::start(shipped()).await;
    let mut client = local_client(&gateway, "alice").await;
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    place(&mut client, &browser, "echo", &format!("echo@{DOMAIN}")).await;
    let answer = answered(&mut client, "echo").await;
    browser.accept_answer(&answer).await;
    assert!(browser.connected(WAIT).await);
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 700.0);
    let (tone, packets) = until_heard(700.0, || browser_tone(&browser, pt, AudioCodec::Pcmu)).await;
    assert!(packets >= 50, "{packets} packets came back");
    assert_eq!(tone, 700.0);
    // A message comes back too, from the echo test.
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-message", "session": "echo",
            "message_id": "e1", "content": "ping", "content_type": "text/plain"}))
        .await;
    let back = crate::calls::session_event(&mut client, "echo", |event| {
        matches!(event, protocol::SessionEvent::Message(_))
    })
    .await;
    assert!(
        matches!(&back, protocol::SessionEvent::Message(m)
            if m.content == "ping" && m.sender.uri == format!("echo@{DOMAIN}")),
        "{back:?}"
    );
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "echo"}))
        .await;
    until(&mut client, "echo", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;
    browser.close().await;

    // A SIP phone calls the echo test too.
    let carol = phone(&gateway, "carol", "anything", 1500.0).await;
    carol.command("dial", &format!("sip:echo@{DOMAIN}"));
    assert!(carol.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    assert!(
        carol.until_received(1500.0, 2.0, WAIT).await,
        "the echo returns the tone"
    );
    carol.command("hangup", "");
    assert!(carol.wait_for("CALL_CLOSED", 1, WAIT).await);
    assert_eq!(carol.received_tone().expect("carol's recording").0, 1500.0);
}

/// A phone that insists on SRTP (baresip with `mediaenc=srtp-mand` offers `RTP/SAVP`) calls the
/// echo test: answered with a key of its suite, it hears its own tone through SRTP both ways.
/// (With SRTP off it gets 488: see `srtp.rs`.)
#[tokio::test]
async fn an_srtp_only_phone_hears_itself_at_the_echo_test() {
    let gateway = Gateway::start(shipped()).await;
    let account = format!(
        "<sip:dave@{DOMAIN};transport=udp>;outbound=\"sip:127.0.0.1:{};transport=udp\";auth_pass=x;\
         answermode=auto;audio_codecs=PCMU/8000/1;mediaenc=srtp-mand;regint=300\n",
        gateway.sip.0.port()
    );
    let dave = Baresip::start_account(&account, 700.0);
    assert!(dave.wait_for("REGISTER_OK", 1, WAIT).await);
    dave.command("dial", &format!("sip:echo@{DOMAIN}"));
    assert!(dave.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    assert!(
        dave.until_received(700.0, 2.0, WAIT).await,
        "the echo returns the tone through SRTP: {:?}",
        dave.received_tone()
    );
    dave.command("hangup", "");
    assert!(dave.wait_for("CALL_CLOSED", 1, WAIT).await);
}

/// Runs a sipp scenario as a phone against the gateway's SIP port; its output on failure.
async fn sipp_phone(
    gateway: std::net::SocketAddr,
    scenario: &str,
    service: &str,
) -> Result<(), String> {
    sipp_phone_with(gateway, scenario, service, &[]).await
}

/// As [`sipp_phone`], with more arguments for sipp.
pub(crate) async fn sipp_phone_with(
    gateway: std::net::SocketAddr,
    scenario: &str,
    service: &str,
    extra: &[&str],
) -> Result<(), String> {
    let sipp = gateway_tests::peers::require("sipp", "sip-tester");
    let output = tokio::process::Command::new(sipp)
        .arg(gateway.to_string())
        .arg("-sf")
        .arg(gateway_tests::peers::data_dir().join("sipp").join(scenario))
        .args(["-s", service, "-i", "127.0.0.1", "-m", "1", "-nostdin"])
        .args(["-p", &gateway_tests::peers::free_port().to_string()])
        .args(["-mp", &gateway_tests::peers::free_ports(4).to_string()])
        // Each answer must come at once: the echo used to leave re-INVITEs unanswered (the
        // phone's BYE then waited 32 s).
        .args(["-timeout", "8", "-timeout_error", "-recv_timeout", "3000"])
        .args(extra)
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("run sipp");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The echo test answers a phone's in-dialog offers like any call: hold (recvonly), resume by
/// UPDATE, an offerless re-INVITE (our offer), and the BYE after them at once.
#[tokio::test]
async fn the_echo_test_answers_hold_resume_update_and_offerless_reinvites() {
    let gateway = Gateway::start(shipped()).await;
    if let Err(output) = sipp_phone(gateway.sip.0, "uac_echo_reoffers.xml", "echo").await {
        panic!("the echo test did not answer as a call does:\n{output}");
    }
}

/// An INVITE to `echo@local.test` from a caller of another domain (who cannot authenticate),
/// as a phone at `local` would send it.
fn foreign_invite(local: std::net::SocketAddr, call_id: &str) -> String {
    foreign_invite_to(local, call_id, "echo")
}

/// As [`foreign_invite`], to `user@local.test`.
pub(crate) fn foreign_invite_to(local: std::net::SocketAddr, call_id: &str, user: &str) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        ip = local.ip(),
        port = local.port() + 1000
    );
    format!(
        "INVITE sip:{user}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}\r\n\
         From: <sip:mallory@elsewhere.test>;tag={call_id}\r\nTo: <sip:{user}@{DOMAIN}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:mallory@{local}>\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// The final response to each of `call_ids` sent from `socket`: (Call-ID, status, whole text).
pub(crate) async fn finals(
    socket: &tokio::net::UdpSocket,
    call_ids: &[String],
) -> std::collections::HashMap<String, (u16, String)> {
    let mut finals = std::collections::HashMap::new();
    let mut buffer = vec![0u8; 8192];
    while finals.len() < call_ids.len() {
        let (length, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buffer))
            .await
            .expect("a response in time")
            .expect("a datagram");
        let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
        let code: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let call_id = text
            .lines()
            .find_map(|line| line.strip_prefix("Call-ID: "))
            .unwrap_or_default()
            .trim()
            .to_owned();
        if code >= 200 && call_ids.contains(&call_id) {
            finals.entry(call_id).or_insert((code, text));
        }
    }
    finals
}

/// Callers who cannot authenticate hold only a few calls each, and a bounded number in all:
/// one source flooding `echo@` gets 503 past its share, others still get through, and the
/// media ports it took come back.
#[tokio::test]
async fn unauthenticated_callers_hold_a_bounded_number_of_calls() {
    let mut config = shipped();
    config.local.max_unauthenticated_calls_per_source = 3;
    config.local.max_unauthenticated_calls = 5;
    let gateway = Gateway::start(config).await;
    let gateway_sip = gateway.sip.0;
    let flooder = tokio::net::UdpSocket::bind("127.0.0.9:0").await.unwrap();
    let local = flooder.local_addr().unwrap();
    let ids: Vec<String> = (0..8).map(|n| format!("flood-{n}")).collect();
    for id in &ids {
        flooder
            .send_to(foreign_invite(local, id).as_bytes(), gateway_sip)
            .await
            .unwrap();
    }
    let answers = finals(&flooder, &ids).await;
    let ok = answers.values().filter(|(code, _)| *code == 200).count();
    let refused: Vec<&String> = answers
        .values()
        .filter(|(code, _)| *code == 503)
        .map(|(_, text)| text)
        .collect();
    assert_eq!((ok, refused.len()), (3, 5), "{answers:?}");
    assert!(
        refused[0].contains(
            "Warning: 399 sylkrtc-gateway \"too many calls without authentication from this address"
        ),
        "{}",
        refused[0]
    );
    // Each call holds a port pair.
    assert_eq!(gateway.metric("sylkrtc_media_ports").await, 6.0);

    // Another source still gets its calls, up to the total.
    let other = tokio::net::UdpSocket::bind("127.0.0.10:0").await.unwrap();
    let other_local = other.local_addr().unwrap();
    let other_ids: Vec<String> = (0..3).map(|n| format!("other-{n}")).collect();
    for id in &other_ids {
        other
            .send_to(foreign_invite(other_local, id).as_bytes(), gateway_sip)
            .await
            .unwrap();
    }
    let answers = finals(&other, &other_ids).await;
    let codes: Vec<u16> = other_ids.iter().map(|id| answers[id].0).collect();
    assert_eq!(
        codes.iter().filter(|code| **code == 200).count(),
        2,
        "{answers:?}"
    );
    assert!(
        answers
            .values()
            .any(|(code, text)| *code == 503 && text.contains("(limit 5)")),
        "{answers:?}"
    );

    // The flooder hangs up: its places and ports come back.
    for (id, (code, text)) in &answers_to_bye(&flooder, &ids, gateway_sip).await {
        assert_eq!(*code, 200, "BYE {id}: {text}");
    }
    for _ in 0..50 {
        if gateway.metric("sylkrtc_media_ports").await == 4.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gateway.metric("sylkrtc_media_ports").await, 4.0);
    let again = vec!["flood-again".to_owned()];
    flooder
        .send_to(foreign_invite(local, &again[0]).as_bytes(), gateway_sip)
        .await
        .unwrap();
    assert_eq!(finals(&flooder, &again).await[&again[0]].0, 200);
}

/// Sends ACK and BYE for each answered call of `ids` (from the INVITEs' 200s, which must be
/// read again: the gateway retransmits them until the ACK) and returns the BYEs' answers.
async fn answers_to_bye(
    socket: &tokio::net::UdpSocket,
    ids: &[String],
    gateway: std::net::SocketAddr,
) -> std::collections::HashMap<String, (u16, String)> {
    let local = socket.local_addr().unwrap();
    let mut buffer = vec![0u8; 8192];
    let mut tags = std::collections::HashMap::new();
    // The 200s are retransmitted (no ACK yet): read until each answered call has its To tag.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Ok((length, _))) =
        tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer)).await
    {
        let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
        if !text.starts_with("SIP/2.0 200") {
            continue;
        }
        let header = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        tags.insert(header("Call-ID: "), header("To: "));
        if tags.len() == 3 {
            break;
        }
    }
    let mut byes = Vec::new();
    for id in ids {
        let Some(to) = tags.get(id) else { continue };
        for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
            let request = format!(
                "{method} sip:echo@{gateway} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{method}{id}\r\n\
                 From: <sip:mallory@elsewhere.test>;tag={id}\r\nTo: {to}\r\nCall-ID: {id}\r\n\
                 CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            );
            socket.send_to(request.as_bytes(), gateway).await.unwrap();
        }
        byes.push(id.clone());
    }
    assert_eq!(byes.len(), 3, "three calls were answered: {tags:?}");
    finals(socket, &byes).await
}

/// The reason a phone's call ended, as baresip reports it.
pub(crate) async fn closed_reason(phone: &Baresip, count: usize) -> String {
    assert!(phone.wait_for("CALL_CLOSED", count, WAIT).await);
    phone
        .events()
        .into_iter()
        .filter(|event| event["type"] == "CALL_CLOSED")
        .nth(count - 1)
        .map(|event| event["param"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Calls that cannot be connected get the code that says why, whichever side calls: a name
/// the domain does not have 404, a user with no device 480; a phone calling a user who has
/// only a phone is connected.
#[tokio::test]
async fn refused_calls_say_why_with_the_same_codes_from_phones_and_browsers() {
    let gateway = Gateway::start(closed(&["alice", "bob", "dave"])).await;
    let alice = phone(&gateway, "alice", "alicepw", 1000.0).await;
    let bob = phone(&gateway, "bob", "bobpw", 1200.0).await;

    alice.command("dial", &format!("sip:zed@{DOMAIN}"));
    let reason = closed_reason(&alice, 1).await;
    assert!(reason.contains("404"), "{reason}");
    alice.command("dial", &format!("sip:dave@{DOMAIN}"));
    let reason = closed_reason(&alice, 2).await;
    assert!(reason.contains("480"), "{reason}");
    // A phone-only user is no refusal any more: the call is connected (see `phones.rs`).
    alice.command("dial", &format!("sip:bob@{DOMAIN}"));
    assert!(alice.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    assert!(bob.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    alice.command("hangup", "");
    assert!(alice.wait_for("CALL_CLOSED", 3, WAIT).await);

    // A browser of the domain calling the same users.
    let mut client_alice = closed_client(&gateway, "alice").await;
    let browser = Browser::new(&[AudioCodec::Pcmu]).await;
    for (session, user, code) in [("to-zed", "zed", "404"), ("to-dave", "dave", "480")] {
        let reason = refused(&mut client_alice, &browser, session, user).await;
        assert!(reason.starts_with(code), "{user}: {reason}");
    }
    browser.close().await;
}

/// SIP over TLS works with the shipped configuration: the gateway makes a certificate for the
/// local domain at start-up, a softphone registers over TLS and calls the echo test.
#[tokio::test]
async fn a_softphone_registers_and_calls_over_tls_with_the_shipped_configuration() {
    let gateway = Gateway::start(shipped()).await;
    let tls = gateway.sip_tls.expect("a SIP TLS listener");

    // The certificate names the local domain.
    let certificate = gateway_tests::tls_certificate(tls).await;
    assert!(
        certificate
            .windows(DOMAIN.len())
            .any(|window| window == DOMAIN.as_bytes()),
        "the certificate names {DOMAIN}"
    );

    let account = format!(
        "<sip:dave@{DOMAIN};transport=tls>;outbound=\"sip:127.0.0.1:{};transport=tls\";auth_pass=x;\
         answermode=auto;audio_codecs=PCMU/8000/1;regint=300\n",
        tls.port()
    );
    let dave = Baresip::start_account(&account, 1500.0);
    assert!(
        dave.wait_log("200 OK", WAIT).await,
        "the phone registers over TLS:\n{}",
        dave.log.text()
    );
    dave.command("dial", &format!("sip:echo@{DOMAIN}"));
    assert!(dave.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    assert!(
        dave.until_received(1500.0, 1.0, WAIT).await,
        "the echo returns the tone"
    );
    dave.command("hangup", "");
    assert!(dave.wait_for("CALL_CLOSED", 1, WAIT).await);
    assert_eq!(dave.received_tone().expect("dave's recording").0, 1500.0);
}

/// A phone played by sipp's `scenario` calls alice's browser, which answers after `delay` and
/// then hangs up; the scenario's own checks decide.
async fn a_phone_calls_the_browser(scenario: &'static str, delay: Duration) {
    let gateway = Gateway::start(shipped()).await;
    let mut client = local_client(&gateway, "alice").await;
    let phone = tokio::spawn(sipp_phone(gateway.sip.0, scenario, "alice"));
    let (session, offer) = loop {
        if let protocol::ServerMessage::Event(protocol::Event::Account {
            event: protocol::AccountEvent::IncomingSession { session, sdp, .. },
            ..
        }) = next(&mut client).await
        {
            break (session, sdp);
        }
    };
    tokio::time::sleep(delay).await;
    let browser = answer_in_browser(&mut client, &session, &offer).await;
    until(&mut client, &session, |state| {
        matches!(state, SessionState::Accepted { .. })
    })
    .await;
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": session}))
        .await;
    if let Err(output) = phone.await.expect("sipp ran") {
        panic!("{scenario}:\n{output}");
    }
    browser.close().await;
}

/// UPDATE in the early dialog (after a reliable 180): without a body it is answered 200, with
/// a new offer while the INVITE's is unanswered 500 and Retry-After (RFC 3311 section 5.2).
#[tokio::test]
async fn an_update_in_the_early_dialog_is_answered() {
    a_phone_calls_the_browser("uac_early_update.xml", Duration::from_millis(2500)).await;
}

/// A phone behind NAT (its Contact names an address nobody can reach, its packets come from
/// elsewhere) calls a browser: the BYE when the browser hangs up goes where the phone's INVITE
/// came from, not to its Contact.
#[tokio::test]
async fn in_dialog_requests_reach_a_phone_behind_nat_through_its_flow() {
    a_phone_calls_the_browser("uac_nat_phone.xml", Duration::ZERO).await;
}

/// A caller that requires 100rel hears a reliable 180 (Require: 100rel, RSeq), PRACKs it and
/// gets 200, then the answer (RFC 3262).
#[tokio::test]
async fn a_caller_requiring_100rel_gets_a_reliable_180_and_its_prack_answered() {
    a_phone_calls_the_browser("uac_100rel.xml", Duration::from_millis(1500)).await;
}
