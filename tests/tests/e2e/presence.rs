//! Presence in the local domain (the gateway's `presence` account event): a user sees the
//! contacts of their address book who have them as a contact (or an allow policy) go online
//! and offline, whether on a browser or a phone; a stranger, or a watcher they block, sees
//! nothing.

use std::time::Duration;

use gateway_tests::{Client, Gateway};
use protocol::{AccountEvent, Event, ServerMessage};
use serde_json::json;

use crate::calls::next;
use crate::local::{DOMAIN, local_client, phone, shipped};

fn add(owner: &str, kind: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"sylkrtc": "account-update-addressbook", "account": format!("{owner}@{DOMAIN}"),
        "action": "add", "type": kind, "data": data})
}

/// The next `presence` event of `client`: (contact, state).
pub(crate) async fn presence(client: &mut Client) -> (String, String) {
    loop {
        if let ServerMessage::Event(Event::Account {
            event: AccountEvent::Presence { contact, state, .. },
            ..
        }) = next(client).await
        {
            return (contact, state);
        }
    }
}

/// No `presence` event for `wait`.
async fn no_presence(client: &mut Client, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(message) = tokio::time::timeout_at(deadline, client.recv()).await {
        if let ServerMessage::Event(Event::Account {
            event: AccountEvent::Presence { contact, state, .. },
            ..
        }) = message
        {
            panic!("unexpected presence: {contact} {state}");
        }
    }
}

#[tokio::test]
async fn contacts_see_each_other_come_and_go() {
    let gateway = Gateway::start(shipped()).await;
    let bob_uri = format!("bob@{DOMAIN}");
    let mut bob = local_client(&gateway, "bob").await;
    bob.expect_ack_amid_events(add(
        "bob",
        "contact",
        json!({"id": "a", "uri": format!("alice@{DOMAIN}"), "name": "Alice"}),
    ))
    .await;
    // mallory is a contact of bob's too, but blocked.
    bob.expect_ack_amid_events(add(
        "bob",
        "contact",
        json!({"id": "m", "uri": format!("mallory@{DOMAIN}"), "name": "M"}),
    ))
    .await;
    bob.expect_ack_amid_events(add(
        "bob",
        "policy",
        json!({"id": "p", "uri": format!("mallory@{DOMAIN}"), "action": "block"}),
    ))
    .await;

    // alice has bob as a contact, and bob has alice: she sees him online, then offline.
    let mut alice = local_client(&gateway, "alice").await;
    alice
        .expect_ack_amid_events(add(
            "alice",
            "contact",
            json!({"id": "b", "uri": format!("sip:{bob_uri}"), "name": "Bob"}),
        ))
        .await;
    assert_eq!(
        presence(&mut alice).await,
        (bob_uri.clone(), "online".to_owned())
    );
    bob.close().await;
    assert_eq!(
        presence(&mut alice).await,
        (bob_uri.clone(), "offline".to_owned())
    );

    // A phone of bob's counts too.
    let bob_phone = phone(&gateway, "bob", "anything", 1000.0).await;
    assert_eq!(
        presence(&mut alice).await,
        (bob_uri.clone(), "online".to_owned())
    );
    drop(bob_phone);

    // carol is a stranger to bob, mallory blocked: neither learns anything (bob is online on
    // his phone).
    for stranger in ["carol", "mallory"] {
        let mut client = local_client(&gateway, stranger).await;
        client
            .expect_ack_amid_events(add(
                stranger,
                "contact",
                json!({"id": "b", "uri": bob_uri, "name": "Bob"}),
            ))
            .await;
        no_presence(&mut client, Duration::from_secs(3)).await;
        client.close().await;
    }
    alice.close().await;
}
