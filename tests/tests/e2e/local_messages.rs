//! Messages within the local domain, where the gateway is the users' message server: browser
//! to browser, browser to a phone registered at the gateway (baresip) and back, to a user
//! with nothing online (kept until the user's browser syncs), to names the domain does not
//! have, and from strangers of other domains (limited per address).

use std::time::Duration;

use gateway_tests::Client;
use gateway_tests::baresip::Baresip;
use protocol::{AccountEvent, DispositionNotification};
use serde_json::json;

use crate::conversations::{event, message, register};
use crate::local::{DOMAIN, WAIT, closed, closed_client};
use crate::messaging::{TEXT, send_request};

/// A closed-registration user's browser, registered.
async fn browser(gateway: &gateway_tests::Gateway, user: &str) -> Client {
    let mut client = closed_client(gateway, user).await;
    register(&mut client, &format!("{user}@{DOMAIN}")).await;
    client
}

async fn outcome(client: &mut Client) -> DispositionNotification {
    match event(client).await {
        AccountEvent::DispositionNotification(notification) => notification,
        other => panic!("not a disposition-notification: {other:?}"),
    }
}

/// alice's `account-message` to `to` (a user of the domain).
fn send(id: &str, to: &str, content: &str) -> serde_json::Value {
    json!({"sylkrtc": "account-message", "account": format!("alice@{DOMAIN}"),
        "uri": format!("{to}@{DOMAIN}"), "message_id": id, "content": content,
        "content_type": "text/plain", "timestamp": "2026-12-04T10:00:00.000Z"})
}

