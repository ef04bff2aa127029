//! Mid-call changes that take something away or swap it, with Chromium as the browser: a
//! phone moving the call to another codec, a phone or the browser removing the video (its
//! m-line kept at port 0), and a browser declining the video a phone adds. After each, the
//! audio still flows both ways (sipp echoes it, `-rtp_echo`) in the new shape, and nothing is
//! left when the call ends.

use std::time::Duration;

use gateway_tests::TempDir;
use gateway_tests::chromium::Chromium;
use serde_json::{Value, json};

use crate::local::{DOMAIN, answered, create_session, local_client, shipped};
use crate::sipp_calls::sipp_done;
use crate::video::{
    answer_remote_offer, camera_offer, hang_up_on_phone, nothing_left, offer_with_direction,
    page_at, take_answer, through_sipp_with, update, update_of, video_phone, video_stats,
    wait_for_frames,
};

/// What Chromium says of the audio it sends and receives.
#[derive(Debug, Clone, Default)]
struct AudioStats {
    sent_codec: String,
    received_codec: String,
    packets_received: u64,
}

async fn audio_stats(page: &mut Chromium, pc: &str) -> AudioStats {
    let expression = format!(
        "(async () => {{
            const out = {{}};
            const report = await {pc}.getStats();
            report.forEach(s => {{
                if (s.kind !== 'audio') return;
                const codec = report.get(s.codecId);
                if (s.type === 'inbound-rtp') {{
                    out.packetsReceived = s.packetsReceived || 0;
                    out.received = codec ? codec.mimeType : '';
                }}
                if (s.type === 'outbound-rtp') out.sent = codec ? codec.mimeType : '';
            }});
            return out;
        }})()"
    );
    let stats: Value = page
        .command(json!({"do": "evaluate", "expression": expression}))
        .await;
    AudioStats {
        sent_codec: stats["sent"].as_str().unwrap_or_default().to_owned(),
        received_codec: stats["received"].as_str().unwrap_or_default().to_owned(),
        packets_received: stats["packetsReceived"].as_f64().unwrap_or(0.0) as u64,
    }
}

/// Waits until the browser sends and receives `codec` and has received 50 more audio packets
/// than `from` (its audio going round through the far end's echo, both ways).
async fn audio_flows(page: &mut Chromium, pc: &str, codec: &str, from: u64) -> AudioStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let stats = audio_stats(page, pc).await;
        if stats.sent_codec == codec
            && stats.received_codec == codec
            && stats.packets_received >= from + 50
        {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {codec} audio both ways in 15 s: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Makes `window[pc]` with the microphone alone, and returns its offer.
async fn microphone_offer(page: &mut Chromium, pc: &str) -> String {
    let expression = format!(
        "(async () => {{
            const pc = window.{pc} = new RTCPeerConnection();
            const media = await navigator.mediaDevices.getUserMedia({{audio: true}});
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

/// The browser `page` (its `pc`) places a call with `offer` through `client`: the session's
/// answer, given to `pc`.
async fn place(
    client: &mut gateway_tests::Client,
    page: &mut Chromium,
    session: &str,
    account: &str,
    uri: &str,
    offer: &str,
) -> String {
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-create", "account": account,
            "session": session, "uri": uri, "sdp": offer}))
        .await;
    let answer = answered(client, session).await;
    take_answer(page, "pc", &answer).await;
    answer
}

/// As [`place`], alice calling sipp's callee.
async fn call_sipp(
    client: &mut gateway_tests::Client,
    page: &mut Chromium,
    session: &str,
    offer: &str,
) -> String {
    place(
        client,
        page,
        session,
        "alice@127.0.0.1",
        "callee@127.0.0.1",
        offer,
    )
    .await
}

/// The browser hangs up: sipp must have played its scenario through, and nothing is left.
async fn hang_up(
    client: &mut gateway_tests::Client,
    session: &str,
    sipp: tokio::process::Child,
    page: Chromium,
    gateway: &gateway_tests::Gateway,
) {
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": session}))
        .await;
    sipp_done(sipp).await;
    page.close().await;
    nothing_left(gateway).await;
}

/// The media formats of the first m-line of `kind` in `sdp`.
fn formats<'a>(sdp: &'a str, kind: &str) -> Vec<&'a str> {
    sdp.lines()
        .find_map(|line| line.strip_prefix(&format!("m={kind} ")))
        .map(|line| line.split_whitespace().skip(2).collect())
        .unwrap_or_default()
}

