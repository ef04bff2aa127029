//! The web phone in a real browser (chromium, headless, fake microphone playing a known tone):
//! signing in, registering, calls both ways with tones checked by ear (a WebAudio analyser in
//! the page, baresip's recording on the far side), hang-ups, a wrong password, a gateway that
//! goes away and comes back. Screenshots go to `target/screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use gateway::Config;
use gateway_tests::audio::{Tone, write_wav};
use gateway_tests::chromium::Chromium;
use gateway_tests::{Gateway, TempDir};
use serde_json::json;

use crate::calls::Setup;

const WAIT: Duration = Duration::from_secs(15);
/// The tone the page's fake microphone plays, and bob's.
const PAGE_TONE: f64 = 440.0;
const BOB_TONE: f64 = 1000.0;

pub(crate) fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

/// A browser whose microphone plays the page's tone.
pub(crate) fn browser(dir: &TempDir) -> Chromium {
    let wav = dir.path().join("microphone.wav");
    let mut tone = Tone::new(PAGE_TONE, 48_000);
    write_wav(&wav, &tone.samples(48_000 * 30), 48_000).expect("write the microphone's tone");
    Chromium::start(&wav)
}

/// Opens the page and signs in as `account`.
pub(crate) async fn sign_in(page: &mut Chromium, gateway: &Gateway, account: &str, password: &str) {
    page.command(json!({"do": "open", "url": format!("http://{}/", gateway.addr)}))
        .await;
    page.command(json!({"do": "fill", "selector": "#account", "value": account}))
        .await;
    page.command(json!({"do": "fill", "selector": "#password", "value": password}))
        .await;
    page.command(json!({"do": "click", "selector": "#sign-in-button"}))
        .await;
}

/// Whether `heard` is `expected` within the analyser's resolution.
pub(crate) fn near(heard: f64, expected: f64) -> bool {
    (heard - expected).abs() < 15.0
}

/// Listens on the page, a second at a time, until it has heard `expected` for two seconds in a
/// row (so that the far end, which hears the page from the same moment, has recorded as much),
/// for at most 15 s; returns the last frequency heard, which the caller checks.
pub(crate) async fn hears(page: &mut Chromium, expected: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut in_a_row = 0;
    loop {
        let heard = page.heard_frequency(1.0).await;
        in_a_row = if near(heard, expected) {
            in_a_row + 1
        } else {
            0
        };
        if in_a_row == 2 || tokio::time::Instant::now() >= deadline {
            return heard;
        }
    }
}

#[tokio::test]
async fn the_page_calls_bob_and_bob_calls_the_page() {
    let dir = TempDir::new();
    let setup = Setup::new(|_| {}).await;
    let bob = setup.bob("PCMU/8000/1", BOB_TONE);
    let mut page = browser(&dir);
    page.command(json!({"do": "open", "url": format!("http://{}/", setup.gateway.addr)}))
        .await;
    page.screenshot(&screenshots().join("signed-out.png")).await;
    sign_in(&mut page, &setup.gateway, "alice@127.0.0.1", "alicepw").await;
    page.wait_text("#registration-state", "^registered$").await;
    page.wait_text("#connection-state", "^ready$").await;
    page.screenshot(&screenshots().join("registered.png")).await;

    // The page calls bob.
    page.command(json!({"do": "fill", "selector": "#uri", "value": "bob@127.0.0.1"}))
        .await;
    page.command(json!({"do": "click", "selector": "#call"}))
        .await;
    page.wait_text("#call-state", "^established$").await;
    let heard = hears(&mut page, BOB_TONE).await;
    assert!(near(heard, BOB_TONE), "the page hears {heard} Hz");
    page.wait_text("#stat-codec", "PCMU").await;
    page.screenshot(&screenshots().join("in-call.png")).await;
    page.command(json!({"do": "click", "selector": "#hangup"}))
        .await;
    page.wait_text("#last-call", "ended").await;
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    let (tone, seconds) = bob.received_tone().expect("bob's recording");
    assert!(seconds > 1.0, "bob heard {seconds} s");
    assert_eq!(tone, PAGE_TONE, "bob hears the page's microphone");

    // bob calls the page, which answers; bob hangs up.
    setup.dial(&bob, "alice");
    page.command(json!({"do": "waitVisible", "selector": "#incoming"}))
        .await;
    let from = page.wait_text("#incoming-from", "bob").await;
    assert!(from.contains("bob@127.0.0.1"), "{from}");
    page.screenshot(&screenshots().join("incoming.png")).await;
    page.command(json!({"do": "click", "selector": "#answer"}))
        .await;
    page.wait_text("#call-state", "^established$").await;
    let heard = hears(&mut page, BOB_TONE).await;
    assert!(near(heard, BOB_TONE), "the page hears {heard} Hz");
    bob.command("hangup", "");
    page.wait_text("#last-call", "ended").await;
    assert!(bob.wait_for("CALL_CLOSED", 2, WAIT).await);
    assert_eq!(bob.received_tone().expect("bob's recording").0, PAGE_TONE);
    page.close().await;
    setup.assert_nothing_left().await;
}

