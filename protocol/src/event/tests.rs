use std::time::Duration;

use serde_json::{Value, json};

use super::*;

/// Parses `input` as a message of `version`, and checks that encoding gives it back.
fn round_trip(version: Version, input: Value) -> ServerMessage {
    let message = ServerMessage::parse(&input.to_string(), version).unwrap();
    let encoded: Value = serde_json::from_str(&message.encode(version)).unwrap();
    assert_eq!(encoded, input, "{version:?}");
    message
}

fn account(event: AccountEvent) -> ServerMessage {
    ServerMessage::Event(Event::Account {
        account: "saghul@sip2sip.info".into(),
        event,
    })
}

fn session(id: &str, event: SessionEvent) -> ServerMessage {
    ServerMessage::Event(Event::Session {
        session: id.into(),
        event,
    })
}

#[test]
fn seed_examples_round_trip_as_sylkrtc_1() {
    let v1 = Version::V1;
    assert_eq!(
        round_trip(v1, json!({"event": "ready", "sylkrtc": "event"})),
        ServerMessage::Event(Event::Ready)
    );
    assert_eq!(
        round_trip(
            v1,
            json!({"account": "saghul@sip2sip.info", "data": {"state": "registering"},
            "event": "registration_state", "sylkrtc": "account_event"})
        ),
        account(AccountEvent::RegistrationState(
            RegistrationState::Registering
        ))
    );
    round_trip(
        v1,
        json!({"account": "saghul@sip2sip.info", "data": {"state": "registered"},
        "event": "registration_state", "sylkrtc": "account_event"}),
    );
    assert_eq!(
        round_trip(
            v1,
            json!({"account": "saghul@sip2sip.info",
            "data": {"reason": "904 Operation has no matching challenge ", "state": "failed"},
            "event": "registration_state", "sylkrtc": "account_event"})
        ),
        account(AccountEvent::RegistrationState(RegistrationState::Failed {
            reason: Some("904 Operation has no matching challenge ".into())
        }))
    );
    assert_eq!(
        round_trip(
            v1,
            json!({"account": "saghul@sip2sip.info",
            "data": {"originator": "31208005163@ag-projects.com", "sdp": "..."},
            "event": "incoming_session", "session": "509b256aa6a14540a2a37553e6bd33e1", "sylkrtc": "account_event"})
        ),
        account(AccountEvent::IncomingSession {
            session: "509b256aa6a14540a2a37553e6bd33e1".into(),
            originator: Party {
                uri: "31208005163@ag-projects.com".into(),
                display_name: None
            },
            sdp: "...".into(),
            call_id: None,
            headers: Headers::new(),
        })
    );
    let s = "38dffdf81acb44b2b11b61f4488c4ca9";
    assert_eq!(
        round_trip(
            v1,
            json!({"data": {"state": "established"}, "event": "state", "session": s,
            "sylkrtc": "session_event"})
        ),
        session(s, SessionEvent::State(SessionState::Established))
    );
    let s = "20c40185-1ef2-419e-b91a-70415778acb4";
    assert_eq!(
        round_trip(
            v1,
            json!({"data": {"sdp": "...", "state": "accepted"}, "event": "state", "session": s,
            "sylkrtc": "session_event"})
        ),
        session(
            s,
            SessionEvent::State(SessionState::Accepted {
                sdp: Some("...".into()),
                call_id: None,
                headers: Headers::new()
            })
        )
    );
    assert_eq!(
        round_trip(
            v1,
            json!({"data": {"reason": "200 to BYE", "state": "terminated"}, "event": "state",
            "session": s, "sylkrtc": "session_event"})
        ),
        session(
            s,
            SessionEvent::State(SessionState::Terminated {
                reason: Some("200 to BYE".into())
            })
        )
    );
}

