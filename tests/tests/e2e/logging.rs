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
    // Other tests run on other threads without a subscriber: one that reaches a log line first
    // can leave it cached as disabled for every thread. Asked again now, it is enabled here.
    tracing::callsite::rebuild_interest_cache();

    let kamailio =
        gateway_tests::peers::Kamailio::start(gateway_tests::peers::KamailioOptions::default());
    let mut config = Config::default();
    config.websocket.trace_client = true;
    config.sip.outbound_proxy = format!("sip:127.0.0.1:{}", kamailio.port);
    let gateway = Gateway::start(config).await;
    let mut client = gateway.client().await;
    let ha1 = sip::ha1("alice", "127.0.0.1", "alicepw");
    client
        .expect_ack(
            json!({"sylkrtc": "account-add", "account": "alice@127.0.0.1", "password": ha1}),
        )
        .await;
    // Again, as other tests' subscribers came and went meanwhile (the global level filter is
    // recomputed from the live ones).
    tracing::callsite::rebuild_interest_cache();
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
    // Every SIP message is logged under sip::wire, the digest response masked.
    assert!(
        logs.contains("sip::wire") && logs.contains("REGISTER sip:127.0.0.1"),
        "the SIP messages are logged:\n{logs}"
    );
    assert!(logs.contains("response=\"***\""), "{logs}");
    for (at, _) in logs.match_indices("response=\"") {
        assert!(
            logs[at..].starts_with("response=\"***\""),
            "a digest response is shown: {}",
            &logs[at..(at + 60).min(logs.len())]
        );
    }
    assert!(
        logs.contains("SIP event"),
        "the SIP side logged at this level:\n{logs}"
    );
    assert!(
        !logs.contains(&ha1),
        "the HA1 leaked into the logs:\n{logs}"
    );
}

/// The real binary, whose logging goes through `log` as well as `tracing` (the WebSocket library
/// logs every frame through `log` at trace level): at no level, whatever `RUST_LOG` says, does a
/// password or HA1 reach its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_level_of_the_binary_prints_a_credential() {
    let dir = gateway_tests::TempDir::new();
    for level in [
        "error",
        "warn",
        "info",
        "debug",
        "trace",
        "tungstenite=trace,trace",
    ] {
        let port = gateway_tests::peers::free_port();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{port}\"\n[websocket]\ntrace_client = true\n\
                 [sip]\nlisten = \"127.0.0.1\"\nudp_port = 0\ntcp_port = 0\n"
            ),
        )
        .unwrap();
        let log = dir.path().join("stderr.log");
        let mut child = std::process::Command::new(gateway_tests::cluster::gateway_binary())
            .arg("--config")
            .arg(&config)
            // Its store (`data/`) goes in the test's directory.
            .current_dir(dir.path())
            .env("RUST_LOG", level)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the gateway");
        let url = format!("ws://127.0.0.1:{port}/webrtcgateway/ws");
        let started = std::time::Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed().as_secs() < 20,
                "the gateway did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let mut client = gateway_tests::Client::connect(&url, &["sylkRTC-2"], None)
            .await
            .expect("connected");
        client.expect_ready().await;
        client
            .expect_ack(
                json!({"sylkrtc": "account-add", "account": "alice@example.com", "password": HA1}),
            )
            .await;
        // sylkrtc.js with `ha1: false`: the plain password alone.
        client
            .expect_ack(
                json!({"sylkrtc": "account-add", "account": "bob@example.com",
                "password": "hunter2hunter2"}),
            )
            .await;
        client.close().await;
        let _ = child.kill();
        let _ = child.wait();
        let logs = std::fs::read_to_string(&log).unwrap();
        let hex_password: String = "hunter2hunter2"
            .bytes()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        for secret in [HA1, "hunter2hunter2", &hex_password, "68 75 6e 74 65 72"] {
            assert!(
                !logs.contains(secret),
                "RUST_LOG={level}: {secret} leaked into the log:\n{logs}"
            );
        }
        if level.contains("trace") {
            // The level was in force: the gateway's own trace of the client's messages is there.
            assert!(
                logs.contains("\"sylkrtc\":\"account-add\",\"transaction\""),
                "{logs}"
            );
            assert!(logs.contains("<redacted>"), "{logs}");
        }
    }
}

/// A client sending nothing but malformed messages gets a few warnings in the log, not one each.
#[tokio::test]
async fn malformed_messages_are_logged_a_few_per_connection_and_window() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let gateway = Gateway::start_default().await;
    let mut client = gateway.client().await;
    for n in 0..500 {
        client.feed(Message::text(format!("{{not json {n}"))).await;
    }
    client.flush().await;
    // The connection still works, and answers in order after the flood.
    client.expect_ack(json!({"sylkrtc": "ping"})).await;
    client.close().await;
    gateway.stop().await;
    let logs = captured.text();
    let shown = logs.matches("message ignored:").count();
    assert!((1..=5).contains(&shown), "{shown} warnings:\n{logs}");
    assert!(
        logs.contains(&format!(
            "{} more warnings about ignored messages were not shown",
            500 - shown
        )),
        "{logs}"
    );
}
