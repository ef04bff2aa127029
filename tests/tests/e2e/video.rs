//! Video through the gateway with Chromium's fake camera (a moving test pattern): the picture
//! must keep moving. Chromium's own statistics say so: frames decoded keep rising, and its
//! freeze counter (a frame later than three times the average frame gap, or 150 ms past it)
//! stays near zero.

use std::time::Duration;

use gateway_tests::TempDir;
use gateway_tests::chromium::Chromium;
use serde_json::{Value, json};

use crate::local::{DOMAIN, answered, create_session, local_client, shipped};

/// Chromium with its fake camera and microphone.
pub(crate) fn browser(dir: &TempDir) -> Chromium {
    let wav = dir.path().join("microphone.wav");
    let mut tone = gateway_tests::audio::Tone::new(440.0, 48_000);
    gateway_tests::audio::write_wav(&wav, &tone.samples(48_000 * 30), 48_000)
        .expect("write the microphone's tone");
    Chromium::start(&wav)
}

/// Makes the peer connection `window[pc]` with the camera and microphone, and returns its
/// offer.
pub(crate) async fn camera_offer(page: &mut Chromium, pc: &str) -> String {
    let expression = format!(
        "(async () => {{
            const pc = window.{pc} = new RTCPeerConnection();
            const media = await navigator.mediaDevices.getUserMedia(
                {{audio: true, video: {{width: 640, height: 480, frameRate: 30}}}});
            for (const track of media.getTracks()) pc.addTrack(track, media);
            await pc.setLocalDescription(await pc.createOffer());
            return pc.localDescription.sdp;
        }})()"
    );
    let offer = page
        .command(json!({"do": "evaluate", "expression": expression}))
        .await;
    offer.as_str().expect("an SDP offer").to_owned()
}

/// Gives `window[pc]` the answer.
pub(crate) async fn take_answer(page: &mut Chromium, pc: &str, answer: &str) {
    let expression = format!(
        "(async () => {{ await {pc}.setRemoteDescription({{type: 'answer', sdp: {}}}); return null; }})()",
        serde_json::to_string(answer).unwrap()
    );
    page.command(json!({"do": "evaluate", "expression": expression}))
        .await;
}

/// What Chromium says of the video it receives and sends.
#[derive(Debug, Clone, Default)]
pub(crate) struct VideoStats {
    pub(crate) frames_decoded: u64,
    pub(crate) freezes_seconds: f64,
    pub(crate) packets_lost: i64,
    pub(crate) nacks_sent: u64,
    pub(crate) nacks_received: u64,
    pub(crate) retransmitted_sent: u64,
    pub(crate) retransmitted_received: u64,
    pub(crate) codec: String,
}

