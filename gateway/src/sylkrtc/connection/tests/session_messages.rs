//! `session-message` and the session's `message` and `disposition-notification` events.

use serde_json::json;

use super::{calling, connection, exchange, request, update};
use crate::call::{CallUpdate, Caller};
use crate::cpim::Received;
use protocol::Version;

fn received(cpim_from: Option<&str>) -> CallUpdate {
    CallUpdate::Message(Box::new(Received {
        message_id: "m9".into(),
        timestamp: "2026-12-04T10:00:00Z".into(),
        content_type: "text/plain".into(),
        content: "hello back".into(),
        disposition: vec!["positive-delivery".into()],
        cpim_from: cpim_from.map(str::to_owned),
    }))
}

/// A message goes only in an answered call, checked like an account's; it reaches the call's
/// task addressed from the account to the far end, and its outcome and the far end's
/// messages come back as the session's events.
#[test]
fn messages_go_in_answered_calls_and_come_back_as_session_events() {
    let mut connection = calling(Version::V2);
    let message = json!({"session": "s1", "message_id": "m1", "content": "hi",
        "content_type": "text/plain", "timestamp": "2026-12-04T09:59:00Z"});
    let (_, out) = exchange(
        &mut connection,
        request("session-message", "3", message.clone()),
    );
    assert_eq!(
        out[0]["error"], "Session s1 is not established: no message yet",
        "{out:?}"
    );
    update(
        &mut connection,
        "s1",
        CallUpdate::Accepted {
            sdp: None,
            call_id: None,
        },
    );
    let (_, out) = exchange(
        &mut connection,
        request("session-message", "4", message.clone()),
    );
    assert_eq!(out[0], json!({"sylkrtc": "ack", "transaction": "4"}));
    let what = out[1]["what"].as_str().unwrap();
    assert!(
        what.contains("from: Aor { user: \"alice\", host: \"example.com\"")
            && what.contains("to: Aor { user: \"bob\", host: \"example.com\"")
            && what.contains("message_id: \"m1\"")
            && what.contains("2026-12-04T09:59:00Z"),
        "{what}"
    );
    for (field, value, error) in [
        ("message_id", json!("has space"), "message_id must be"),
        ("content_type", json!("plain"), "content_type must be"),
        ("timestamp", json!("yesterday"), "timestamp must be"),
    ] {
        let mut bad = message.clone();
        bad[field] = value;
        let (_, out) = exchange(&mut connection, request("session-message", "5", bad));
        assert!(
            out[0]["error"].as_str().unwrap().starts_with(error),
            "{out:?}"
        );
    }
    let out = update(
        &mut connection,
        "s1",
        CallUpdate::MessageAnswered {
            message_id: "m1".into(),
            timestamp: "2026-12-04T09:59:00Z".into(),
            code: 488,
            reason: "Not Acceptable Here".into(),
        },
    );
    assert_eq!(
        out,
        [
            json!({"sylkrtc": "session-event", "session": "s1", "event": "disposition-notification",
            "message_id": "m1", "message_timestamp": "2026-12-04T09:59:00Z", "state": "failed",
            "code": 488, "reason": "Not Acceptable Here"})
        ]
    );
    let out = update(&mut connection, "s1", received(Some("bob@example.com")));
    assert_eq!(
        out,
        [
            json!({"sylkrtc": "session-event", "session": "s1", "event": "message",
            "sender": {"uri": "bob@example.com"}, "timestamp": "2026-12-04T10:00:00Z",
            "message_id": "m9", "content": "hello back", "content_type": "text/plain",
            "disposition_notification": ["positive-delivery"], "direction": "incoming"})
        ]
    );
    // A CPIM From that is not the far end is not believed.
    assert!(update(&mut connection, "s1", received(Some("mallory@example.com"))).is_empty());
    let out = update(
        &mut connection,
        "s1",
        CallUpdate::Notification {
            message_id: "m1".into(),
            state: store::State::Displayed,
        },
    );
    assert_eq!(out[0]["event"], "disposition-notification");
    assert_eq!(out[0]["state"], "displayed");
}

/// In an incoming call the sender is the caller, as the call announced them.
#[test]
fn the_caller_is_the_sender_of_an_incoming_calls_messages() {
    let mut connection = connection(Version::V2, &["*"]);
    super::register_alice(&mut connection);
    let invite = sip::driver::IncomingCall {
        from_uri: "sip:carol@example.net".into(),
        display_name: None,
        call_id: "c".into(),
        sdp: Default::default(),
        headers: vec![],
    };
    connection.handle_incoming(1, sip::driver::CallHandle(7), invite);
    let Some(crate::sylkrtc::connection::Output::Incoming(incoming)) = connection.poll_output()
    else {
        panic!("an incoming call");
    };
    let session = incoming.session.clone();
    update(
        &mut connection,
        &session,
        CallUpdate::Incoming {
            caller: Caller {
                uri: "carol@example.net".into(),
                display_name: Some("Carol".into()),
            },
            sdp: "v=0".into(),
            call_id: None,
            headers: Default::default(),
        },
    );
    let out = update(&mut connection, &session, received(None));
    assert_eq!(
        out[0]["sender"],
        json!({"uri": "carol@example.net", "display_name": "Carol"})
    );
}