#[tokio::test]
async fn a_wrong_password_is_shown() {
    let dir = TempDir::new();
    let setup = Setup::new(|_| {}).await;
    let mut page = browser(&dir);
    sign_in(
        &mut page,
        &setup.gateway,
        "alice@127.0.0.1",
        "not the password",
    )
    .await;
    page.wait_text("#registration-state", "^failed$").await;
    let error = page.wait_text("#error", "refused").await;
    assert!(error.contains("401") || error.contains("403"), "{error}");
    page.screenshot(&screenshots().join("wrong-password.png"))
        .await;
    page.close().await;
}

#[tokio::test]
async fn a_gateway_that_goes_away_is_shown_and_reconnected() {
    let dir = TempDir::new();
    let Setup {
        kamailio, gateway, ..
    } = Setup::new(|_| {}).await;
    let addr = gateway.addr;
    let mut page = browser(&dir);
    sign_in(&mut page, &gateway, "alice@127.0.0.1", "alicepw").await;
    page.wait_text("#registration-state", "^registered$").await;
    gateway.stop().await;
    page.wait_text("#connection-state", "reconnecting").await;
    let error = page.wait_text("#error", "Lost the connection").await;
    assert!(error.contains("reconnecting"), "{error}");
    page.screenshot(&screenshots().join("reconnecting.png"))
        .await;
    // The same gateway address again: the page reconnects, adds the account and registers.
    let mut config = Config::default();
    config.http.listen = addr;
    config.sip.outbound_proxy = format!("sip:127.0.0.1:{}", kamailio.port);
    let again = Gateway::start_at(config).await;
    page.wait_text("#connection-state", "^ready$").await;
    page.wait_text("#registration-state", "^registered$").await;
    assert!(
        !page
            .command(json!({"do": "visible", "selector": "#error"}))
            .await
            .as_bool()
            .unwrap_or(true)
    );
    page.close().await;
    again.stop().await;
}

#[tokio::test]
async fn with_the_shipped_configuration_the_page_calls_echo_and_hears_itself() {
    let dir = TempDir::new();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config.toml");
    let (config, _) = Config::load(Some(&path)).expect("the shipped configuration");
    let gateway = Gateway::start(config).await;
    let mut page = browser(&dir);
    sign_in(&mut page, &gateway, "newcomer@local.test", "any password").await;
    page.wait_text("#registration-state", "^registered$").await;
    page.command(json!({"do": "fill", "selector": "#uri", "value": "echo"}))
        .await;
    page.command(json!({"do": "click", "selector": "#call"}))
        .await;
    page.wait_text("#call-state", "^established$").await;
    let heard = hears(&mut page, PAGE_TONE).await;
    assert!(near(heard, PAGE_TONE), "the page hears itself: {heard} Hz");
    page.screenshot(&screenshots().join("echo.png")).await;
    page.command(json!({"do": "click", "selector": "#hangup"}))
        .await;
    page.wait_text("#last-call", "ended").await;
    page.close().await;
    gateway.stop().await;
}

/// baresip's name (`name/sampling rate/channels`) for each codec the gateway relays, and the
/// name the page shows for it.
fn phone_codec(codec: &str) -> (&'static str, &'static str) {
    match codec.to_ascii_lowercase().as_str() {
        "opus" => ("opus/48000/2", "opus"),
        // G.722 samples at 16 kHz; its RTP clock is 8 kHz (RFC 3551).
        "g722" => ("G722/16000/1", "G722"),
        "pcmu" => ("PCMU/8000/1", "PCMU"),
        "pcma" => ("PCMA/8000/1", "PCMA"),
        other => panic!("no phone codec for {other}"),
    }
}

/// Every codec of the configured list, with a phone that has only that codec, carries the
/// tones both ways, whichever side calls: the page in chromium hears the phone's tone and the
/// phone's recording has the page's. G.722 was silent both ways.
#[tokio::test]
async fn every_configured_codec_carries_audio_both_ways_in_both_call_directions() {
    let dir = TempDir::new();
    let mut page = browser(&dir);
    for codec in Config::default().media.codecs {
        let (phone, shown) = phone_codec(&codec);
        let setup = Setup::new(|_| {}).await;
        let bob = setup.bob(phone, BOB_TONE);
        sign_in(&mut page, &setup.gateway, "alice@127.0.0.1", "alicepw").await;
        page.wait_text("#registration-state", "^registered$").await;

        page.command(json!({"do": "fill", "selector": "#uri", "value": "bob@127.0.0.1"}))
            .await;
        page.command(json!({"do": "click", "selector": "#call"}))
            .await;
        let call = format!("{codec}, the page calls");
        established_hearing_bob(&mut page, shown, &call).await;
        page.command(json!({"do": "click", "selector": "#hangup"}))
            .await;
        ended_with_bob_hearing_the_page(&mut page, &bob, 1, &call).await;

        setup.dial(&bob, "alice");
        page.command(json!({"do": "waitVisible", "selector": "#incoming"}))
            .await;
        page.command(json!({"do": "click", "selector": "#answer"}))
            .await;
        let call = format!("{codec}, bob calls");
        established_hearing_bob(&mut page, shown, &call).await;
        bob.command("hangup", "");
        ended_with_bob_hearing_the_page(&mut page, &bob, 2, &call).await;
        setup.assert_nothing_left().await;
    }
    page.close().await;
}

