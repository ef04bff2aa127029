//! Messages. Outgoing: `account-message` from a browser account registered through kamailio
//! goes out as SIP MESSAGE in CPIM, through kamailio's digest challenge, to a phone that takes
//! CPIM (sipp checks the document), and as plain text to one that does not (baresip 1.0 answers
//! 415); the SIP result comes back as a `disposition-notification` and is stored.
//!
//! Incoming: a MESSAGE to the Contact of a browser account's registration is unwrapped,
//! stored and delivered as `message` (or, for an IMDN, `disposition-notification`), then
//! answered 200. A SUBSCRIBE to such a Contact is answered 405 saying why (the account's own
//! server is its presence server). Messages within the local domain: `local_messages.rs`;
//! presence over SIP: `sip_presence.rs`.

use std::time::Duration;

use gateway_tests::baresip::Baresip;
use gateway_tests::{Client, Gateway};
use protocol::{AccountEvent, DispositionNotification, Event, ServerMessage};
use serde_json::json;
use store::Store;

use crate::calls::{Setup, next};
use crate::local::{DOMAIN, finals, local_client, shipped};
use crate::sipp_calls::{sipp_done, sipp_uas};

/// Sends `method` to `uri` at `gateway` from a fresh socket as bob@127.0.0.1 (Call-ID
/// `call_id`), with the headers and body in `rest`; the final response (code and text).
pub(crate) async fn send_request(
    gateway: std::net::SocketAddr,
    method: &str,
    uri: &str,
    call_id: &str,
    rest: &str,
) -> (u16, String) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let request = format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}\r\n\
         From: \"Bob\" <sip:bob@127.0.0.1>;tag=b\r\nTo: <{uri}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{rest}"
    );
    socket.send_to(request.as_bytes(), gateway).await.unwrap();
    let call_id = call_id.to_owned();
    let mut answers = finals(&socket, std::slice::from_ref(&call_id)).await;
    answers.remove(&call_id).expect("an answer")
}

/// Sends `method` and checks the final response: 405, the Warning that says why, our Allow.
async fn refused_saying_why(gateway: std::net::SocketAddr, method: &str, uri: &str, rest: &str) {
    let call_id = format!(
        "{}-{}",
        method.to_ascii_lowercase(),
        uuid::Uuid::new_v4().simple()
    );
    let (code, text) = send_request(gateway, method, uri, &call_id, rest).await;
    assert_eq!(code, 405, "{text}");
    assert!(
        text.contains(&format!("{method} is not served here for this address")),
        "{text}"
    );
    // Allow names what the binding takes, and not what it refused.
    let allow = text
        .lines()
        .find_map(|line| line.strip_prefix("Allow: "))
        .unwrap_or_else(|| panic!("no Allow: {text}"));
    assert!(
        allow.contains("MESSAGE") && allow.contains("INVITE"),
        "{text}"
    );
    assert!(!allow.split(", ").any(|name| name == method), "{text}");
}

pub(crate) const TEXT: &str = "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";

