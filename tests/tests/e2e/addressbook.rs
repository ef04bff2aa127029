//! The address book: two browsers of one user of the local domain fetch and change it
//! (contacts, groups and their members, policies), each hearing of the other's changes; it is
//! kept in the store; a connection that did not register the account gets none of it.

use gateway_tests::Client;
use protocol::AccountEvent;
use serde_json::{Value, json};

use crate::conversations::{event, register};
use crate::local::{DOMAIN, closed, closed_client};

async fn browser(gateway: &gateway_tests::Gateway, user: &str) -> Client {
    let mut client = closed_client(gateway, user).await;
    register(&mut client, &format!("{user}@{DOMAIN}")).await;
    client
}

fn update(action: &str, kind: &str, data: Value) -> Value {
    json!({"sylkrtc": "account-update-addressbook", "account": format!("alice@{DOMAIN}"),
        "action": action, "type": kind, "data": data})
}

async fn fetched(client: &mut Client) -> Value {
    client
        .expect_ack(
            json!({"sylkrtc": "account-fetch-addressbook", "account": format!("alice@{DOMAIN}")}),
        )
        .await;
    match event(client).await {
        AccountEvent::AddressbookFetched { addressbook } => addressbook,
        other => panic!("not addressbook-fetched: {other:?}"),
    }
}

/// The `addressbook-updated` that comes next: (type, action, item).
async fn updated(client: &mut Client) -> (String, String, Value) {
    match event(client).await {
        AccountEvent::AddressbookUpdated { kind, action, item } => (kind, action, item),
        other => panic!("not addressbook-updated: {other:?}"),
    }
}

#[tokio::test]
async fn two_browsers_share_one_address_book() {
    let gateway = gateway_tests::Gateway::start(closed(&["alice"])).await;
    let mut first = browser(&gateway, "alice").await;
    let mut second = browser(&gateway, "alice").await;
    assert_eq!(
        fetched(&mut first).await,
        json!({"contacts": [], "groups": [], "policies": []})
    );

    let bob = json!({"id": "c1", "name": "Bob", "uris": [{"id": "u1", "uri": "bob@local.test"}],
        "dialog": {"policy": "default", "subscribe": false},
        "presence": {"policy": "allow", "subscribe": true}});
    first
        .expect_ack(update("add", "contact", bob.clone()))
        .await;
    for client in [&mut first, &mut second] {
        assert_eq!(
            updated(client).await,
            ("contact".into(), "add".into(), bob.clone())
        );
    }
    let friends = json!({"id": "g1", "name": "Friends", "contacts": []});
    second
        .expect_ack(update("add", "group", friends.clone()))
        .await;
    assert_eq!(updated(&mut second).await.2, friends);
    let policy = json!({"id": "p1", "name": "Carol", "uri": "carol@local.test",
        "dialog": {"policy": "deny", "subscribe": false},
        "presence": {"policy": "deny", "subscribe": false}});
    second
        .expect_ack(update("add", "policy", policy.clone()))
        .await;
    assert_eq!(updated(&mut second).await.2, policy);
    assert_eq!(updated(&mut first).await.2, friends);
    assert_eq!(updated(&mut first).await.2, policy);

    // Group members, as sylkrtc.js sends them: the group is updated with the contact in it.
    first
        .expect_ack(update(
            "add",
            "groupMember",
            json!({"groupId": "g1", "contactId": "c1"}),
        ))
        .await;
    updated(&mut first).await;
    let (kind, action, group) = updated(&mut second).await;
    assert_eq!((kind.as_str(), action.as_str()), ("group", "update"));
    assert_eq!(group["contacts"], json!([bob]));
    // A group that is not there: the failure, to the asking browser only.
    first
        .expect_ack(update(
            "add",
            "groupMember",
            json!({"groupId": "g9", "contactId": "c1"}),
        ))
        .await;
    match event(&mut first).await {
        AccountEvent::AddressbookUpdateFailed { error, id, .. } => {
            assert_eq!((error.as_str(), id.as_str()), ("no group g9", "g9"));
        }
        other => panic!("not addressbook-update-failed: {other:?}"),
    }

    // Changes and deletions; the other browser fetching sees where it stands.
    let renamed = json!({"id": "c1", "name": "Robert", "uris": []});
    first
        .expect_ack(update("update", "contact", renamed.clone()))
        .await;
    assert_eq!(updated(&mut first).await.2, renamed);
    first
        .expect_ack(update("delete", "policy", json!({"id": "p1"})))
        .await;
    let deleted = ("policy".into(), "delete".into(), json!({"id": "p1"}));
    assert_eq!(updated(&mut first).await, deleted);
    assert_eq!(updated(&mut second).await.2, renamed);
    assert_eq!(updated(&mut second).await, deleted);
    let book = fetched(&mut second).await;
    assert_eq!(book["contacts"], json!([renamed]));
    assert_eq!(book["groups"][0]["contacts"], json!([bob]));
    assert_eq!(book["policies"], json!([]));

    // Malformed or oversized items are refused before anything is stored.
    assert_eq!(
        first
            .expect_error(update("add", "contact", json!({"name": "no id"})))
            .await,
        "missing field `data.id`"
    );
    let huge = json!({"id": "c2", "name": "x".repeat(17 * 1024)});
    assert!(
        first
            .expect_error(update("add", "contact", huge))
            .await
            .starts_with("an address book item is at most 16384 bytes")
    );

    // A connection that only added the account sees and changes nothing.
    let mut stranger = closed_client(&gateway, "alice").await;
    assert_eq!(
        stranger
            .expect_error(json!({"sylkrtc": "account-fetch-addressbook",
                "account": format!("alice@{DOMAIN}")}))
            .await,
        "Account not authenticated"
    );
    assert_eq!(
        stranger
            .expect_error(update("delete", "contact", json!({"id": "c1"})))
            .await,
        "Account not authenticated"
    );
}
