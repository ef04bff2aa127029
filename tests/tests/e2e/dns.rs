//! Finding SIP servers through DNS (RFC 3263) with a real DNS server (dnsmasq): SRV and NAPTR
//! records, failing over between a domain's servers on 503, timeouts and refused connections
//! for registrations and calls, TLS certificates checked against the SIP domain rather than the
//! SRV target (RFC 5922), and look-ups that fail being retried.

use std::time::Duration;

use gateway::Config;
use gateway_tests::Gateway;
use gateway_tests::peers::{Dnsmasq, Kamailio, KamailioOptions, free_port};
use protocol::{AccountEvent, Event, RegistrationState, ServerMessage, SessionState};
use serde_json::json;

use crate::register::{WAIT, blocking, ha1};
use crate::sipp_calls::{sipp_done, sipp_uas, sipp_uas_with};

/// The registration states of `account`, until registered or failed (or `limit` passes).
async fn states_until_settled(
    client: &mut gateway_tests::Client,
    limit: Duration,
) -> Vec<RegistrationState> {
    let mut states = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let Ok(message) = tokio::time::timeout_at(deadline, client.recv()).await else {
            return states;
        };
        if let ServerMessage::Event(Event::Account {
            event: AccountEvent::RegistrationState(state),
            ..
        }) = message
        {
            let settled = matches!(
                state,
                RegistrationState::Registered | RegistrationState::Failed { .. }
            );
            states.push(state);
            if settled {
                return states;
            }
        }
    }
}

/// Adds `alice@example.test` and asks to register it.
async fn register_alice(client: &mut gateway_tests::Client) {
    register(client, "alice", "example.test", "alicepw").await;
}

/// Adds `user@domain` with `password` and asks to register it.
async fn register(client: &mut gateway_tests::Client, user: &str, domain: &str, password: &str) {
    let account = format!("{user}@{domain}");
    client
        .expect_ack(json!({"sylkrtc": "account-add", "account": account,
            "password": ha1(user, domain, password)}))
        .await;
    client
        .expect_ack(json!({"sylkrtc": "account-register", "account": account}))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registrar_is_found_through_dns_srv() {
    let kamailio = std::sync::Arc::new(Kamailio::start(KamailioOptions::default()));
    let dns = Dnsmasq::start(&[
        format!(
            "--srv-host=_sip._udp.example.test,sip1.example.test,{},0,0",
            kamailio.port
        ),
        "--address=/sip1.example.test/127.0.0.1".to_owned(),
    ]);
    let mut config = Config::default();
    config.sip.dns_servers = vec![dns.addr];
    let gateway = Gateway::start(config).await;
    let mut client = gateway.client().await;
    register_alice(&mut client).await;
    for expected in [
        RegistrationState::Registering,
        RegistrationState::Registered,
    ] {
        match tokio::time::timeout(WAIT, client.recv()).await.unwrap() {
            ServerMessage::Event(Event::Account {
                event: AccountEvent::RegistrationState(state),
                ..
            }) => {
                assert_eq!(state, expected, "{}", kamailio.log.text());
            }
            other => panic!("{other:?}"),
        }
    }
    let k = kamailio.clone();
    blocking(move || k.wait_bindings("alice", 1, WAIT)).await;

    // A domain with no records fails with the reason.
    register(&mut client, "bob", "nowhere.test", "x").await;
    let mut states = Vec::new();
    for _ in 0..2 {
        if let ServerMessage::Event(Event::Account {
            event: AccountEvent::RegistrationState(state),
            ..
        }) = tokio::time::timeout(WAIT, client.recv()).await.unwrap()
        {
            states.push(state);
        }
    }
    assert_eq!(states[0], RegistrationState::Registering);
    assert!(
        matches!(&states[1], RegistrationState::Failed { reason: Some(reason) } if reason.starts_with("503")),
        "{states:?}"
    );
}

/// A domain DNS cannot resolve fails the registration with 503, and the look-up is tried again
/// with backoff (30 s first) instead of being left failed for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_failure_at_register_is_retried_with_backoff() {
    let dns = Dnsmasq::start(&["--address=/other.test/127.0.0.1".to_owned()]);
    let mut config = Config::default();
    config.sip.dns_servers = vec![dns.addr];
    let gateway = Gateway::start(config).await;
    let mut client = gateway.client().await;
    register(&mut client, "alice", "nowhere.test", "pw").await;
    let mut states = Vec::new();
    // Registering, failed, then registering again after the first backoff of 30 s: nothing
    // for 27 s (no retry sooner), then the retry (within the client's patience of 5 s).
    while states.len() < 3 {
        if states.len() == 2 {
            client.expect_silence(Duration::from_secs(27)).await;
        }
        match client.recv().await {
            ServerMessage::Event(Event::Account {
                event: AccountEvent::RegistrationState(state),
                ..
            }) => states.push(state),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(states[0], RegistrationState::Registering);
    match &states[1] {
        RegistrationState::Failed {
            reason: Some(reason),
        } => assert!(reason.starts_with("503"), "{reason}"),
        other => panic!("expected failed, got {other:?}"),
    }
    assert_eq!(states[2], RegistrationState::Registering, "retried");
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "account-remove", "account": "alice@nowhere.test"}),
        )
        .await;
}

