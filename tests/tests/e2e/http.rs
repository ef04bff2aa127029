//! /health, /metrics, and unknown paths.

use gateway_tests::Gateway;
use serde_json::{Value, json};

#[tokio::test]
async fn health_reports_ok() {
    let gateway = Gateway::start_default().await;
    let _client = gateway.client().await;
    let (status, body) = gateway.get("/health").await;
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["connections"], 1);
}

#[tokio::test]
async fn metrics_count_connections_requests_and_errors() {
    let gateway = Gateway::start_default().await;
    let mut client = gateway.client().await;
    client.expect_ack(json!({"sylkrtc": "ping"})).await;
    client
        .expect_ack(json!({"sylkrtc": "account-add", "account": "a@example.com",
            "password": "884edfee38ed471b8a15006700139485"}))
        .await;
    client.expect_error(json!({"sylkrtc": "what"})).await;
    let (status, body) = gateway.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE sylkrtc_requests_total counter"),
        "{body}"
    );
    for (series, value) in [
        ("sylkrtc_connections", 1.0),
        ("sylkrtc_connections_total", 1.0),
        ("sylkrtc_accounts", 1.0),
        ("sylkrtc_requests_total{request=\"ping\"}", 1.0),
        ("sylkrtc_requests_total{request=\"account-add\"}", 1.0),
        ("sylkrtc_requests_total{request=\"unknown\"}", 1.0),
        ("sylkrtc_errors_total{kind=\"unknown_request\"}", 1.0),
    ] {
        assert_eq!(gateway.metric(series).await, value, "{series}");
    }
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let gateway = Gateway::start_default().await;
    assert_eq!(gateway.get("/nope").await.0, 404);
    // The endpoint without an upgrade is not a WebSocket.
    let (status, _) = gateway.get("/webrtcgateway/ws").await;
    assert!((400..500).contains(&status), "{status}");
}