/// The payload type `sdp` gives `name` (an `a=rtpmap` encoding name).
fn pt_of(sdp: &str, name: &str) -> Option<String> {
    sdp.lines().find_map(|line| {
        let rest = line.strip_prefix("a=rtpmap:")?;
        let (pt, encoding) = rest.split_once(' ')?;
        encoding
            .to_ascii_uppercase()
            .starts_with(&format!("{name}/"))
            .then(|| pt.to_owned())
    })
}

/// A browser calls a phone that answers PCMU, then re-INVITEs with PCMA alone (sipp checks
/// that the 200 has PCMA alone): the browser is offered PCMA alone, answers, and from then on
/// sends and receives PCMA, its audio going round through the phone.
#[tokio::test]
async fn a_phone_moving_to_another_codec_moves_the_browser_too() {
    let dir = TempDir::new();
    let (gateway, mut client, sipp) = through_sipp_with(
        "uas_changes_codec.xml",
        &["-rtp_echo"],
        gateway::Config::default(),
    )
    .await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = microphone_offer(&mut page, "pc").await;
    let answer = call_sipp(&mut client, &mut page, "codec", &offer).await;
    assert_eq!(
        formats(&answer, "audio").first().copied(),
        pt_of(&answer, "PCMU").as_deref(),
        "the phone's codec first: {answer}"
    );
    let before = audio_flows(&mut page, "pc", "audio/PCMU", 0).await;

    let protocol::UpdateState::Received { sdp: offer } = update_of(&mut client, "codec").await
    else {
        panic!("the phone's new codec reaches the browser as an offer");
    };
    let pcma = pt_of(&offer, "PCMA").expect("PCMA offered");
    assert_eq!(formats(&offer, "audio")[0], pcma, "{offer}");
    assert!(pt_of(&offer, "PCMU").is_none(), "PCMA alone: {offer}");
    let answer = answer_remote_offer(&mut page, "pc", &offer).await;
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": "codec", "sdp": answer}),
        )
        .await;
    let after = audio_flows(&mut page, "pc", "audio/PCMA", before.packets_received).await;
    assert!(after.packets_received > before.packets_received);
    hang_up(&mut client, "codec", sipp, page, &gateway).await;
}

/// A video call whose phone removes the video (its re-INVITE has the video m-line at port 0;
/// sipp checks that the 200 declines it and keeps the audio): the browser is offered its video
/// m-line stopped, answers, and the audio goes on both ways.
#[tokio::test]
async fn a_phone_removing_the_video_stops_it_in_the_browser() {
    let dir = TempDir::new();
    let (gateway, mut client, sipp) = through_sipp_with(
        "uas_removes_video.xml",
        &["-rtp_echo"],
        gateway::Config::default(),
    )
    .await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = camera_offer(&mut page, "pc").await;
    call_sipp(&mut client, &mut page, "novideo", &offer).await;
    // The browser's own picture comes back through the phone's echo.
    wait_for_frames(&mut page, "pc").await;
    let before = audio_flows(&mut page, "pc", "audio/PCMU", 0).await;

    let protocol::UpdateState::Received { sdp: offer } = update_of(&mut client, "novideo").await
    else {
        panic!("the phone's removal reaches the browser as an offer");
    };
    assert!(offer.contains("m=video 0 "), "{offer}");
    assert!(!offer.contains("m=audio 0 "), "{offer}");
    let answer = answer_remote_offer(&mut page, "pc", &offer).await;
    assert!(answer.contains("m=video 0 "), "{answer}");
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": "novideo", "sdp": answer}),
        )
        .await;
    audio_flows(&mut page, "pc", "audio/PCMU", before.packets_received).await;
    // No more video comes: the decoded frames stand still (what was in flight aside).
    let stopped = video_stats(&mut page, "pc").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = video_stats(&mut page, "pc").await;
    assert!(
        later.frames_decoded <= stopped.frames_decoded + 5,
        "video still comes: {stopped:?} then {later:?}"
    );
    hang_up(&mut client, "novideo", sipp, page, &gateway).await;
}