/// The domain's servers by SRV: the first answers 503, the second never answers (Timer F),
/// the third is the registrar. The registration moves down the list within one attempt and
/// ends registered, the browser seeing no failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_fails_over_between_srv_targets_on_503_and_timeout() {
    let kamailio = std::sync::Arc::new(Kamailio::start(KamailioOptions::default()));
    let (overloaded, sipp) = sipp_uas("uas_register_503.xml");
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dns = Dnsmasq::start(&[
        format!("--srv-host=_sip._udp.example.test,busy.example.test,{overloaded},10,0"),
        format!(
            "--srv-host=_sip._udp.example.test,silent.example.test,{},20,0",
            silent.local_addr().unwrap().port()
        ),
        format!(
            "--srv-host=_sip._udp.example.test,registrar.example.test,{},30,0",
            kamailio.port
        ),
        "--address=/example.test/127.0.0.1".to_owned(),
    ]);
    let mut config = Config::default();
    config.sip.dns_servers = vec![dns.addr];
    // Timer F (64*T1): how long the silent server is waited for.
    config.sip.t1_ms = 50;
    let gateway = Gateway::start(config).await;
    let mut client = gateway.client().await;
    register_alice(&mut client).await;
    let states = states_until_settled(&mut client, Duration::from_secs(20)).await;
    assert_eq!(
        states,
        [
            RegistrationState::Registering,
            RegistrationState::Registered
        ],
        "{}",
        kamailio.log.text()
    );
    sipp_done(sipp).await;
    let mut buffer = [0u8; 2048];
    let (length, _) = silent
        .try_recv_from(&mut buffer)
        .expect("the silent server was tried");
    assert!(buffer[..length].starts_with(b"REGISTER "));
    let k = kamailio.clone();
    blocking(move || k.wait_bindings("alice", 1, WAIT)).await;
}

/// NAPTR names the transport (TLS here, although UDP comes first in our preference and has SRV
/// records too); its SRV records list a server that refuses connections, then the registrar.
/// The registrar's certificate names the SIP domain, not the SRV target: it is accepted; a
/// certificate naming only the SRV target is refused (RFC 5922 section 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naptr_chooses_tls_and_the_certificate_is_checked_against_the_sip_domain() {
    for (names, accepted) in [
        (&["example.test"][..], true),
        (&["registrar.example.test"][..], false),
    ] {
        let dir = gateway_tests::TempDir::new();
        let certificate = gateway_tests::TestCertificate::generate_for(dir.path(), names);
        let kamailio = std::sync::Arc::new(Kamailio::start(KamailioOptions {
            tls: Some((certificate.certificate.clone(), certificate.key.clone())),
            ..KamailioOptions::default()
        }));
        let tls_port = kamailio.tls_port.unwrap();
        let dns = Dnsmasq::start(&[
            "--naptr-record=example.test,10,10,s,SIPS+D2T,,_sips._tcp.example.test".to_owned(),
            format!(
                "--srv-host=_sips._tcp.example.test,refusing.example.test,{},10,0",
                free_port()
            ),
            format!("--srv-host=_sips._tcp.example.test,registrar.example.test,{tls_port},20,0"),
            format!(
                "--srv-host=_sip._udp.example.test,registrar.example.test,{},10,0",
                kamailio.port
            ),
            "--address=/example.test/127.0.0.1".to_owned(),
        ]);
        let mut config = Config::default();
        config.sip.dns_servers = vec![dns.addr];
        config.sip.tls_ca_file = Some(certificate.certificate.clone());
        let gateway = Gateway::start(config).await;
        let mut client = gateway.client().await;
        register_alice(&mut client).await;
        let states = states_until_settled(&mut client, Duration::from_secs(15)).await;
        if accepted {
            assert_eq!(
                states,
                [
                    RegistrationState::Registering,
                    RegistrationState::Registered
                ],
                "{}",
                kamailio.log.text()
            );
            let k = kamailio.clone();
            let binding = blocking(move || k.wait_bindings("alice", 1, WAIT))
                .await
                .remove(0);
            assert_eq!(binding.socket, format!("tls:127.0.0.1:{tls_port}"));
        } else {
            match states.last() {
                Some(RegistrationState::Failed {
                    reason: Some(reason),
                }) => assert!(reason.starts_with("503"), "{reason}"),
                other => panic!("{other:?}"),
            }
            assert!(kamailio.bindings("alice").is_empty());
        }
    }
}

