//! The local domain's phone bindings shared through PostgreSQL: a phone stays reachable while
//! the instance it registered with is gone, and that instance takes its bindings back when it
//! comes back.

use std::net::Ipv4Addr;

use serde_json::json;

use super::{Cluster, DOMAIN, WAIT, calls_phone, history, register};

const PHONES: &str = "sylkrtc_local_bindings{kind=\"phone\"}";

/// carol's phone registers through the dispatcher with one instance, whose binding is written
/// to the shared store; a browser on that instance gets a message; the instance is killed
/// (SIGKILL): the browser comes back on another instance and finds the message in its
/// history, and a browser on another instance still calls carol (its instance rings her
/// stored binding through the dispatcher), with tones both ways. Restarted under the same id,
/// the instance holds her binding again, from the store, before she registers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_stays_reachable_while_its_instance_is_gone() {
    let postgres = gateway_tests::postgres::Postgres::shared();
    let url = postgres.database();
    let name = url.rsplit('/').next().expect("a database name").to_owned();
    let mut cluster = Cluster::start_with(Some(&url), true).await;
    let carol = cluster.phone("carol", 1500.0, 3600);
    assert!(
        carol.wait_log("200 OK", WAIT).await,
        "carol registers through the dispatcher:\n{}",
        carol.log.text()
    );
    let mut holder = None;
    for (index, instance) in cluster.instances.iter().enumerate() {
        if instance.metric(PHONES).await == 1.0 {
            holder = Some(index);
        }
    }
    let holder = holder.expect("one instance took carol's registration");
    // Written through by a task of its own, a moment after the registration.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stored = postgres.psql(
            &name,
            "SELECT instance, transport FROM phone_bindings WHERE username = 'carol'",
        );
        if stored.contains(&cluster.instances[holder].id) && stored.contains("udp") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the binding is in the store under its instance: {stored}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // dave's browser is on the same instance and bob's on another, both straight (not through
    // HAProxy, so that each is where it must be); bob sends dave a message, delivered live.
    let mut dave = cluster.instances[holder]
        .client()
        .await
        .expect("the instance takes a direct WebSocket");
    dave.expect_ready().await;
    register(&mut dave, &format!("dave@{DOMAIN}"), "any").await;
    let mut bob = cluster.instances[(holder + 1) % 3]
        .client()
        .await
        .expect("the instance takes a direct WebSocket");
    bob.expect_ready().await;
    register(&mut bob, &format!("bob@{DOMAIN}"), "any").await;
    bob.expect_ack_amid_events(json!({"sylkrtc": "account-message",
        "account": format!("bob@{DOMAIN}"), "uri": format!("dave@{DOMAIN}"),
        "message_id": "before-the-kill", "content": "are you still there?",
        "content_type": "text/plain", "timestamp": "2026-12-05T11:00:00.000Z"}))
        .await;
    loop {
        if let protocol::ServerMessage::Event(protocol::Event::Account {
            event: protocol::AccountEvent::Message(message),
            ..
        }) = crate::calls::next(&mut dave).await
        {
            assert_eq!(message.content, "are you still there?");
            break;
        }
    }

    cluster.instances[holder].signal("KILL");
    let status = cluster.instances[holder].wait_exit(WAIT).await;
    assert!(!status.success(), "{status}");
    // dave comes back through HAProxy on another instance: the message is in his history.
    let (mut dave, dave_on) = cluster.connect(Ipv4Addr::new(127, 0, 1, 81)).await;
    assert_ne!(dave_on, holder);
    register(&mut dave, &format!("dave@{DOMAIN}"), "any").await;
    let messages = history(&mut dave, &format!("dave@{DOMAIN}")).await;
    assert!(
        messages
            .iter()
            .any(|message| message.message_id == "before-the-kill"),
        "no stored message is lost with the instance: {messages:?}"
    );
    calls_phone(&mut bob, &format!("bob@{DOMAIN}"), &carol, "carol", 1500.0).await;

    // Back under the same id: it holds carol's binding again without her registering.
    cluster.instances[holder].restart();
    let deadline = std::time::Instant::now() + WAIT;
    while cluster.instances[holder].metric(PHONES).await != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the restarted instance did not take its binding back:\n{}",
            cluster.instances[holder].log.text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let log = cluster.instances[holder].log.text();
    assert!(
        log.contains("phone bindings taken back from the store") && log.contains("restored=1"),
        "from the store, not from a new registration:\n{log}"
    );
}