/// A phone adds video to an audio call and the browser declines it (it stops the new video
/// transceiver, which Chromium answers inactive): the phone's 200 says the same of the video
/// (sipp checks it), and the audio call goes on.
#[tokio::test]
async fn a_browser_declining_the_phones_video_declines_it_to_the_phone() {
    let dir = TempDir::new();
    let (gateway, mut client, sipp) = through_sipp_with(
        "uas_adds_video_declined.xml",
        &[],
        gateway::Config::default(),
    )
    .await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = microphone_offer(&mut page, "pc").await;
    call_sipp(&mut client, &mut page, "decline", &offer).await;
    let protocol::UpdateState::Received { sdp: offer } = update_of(&mut client, "decline").await
    else {
        panic!("the phone's video reaches the browser as an offer");
    };
    assert!(offer.contains("m=video 9"), "{offer}");
    let expression = format!(
        "(async () => {{
            await pc.setRemoteDescription({{type: 'offer', sdp: {}}});
            for (const t of pc.getTransceivers())
                if (t.receiver.track.kind === 'video') t.stop();
            await pc.setLocalDescription(await pc.createAnswer());
            return pc.localDescription.sdp;
        }})()",
        serde_json::to_string(&offer).unwrap()
    );
    let answer = page
        .command(json!({"do": "evaluate", "expression": expression}))
        .await;
    let answer = answer.as_str().expect("an SDP answer").to_owned();
    // Chromium answers a transceiver stopped while the offer is in hand as inactive (and
    // rejects it at the next negotiation).
    let video = &answer[answer.find("m=video").expect("a video m-line")..];
    assert!(
        video.starts_with("m=video 0 ") || video.contains("a=inactive"),
        "{answer}"
    );
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": "decline", "sdp": answer}),
        )
        .await;
    let state = page
        .command(json!({"do": "evaluate", "expression": "pc.connectionState"}))
        .await;
    assert_eq!(state, json!("connected"));
    hang_up(&mut client, "decline", sipp, page, &gateway).await;
}

/// A browser in a video call with a baresip phone stops its video (its new offer has the video
/// m-line at port 0): the phone gets a re-INVITE declining the video, the browser's answer
/// declines it too, and the audio goes on.
#[tokio::test]
async fn a_browser_removing_the_video_removes_it_at_the_phone() {
    let dir = TempDir::new();
    let gateway = gateway_tests::Gateway::start(shipped()).await;
    let bob = video_phone(&gateway, "bob", "VP8").await;
    let mut client = local_client(&gateway, "alice").await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = camera_offer(&mut page, "pc").await;
    place(
        &mut client,
        &mut page,
        "stop",
        &format!("alice@{DOMAIN}"),
        &format!("bob@{DOMAIN}"),
        &offer,
    )
    .await;
    wait_for_frames(&mut page, "pc").await;
    let expression = "(async () => {
        for (const t of pc.getTransceivers())
            if (t.receiver.track.kind === 'video') t.stop();
        await pc.setLocalDescription(await pc.createOffer());
        return pc.localDescription.sdp;
    })()";
    let stopped = page
        .command(json!({"do": "evaluate", "expression": expression}))
        .await;
    let stopped = stopped.as_str().expect("an SDP offer").to_owned();
    assert!(stopped.contains("m=video 0 "), "{stopped}");
    let answer = update(&mut client, "stop", &stopped).await;
    assert!(answer.contains("m=video 0 "), "{answer}");
    take_answer(&mut page, "pc", &answer).await;
    assert!(
        bob.wait_log("video stream is disabled", Duration::from_secs(15))
            .await,
        "the phone's re-INVITE declines the video:\n{}",
        bob.log.text()
    );
    let before = audio_stats(&mut page, "pc").await;
    audio_flows(&mut page, "pc", "audio/PCMU", before.packets_received).await;
    hang_up_on_phone(&mut client, "stop", &bob, page, &gateway).await;
}

