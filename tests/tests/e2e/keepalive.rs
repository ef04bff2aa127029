//! WebSocket Ping frames from the gateway, and closing connections that never answer them.

use std::time::Duration;

use gateway::Config;
use gateway_tests::{Client, Gateway};
use protocol::Version;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn pinging_every_second() -> Config {
    let mut config = Config::default();
    config.websocket.websocket_ping_interval = 1;
    config
}

#[tokio::test]
async fn the_gateway_pings_and_a_responsive_client_stays() {
    let gateway = Gateway::start(pinging_every_second()).await;
    let (mut client, mut v1) = (
        gateway.client().await,
        gateway.client_version(Version::V1).await,
    );
    // The first Ping comes after one interval.
    let started = tokio::time::Instant::now();
    match client.recv_frame().await {
        Some(Message::Ping(_)) => {}
        other => panic!("expected a Ping frame, got {other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(v1.recv_frame().await, Some(Message::Ping(_))));
    // The client library answers Pings while it reads; after several intervals both are still in.
    tokio::join!(
        client.expect_silence(Duration::from_millis(3500)),
        v1.expect_silence(Duration::from_millis(3500))
    );
    client.expect_ack(json!({"sylkrtc": "ping"})).await;
    v1.expect_ack(json!({"sylkrtc": "ping"})).await;
}

#[tokio::test]
async fn a_client_that_never_answers_is_closed() {
    let gateway = Gateway::start(pinging_every_second()).await;
    for version in Version::PREFERENCE {
        let mut deaf = Client::connect(&gateway.url, &[version.subprotocol()], None)
            .await
            .unwrap();
        let mut other = gateway.client_version(version).await;
        // Not reading means not answering Pings: the Ping goes out at 1 s, the deadline is 1.5 s.
        // Meanwhile the other client reads, and so answers its Pings.
        other.expect_silence(Duration::from_millis(2500)).await;
        deaf.expect_ready().await;
        let (code, reason) = deaf.expect_close().await;
        assert_eq!(code, 1001);
        assert_eq!(reason, "no pong within 500 ms");
        // The other client is unaffected.
        other.expect_ack(json!({"sylkrtc": "ping"})).await;
    }
}

#[tokio::test]
async fn ping_requests_are_acked_without_pings_configured() {
    let mut config = Config::default();
    config.websocket.websocket_ping_interval = 0;
    let gateway = Gateway::start(config).await;
    for version in Version::PREFERENCE {
        let mut client = gateway.client_version(version).await;
        for _ in 0..5 {
            client.expect_ack(json!({"sylkrtc": "ping"})).await;
        }
    }
}
