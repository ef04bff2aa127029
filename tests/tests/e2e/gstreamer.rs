//! GStreamer's webrtc signalling (the line protocol) on its own wss:// listener.

use gateway::Config;
use gateway_tests::{Client, Gateway, TempDir, TestCertificate, http_get};
use tokio_tungstenite::tungstenite::Message;

struct Setup {
    gateway: Gateway,
    certificate: TestCertificate,
    _dir: TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let dir = TempDir::new();
        let certificate = TestCertificate::generate(dir.path());
        let mut config = Config::default();
        config.gstreamer.enabled = true;
        config.gstreamer.tls_certificate = Some(certificate.certificate.clone());
        config.gstreamer.tls_private_key = Some(certificate.key.clone());
        let gateway = Gateway::start(config).await;
        Setup {
            gateway,
            certificate,
            _dir: dir,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        let (addr, tls) = self.gateway.gstreamer.expect("the listener");
        assert!(tls);
        addr
    }

    /// A WebSocket on the root path, as the reference clients open it.
    async fn peer(&self) -> Client {
        let addr = self.addr();
        let stream = self.certificate.connect(addr).await;
        Client::connect_over(stream, &format!("wss://{addr}"), &[], None)
            .await
            .expect("the upgrade succeeds")
    }

    /// A peer that has said HELLO.
    async fn hello(&self, uid: &str) -> Client {
        let mut peer = self.peer().await;
        say(&mut peer, &format!("HELLO {uid}")).await;
        assert_eq!(peer.recv_text().await, "HELLO");
        peer
    }
}

async fn say(peer: &mut Client, text: &str) {
    peer.send(Message::Text(text.to_owned().into())).await;
}

#[tokio::test]
async fn a_session_relays_frames_verbatim_and_closes_the_partner_when_one_side_goes() {
    let setup = Setup::new().await;
    let mut caller = setup.hello("1001").await;
    let mut callee = setup.hello("2002").await;
    say(&mut caller, "SESSION 9999").await;
    assert_eq!(caller.recv_text().await, "ERROR peer '9999' not found");
    say(&mut caller, "SESSION 2002").await;
    assert_eq!(caller.recv_text().await, "SESSION_OK");
    let mut third = setup.hello("3003").await;
    say(&mut third, "SESSION 2002").await;
    assert_eq!(third.recv_text().await, "ERROR peer '2002' busy");

    let offer = r#"{"sdp": {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"}}"#;
    say(&mut caller, offer).await;
    assert_eq!(callee.recv_text().await, offer);
    say(&mut callee, "OFFER_REQUEST").await;
    assert_eq!(caller.recv_text().await, "OFFER_REQUEST");
    let ice = r#"{"ice": {"candidate": "candidate:1 1 UDP 2122252543 127.0.0.1 40000 typ host", "sdpMLineIndex": 0}}"#;
    say(&mut callee, ice).await;
    assert_eq!(caller.recv_text().await, ice);

    // The caller goes: the callee's connection is closed (1000) and its uid is free again.
    caller.close().await;
    assert_eq!(callee.expect_close().await.0, 1000);
    let _again = setup.hello("2002").await;
}

