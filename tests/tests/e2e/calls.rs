//! Calls between the test browser (webrtc-rs) and baresip, through the gateway and kamailio:
//! tones both ways, hang-ups from either side, refusals, failures, and that nothing is left
//! behind.

use std::time::Duration;

use gateway::Config;
use gateway_tests::audio::{PROBES, alaw_decode, dominant, ulaw_decode};
use gateway_tests::baresip::Baresip;
use gateway_tests::browser::{AudioCodec, Browser};
use gateway_tests::peers::{Kamailio, KamailioOptions};
use gateway_tests::{Client, Gateway};
use media::sdp::Description;
use protocol::{AccountEvent, Event, ServerMessage, SessionEvent, SessionState};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

/// The registrar, a gateway using it as outbound proxy, and a client with alice added.
pub(crate) struct Setup {
    pub(crate) kamailio: Kamailio,
    pub(crate) gateway: Gateway,
    pub(crate) client: Client,
}

impl Setup {
    pub(crate) async fn new(configure: impl FnOnce(&mut Config)) -> Setup {
        Setup::with_registrar(KamailioOptions::default(), configure).await
    }

    /// As [`Setup::new`], with a registrar started with `options`.
    pub(crate) async fn with_registrar(
        options: KamailioOptions,
        configure: impl FnOnce(&mut Config),
    ) -> Setup {
        // GATEWAY_LOG=debug shows the gateway's log of a failing test.
        if let Ok(filter) = std::env::var("GATEWAY_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let kamailio = Kamailio::start(options);
        let mut config = Config::default();
        config.sip.outbound_proxy = format!("sip:127.0.0.1:{}", kamailio.port);
        config.media.media_timeout = 10;
        configure(&mut config);
        let gateway = Gateway::start(config).await;
        let mut client = gateway.client().await;
        let ha1 = sip::ha1("alice", "127.0.0.1", "alicepw");
        client
            .expect_ack(
                json!({"sylkrtc": "account-add", "account": "alice@127.0.0.1", "password": ha1}),
            )
            .await;
        Setup {
            kamailio,
            gateway,
            client,
        }
    }

    /// Starts a bob (baresip, PCMU) that rings until told to answer, as binding number
    /// `binding` of bob.
    pub(crate) fn ringing_bob(&self, tone: f64, binding: usize) -> Baresip {
        let bob = Baresip::start_with(
            "bob",
            "bobpw",
            self.kamailio.port,
            "PCMU/8000/1",
            tone,
            false,
        );
        self.kamailio.wait_bindings("bob", binding, WAIT);
        bob
    }

    /// Starts bob (baresip) with these codecs and tone, registered.
    pub(crate) fn bob(&self, codecs: &str, tone: f64) -> Baresip {
        let bob = Baresip::start("bob", "bobpw", self.kamailio.port, codecs, tone);
        self.kamailio.wait_bindings("bob", 1, WAIT);
        bob
    }

    /// Has `phone` call `user` through the registrar.
    pub(crate) fn dial(&self, phone: &Baresip, user: &str) {
        phone.command(
            "dial",
            &format!("sip:{user}@127.0.0.1:{}", self.kamailio.port),
        );
    }

    /// Registers alice on the gateway.
    pub(crate) async fn register_alice(&mut self) {
        self.client
            .expect_ack(json!({"sylkrtc": "account-register", "account": "alice@127.0.0.1"}))
            .await;
        loop {
            if let ServerMessage::Event(Event::Account {
                event: AccountEvent::RegistrationState(protocol::RegistrationState::Registered),
                ..
            }) = next(&mut self.client).await
            {
                break;
            }
        }
    }

    /// No call, call task or media port left, once the call has had time to end.
    pub(crate) async fn assert_nothing_left(&self) {
        for _ in 0..50 {
            if self.gateway.metric("sylkrtc_calls").await == 0.0
                && self.gateway.metric("sylkrtc_media_ports").await == 0.0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "left behind: {} calls, {} media ports",
            self.gateway.metric("sylkrtc_calls").await,
            self.gateway.metric("sylkrtc_media_ports").await
        );
    }
}

/// Waits for the far end's new offer (`update` `received`) on `session`, answers it in
/// `browser` and sends the answer with `session-update`, as a client does; the offer.
pub(crate) async fn answer_update(client: &mut Client, browser: &Browser, session: &str) -> String {
    let offer = loop {
        if let ServerMessage::Event(Event::Session {
            session: updated,
            event: SessionEvent::Update(protocol::UpdateState::Received { sdp }),
        }) = next(client).await
            && updated == session
        {
            break sdp;
        }
    };
    // webrtc-rs answers `sendrecv` whatever the offer's direction; a browser mirrors it
    // (RFC 3264 section 6.1), which is what the gateway must see.
    let mirrored = if offer.contains("a=sendonly") {
        "a=recvonly"
    } else if offer.contains("a=recvonly") {
        "a=sendonly"
    } else if offer.contains("a=inactive") {
        "a=inactive"
    } else {
        "a=sendrecv"
    };
    let answer = browser.answer(&offer).await.replace("a=sendrecv", mirrored);
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": session, "sdp": answer}),
        )
        .await;
    offer
}

