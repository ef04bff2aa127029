//! Three gateway processes as one service, behind HAProxy (WebSocket) and Kamailio's
//! dispatcher (SIP), with the configuration files of `docs/deployment/`: where connections
//! and calls go, draining, restarts and an instance killed mid-call; users on different
//! instances reaching each other, and the shared store going away, in `cluster/users.rs`.

use std::net::Ipv4Addr;
use std::time::Duration;

use gateway_tests::Client;
use gateway_tests::baresip::Baresip;
use gateway_tests::browser::{AudioCodec, Browser};
use gateway_tests::cluster::{ADMIN_TOKEN, Dispatcher, Haproxy, Instance, Settings};
use gateway_tests::peers::{Kamailio, KamailioOptions};
use protocol::SessionState;
use serde_json::json;

use crate::calls::{browser_tone, payload_type, until, until_heard};

mod location;
mod users;

const WAIT: Duration = Duration::from_secs(15);
const DOMAIN: &str = "local.test";

/// The registrar of 127.0.0.1 (alice, bob, carol), three instances using it, HAProxy and the
/// dispatcher in front of them.
struct Cluster {
    registrar: Kamailio,
    instances: Vec<Instance>,
    haproxy: Haproxy,
    dispatcher: Dispatcher,
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_with(None, false).await
    }

    /// As [`Cluster::start`], the instances sharing the message store at `postgres_url`, and
    /// knowing each other as peers when `peers` says so.
    async fn start_with(postgres_url: Option<&str>, peers: bool) -> Cluster {
        let registrar = Kamailio::start(KamailioOptions::default());
        let settings = Settings {
            registrar: registrar.port,
            postgres_url,
            peers,
            local_extra: "",
            sip_extra: "",
            rtp_ports: 40,
        };
        let instances = Instance::start_all(3, &settings);
        let haproxy = Haproxy::start(&instances);
        let dispatcher = Dispatcher::start(&instances);
        for instance in &instances {
            dispatcher.wait_state(instance, "A").await;
        }
        Cluster {
            registrar,
            instances,
            haproxy,
            dispatcher,
        }
    }

    /// Each running instance's open sylkRTC connections.
    async fn connections(&mut self) -> Vec<f64> {
        let mut counts = Vec::new();
        for index in 0..self.instances.len() {
            let count = if self.instances[index].running() {
                self.instances[index].metric("sylkrtc_connections").await
            } else {
                0.0
            };
            counts.push(count);
        }
        counts
    }

    /// A phone of the local domain, `user`, through the dispatcher (its outbound proxy),
    /// auto-answering with `tone`, registering every `regint` seconds (0: never).
    fn phone(&self, user: &str, tone: f64, regint: u32) -> Baresip {
        Baresip::start_account(
            &format!(
                "<sip:{user}@{DOMAIN};transport=udp>;outbound=\"sip:127.0.0.1:{};transport=udp\";\
                 auth_pass=any;answermode=auto;audio_codecs=PCMU/8000/1;regint={regint}\n",
                self.dispatcher.port
            ),
            tone,
        )
    }

    /// A client through HAProxy from `source`, and the index of the instance it reached.
    async fn connect(&mut self, source: Ipv4Addr) -> (Client, usize) {
        let before = self.connections().await;
        let client = self.haproxy.client_from(source).await;
        let after = self.connections().await;
        let reached: Vec<usize> = (0..after.len())
            .filter(|&index| after[index] > before[index])
            .collect();
        assert_eq!(
            reached.len(),
            1,
            "one instance got the connection: {before:?} -> {after:?}"
        );
        (client, reached[0])
    }
}

// A failing test shows what every process logged.
impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for instance in &self.instances {
                eprintln!("---- {} ----\n{}", instance.id, instance.log.text());
            }
            eprintln!("---- haproxy ----\n{}", self.haproxy.log.text());
            eprintln!("---- dispatcher ----\n{}", self.dispatcher.log.text());
        }
    }
}

/// Adds and registers `account` (`user@127.0.0.1` at the registrar, or `user@local.test`).
async fn register(client: &mut Client, account: &str, password: &str) {
    let (user, domain) = account.split_once('@').expect("user@domain");
    let ha1 = sip::ha1(user, domain, password);
    client
        .expect_ack(json!({"sylkrtc": "account-add", "account": account, "password": ha1}))
        .await;
    client
        .expect_ack(json!({"sylkrtc": "account-register", "account": account}))
        .await;
    crate::local::until_registered(client).await;
}

