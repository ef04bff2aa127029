//! The checks every backend must pass, for the store's own tests (SQLite) and the end-to-end
//! suite's (PostgreSQL started by the harness). Built with the `testing` feature.

use crate::{Added, Direction, Message, PhoneBinding, Retention, Since, State, Store};

/// A message of `account` to or from `contact`, stored `at`.
pub fn message(account: &str, id: &str, contact: &str, at: i64) -> Message {
    Message {
        account: account.to_owned(),
        message_id: id.to_owned(),
        contact: contact.to_owned(),
        direction: Direction::Outgoing,
        content_type: "text/plain".to_owned(),
        content: format!("hello {id} ✓"),
        timestamp: "2026-12-04T10:00:00.000Z".to_owned(),
        at,
        state: State::Pending,
        disposition: vec!["positive-delivery".to_owned(), "display".to_owned()],
    }
}

/// Runs every check against `store`; `prefix` keeps its accounts apart from anything else the
/// database holds (a shared server, an earlier run). Panics on the first failure.
pub async fn conformance(store: &dyn Store, prefix: &str) {
    let alice = format!("{prefix}alice@example.com");
    let bob = format!("{prefix}bob@example.com");
    let carol = format!("{prefix}carol@example.com");

    // Idempotent by (account, message id): a repeat changes nothing, even with other content.
    let first = message(&alice, "m1", &bob, 1_000);
    assert_eq!(
        store.add_message(&first).await.expect("the store answers"),
        Added::New
    );
    let mut repeat = first.clone();
    repeat.content = "something else".to_owned();
    assert_eq!(
        store.add_message(&repeat).await.expect("the store answers"),
        Added::Duplicate
    );
    assert_eq!(
        store
            .message(&alice, "m1")
            .await
            .expect("the store answers"),
        Some(first.clone())
    );
    // The same id in another account is another message.
    let bobs = message(&bob, "m1", &alice, 1_000);
    assert_eq!(
        store.add_message(&bobs).await.expect("the store answers"),
        Added::New
    );

    // States only move forward.
    assert!(
        store
            .update_state(&alice, "m1", State::Accepted)
            .await
            .expect("the store answers")
    );
    assert!(
        store
            .update_state(&alice, "m1", State::Displayed)
            .await
            .expect("the store answers")
    );
    assert!(
        !store
            .update_state(&alice, "m1", State::Delivered)
            .await
            .expect("the store answers")
    );
    assert!(
        !store
            .update_state(&alice, "m1", State::Failed)
            .await
            .expect("the store answers")
    );
    assert!(
        !store
            .update_state(&alice, "unknown", State::Delivered)
            .await
            .expect("the store answers")
    );
    let stored = store
        .message(&alice, "m1")
        .await
        .expect("the store answers")
        .expect("stored");
    assert_eq!(stored.state, State::Displayed);
    assert_eq!(
        store
            .message(&bob, "m1")
            .await
            .expect("the store answers")
            .expect("the store answers")
            .state,
        State::Pending
    );

    // Syncs: in the order stored, since a message, since a time, limited.
    for (index, id) in ["m2", "m3", "m4"].iter().enumerate() {
        let mut next = message(&alice, id, &carol, 2_000 + index as i64);
        next.direction = Direction::Incoming;
        store.add_message(&next).await.expect("the store answers");
    }
    let ids = |messages: Vec<Message>| -> Vec<String> {
        messages
            .into_iter()
            .map(|message| message.message_id)
            .collect()
    };
    let all = store
        .messages(&alice, Since::Start, 100)
        .await
        .expect("the store answers");
    assert_eq!(ids(all.clone()), ["m1", "m2", "m3", "m4"]);
    assert_eq!(all[1].direction, Direction::Incoming);
    assert_eq!(all[0].content, "hello m1 ✓");
    assert_eq!(all[0].disposition, ["positive-delivery", "display"]);
    let after = store
        .messages(&alice, Since::Message("m2"), 100)
        .await
        .expect("the store answers");
    assert_eq!(ids(after), ["m3", "m4"]);
    let unknown = store
        .messages(&alice, Since::Message("nope"), 100)
        .await
        .expect("the store answers");
    assert_eq!(ids(unknown), ["m1", "m2", "m3", "m4"]);
    let recent = store
        .messages(&alice, Since::Time(2_001), 100)
        .await
        .expect("the store answers");
    assert_eq!(ids(recent), ["m3", "m4"]);
    let two = store
        .messages(&alice, Since::Start, 2)
        .await
        .expect("the store answers");
    assert_eq!(ids(two), ["m1", "m2"]);

    // Public keys: none, then the latest.
    assert_eq!(
        store.public_key(&alice).await.expect("the store answers"),
        None
    );
    store
        .set_public_key(&alice, "KEY 1", 10)
        .await
        .expect("the store answers");
    store
        .set_public_key(&alice, "KEY 2", 20)
        .await
        .expect("the store answers");
    assert_eq!(
        store
            .public_key(&alice)
            .await
            .expect("the store answers")
            .as_deref(),
        Some("KEY 2")
    );

    // Retention: per conversation keeps the newest; by age drops the old. Other prefixes'
    // rows may go as well on a shared database (they are as old): only ours are checked.
    let removed = store
        .prune(
            Retention {
                days: None,
                per_conversation: Some(2),
            },
            0,
        )
        .await
        .expect("the store answers");
    assert!(removed >= 1, "{removed}");
    let kept = store
        .messages(&alice, Since::Start, 100)
        .await
        .expect("the store answers");
    assert_eq!(ids(kept), ["m1", "m3", "m4"]);
    let day = 86_400_000;
    store
        .prune(
            Retention {
                days: Some(1),
                per_conversation: None,
            },
            day + 2_002,
        )
        .await
        .expect("the store answers");
    let kept = store
        .messages(&alice, Since::Start, 100)
        .await
        .expect("the store answers");
    assert_eq!(ids(kept), ["m4"]);

    journal_checks(store, prefix).await;
    addressbook_checks(store, prefix).await;
    push_token_checks(store, prefix).await;
    matrix_room_checks(store, prefix).await;
    phone_checks(store, prefix).await;
}

