//! Users on different instances of the cluster: browsers that reach each other through their
//! accounts' registrar, the local domain across instances (peers), and the shared store going
//! away during a call.

use std::net::Ipv4Addr;
use std::time::Duration;

use gateway_tests::Client;
use gateway_tests::browser::{AudioCodec, Browser};
use protocol::{AccountEvent, SessionState};
use serde_json::json;

use super::{
    Cluster, DOMAIN, WAIT, alice_calls_bob, browser_call, calls_phone, flowing, history,
    incoming_call, register,
};
use crate::calls::{browser_tone, payload_type, until, until_heard};

/// Browsers on different instances reach each other through their accounts' registrar: a
/// call (tones both ways) and a message. The instances share PostgreSQL: once the callee's
/// instance drains and it comes back on another one, the message is in its history there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_on_different_instances_call_and_message_each_other() {
    let postgres = gateway_tests::postgres::Postgres::shared();
    let url = postgres.database();
    let mut cluster = Cluster::start_with(Some(&url), false).await;
    let (mut alice, alice_on) = cluster.connect(Ipv4Addr::new(127, 0, 1, 50)).await;
    let bob_source = Ipv4Addr::new(127, 0, 1, 51);
    let (mut bob, bob_on) = cluster.connect(bob_source).await;
    assert_ne!(alice_on, bob_on, "leastconn spreads the WebSockets");
    register(&mut alice, "alice@127.0.0.1", "alicepw").await;
    register(&mut bob, "bob@127.0.0.1", "bobpw").await;

    // alice calls bob: the registrar sends the call to bob's instance.
    let (alice_browser, alice_pt, bob_browser) = browser_call(
        &mut alice,
        "alice@127.0.0.1",
        "to-bob",
        &mut bob,
        "bob@127.0.0.1",
    )
    .await;
    let tone = || browser_tone(&alice_browser, alice_pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0, "alice hears bob");
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "to-bob"}))
        .await;
    alice_browser.close().await;
    bob_browser.close().await;

    // A message from alice reaches bob on his instance.
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "account-message",
            "account": "alice@127.0.0.1", "uri": "bob@127.0.0.1", "message_id": "across-1",
            "content": "hello across instances", "content_type": "text/plain",
            "timestamp": "2026-12-05T10:00:00.000Z"}))
        .await;
    let got = loop {
        if let protocol::ServerMessage::Event(protocol::Event::Account {
            event: protocol::AccountEvent::Message(message),
            ..
        }) = crate::calls::next(&mut bob).await
        {
            break message;
        }
    };
    assert_eq!(got.content, "hello across instances");

    // bob's instance drains; bob comes back on another one, whose store (the same) has it.
    cluster.instances[bob_on].signal("TERM");
    let (code, _) = tokio::time::timeout(WAIT, async {
        loop {
            match bob.recv_frame().await {
                Some(tokio_tungstenite::tungstenite::Message::Close(Some(frame))) => {
                    return (u16::from(frame.code), frame.reason.to_string());
                }
                Some(_) => continue,
                None => panic!("bob's connection ended without a close frame"),
            }
        }
    })
    .await
    .expect("bob is closed in time");
    assert_eq!(code, 1012);
    // With no call left it stops at once.
    let status = cluster.instances[bob_on].wait_exit(WAIT).await;
    assert!(status.success(), "{status}");
    let (mut bob, now_on) = cluster.connect(bob_source).await;
    assert_ne!(now_on, bob_on);
    register(&mut bob, "bob@127.0.0.1", "bobpw").await;
    let messages = history(&mut bob, "bob@127.0.0.1").await;
    assert!(
        messages
            .iter()
            .any(|message| message.content == "hello across instances"),
        "the message is in bob's history on another instance: {messages:?}"
    );
}

/// The next account event of `client` that `wanted` picks (others are passed over).
async fn account_event<T>(
    client: &mut Client,
    wanted: impl Fn(protocol::AccountEvent) -> Option<T>,
) -> T {
    loop {
        if let protocol::ServerMessage::Event(protocol::Event::Account { event, .. }) =
            crate::calls::next(client).await
            && let Some(found) = wanted(event)
        {
            return found;
        }
    }
}

/// The next disposition notification of `client`.
async fn notification(client: &mut Client) -> protocol::DispositionNotification {
    account_event(client, |event| match event {
        AccountEvent::DispositionNotification(notification) => Some(notification),
        _ => None,
    })
    .await
}