/// A body with its Content-Type and Content-Length headers.
pub(crate) fn body(content_type: &str, body: &str) -> String {
    format!(
        "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// MESSAGEs to the Contact of a browser account's registration (as its SIP service forwards
/// them): CPIM is unwrapped and delivered as `message` with its IMDN id, time and requests, a
/// plain body as it is, an IMDN about a message the account sent as `disposition-notification`
/// (and stored); each is answered 200 once the client has it. A retransmitted message (same
/// IMDN id) is not delivered twice. A CPIM From that is not the SIP sender gets 403, a CPIM
/// document without its parts 400. SUBSCRIBE is not built: 405 saying so.
#[tokio::test]
async fn messages_reach_a_registered_account() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    let contact = setup.kamailio.bindings("alice").remove(0).address;
    let gateway = setup.gateway.sip.0;
    let document = String::from(
        "From: \"Bob\" <sip:bob@127.0.0.1>\r\nTo: <sip:alice@127.0.0.1>\r\n\
         DateTime: 2026-12-04T09:00:00.000Z\r\nNS: imdn <urn:ietf:params:imdn>\r\n\
         imdn.Message-ID: in-1\r\nimdn.Disposition-Notification: positive-delivery, display\r\n\r\n\
         Content-Type: text/plain\r\nContent-Length: 9\r\n\r\nhello ✓",
    );
    let cpim = body("message/cpim", &document);
    let (code, text) = send_request(gateway, "MESSAGE", &contact, "in-1", &cpim).await;
    assert_eq!(code, 200, "{text}");
    let ServerMessage::Event(Event::Account {
        account,
        event: AccountEvent::Message(got),
    }) = next(&mut setup.client).await
    else {
        panic!("no message event");
    };
    assert_eq!(account, "alice@127.0.0.1");
    assert_eq!(got.sender.uri, "bob@127.0.0.1");
    assert_eq!(got.sender.display_name.as_deref(), Some("Bob"));
    assert_eq!(got.message_id, "in-1");
    assert_eq!(got.timestamp, "2026-12-04T09:00:00.000Z");
    assert_eq!(
        (got.content.as_str(), got.content_type.as_str()),
        ("hello ✓", "text/plain")
    );
    assert_eq!(
        got.disposition_notification,
        ["positive-delivery", "display"]
    );
    // The same message again (a retransmission through another path): 200, not delivered.
    let (code, _) = send_request(gateway, "MESSAGE", &contact, "in-1b", &cpim).await;
    assert_eq!(code, 200);

    let (code, _) = send_request(gateway, "MESSAGE", &contact, "plain-1", TEXT).await;
    assert_eq!(code, 200);
    let ServerMessage::Event(Event::Account {
        event: AccountEvent::Message(plain),
        ..
    }) = next(&mut setup.client).await
    else {
        panic!("no message event for the plain one");
    };
    assert_eq!(
        (plain.content.as_str(), plain.message_id.as_str()),
        ("hello", "plain-1-1")
    );

    // IMDNs about messages alice sent: from their recipient (bob, who is not registered
    // yet, so the message failed), taken; bob's about a message to dave, dropped.
    for (id, to) in [("out-1", "bob@127.0.0.1"), ("out-2", "dave@127.0.0.1")] {
        setup
            .client
            .expect_ack(message(id, to, "are you there?"))
            .await;
        assert_eq!(notification(&mut setup.client, id).await.state, "failed");
    }
    let imdn = |id: &str| {
        body(
            "message/imdn+xml",
            &format!(
                "<?xml version=\"1.0\"?><imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\
                 <message-id>{id}</message-id><datetime>2026-12-04T10:00:05Z</datetime>\
                 <delivery-notification><status><delivered/></status></delivery-notification></imdn>"
            ),
        )
    };
    let (code, _) = send_request(gateway, "MESSAGE", &contact, "imdn-1", &imdn("out-1")).await;
    assert_eq!(code, 200);
    let delivered = notification(&mut setup.client, "out-1").await;
    assert_eq!(delivered.state, "delivered");
    let (code, _) = send_request(gateway, "MESSAGE", &contact, "imdn-2", &imdn("out-2")).await;
    assert_eq!(code, 200);

    let forged = body(
        "message/cpim",
        &document.replace(
            "From: \"Bob\" <sip:bob@127.0.0.1>",
            "From: <sip:boss@127.0.0.1>",
        ),
    );
    let (code, text) = send_request(gateway, "MESSAGE", &contact, "forged-1", &forged).await;
    assert_eq!(code, 403, "{text}");
    let broken = body(
        "message/cpim",
        "From: <sip:bob@127.0.0.1>\r\n\r\nno type\r\n\r\nx",
    );
    let (code, _) = send_request(gateway, "MESSAGE", &contact, "broken-1", &broken).await;
    assert_eq!(code, 400);
    refused_saying_why(
        gateway,
        "SUBSCRIBE",
        &contact,
        "Event: presence\r\nExpires: 600\r\nContact: <sip:bob@127.0.0.1>\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    // Nothing else reached the client.
    setup
        .client
        .expect_silence(Duration::from_millis(300))
        .await;

    // Alice's browser says it has in-1: the IMDN reaches bob (sipp, which checks it), and the
    // stored message is delivered (the sync below shows it).
    let (port, sipp) = sipp_uas("uas_message_imdn.xml");
    setup
        .kamailio
        .add_binding("bob", &format!("sip:bob@127.0.0.1:{port}"));
    setup
        .client
        .expect_ack(json!({"sylkrtc": "account-disposition-notification",
            "account": "alice@127.0.0.1", "uri": "bob@127.0.0.1", "message_id": "in-1",
            "state": "delivered", "timestamp": "2026-12-04T09:00:00.000Z"}))
        .await;
    sipp_done(sipp).await;
    // Another connection of alice (registered: adding the account proves nothing) syncs the
    // conversations: what came in and what went out, oldest first, with their states; then
    // what follows a message it has; then nothing.
    let mut second = crate::conversations::alice(&setup.gateway).await;
    let sync = |more: serde_json::Value| {
        let mut request =
            json!({"sylkrtc": "account-sync-conversations", "account": "alice@127.0.0.1"});
        request
            .as_object_mut()
            .expect("an object")
            .extend(more.as_object().expect("an object").clone());
        request
    };
    let mut synced = Vec::new();
    for more in [
        json!({"message_id": null}),
        json!({"message_id": "in-1"}),
        json!({"since": "2100-01-01T00:00:00Z"}),
    ] {
        second.expect_ack(sync(more)).await;
        let ServerMessage::Event(Event::Account {
            event: AccountEvent::SyncConversations { messages },
            ..
        }) = next(&mut second).await
        else {
            panic!("no sync-conversations event");
        };
        synced.push(messages);
    }
    let summary = |messages: &[protocol::SyncedMessage]| -> Vec<(String, String, String)> {
        messages
            .iter()
            .map(|m| (m.message_id.clone(), m.direction.clone(), m.state.clone()))
            .collect()
    };
    let row = |id: &str, direction: &str, state: &str| {
        (id.to_owned(), direction.to_owned(), state.to_owned())
    };
    assert_eq!(
        summary(&synced[0]),
        [
            row("in-1", "incoming", "delivered"),
            row("plain-1-1", "incoming", "received"),
            row("out-1", "outgoing", "delivered"),
            row("out-2", "outgoing", "failed"),
        ]
    );
    assert_eq!(synced[0][0].contact, "bob@127.0.0.1");
    assert_eq!(synced[0][0].content, "hello ✓");
    assert_eq!(synced[0][2].contact, "bob@127.0.0.1");
    assert_eq!(synced[0][3].contact, "dave@127.0.0.1");
    assert_eq!(
        summary(&synced[1]),
        [
            row("plain-1-1", "incoming", "received"),
            row("out-1", "outgoing", "delivered"),
            row("out-2", "outgoing", "failed"),
        ]
    );
    assert!(synced[2].is_empty());
    assert_eq!(
        second
            .expect_error(sync(json!({"since": "last week"})))
            .await,
        "since must be an RFC 3339 date and time"
    );
}

#[tokio::test]
async fn subscriptions_for_the_local_domain_are_answered_as_a_presence_server() {
    let gateway = Gateway::start(shipped()).await;
    let _alice = local_client(&gateway, "alice").await;
    let uri = format!("sip:alice@{DOMAIN}");
    // A stranger of another domain waits for alice to allow it.
    let subscription = "Event: presence\r\nExpires: 600\r\nContact: <sip:bob@127.0.0.1>\r\nContent-Length: 0\r\n\r\n";
    let (code, text) = send_request(gateway.sip.0, "SUBSCRIBE", &uri, "sub-1", subscription).await;
    assert_eq!(code, 202, "{text}");
    assert!(text.contains("Expires: 600"), "{text}");
    // Another event package, too brief a subscription, and a PUBLISH for someone else.
    let dialog = subscription.replace("presence", "dialog");
    let (code, text) = send_request(gateway.sip.0, "SUBSCRIBE", &uri, "sub-2", &dialog).await;
    assert_eq!(code, 489, "{text}");
    assert!(text.contains("Allow-Events: presence"), "{text}");
    let brief = subscription.replace("600", "5");
    let (code, text) = send_request(gateway.sip.0, "SUBSCRIBE", &uri, "sub-3", &brief).await;
    assert_eq!(code, 423, "{text}");
    assert!(text.contains("Min-Expires: 60"), "{text}");
    let publish = "Event: presence\r\nExpires: 600\r\nContent-Type: application/pidf+xml\r\n\
        Content-Length: 0\r\n\r\n";
    let (code, text) = send_request(gateway.sip.0, "PUBLISH", &uri, "pub-1", publish).await;
    assert_eq!(code, 403, "{text}");
}

/// The `disposition-notification` of message `id` (other messages are skipped).
async fn notification(client: &mut Client, id: &str) -> DispositionNotification {
    loop {
        if let ServerMessage::Event(Event::Account {
            event: AccountEvent::DispositionNotification(notification),
            ..
        }) = next(client).await
            && notification.message_id == id
        {
            return notification;
        }
    }
}

fn message(id: &str, to: &str, content: &str) -> serde_json::Value {
    json!({"sylkrtc": "account-message", "account": "alice@127.0.0.1", "uri": to,
        "message_id": id, "content": content, "content_type": "text/plain",
        "timestamp": "2026-12-04T10:00:00.000Z"})
}

/// A message through kamailio (which challenges it) to a phone that takes CPIM: the document
/// is what RFC 3862 and RFC 5438 say (sipp checks it), the 200 comes back as `accepted`, and
/// the store has the message, accepted. A repeat of the same message id is not sent again,
/// and a gateway restarted on the same store still has it.
#[tokio::test]
async fn a_message_goes_out_in_cpim_and_is_stored() {
    let data = gateway_tests::TempDir::new();
    let dir = data.path().to_path_buf();
    let mut setup = Setup::new(move |config| config.storage.data_dir = dir).await;
    setup.register_alice().await;
    let (port, sipp) = sipp_uas("uas_message_cpim.xml");
    setup
        .kamailio
        .add_binding("carol", &format!("sip:carol@127.0.0.1:{port}"));
    let request = message("cpim-1", "carol@127.0.0.1", "hello carol");
    setup.client.expect_ack(request.clone()).await;
    let accepted = notification(&mut setup.client, "cpim-1").await;
    assert_eq!(accepted.state, "accepted");
    assert_eq!(accepted.code, Some(200));
    assert_eq!(
        accepted.message_timestamp.as_deref(),
        Some("2026-12-04T10:00:00.000Z")
    );
    sipp_done(sipp).await;
    let store = store::SqlStore::open(&store::Options::new(store::Backend::Sqlite(
        data.path().join("gateway.sqlite"),
    )))
    .await
    .expect("the store opens");
    let stored = store
        .message("alice@127.0.0.1", "cpim-1")
        .await
        .expect("the store answers")
        .expect("the message is stored");
    assert_eq!(stored.state, store::State::Accepted);
    assert_eq!(stored.contact, "carol@127.0.0.1");
    assert_eq!(stored.content, "hello carol");
    store.close().await;
    // The client sends it again (a reconnect): acked, its state again, nothing sent (sipp
    // is gone: a new MESSAGE would fail).
    setup.client.expect_ack(request).await;
    let again = notification(&mut setup.client, "cpim-1").await;
    assert_eq!(again.state, "accepted");
    assert_eq!(again.code, None);

    // The gateway restarts on the same store: nothing acked is lost.
    let Setup {
        kamailio,
        gateway,
        client,
    } = setup;
    drop(client);
    gateway.stop().await;
    let mut config = gateway::Config::default();
    config.sip.outbound_proxy = format!("sip:127.0.0.1:{}", kamailio.port);
    config.storage.data_dir = data.path().to_path_buf();
    let gateway = Gateway::start(config).await;
    let mut client = crate::conversations::alice(&gateway).await;
    client
        .expect_ack(json!({"sylkrtc": "account-sync-conversations", "account": "alice@127.0.0.1"}))
        .await;
    let ServerMessage::Event(Event::Account {
        event: AccountEvent::SyncConversations { messages },
        ..
    }) = next(&mut client).await
    else {
        panic!("no sync-conversations event");
    };
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        (messages[0].message_id.as_str(), messages[0].state.as_str()),
        ("cpim-1", "accepted")
    );
}

/// A message over 1,300 bytes goes to the proxy over TCP, never UDP (RFC 3428): sipp, behind
/// kamailio, finds TCP in the gateway's Via.
#[tokio::test]
async fn a_large_message_goes_over_tcp() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    let (port, sipp) = sipp_uas("uas_message_tcp.xml");
    setup
        .kamailio
        .add_binding("carol", &format!("sip:carol@127.0.0.1:{port}"));
    setup
        .client
        .expect_ack(message("big-1", "carol@127.0.0.1", &"x".repeat(2000)))
        .await;
    let accepted = notification(&mut setup.client, "big-1").await;
    assert_eq!(
        (accepted.state.as_str(), accepted.code),
        ("accepted", Some(200))
    );
    sipp_done(sipp).await;
}