/// `account`'s stored messages, as `account-sync-conversations` gives them.
async fn history(client: &mut Client, account: &str) -> Vec<protocol::SyncedMessage> {
    client
        .expect_ack_amid_events(
            json!({"sylkrtc": "account-sync-conversations", "account": account}),
        )
        .await;
    loop {
        if let protocol::ServerMessage::Event(protocol::Event::Account {
            event: protocol::AccountEvent::SyncConversations { messages },
            ..
        }) = crate::calls::next(client).await
        {
            return messages;
        }
    }
}

/// Calls `user`'s `phone` (of the local domain, playing `phone_tone`) from `account`: tones
/// heard both ways, then hung up on both sides.
async fn calls_phone(
    client: &mut Client,
    account: &str,
    phone: &Baresip,
    user: &str,
    phone_tone: f64,
) {
    let session = format!("to-{user}");
    let (browser, pt) = talk(
        client,
        account,
        &session,
        &format!("{user}@{DOMAIN}"),
        440.0,
    )
    .await;
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(
        until_heard(phone_tone, tone).await.0,
        phone_tone,
        "{account} hears {user}"
    );
    assert!(
        phone.until_received(440.0, 2.0, WAIT).await,
        "{user} hears {account}: {:?}",
        phone.received_tone()
    );
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": session}))
        .await;
    until(client, &session, |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;
    browser.close().await;
    assert!(phone.wait_for("CALL_CLOSED", 1, WAIT).await);
}

/// Calls `uri` from `account` and waits until media flows both ways: the browser and the
/// payload type of PCMU, on which it sends `tone`.
async fn talk(
    client: &mut Client,
    account: &str,
    session: &str,
    uri: &str,
    tone: f64,
) -> (Browser, u8) {
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let offer = browser.offer().await;
    client
        .expect_ack_amid_events(json!({"sylkrtc": "session-create", "account": account,
            "session": session, "uri": uri, "sdp": offer}))
        .await;
    let answer = match until(client, session, |state| {
        matches!(state, SessionState::Accepted { .. })
    })
    .await
    {
        SessionState::Accepted { sdp: Some(sdp), .. } => sdp,
        other => panic!("no answer: {other:?}"),
    };
    browser.accept_answer(&answer).await;
    assert!(browser.connected(WAIT).await, "the browser leg connects");
    let pt = payload_type(&answer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, tone);
    (browser, pt)
}

/// bob (a phone at the registrar, 1000 Hz) is started, alice registers and calls him and
/// hears him: bob, alice's browser (sending 440 Hz) and its payload type.
async fn alice_calls_bob(cluster: &Cluster, alice: &mut Client) -> (Baresip, Browser, u8) {
    let bob = Baresip::start(
        "bob",
        "bobpw",
        cluster.registrar.port,
        "PCMU/8000/1",
        1000.0,
    );
    cluster.registrar.wait_bindings("bob", 1, WAIT);
    register(alice, "alice@127.0.0.1", "alicepw").await;
    let (browser, pt) = talk(alice, "alice@127.0.0.1", "to-bob", "bob@127.0.0.1", 440.0).await;
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0, "alice hears bob");
    (bob, browser, pt)
}

/// How many packets of `pt` the browser receives over one second (media still flows).
async fn flowing(browser: &Browser, pt: u8) -> usize {
    let count = || {
        browser
            .received()
            .iter()
            .filter(|packet| packet.header.payload_type == pt)
            .count()
    };
    let before = count();
    tokio::time::sleep(Duration::from_secs(1)).await;
    count() - before
}