#[test]
fn spec_examples_round_trip_as_sylkrtc_2() {
    let v2 = Version::V2;
    round_trip(
        v2,
        json!({"sylkrtc": "account-event", "account": "saghul@sip2sip.info",
            "event": "sync-conversations", "messages": [{"contact": "bob@example.com",
            "timestamp": "2026-12-04T10:00:00.000Z", "message_id": "m1", "content_type": "text/plain",
            "content": "hi", "disposition": [], "direction": "incoming", "state": "received"}]}),
    );
    round_trip(
        v2,
        json!({"sylkrtc": "account-event", "account": "saghul@sip2sip.info", "event": "message",
            "sender": {"uri": "bob@example.com", "display_name": "Bob"},
            "timestamp": "2026-12-04T10:00:00.000Z", "message_id": "m2", "content": "hi",
            "content_type": "text/plain", "disposition_notification": ["positive-delivery", "display"],
            "direction": "incoming"}),
    );
    // The address book's events, in the shapes sylkrtc.js reads.
    for event in [
        json!({"sylkrtc": "account-event", "account": "saghul@sip2sip.info",
            "event": "addressbook-fetched",
            "addressbook": {"contacts": [{"id": "c1", "name": "Bob"}], "groups": [], "policies": []}}),
        json!({"sylkrtc": "account-event", "account": "saghul@sip2sip.info",
            "event": "addressbook-updated", "type": "contact", "action": "add",
            "contact": {"id": "c1", "name": "Bob"}}),
        json!({"sylkrtc": "account-event", "account": "saghul@sip2sip.info",
            "event": "addressbook-update-failed", "type": "group", "action": "update",
            "error": "no group g1", "id": "g1"}),
    ] {
        round_trip(v2, event);
    }
    // `sync`, in the shapes sylkrtc.js reads.
    for (kind, action, content) in [
        (
            "message",
            "add",
            json!({"account": "saghul@sip2sip.info", "uri": "bob@example.com",
            "message_id": "m3", "content": "hi", "content_type": "text/plain",
            "timestamp": "2026-12-04T10:00:00.000Z"}),
        ),
        (
            "message",
            "remove",
            json!({"contact": "bob@example.com", "message_id": "m3"}),
        ),
        (
            "message",
            "remove",
            json!({"contact": "bob@example.com", "message_id": "m3",
            "direction": "incoming"}),
        ),
        (
            "conversation",
            "read",
            json!({"contact": "bob@example.com"}),
        ),
        (
            "conversation",
            "remove",
            json!({"contact": "bob@example.com",
            "timestamp": "2026-12-04T10:00:00.000Z"}),
        ),
    ] {
        round_trip(
            v2,
            json!({"sylkrtc": "account-event", "account": "saghul@sip2sip.info", "event": "sync",
                "type": kind, "action": action, "content": content}),
        );
    }
    assert_eq!(
        round_trip(
            v2,
            json!({"sylkrtc": "account-event", "account": "saghul@sip2sip.info",
                "event": "disposition-notification", "message_id": "m1",
                "message_timestamp": "2026-12-04T10:00:00.000Z", "state": "failed", "code": 404,
                "reason": "Not Found"})
        ),
        account(AccountEvent::DispositionNotification(
            DispositionNotification {
                message_id: "m1".into(),
                message_timestamp: Some("2026-12-04T10:00:00.000Z".into()),
                state: "failed".into(),
                code: Some(404),
                reason: Some("Not Found".into()),
            }
        ))
    );
    assert_eq!(
        round_trip(v2, json!({"sylkrtc": "ready-event"})),
        ServerMessage::Event(Event::Ready)
    );
    assert_eq!(
        round_trip(v2, json!({"sylkrtc": "ack", "transaction": "t1"})),
        ServerMessage::Ack {
            transaction: "t1".into()
        }
    );
    round_trip(
        v2,
        json!({"sylkrtc": "error", "transaction": "t1", "error": "Unknown account specified: a@b"}),
    );
    round_trip(
        v2,
        json!({"sylkrtc": "account-event", "account": "alice@example.com",
        "event": "registration-state", "state": "registering"}),
    );
    round_trip(
        v2,
        json!({"sylkrtc": "account-event", "account": "alice@example.com",
        "event": "registration-state", "state": "registered"}),
    );
    round_trip(
        v2,
        json!({"sylkrtc": "account-event", "account": "alice@example.com",
        "event": "registration-state", "state": "failed", "reason": "401 Unauthorized"}),
    );
    round_trip(
        v2,
        json!({"sylkrtc": "account-event", "account": "alice@example.com", "event": "incoming-session",
        "session": "c0ffee", "originator": {"uri": "bob@example.com", "display_name": "Bob"}, "sdp": "v=0",
        "call_id": "abc@host", "headers": {"X-Foo": "1"}}),
    );
    round_trip(
        v2,
        json!({"sylkrtc": "account-event", "account": "alice@example.com", "event": "missed-session",
        "originator": {"uri": "bob@example.com"}}),
    );
    for state in [
        json!({"state": "progress"}),
        json!({"state": "proceeding", "code": 183}),
        json!({"state": "ringing"}),
        json!({"state": "early-media", "sdp": "v=0", "call_id": "c1"}),
        json!({"state": "accepted", "sdp": "v=0", "call_id": "c1", "headers": {"X-Bar": "2"}}),
        json!({"state": "accepted"}),
        json!({"state": "established"}),
        json!({"state": "terminated", "reason": "486 Busy Here"}),
    ] {
        let mut input = json!({"sylkrtc": "session-event", "session": "s1", "event": "state"});
        input
            .as_object_mut()
            .unwrap()
            .append(&mut state.as_object().unwrap().clone());
        round_trip(v2, input);
    }
    for update in [
        json!({"state": "received", "sdp": "v=0"}),
        json!({"state": "accepted", "sdp": "v=0"}),
        json!({"state": "failed", "reason": "488 Not Acceptable Here"}),
    ] {
        let mut input = json!({"sylkrtc": "session-event", "session": "s1", "event": "update"});
        input
            .as_object_mut()
            .unwrap()
            .append(&mut update.as_object().unwrap().clone());
        round_trip(v2, input);
    }
}