/// baresip 1.0 takes text/plain only and answers CPIM with 415: the message goes again as it
/// is, and the phone takes it.
#[tokio::test]
async fn a_phone_that_takes_no_cpim_gets_the_text_as_it_is() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    // Traced (`-s`): its log has the SIP messages it gets and sends.
    let bob = Baresip::start_account_traced(
        &format!(
            "<sip:bob@127.0.0.1:{};transport=udp>;auth_pass=bobpw;regint=300\n",
            setup.kamailio.port
        ),
        440.0,
    );
    setup
        .kamailio
        .wait_bindings("bob", 1, Duration::from_secs(10));
    setup
        .client
        .expect_ack(message("plain-1", "bob@127.0.0.1", "hello bob"))
        .await;
    let accepted = notification(&mut setup.client, "plain-1").await;
    assert_eq!(
        (accepted.state.as_str(), accepted.code),
        ("accepted", Some(200))
    );
    // Its answer to the CPIM, then the plain text it took.
    assert!(
        bob.wait_log("SIP/2.0 415 Unsupported Media Type", Duration::from_secs(5))
            .await,
        "baresip did not refuse the CPIM:\n{}",
        bob.log.text()
    );
    let log = bob.log.text();
    let plain = log
        .split("MESSAGE sip:")
        .find(|message| message.contains("Content-Type: text/plain"))
        .unwrap_or_else(|| panic!("no plain MESSAGE reached baresip:\n{log}"));
    assert!(plain.contains("hello bob"), "{plain}");
}

