//! Registration against a real registrar (kamailio with digest auth), over UDP and TCP.

use std::time::Duration;

use gateway::Config;
use gateway_tests::peers::{Kamailio, KamailioOptions};
use gateway_tests::{Client, Gateway};
use protocol::{AccountEvent, Event, RegistrationState, ServerMessage, Version};
use serde_json::json;

pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) fn ha1(user: &str, realm: &str, password: &str) -> String {
    sip::ha1(user, realm, password)
}

/// A gateway whose accounts register at `kamailio`, over `transport`.
async fn gateway(kamailio: &Kamailio, transport: &str) -> Gateway {
    let mut config = Config::default();
    config.sip.outbound_proxy = format!("sip:127.0.0.1:{};transport={transport}", kamailio.port);
    Gateway::start(config).await
}

/// Adds `user@127.0.0.1` with this HA1 and asks to register it.
pub(crate) async fn register(client: &mut Client, user: &str, ha1: &str) {
    let account = format!("{user}@127.0.0.1");
    client
        .expect_ack(json!({"sylkrtc": "account-add", "account": account, "password": ha1, "user_agent": "e2e browser"}))
        .await;
    client
        .expect_ack(json!({"sylkrtc": "account-register", "account": account}))
        .await;
}

/// The next registration state of `user`.
pub(crate) async fn state(client: &mut Client, user: &str) -> RegistrationState {
    match tokio::time::timeout(WAIT, client.recv())
        .await
        .expect("a registration event in time")
    {
        ServerMessage::Event(Event::Account {
            account,
            event: AccountEvent::RegistrationState(state),
        }) => {
            assert_eq!(account, format!("{user}@127.0.0.1"));
            state
        }
        other => panic!("expected a registration-state event, got {other:?}"),
    }
}

pub(crate) async fn until_registered(client: &mut Client, user: &str) {
    assert_eq!(state(client, user).await, RegistrationState::Registering);
    assert_eq!(state(client, user).await, RegistrationState::Registered);
}

pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking work")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_ha1_registers_and_unregister_removes_the_binding() {
    let kamailio = std::sync::Arc::new(Kamailio::start(KamailioOptions::default()));
    for (transport, version) in [("udp", Version::V2), ("tcp", Version::V1)] {
        let gateway = gateway(&kamailio, transport).await;
        let mut client = gateway.client_version(version).await;
        register(&mut client, "alice", &ha1("alice", "127.0.0.1", "alicepw")).await;
        until_registered(&mut client, "alice").await;
        let k = kamailio.clone();
        let bindings = blocking(move || k.wait_bindings("alice", 1, WAIT)).await;
        let binding = &bindings[0];
        assert!(
            binding
                .socket
                .starts_with(&format!("{transport}:127.0.0.1:")),
            "{binding:?}"
        );
        assert!(binding.instance.starts_with("<urn:uuid:"), "{binding:?}");
        assert_eq!(binding.user_agent, "e2e browser");
        let port = if transport == "udp" {
            gateway.sip.0.port()
        } else {
            gateway.sip.1.port()
        };
        assert!(
            binding
                .address
                .contains(&format!("@127.0.0.1:{port};transport={transport}")),
            "{binding:?}"
        );
        assert!(binding.expires > 500, "{binding:?}");

        if transport == "tcp" {
            // A second account reuses the gateway's connection to the registrar.
            register(&mut client, "bob", &ha1("bob", "127.0.0.1", "bobpw")).await;
            until_registered(&mut client, "bob").await;
            let sources: std::collections::HashSet<String> = kamailio
                .log
                .text()
                .lines()
                .filter(|line| line.contains("REGISTER sip:") && line.contains(" -> challenge"))
                .filter_map(|line| line.split(" from ").nth(1))
                .map(|rest| rest.split(' ').next().unwrap_or_default().to_owned())
                .collect();
            // UDP registrations of the first round came from the UDP port; over TCP, one more.
            assert_eq!(sources.len(), 2, "{sources:?}");
            client
                .expect_ack(json!({"sylkrtc": "account-remove", "account": "bob@127.0.0.1"}))
                .await;
        }
        // Unregister is acked at once; the binding goes away after.
        client
            .expect_ack(json!({"sylkrtc": "account-unregister", "account": "alice@127.0.0.1"}))
            .await;
        let k = kamailio.clone();
        blocking(move || k.wait_bindings("alice", 0, WAIT)).await;
        // No event follows an unregister.
        client.expect_silence(Duration::from_millis(300)).await;
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ha1_fails_with_the_status_and_is_not_retried() {
    let kamailio = Kamailio::start(KamailioOptions::default());
    let gateway = gateway(&kamailio, "udp").await;
    let mut client = gateway.client().await;
    register(&mut client, "alice", &ha1("alice", "127.0.0.1", "wrong")).await;
    assert_eq!(
        state(&mut client, "alice").await,
        RegistrationState::Registering
    );
    match state(&mut client, "alice").await {
        RegistrationState::Failed {
            reason: Some(reason),
        } => {
            assert!(
                reason == "401 Unauthorized" || reason.starts_with("403"),
                "{reason}"
            );
        }
        other => panic!("expected failed, got {other:?}"),
    }
    client.expect_silence(Duration::from_millis(500)).await;
    // Two REGISTERs (one answered with the wrong credentials), then nothing more.
    assert_eq!(
        kamailio.log.count("REGISTER sip:alice@127.0.0.1 from"),
        2,
        "{}",
        kamailio.log.text()
    );
    assert!(kamailio.bindings("alice").is_empty());
}

/// sylkrtc.js with `ha1: false` sends the plain password and no `ha1` field: the gateway computes
/// H(A1) with each challenge's realm (not the domain) and answers SHA-256 challenges too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_password_registers_with_any_realm_and_sha_256() {
    for algorithm in [None, Some("SHA-256")] {
        let kamailio = std::sync::Arc::new(Kamailio::start(KamailioOptions {
            realm: Some("voip.test".into()),
            algorithm: algorithm.map(str::to_owned),
            ..KamailioOptions::default()
        }));
        let gateway = gateway(&kamailio, "udp").await;
        let mut client = gateway.client().await;
        register(&mut client, "alice", "alicepw").await;
        until_registered(&mut client, "alice").await;
        let k = kamailio.clone();
        blocking(move || k.wait_bindings("alice", 1, WAIT)).await;
        let challenges = kamailio.log.count("REGISTER sip:alice@127.0.0.1 from");
        assert!(challenges >= 1, "{}", kamailio.log.text());

        // A wrong plain password is refused, once, whatever the algorithm.
        register(&mut client, "bob", "not-bobs").await;
        assert_eq!(
            state(&mut client, "bob").await,
            RegistrationState::Registering
        );
        assert!(
            matches!(
                state(&mut client, "bob").await,
                RegistrationState::Failed { reason: Some(_) }
            ),
            "{algorithm:?}"
        );
        assert!(kamailio.bindings("bob").is_empty());
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_connection_has_its_own_binding_and_closing_removes_it() {
    let kamailio = std::sync::Arc::new(Kamailio::start(KamailioOptions::default()));
    let gateway = gateway(&kamailio, "udp").await;
    let alice = ha1("alice", "127.0.0.1", "alicepw");
    let mut first = gateway.client().await;
    let mut second = gateway.client().await;
    register(&mut first, "alice", &alice).await;
    until_registered(&mut first, "alice").await;
    register(&mut second, "alice", &alice).await;
    until_registered(&mut second, "alice").await;
    register(&mut second, "bob", &ha1("bob", "127.0.0.1", "bobpw")).await;
    until_registered(&mut second, "bob").await;
    let k = kamailio.clone();
    let bindings = blocking(move || k.wait_bindings("alice", 2, WAIT)).await;
    assert_ne!(bindings[0].instance, bindings[1].instance);
    assert_ne!(bindings[0].address, bindings[1].address);

    // The second connection goes away: its bindings are removed, the first one's stays.
    second.close().await;
    let k = kamailio.clone();
    blocking(move || k.wait_bindings("alice", 1, WAIT)).await;
    let k = kamailio.clone();
    blocking(move || k.wait_bindings("bob", 0, WAIT)).await;
    // account-remove unregisters too.
    first
        .expect_ack(json!({"sylkrtc": "account-remove", "account": "alice@127.0.0.1"}))
        .await;
    let k = kamailio.clone();
    blocking(move || k.wait_bindings("alice", 0, WAIT)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_expiries_are_refreshed_and_a_restarted_registrar_gets_the_binding_back() {
    // kamailio grants at most 4 s: the gateway refreshes every 2 s.
    let mut kamailio = Kamailio::start(KamailioOptions {
        max_expires: 4,
        ..KamailioOptions::default()
    });
    let gateway = gateway(&kamailio, "udp").await;
    let mut client = gateway.client().await;
    register(&mut client, "carol", &ha1("carol", "127.0.0.1", "carolpw")).await;
    until_registered(&mut client, "carol").await;
    client.expect_silence(Duration::from_millis(4500)).await;
    let refreshes = kamailio.log.count("REGISTER ok sip:carol@127.0.0.1");
    assert!(
        refreshes >= 3,
        "{refreshes} successful REGISTERs in 4.5 s:\n{}",
        kamailio.log.text()
    );
    assert_eq!(kamailio.bindings("carol").len(), 1);

    // The registrar restarts and forgets every binding: the next refresh puts ours back.
    let kamailio = tokio::task::spawn_blocking(move || {
        kamailio.restart();
        assert!(kamailio.bindings("carol").is_empty());
        kamailio.wait_bindings("carol", 1, Duration::from_secs(4));
        kamailio
    })
    .await
    .unwrap();
    drop(kamailio);
}

/// Runs sipsak with `args`; returns its exit code and output.
async fn sipsak(args: Vec<String>) -> (i32, String) {
    let binary = gateway_tests::peers::require("sipsak", "sipsak");
    let output = tokio::process::Command::new(binary)
        .args(&args)
        .output()
        .await
        .expect("run sipsak");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_reach_a_registered_contact_and_nothing_else() {
    let kamailio = std::sync::Arc::new(Kamailio::start(KamailioOptions::default()));
    let gateway = gateway(&kamailio, "udp").await;
    let mut client = gateway.client().await;
    register(&mut client, "alice", &ha1("alice", "127.0.0.1", "alicepw")).await;
    until_registered(&mut client, "alice").await;
    let k = kamailio.clone();
    let binding = blocking(move || k.wait_bindings("alice", 1, WAIT))
        .await
        .remove(0);

    // An OPTIONS to alice, through the registrar (with digest auth), reaches our binding and
    // gets 200 with Allow.
    let sipp = gateway_tests::peers::require("sipp", "sip-tester");
    let scenario = gateway_tests::peers::data_dir().join("sipp/options_auth.xml");
    let output = tokio::process::Command::new(sipp)
        .arg(format!("127.0.0.1:{}", kamailio.port))
        .arg("-sf")
        .arg(&scenario)
        .args([
            "-s",
            "alice",
            "-key",
            "caller",
            "alice",
            "-au",
            "alice",
            "-ap",
            "alicepw",
            "-i",
            "127.0.0.1",
        ])
        .args([
            "-p",
            &gateway_tests::peers::free_port().to_string(),
            "-m",
            "1",
            "-nostdin",
        ])
        .args(["-timeout", "10", "-timeout_error"])
        .output()
        .await
        .expect("run sipp");
    assert!(
        output.status.success(),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        kamailio.log.text()
    );

    // Straight to the gateway: the binding's URI answers, any other user is 404, and the
    // gateway itself (no user: a load balancer's probe) answers 200.
    let direct = |uri: String| {
        vec![
            "-vv".into(),
            "-s".into(),
            uri,
            "-H".into(),
            "127.0.0.1".into(),
        ]
    };
    let (code, output) = sipsak(direct(binding.address.replace(";transport=udp", ""))).await;
    assert_eq!(code, 0, "{output}");
    let port = gateway.sip.0.port();
    let (code, output) = sipsak(direct(format!("sip:alice@127.0.0.1:{port}"))).await;
    assert_ne!(code, 0);
    assert!(output.contains("404 Not Found"), "{output}");
    let (code, output) = sipsak(direct(format!("sip:127.0.0.1:{port}"))).await;
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("200 OK"), "{output}");

    // Malformed requests that can be answered get 400; the gateway keeps serving.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let uri = binding.address.replace(";transport=udp", "");
    let bad = format!(
        "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbad1\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\n\
         To: <{uri}>\r\nCall-ID: bad-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    socket.send_to(bad.as_bytes(), gateway.sip.0).await.unwrap();
    let mut buffer = vec![0u8; 4096];
    let (length, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8_lossy(&buffer[..length]).into_owned();
    assert!(
        response.starts_with("SIP/2.0 400 Bad Request"),
        "{response}"
    );
    for garbage in [
        &b"\x00\x01\x02 not sip"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"INVITE sip:x SIP/2.0\r\n\r\n",
    ] {
        socket.send_to(garbage, gateway.sip.0).await.unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buffer))
            .await
            .is_err()
    );
    let (code, output) = sipsak(direct(uri)).await;
    assert_eq!(code, 0, "{output}");
    client.expect_ack(json!({"sylkrtc": "ping"})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_over_tls_and_checks_the_certificate() {
    let dir = gateway_tests::TempDir::new();
    let certificate = gateway_tests::TestCertificate::generate(dir.path());
    let kamailio = std::sync::Arc::new(Kamailio::start(KamailioOptions {
        tls: Some((certificate.certificate.clone(), certificate.key.clone())),
        ..KamailioOptions::default()
    }));
    let tls_port = kamailio.tls_port.unwrap();
    let proxy = format!("sip:127.0.0.1:{tls_port};transport=tls");

    // Trusting the registrar's certificate: registered over TLS.
    let mut config = Config::default();
    config.sip.outbound_proxy = proxy.clone();
    config.sip.tls_ca_file = Some(certificate.certificate.clone());
    let gateway = Gateway::start(config).await;
    let mut client = gateway.client().await;
    register(&mut client, "alice", &ha1("alice", "127.0.0.1", "alicepw")).await;
    until_registered(&mut client, "alice").await;
    let k = kamailio.clone();
    let binding = blocking(move || k.wait_bindings("alice", 1, WAIT))
        .await
        .remove(0);
    assert_eq!(
        binding.socket,
        format!("tls:127.0.0.1:{tls_port}"),
        "{binding:?}"
    );
    assert!(binding.address.ends_with(";transport=tls"), "{binding:?}");
    client
        .expect_ack(json!({"sylkrtc": "account-unregister", "account": "alice@127.0.0.1"}))
        .await;
    let k = kamailio.clone();
    blocking(move || k.wait_bindings("alice", 0, WAIT)).await;

    // Not trusting it (the system's authorities only): the connection is refused.
    let mut config = Config::default();
    config.sip.outbound_proxy = proxy;
    let untrusting = Gateway::start(config).await;
    let mut client = untrusting.client().await;
    register(&mut client, "bob", &ha1("bob", "127.0.0.1", "bobpw")).await;
    assert_eq!(
        state(&mut client, "bob").await,
        RegistrationState::Registering
    );
    match state(&mut client, "bob").await {
        RegistrationState::Failed {
            reason: Some(reason),
        } => assert!(reason.starts_with("503"), "{reason}"),
        other => panic!("expected failed, got {other:?}"),
    }
    assert!(kamailio.bindings("bob").is_empty());
}