#[tokio::test]
async fn rooms_announce_members_and_route_peer_messages() {
    let setup = Setup::new().await;
    let mut a = setup.hello("a").await;
    let mut b = setup.hello("b").await;
    let mut c = setup.hello("c").await;
    say(&mut a, "ROOM 1").await;
    assert_eq!(a.recv_text().await, "ROOM_OK ");
    say(&mut b, "ROOM 1").await;
    assert_eq!(b.recv_text().await, "ROOM_OK a");
    assert_eq!(a.recv_text().await, "ROOM_PEER_JOINED b");
    say(&mut b, r#"ROOM_PEER_MSG a {"sdp": "x"}"#).await;
    assert_eq!(a.recv_text().await, r#"ROOM_PEER_MSG b {"sdp": "x"}"#);
    say(&mut b, "ROOM_PEER_MSG c hi").await;
    assert_eq!(b.recv_text().await, "ERROR peer 'c' is not in the room");
    say(&mut b, "ROOM_PEER_MSG nobody hi").await;
    assert_eq!(b.recv_text().await, "ERROR peer 'nobody' not found");
    say(&mut b, "ROOM_PEER_LIST").await;
    assert_eq!(b.recv_text().await, "ROOM_PEER_LIST a");
    say(&mut b, "ROOM 2").await;
    assert_eq!(b.recv_text().await, "ERROR invalid msg, already in room");
    say(&mut c, "ROOM session").await;
    assert_eq!(c.recv_text().await, "ERROR invalid room id 'session'");
    // Unknown commands outside a session or room get no reply.
    say(&mut c, "NONSENSE").await;
    c.expect_silence(std::time::Duration::from_millis(300))
        .await;
    b.close().await;
    assert_eq!(a.recv_text().await, "ROOM_PEER_LEFT b");
}

#[tokio::test]
async fn a_bad_handshake_closes_with_1002_and_health_answers() {
    let setup = Setup::new().await;
    let mut peer = setup.peer().await;
    say(&mut peer, "GOODBYE").await;
    assert_eq!(
        peer.expect_close().await,
        (1002, "invalid protocol".to_owned())
    );
    let _taken = setup.hello("x").await;
    let mut peer = setup.peer().await;
    say(&mut peer, "HELLO x").await;
    assert_eq!(
        peer.expect_close().await,
        (1002, "invalid peer uid".to_owned())
    );
    let mut peer = setup.peer().await;
    say(&mut peer, "HELLO two words").await;
    assert_eq!(
        peer.expect_close().await,
        (1002, "invalid peer uid".to_owned())
    );

    let stream = setup.certificate.connect(setup.addr()).await;
    let (status, body) = http_get(stream, "/health").await;
    assert_eq!((status, body.as_str()), (200, "OK\n"));
    assert_eq!(
        setup
            .gateway
            .metric("sylkrtc_signalling_connections_total{protocol=\"gstreamer\"}")
            .await,
        4.0
    );
}

#[tokio::test]
async fn without_a_certificate_one_is_made_and_off_means_no_listener() {
    let mut config = Config::default();
    config.gstreamer.enabled = true;
    let gateway = Gateway::start(config).await;
    let (addr, tls) = gateway.gstreamer.expect("the listener");
    assert!(tls);
    // A TLS handshake succeeds against the certificate made at start-up.
    let stream = gateway_tests::insecure_tls(addr).await;
    let (status, _) = http_get(stream, "/health").await;
    assert_eq!(status, 200);
    assert!(Gateway::start_default().await.gstreamer.is_none());
}

#[tokio::test]
async fn two_webrtc_peers_connect_through_a_session() {
    use gateway_tests::browser::{AudioCodec, Browser};
    use serde_json::{Value, json};

    let setup = Setup::new().await;
    let mut caller = setup.hello("101").await;
    let mut callee = setup.hello("202").await;
    say(&mut caller, "SESSION 202").await;
    assert_eq!(caller.recv_text().await, "SESSION_OK");
    let mut caller_peer = Browser::new(&[AudioCodec::Pcmu]).await;
    let offer = caller_peer.offer().await;
    say(
        &mut caller,
        &json!({"sdp": {"type": "offer", "sdp": offer}}).to_string(),
    )
    .await;
    let relayed: Value = serde_json::from_str(&callee.recv_text().await).unwrap();
    let mut callee_peer = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = callee_peer
        .answer(relayed["sdp"]["sdp"].as_str().expect("an offer"))
        .await;
    say(
        &mut callee,
        &json!({"sdp": {"type": "answer", "sdp": answer}}).to_string(),
    )
    .await;
    let relayed: Value = serde_json::from_str(&caller.recv_text().await).unwrap();
    caller_peer
        .accept_answer(relayed["sdp"]["sdp"].as_str().expect("an answer"))
        .await;
    let wait = std::time::Duration::from_secs(10);
    assert!(caller_peer.connected(wait).await && callee_peer.connected(wait).await);
    callee_peer.send_pcmu_tone(0, 1500.0);
    let tone = || crate::calls::browser_tone(&caller_peer, 0, AudioCodec::Pcmu);
    assert_eq!(crate::calls::until_heard(1500.0, tone).await.0, 1500.0);
    caller_peer.close().await;
    callee_peer.close().await;
}

#[tokio::test]
async fn a_peer_that_vanishes_is_closed_and_its_room_told() {
    let dir = TempDir::new();
    let certificate = TestCertificate::generate(dir.path());
    let mut config = Config::default();
    config.gstreamer.enabled = true;
    config.gstreamer.keepalive_timeout = 1;
    config.gstreamer.tls_certificate = Some(certificate.certificate.clone());
    config.gstreamer.tls_private_key = Some(certificate.key.clone());
    let setup = Setup {
        gateway: Gateway::start(config).await,
        certificate,
        _dir: dir,
    };
    let mut a = setup.hello("a").await;
    let mut b = setup.hello("b").await;
    say(&mut a, "ROOM r").await;
    assert_eq!(a.recv_text().await, "ROOM_OK ");
    say(&mut b, "ROOM r").await;
    assert_eq!(b.recv_text().await, "ROOM_OK a");
    assert_eq!(a.recv_text().await, "ROOM_PEER_JOINED b");
    // b stops reading (so it answers no Ping); a keeps reading, and answers them.
    let started = std::time::Instant::now();
    let left = loop {
        match a.recv_frame().await {
            Some(Message::Text(text)) => break text.to_string(),
            Some(Message::Ping(_) | Message::Pong(_)) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    };
    assert_eq!(left, "ROOM_PEER_LEFT b");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    drop(b);
}