/// A message nobody can take (no binding at the proxy): `failed`, with the SIP status.
/// Requests that cannot be sent get an error: an account that is not registered, a timestamp
/// or message id that is not one.
#[tokio::test]
async fn messages_that_cannot_go_fail_clearly() {
    let mut setup = Setup::new(|_| {}).await;
    assert_eq!(
        setup
            .client
            .expect_error(message("early", "bob@127.0.0.1", "hi"))
            .await,
        "Account not authenticated"
    );
    setup.register_alice().await;
    setup
        .client
        .expect_ack(message("lost-1", "dave@127.0.0.1", "anyone?"))
        .await;
    let failed = notification(&mut setup.client, "lost-1").await;
    assert_eq!(failed.state, "failed");
    assert_eq!(failed.code, Some(404));
    assert_eq!(failed.reason.as_deref(), Some("Not Found"));
    // A public key alice sends (here to someone who is not there) is her key from then on.
    let key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nalice\n-----END PGP PUBLIC KEY BLOCK-----";
    let mut publish = message("key-1", "dave@127.0.0.1", key);
    publish["content_type"] = json!("text/pgp-public-key");
    setup.client.expect_ack(publish).await;
    notification(&mut setup.client, "key-1").await;
    setup
        .client
        .expect_ack(json!({"sylkrtc": "lookup-public-key", "uri": "alice@127.0.0.1"}))
        .await;
    assert_eq!(
        next(&mut setup.client).await,
        ServerMessage::Event(Event::PublicKey {
            uri: "alice@127.0.0.1".into(),
            public_key: Some(key.into())
        })
    );
    let mut bad = message("bad-1", "bob@127.0.0.1", "hi");
    bad["timestamp"] = json!("yesterday\r\nX-Injected: 1");
    assert_eq!(
        setup.client.expect_error(bad).await,
        "timestamp must be an RFC 3339 date and time"
    );
    let bad = message("two words", "bob@127.0.0.1", "hi");
    assert!(
        setup
            .client
            .expect_error(bad)
            .await
            .starts_with("message_id must be")
    );
}