/// Reads `window[pc]`'s video statistics.
pub(crate) async fn video_stats(page: &mut Chromium, pc: &str) -> VideoStats {
    let expression = format!(
        "(async () => {{
            const out = {{}};
            const report = await {pc}.getStats();
            report.forEach(s => {{
                if (s.kind !== 'video') return;
                if (s.type === 'inbound-rtp') {{
                    out.framesDecoded = s.framesDecoded || 0;
                    out.freezeCount = s.freezeCount || 0;
                    out.totalFreezesDuration = s.totalFreezesDuration || 0;
                    out.packetsLost = s.packetsLost || 0;
                    out.packetsReceived = s.packetsReceived || 0;
                    out.nackSent = s.nackCount || 0;
                    out.retransmittedReceived = s.retransmittedPacketsReceived || 0;
                    const codec = report.get(s.codecId);
                    out.codec = codec ? codec.mimeType : '';
                }}
                if (s.type === 'outbound-rtp') {{
                    out.framesSent = s.framesSent || 0;
                    out.nackReceived = s.nackCount || 0;
                    out.retransmittedSent = s.retransmittedPacketsSent || 0;
                }}
            }});
            return out;
        }})()"
    );
    let stats: Value = page
        .command(json!({"do": "evaluate", "expression": expression}))
        .await;
    let number = |key: &str| stats[key].as_f64().unwrap_or(0.0);
    VideoStats {
        frames_decoded: number("framesDecoded") as u64,
        freezes_seconds: number("totalFreezesDuration"),
        packets_lost: number("packetsLost") as i64,
        nacks_sent: number("nackSent") as u64,
        nacks_received: number("nackReceived") as u64,
        retransmitted_sent: number("retransmittedSent") as u64,
        retransmitted_received: number("retransmittedReceived") as u64,
        codec: stats["codec"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Watches the received video for `seconds`, a second at a time: frames decoded must rise
/// every second (no freeze of 1 s or more); returns the statistics at the end.
pub(crate) async fn watch_moving(page: &mut Chromium, pc: &str, seconds: u32) -> VideoStats {
    let mut last = video_stats(page, pc).await;
    for second in 0..seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = video_stats(page, pc).await;
        assert!(
            now.frames_decoded > last.frames_decoded,
            "the picture stood still in second {second}: {now:?}"
        );
        last = now;
    }
    last
}

/// Waits until the received video has decoded some frames (media flowing).
pub(crate) async fn wait_for_frames(page: &mut Chromium, pc: &str) -> VideoStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let stats = video_stats(page, pc).await;
        if stats.frames_decoded > 10 {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no video decoded in 15 s: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A browser calls the echo test with its camera: it sees its own picture move for 20 s, with
/// no freeze.
#[tokio::test]
async fn the_echo_test_returns_the_cameras_picture_moving() {
    let dir = TempDir::new();
    let gateway = gateway_tests::Gateway::start(shipped()).await;
    let mut client = local_client(&gateway, "alice").await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = camera_offer(&mut page, "pc").await;
    create_session(&mut client, "echo", &format!("echo@{DOMAIN}"), &offer).await;
    let answer = answered(&mut client, "echo").await;
    take_answer(&mut page, "pc", &answer).await;
    let start = wait_for_frames(&mut page, "pc").await;
    let end = watch_moving(&mut page, "pc", 20).await;
    let frames = end.frames_decoded - start.frames_decoded;
    eprintln!("echo video: {frames} frames in 20 s, {end:?}");
    assert!(frames > 200, "{frames} frames in 20 s: {end:?}");
    assert!(
        end.freezes_seconds < 1.0,
        "frozen for {} s: {end:?}",
        end.freezes_seconds
    );
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "echo"}))
        .await;
    page.close().await;
}

/// Makes `window[pc]` with the camera and microphone, answering `offer`; returns the answer.
pub(crate) async fn camera_answer(page: &mut Chromium, pc: &str, offer: &str) -> String {
    let expression = format!(
        "(async () => {{
            const pc = window.{pc} = new RTCPeerConnection();
            const media = await navigator.mediaDevices.getUserMedia(
                {{audio: true, video: {{width: 640, height: 480, frameRate: 30}}}});
            await pc.setRemoteDescription({{type: 'offer', sdp: {}}});
            for (const track of media.getTracks()) pc.addTrack(track, media);
            await pc.setLocalDescription(await pc.createAnswer());
            return pc.localDescription.sdp;
        }})()",
        serde_json::to_string(offer).unwrap()
    );
    let answer = page
        .command(json!({"do": "evaluate", "expression": expression}))
        .await;
    answer.as_str().expect("an SDP answer").to_owned()
}

/// The browser hangs up its `session` with `phone`: the phone hears it, and nothing is left.
pub(crate) async fn hang_up_on_phone(
    client: &mut gateway_tests::Client,
    session: &str,
    phone: &gateway_tests::baresip::Baresip,
    page: Chromium,
    gateway: &gateway_tests::Gateway,
) {
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": session}))
        .await;
    assert!(
        phone
            .wait_for("CALL_CLOSED", 1, Duration::from_secs(15))
            .await,
        "the phone hears the hang-up:\n{}",
        phone.log.text()
    );
    page.close().await;
    nothing_left(gateway).await;
}

/// `phone` calls alice, whose browser (`page`, its peer `pc`) answers with its camera and
/// decodes the phone's first frames: the session and the offer the browser got.
pub(crate) async fn phone_calls_browser(
    client: &mut gateway_tests::Client,
    page: &mut Chromium,
    phone: &gateway_tests::baresip::Baresip,
) -> (String, String) {
    phone.command("dial", &format!("sip:alice@{DOMAIN}"));
    let (session, offer) = crate::fork::incoming(client).await;
    let answer = camera_answer(page, "pc", &offer).await;
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-answer", "session": session, "sdp": answer}),
        )
        .await;
    wait_for_frames(page, "pc").await;
    (session, offer)
}

