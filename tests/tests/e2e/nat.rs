//! Phones behind NAT at the local domain: their keep-alives answered (STUN, CRLF), SIP Outbound
//! flows, and OPTIONS pings to the phones without Outbound, which unregister a phone that is
//! gone.

use std::time::Duration;

use gateway_tests::Gateway;
use gateway_tests::baresip::Baresip;
use gateway_tests::browser::{AudioCodec, Browser};
use serde_json::json;

use crate::calls::{browser_tone, payload_type, until_heard};
use crate::local::{
    DOMAIN, WAIT, answered, closed, closed_client, local_client, place, refused, shipped,
};

/// Waits (20 s at most) until `condition` holds, checking every 100 ms.
async fn until_true(condition: impl Fn() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A phone's keep-alives are answered: a STUN Binding request on the SIP UDP port with the
/// address it came from (RFC 5626 section 8), a double CRLF on TCP with a CRLF.
#[tokio::test]
async fn keep_alives_are_answered_on_udp_with_stun_and_on_tcp_with_crlf() {
    let gateway = Gateway::start(shipped()).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.7:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(b"keepalive-01");
    socket.send_to(&request, gateway.sip.0).await.unwrap();
    let mut buffer = [0u8; 128];
    let (length, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buffer))
        .await
        .expect("a STUN response")
        .unwrap();
    let response = &buffer[..length];
    assert_eq!(&response[0..2], &[0x01, 0x01], "Binding success");
    assert_eq!(&response[8..20], b"keepalive-01");
    let port = u16::from_be_bytes([response[26], response[27]]) ^ 0x2112;
    let ip =
        u32::from_be_bytes([response[28], response[29], response[30], response[31]]) ^ 0x2112_a442;
    assert_eq!(
        std::net::SocketAddr::from((std::net::Ipv4Addr::from(ip), port)),
        local
    );

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(gateway.sip.1).await.unwrap();
    tcp.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 8];
    let count = tokio::time::timeout(WAIT, tcp.read(&mut pong))
        .await
        .expect("a pong")
        .unwrap();
    assert_eq!(&pong[..count], b"\r\n");
}

/// A phone doing SIP Outbound (baresip with `sipnat=outbound` sends `+sip.instance` and
/// `reg-id`) registers, is told its flow is kept, and is reached over it.
#[tokio::test]
async fn a_phone_doing_sip_outbound_registers_and_is_called_over_its_flow() {
    let gateway = Gateway::start(shipped()).await;
    let account = format!(
        "<sip:erin@{DOMAIN};transport=udp>;outbound=\"sip:127.0.0.1:{};transport=udp\";auth_pass=x;\
         answermode=auto;audio_codecs=PCMU/8000/1;sipnat=outbound;regint=300\n",
        gateway.sip.0.port()
    );
    let erin = Baresip::start_account(&account, 1500.0);
    assert!(
        erin.wait_for("REGISTER_OK", 1, WAIT).await,
        "{}",
        erin.log.text()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = erin.log.text();
    assert!(
        !log.to_ascii_lowercase().contains("outbound not supported"),
        "{log}"
    );
    // A browser calls the phone through the gateway alone.
    let mut client = local_client(&gateway, "alice").await;
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    place(&mut client, &browser, "to-erin", &format!("erin@{DOMAIN}")).await;
    let answer = answered(&mut client, "to-erin").await;
    browser.accept_answer(&answer).await;
    assert!(browser.connected(WAIT).await);
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    let (tone, _) = until_heard(1500.0, || browser_tone(&browser, pt, AudioCodec::Pcmu)).await;
    assert_eq!(tone, 1500.0);
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "to-erin"}))
        .await;
    assert!(erin.wait_for("CALL_CLOSED", 1, WAIT).await);
    browser.close().await;
}

/// A phone registered over UDP without Outbound (baresip's default) gets OPTIONS pings and
/// answers them, so it stays reachable; once it is gone (killed, no unregistration) the next
/// ping goes unanswered and its registration is removed: a call to it gets 480 at once
/// instead of an INVITE to nowhere that times out.
#[tokio::test]
async fn phones_that_stop_answering_pings_are_unregistered() {
    let mut config = closed(&["alice", "carol"]);
    config.local.ping_interval = 1;
    // Timer F (64*T1) is how long a ping waits for any response.
    config.sip.t1_ms = 100;
    let gateway = Gateway::start(config).await;
    // The phone prints the SIP it gets, pings included.
    let account = format!(
        "<sip:carol@{DOMAIN};transport=udp>;outbound=\"sip:127.0.0.1:{};transport=udp\";\
         auth_pass=carolpw;answermode=auto;audio_codecs=PCMU/8000/1;regint=300\n",
        gateway.sip.0.port()
    );
    let carol = Baresip::start_account_traced(&account, 1300.0);
    assert!(carol.wait_log("200 OK", WAIT).await, "{}", carol.log.text());
    let mut client = closed_client(&gateway, "alice").await;
    // Three pings later (each answered) the phone is still registered: it answers a call.
    let pings = || {
        let log = carol.log.text();
        log.lines()
            .filter(|line| line.starts_with("OPTIONS sip:"))
            .count()
    };
    until_true(|| pings() >= 3, "three pings reach the phone").await;
    let browser = Browser::new(&[AudioCodec::Pcmu]).await;
    place(&mut client, &browser, "alive", &format!("carol@{DOMAIN}")).await;
    answered(&mut client, "alive").await;
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "alive"}))
        .await;
    assert!(carol.wait_for("CALL_CLOSED", 1, WAIT).await);

    // Gone without a word: within an interval and Timer F its binding is removed.
    drop(carol);
    let phones = r#"sylkrtc_local_bindings{kind="phone"}"#;
    assert_eq!(gateway.metric(phones).await, 1.0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while gateway.metric(phones).await > 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the phone's binding is removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Without the pings: an INVITE to the dead phone, ended by Timer B (408).
    let reason = refused(&mut client, &browser, "gone", "carol").await;
    assert!(reason.starts_with("480"), "{reason}");
    browser.close().await;
}