/// The call is established with the codec shown as `shown`, and the page hears bob's tone.
async fn established_hearing_bob(page: &mut Chromium, shown: &str, call: &str) {
    page.wait_text("#call-state", "^established$").await;
    page.wait_text("#stat-codec", shown).await;
    let heard = hears(page, BOB_TONE).await;
    assert!(near(heard, BOB_TONE), "{call}: the page hears {heard} Hz");
}

/// The call ends on both sides (bob's `closed`-th call), and bob's recording has the page's tone.
async fn ended_with_bob_hearing_the_page(
    page: &mut Chromium,
    bob: &gateway_tests::baresip::Baresip,
    closed: usize,
    call: &str,
) {
    page.wait_text("#last-call", "ended").await;
    assert!(bob.wait_for("CALL_CLOSED", closed, WAIT).await);
    let (tone, seconds) = bob.received_tone().expect("bob's recording");
    assert!(
        tone == PAGE_TONE && seconds > 1.0,
        "{call}: bob hears {tone} Hz for {seconds} s"
    );
}

/// Chromium offers audio and video to a phone that has only audio: the gateway's answer
/// declines the video with port 0, the offer's proto and one of the offer's own formats (strict
/// WebRTC stacks refuse an answer naming a format the offer did not have, and with it the
/// audio), and Chromium takes the answer.
#[tokio::test]
async fn declined_video_keeps_the_offers_proto_and_a_format_it_offered() {
    let dir = TempDir::new();
    let gateway = Gateway::start(crate::local::shipped()).await;
    let _bob = crate::local::phone(&gateway, "bob", "x", BOB_TONE).await;
    let mut client = crate::local::local_client(&gateway, "alice").await;
    let mut page = browser(&dir);
    page.command(json!({"do": "open", "url": format!("http://{}/", gateway.addr)}))
        .await;
    let offer = page
        .command(json!({"do": "evaluate", "expression": "(async () => {
            window.pc = new RTCPeerConnection();
            pc.addTransceiver('audio');
            pc.addTransceiver('video');
            await pc.setLocalDescription(await pc.createOffer());
            return pc.localDescription.sdp;
        })()"}))
        .await;
    let offer = offer.as_str().expect("an SDP offer").to_owned();
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-create",
            "account": format!("alice@{}", crate::local::DOMAIN), "session": "av",
            "uri": format!("bob@{}", crate::local::DOMAIN), "sdp": offer}))
        .await;
    let answer = crate::local::answered(&mut client, "av").await;
    let m_line = |sdp: &str| {
        sdp.lines()
            .find(|line| line.starts_with("m=video"))
            .map(|line| {
                line.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .expect("an m=video line")
    };
    let (offered, answered) = (m_line(&offer), m_line(&answer));
    assert_eq!(answered[1], "0", "declined: {answered:?}");
    assert_eq!(answered[2], offered[2], "the offer's proto");
    assert_eq!(answered.len(), 4, "one format: {answered:?}");
    assert!(
        offered[3..].contains(&answered[3]),
        "{answered:?} names a format of {offered:?}"
    );
    // Chromium takes the answer: audio both ways, the video transceiver stopped.
    let expression = format!(
        "(async () => {{ await pc.setRemoteDescription({{type: 'answer', sdp: {}}});
            const of = kind => pc.getTransceivers().find(t => t.receiver.track.kind === kind);
            const video = of('video');
            return {{audio: of('audio').currentDirection,
                     video: !video || video.stopped ? 'stopped' : video.currentDirection}}; }})()",
        serde_json::to_string(&answer).unwrap()
    );
    let directions = page
        .command(json!({"do": "evaluate", "expression": expression}))
        .await;
    assert_eq!(directions, json!({"audio": "sendrecv", "video": "stopped"}));
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "av"}))
        .await;
    page.close().await;
}