#[tokio::test]
async fn users_of_the_local_domain_message_each_other() {
    let gateway = gateway_tests::Gateway::start(closed(&["alice", "bob", "carol", "dave"])).await;
    let mut alice = browser(&gateway, "alice").await;
    let mut bob = browser(&gateway, "bob").await;
    let carol = Baresip::start_messaging(
        &format!(
            "<sip:carol@{DOMAIN};transport=udp>;outbound=\"sip:127.0.0.1:{};transport=udp\";\
             auth_pass=carolpw;regint=300\n",
            gateway.sip.0.port()
        ),
        &format!("<sip:alice@{DOMAIN}>"),
    );
    assert!(
        carol.wait_log("200 OK", WAIT).await,
        "the phone registers at the gateway:\n{}",
        carol.log.text()
    );

    // Browser to browser: bob has it, alice hears it was delivered; bob's IMDN reaches her.
    alice.expect_ack(send("m1", "bob", "hello bob")).await;
    let got = message(&mut bob).await;
    assert_eq!(
        (
            got.sender.uri.as_str(),
            got.content.as_str(),
            got.message_id.as_str()
        ),
        ("alice@local.test", "hello bob", "m1")
    );
    assert_eq!(
        got.disposition_notification,
        ["positive-delivery", "display"]
    );
    let sent = outcome(&mut alice).await;
    assert_eq!((sent.state.as_str(), sent.code), ("accepted", Some(200)));
    bob.expect_ack(json!({"sylkrtc": "account-disposition-notification",
        "account": format!("bob@{DOMAIN}"), "uri": format!("alice@{DOMAIN}"),
        "message_id": "m1", "state": "displayed", "timestamp": "2026-12-04T10:00:00.000Z"}))
        .await;
    let read = outcome(&mut alice).await;
    assert_eq!(
        (read.message_id.as_str(), read.state.as_str()),
        ("m1", "displayed")
    );

    // Browser to phone: baresip takes no CPIM (415), then the text as it is.
    alice.expect_ack(send("m2", "carol", "hello carol")).await;
    let sent = outcome(&mut alice).await;
    assert_eq!((sent.state.as_str(), sent.code), ("accepted", Some(200)));
    assert!(
        carol
            .wait_log("SIP/2.0 415 Unsupported Media Type", WAIT)
            .await,
        "the phone did not refuse the CPIM:\n{}",
        carol.log.text()
    );
    let log = carol.log.text();
    let plain = log
        .split("MESSAGE sip:")
        .find(|message| message.contains("Content-Type: text/plain"))
        .unwrap_or_else(|| panic!("no plain MESSAGE reached the phone:\n{log}"));
    assert!(plain.contains("hello carol"), "{plain}");
    assert!(plain.contains("From: <sip:alice@local.test>"), "{plain}");

    // Phone to browser: carol authenticates (407) and alice has it.
    carol.command("message", "hi alice, carol here");
    let got = message(&mut alice).await;
    assert_eq!(
        (got.sender.uri.as_str(), got.content.as_str()),
        ("carol@local.test", "hi alice, carol here")
    );

    // To a user with nothing online: kept (202), and the user's browser finds it on a sync.
    alice.expect_ack(send("m3", "dave", "for later")).await;
    let kept = outcome(&mut alice).await;
    assert_eq!((kept.state.as_str(), kept.code), ("accepted", Some(202)));
    let mut dave = browser(&gateway, "dave").await;
    dave.expect_ack(json!({"sylkrtc": "account-sync-conversations",
        "account": format!("dave@{DOMAIN}")}))
        .await;
    let AccountEvent::SyncConversations { messages } = event(&mut dave).await else {
        panic!("no sync-conversations");
    };
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        (
            messages[0].content.as_str(),
            messages[0].contact.as_str(),
            messages[0].direction.as_str()
        ),
        ("for later", "alice@local.test", "incoming")
    );

    // A name the domain does not have: failed, 404. Another domain: not supported, said so.
    alice.expect_ack(send("m4", "nobody", "hello?")).await;
    let failed = outcome(&mut alice).await;
    assert_eq!((failed.state.as_str(), failed.code), ("failed", Some(404)));
    let refused = alice
        .expect_error(
            json!({"sylkrtc": "account-message", "account": format!("alice@{DOMAIN}"),
            "uri": "bob@example.com", "message_id": "m5", "content": "hi",
            "content_type": "text/plain"}),
        )
        .await;
    assert!(refused.contains("only within local.test"), "{refused}");
    // alice's own record has what she sent and what she received, with their states.
    alice
        .expect_ack(json!({"sylkrtc": "account-sync-conversations",
            "account": format!("alice@{DOMAIN}")}))
        .await;
    let AccountEvent::SyncConversations { messages } = event(&mut alice).await else {
        panic!("no sync-conversations");
    };
    let summary: Vec<(&str, &str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m.message_id.as_str(),
                m.direction.as_str(),
                m.state.as_str(),
            )
        })
        .collect();
    assert_eq!(summary[0], ("m1", "outgoing", "displayed"));
    assert_eq!(summary[1], ("m2", "outgoing", "accepted"));
    assert_eq!((summary[2].1, summary[2].2), ("incoming", "received"));
    assert_eq!(summary[3], ("m3", "outgoing", "accepted"));
    assert_eq!(summary[4], ("m4", "outgoing", "failed"));
}

/// Senders of other domains cannot authenticate: each address may send 60 messages a minute,
/// then gets 503 with Retry-After; the domain's users are not affected.
#[tokio::test]
async fn strangers_messages_are_limited_per_address() {
    let gateway = gateway_tests::Gateway::start(closed(&["alice"])).await;
    let mut alice = browser(&gateway, "alice").await;
    let uri = format!("sip:alice@{DOMAIN}");
    // A user the domain does not have is not found (and counts).
    let (code, _) = send_request(
        gateway.sip.0,
        "MESSAGE",
        &format!("sip:nobody@{DOMAIN}"),
        "stranger-x",
        TEXT,
    )
    .await;
    assert_eq!(code, 404);
    for index in 1..60 {
        let (code, text) = send_request(
            gateway.sip.0,
            "MESSAGE",
            &uri,
            &format!("stranger-{index}"),
            TEXT,
        )
        .await;
        assert_eq!(code, 200, "{text}");
    }
    let (code, text) = send_request(gateway.sip.0, "MESSAGE", &uri, "stranger-60", TEXT).await;
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("Retry-After: 60"), "{text}");
    for _ in 1..60 {
        assert_eq!(message(&mut alice).await.content, "hello");
    }
    alice.expect_silence(Duration::from_millis(200)).await;
}

