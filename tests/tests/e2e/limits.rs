//! Limits: message size, connection count, queued requests. Past each one: a clear error or
//! close code, and nobody else is disturbed.

use std::time::Duration;

use gateway::Config;
use gateway_tests::{Client, Gateway};
use protocol::{ServerMessage, Version};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn an_oversized_message_closes_only_its_connection() {
    let mut config = Config::default();
    config.websocket.max_message_size = 4096;
    let gateway = Gateway::start(config).await;
    for version in Version::PREFERENCE {
        oversized(&gateway, version).await;
    }
    assert_eq!(
        gateway
            .metric("sylkrtc_errors_total{kind=\"too_big\"}")
            .await,
        2.0
    );
}

async fn oversized(gateway: &Gateway, version: Version) {
    let mut bystander = gateway.client_version(version).await;
    let mut client = gateway.client_version(version).await;
    // Just under the limit is fine.
    let sdp = "a".repeat(3500);
    let reply = client
        .request(json!({"sylkrtc": "session-answer", "session": "s", "sdp": sdp}))
        .await;
    assert!(matches!(reply, ServerMessage::Error { .. }), "{reply:?}");
    // Over it closes the connection with 1009.
    let sdp = "a".repeat(5000);
    client
        .send_json(
            &json!({"sylkrtc": "session-answer", "transaction": "big", "session": "s", "sdp": sdp}),
        )
        .await;
    let (code, reason) = client.expect_close().await;
    assert_eq!(code, 1009);
    assert_eq!(reason, "message too big (limit 4096 bytes)");
    bystander.expect_ack(json!({"sylkrtc": "ping"})).await;
}

#[tokio::test]
async fn connections_past_the_limit_get_503() {
    let mut config = Config::default();
    config.websocket.max_connections = 2;
    let gateway = Gateway::start(config).await;
    let first = gateway.client().await;
    let mut second = gateway.client().await;
    for offer in ["sylkRTC-2", "sylkRTC-1"] {
        let refused = Client::connect(&gateway.url, &[offer], None)
            .await
            .unwrap_err();
        assert_eq!(refused.status, 503);
        assert_eq!(refused.body.trim(), "Too many connections (limit 2)");
    }
    second.expect_ack(json!({"sylkrtc": "ping"})).await;
    // A slot frees up when a connection closes.
    first.close().await;
    let mut third = None;
    for _ in 0..50 {
        if let Ok(client) = Client::connect(&gateway.url, &["sylkRTC-1"], None).await {
            third = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut third = third.expect("a new connection is accepted once one closed");
    third.expect_ready().await;
    third.expect_ack(json!({"sylkrtc": "ping"})).await;
    // HTTP routes are not WebSocket connections and keep working at the limit.
    assert_eq!(gateway.get("/health").await.0, 200);
}

#[tokio::test]
async fn a_burst_larger_than_the_request_queue_is_absorbed() {
    let mut config = Config::default();
    config.websocket.max_queued_requests = 1;
    let gateway = Gateway::start(config).await;
    for version in Version::PREFERENCE {
        let mut client = gateway.client_version(version).await;
        let count = 500;
        for index in 0..count {
            let request = json!({"sylkrtc": "ping", "transaction": format!("b{index}")});
            client.feed(Message::text(request.to_string())).await;
        }
        client.flush().await;
        // The handler drains the queue as fast as the burst arrives: every request is acked.
        for index in 0..count {
            let transaction = format!("b{index}");
            assert_eq!(client.recv().await, ServerMessage::Ack { transaction });
        }
    }
    assert_eq!(
        gateway
            .metric("sylkrtc_errors_total{kind=\"queue_full\"}")
            .await,
        0.0
    );
}

#[tokio::test]
async fn a_client_that_sends_without_reading_is_dropped() {
    let mut config = Config::default();
    config.websocket.max_queued_requests = 8;
    let gateway = Gateway::start(config).await;
    for version in Version::PREFERENCE {
        flood(&gateway, version).await;
    }
    assert!(
        gateway
            .metric("sylkrtc_errors_total{kind=\"queue_full\"}")
            .await
            >= 2.0
    );
}

async fn flood(gateway: &Gateway, version: Version) {
    let mut bystander = gateway.client_version(version).await;
    // A small receive buffer, so that unread replies back up quickly.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(gateway.addr).await.unwrap();
    let mut flooder = Client::connect_over(
        Box::new(stream),
        &gateway.url,
        &[version.subprotocol()],
        None,
    )
    .await
    .unwrap();
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    loop {
        let request = json!({"sylkrtc": "ping", "transaction": format!("f{sent}")});
        let fed = tokio::time::timeout(Duration::from_secs(2), async {
            flooder.try_feed(Message::text(request.to_string())).await
        })
        .await;
        // Stop when the gateway stops reading (the write blocks) or has dropped the connection.
        if !matches!(fed, Ok(true)) {
            break;
        }
        sent += 1;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still accepting after {sent} requests"
        );
    }
    // The connection ends: reading what the gateway managed to send runs into its end.
    let mut acks = 0u64;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), flooder.recv_frame()).await {
            Ok(Some(Message::Text(_))) => acks += 1,
            Ok(Some(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1008);
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => panic!("the connection was not dropped ({sent} sent, {acks} replies read)"),
        }
    }
    assert!(acks < sent, "{acks} replies for {sent} requests");
    assert!(
        gateway
            .metric("sylkrtc_errors_total{kind=\"queue_full\"}")
            .await
            >= 1.0
    );
    // Meanwhile, everybody else is served.
    bystander.expect_ack(json!({"sylkrtc": "ping"})).await;
    eprintln!(
        "flood: {sent} requests sent, {acks} replies read, {:?}",
        started.elapsed()
    );
}