/// Phone bindings: one per (user, Contact), taken over in place by another gateway, removed
/// only by the gateway that holds them, gone once expired.
async fn phone_checks(store: &dyn Store, prefix: &str) {
    let user = format!("{prefix}carol");
    let (one, two) = (format!("{prefix}gw-1"), format!("{prefix}gw-2"));
    let binding = |contact: &str, instance: &str, expires: i64| PhoneBinding {
        user: user.clone(),
        contact: contact.to_owned(),
        instance: instance.to_owned(),
        transport: "udp".to_owned(),
        target: "127.0.0.1:5080".to_owned(),
        expires,
        outbound: false,
    };
    let desk = binding("sip:carol@10.0.0.1", &one, 10_000);
    let mut mobile = binding("sip:carol@10.0.0.2;ob", &one, 20_000);
    mobile.transport = "tls".to_owned();
    mobile.outbound = true;
    store
        .put_phones(&[desk.clone(), mobile.clone()])
        .await
        .expect("stored");
    store.put_phones(&[]).await.expect("nothing to store");
    assert_eq!(
        store.phones(&user, 5_000).await.expect("answers"),
        [desk.clone(), mobile.clone()]
    );
    assert_eq!(
        store.phones(&user, 15_000).await.expect("answers"),
        std::slice::from_ref(&mobile),
        "an expired binding is not given"
    );
    // The desk phone registers again through the other gateway: its row moves there.
    let moved = binding("sip:carol@10.0.0.1", &two, 30_000);
    store
        .put_phones(std::slice::from_ref(&moved))
        .await
        .expect("stored");
    assert_eq!(
        store
            .instance_phones(&one, 5_000, 10)
            .await
            .expect("answers"),
        std::slice::from_ref(&mobile)
    );
    assert_eq!(
        store
            .instance_phones(&two, 5_000, 10)
            .await
            .expect("answers"),
        std::slice::from_ref(&moved)
    );
    assert_eq!(
        store
            .instance_phones(&one, 5_000, 0)
            .await
            .expect("answers"),
        []
    );
    assert!(
        !store
            .remove_phone(&user, &moved.contact, &one)
            .await
            .expect("answers"),
        "the first gateway's sweep leaves the binding the second took"
    );
    assert!(
        store
            .remove_phone(&user, &moved.contact, &two)
            .await
            .expect("answers")
    );
    assert!(store.remove_expired_phones(25_000).await.expect("answers") >= 1);
    assert_eq!(store.phones(&user, 0).await.expect("answers"), []);
}