/// Messages over `[storage] max_message_size` (32 KiB by default): an `account-message` gets
/// an error and nothing is stored or sent, a SIP MESSAGE gets 413; smaller ones pass.
#[tokio::test]
async fn messages_over_the_size_limit_are_refused() {
    let gateway = gateway_tests::Gateway::start(closed(&["alice", "bob"])).await;
    let mut alice = browser(&gateway, "alice").await;
    let mut bob = browser(&gateway, "bob").await;
    let large = "x".repeat(32 * 1024 + 1);
    let error = alice.expect_error(send("big-1", "bob", &large)).await;
    assert_eq!(
        error,
        "the message is too large: 32769 bytes (the limit is 32768)"
    );
    let (code, text) = send_request(
        gateway.sip.0,
        "MESSAGE",
        &format!("sip:bob@{DOMAIN}"),
        "big-2",
        &crate::messaging::body("text/plain", &large),
    )
    .await;
    assert_eq!(code, 413, "{text}");
    bob.expect_silence(Duration::from_millis(300)).await;
    let fits = "y".repeat(32 * 1024);
    alice.expect_ack(send("big-3", "bob", &fits)).await;
    assert_eq!(message(&mut bob).await.content.len(), 32 * 1024);
}

/// A store that refuses writes (PostgreSQL raising "disk full" on every new message): the
/// message gets an error and reaches nobody (nothing half-stored, nothing sent); the
/// connection and its reads go on; once the store takes writes again, messages go.
#[tokio::test]
async fn a_store_that_refuses_writes_fails_the_message_alone() {
    let postgres = gateway_tests::postgres::Postgres::shared();
    let url = postgres.database();
    let name = url.rsplit('/').next().expect("a database name").to_owned();
    let mut config = closed(&["alice", "bob"]);
    config.storage.postgres_url = url;
    let gateway = gateway_tests::Gateway::start(config).await;
    let mut alice = browser(&gateway, "alice").await;
    let mut bob = browser(&gateway, "bob").await;
    postgres.psql(
        &name,
        "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN \
         RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100'; \
         END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER refuse BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse();",
    );
    let error = alice.expect_error(send("full-1", "bob", "hello")).await;
    assert!(
        error.starts_with("the message store refused the write:")
            && error.contains("No space left on device"),
        "{error}"
    );
    bob.expect_silence(Duration::from_millis(300)).await;
    // Reads and the connection are not disturbed.
    alice
        .expect_ack(json!({"sylkrtc": "lookup-public-key", "uri": format!("bob@{DOMAIN}")}))
        .await;
    assert!(matches!(
        crate::calls::next(&mut alice).await,
        protocol::ServerMessage::Event(protocol::Event::PublicKey {
            public_key: None,
            ..
        })
    ));
    alice.expect_ack(json!({"sylkrtc": "ping"})).await;
    postgres.psql(&name, "DROP TRIGGER refuse ON messages");
    alice.expect_ack(send("full-2", "bob", "hello again")).await;
    assert_eq!(message(&mut bob).await.message_id, "full-2");
    // The refused one was never stored.
    // (full-2's outcome may come before the ack.)
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "account-sync-conversations",
            "account": format!("alice@{DOMAIN}")}))
        .await;
    loop {
        if let AccountEvent::SyncConversations { messages } = event(&mut alice).await {
            let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
            assert_eq!(ids, ["full-2"]);
            break;
        }
    }
}