#[test]
fn sylkrtc_1_nests_the_payload_and_drops_what_it_lacks() {
    let event = account(AccountEvent::IncomingSession {
        session: "c0ffee".into(),
        originator: Party {
            uri: "bob@example.com".into(),
            display_name: Some("Bob".into()),
        },
        sdp: "v=0".into(),
        call_id: Some("abc@host".into()),
        headers: Headers::from([("X-Foo".to_owned(), "1".to_owned())]),
    });
    let v1: Value = serde_json::from_str(&event.encode(Version::V1)).unwrap();
    assert_eq!(
        v1,
        json!({"sylkrtc": "account_event", "account": "saghul@sip2sip.info", "event": "incoming_session",
            "session": "c0ffee", "data": {"originator": "bob@example.com", "sdp": "v=0"}})
    );
    let update = session(
        "s",
        SessionEvent::Update(UpdateState::Received { sdp: "v=0".into() }),
    );
    let v1: Value = serde_json::from_str(&update.encode(Version::V1)).unwrap();
    assert_eq!(
        v1,
        json!({"sylkrtc": "session_event", "session": "s", "event": "update", "data": {"state": "received", "sdp": "v=0"}})
    );
    assert_eq!(
        ServerMessage::parse(&update.encode(Version::V1), Version::V1).unwrap(),
        update
    );
}