/// Matrix rooms: one ghost per room, replaced in place, forgotten.
async fn matrix_room_checks(store: &dyn Store, prefix: &str) {
    let room = |name: &str| format!("!{prefix}{name}:hs.test");
    let ours = |rooms: Vec<(String, String)>| -> Vec<(String, String)> {
        rooms
            .into_iter()
            .filter(|(room, _)| room.starts_with(&format!("!{prefix}")))
            .collect()
    };
    for (at, (name, ghost)) in [
        ("a", "@sip_1:hs.test"),
        ("b", "@sip_2:hs.test"),
        ("a", "@sip_3:hs.test"),
    ]
    .into_iter()
    .enumerate()
    {
        let at = i64::try_from(at).expect("small");
        store
            .set_matrix_room(&room(name), ghost, at)
            .await
            .expect("stored");
    }
    assert_eq!(
        ours(store.matrix_rooms().await.expect("answers")),
        [
            (room("b"), "@sip_2:hs.test".to_owned()),
            (room("a"), "@sip_3:hs.test".to_owned())
        ]
    );
    assert!(store.remove_matrix_room(&room("b")).await.expect("answers"));
    assert!(!store.remove_matrix_room(&room("b")).await.expect("answers"));
    assert_eq!(
        ours(store.matrix_rooms().await.expect("answers")),
        [(room("a"), "@sip_3:hs.test".to_owned())]
    );
}

/// Push tokens: one per (device, app), replaced in place, the latest first, removed.
async fn push_token_checks(store: &dyn Store, prefix: &str) {
    use crate::PushToken;
    let heidi = format!("{prefix}heidi@example.com");
    let token = |device: &str, value: &str| PushToken {
        device: device.to_owned(),
        app: "com.example.app".to_owned(),
        platform: "firebase".to_owned(),
        token: value.to_owned(),
        silent: device == "phone",
    };
    assert!(store.push_tokens(&heidi).await.expect("answers").is_empty());
    for (at, (device, value)) in [("phone", "t1"), ("tablet", "t2"), ("phone", "t3")]
        .into_iter()
        .enumerate()
    {
        let at = i64::try_from(at).expect("small");
        store
            .set_push_token(&heidi, &token(device, value), at)
            .await
            .expect("stored");
    }
    assert_eq!(
        store.push_tokens(&heidi).await.expect("answers"),
        [token("phone", "t3"), token("tablet", "t2")]
    );
    assert!(
        store
            .remove_push_token(&heidi, "tablet", "com.example.app")
            .await
            .expect("answers")
    );
    assert!(
        !store
            .remove_push_token(&heidi, "tablet", "com.example.app")
            .await
            .expect("answers")
    );
    assert_eq!(
        store.push_tokens(&heidi).await.expect("answers"),
        [token("phone", "t3")]
    );
}