/// A baresip phone of the local domain with video (VP8 and VP9 in `codecs`' order).
pub(crate) async fn video_phone(
    gateway: &gateway_tests::Gateway,
    user: &str,
    codecs: &str,
) -> gateway_tests::baresip::Baresip {
    video_phone_with(gateway, user, codecs, "").await
}

/// As [`video_phone`], with more account parameters (`;mediaenc=dtls_srtp`).
pub(crate) async fn video_phone_with(
    gateway: &gateway_tests::Gateway,
    user: &str,
    codecs: &str,
    extra: &str,
) -> gateway_tests::baresip::Baresip {
    let account = format!(
        "<sip:{user}@{DOMAIN};transport=udp>;outbound=\"sip:127.0.0.1:{};transport=udp\";auth_pass=x;answermode=auto;audio_codecs=PCMU/8000/1;video_codecs={codecs};regint=300{extra}\n",
        gateway.sip.0.port()
    );
    let phone = gateway_tests::baresip::Baresip::start_video(&account, 1000.0);
    assert!(
        phone.wait_log("200 OK", Duration::from_secs(15)).await,
        "the phone registers at the gateway:\n{}",
        phone.log.text()
    );
    phone
}

/// Asks baresip for a snapshot of the next frame it receives and waits for the picture: the
/// phone decodes the browser's video.
pub(crate) async fn phone_sees_video(
    phone: &gateway_tests::baresip::Baresip,
    dir: &TempDir,
    name: &str,
) {
    let path = dir.path().join(format!("{name}.png"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        phone.command("snapshot_recv", &path.display().to_string());
        tokio::time::sleep(Duration::from_millis(500)).await;
        if std::fs::metadata(&path).is_ok_and(|meta| meta.len() > 100) {
            return;
        }
    }
    panic!("the phone decoded no video:\n{}", phone.log.text());
}

/// The phone decodes the browser's video (a snapshot of what it receives), or for VP9 receives
/// it: Chromium sends VP9 in flexible mode, whose payload descriptor baresip's VP9 module does
/// not read ("F-bit not supported"), and the gateway relays without transcoding.
async fn phone_takes_video(
    phone: &gateway_tests::baresip::Baresip,
    dir: &TempDir,
    codec: &str,
    name: &str,
) {
    if codec == "VP9" {
        assert!(
            phone
                .wait_log(
                    "incoming rtp for 'video' established",
                    Duration::from_secs(15)
                )
                .await,
            "the phone receives no video:\n{}",
            phone.log.text()
        );
    } else {
        phone_sees_video(phone, dir, name).await;
    }
}

/// A browser with its camera calls a video phone offering only `codec` and is called by it:
/// each side sees the other's picture, the browser's moving for 10 s without a freeze.
async fn a_browser_and_a_video_phone_see_each_other(codec: &str) {
    let dir = TempDir::new();
    let gateway = gateway_tests::Gateway::start(shipped()).await;
    let bob = video_phone(&gateway, "bob", codec).await;
    let mut client = local_client(&gateway, "alice").await;
    let mut page = page_at(&dir, &gateway).await;
    let mime = format!("video/{codec}");

    // The browser calls the phone.
    let offer = camera_offer(&mut page, "pc").await;
    create_session(&mut client, "to-bob", &format!("bob@{DOMAIN}"), &offer).await;
    let answer = answered(&mut client, "to-bob").await;
    assert!(answer.contains(&format!("{codec}/90000")), "{answer}");
    take_answer(&mut page, "pc", &answer).await;
    wait_for_frames(&mut page, "pc").await;
    let stats = watch_moving(&mut page, "pc", 10).await;
    eprintln!("{codec}, the browser calls: {stats:?}");
    assert_eq!(stats.codec, mime);
    phone_takes_video(&bob, &dir, codec, "from-browser").await;
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "to-bob"}))
        .await;
    assert!(
        bob.wait_for("CALL_CLOSED", 1, Duration::from_secs(15))
            .await
    );

    // The phone calls the browser.
    let (_, offer) = phone_calls_browser(&mut client, &mut page, &bob).await;
    assert!(offer.contains(&format!("{codec}/90000")), "{offer}");
    let stats = watch_moving(&mut page, "pc", 10).await;
    eprintln!("{codec}, the phone calls: {stats:?}");
    assert_eq!(stats.codec, mime);
    phone_takes_video(&bob, &dir, codec, "to-browser").await;
    bob.command("hangup", "");
    assert!(
        bob.wait_for("CALL_CLOSED", 2, Duration::from_secs(15))
            .await
    );
    page.close().await;
    nothing_left(&gateway).await;
}