#[test]
fn messages_in_a_session_read_back() {
    let message = session(
        "s",
        SessionEvent::Message(IncomingMessage {
            sender: Party {
                uri: "bob@example.com".into(),
                display_name: Some("Bob".into()),
            },
            timestamp: "2026-12-04T10:00:00Z".into(),
            message_id: "m1".into(),
            content: "hi".into(),
            content_type: "text/plain".into(),
            disposition_notification: vec!["display".into()],
        }),
    );
    let notification = session(
        "s",
        SessionEvent::DispositionNotification(DispositionNotification {
            message_id: "m2".into(),
            message_timestamp: None,
            state: "failed".into(),
            code: Some(488),
            reason: Some("Not Acceptable Here".into()),
        }),
    );
    let v2: Value = serde_json::from_str(&notification.encode(Version::V2)).unwrap();
    assert_eq!(
        v2,
        json!({"sylkrtc": "session-event", "session": "s", "event": "disposition-notification",
            "message_id": "m2", "state": "failed", "code": 488, "reason": "Not Acceptable Here"})
    );
    for event in [message, notification] {
        for version in Version::PREFERENCE {
            assert_eq!(
                ServerMessage::parse(&event.encode(version), version).unwrap(),
                event
            );
        }
    }
}

#[test]
fn replies_escape_their_text() {
    let error = ServerMessage::Error {
        transaction: "a\"b".into(),
        error: "line\nbreak \u{1}".into(),
    };
    for version in Version::PREFERENCE {
        assert_eq!(
            ServerMessage::parse(&error.encode(version), version).unwrap(),
            error
        );
    }
    assert_eq!(
        ServerMessage::Ack {
            transaction: "t".into()
        }
        .encode(Version::V1),
        r#"{"sylkrtc":"ack","transaction":"t"}"#
    );
}

#[test]
fn messages_of_the_other_version_are_not_understood() {
    assert!(ServerMessage::parse(r#"{"sylkrtc":"ready-event"}"#, Version::V1).is_err());
    assert!(ServerMessage::parse(r#"{"sylkrtc":"event","event":"ready"}"#, Version::V2).is_err());
    let error = ServerMessage::parse(
        r#"{"sylkrtc":"session-event","session":"s","event":"state","state":"odd"}"#,
        Version::V2,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid field `state`: unknown state \"odd\""
    );
}

#[test]
fn the_quality_extension_reads_back() {
    let leg = |lost: u64, rtt: Option<u64>| LegQuality {
        packets_sent: 500,
        bytes_sent: 80_000,
        packets_received: 498,
        bytes_received: 79_680,
        packets_lost: lost,
        jitter: Duration::from_micros(1_500),
        remote_packets_lost: rtt.map(|_| 1),
        remote_jitter: rtt.map(|_| Duration::from_millis(2)),
        round_trip_time: rtt.map(Duration::from_millis),
    };
    let event = session(
        "s",
        SessionEvent::Quality(Box::new(CallQuality {
            codec: Some("PCMU".into()),
            duration: Duration::from_millis(10_250),
            browser: leg(2, Some(24)),
            sip: leg(0, None),
        })),
    );
    let v2: Value = serde_json::from_str(&event.encode(Version::V2)).unwrap();
    assert_eq!(
        v2,
        json!({"sylkrtc": "session-event", "session": "s", "event": "quality",
            "codec": "PCMU", "duration": 10.25,
            "browser": {"packets_sent": 500, "bytes_sent": 80_000, "packets_received": 498,
                "bytes_received": 79_680, "packets_lost": 2, "jitter": 0.0015,
                "remote_packets_lost": 1, "remote_jitter": 0.002, "round_trip_time": 0.024},
            "sip": {"packets_sent": 500, "bytes_sent": 80_000, "packets_received": 498,
                "bytes_received": 79_680, "packets_lost": 0, "jitter": 0.0015}})
    );
    for version in Version::PREFERENCE {
        assert_eq!(
            ServerMessage::parse(&event.encode(version), version).unwrap(),
            event
        );
    }
    // A leg that is not an object, or a count that is not one, is named.
    let broken = r#"{"sylkrtc": "session-event", "session": "s", "event": "quality",
        "browser": {"packets_lost": -1}, "sip": {}}"#;
    let error = ServerMessage::parse(broken, Version::V2).unwrap_err();
    assert!(
        error.to_string().contains("browser.packets_lost"),
        "{error}"
    );
}