/// The local domain over three instances that know each other as peers: a browser calls a
/// browser of the domain on another instance, that browser calls a phone that registered
/// through the dispatcher (to whichever instance), and a phone's call through the dispatcher
/// reaches the browser's instance; a message between the browsers and its read notification
/// reach each other's instances at once. Each instance rings (and delivers to) the places it
/// holds and its peers, which ring theirs (never their peers again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_users_on_different_instances_reach_each_other() {
    let mut cluster = Cluster::start_with(None, true).await;
    let (mut alice, alice_on) = cluster.connect(Ipv4Addr::new(127, 0, 1, 60)).await;
    let (mut bob, bob_on) = cluster.connect(Ipv4Addr::new(127, 0, 1, 61)).await;
    assert_ne!(alice_on, bob_on, "leastconn spreads the WebSockets");
    register(&mut alice, &format!("alice@{DOMAIN}"), "any").await;
    register(&mut bob, &format!("bob@{DOMAIN}"), "any").await;

    // Browser to browser across instances.
    let (alice_browser, _, bob_browser) = browser_call(
        &mut alice,
        &format!("alice@{DOMAIN}"),
        "to-bob",
        &mut bob,
        &format!("bob@{DOMAIN}"),
    )
    .await;
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "to-bob"}))
        .await;
    until(&mut alice, "to-bob", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;
    alice_browser.close().await;
    bob_browser.close().await;

    // A message from alice reaches bob's browser on his instance at once (no store is shared
    // here), alice hears it was delivered, and bob's read notification comes back to her.
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "account-message",
            "account": format!("alice@{DOMAIN}"), "uri": format!("bob@{DOMAIN}"),
            "message_id": "peer-1", "content": "hello from the next instance",
            "content_type": "text/plain", "timestamp": "2026-12-05T10:00:00.000Z"}))
        .await;
    let got = account_event(&mut bob, |event| match event {
        AccountEvent::Message(message) => Some(message),
        _ => None,
    })
    .await;
    assert_eq!(
        (got.sender.uri.as_str(), got.content.as_str()),
        (
            format!("alice@{DOMAIN}").as_str(),
            "hello from the next instance"
        )
    );
    let sent = notification(&mut alice).await;
    assert_eq!(
        (sent.state.as_str(), sent.code),
        ("accepted", Some(200)),
        "delivered, not only stored: {sent:?}"
    );
    bob.expect_ack_amid_events(json!({"sylkrtc": "account-disposition-notification",
        "account": format!("bob@{DOMAIN}"), "uri": format!("alice@{DOMAIN}"),
        "message_id": "peer-1", "state": "displayed", "timestamp": "2026-12-05T10:00:01.000Z"}))
        .await;
    let read = notification(&mut alice).await;
    assert_eq!(
        (read.message_id.as_str(), read.state.as_str()),
        ("peer-1", "displayed")
    );

    // carol's phone registers through the dispatcher, at whichever instance its Call-ID
    // hashes to; bob calls her from his.
    let carol = cluster.phone("carol", 1500.0, 300);
    assert!(
        carol.wait_log("200 OK", WAIT).await,
        "carol registers through the dispatcher:\n{}",
        carol.log.text()
    );
    calls_phone(&mut bob, &format!("bob@{DOMAIN}"), &carol, "carol", 1500.0).await;

    // dave's phone (not registered) calls bob through the dispatcher, whichever instance it
    // reaches: bob's browser rings on his.
    let dave = cluster.phone("dave", 700.0, 0);
    dave.command("dial", &format!("sip:bob@{DOMAIN}"));
    let (session, offer) = incoming_call(&mut bob).await;
    let mut browser = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = browser.answer(&offer).await;
    bob.expect_ack(json!({"sylkrtc": "session-answer", "session": session, "sdp": answer}))
        .await;
    assert!(browser.connected(WAIT).await);
    let pt = payload_type(&offer, media::Format::Audio(media::Codec::Pcmu));
    let tone = || browser_tone(&browser, pt, AudioCodec::Pcmu);
    assert_eq!(until_heard(700.0, tone).await.0, 700.0, "bob hears dave");
    assert!(dave.wait_for("CALL_ESTABLISHED", 1, WAIT).await);
    dave.command("hangup", "");
    assert!(dave.wait_for("CALL_CLOSED", 1, WAIT).await);
    browser.close().await;
}

/// The shared PostgreSQL goes away while a browser is in a call: the request that needs the
/// store gets an error that says so, the call goes on, and once the database is back the same
/// request works again, without any restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_going_away_leaves_calls_alone() {
    let postgres = gateway_tests::postgres::Postgres::shared();
    let url = postgres.database();
    let name = url.rsplit('/').next().expect("a database name").to_owned();
    let mut cluster = Cluster::start_with(Some(&url), false).await;
    let (mut alice, _) = cluster.connect(Ipv4Addr::new(127, 0, 1, 70)).await;
    let (bob, browser, pt) = alice_calls_bob(&cluster, &mut alice).await;

    // Every connection to the database is ended and new ones are refused.
    postgres.cut_off(&name);
    let lookup = json!({"sylkrtc": "account-sync-conversations", "account": "alice@127.0.0.1"});
    let reply = alice.request_amid_events(lookup.clone()).await;
    assert!(
        matches!(&reply, protocol::ServerMessage::Error { error, .. } if error.contains("message store")),
        "{reply:?}"
    );
    assert!(
        flowing(&browser, pt).await > 20,
        "the call goes on without the store"
    );

    postgres.allow(&name);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match alice.request_amid_events(lookup.clone()).await {
            protocol::ServerMessage::Ack { .. } => break,
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the store was not reached again: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    assert!(flowing(&browser, pt).await > 20, "the call still goes on");
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "to-bob"}))
        .await;
    assert!(bob.wait_for("CALL_CLOSED", 1, WAIT).await);
    browser.close().await;
}