#[tokio::test]
async fn a_browser_and_a_vp8_phone_see_each_other_both_ways() {
    a_browser_and_a_video_phone_see_each_other("VP8").await;
}

#[tokio::test]
async fn a_browser_and_a_vp9_phone_see_each_other_both_ways() {
    a_browser_and_a_video_phone_see_each_other("VP9").await;
}

#[tokio::test]
async fn a_browser_and_an_h264_phone_see_each_other_both_ways() {
    a_browser_and_a_video_phone_see_each_other("H264").await;
}

/// Waits for the gateway to have no call and no media port left.
pub(crate) async fn nothing_left(gateway: &gateway_tests::Gateway) {
    for _ in 0..50 {
        if gateway.metric("sylkrtc_calls").await == 0.0
            && gateway.metric("sylkrtc_media_ports").await == 0.0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "left behind: {} calls, {} media ports",
        gateway.metric("sylkrtc_calls").await,
        gateway.metric("sylkrtc_media_ports").await
    );
}

/// Two browsers of the local domain (two peer connections of one Chromium, each with its own
/// signalling connection) call each other with their cameras: each sees the other's picture
/// move for 10 s, through two relays bridged inside the gateway, with 5% of the media lost
/// each way on the caller's browser leg (its relay answers its NACKs with RTX).
#[tokio::test]
async fn two_browsers_see_each_other_through_the_gateway() {
    let dir = TempDir::new();
    let gateway = gateway_tests::Gateway::start(shipped()).await;
    let mut alice = local_client(&gateway, "alice").await;
    let mut bob = local_client(&gateway, "bob").await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = camera_offer(&mut page, "alice").await;
    create_session(&mut alice, "to-bob", &format!("bob@{DOMAIN}"), &offer).await;
    let (session, offer) = crate::fork::incoming(&mut bob).await;
    assert!(offer.contains("m=video"), "{offer}");
    let answer = camera_answer(&mut page, "bob", &offer).await;
    bob.expect_ack_amid_events(
        json!({"sylkrtc": "session-answer", "session": session, "sdp": answer}),
    )
    .await;
    let answer = answered(&mut alice, "to-bob").await;
    let media = candidate(&answer);
    let shim = lossy_shim(media, 20).await;
    take_answer(
        &mut page,
        "alice",
        &candidates_through(&answer, media, shim),
    )
    .await;
    wait_for_frames(&mut page, "alice").await;
    wait_for_frames(&mut page, "bob").await;
    let seen_by_alice = watch_moving(&mut page, "alice", 10).await;
    let seen_by_bob = watch_moving(&mut page, "bob", 2).await;
    eprintln!("alice sees {seen_by_alice:?}, bob sees {seen_by_bob:?}");
    assert_eq!(seen_by_alice.codec, seen_by_bob.codec);
    assert!(seen_by_alice.freezes_seconds < 2.0, "{seen_by_alice:?}");
    assert!(
        seen_by_alice.retransmitted_received > 0,
        "alice's NACKs got no RTX: {seen_by_alice:?}"
    );
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "to-bob"}))
        .await;
    page.close().await;
    nothing_left(&gateway).await;
}

