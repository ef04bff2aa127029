//! Logs: trace_client shows every message, and secrets never appear.

use std::io::Write;
use std::sync::{Arc, Mutex};

use gateway::Config;
use gateway_tests::Gateway;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tracing_subscriber::fmt::MakeWriter;

const HA1: &str = "0badc0de0badc0de0badc0de0badc0de";

/// Collects everything logged on this thread (the test's runtime runs the gateway's tasks on it
/// too).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn trace_client_logs_every_message_without_secrets() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut config = Config::default();
    config.websocket.trace_client = true;
    let gateway = Gateway::start(config).await;
    let mut client = gateway.client().await;
    client
        .expect_ack(
            json!({"sylkrtc": "account-add", "account": "alice@example.com", "password": HA1}),
        )
        .await;
    client
        .expect_ack(json!({"sylkrtc": "account-add", "account": "bob@example.com", "password": "hunter2hunter2",
            "ha1": false}))
        .await;
    client
        .expect_ack(json!({"sylkrtc": "ping", "transaction": "traced-ping"}))
        .await;
    // Malformed JSON holding a secret is not shown either.
    client
        .send(Message::text(format!(
            r#"{{"sylkrtc":"account-add","password":"{HA1}""#
        )))
        .await;
    // A spelling of "password" with a JSON escape is still recognised as the password.
    client
        .send(Message::text(format!(
            r#"{{"sylkrtc":"account-add","transaction":"esc","account":"eve@example.com","pass\u0077ord":"{HA1}"}}"#
        )))
        .await;
    client.recv().await;
    client.close().await;
    gateway.stop().await;

    let logs = captured.text();
    assert!(!logs.contains(HA1), "the HA1 leaked into the logs:\n{logs}");
    assert!(
        !logs.contains("hunter2hunter2"),
        "the password leaked into the logs:\n{logs}"
    );
    assert!(logs.contains("<redacted>"), "{logs}");
    assert!(
        logs.contains(r#"recv {"sylkrtc":"ping","transaction":"traced-ping"}"#),
        "{logs}"
    );
    assert!(
        logs.contains(r#"send {"sylkrtc":"ack","transaction":"traced-ping"}"#),
        "{logs}"
    );
    assert!(logs.contains(r#"send {"sylkrtc":"ready-event"}"#), "{logs}");
    // Every line of a connection carries its span.
    assert!(logs.contains("conn{id=1 peer=127.0.0.1:"), "{logs}");
    assert!(
        logs.contains("disconnected: closed by the client"),
        "{logs}"
    );
}

#[tokio::test]
async fn registration_logs_never_show_the_ha1() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let kamailio =
        gateway_tests::peers::Kamailio::start(gateway_tests::peers::KamailioOptions::default());
    let mut config = Config::default();
    config.websocket.trace_client = true;
    config.sip.outbound_proxy = format!("sip:127.0.0.1:{}", kamailio.port);
    let gateway = Gateway::start(config).await;
    let mut client = gateway.client().await;
    let ha1 = sip::auth::ha1("alice", "127.0.0.1", "alicepw");
    client
        .expect_ack(
            json!({"sylkrtc": "account-add", "account": "alice@127.0.0.1", "password": ha1}),
        )
        .await;
    client
        .expect_ack(json!({"sylkrtc": "account-register", "account": "alice@127.0.0.1"}))
        .await;
    // registering, then registered: the digest was computed and sent.
    client.recv().await;
    let registered = client.recv().await;
    assert!(
        format!("{registered:?}").contains("Registered"),
        "{registered:?}"
    );
    client.close().await;
    gateway.stop().await;

    let logs = captured.text();
    assert!(
        logs.contains("SIP event"),
        "the SIP side logged at this level:\n{logs}"
    );
    assert!(
        !logs.contains(&ha1),
        "the HA1 leaked into the logs:\n{logs}"
    );
}
