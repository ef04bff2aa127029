use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

fn settings() -> Settings {
    Settings {
        ping_period: Duration::from_secs(3),
        max_connection_setup_time: Duration::from_secs(30),
        join_only_to_existing: false,
        default_type: Kind::Mesh,
    }
}

fn hub(now: Instant) -> Hub {
    let mut counter = 0;
    Hub::new(
        now,
        settings(),
        Box::new(move || {
            counter += 1;
            format!("generated-{counter}")
        }),
    )
}

/// Everything the hub has for members, as (recipient, signal, from, content).
fn drain(hub: &mut Hub) -> Vec<(String, String, String, String)> {
    std::iter::from_fn(|| hub.poll_output())
        .map(|(to, message)| {
            assert_eq!(to, message.to);
            (to, message.signal, message.from, message.content)
        })
        .collect()
}

fn out(to: &str, signal: &str, from: &str, content: &str) -> (String, String, String, String) {
    (to.into(), signal.into(), from.into(), content.into())
}

fn send(hub: &mut Hub, now: Instant, from: &str, message: serde_json::Value) {
    hub.receive(now, from, &message.to_string());
}

#[test]
fn create_names_the_conversation_and_refuses_a_duplicate() {
    let now = Instant::now();
    let mut hub = hub(now);
    for id in ["a", "b", "c"] {
        hub.connect(id.into());
    }
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "create", "content": "room"}),
    );
    let (to, message) = hub.poll_output().expect("created");
    assert_eq!(to, "a");
    assert_eq!(message.signal, "created");
    assert_eq!(message.content, "room");
    assert_eq!(message.custom.get("type").map(String::as_str), Some("MESH"));
    send(
        &mut hub,
        now,
        "b",
        json!({"signal": "create", "content": "room"}),
    );
    let (_, error) = hub.poll_output().expect("error");
    assert_eq!(error.signal, "error");
    assert_eq!(error.content, "CONVERSATION_NAME_OCCUPIED");
    assert!(error.custom.contains_key("stackTrace"));
    // A blank name gets one; a member in a conversation cannot create another.
    send(
        &mut hub,
        now,
        "c",
        json!({"signal": "CREATE", "content": " "}),
    );
    assert_eq!(drain(&mut hub), [out("c", "created", "", "generated-1")]);
    send(
        &mut hub,
        now,
        "c",
        json!({"signal": "join", "content": "room"}),
    );
    assert_eq!(
        drain(&mut hub),
        [out("c", "error", "", "MEMBER_IN_OTHER_CONVERSATION")]
    );
}

#[test]
fn three_members_of_a_mesh_negotiate_every_pair_with_the_existing_member_offering() {
    let now = Instant::now();
    let mut hub = hub(now);
    for id in ["s1", "s2", "s3"] {
        hub.connect(id.into());
    }
    send(
        &mut hub,
        now,
        "s1",
        json!({"signal": "create", "content": "c"}),
    );
    assert_eq!(drain(&mut hub), [out("s1", "created", "", "c")]);
    send(
        &mut hub,
        now,
        "s2",
        json!({"signal": "join", "content": "c"}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            out("s2", "joined", "", "c"),
            out("s1", "newJoined", "s2", "s2"),
            out("s2", "newJoined", "s1", "s1"),
            out("s1", "offerRequest", "s2", ""),
        ]
    );
    send(
        &mut hub,
        now,
        "s1",
        json!({"signal": "offerResponse", "to": "s2", "content": "offer 1-2"}),
    );
    assert_eq!(
        drain(&mut hub),
        [out("s2", "answerRequest", "s1", "offer 1-2")]
    );
    send(
        &mut hub,
        now,
        "s2",
        json!({"signal": "answerResponse", "to": "s1", "content": "answer 2-1"}),
    );
    assert_eq!(drain(&mut hub), [out("s1", "finalize", "s2", "answer 2-1")]);

    send(
        &mut hub,
        now,
        "s3",
        json!({"signal": "join", "content": "c"}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            out("s3", "joined", "", "c"),
            out("s1", "newJoined", "s3", "s3"),
            out("s3", "newJoined", "s1", "s1"),
            out("s1", "offerRequest", "s3", ""),
            out("s2", "newJoined", "s3", "s3"),
            out("s3", "newJoined", "s2", "s2"),
            out("s2", "offerRequest", "s3", ""),
        ]
    );
    // An answer before the offer, or from the wrong side, is not part of the exchange.
    send(
        &mut hub,
        now,
        "s3",
        json!({"signal": "answerResponse", "to": "s2", "content": "early"}),
    );
    send(
        &mut hub,
        now,
        "s3",
        json!({"signal": "offerResponse", "to": "s2", "content": "wrong side"}),
    );
    assert_eq!(drain(&mut hub), []);
}