/// A UDP shim in front of the gateway's browser port that drops one in `every` RTP and RTCP
/// datagram each way (never STUN or DTLS, so that the call is set up), as a lossy Wi-Fi link
/// on the browser leg alone would. Returns its address.
async fn lossy_shim(gateway_port: std::net::SocketAddr, every: u64) -> std::net::SocketAddr {
    let socket = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    let upstream = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    upstream.connect(gateway_port).await.unwrap();
    let browser = std::sync::Arc::new(std::sync::Mutex::new(None::<std::net::SocketAddr>));
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let media = |data: &[u8]| data.first().is_some_and(|byte| (128..192).contains(byte));
    {
        let (socket, upstream, browser, counter) = (
            socket.clone(),
            upstream.clone(),
            browser.clone(),
            counter.clone(),
        );
        tokio::spawn(async move {
            let mut buffer = vec![0; 2048];
            while let Ok((length, from)) = socket.recv_from(&mut buffer).await {
                *browser.lock().unwrap() = Some(from);
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if media(&buffer[..length]) && n % every == every / 2 {
                    continue;
                }
                let _ = upstream.send(&buffer[..length]).await;
            }
        });
    }
    tokio::spawn(async move {
        let mut buffer = vec![0; 2048];
        while let Ok(length) = upstream.recv(&mut buffer).await {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if media(&buffer[..length]) && n % every == every / 2 {
                continue;
            }
            let to = *browser.lock().unwrap();
            if let Some(to) = to {
                let _ = socket.send_to(&buffer[..length], to).await;
            }
        }
    });
    addr
}

/// The gateway's ICE candidate in a description.
fn candidate(sdp: &str) -> std::net::SocketAddr {
    let line = sdp
        .lines()
        .find(|line| line.starts_with("a=candidate"))
        .expect("a candidate");
    let fields: Vec<&str> = line.split_whitespace().collect();
    format!("{}:{}", fields[4], fields[5])
        .parse()
        .expect("an address")
}

/// The answer with its ICE candidates moved to `to` (the lossy shim).
fn candidates_through(
    answer: &str,
    from: std::net::SocketAddr,
    to: std::net::SocketAddr,
) -> String {
    answer.replace(
        &format!("{} {} typ", from.ip(), from.port()),
        &format!("{} {} typ", to.ip(), to.port()),
    )
}

/// With 5% of the media datagrams lost each way on the browser leg, the echo test's picture
/// keeps moving: the browser's NACKs are answered with RTX from what was sent, and the
/// browser's own losses are asked again.
#[tokio::test]
async fn the_picture_keeps_moving_with_five_percent_loss_on_the_browser_leg() {
    let dir = TempDir::new();
    let gateway = gateway_tests::Gateway::start(shipped()).await;
    let mut client = local_client(&gateway, "alice").await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = camera_offer(&mut page, "pc").await;
    create_session(&mut client, "echo", &format!("echo@{DOMAIN}"), &offer).await;
    let answer = answered(&mut client, "echo").await;
    let media = candidate(&answer);
    let shim = lossy_shim(media, 20).await;
    let answer = candidates_through(&answer, media, shim);
    assert!(answer.contains(&shim.port().to_string()), "{answer}");
    take_answer(&mut page, "pc", &answer).await;
    let start = wait_for_frames(&mut page, "pc").await;
    let end = watch_moving(&mut page, "pc", 20).await;
    eprintln!("with loss: {end:?}");
    assert!(end.frames_decoded - start.frames_decoded > 150, "{end:?}");
    assert!(end.freezes_seconds < 2.0, "{end:?}");
    assert!(end.packets_lost > 0, "the shim lost nothing: {end:?}");
    assert!(end.nacks_sent > 0 && end.nacks_received > 0, "{end:?}");
    assert!(
        end.retransmitted_sent > 0,
        "the browser resent nothing: {end:?}"
    );
    assert!(
        end.retransmitted_received > 0,
        "the browser's NACKs got no RTX: {end:?}"
    );
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "echo"}))
        .await;
    page.close().await;
}

/// Sets every transceiver of `window[pc]` to `direction` and returns the new offer.
pub(crate) async fn offer_with_direction(page: &mut Chromium, pc: &str, direction: &str) -> String {
    let expression = format!(
        "(async () => {{
            for (const t of {pc}.getTransceivers()) t.direction = '{direction}';
            await {pc}.setLocalDescription(await {pc}.createOffer());
            return {pc}.localDescription.sdp;
        }})()"
    );
    let offer = page
        .command(json!({"do": "evaluate", "expression": expression}))
        .await;
    offer.as_str().expect("an SDP offer").to_owned()
}

