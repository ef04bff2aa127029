//! The upgrade: subprotocol choice, the ready event, the origin check.

use gateway::Config;
use gateway_tests::{Client, Gateway};
use protocol::Version;

#[tokio::test]
async fn the_offered_subprotocol_picks_the_version() {
    let gateway = Gateway::start_default().await;
    for (offer, chosen) in [
        (&["sylkRTC-2"][..], "sylkRTC-2"),
        (&["sylkRTC-1"][..], "sylkRTC-1"),
        (&["sylkRTC-1", "sylkRTC-2"][..], "sylkRTC-2"),
        (&["chat", "sylkRTC-1"][..], "sylkRTC-1"),
    ] {
        let mut client = Client::connect(&gateway.url, offer, None).await.unwrap();
        assert_eq!(client.protocol.as_deref(), Some(chosen), "offer {offer:?}");
        // The ready event comes first, in the chosen version's encoding.
        let ready = client.recv_text().await;
        let expected = match chosen {
            "sylkRTC-1" => r#"{"event":"ready","sylkrtc":"event"}"#,
            _ => r#"{"sylkrtc":"ready-event"}"#,
        };
        assert_eq!(ready, expected, "offer {offer:?}");
        client.close().await;
    }
}

#[tokio::test]
async fn no_sylkrtc_subprotocol_gets_406() {
    let gateway = Gateway::start_default().await;
    for offer in [&[][..], &["sylkRTC-3"][..], &["sylkrtc-2"][..]] {
        let refused = Client::connect(&gateway.url, offer, None)
            .await
            .unwrap_err();
        assert_eq!(refused.status, 406, "offer {offer:?}");
        assert!(
            refused.body.contains("sylkRTC-2") && refused.body.contains("sylkRTC-1"),
            "the body names the accepted subprotocols: {}",
            refused.body
        );
    }
    assert_eq!(
        gateway
            .metric("sylkrtc_connections_rejected_total{reason=\"subprotocol\"}")
            .await,
        3.0
    );
}

#[tokio::test]
async fn the_path_is_configurable() {
    let mut config = Config::default();
    config.websocket.path = "/sylk".to_owned();
    let gateway = Gateway::start(config).await;
    assert!(gateway.url.ends_with("/sylk"));
    let mut client = gateway.client_version(Version::V1).await;
    client
        .expect_ack(serde_json::json!({"sylkrtc": "ping"}))
        .await;
    let (status, _) = gateway.get("/webrtcgateway/ws").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn origins_outside_web_origins_get_403() {
    let mut config = Config::default();
    config.http.web_origins = vec!["https://phone.example.com".to_owned()];
    let gateway = Gateway::start(config).await;
    let allowed = Client::connect(
        &gateway.url,
        &["sylkRTC-2"],
        Some("https://phone.example.com"),
    )
    .await;
    assert!(allowed.is_ok());
    for origin in [Some("https://evil.example.com"), Some("null"), None] {
        let refused = Client::connect(&gateway.url, &["sylkRTC-2"], origin)
            .await
            .unwrap_err();
        assert_eq!(refused.status, 403, "origin {origin:?}");
        assert!(
            refused.body.contains("Origin not allowed"),
            "{}",
            refused.body
        );
    }
    assert_eq!(
        gateway
            .metric("sylkrtc_connections_rejected_total{reason=\"origin\"}")
            .await,
        3.0
    );

    // The default, "*", lets every origin in, and clients without one.
    let open = Gateway::start_default().await;
    for origin in [Some("https://evil.example.com"), Some("null"), None] {
        assert!(
            Client::connect(&open.url, &["sylkRTC-2"], origin)
                .await
                .is_ok(),
            "{origin:?}"
        );
    }
}
