//! One account on several browsers: what arrives for the account reaches each of them once,
//! what one of them does (send, mark read, remove) the others hear of as `sync` events and
//! find in the stored conversations, and a browser that was away syncs what it missed. The
//! account is registered through kamailio from each browser; bob is baresip, sending SIP
//! MESSAGEs with its `message` command.

use std::time::Duration;

use gateway_tests::baresip::Baresip;
use gateway_tests::{Client, Gateway};
use protocol::{AccountEvent, Event, IncomingMessage, ServerMessage, SyncAction, SyncedMessage};
use serde_json::json;

use crate::calls::{Setup, next};

/// A new connection with alice added and registered.
pub(crate) async fn alice(gateway: &Gateway) -> Client {
    let mut client = gateway.client().await;
    client
        .expect_ack(
            json!({"sylkrtc": "account-add", "account": "alice@127.0.0.1",
            "password": sip::ha1("alice", "127.0.0.1", "alicepw")}),
        )
        .await;
    register(&mut client, "alice@127.0.0.1").await;
    client
}

/// Registers `account` (added on `client`) and waits until it is.
pub(crate) async fn register(client: &mut Client, account: &str) {
    client
        .expect_ack(json!({"sylkrtc": "account-register", "account": account}))
        .await;
    loop {
        if let ServerMessage::Event(Event::Account {
            event: AccountEvent::RegistrationState(protocol::RegistrationState::Registered),
            ..
        }) = next(client).await
        {
            return;
        }
    }
}

/// The next account event that is not a registration state.
pub(crate) async fn event(client: &mut Client) -> AccountEvent {
    loop {
        match next(client).await {
            ServerMessage::Event(Event::Account {
                event: AccountEvent::RegistrationState(_),
                ..
            }) => {}
            ServerMessage::Event(Event::Account { event, .. }) => return event,
            other => panic!("not an account event: {other:?}"),
        }
    }
}

pub(crate) async fn message(client: &mut Client) -> IncomingMessage {
    match event(client).await {
        AccountEvent::Message(message) => message,
        other => panic!("not a message: {other:?}"),
    }
}

async fn sync(client: &mut Client) -> SyncAction {
    match event(client).await {
        AccountEvent::Sync(sync) => sync,
        other => panic!("not a sync: {other:?}"),
    }
}

/// The stored conversations, after `message_id` (none: all).
async fn synced(client: &mut Client, message_id: Option<&str>) -> Vec<SyncedMessage> {
    client
        .expect_ack(
            json!({"sylkrtc": "account-sync-conversations", "account": "alice@127.0.0.1",
            "message_id": message_id}),
        )
        .await;
    match event(client).await {
        AccountEvent::SyncConversations { messages } => messages,
        other => panic!("not sync-conversations: {other:?}"),
    }
}

