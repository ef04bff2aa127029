//! A phone's bandwidth limit on the video it receives (TMMBR, RFC 5104) reaches the browser as
//! REMB, and the phone gets its TMMBN. No phone at hand sends TMMBR (baresip does not), so the
//! phone's media side is a UDP socket of the test behind sipp's signalling; the browser is
//! Chromium with its fake camera, whose own statistics show its encoder's target falling.

use std::time::Duration;

use gateway_tests::TempDir;
use gateway_tests::chromium::Chromium;
use serde_json::{Value, json};
use tokio::net::UdpSocket;

use crate::local::answered;
use crate::sipp_calls::sipp_done;
use crate::video::{camera_offer, nothing_left, page_at, take_answer, through_sipp_with};

/// Chromium's video encoder target (bits per second).
async fn target_bitrate(page: &mut Chromium) -> f64 {
    let expression = "(async () => {
        let target = 0;
        (await pc.getStats()).forEach(s => {
            if (s.type === 'outbound-rtp' && s.kind === 'video') target = s.targetBitrate || 0;
        });
        return target;
    })()";
    let value: Value = page
        .command(json!({"do": "evaluate", "expression": expression}))
        .await;
    value.as_f64().unwrap_or(0.0)
}

/// Two sockets on consecutive ports (RTP, RTCP) for the phone's media.
async fn phone_sockets() -> (UdpSocket, UdpSocket) {
    for _ in 0..50 {
        let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let port = rtp.local_addr().expect("addr").port();
        if port % 2 != 0 {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)).await {
            return (rtp, rtcp);
        }
    }
    panic!("no two consecutive free ports");
}

/// A browser with its camera calls a phone that asks, by TMMBR, for at most 60 kbit/s of
/// video: the phone gets a TMMBN naming it as the owner of the limit, and the browser's encoder
/// target falls to the limit.
#[tokio::test]
async fn a_phones_tmmbr_reaches_the_browser_as_remb_and_is_acknowledged() {
    let dir = TempDir::new();
    let (rtp, rtcp) = phone_sockets().await;
    let port = rtp.local_addr().expect("addr").port().to_string();
    let (gateway, mut client, sipp) = through_sipp_with(
        "uas_answer_video.xml",
        &["-key", "echo_ip", "127.0.0.1", "-key", "echo_port", &port],
        gateway::Config::default(),
    )
    .await;
    let mut page = page_at(&dir, &gateway).await;
    let offer = camera_offer(&mut page, "pc").await;
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-create",
            "account": "alice@127.0.0.1", "session": "limit",
            "uri": "callee@127.0.0.1", "sdp": offer}))
        .await;
    let answer = answered(&mut client, "limit").await;
    take_answer(&mut page, "pc", &answer).await;

    // The browser's video (VP8, the phone's payload type 96) arrives: its SSRC is the stream
    // the phone limits, its source the gateway's video port.
    let mut buffer = [0u8; 2048];
    let (ssrc, gateway_video) = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let (length, source) = rtp.recv_from(&mut buffer).await.expect("receive");
            if length > 12 && buffer[1] & 0x7f == 96 {
                let ssrc = u32::from_be_bytes([buffer[8], buffer[9], buffer[10], buffer[11]]);
                return (ssrc, source);
            }
        }
    })
    .await
    .expect("the browser's video reaches the phone");
    let before = target_bitrate(&mut page).await;
    assert!(before > 100_000.0, "the encoder's target before: {before}");

    // TMMBR, 60 kbit/s, from the phone's RTCP port to the gateway's video RTCP port.
    let request = media::rtp::Tmmbr {
        sender: 0x7e57_0001,
        target: ssrc,
        bitrate: 60_000,
        overhead: 40,
    };
    let mut packet = Vec::new();
    media::rtp::write_tmmbr(&mut packet, request.sender, &request);
    let gateway_rtcp = std::net::SocketAddr::new(gateway_video.ip(), gateway_video.port() + 1);
    rtcp.send_to(&packet, gateway_rtcp).await.expect("send");
    let owner = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (length, _) = rtcp.recv_from(&mut buffer).await.expect("receive");
            // Our RTCP may come compound; the TMMBN is found by walking it.
            let mut rest = &buffer[..length];
            while rest.len() >= 4 {
                let size = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
                if size > rest.len() {
                    break;
                }
                if rest[1] == 205 && rest[0] & 0x1f == 4 && size >= 20 {
                    return u32::from_be_bytes([rest[12], rest[13], rest[14], rest[15]]);
                }
                rest = &rest[size..];
            }
        }
    })
    .await
    .expect("a TMMBN comes back");
    assert_eq!(owner, request.sender);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = target_bitrate(&mut page).await;
        if now <= 66_000.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the encoder's target stays at {now} (it was {before})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "limit"}))
        .await;
    sipp_done(sipp).await;
    page.close().await;
    nothing_left(&gateway).await;
}