/// `window[pc]` answers the far end's new offer; returns the answer.
pub(crate) async fn answer_remote_offer(page: &mut Chromium, pc: &str, offer: &str) -> String {
    let expression = format!(
        "(async () => {{
            await {pc}.setRemoteDescription({{type: 'offer', sdp: {}}});
            await {pc}.setLocalDescription(await {pc}.createAnswer());
            return {pc}.localDescription.sdp;
        }})()",
        serde_json::to_string(offer).unwrap()
    );
    let answer = page
        .command(json!({"do": "evaluate", "expression": expression}))
        .await;
    answer.as_str().expect("an SDP answer").to_owned()
}

/// The next `update` of `session`.
pub(crate) async fn update_of(
    client: &mut gateway_tests::Client,
    session: &str,
) -> protocol::UpdateState {
    loop {
        if let protocol::ServerMessage::Event(protocol::Event::Session {
            session: updated,
            event: protocol::SessionEvent::Update(update),
        }) = crate::calls::next(client).await
            && updated == session
        {
            return update;
        }
    }
}

/// The browser's `session-update` with `offer`, and the answer it gets.
pub(crate) async fn update(
    client: &mut gateway_tests::Client,
    session: &str,
    offer: &str,
) -> String {
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": session, "sdp": offer}),
        )
        .await;
    match update_of(client, session).await {
        protocol::UpdateState::Accepted { sdp } => sdp,
        other => panic!("the update is not accepted: {other:?}"),
    }
}

/// A video call with a phone is held and resumed from the browser, then from the phone: each
/// time both m-lines change direction on both sides, and after each resume the browser's
/// picture moves again (a keyframe is asked for after every new description).
#[tokio::test]
async fn a_video_call_is_held_and_resumed_from_each_side() {
    let dir = TempDir::new();
    let gateway = gateway_tests::Gateway::start(shipped()).await;
    let bob = video_phone(&gateway, "bob", "VP8").await;
    let mut client = local_client(&gateway, "alice").await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = camera_offer(&mut page, "pc").await;
    create_session(&mut client, "hold", &format!("bob@{DOMAIN}"), &offer).await;
    let answer = answered(&mut client, "hold").await;
    take_answer(&mut page, "pc", &answer).await;
    wait_for_frames(&mut page, "pc").await;

    // The browser holds: both of its m-lines sendonly, answered recvonly.
    let hold = offer_with_direction(&mut page, "pc", "sendonly").await;
    let answer = update(&mut client, "hold", &hold).await;
    assert_eq!(answer.matches("a=recvonly").count(), 2, "{answer}");
    take_answer(&mut page, "pc", &answer).await;
    // And resumes.
    let resume = offer_with_direction(&mut page, "pc", "sendrecv").await;
    let answer = update(&mut client, "hold", &resume).await;
    assert_eq!(answer.matches("a=sendrecv").count(), 2, "{answer}");
    take_answer(&mut page, "pc", &answer).await;
    watch_moving(&mut page, "pc", 5).await;

    // The phone holds (its offer says sendonly): the browser is offered both m-lines sendonly
    // (it gets what the phone still sends, and sends nothing), and answers.
    bob.command("hold", "");
    let protocol::UpdateState::Received { sdp: offer } = update_of(&mut client, "hold").await
    else {
        panic!("the phone's hold reaches the browser");
    };
    assert_eq!(offer.matches("a=sendonly").count(), 2, "{offer}");
    let answer = answer_remote_offer(&mut page, "pc", &offer).await;
    assert_eq!(answer.matches("a=recvonly").count(), 2, "{answer}");
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": "hold", "sdp": answer}),
        )
        .await;
    bob.command("resume", "");
    let protocol::UpdateState::Received { sdp: offer } = update_of(&mut client, "hold").await
    else {
        panic!("the phone's resume reaches the browser");
    };
    assert_eq!(offer.matches("a=sendrecv").count(), 2, "{offer}");
    let answer = answer_remote_offer(&mut page, "pc", &offer).await;
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": "hold", "sdp": answer}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    watch_moving(&mut page, "pc", 5).await;
    phone_sees_video(&bob, &dir, "after-resume").await;
    hang_up_on_phone(&mut client, "hold", &bob, page, &gateway).await;
}