/// Address book items: stored in order, replaced by id within their kind, removed, bounded.
async fn addressbook_checks(store: &dyn Store, prefix: &str) {
    use crate::{Entry, Put};
    let grace = format!("{prefix}grace@example.com");
    let entry = |kind: &str, id: &str, item: &str| Entry {
        kind: kind.to_owned(),
        id: id.to_owned(),
        item: item.to_owned(),
    };
    assert!(
        store
            .addressbook(&grace)
            .await
            .expect("the store answers")
            .is_empty()
    );
    for item in [
        entry("contact", "c1", r#"{"id":"c1","name":"Bob"}"#),
        entry(
            "group",
            "c1",
            r#"{"id":"c1","name":"Friends","contacts":[]}"#,
        ),
        entry("contact", "c2", r#"{"id":"c2","name":"Carol ✓"}"#),
        entry("contact", "c1", r#"{"id":"c1","name":"Bobby"}"#),
    ] {
        assert_eq!(
            store
                .put_entry(&grace, &item, 3)
                .await
                .expect("the store answers"),
            Put::Stored
        );
    }
    assert_eq!(
        store
            .put_entry(&grace, &entry("policy", "p1", "{}"), 3)
            .await
            .expect("the store answers"),
        Put::Full
    );
    let book = store.addressbook(&grace).await.expect("the store answers");
    assert_eq!(
        book,
        [
            entry("contact", "c1", r#"{"id":"c1","name":"Bobby"}"#),
            entry(
                "group",
                "c1",
                r#"{"id":"c1","name":"Friends","contacts":[]}"#
            ),
            entry("contact", "c2", r#"{"id":"c2","name":"Carol ✓"}"#),
        ]
    );
    assert!(
        store
            .remove_entry(&grace, "contact", "c1")
            .await
            .expect("the store answers")
    );
    assert!(
        !store
            .remove_entry(&grace, "contact", "c1")
            .await
            .expect("the store answers")
    );
    assert_eq!(
        store
            .addressbook(&grace)
            .await
            .expect("the store answers")
            .len(),
        2
    );
}

/// A journal entry of `account` about `contact`.
fn journal(account: &str, id: &str, contact: &str, content_type: &str) -> Message {
    Message {
        direction: Direction::None,
        content_type: content_type.to_owned(),
        content: contact.to_owned(),
        state: State::Accepted,
        disposition: Vec::new(),
        ..message(account, id, contact, 9_000)
    }
}

/// Every stored message of `account`.
async fn everything(store: &dyn Store, account: &str) -> Vec<Message> {
    store
        .messages(account, Since::Start, 100)
        .await
        .expect("the store answers")
}

/// Marking a conversation read, removing a message, removing a conversation: each changes the
/// messages and stores its journal entry together.
async fn journal_checks(store: &dyn Store, prefix: &str) {
    let dave = format!("{prefix}dave@example.com");
    let erin = format!("{prefix}erin@example.com");
    let frank = format!("{prefix}frank@example.com");
    let ids = |messages: &[Message]| -> Vec<String> {
        messages
            .iter()
            .map(|message| message.message_id.clone())
            .collect()
    };
    for (id, contact, direction) in [
        ("d1", &erin, Direction::Incoming),
        ("d2", &erin, Direction::Outgoing),
        ("d3", &erin, Direction::Incoming),
        ("d4", &frank, Direction::Incoming),
    ] {
        let mut next = message(&dave, id, contact, 5_000);
        next.direction = direction;
        next.state = match direction {
            Direction::Incoming => State::Received,
            _ => State::Pending,
        };
        store.add_message(&next).await.expect("the store answers");
    }
    store
        .update_state(&dave, "d3", State::Displayed)
        .await
        .expect("the store answers");

    // Read: the received messages not yet displayed, of that conversation only.
    let read = journal(&dave, "j1", &erin, "application/sylk-conversation-read");
    assert_eq!(
        store
            .mark_read(&dave, &erin, &read)
            .await
            .expect("the store answers"),
        1
    );
    let all = everything(store, &dave).await;
    assert_eq!(ids(&all), ["d1", "d2", "d3", "d4", "j1"]);
    let states: Vec<State> = all.iter().map(|message| message.state).collect();
    assert_eq!(
        states,
        [
            State::Displayed,
            State::Pending,
            State::Displayed,
            State::Received,
            State::Accepted
        ]
    );
    assert!(all[0].disposition.is_empty());
    assert_eq!(all[4], read);

    // One message, with its journal entry; an unknown one changes nothing.
    let removal = journal(&dave, "j2", &erin, "application/sylk-message-remove");
    assert!(
        store
            .remove_message(&dave, "d2", &removal)
            .await
            .expect("the store answers")
    );
    let again = journal(&dave, "j3", &erin, "application/sylk-message-remove");
    assert!(
        !store
            .remove_message(&dave, "d2", &again)
            .await
            .expect("the store answers")
    );
    let all = everything(store, &dave).await;
    assert_eq!(ids(&all), ["d1", "d3", "d4", "j1", "j2"]);

    // A conversation, its journal entries with it; the others stay.
    let gone = journal(&dave, "j4", &erin, "application/sylk-conversation-remove");
    assert_eq!(
        store
            .remove_conversation(&dave, &erin, &gone)
            .await
            .expect("the store answers"),
        4
    );
    let all = everything(store, &dave).await;
    assert_eq!(ids(&all), ["d4", "j4"]);
    assert_eq!(all[1].direction, Direction::None);
}