/// The web phone with its camera (Chromium's moving test picture) calls the echo test with
/// video: the picture comes back moving, the quality panel names the video codec; hold and
/// resume through sylkrtc.js's renegotiation, and the picture moves again; the camera turns
/// off and on; the screen is shared instead of the camera and the camera comes back.
#[tokio::test]
async fn the_web_phone_makes_a_video_call_holds_it_and_shares_the_screen() {
    use crate::video::{video_stats, wait_for_frames, watch_moving};
    let dir = TempDir::new();
    let gateway = Gateway::start(crate::local::shipped()).await;
    let mut page = browser(&dir);
    sign_in(&mut page, &gateway, "alice@local.test", "anything").await;
    page.wait_text("#registration-state", "^registered$").await;
    page.command(json!({"do": "fill", "selector": "#uri", "value": "echo"}))
        .await;
    page.command(json!({"do": "click", "selector": "#with-video"}))
        .await;
    page.command(json!({"do": "click", "selector": "#call"}))
        .await;
    page.wait_text("#call-state", "^established$").await;
    let pc = "phone.call";
    wait_for_frames(&mut page, pc).await;
    watch_moving(&mut page, pc, 5).await;
    page.wait_text("#stat-video", "^VP8 \\d+x\\d+").await;
    assert!(
        page.command(json!({"do": "visible", "selector": "#local-video"}))
            .await
            == json!(true)
    );
    page.screenshot(&screenshots().join("video-call.png")).await;

    // Hold: the call's state says so, and no frozen far-end picture stays shown; resume: the
    // picture is back and moves again.
    let remote_shown = json!({"do": "visible", "selector": "#remote-video"});
    assert_eq!(page.command(remote_shown.clone()).await, json!(true));
    page.command(json!({"do": "click", "selector": "#hold"}))
        .await;
    page.wait_text("#call-state", "^on hold$").await;
    page.wait_text("#hold", "^Resume$").await;
    assert_eq!(page.command(remote_shown.clone()).await, json!(false));
    page.command(json!({"do": "click", "selector": "#hold"}))
        .await;
    page.wait_text("#hold", "^Hold$").await;
    assert_eq!(page.command(remote_shown).await, json!(true));
    tokio::time::sleep(Duration::from_millis(500)).await;
    watch_moving(&mut page, pc, 3).await;

    // Camera off and on.
    page.command(json!({"do": "click", "selector": "#camera"}))
        .await;
    page.wait_text("#camera", "^Camera on$").await;
    page.command(json!({"do": "click", "selector": "#camera"}))
        .await;
    page.wait_text("#camera", "^Camera off$").await;

    // The screen instead of the camera, and back.
    page.command(json!({"do": "click", "selector": "#share-screen"}))
        .await;
    page.wait_text("#share-screen", "^Stop sharing$").await;
    let sharing = page
        .command(json!({"do": "evaluate", "expression":
            "phone.call._pc.getSenders().find(s => s.track && s.track.kind === 'video').track.label"}))
        .await;
    eprintln!("sending {sharing}");
    watch_moving(&mut page, pc, 3).await;
    page.command(json!({"do": "click", "selector": "#share-screen"}))
        .await;
    page.wait_text("#share-screen", "^Share screen$").await;
    let stats = video_stats(&mut page, pc).await;
    assert_eq!(stats.codec, "video/VP8");
    page.command(json!({"do": "click", "selector": "#hangup"}))
        .await;
    page.wait_text("#last-call", "ended").await;
    page.close().await;
    crate::video::nothing_left(&gateway).await;
}

/// The web phone in an audio call with a phone that has no video asks to add video: the phone
/// answers the re-INVITE without video, the page says the other side does not take video, and
/// the call goes on with its audio.
#[tokio::test]
async fn adding_video_to_a_call_with_an_audio_phone_is_declined_and_the_call_goes_on() {
    let dir = TempDir::new();
    let gateway = Gateway::start(crate::local::shipped()).await;
    let bob = crate::local::phone(&gateway, "bob", "x", BOB_TONE).await;
    let mut page = browser(&dir);
    sign_in(&mut page, &gateway, "alice@local.test", "anything").await;
    page.wait_text("#registration-state", "^registered$").await;
    page.command(json!({"do": "fill", "selector": "#uri", "value": "bob"}))
        .await;
    page.command(json!({"do": "click", "selector": "#call"}))
        .await;
    page.wait_text("#call-state", "^established$").await;
    page.command(json!({"do": "click", "selector": "#add-video"}))
        .await;
    let error = page.wait_text("#error", "video").await;
    assert!(error.contains("does not take video"), "{error}");
    page.wait_text("#call-state", "^established$").await;
    let heard = hears(&mut page, BOB_TONE).await;
    assert!(near(heard, BOB_TONE), "the page still hears {heard} Hz");
    page.command(json!({"do": "click", "selector": "#hangup"}))
        .await;
    page.wait_text("#last-call", "ended").await;
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    page.close().await;
}