/// Two video phones of the local domain call each other (VP8): each decodes the other's
/// picture, through two video legs of the gateway (four port pairs during the call, none
/// after).
#[tokio::test]
async fn two_video_phones_see_each_other_through_the_gateway() {
    let dir = TempDir::new();
    let gateway = gateway_tests::Gateway::start(shipped()).await;
    let carol = video_phone(&gateway, "carol", "VP8").await;
    let dave = video_phone(&gateway, "dave", "VP8").await;
    carol.command("dial", &format!("sip:dave@{DOMAIN}"));
    let wait = Duration::from_secs(15);
    assert!(
        carol.wait_for("CALL_ESTABLISHED", 1, wait).await,
        "{}",
        carol.log.text()
    );
    assert!(dave.wait_for("CALL_ESTABLISHED", 1, wait).await);
    assert_eq!(gateway.metric("sylkrtc_media_ports").await, 4.0 * 2.0);
    phone_sees_video(&carol, &dir, "carol").await;
    phone_sees_video(&dave, &dir, "dave").await;
    carol.command("hangup", "");
    assert!(dave.wait_for("CALL_CLOSED", 1, wait).await);
    nothing_left(&gateway).await;
}

/// A video phone that asks for keyframes by SIP INFO (`picture_fast_update`, its feedback
/// listing neither PLI nor FIR): the INFO is answered 200 and becomes a PLI toward the
/// browser, whose encoder counts it.
#[tokio::test]
async fn a_picture_fast_update_info_asks_the_browser_for_a_keyframe() {
    let dir = TempDir::new();
    let (gateway, mut client, sipp) = through_sipp("uas_video_pfu.xml").await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = camera_offer(&mut page, "pc").await;
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-create",
            "account": "alice@127.0.0.1", "session": "pfu",
            "uri": "callee@127.0.0.1", "sdp": offer}))
        .await;
    let answer = answered(&mut client, "pfu").await;
    assert!(answer.contains("VP8/90000"), "{answer}");
    take_answer(&mut page, "pc", &answer).await;
    // The relay asks for a keyframe once media starts; the INFO comes 4 s after the answer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = plis(&mut page).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut count = before;
    while count == before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        count = plis(&mut page).await;
    }
    assert!(
        count > before,
        "no PLI reached the browser after the INFO ({before} before)"
    );
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "pfu"}))
        .await;
    crate::sipp_calls::sipp_done(sipp).await;
    page.close().await;
    nothing_left(&gateway).await;
}

/// The PLIs `window.pc`'s video sender has received.
async fn plis(page: &mut Chromium) -> u64 {
    let expression = "(async () => { let n = 0; (await pc.getStats()).forEach(s => {
        if (s.type === 'outbound-rtp' && s.kind === 'video') n = s.pliCount || 0; }); return n; })()";
    page.command(json!({"do": "evaluate", "expression": expression}))
        .await
        .as_u64()
        .unwrap_or(0)
}

/// The web phone calls a video phone with audio alone, then adds its camera (sylkrtc.js
/// `addVideo`): the phone gets a re-INVITE with video on a new port pair and answers it, the
/// page sees the phone's picture move and the phone decodes the page's.
#[tokio::test]
async fn the_web_phone_adds_video_to_an_audio_call() {
    let dir = TempDir::new();
    let gateway = gateway_tests::Gateway::start(shipped()).await;
    let bob = video_phone(&gateway, "bob", "VP8").await;
    let mut page = page_at(&dir, &gateway).await;
    page.command(json!({"do": "fill", "selector": "#account", "value": "alice@local.test"}))
        .await;
    page.command(json!({"do": "fill", "selector": "#password", "value": "x"}))
        .await;
    page.command(json!({"do": "click", "selector": "#sign-in-button"}))
        .await;
    page.wait_text("#registration-state", "^registered$").await;
    page.command(json!({"do": "fill", "selector": "#uri", "value": "bob"}))
        .await;
    page.command(json!({"do": "click", "selector": "#call"}))
        .await;
    page.wait_text("#call-state", "^established$").await;
    assert_eq!(gateway.metric("sylkrtc_media_ports").await, 2.0);
    page.command(json!({"do": "click", "selector": "#add-video"}))
        .await;
    let pc = "phone.call";
    wait_for_frames(&mut page, pc).await;
    let stats = watch_moving(&mut page, pc, 5).await;
    assert_eq!(stats.codec, "video/VP8");
    assert_eq!(gateway.metric("sylkrtc_media_ports").await, 4.0);
    phone_sees_video(&bob, &dir, "added").await;
    let error = page
        .command(json!({"do": "text", "selector": "#error"}))
        .await;
    assert!(
        !error.as_str().unwrap_or_default().contains("video"),
        "{error}"
    );
    page.command(json!({"do": "click", "selector": "#hangup"}))
        .await;
    page.wait_text("#last-call", "ended").await;
    assert!(
        bob.wait_for("CALL_CLOSED", 1, Duration::from_secs(15))
            .await
    );
    page.close().await;
    nothing_left(&gateway).await;
}

