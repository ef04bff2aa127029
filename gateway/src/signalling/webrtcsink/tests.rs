use serde_json::json;

use super::*;

fn hub() -> Hub {
    let mut counter = 0;
    Hub::new(Box::new(move || {
        counter += 1;
        format!("s{counter}")
    }))
}

fn drain(hub: &mut Hub) -> Vec<(String, Value)> {
    std::iter::from_fn(|| hub.poll_output()).collect()
}

fn to(peer: &str, message: Value) -> (String, Value) {
    (peer.to_owned(), message)
}

fn say(hub: &mut Hub, from: &str, message: Value) {
    hub.receive(from, &message.to_string());
}

#[test]
fn a_consumer_starts_a_session_with_a_producer_and_their_messages_are_relayed() {
    let mut hub = hub();
    for id in ["p", "c", "l"] {
        hub.connect(id);
    }
    assert_eq!(
        drain(&mut hub),
        [
            to("p", json!({"type": "welcome", "peerId": "p"})),
            to("c", json!({"type": "welcome", "peerId": "c"})),
            to("l", json!({"type": "welcome", "peerId": "l"})),
        ]
    );
    say(
        &mut hub,
        "l",
        json!({"type": "setPeerStatus", "roles": ["listener"]}),
    );
    say(
        &mut hub,
        "p",
        json!({"type": "setPeerStatus", "roles": ["producer"], "meta": {"name": "cam"}}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            to(
                "l",
                json!({"type": "peerStatusChanged", "roles": ["listener"], "meta": null, "peerId": "l"})
            ),
            to(
                "l",
                json!({"type": "peerStatusChanged", "roles": ["producer"], "meta": {"name": "cam"}, "peerId": "p"})
            ),
        ]
    );
    say(&mut hub, "c", json!({"type": "list"}));
    assert_eq!(
        drain(&mut hub),
        [to(
            "c",
            json!({"type": "list", "producers": [{"id": "p", "meta": {"name": "cam"}}]})
        )]
    );
    say(
        &mut hub,
        "c",
        json!({"type": "startSession", "peerId": "p"}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            to(
                "c",
                json!({"type": "sessionStarted", "peerId": "p", "sessionId": "s1"})
            ),
            to(
                "p",
                json!({"type": "startSession", "peerId": "c", "sessionId": "s1", "offer": null})
            ),
        ]
    );
    say(
        &mut hub,
        "p",
        json!({"type": "peer", "sessionId": "s1", "sdp": {"type": "offer", "sdp": "v=0"}, "extra": 1}),
    );
    say(
        &mut hub,
        "c",
        json!({"type": "peer", "sessionId": "s1", "ice": {"candidate": "candidate:1", "sdpMLineIndex": 0}}),
    );
    say(
        &mut hub,
        "c",
        json!({"type": "peer", "sessionId": "s1", "sdp": {"type": "offer", "sdp": "v=0"}}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            to(
                "c",
                json!({"type": "peer", "sessionId": "s1", "sdp": {"type": "offer", "sdp": "v=0"}})
            ),
            to(
                "p",
                json!({"type": "peer", "sessionId": "s1", "ice": {"candidate": "candidate:1", "sdpMLineIndex": 0}})
            ),
            to(
                "c",
                json!({"type": "error", "details": "cannot forward offer from \"c\" to \"p\" as \"c\" is not the producer"})
            ),
        ]
    );
    // The producer goes: the session ends for the consumer, listeners see it without roles.
    hub.disconnect("p");
    assert_eq!(
        drain(&mut hub),
        [
            to("c", json!({"type": "endSession", "sessionId": "s1"})),
            to(
                "l",
                json!({"type": "peerStatusChanged", "roles": [], "meta": {"name": "cam"}, "peerId": "p"})
            ),
        ]
    );
}

#[test]
fn errors_and_ignored_messages() {
    let mut hub = hub();
    hub.connect("a");
    hub.connect("b");
    drain(&mut hub);
    say(
        &mut hub,
        "a",
        json!({"type": "startSession", "peerId": "zz"}),
    );
    say(
        &mut hub,
        "a",
        json!({"type": "startSession", "peerId": "b"}),
    );
    say(
        &mut hub,
        "a",
        json!({"type": "setPeerStatus", "roles": ["producer", "consumer"]}),
    );
    say(
        &mut hub,
        "ghost",
        json!({"type": "setPeerStatus", "roles": []}),
    );
    assert_eq!(
        drain(&mut hub),
        [
            to(
                "a",
                json!({"type": "error", "details": "Peer with ID 'zz' not found"})
            ),
            to(
                "a",
                json!({"type": "error", "details": "Missing a producer or a consumer: id a roles [], id b roles []"})
            ),
            to(
                "a",
                json!({"type": "error", "details": "Cannot register peer a as both producer and passive consumer"})
            ),
            to(
                "ghost",
                json!({"type": "error", "details": "Peer 'ghost' hasn't been welcomed"})
            ),
        ]
    );
    // Not a message, an unknown session, a first status equal to the initial one: nothing.
    hub.receive("a", "{oops");
    say(
        &mut hub,
        "a",
        json!({"type": "setPeerStatus", "roles": ["dancer"]}),
    );
    say(
        &mut hub,
        "a",
        json!({"type": "endSession", "sessionId": "nope"}),
    );
    say(&mut hub, "a", json!({"type": "setPeerStatus", "roles": []}));
    assert_eq!(drain(&mut hub), []);
    // A passive consumer is offered a session by a producer.
    say(
        &mut hub,
        "b",
        json!({"type": "setPeerStatus", "roles": ["consumer"]}),
    );
    say(
        &mut hub,
        "a",
        json!({"type": "setPeerStatus", "roles": ["producer"]}),
    );
    say(
        &mut hub,
        "a",
        json!({"type": "startSession", "peerId": "b", "offer": "v=0"}),
    );
    say(&mut hub, "b", json!({"type": "listConsumers"}));
    assert_eq!(
        drain(&mut hub),
        [
            to(
                "b",
                json!({"type": "sessionStarted", "peerId": "a", "sessionId": "s1"})
            ),
            to(
                "a",
                json!({"type": "startSession", "peerId": "b", "sessionId": "s1", "offer": "v=0"})
            ),
            to(
                "b",
                json!({"type": "listConsumers", "consumers": [{"id": "b", "meta": null}]})
            ),
        ]
    );
    // Giving up the producer role ends its sessions.
    say(&mut hub, "a", json!({"type": "setPeerStatus", "roles": []}));
    assert_eq!(
        drain(&mut hub),
        [to("b", json!({"type": "endSession", "sessionId": "s1"}))]
    );
}
