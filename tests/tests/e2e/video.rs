//! Video through the gateway with Chromium's fake camera (a moving test pattern): the picture
//! must keep moving. Chromium's own statistics say so: frames decoded keep rising, and its
//! freeze counter (a frame later than three times the average frame gap, or 150 ms past it)
//! stays near zero.

use std::time::Duration;

use gateway_tests::TempDir;
use gateway_tests::chromium::Chromium;
use serde_json::{Value, json};

use crate::local::{DOMAIN, answered, local_client, shipped};

/// Chromium with its fake camera and microphone.
pub(crate) fn browser(dir: &TempDir) -> Chromium {
    let wav = dir.path().join("microphone.wav");
    let mut tone = gateway_tests::audio::Tone::new(440.0, 48_000);
    gateway_tests::audio::write_wav(&wav, &tone.samples(48_000 * 30), 48_000)
        .expect("write the microphone's tone");
    Chromium::start(&wav)
}

/// Makes `window.pc` with the camera and microphone, and returns its offer.
pub(crate) async fn camera_offer(page: &mut Chromium) -> String {
    let offer = page
        .command(json!({"do": "evaluate", "expression": "(async () => {
            window.pc = new RTCPeerConnection();
            const media = await navigator.mediaDevices.getUserMedia(
                {audio: true, video: {width: 640, height: 480, frameRate: 30}});
            for (const track of media.getTracks()) pc.addTrack(track, media);
            await pc.setLocalDescription(await pc.createOffer());
            return pc.localDescription.sdp;
        })()"}))
        .await;
    offer.as_str().expect("an SDP offer").to_owned()
}

/// Gives `window.pc` the answer.
pub(crate) async fn take_answer(page: &mut Chromium, answer: &str) {
    let expression = format!(
        "(async () => {{ await pc.setRemoteDescription({{type: 'answer', sdp: {}}}); return null; }})()",
        serde_json::to_string(answer).unwrap()
    );
    page.command(json!({"do": "evaluate", "expression": expression}))
        .await;
}

/// What Chromium says of the video it receives and sends.
#[derive(Debug, Clone, Default)]
pub(crate) struct VideoStats {
    pub(crate) frames_decoded: u64,
    pub(crate) freezes: u64,
    pub(crate) freezes_seconds: f64,
    pub(crate) packets_lost: i64,
    pub(crate) packets_received: u64,
    pub(crate) nacks_sent: u64,
    pub(crate) nacks_received: u64,
    pub(crate) retransmitted_sent: u64,
    pub(crate) frames_sent: u64,
    pub(crate) codec: String,
}

/// Reads `window.pc`'s video statistics.
pub(crate) async fn video_stats(page: &mut Chromium) -> VideoStats {
    let stats: Value = page
        .command(json!({"do": "evaluate", "expression": "(async () => {
            const out = {};
            const report = await pc.getStats();
            report.forEach(s => {
                if (s.kind !== 'video') return;
                if (s.type === 'inbound-rtp') {
                    out.framesDecoded = s.framesDecoded || 0;
                    out.freezeCount = s.freezeCount || 0;
                    out.totalFreezesDuration = s.totalFreezesDuration || 0;
                    out.packetsLost = s.packetsLost || 0;
                    out.packetsReceived = s.packetsReceived || 0;
                    out.nackSent = s.nackCount || 0;
                    const codec = report.get(s.codecId);
                    out.codec = codec ? codec.mimeType : '';
                }
                if (s.type === 'outbound-rtp') {
                    out.framesSent = s.framesSent || 0;
                    out.nackReceived = s.nackCount || 0;
                    out.retransmittedSent = s.retransmittedPacketsSent || 0;
                }
            });
            return out;
        })()"}))
        .await;
    let number = |key: &str| stats[key].as_f64().unwrap_or(0.0);
    VideoStats {
        frames_decoded: number("framesDecoded") as u64,
        freezes: number("freezeCount") as u64,
        freezes_seconds: number("totalFreezesDuration"),
        packets_lost: number("packetsLost") as i64,
        packets_received: number("packetsReceived") as u64,
        nacks_sent: number("nackSent") as u64,
        nacks_received: number("nackReceived") as u64,
        retransmitted_sent: number("retransmittedSent") as u64,
        frames_sent: number("framesSent") as u64,
        codec: stats["codec"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Watches the received video for `seconds`, a second at a time: frames decoded must rise
/// every second (no freeze of 1 s or more); returns the statistics at the end.
pub(crate) async fn watch_moving(page: &mut Chromium, seconds: u32) -> VideoStats {
    let mut last = video_stats(page).await;
    for second in 0..seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = video_stats(page).await;
        assert!(
            now.frames_decoded > last.frames_decoded,
            "the picture stood still in second {second}: {now:?}"
        );
        last = now;
    }
    last
}

/// Waits until the received video has decoded some frames (media flowing).
pub(crate) async fn wait_for_frames(page: &mut Chromium) -> VideoStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let stats = video_stats(page).await;
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
    let mut page = browser(&dir);
    page.command(json!({"do": "open", "url": format!("http://{}/", gateway.addr)}))
        .await;
    let offer = camera_offer(&mut page).await;
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-create",
            "account": format!("alice@{DOMAIN}"), "session": "echo",
            "uri": format!("echo@{DOMAIN}"), "sdp": offer}))
        .await;
    let answer = answered(&mut client, "echo").await;
    take_answer(&mut page, &answer).await;
    let start = wait_for_frames(&mut page).await;
    let end = watch_moving(&mut page, 20).await;
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