#[test]
fn candidates_wait_for_finalize_and_follow_it_in_order() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.connect("a".into());
    hub.connect("b".into());
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "create", "content": "c"}),
    );
    send(
        &mut hub,
        now,
        "b",
        json!({"signal": "join", "content": "c"}),
    );
    drain(&mut hub);
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "candidate", "to": "b", "content": "a1"}),
    );
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "offerResponse", "to": "b", "content": "o"}),
    );
    send(
        &mut hub,
        now,
        "b",
        json!({"signal": "candidate", "to": "a", "content": "b1"}),
    );
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "candidate", "to": "b", "content": "a2"}),
    );
    assert_eq!(drain(&mut hub), [out("b", "answerRequest", "a", "o")]);
    send(
        &mut hub,
        now,
        "b",
        json!({"signal": "answerResponse", "to": "a", "content": "x"}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            out("a", "finalize", "b", "x"),
            out("b", "candidate", "a", "a1"),
            out("a", "candidate", "b", "b1"),
            out("b", "candidate", "a", "a2"),
        ]
    );
    send(
        &mut hub,
        now,
        "b",
        json!({"signal": "candidate", "to": "a", "content": "b2"}),
    );
    assert_eq!(drain(&mut hub), [out("a", "candidate", "b", "b2")]);
}

#[test]
fn a_pair_stuck_in_its_set_up_is_forgotten() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.connect("a".into());
    hub.connect("b".into());
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "create", "content": "c"}),
    );
    send(
        &mut hub,
        now,
        "b",
        json!({"signal": "join", "content": "c"}),
    );
    drain(&mut hub);
    assert!(hub.poll_timeout() <= now + Duration::from_secs(1));
    let later = now + Duration::from_secs(31);
    hub.handle_timeout(later);
    drain(&mut hub);
    send(
        &mut hub,
        later,
        "a",
        json!({"signal": "offerResponse", "to": "b", "content": "o"}),
    );
    assert_eq!(drain(&mut hub), []);
}

#[test]
fn a_broadcast_connects_the_broadcaster_to_each_member_of_the_audience_only() {
    let now = Instant::now();
    let mut hub = hub(now);
    for id in ["b", "x", "y"] {
        hub.connect(id.into());
    }
    send(
        &mut hub,
        now,
        "b",
        json!({"signal": "create", "content": "show", "custom": {"type": "BROADCAST"}}),
    );
    let (_, created) = hub.poll_output().expect("created");
    assert_eq!(
        created.custom.get("type").map(String::as_str),
        Some("BROADCAST")
    );
    send(
        &mut hub,
        now,
        "x",
        json!({"signal": "join", "content": "show"}),
    );
    send(
        &mut hub,
        now,
        "y",
        json!({"signal": "join", "content": "show"}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            out("x", "joined", "", "show"),
            out("b", "newJoined", "x", "x"),
            out("x", "newJoined", "b", "b"),
            out("b", "offerRequest", "x", ""),
            out("y", "joined", "", "show"),
            out("b", "newJoined", "y", "y"),
            out("y", "newJoined", "b", "b"),
            out("b", "offerRequest", "y", ""),
        ]
    );
    // Text from the audience reaches everyone else; the broadcaster's reaches the audience.
    send(
        &mut hub,
        now,
        "x",
        json!({"signal": "text", "content": "hi"}),
    );
    assert_eq!(
        drain(&mut hub),
        [out("b", "text", "x", "hi"), out("y", "text", "x", "hi")]
    );
    // An audience member leaving is told to the broadcaster only.
    hub.disconnect("y");
    assert_eq!(drain(&mut hub), [out("b", "left", "y", "")]);
    // The broadcaster leaving ends it for the audience.
    send(&mut hub, now, "b", json!({"signal": "left"}));
    assert_eq!(
        drain(&mut hub),
        [out("x", "left", "b", ""), out("x", "end", "", "show")]
    );
    // The conversation is gone: its name is free, and x is in none.
    send(
        &mut hub,
        now,
        "x",
        json!({"signal": "create", "content": "show"}),
    );
    assert_eq!(drain(&mut hub), [out("x", "created", "", "show")]);
}