#[tokio::test]
async fn two_browsers_of_one_account_see_the_same_conversations() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    let mut first = std::mem::replace(&mut setup.client, setup.gateway.client().await);
    let mut second = alice(&setup.gateway).await;
    setup
        .kamailio
        .wait_bindings("alice", 2, Duration::from_secs(10));
    let bob = Baresip::start_messaging(
        &format!(
            "<sip:bob@127.0.0.1;transport=udp>;auth_pass=bobpw;regint=300;\
             outbound=\"sip:127.0.0.1:{port};transport=udp\"\n",
            port = setup.kamailio.port
        ),
        "<sip:alice@127.0.0.1>",
    );
    setup
        .kamailio
        .wait_bindings("bob", 1, Duration::from_secs(10));

    // kamailio forks bob's MESSAGE to both registrations: each browser gets it once.
    bob.command("message", "hello from bob");
    let got = message(&mut first).await;
    assert_eq!(
        (got.sender.uri.as_str(), got.content.as_str()),
        ("bob@127.0.0.1", "hello from bob")
    );
    let also = message(&mut second).await;
    assert_eq!(also.message_id, got.message_id);
    first.expect_silence(Duration::from_millis(500)).await;
    second.expect_silence(Duration::from_millis(100)).await;

    // The second browser goes away; what comes meanwhile it finds on a sync after its last
    // message, once back.
    second.close().await;
    bob.command("message", "while you were away");
    let away = message(&mut first).await;
    assert_eq!(away.content, "while you were away");
    let mut second = alice(&setup.gateway).await;
    let missed = synced(&mut second, Some(&got.message_id)).await;
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert_eq!(
        (missed[0].content.as_str(), missed[0].direction.as_str()),
        ("while you were away", "incoming")
    );

    // The first sends: the second hears of the message, then both of its SIP outcome.
    first
        .expect_ack(
            json!({"sylkrtc": "account-message", "account": "alice@127.0.0.1",
            "uri": "bob@127.0.0.1", "message_id": "out-1", "content": "hi bob",
            "content_type": "text/plain", "timestamp": "2026-12-04T10:00:00.000Z"}),
        )
        .await;
    assert_eq!(
        sync(&mut second).await,
        SyncAction::MessageAdded {
            account: "alice@127.0.0.1".into(),
            uri: "bob@127.0.0.1".into(),
            message_id: "out-1".into(),
            content: "hi bob".into(),
            content_type: "text/plain".into(),
            timestamp: "2026-12-04T10:00:00.000Z".into(),
        }
    );
    for client in [&mut first, &mut second] {
        match event(client).await {
            AccountEvent::DispositionNotification(notification) => {
                assert_eq!(
                    (
                        notification.message_id.as_str(),
                        notification.state.as_str()
                    ),
                    ("out-1", "accepted")
                );
            }
            other => panic!("not the message's outcome: {other:?}"),
        }
    }

    // The first reads the conversation: the second hears of it, the store has it.
    first
        .expect_ack(json!({"sylkrtc": "account-mark-conversation-read",
            "account": "alice@127.0.0.1", "contact": "bob@127.0.0.1"}))
        .await;
    assert_eq!(
        sync(&mut second).await,
        SyncAction::ConversationRead {
            contact: "bob@127.0.0.1".into()
        }
    );
    let all = synced(&mut second, None).await;
    let incoming: Vec<&str> = all
        .iter()
        .filter(|message| message.direction == "incoming")
        .map(|message| message.state.as_str())
        .collect();
    assert_eq!(incoming, ["displayed", "displayed"]);
    let journal = all.last().expect("the journal entry");
    assert_eq!(
        (journal.content_type.as_str(), journal.content.as_str()),
        ("application/sylk-conversation-read", "bob@127.0.0.1")
    );

    // The first removes its message: the second hears of it; a message the store does not
    // have is acked and told to nobody.
    first
        .expect_ack(
            json!({"sylkrtc": "account-remove-message", "account": "alice@127.0.0.1",
            "message_id": "out-1", "contact": "bob@127.0.0.1"}),
        )
        .await;
    assert_eq!(
        sync(&mut second).await,
        SyncAction::MessageRemoved {
            contact: "bob@127.0.0.1".into(),
            message_id: "out-1".into(),
            direction: None,
        }
    );
    first
        .expect_ack(
            json!({"sylkrtc": "account-remove-message", "account": "alice@127.0.0.1",
            "message_id": "out-1", "contact": "bob@127.0.0.1"}),
        )
        .await;
    second.expect_silence(Duration::from_millis(300)).await;
    let all = synced(&mut second, None).await;
    assert!(all.iter().all(|message| message.message_id != "out-1"));
    let journal = all.last().expect("the journal entry");
    assert_eq!(journal.content_type, "application/sylk-message-remove");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&journal.content).expect("JSON"),
        json!({"contact": "bob@127.0.0.1", "message_id": "out-1"})
    );

    // The second removes the conversation: the first hears of it; what is left is the
    // removal's own journal entry, for browsers that sync later.
    second
        .expect_ack(json!({"sylkrtc": "account-remove-conversation",
            "account": "alice@127.0.0.1", "contact": "bob@127.0.0.1"}))
        .await;
    match sync(&mut first).await {
        SyncAction::ConversationRemoved { contact, .. } => assert_eq!(contact, "bob@127.0.0.1"),
        other => panic!("not the removal: {other:?}"),
    }
    let left = synced(&mut first, None).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        (left[0].content_type.as_str(), left[0].direction.as_str()),
        ("application/sylk-conversation-remove", "")
    );
}

/// Adding an account proves nothing: another connection that adds alice without registering
/// her (it has no password) reads and changes none of her conversations, and hears nothing
/// of what her browsers do.
#[tokio::test]
async fn an_account_added_without_its_registration_sees_nothing() {
    let mut setup = Setup::new(|_| {}).await;
    setup.register_alice().await;
    let mut stranger = setup.gateway.client().await;
    stranger
        .expect_ack(
            json!({"sylkrtc": "account-add", "account": "alice@127.0.0.1",
            "password": "wrong"}),
        )
        .await;
    for request in [
        json!({"sylkrtc": "account-sync-conversations", "account": "alice@127.0.0.1"}),
        json!({"sylkrtc": "account-mark-conversation-read", "account": "alice@127.0.0.1",
            "contact": "bob@127.0.0.1"}),
        json!({"sylkrtc": "account-remove-message", "account": "alice@127.0.0.1",
            "message_id": "m1", "contact": "bob@127.0.0.1"}),
        json!({"sylkrtc": "account-remove-conversation", "account": "alice@127.0.0.1",
            "contact": "bob@127.0.0.1"}),
    ] {
        assert_eq!(
            stranger.expect_error(request).await,
            "Account not authenticated"
        );
    }
    setup
        .client
        .expect_ack(json!({"sylkrtc": "account-mark-conversation-read",
            "account": "alice@127.0.0.1", "contact": "bob@127.0.0.1"}))
        .await;
    stranger.expect_silence(Duration::from_millis(300)).await;
}