/// A phone in an audio call adds video with a re-INVITE: the gateway takes a video port pair,
/// offers the browser a video m-line in the phone's format (`update` `received`), and once the
/// browser answered gives the phone a 200 whose video is not declined (sipp checks it).
#[tokio::test]
async fn a_phone_adds_video_to_an_audio_call() {
    let dir = TempDir::new();
    let (gateway, mut client, sipp) = through_sipp("uas_adds_video.xml").await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = page
        .command(json!({"do": "evaluate", "expression": "(async () => {
            window.pc = new RTCPeerConnection();
            const media = await navigator.mediaDevices.getUserMedia({audio: true});
            for (const track of media.getTracks()) pc.addTrack(track, media);
            await pc.setLocalDescription(await pc.createOffer());
            return pc.localDescription.sdp;
        })()"}))
        .await;
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-create",
            "account": "alice@127.0.0.1", "session": "adds",
            "uri": "callee@127.0.0.1", "sdp": offer}))
        .await;
    let answer = answered(&mut client, "adds").await;
    assert!(!answer.contains("m=video"), "{answer}");
    take_answer(&mut page, "pc", &answer).await;
    let protocol::UpdateState::Received { sdp: offer } = update_of(&mut client, "adds").await
    else {
        panic!("the phone's video reaches the browser as an offer");
    };
    assert!(offer.contains("m=video 9"), "{offer}");
    assert!(
        offer.contains("VP8/90000") && !offer.contains("VP9/90000"),
        "{offer}"
    );
    let answer = answer_remote_offer(&mut page, "pc", &offer).await;
    assert!(answer.contains("m=video 9"), "{answer}");
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": "adds", "sdp": answer}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gateway.metric("sylkrtc_media_ports").await, 4.0);
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "adds"}))
        .await;
    crate::sipp_calls::sipp_done(sipp).await;
    page.close().await;
    nothing_left(&gateway).await;
}

/// A gateway whose calls go to sipp playing `scenario`, and a client with alice added.
async fn through_sipp(
    scenario: &str,
) -> (
    gateway_tests::Gateway,
    gateway_tests::Client,
    tokio::process::Child,
) {
    through_sipp_with(scenario, &[], gateway::Config::default()).await
}

/// As [`through_sipp`], with more arguments for sipp and the gateway's configuration.
pub(crate) async fn through_sipp_with(
    scenario: &str,
    extra: &[&str],
    mut config: gateway::Config,
) -> (
    gateway_tests::Gateway,
    gateway_tests::Client,
    tokio::process::Child,
) {
    let (port, sipp) = crate::sipp_calls::sipp_uas_with(scenario, extra);
    config.sip.outbound_proxy = format!("sip:127.0.0.1:{port}");
    let gateway = gateway_tests::Gateway::start(config).await;
    let mut client = gateway.client().await;
    let ha1 = sip::ha1("alice", "127.0.0.1", "alicepw");
    client
        .expect_ack(
            json!({"sylkrtc": "account-add", "account": "alice@127.0.0.1", "password": ha1}),
        )
        .await;
    (gateway, client, sipp)
}

/// Chromium with its fake camera, on the gateway's page (so that its scripts run from there).
pub(crate) async fn page_at(dir: &TempDir, gateway: &gateway_tests::Gateway) -> Chromium {
    let mut page = browser(dir);
    page.command(json!({"do": "open", "url": format!("http://{}/", gateway.addr)}))
        .await;
    page
}