/// The next message, in time.
pub(crate) async fn next(client: &mut Client) -> ServerMessage {
    tokio::time::timeout(WAIT, client.recv())
        .await
        .expect("a message in time")
}

/// The next session state of `session` (other messages are skipped).
pub(crate) async fn state(client: &mut Client, session: &str) -> SessionState {
    loop {
        if let ServerMessage::Event(Event::Session {
            session: got,
            event: SessionEvent::State(state),
        }) = next(client).await
            && got == session
        {
            return state;
        }
    }
}

/// The next event of `session` that `wanted` matches (other messages are skipped; the call
/// ending first fails).
pub(crate) async fn session_event(
    client: &mut Client,
    session: &str,
    wanted: impl Fn(&SessionEvent) -> bool,
) -> SessionEvent {
    loop {
        if let ServerMessage::Event(Event::Session {
            session: got,
            event,
        }) = next(client).await
            && got == session
        {
            if wanted(&event) {
                return event;
            }
            assert!(
                !matches!(event, SessionEvent::State(SessionState::Terminated { .. })),
                "the call ended: {event:?}"
            );
        }
    }
}

/// States until `wanted` matches, which is returned.
pub(crate) async fn until(
    client: &mut Client,
    session: &str,
    wanted: impl Fn(&SessionState) -> bool,
) -> SessionState {
    loop {
        let state = state(client, session).await;
        if wanted(&state) {
            return state;
        }
        assert!(
            !matches!(state, SessionState::Terminated { .. }),
            "the call ended: {state:?}"
        );
    }
}

/// The payload type of `codec` in an SDP.
pub(crate) fn payload_type(sdp: &str, format: media::Format) -> u8 {
    let description = Description::parse(sdp).expect("valid SDP");
    let (_, audio) = description.audio().expect("audio");
    audio
        .payloads
        .iter()
        .find(|payload| payload.format == format)
        .map(|payload| payload.pt)
        .unwrap_or_else(|| panic!("no {format:?} in\n{sdp}"))
}

/// The dominant tone of what the browser received with payload type `pt` (Opus).
pub(crate) fn browser_opus_tone(browser: &Browser, pt: u8) -> (f64, usize) {
    let mut decoder = gateway_tests::opus::Decoder::new();
    let packets: Vec<_> = browser
        .received()
        .into_iter()
        .filter(|packet| packet.header.payload_type == pt)
        .collect();
    let samples: Vec<i16> = packets
        .iter()
        .flat_map(|packet| decoder.decode(&packet.payload))
        .collect();
    let sound = gateway_tests::audio::voiced(&samples, 48_000);
    (dominant(&sound, 48_000, &PROBES).0, packets.len())
}