#[test]
fn leaving_and_closing_tell_the_others_and_the_last_one_out_removes_the_conversation() {
    let now = Instant::now();
    let mut hub = hub(now);
    for id in ["a", "b", "c"] {
        hub.connect(id.into());
    }
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "create", "content": "c"}),
    );
    send(
        &mut hub,
        now,
        "b",
        json!({"signal": "join", "content": "c"}),
    );
    send(
        &mut hub,
        now,
        "c",
        json!({"signal": "join", "content": "c"}),
    );
    drain(&mut hub);
    send(&mut hub, now, "a", json!({"signal": "Left"}));
    assert_eq!(
        drain(&mut hub),
        [out("b", "left", "a", ""), out("c", "left", "a", "")]
    );
    send(&mut hub, now, "a", json!({"signal": "left"}));
    assert_eq!(
        drain(&mut hub),
        [out("a", "error", "", "CONVERSATION_NOT_FOUND")]
    );
    hub.disconnect("b");
    assert_eq!(drain(&mut hub), [out("c", "left", "b", "")]);
    hub.disconnect("c");
    assert_eq!(hub.members(), 1);
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "create", "content": "c"}),
    );
    assert_eq!(drain(&mut hub), [out("a", "created", "", "c")]);
}

#[test]
fn a_mesh_with_master_ends_for_everyone_when_its_creator_leaves() {
    let now = Instant::now();
    let mut hub = hub(now);
    for id in ["m", "p", "q"] {
        hub.connect(id.into());
    }
    send(
        &mut hub,
        now,
        "m",
        json!({"signal": "create", "content": "c", "custom": {"type": "MESH_WITH_MASTER"}}),
    );
    send(
        &mut hub,
        now,
        "p",
        json!({"signal": "join", "content": "c"}),
    );
    send(
        &mut hub,
        now,
        "q",
        json!({"signal": "join", "content": "c"}),
    );
    drain(&mut hub);
    hub.disconnect("m");
    assert_eq!(
        drain(&mut hub),
        [out("p", "left", "m", ""), out("q", "left", "m", "")]
    );
    send(
        &mut hub,
        now,
        "p",
        json!({"signal": "text", "content": "anyone?"}),
    );
    assert_eq!(
        drain(&mut hub),
        [out("p", "error", "", "CONVERSATION_NOT_FOUND")]
    );
}

#[test]
fn join_to_a_missing_conversation_creates_it_unless_configured_otherwise() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.connect("a".into());
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "join", "content": "new"}),
    );
    let (_, created) = hub.poll_output().expect("created");
    assert_eq!(
        (created.signal.as_str(), created.content.as_str()),
        ("created", "new")
    );

    let mut strict = Hub::new(
        now,
        Settings {
            join_only_to_existing: true,
            ..settings()
        },
        Box::new(String::new),
    );
    strict.connect("a".into());
    send(
        &mut strict,
        now,
        "a",
        json!({"signal": "join", "content": "new"}),
    );
    assert_eq!(
        drain(&mut strict),
        [out("a", "error", "", "CONVERSATION_NOT_FOUND")]
    );
}