/// Glare (RFC 3261 section 14.1): the browser holds while the phone sends a re-INVITE of its
/// own before answering ours. The gateway refuses the phone's with 491 (sipp checks it), takes
/// the phone's 491 for its own, retries it, and the browser's update is accepted (recvonly)
/// once the retry is answered.
#[tokio::test]
async fn crossing_re_invites_get_491_and_ours_is_retried() {
    let dir = TempDir::new();
    let (gateway, mut client, sipp) =
        through_sipp_with("uas_glare.xml", &["-rtp_echo"], gateway::Config::default()).await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = microphone_offer(&mut page, "pc").await;
    let session = "glare";
    call_sipp(&mut client, &mut page, session, &offer).await;
    let before = audio_flows(&mut page, "pc", "audio/PCMU", 0).await;
    let hold = offer_with_direction(&mut page, "pc", "sendonly").await;
    let started = tokio::time::Instant::now();
    let answer = update(&mut client, session, &hold).await;
    assert!(answer.contains("a=recvonly"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "accepted only after the retry: {:?}",
        started.elapsed()
    );
    take_answer(&mut page, "pc", &answer).await;
    // Held: the browser still sends, and its audio still reaches the phone (which echoes it,
    // but nothing comes back to a browser that only sends).
    let held = audio_stats(&mut page, "pc").await;
    assert!(held.packets_received > before.packets_received);
    hang_up(&mut client, session, sipp, page, &gateway).await;
}

/// The phone holds and the browser never answers the offer it gets: the phone's 200 comes at
/// `[calls] update_timeout` with the session mirrored (sipp checks recvonly), and the phone's
/// resume after it reaches the browser as a new offer, which it answers; the phone's 200 says
/// sendrecv and the audio flows both ways again.
#[tokio::test]
async fn an_update_the_browser_never_answers_is_answered_and_does_not_hold_up_the_next() {
    let dir = TempDir::new();
    let mut config = gateway::Config::default();
    config.calls.update_timeout = 2;
    let (gateway, mut client, sipp) =
        through_sipp_with("uas_unanswered_update.xml", &["-rtp_echo"], config).await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = microphone_offer(&mut page, "pc").await;
    let session = "silent";
    call_sipp(&mut client, &mut page, session, &offer).await;
    let protocol::UpdateState::Received { sdp: hold } = update_of(&mut client, session).await
    else {
        panic!("the phone's hold reaches the browser");
    };
    assert!(hold.contains("a=sendonly"), "{hold}");
    // Not answered. The resume comes as a new offer once the hold was answered without us.
    let protocol::UpdateState::Received { sdp: resume } = update_of(&mut client, session).await
    else {
        panic!("the phone's resume reaches the browser");
    };
    assert!(resume.contains("a=sendrecv"), "{resume}");
    let answer = answer_remote_offer(&mut page, "pc", &resume).await;
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": session, "sdp": answer}),
        )
        .await;
    let before = audio_stats(&mut page, "pc").await;
    audio_flows(&mut page, "pc", "audio/PCMU", before.packets_received).await;
    hang_up(&mut client, session, sipp, page, &gateway).await;
}

/// The local port of Chromium's selected candidate pair.
async fn selected_local_port(page: &mut Chromium) -> u64 {
    let expression = "(async () => {
        const report = await pc.getStats();
        let port = 0;
        report.forEach(s => {
            if (s.type === 'transport' && s.selectedCandidatePairId) {
                const pair = report.get(s.selectedCandidatePairId);
                const local = pair && report.get(pair.localCandidateId);
                if (local) port = local.port;
            }
        });
        return port;
    })()";
    let port: Value = page
        .command(json!({"do": "evaluate", "expression": expression}))
        .await;
    port.as_u64().unwrap_or(0)
}

/// The browser restarts ICE (as after a change of network: new credentials and new local
/// ports): the new offer is answered on the browser leg alone with new credentials of ours,
/// the new checks from the new address reach the call, and past `[media] ice_timeout` the call
/// is still up with its audio going both ways.
#[tokio::test]
async fn an_ice_restart_from_the_browser_keeps_the_call() {
    let dir = TempDir::new();
    let port = gateway_tests::peers::free_ports(4).to_string();
    let mut config = gateway::Config::default();
    config.media.ice_timeout = 4;
    let (gateway, mut client, sipp) = through_sipp_with(
        "uas_answer.xml",
        &[
            "-rtp_echo",
            "-mp",
            &port,
            "-key",
            "echo_ip",
            "127.0.0.1",
            "-key",
            "echo_port",
            &port,
        ],
        config,
    )
    .await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = microphone_offer(&mut page, "pc").await;
    let session = "restart";
    let first = call_sipp(&mut client, &mut page, session, &offer).await;
    let before = audio_flows(&mut page, "pc", "audio/PCMU", 0).await;
    let old_port = selected_local_port(&mut page).await;
    let expression = "(async () => {
        pc.restartIce();
        await pc.setLocalDescription(await pc.createOffer());
        return pc.localDescription.sdp;
    })()";
    let restart = page
        .command(json!({"do": "evaluate", "expression": expression}))
        .await;
    let restart = restart.as_str().expect("an SDP offer").to_owned();
    let ufrag = |sdp: &str| {
        sdp.lines()
            .find_map(|line| line.strip_prefix("a=ice-ufrag:"))
            .map(str::to_owned)
    };
    assert_ne!(ufrag(&restart), ufrag(&offer), "a restart: {restart}");
    let answer = update(&mut client, session, &restart).await;
    assert_ne!(
        ufrag(&answer),
        ufrag(&first),
        "new credentials of ours: {answer}"
    );
    take_answer(&mut page, "pc", &answer).await;
    // Past the consent timeout: still up, on the new path.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let state = page
        .command(json!({"do": "evaluate", "expression": "pc.iceConnectionState"}))
        .await;
    assert!(
        state == json!("connected") || state == json!("completed"),
        "{state}"
    );
    let new_port = selected_local_port(&mut page).await;
    assert_ne!(new_port, old_port, "Chromium moved to a new local port");
    let now = audio_stats(&mut page, "pc").await;
    audio_flows(&mut page, "pc", "audio/PCMU", now.packets_received).await;
    assert!(now.packets_received > before.packets_received);
    hang_up(&mut client, session, sipp, page, &gateway).await;
}