/// Waits until `tone` (a reading of what a browser received: its dominant tone and packet
/// count) says `expected` over at least 100 packets (two seconds of audio, so that the far end,
/// which hears the browser from the same moment, has recorded that much too), for at most
/// 15 s; returns the last reading, which the caller checks.
pub(crate) async fn until_heard(expected: f64, tone: impl Fn() -> (f64, usize)) -> (f64, usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (heard, packets) = tone();
        if (heard == expected && packets >= 100) || tokio::time::Instant::now() >= deadline {
            return (heard, packets);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The dominant tone of what the browser received with payload type `pt` (G.711).
pub(crate) fn browser_tone(browser: &Browser, pt: u8, codec: AudioCodec) -> (f64, usize) {
    let packets: Vec<_> = browser
        .received()
        .into_iter()
        .filter(|packet| packet.header.payload_type == pt)
        .collect();
    let samples: Vec<i16> = packets
        .iter()
        .flat_map(|packet| packet.payload.iter().copied())
        .map(|byte| match codec {
            AudioCodec::Pcma => alaw_decode(byte),
            _ => ulaw_decode(byte),
        })
        .collect();
    let sound = gateway_tests::audio::voiced(&samples, 8000);
    (dominant(&sound, 8000, &PROBES).0, packets.len())
}

/// Places a call from the browser to bob and waits until media is up both ways.
pub(crate) async fn call_bob(setup: &mut Setup, browser: &mut Browser, session: &str) -> String {
    call(setup, browser, session, "bob").await
}

/// Places a call from the browser to `user` and waits until media is up both ways.
pub(crate) async fn call(
    setup: &mut Setup,
    browser: &mut Browser,
    session: &str,
    user: &str,
) -> String {
    let offer = browser.offer().await;
    let uri = format!("{user}@127.0.0.1");
    setup
        .client
        .expect_ack_amid_events(json!({"sylkrtc": "session-create", "account": "alice@127.0.0.1", "session": session, "uri": uri, "sdp": offer}))
        .await;
    assert_eq!(
        state(&mut setup.client, session).await,
        SessionState::Progress
    );
    let answer = match until(&mut setup.client, session, |state| {
        matches!(
            state,
            SessionState::Accepted { .. } | SessionState::EarlyMedia { .. }
        )
    })
    .await
    {
        SessionState::Accepted {
            sdp: Some(sdp),
            call_id: Some(_),
            ..
        }
        | SessionState::EarlyMedia {
            sdp,
            call_id: Some(_),
        } => sdp,
        other => panic!("no answer SDP: {other:?}"),
    };
    browser.accept_answer(&answer).await;
    assert!(browser.connected(WAIT).await, "the browser leg connects");
    answer
}

#[tokio::test]
async fn the_browser_calls_bob_and_tones_go_both_ways_pcmu() {
    let mut setup = Setup::new(|_| {}).await;
    let bob = setup.bob("PCMU/8000/1", 1000.0);
    let mut browser = Browser::new(&[AudioCodec::Opus, AudioCodec::Pcmu]).await;
    let answer = call_bob(&mut setup, &mut browser, "call-1").await;
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    until(&mut setup.client, "call-1", |state| {
        *state == SessionState::Established
    })
    .await;
    let (tone, packets) =
        until_heard(1000.0, || browser_tone(&browser, pt, AudioCodec::Pcmu)).await;
    assert!(packets >= 50, "the browser got {packets} packets");
    assert_eq!(tone, 1000.0, "the browser hears bob's tone");
    setup
        .client
        .expect_ack(json!({"sylkrtc": "session-terminate", "session": "call-1"}))
        .await;
    assert!(matches!(
        state(&mut setup.client, "call-1").await,
        SessionState::Terminated { .. }
    ));
    assert!(
        bob.wait_for("CALL_CLOSED", 1, WAIT).await,
        "bob hangs up too"
    );
    let (tone, seconds) = bob.received_tone().expect("bob's recording");
    assert!(seconds > 1.0, "bob heard {seconds} s of sound");
    assert_eq!(tone, 440.0, "bob hears the browser's tone");
    browser.close().await;
    setup.assert_nothing_left().await;
}

/// The next incoming call, answered by a new browser (PCMU) that connects, sees the session
/// established and sends 440 Hz: the session, the browser and its payload type.
pub(crate) async fn answer_and_talk(client: &mut Client) -> (String, Browser, u8) {
    let (session, offer, _) = incoming(client).await;
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = browser.answer(&offer).await;
    client
        .expect_ack(json!({"sylkrtc": "session-answer", "session": session, "sdp": answer}))
        .await;
    assert!(browser.connected(WAIT).await, "the browser leg connects");
    until(client, &session, |state| {
        *state == SessionState::Established
    })
    .await;
    let pt = payload_type(&offer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    (session, browser, pt)
}

/// The next incoming-session for alice: (session, offer).
pub(crate) async fn incoming(client: &mut Client) -> (String, String, protocol::Party) {
    loop {
        if let ServerMessage::Event(Event::Account {
            account,
            event:
                AccountEvent::IncomingSession {
                    session,
                    sdp,
                    originator,
                    ..
                },
        }) = next(client).await
        {
            assert_eq!(account, "alice@127.0.0.1");
            return (session, sdp, originator);
        }
    }
}

#[tokio::test]
async fn bob_calls_the_browser_which_answers_and_bob_hangs_up() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    let bob = setup.bob("PCMU/8000/1", 1000.0);
    setup.dial(&bob, "alice");
    let (session, offer, originator) = incoming(&mut setup.client).await;
    assert!(
        originator.uri.starts_with("bob@127.0.0.1"),
        "{originator:?}"
    );
    assert!(
        bob.wait_for("CALL_RINGING", 1, WAIT).await,
        "bob hears ringing"
    );
    let mut browser = Browser::new(&[AudioCodec::Opus, AudioCodec::Pcmu]).await;
    let answer = browser.answer(&offer).await;
    setup
        .client
        .expect_ack(json!({"sylkrtc": "session-answer", "session": session, "sdp": answer}))
        .await;
    assert!(matches!(
        state(&mut setup.client, &session).await,
        SessionState::Accepted { sdp: None, .. }
    ));
    assert!(browser.connected(WAIT).await, "the browser leg connects");
    until(&mut setup.client, &session, |state| {
        *state == SessionState::Established
    })
    .await;
    let pt = payload_type(&offer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    let (tone, packets) =
        until_heard(1000.0, || browser_tone(&browser, pt, AudioCodec::Pcmu)).await;
    assert!(packets >= 50, "the browser got {packets} packets");
    assert_eq!(tone, 1000.0);
    bob.command("hangup", "");
    assert!(matches!(
        state(&mut setup.client, &session).await,
        SessionState::Terminated { .. }
    ));
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    let (tone, seconds) = bob.received_tone().expect("bob's recording");
    assert!(seconds > 1.0, "bob heard {seconds} s");
    assert_eq!(tone, 440.0);
    browser.close().await;
    setup.assert_nothing_left().await;
}

#[tokio::test]
async fn a_caller_that_cancels_leaves_a_missed_session() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    let bob = setup.bob("PCMU/8000/1", 1000.0);
    setup.dial(&bob, "alice");
    let (session, _, _) = incoming(&mut setup.client).await;
    assert!(bob.wait_for("CALL_RINGING", 1, WAIT).await);
    bob.command("hangup", "");
    let mut missed = false;
    let mut terminated = false;
    while !(missed && terminated) {
        match next(&mut setup.client).await {
            ServerMessage::Event(Event::Account {
                event: AccountEvent::MissedSession { originator },
                ..
            }) => {
                assert!(
                    originator.uri.starts_with("bob@127.0.0.1"),
                    "{originator:?}"
                );
                missed = true;
            }
            ServerMessage::Event(Event::Session {
                session: got,
                event: SessionEvent::State(SessionState::Terminated { reason }),
            }) if got == session => {
                assert_eq!(reason.as_deref(), Some("487 Request Terminated"));
                terminated = true;
            }
            _ => {}
        }
    }
    setup.assert_nothing_left().await;
}

#[tokio::test]
async fn declining_and_unanswered_incoming_calls() {
    let mut setup = Setup::new(|config| config.calls.ring_timeout = 2).await;
    setup.register_alice().await;
    let bob = setup.bob("PCMU/8000/1", 1000.0);
    // Declined: bob gets 486.
    setup.dial(&bob, "alice");
    let (session, _, _) = incoming(&mut setup.client).await;
    setup
        .client
        .expect_ack(json!({"sylkrtc": "session-terminate", "session": session}))
        .await;
    assert!(matches!(
        state(&mut setup.client, &session).await,
        SessionState::Terminated { reason: Some(reason) } if reason == "486 Busy Here"
    ));
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    assert!(
        bob.wait_log("486 Busy Here", WAIT).await,
        "bob was told busy:\n{}",
        bob.log.text()
    );
    // Not answered: after the ring timeout, 480 and a missed call.
    setup.dial(&bob, "alice");
    let (session, _, _) = incoming(&mut setup.client).await;
    assert!(matches!(
        state(&mut setup.client, &session).await,
        SessionState::Terminated { reason: Some(reason) } if reason.starts_with("480")
    ));
    assert!(bob.wait_for("CALL_CLOSED", 2, WAIT).await);
    // The event may come before baresip's log line about it is read.
    assert!(
        bob.wait_log("480 Temporarily Unavailable", WAIT).await,
        "bob was told the call was not answered:\n{}",
        bob.log.text()
    );
    setup.assert_nothing_left().await;
}

#[tokio::test]
async fn bob_busy_and_no_common_codec() {
    let mut setup = Setup::new(|config| {
        config.media.codecs = vec!["opus".into(), "PCMU".into()];
    })
    .await;
    let bob = setup.ringing_bob(1000.0, 1);
    // bob refuses while ringing: 486 reaches the browser as the reason.
    let browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let offer = browser.offer().await;
    setup
        .client
        .expect_ack(json!({"sylkrtc": "session-create", "account": "alice@127.0.0.1", "session": "busy", "uri": "bob@127.0.0.1", "sdp": offer}))
        .await;
    until(&mut setup.client, "busy", |state| {
        *state == SessionState::Ringing
    })
    .await;
    bob.command("hangup", "");
    let reason = match until(&mut setup.client, "busy", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await
    {
        SessionState::Terminated { reason } => reason.unwrap_or_default(),
        _ => unreachable!(),
    };
    assert!(reason.starts_with("486"), "{reason}");
    browser.close().await;
    // A browser offering only PCMA to a gateway relaying PCMU and opus: refused, with the
    // codecs named, and no INVITE sent.
    let browser = Browser::new(&[AudioCodec::Pcma]).await;
    let offer = browser.offer().await;
    setup
        .client
        .expect_ack(json!({"sylkrtc": "session-create", "account": "alice@127.0.0.1", "session": "pcma", "uri": "bob@127.0.0.1", "sdp": offer}))
        .await;
    let SessionState::Terminated {
        reason: Some(reason),
    } = state(&mut setup.client, "pcma").await
    else {
        panic!("the call is refused");
    };
    assert!(reason.contains("PCMA"), "{reason}");
    browser.close().await;
    setup.assert_nothing_left().await;
}

#[tokio::test]
async fn a_dropped_websocket_ends_its_calls() {
    let mut setup = Setup::new(|_| {}).await;
    let bob = setup.bob("PCMU/8000/1", 1000.0);
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    call_bob(&mut setup, &mut browser, "drop").await;
    assert!(bob.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    // The client vanishes without a word.
    let Setup {
        kamailio,
        gateway,
        client,
    } = setup;
    drop(client);
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await, "bob gets a BYE");
    let setup = Setup {
        client: gateway.client().await,
        kamailio,
        gateway,
    };
    setup.assert_nothing_left().await;
    browser.close().await;
}

#[tokio::test]
async fn a_far_end_that_vanishes_ends_the_call_after_the_media_timeout() {
    let mut setup = Setup::new(|config| config.media.media_timeout = 3).await;
    let bob = setup.bob("PCMU/8000/1", 1000.0);
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = call_bob(&mut setup, &mut browser, "gone").await;
    browser.send_pcmu_tone(
        payload_type(&answer, media::Format::Audio(media::Codec::Pcmu)),
        440.0,
    );
    until(&mut setup.client, "gone", |state| {
        *state == SessionState::Established
    })
    .await;
    // bob's process dies: no BYE, no more RTP.
    drop(bob);
    let SessionState::Terminated {
        reason: Some(reason),
    } = until(&mut setup.client, "gone", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await
    else {
        panic!("a reason");
    };
    assert!(reason.contains("no RTP from the SIP side"), "{reason}");
    browser.close().await;
    setup.assert_nothing_left().await;
}

#[tokio::test]
async fn the_browser_vanishing_ends_the_call_too() {
    let mut setup = Setup::new(|config| config.media.media_timeout = 3).await;
    let bob = setup.bob("PCMU/8000/1", 1000.0);
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    call_bob(&mut setup, &mut browser, "quiet").await;
    until(&mut setup.client, "quiet", |state| {
        *state == SessionState::Established
    })
    .await;
    // The browser stops everything (no RTP, no ICE consent) but its WebSocket stays.
    browser.close().await;
    let SessionState::Terminated {
        reason: Some(reason),
    } = until(&mut setup.client, "quiet", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await
    else {
        panic!("a reason");
    };
    assert!(
        reason.contains("browser") || reason.contains("ICE"),
        "{reason}"
    );
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await, "bob gets a BYE");
    setup.assert_nothing_left().await;
}

#[tokio::test]
async fn a_forked_call_connects_to_the_phone_that_answers() {
    let mut setup = Setup::new(|_| {}).await;
    // Two phones registered as bob: one answers, the other rings until told.
    let first = Baresip::start("bob", "bobpw", setup.kamailio.port, "PCMU/8000/1", 1000.0);
    let second = setup.ringing_bob(700.0, 2);
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = call_bob(&mut setup, &mut browser, "fork").await;
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    assert!(first.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    assert!(
        second.wait_for("CALL_CLOSED", 1, WAIT).await,
        "the other phone stops ringing: {:?}\n{}\nkamailio:\n{}",
        second.events(),
        second.log.text(),
        setup.kamailio.log.text()
    );
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0);
    first.command("hangup", "");
    assert!(matches!(
        until(&mut setup.client, "fork", |state| matches!(
            state,
            SessionState::Terminated { .. }
        ))
        .await,
        SessionState::Terminated { .. }
    ));
    browser.close().await;
    setup.assert_nothing_left().await;
}

#[tokio::test]
async fn hold_and_resume_from_the_phone_and_dtmf_both_ways() {
    let mut setup = Setup::new(|_| {}).await;
    let bob = setup.bob("PCMU/8000/1", 1000.0);
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = call_bob(&mut setup, &mut browser, "hold").await;
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    let event_pt = payload_type(&answer, media::Format::TelephoneEvent(8000));
    browser.send_pcmu_tone(pt, 440.0);
    until(&mut setup.client, "hold", |state| {
        *state == SessionState::Established
    })
    .await;
    assert!(bob.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0);

    // DTMF by SIP INFO, then by RFC 4733 from the browser: bob sees both.
    setup
        .client
        .expect_ack(json!({"sylkrtc": "session-dtmf-info", "session": "hold", "digit": "5"}))
        .await;
    browser.send_event(event_pt, 9, 800).await;
    browser.send_pcmu_tone(pt, 440.0);
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline && bob.count("CALL_DTMF_START") < 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys: Vec<String> = bob
        .events()
        .iter()
        .filter(|event| event["type"] == "CALL_DTMF_START")
        .map(|event| event["param"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        keys,
        ["5", "9"],
        "bob's DTMF events: {:?}\n{}",
        bob.events(),
        bob.log.text()
    );

    // Hold: the browser is asked (`update` `received`) and its answer goes to bob, mirrored;
    // then resume, the same way.
    bob.command("hold", "");
    let offer = answer_update(&mut setup.client, &browser, "hold").await;
    assert!(offer.contains("a=sendonly"), "{offer}");
    let held = || {
        let log = bob.log.text();
        log.contains("recvonly") || log.contains("sendonly")
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !held() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(held(), "bob's hold is answered:\n{}", bob.log.text());
    bob.command("resume", "");
    let offer = answer_update(&mut setup.client, &browser, "hold").await;
    assert!(offer.contains("a=sendrecv"), "{offer}");
    browser.clear_received();
    let (tone, packets) =
        until_heard(1000.0, || browser_tone(&browser, pt, AudioCodec::Pcmu)).await;
    assert!(packets >= 100, "audio resumed: {packets} packets");
    assert_eq!(tone, 1000.0);
    setup
        .client
        .expect_ack(json!({"sylkrtc": "session-terminate", "session": "hold"}))
        .await;
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    browser.close().await;
    setup.assert_nothing_left().await;
}

#[tokio::test]
async fn the_browser_calls_bob_and_tones_go_both_ways_opus() {
    let mut setup = Setup::new(|_| {}).await;
    let bob = setup.bob("opus/48000/2", 1000.0);
    let mut browser = Browser::new(&[AudioCodec::Opus, AudioCodec::Pcmu]).await;
    let answer = call_bob(&mut setup, &mut browser, "opus").await;
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Opus));
    browser.send_opus_tone(pt, 440.0);
    until(&mut setup.client, "opus", |state| {
        *state == SessionState::Established
    })
    .await;
    let (tone, packets) = until_heard(1000.0, || browser_opus_tone(&browser, pt)).await;
    assert!(packets >= 50, "the browser got {packets} packets");
    assert_eq!(tone, 1000.0, "the browser hears bob's tone");
    setup
        .client
        .expect_ack(json!({"sylkrtc": "session-terminate", "session": "opus"}))
        .await;
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    let (tone, seconds) = bob.received_tone().expect("bob's recording");
    assert!(seconds > 1.0, "bob heard {seconds} s of sound");
    assert_eq!(tone, 440.0, "bob hears the browser's tone");
    browser.close().await;
    setup.assert_nothing_left().await;
}

#[tokio::test]
async fn two_calls_at_once_on_one_connection() {
    let mut setup = Setup::new(|_| {}).await;
    let bob = setup.bob("PCMU/8000/1", 1000.0);
    let carol = Baresip::start(
        "carol",
        "carolpw",
        setup.kamailio.port,
        "PCMU/8000/1",
        700.0,
    );
    setup.kamailio.wait_bindings("carol", 1, WAIT);
    let mut first = Browser::new(&[AudioCodec::Pcmu]).await;
    let mut second = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = call(&mut setup, &mut first, "one", "bob").await;
    call(&mut setup, &mut second, "two", "carol").await;
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    first.send_pcmu_tone(pt, 440.0);
    second.send_pcmu_tone(pt, 1500.0);
    assert_eq!(setup.gateway.metric("sylkrtc_calls").await, 2.0);
    let tone = || browser_tone(&first, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0);
    let tone = || browser_tone(&second, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(700.0, tone).await.0, 700.0);
    for session in ["one", "two"] {
        setup
            .client
            .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": session}))
            .await;
    }
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    assert!(carol.wait_for("CALL_CLOSED", 1, WAIT).await);
    assert_eq!(bob.received_tone().expect("bob's recording").0, 440.0);
    assert_eq!(carol.received_tone().expect("carol's recording").0, 1500.0);
    first.close().await;
    second.close().await;
    setup.assert_nothing_left().await;
}

/// A third party spraying RTP (and RTCP) at every port of the media range during a call is
/// never heard: the SIP side's ports take only the phone's source ("RTP bleed").
#[tokio::test]
async fn a_third_party_sending_to_a_calls_ports_is_never_heard() {
    let (first, last) = {
        let base = gateway_tests::peers::free_ports(10);
        (base, base + 9)
    };
    let mut setup = Setup::new(|config| {
        config.media.rtp_port_min = first;
        config.media.rtp_port_max = last;
    })
    .await;
    let bob = setup.bob("PCMU/8000/1", 1000.0);
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = call_bob(&mut setup, &mut browser, "bleed").await;
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    until(&mut setup.client, "bleed", |state| {
        *state == SessionState::Established
    })
    .await;
    // From another address, as an attacker on the network would: PCMU packets whose payload
    // is a pattern no tone has, to every port of the range, 50 a second for 3 s.
    let attacker = tokio::net::UdpSocket::bind("127.0.0.9:0")
        .await
        .expect("the attacker's socket");
    for n in 0u16..150 {
        let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0x0b, 0xad, 0xbe, 0xef];
        packet[2..4].copy_from_slice(&n.to_be_bytes());
        packet[4..8].copy_from_slice(&(u32::from(n) * 160).to_be_bytes());
        packet.extend_from_slice(&[0x5a; 160]);
        for port in first..=last {
            let _ = attacker.send_to(&packet, ("127.0.0.1", port)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let received = browser.received();
    let injected = received
        .iter()
        .filter(|packet| packet.payload.iter().all(|byte| *byte == 0x5a))
        .count();
    assert_eq!(
        injected, 0,
        "{injected} injected packets reached the browser"
    );
    let (tone, packets) = browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert!(packets > 100, "the browser got {packets} packets");
    assert_eq!(tone, 1000.0, "the browser still hears bob");
    setup
        .client
        .expect_ack(json!({"sylkrtc": "session-terminate", "session": "bleed"}))
        .await;
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    let (tone, _) = bob.received_tone().expect("bob's recording");
    assert_eq!(tone, 440.0, "bob still hears the browser");
    browser.close().await;
    setup.assert_nothing_left().await;
}

/// Two devices of alice ring in parallel (kamailio forks the INVITE); one answers, and the
/// other's CANCEL says `Reason: SIP;cause=200`: it ends without a missed call.
#[tokio::test]
async fn a_call_answered_on_another_device_is_not_missed() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    let mut other = setup.gateway.client().await;
    let ha1 = sip::ha1("alice", "127.0.0.1", "alicepw");
    other
        .expect_ack(
            json!({"sylkrtc": "account-add", "account": "alice@127.0.0.1", "password": ha1}),
        )
        .await;
    other
        .expect_ack(json!({"sylkrtc": "account-register", "account": "alice@127.0.0.1"}))
        .await;
    loop {
        if let ServerMessage::Event(Event::Account {
            event: AccountEvent::RegistrationState(protocol::RegistrationState::Registered),
            ..
        }) = next(&mut other).await
        {
            break;
        }
    }
    let bob = setup.bob("PCMU/8000/1", 1000.0);
    assert_eq!(setup.kamailio.bindings("alice").len(), 2);
    setup.dial(&bob, "alice");
    let (session, offer, _) = incoming(&mut setup.client).await;
    let (other_session, _, _) = incoming(&mut other).await;
    let browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = browser.answer(&offer).await;
    setup
        .client
        .expect_ack(json!({"sylkrtc": "session-answer", "session": session, "sdp": answer}))
        .await;
    // The other device: terminated, and no missed-session before or after.
    let mut missed = false;
    loop {
        match next(&mut other).await {
            ServerMessage::Event(Event::Account {
                event: AccountEvent::MissedSession { .. },
                ..
            }) => missed = true,
            ServerMessage::Event(Event::Session {
                session: ended,
                event: SessionEvent::State(SessionState::Terminated { reason }),
            }) if ended == other_session => {
                assert_eq!(reason.as_deref(), Some("answered elsewhere"));
                break;
            }
            _ => {}
        }
    }
    other.expect_silence(Duration::from_millis(500)).await;
    assert!(!missed, "a call answered elsewhere is not a missed call");
    bob.command("hangup", "");
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    browser.close().await;
    setup.assert_nothing_left().await;
}

/// `account-remove` ends the account's calls: the phone gets its BYE, the client `terminated`.
#[tokio::test]
async fn removing_the_account_ends_its_call() {
    let mut setup = Setup::new(|_| {}).await;
    let bob = setup.bob("PCMU/8000/1", 1000.0);
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    call_bob(&mut setup, &mut browser, "removed").await;
    setup
        .client
        .expect_ack_amid_events(json!({"sylkrtc": "account-remove", "account": "alice@127.0.0.1"}))
        .await;
    until(&mut setup.client, "removed", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;
    assert!(
        bob.wait_for("CALL_CLOSED", 1, WAIT).await,
        "bob's call ends"
    );
    browser.close().await;
    setup.assert_nothing_left().await;
}

/// An outgoing call that only rings is cancelled after `[calls] no_answer_timeout`: the phone
/// stops ringing (CANCEL), the browser gets `terminated` with 408.
#[tokio::test]
async fn an_outgoing_call_that_only_rings_is_cancelled_after_the_no_answer_timeout() {
    let mut setup = Setup::new(|config| config.calls.no_answer_timeout = 2).await;
    let bob = setup.ringing_bob(1000.0, 1);
    let browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let offer = browser.offer().await;
    setup
        .client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-create", "account": "alice@127.0.0.1",
            "session": "unanswered", "uri": "bob@127.0.0.1", "sdp": offer}),
        )
        .await;
    until(&mut setup.client, "unanswered", |state| {
        *state == SessionState::Ringing
    })
    .await;
    match until(&mut setup.client, "unanswered", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await
    {
        SessionState::Terminated { reason } => {
            let reason = reason.unwrap_or_default();
            assert_eq!(reason, "408 Request Timeout (no answer within 2 s)");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        bob.wait_for("CALL_CLOSED", 1, WAIT).await,
        "bob stops ringing"
    );
    browser.close().await;
    setup.assert_nothing_left().await;
}