/// A phone of the local domain calls the echo test through the dispatcher, hears itself and
/// hangs up.
async fn phone_calls_echo(phone: &Baresip, calls_before: usize) {
    phone.command("dial", &format!("sip:echo@{DOMAIN}"));
    assert!(
        phone
            .wait_for("CALL_ESTABLISHED", calls_before + 1, WAIT)
            .await,
        "the echo answers through the dispatcher:\n{}",
        phone.log.text()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    phone.command("hangup", "");
    assert!(phone.wait_for("CALL_CLOSED", calls_before + 1, WAIT).await);
}

/// The next incoming call of `client`'s accounts: its session and offer.
async fn incoming_call(client: &mut Client) -> (String, String) {
    loop {
        if let protocol::ServerMessage::Event(protocol::Event::Account {
            event: protocol::AccountEvent::IncomingSession { session, sdp, .. },
            ..
        }) = crate::calls::next(client).await
        {
            return (session, sdp);
        }
    }
}

/// `caller` (with `account`) calls `uri` as `session`; `callee` takes the call in a browser
/// that sends 1000 Hz and hears the caller's 440 Hz: the caller's browser, its PCMU payload
/// type, and the callee's browser.
async fn browser_call(
    caller: &mut Client,
    account: &str,
    session: &str,
    callee: &mut Client,
    uri: &str,
) -> (Browser, u8, Browser) {
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let offer = browser.offer().await;
    caller
        .expect_ack_amid_events(json!({"sylkrtc": "session-create", "account": account,
            "session": session, "uri": uri, "sdp": offer}))
        .await;
    let (incoming, callee_offer) = incoming_call(callee).await;
    let mut callee_browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = callee_browser.answer(&callee_offer).await;
    callee
        .expect_ack(json!({"sylkrtc": "session-answer", "session": incoming, "sdp": answer}))
        .await;
    assert!(
        callee_browser.connected(WAIT).await,
        "the callee's leg connects"
    );
    let callee_pt = payload_type(&callee_offer, media::Format::Audio(media::Codec::Pcmu));
    callee_browser.send_pcmu_tone(callee_pt, 1000.0);
    let caller_answer = match until(caller, session, |state| {
        matches!(state, SessionState::Accepted { .. })
    })
    .await
    {
        SessionState::Accepted { sdp: Some(sdp), .. } => sdp,
        other => panic!("no answer: {other:?}"),
    };
    browser.accept_answer(&caller_answer).await;
    assert!(browser.connected(WAIT).await, "the caller's leg connects");
    let pt = payload_type(&caller_answer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    let tone = || browser_tone(&callee_browser, callee_pt, AudioCodec::Pcmu);
    assert_eq!(
        until_heard(440.0, tone).await.0,
        440.0,
        "the callee hears the caller"
    );
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(
        until_heard(1000.0, tone).await.0,
        1000.0,
        "the caller hears the callee"
    );
    (browser, pt, callee_browser)
}

/// Calls every instance took, in all.
async fn calls_total(cluster: &mut Cluster) -> Vec<f64> {
    let mut totals = Vec::new();
    for instance in &mut cluster.instances {
        totals.push(if instance.running() {
            instance.metric("sylkrtc_calls_total").await
        } else {
            0.0
        });
    }
    totals
}

/// Connections spread over the instances; one drained (SIGTERM) while it and the
/// others carry calls: its idle client is closed with 1012 and connects again to another
/// instance, new connections and new SIP calls (through the dispatcher, which sees its 503 to
/// OPTIONS) go elsewhere, its own call goes on until the phone hangs up, then it stops; the
/// other instances' calls never notice. Restarted, it is taken back by both balancers, then
/// drained by `POST /admin/drain` with no call and stops at once. The
/// instances see each browser's own address (PROXY protocol), not HAProxy's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_instance_keeps_its_calls_while_new_ones_go_elsewhere() {
    let mut cluster = Cluster::start().await;
    // Six browsers, two per instance (leastconn), each from its own loopback address.
    let mut clients = Vec::new();
    for number in 0..6u8 {
        let source = Ipv4Addr::new(127, 0, 1, 10 + number);
        let (client, instance) = cluster.connect(source).await;
        clients.push((client, instance, source));
    }
    let counts = cluster.connections().await;
    assert_eq!(counts, [2.0, 2.0, 2.0], "leastconn spreads the WebSockets");
    for (_, instance, source) in &clients {
        let log = cluster.instances[*instance].log.text();
        assert!(
            log.contains(&format!("peer={source}:")),
            "{} logs the browser's own address {source} (PROXY protocol):\n{log}",
            cluster.instances[*instance].id
        );
    }

    // alice (the first browser) calls bob, a phone at the registrar.
    let (mut alice, drained, _) = clients.remove(0);
    let (bob, alice_browser, alice_pt) = alice_calls_bob(&cluster, &mut alice).await;
    // On each other instance one browser calls the echo test.
    let mut echoes = Vec::new();
    for index in (0..3).filter(|index| *index != drained) {
        let position = clients
            .iter()
            .position(|(_, instance, _)| *instance == index)
            .expect("a browser on each instance");
        let (mut client, instance, _) = clients.remove(position);
        let account = format!("user{index}@{DOMAIN}");
        register(&mut client, &account, "any").await;
        let (browser, pt) = talk(
            &mut client,
            &account,
            "echo",
            &format!("echo@{DOMAIN}"),
            700.0,
        )
        .await;
        let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
        assert_eq!(
            until_heard(700.0, tone).await.0,
            700.0,
            "the echo on instance {instance}"
        );
        echoes.push((client, browser, pt, instance));
    }
    let idle_position = clients
        .iter()
        .position(|(_, instance, _)| *instance == drained)
        .expect("an idle browser on the drained instance");
    let (mut idle, _, idle_source) = clients.remove(idle_position);

    // The drain: a wrong token is refused; SIGTERM drains.
    let target = &cluster.instances[drained];
    assert_eq!(target.post_drain(None).await, 401);
    assert_eq!(
        target.post_drain(Some("cluster-test-admin-tokem")).await,
        401
    );
    assert_eq!(target.get("/health").await.0, 200);
    target.signal("TERM");
    let deadline = tokio::time::Instant::now() + WAIT;
    while target.get("/health").await.0 != 503 {
        assert!(tokio::time::Instant::now() < deadline, "SIGTERM drains");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = target.get("/health").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("\"draining\"") && body.contains(&target.id),
        "{body}"
    );
    assert_eq!(target.metric("sylkrtc_draining").await, 1.0);
    let drained_id = target.id.clone();
    // The idle browser is told to connect again, and does, to another instance.
    let (code, reason) = tokio::time::timeout(WAIT, idle.expect_close())
        .await
        .expect("the idle browser is closed in time");
    assert_eq!(code, 1012, "{reason}");
    let (_idle, now_on) = cluster.connect(idle_source).await;
    assert_ne!(
        now_on, drained,
        "the browser came back to the drained instance"
    );
    // A new browser goes elsewhere too; the drained instance refuses it when asked directly.
    let (_new, new_on) = cluster.connect(Ipv4Addr::new(127, 0, 1, 30)).await;
    assert_ne!(new_on, drained);
    let Err(refused) = cluster.instances[drained].client().await else {
        panic!("the draining instance took a new WebSocket");
    };
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("draining"), "{}", refused.body);
    // SIP: the dispatcher sees the 503 to its OPTIONS, and phones' calls go elsewhere.
    cluster
        .dispatcher
        .wait_state(&cluster.instances[drained], "I")
        .await;
    let dave = cluster.phone("dave", 1500.0, 0);
    let before = calls_total(&mut cluster).await;
    for call in 0..3 {
        phone_calls_echo(&dave, call).await;
    }
    let after = calls_total(&mut cluster).await;
    assert_eq!(
        after[drained], before[drained],
        "no new call reached the draining instance: {before:?} -> {after:?}"
    );
    assert_eq!(
        after.iter().sum::<f64>() - before.iter().sum::<f64>(),
        3.0,
        "{before:?} -> {after:?}"
    );

    // alice's call on the draining instance goes on, and so do the echoes elsewhere.
    // A new call from alice's connection, still open for her call, is refused saying why.
    let second = Browser::new(&[AudioCodec::Pcmu]).await;
    let offer = second.offer().await;
    alice
        .expect_ack_amid_events(
            json!({"sylkrtc": "session-create", "account": "alice@127.0.0.1",
            "session": "second", "uri": "bob@127.0.0.1", "sdp": offer}),
        )
        .await;
    match until(&mut alice, "second", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await
    {
        SessionState::Terminated { reason } => {
            let reason = reason.unwrap_or_default();
            assert!(
                reason.starts_with("503") && reason.contains("draining"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    second.close().await;
    assert!(
        flowing(&alice_browser, alice_pt).await > 20,
        "alice's call goes on"
    );
    // bob hangs up (his BYE reaches the draining instance): alice's call ends, her connection
    // is closed, and the instance stops by itself.
    bob.command("hangup", "");
    until(&mut alice, "to-bob", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;
    let (code, _) = tokio::time::timeout(WAIT, alice.expect_close())
        .await
        .expect("alice is closed once her call ended");
    assert_eq!(code, 1012);
    let status = cluster.instances[drained].wait_exit(WAIT).await;
    assert!(
        status.success(),
        "the drained instance exits cleanly: {status}"
    );
    for (_, browser, pt, instance) in &echoes {
        assert!(
            flowing(browser, *pt).await > 20,
            "the echo call on instance {instance} went on"
        );
    }

    // Restarted, both balancers take it back, and it gets the next WebSocket (it has the
    // fewest).
    cluster.haproxy.wait_server(&drained_id, "DOWN", 1).await;
    cluster.instances[drained].restart();
    cluster
        .dispatcher
        .wait_state(&cluster.instances[drained], "A")
        .await;
    cluster.haproxy.wait_server(&drained_id, "UP", 1).await;
    let (mut back, back_on) = cluster.connect(Ipv4Addr::new(127, 0, 1, 31)).await;
    assert_eq!(
        back_on, drained,
        "the restarted instance takes the next WebSocket"
    );
    // Drained again, by the admin endpoint: with no call it closes its browser and stops.
    assert_eq!(
        cluster.instances[drained]
            .post_drain(Some(ADMIN_TOKEN))
            .await,
        202
    );
    let (code, _) = tokio::time::timeout(WAIT, back.expect_close())
        .await
        .expect("the idle browser is closed in time");
    assert_eq!(code, 1012);
    let status = cluster.instances[drained].wait_exit(WAIT).await;
    assert!(status.success(), "{status}");
    for (client, browser, _, _) in echoes {
        drop(client);
        browser.close().await;
    }
    alice_browser.close().await;
}

/// One instance killed (SIGKILL) mid-call: the phone's side of the call ends on its media
/// timeout (no BYE can come); its browser loses the connection, connects again
/// through HAProxy to another instance and registers again there, and that instance removes
/// the binding the dead one left at the registrar (its OPTIONS got no answer), so the phone's
/// next call reaches the browser alone; a call on another instance goes on untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_loses_only_its_own_calls() {
    // Peers: the instances know each other's addresses.
    let mut cluster = Cluster::start_with(None, true).await;
    let alice_source = Ipv4Addr::new(127, 0, 1, 40);
    let (mut alice, killed) = cluster.connect(alice_source).await;
    let (mut other, other_on) = cluster.connect(Ipv4Addr::new(127, 0, 1, 41)).await;
    assert_ne!(killed, other_on, "leastconn spreads the WebSockets");
    let account = format!("user{other_on}@{DOMAIN}");
    register(&mut other, &account, "any").await;
    let (echo, echo_pt) = talk(
        &mut other,
        &account,
        "echo",
        &format!("echo@{DOMAIN}"),
        700.0,
    )
    .await;

    // bob ends a call by himself once no RTP has come for 5 s.
    let bob = Baresip::start_with_rtp_timeout(
        &format!(
            "<sip:bob@127.0.0.1:{};transport=udp>;auth_pass=bobpw;answermode=auto;\
             audio_codecs=PCMU/8000/1;regint=300\n",
            cluster.registrar.port
        ),
        1000.0,
        5,
    );
    cluster.registrar.wait_bindings("bob", 1, WAIT);
    register(&mut alice, "alice@127.0.0.1", "alicepw").await;
    let (browser, pt) = talk(
        &mut alice,
        "alice@127.0.0.1",
        "to-bob",
        "bob@127.0.0.1",
        440.0,
    )
    .await;
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0);

    cluster.instances[killed].signal("KILL");
    let status = cluster.instances[killed].wait_exit(WAIT).await;
    assert!(!status.success(), "{status}");
    browser.close().await;
    // alice's connection ends without a close frame.
    loop {
        match tokio::time::timeout(WAIT, alice.recv_frame()).await {
            Ok(None) => break,
            Ok(Some(_)) => continue,
            Err(_) => panic!("alice's connection outlives its instance"),
        }
    }
    // bob's side of the dead call: no BYE can come; his media timeout ends it. Then he calls
    // alice, who came back on another instance.
    assert!(
        bob.wait_for("CALL_CLOSED", 1, WAIT).await,
        "bob's call ends on its media timeout:\n{}",
        bob.log.text()
    );
    let (mut alice, now_on) = cluster.connect(alice_source).await;
    assert_ne!(now_on, killed);
    register(&mut alice, "alice@127.0.0.1", "alicepw").await;
    // Her new instance saw the binding the killed one left at the registrar, asked it, got no
    // answer, and removed it: calls no longer fork to it.
    tokio::task::block_in_place(|| {
        cluster
            .registrar
            .wait_bindings("alice", 1, Duration::from_secs(20))
    });
    bob.command(
        "dial",
        &format!("sip:alice@127.0.0.1:{}", cluster.registrar.port),
    );
    let (session, offer) = incoming_call(&mut alice).await;
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = browser.answer(&offer).await;
    alice
        .expect_ack(json!({"sylkrtc": "session-answer", "session": session, "sdp": answer}))
        .await;
    assert!(browser.connected(WAIT).await);
    let pt = payload_type(&offer, media::Format::Audio(media::Codec::Pcmu));
    browser.send_pcmu_tone(pt, 440.0);
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(
        until_heard(1000.0, tone).await.0,
        1000.0,
        "alice hears bob again"
    );
    assert!(
        flowing(&echo, echo_pt).await > 20,
        "the call on the other instance went on"
    );
    browser.close().await;
    echo.close().await;
}

/// A rolling restart: each instance in turn is drained (SIGTERM), its calls end (their
/// browsers hang up), it stops and starts again, and the balancers take it back; meanwhile every
/// call on the other instances goes on, and the browsers that were moved call again from
/// wherever they landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_drops_no_call_of_the_other_instances() {
    let mut cluster = Cluster::start().await;
    // One browser per instance, each in a call to the echo test.
    struct Talker {
        client: Client,
        browser: Browser,
        pt: u8,
        on: usize,
        source: Ipv4Addr,
        account: String,
        calls: u32,
    }
    let mut talkers = Vec::new();
    for number in 0..3u8 {
        let source = Ipv4Addr::new(127, 0, 1, 80 + number);
        let (mut client, on) = cluster.connect(source).await;
        let account = format!("roll{number}@{DOMAIN}");
        register(&mut client, &account, "any").await;
        let (browser, pt) = talk(
            &mut client,
            &account,
            "echo-0",
            &format!("echo@{DOMAIN}"),
            700.0,
        )
        .await;
        talkers.push(Talker {
            client,
            browser,
            pt,
            on,
            source,
            account,
            calls: 1,
        });
    }
    for restarted in 0..3 {
        let id = cluster.instances[restarted].id.clone();
        cluster.instances[restarted].signal("TERM");
        for talker in talkers.iter().filter(|talker| talker.on != restarted) {
            assert!(
                flowing(&talker.browser, talker.pt).await > 20,
                "a call on another instance goes on while {id} drains"
            );
        }
        // The calls on the draining instance end; their browsers come back elsewhere and call
        // again.
        for talker in talkers.iter_mut().filter(|talker| talker.on == restarted) {
            let session = format!("echo-{}", talker.calls - 1);
            talker
                .client
                .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": session}))
                .await;
            let (code, _) = tokio::time::timeout(WAIT, talker.client.expect_close())
                .await
                .expect("closed once its call ended");
            assert_eq!(code, 1012);
        }
        let status = cluster.instances[restarted].wait_exit(WAIT).await;
        assert!(status.success(), "{id} stops cleanly: {status}");
        for talker in talkers.iter_mut().filter(|talker| talker.on == restarted) {
            let (mut client, on) = cluster.connect(talker.source).await;
            assert_ne!(on, restarted);
            register(&mut client, &talker.account, "any").await;
            let session = format!("echo-{}", talker.calls);
            let (browser, pt) = talk(
                &mut client,
                &talker.account,
                &session,
                &format!("echo@{DOMAIN}"),
                700.0,
            )
            .await;
            let old = std::mem::replace(&mut talker.browser, browser);
            old.close().await;
            (talker.client, talker.pt, talker.on) = (client, pt, on);
            talker.calls += 1;
        }
        cluster.haproxy.wait_server(&id, "DOWN", 1).await;
        cluster.instances[restarted].restart();
        cluster
            .dispatcher
            .wait_state(&cluster.instances[restarted], "A")
            .await;
        cluster.haproxy.wait_server(&id, "UP", 1).await;
    }
    for talker in talkers {
        assert!(
            flowing(&talker.browser, talker.pt).await > 20,
            "every call is up at the end"
        );
        talker.browser.close().await;
    }
}