/// Runs `expression` in the page and returns the SDP it gives.
async fn sdp_of(page: &mut Chromium, expression: String) -> String {
    let sdp = page
        .command(json!({"do": "evaluate", "expression": expression}))
        .await;
    sdp.as_str().expect("an SDP").to_owned()
}

/// Two browsers of the local domain in an audio call: the caller adds its camera (a new offer
/// through `session-update`), the callee gets it as `update` `received` and answers with its
/// own camera, and each then decodes the other's moving picture, across the gateway's bridge
/// (both relays take a video port pair mid-call).
#[tokio::test]
async fn a_browser_adds_video_to_a_call_with_another_browser() {
    let dir = TempDir::new();
    let gateway = gateway_tests::Gateway::start(shipped()).await;
    let mut alice = local_client(&gateway, "alice").await;
    let mut bob = local_client(&gateway, "bob").await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = microphone_offer(&mut page, "alice").await;
    create_session(&mut alice, "to-bob", &format!("bob@{DOMAIN}"), &offer).await;
    let (session, offer) = crate::fork::incoming(&mut bob).await;
    let answer = sdp_of(
        &mut page,
        format!(
            "(async () => {{
                const pc = window.bob = new RTCPeerConnection();
                const media = await navigator.mediaDevices.getUserMedia({{audio: true}});
                await pc.setRemoteDescription({{type: 'offer', sdp: {}}});
                for (const track of media.getTracks()) pc.addTrack(track, media);
                await pc.setLocalDescription(await pc.createAnswer());
                return pc.localDescription.sdp;
            }})()",
            serde_json::to_string(&offer).unwrap()
        ),
    )
    .await;
    bob.expect_ack_amid_events(
        json!({"sylkrtc": "session-answer", "session": session, "sdp": answer}),
    )
    .await;
    let answer = answered(&mut alice, "to-bob").await;
    take_answer(&mut page, "alice", &answer).await;
    // Between browsers the call is in opus.
    audio_flows(&mut page, "alice", "audio/opus", 0).await;

    // Alice adds her camera.
    let with_video = sdp_of(
        &mut page,
        "(async () => {
            const media = await navigator.mediaDevices.getUserMedia(
                {video: {width: 640, height: 480, frameRate: 30}});
            for (const track of media.getTracks()) alice.addTrack(track, media);
            await alice.setLocalDescription(await alice.createOffer());
            return alice.localDescription.sdp;
        })()"
            .to_owned(),
    )
    .await;
    alice
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-update", "session": "to-bob", "sdp": with_video}),
        )
        .await;
    let protocol::UpdateState::Received { sdp: offer } = update_of(&mut bob, &session).await else {
        panic!("alice's video reaches bob as an offer");
    };
    assert!(offer.contains("m=video 9"), "{offer}");
    let answer = sdp_of(
        &mut page,
        format!(
            "(async () => {{
                await bob.setRemoteDescription({{type: 'offer', sdp: {}}});
                const media = await navigator.mediaDevices.getUserMedia(
                    {{video: {{width: 640, height: 480, frameRate: 30}}}});
                for (const t of bob.getTransceivers())
                    if (t.receiver.track.kind === 'video') {{
                        await t.sender.replaceTrack(media.getVideoTracks()[0]);
                        t.direction = 'sendrecv';
                    }}
                await bob.setLocalDescription(await bob.createAnswer());
                return bob.localDescription.sdp;
            }})()",
            serde_json::to_string(&offer).unwrap()
        ),
    )
    .await;
    bob.expect_ack_amid_events(
        json!({"sylkrtc": "session-update", "session": session, "sdp": answer}),
    )
    .await;
    let protocol::UpdateState::Accepted { sdp: answer } = update_of(&mut alice, "to-bob").await
    else {
        panic!("alice's update is accepted");
    };
    assert!(answer.contains("m=video 9"), "{answer}");
    take_answer(&mut page, "alice", &answer).await;
    wait_for_frames(&mut page, "alice").await;
    wait_for_frames(&mut page, "bob").await;
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "to-bob"}))
        .await;
    page.close().await;
    nothing_left(&gateway).await;
}
