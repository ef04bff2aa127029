//! wss and https through rustls, when a certificate and key are configured.

use gateway::Config;
use gateway_tests::{Client, Gateway, TempDir, TestCertificate, http_get};
use serde_json::json;

#[tokio::test]
async fn wss_and_https_work_with_a_configured_certificate() {
    let dir = TempDir::new();
    let certificate = TestCertificate::generate(dir.path());
    let mut config = Config::default();
    config.http.tls_certificate = Some(certificate.certificate.clone());
    config.http.tls_private_key = Some(certificate.key.clone());
    let gateway = Gateway::start(config).await;
    assert!(gateway.url.starts_with("wss://"), "{}", gateway.url);

    let stream = certificate.connect(gateway.addr).await;
    let mut client = Client::connect_over(stream, &gateway.url, &["sylkRTC-2"], None)
        .await
        .unwrap();
    client.expect_ready().await;
    client.expect_ack(json!({"sylkrtc": "ping"})).await;

    let (status, body) = http_get(certificate.connect(gateway.addr).await, "/health").await;
    assert_eq!(status, 200, "{body}");

    // A plain-text client gets nowhere, and does not disturb the TLS client.
    let plain = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    drop(plain);
    client.expect_ack(json!({"sylkrtc": "ping"})).await;
}

#[tokio::test]
async fn a_bad_key_file_stops_the_start() {
    let dir = TempDir::new();
    let certificate = TestCertificate::generate(dir.path());
    std::fs::write(&certificate.key, "not a key").unwrap();
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.http.tls_certificate = Some(certificate.certificate.clone());
    config.http.tls_private_key = Some(certificate.key.clone());
    let error = gateway::Server::bind(&config)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("private key"), "{error}");
    assert!(gateway::check(&config).is_err());
}