/// Whether the gateway closed a socket: it reads end-of-stream (or a reset) within `within`.
async fn closed_by_the_gateway(socket: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 256];
    match tokio::time::timeout(within, socket.read(&mut buffer)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// Opens `count` TCP connections to `addr` from `source`, sending nothing.
async fn idle_sockets(
    source: &str,
    addr: std::net::SocketAddr,
    count: usize,
) -> Vec<tokio::net::TcpStream> {
    let mut sockets = Vec::new();
    for _ in 0..count {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        sockets.push(socket.connect(addr).await.expect("connects"));
    }
    sockets
}

/// Idle sockets cannot use up the gateway: past the per-source limit a new connection is
/// closed at once, on the HTTP port and on the SIP TCP port; a connection that sends no
/// request headers is closed after the header timeout; meanwhile other clients get /health,
/// WebSockets and SIP over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_are_bounded_per_source_and_timed_out() {
    let mut config = Config::default();
    config.http.max_connections_per_source = 20;
    config.sip.max_connections_per_source = 20;
    let gateway = Gateway::start(config).await;

    // HTTP: 20 held, the 21st to 30th closed at once.
    let mut held = idle_sockets("127.0.0.9", gateway.addr, 20).await;
    let mut extra = idle_sockets("127.0.0.9", gateway.addr, 10).await;
    for socket in &mut extra {
        assert!(closed_by_the_gateway(socket, Duration::from_secs(2)).await);
    }
    assert!(!closed_by_the_gateway(&mut held[0], Duration::from_millis(200)).await);
    // Others are served meanwhile.
    assert_eq!(gateway.get("/health").await.0, 200);
    let mut client = gateway.client().await;
    client.expect_ack(json!({"sylkrtc": "ping"})).await;

    // SIP over TCP: the same per-source limit.
    let sip_tcp = gateway.sip.1;
    let _sip_held = idle_sockets("127.0.0.9", sip_tcp, 20).await;
    let mut sip_extra = idle_sockets("127.0.0.9", sip_tcp, 5).await;
    for socket in &mut sip_extra {
        assert!(closed_by_the_gateway(socket, Duration::from_secs(2)).await);
    }
    let mut other = tokio::net::TcpStream::connect(sip_tcp).await.unwrap();
    use tokio::io::AsyncWriteExt;
    other
        .write_all(
            b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKidle\r\n\
              From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: idle-1\r\nCSeq: 1 OPTIONS\r\n\
              Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = [0u8; 64];
    use tokio::io::AsyncReadExt;
    let count = tokio::time::timeout(Duration::from_secs(5), other.read(&mut response))
        .await
        .expect("an answer over TCP")
        .unwrap();
    assert!(
        response[..count].starts_with(b"SIP/2.0 "),
        "{:?}",
        &response[..count]
    );

    // HTTP connections that never send their request headers are closed after 10 s.
    for socket in &mut held {
        assert!(closed_by_the_gateway(socket, Duration::from_secs(12)).await);
    }
    // Their places came back.
    let mut again = idle_sockets("127.0.0.9", gateway.addr, 1).await;
    assert!(!closed_by_the_gateway(&mut again[0], Duration::from_millis(200)).await);
    client.expect_ack(json!({"sylkrtc": "ping"})).await;
}