/// A call to a domain whose first SRV server answers 503 goes to the next one, which answers:
/// the browser's call is accepted as if the first had not been there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_fails_over_to_the_next_srv_target_on_503() {
    let (overloaded, first) = sipp_uas("uas_invite_503.xml");
    let (answering, second) = sipp_uas("uas_183_then_200.xml");
    let dns = Dnsmasq::start(&[
        format!("--srv-host=_sip._udp.example.test,busy.example.test,{overloaded},10,0"),
        format!("--srv-host=_sip._udp.example.test,callee.example.test,{answering},20,0"),
        "--address=/example.test/127.0.0.1".to_owned(),
    ]);
    let mut config = Config::default();
    config.sip.dns_servers = vec![dns.addr];
    let (_gateway, mut client, browser) = call_example_test(config, "s1").await;
    let accepted = crate::calls::until(&mut client, "s1", |state| {
        matches!(
            state,
            protocol::SessionState::Accepted { .. } | protocol::SessionState::Terminated { .. }
        )
    })
    .await;
    assert!(
        matches!(accepted, protocol::SessionState::Accepted { .. }),
        "{accepted:?}"
    );
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "s1"}))
        .await;
    sipp_done(first).await;
    sipp_done(second).await;
    browser.close().await;
}

/// The servers are looked up again as the registration goes on: when the domain's SRV record
/// moves to another registrar, the next refresh goes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_follows_the_domains_records_when_they_change() {
    // Both grant at most 4 s: refreshes every 2 s.
    let options = || KamailioOptions {
        max_expires: 4,
        ..KamailioOptions::default()
    };
    let old = std::sync::Arc::new(Kamailio::start(options()));
    let new = std::sync::Arc::new(Kamailio::start(options()));
    let records = |port: u16| {
        vec![
            format!("--srv-host=_sip._udp.example.test,registrar.example.test,{port},10,0"),
            "--address=/example.test/127.0.0.1".to_owned(),
        ]
    };
    let dns = Dnsmasq::start(&records(old.port));
    let mut config = Config::default();
    config.sip.dns_servers = vec![dns.addr];
    let gateway = Gateway::start(config).await;
    let mut client = gateway.client().await;
    register_alice(&mut client).await;
    let states = states_until_settled(&mut client, WAIT).await;
    assert_eq!(states.last(), Some(&RegistrationState::Registered));
    let o = old.clone();
    blocking(move || o.wait_bindings("alice", 1, WAIT)).await;
    assert!(new.bindings("alice").is_empty());

    let port = dns.addr.port();
    drop(dns);
    let _dns = Dnsmasq::start_at(port, &records(new.port));
    let n = new.clone();
    blocking(move || n.wait_bindings("alice", 1, Duration::from_secs(10))).await;
}

/// Starts a call from alice@example.test to bob@example.test (whose server the DNS names).
async fn call_example_test(
    config: Config,
    session: &str,
) -> (
    Gateway,
    gateway_tests::Client,
    gateway_tests::browser::Browser,
) {
    use gateway_tests::browser::{AudioCodec, Browser};
    let gateway = Gateway::start(config).await;
    let mut client = gateway.client().await;
    client
        .expect_ack(
            json!({"sylkrtc": "account-add", "account": "alice@example.test",
            "password": ha1("alice", "example.test", "alicepw")}),
        )
        .await;
    let browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let offer = browser.offer().await;
    client
        .expect_ack(
            json!({"sylkrtc": "session-create", "account": "alice@example.test",
            "session": session, "uri": "bob@example.test", "sdp": offer}),
        )
        .await;
    (gateway, client, browser)
}

/// A 302 to a host that `[sip] redirect_domains` allows is followed: the INVITE goes to the
/// Contact and that callee answers. With the default (no host allowed) the call ends with the
/// 3xx and the Contact it named, and nothing reaches that Contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirections_are_followed_only_to_allowed_hosts() {
    for allowed in [true, false] {
        let (target, callee) = sipp_uas("uas_183_then_200.xml");
        let target_port = target.to_string();
        let (port, redirector) =
            sipp_uas_with("uas_302.xml", &["-key", "target_port", &target_port]);
        let dns = Dnsmasq::start(&[
            format!("--srv-host=_sip._udp.example.test,redirect.example.test,{port},10,0"),
            "--address=/example.test/127.0.0.1".to_owned(),
        ]);
        let mut config = Config::default();
        config.sip.dns_servers = vec![dns.addr];
        if allowed {
            config.sip.redirect_domains = vec!["127.0.0.1".into()];
        }
        let session = if allowed { "followed" } else { "refused" };
        let (gateway, mut client, browser) = call_example_test(config, session).await;
        let end = crate::calls::until(&mut client, session, |state| {
            matches!(
                state,
                SessionState::Accepted { .. } | SessionState::Terminated { .. }
            )
        })
        .await;
        sipp_done(redirector).await;
        if allowed {
            assert!(matches!(end, SessionState::Accepted { .. }), "{end:?}");
            client
                .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": session}))
                .await;
            sipp_done(callee).await;
        } else {
            let SessionState::Terminated {
                reason: Some(reason),
            } = end
            else {
                panic!("{end:?}");
            };
            assert!(reason.starts_with("302"), "{reason}");
            assert!(
                reason.contains(&format!("sip:target@127.0.0.1:{target_port}")),
                "{reason}"
            );
            drop(callee);
        }
        assert_eq!(gateway.metric("sylkrtc_calls").await, 0.0);
        browser.close().await;
    }
}