#[test]
fn text_goes_to_one_member_of_the_same_conversation_or_to_all_others() {
    let now = Instant::now();
    let mut hub = hub(now);
    for id in ["a", "b", "c", "outsider"] {
        hub.connect(id.into());
    }
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "create", "content": "c"}),
    );
    send(
        &mut hub,
        now,
        "b",
        json!({"signal": "join", "content": "c"}),
    );
    send(
        &mut hub,
        now,
        "c",
        json!({"signal": "join", "content": "c"}),
    );
    drain(&mut hub);
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "TEXT", "content": "<hi & bye>", "custom": {"k": "v"}}),
    );
    let sent: Vec<_> = std::iter::from_fn(|| hub.poll_output()).collect();
    assert_eq!(sent.len(), 2);
    assert!(
        sent.iter()
            .all(|(_, message)| message.content == "<hi & bye>"
                && message.custom.get("k").map(String::as_str) == Some("v"))
    );
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "text", "to": "b", "content": "b only"}),
    );
    assert_eq!(drain(&mut hub), [out("b", "text", "a", "b only")]);
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "text", "to": "outsider", "content": "x"}),
    );
    assert_eq!(
        drain(&mut hub),
        [out("a", "error", "", "INVALID_RECIPIENT")]
    );
}

#[test]
fn malformed_frames_get_an_error_and_unknown_signals_nothing() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.connect("a".into());
    hub.receive(now, "a", "{not json");
    hub.receive(now, "a", r#"{"signal":"text","custom":{"nested":{"a":1}}}"#);
    assert_eq!(
        drain(&mut hub),
        [
            out("a", "error", "", "UNKNOWN_ERROR"),
            out("a", "error", "", "UNKNOWN_ERROR")
        ]
    );
    send(
        &mut hub,
        now,
        "a",
        json!({"signal": "whatever", "content": "x"}),
    );
    assert_eq!(drain(&mut hub), []);
}

#[test]
fn every_member_gets_a_ping_after_1_s_then_every_period() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.connect("a".into());
    hub.connect("b".into());
    assert_eq!(hub.poll_timeout(), now + Duration::from_secs(1));
    hub.handle_timeout(now + Duration::from_secs(1));
    assert_eq!(
        drain(&mut hub),
        [out("a", "ping", "", ""), out("b", "ping", "", "")]
    );
    assert_eq!(hub.poll_timeout(), now + Duration::from_secs(4));
    hub.handle_timeout(now + Duration::from_secs(2));
    assert_eq!(drain(&mut hub), []);
}

#[test]
fn null_fields_of_an_envelope_read_as_absent() {
    let now = Instant::now();
    let mut hub = hub(now);
    hub.connect("a".into());
    hub.connect("b".into());
    // Each optional field null in turn: the request works as if the field were absent.
    send(
        &mut hub,
        now,
        "a",
        json!({"from": null, "to": null, "signal": "create", "content": "room", "custom": null}),
    );
    let (to, created) = hub.poll_output().expect("created");
    assert_eq!((to.as_str(), created.signal.as_str()), ("a", "created"));
    assert_eq!(created.content, "room");
    send(
        &mut hub,
        now,
        "b",
        json!({"from": null, "to": null, "signal": "join", "content": "room", "custom": null}),
    );
    let signals: Vec<String> = drain(&mut hub)
        .into_iter()
        .map(|(to, signal, _, _)| format!("{to}:{signal}"))
        .collect();
    assert!(signals.contains(&"b:joined".to_owned()), "{signals:?}");
    // A null content or signal is an empty one, not a decoding failure.
    send(&mut hub, now, "a", json!({"signal": null, "content": null}));
    let errors: Vec<String> = drain(&mut hub)
        .into_iter()
        .map(|(_, _, _, content)| content)
        .collect();
    assert!(!errors.iter().any(|e| e == "UNKNOWN_ERROR"), "{errors:?}");
}
