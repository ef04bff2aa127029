use super::*;

fn drain(hub: &mut Hub) -> Vec<Output> {
    std::iter::from_fn(|| hub.poll_output()).collect()
}

fn sent(conn: ConnId, text: &str) -> Output {
    Output::Send(conn, text.to_owned())
}

/// A hub with peers registered as connections 1, 2, ... in order.
fn with_peers(uids: &[&str]) -> Hub {
    let mut hub = Hub::default();
    for (index, uid) in uids.iter().enumerate() {
        let conn = index as ConnId + 1;
        hub.connect(conn);
        hub.receive(conn, &format!("HELLO {uid}"));
    }
    assert_eq!(drain(&mut hub).len(), uids.len());
    hub
}

#[test]
fn python_repr_and_split() {
    assert_eq!(repr("bob"), "'bob'");
    assert_eq!(repr("it's"), "\"it's\"");
    assert_eq!(repr("a'b\"c"), "'a\\'b\"c'");
    assert_eq!(repr("x\ny"), "'x\\ny'");
    assert_eq!(
        split("  ROOM_PEER_MSG  bob  hello  there ", 2),
        ["ROOM_PEER_MSG", "bob", "hello  there"]
    );
    assert_eq!(split("HELLO", 1), ["HELLO"]);
    assert!(split("   ", 1).is_empty());
}

#[test]
fn a_bad_handshake_is_closed_with_1002() {
    let mut hub = Hub::default();
    for (conn, text, reason) in [
        (1, "HI there", "invalid protocol"),
        (2, "HELLO", "invalid peer uid"),
        (3, "HELLO a b", "invalid peer uid"),
    ] {
        hub.connect(conn);
        hub.receive(conn, text);
        assert_eq!(
            drain(&mut hub),
            [Output::Close(conn, 1002, reason.to_owned())]
        );
    }
    hub.connect(4);
    hub.receive(4, "HELLO alice");
    assert_eq!(drain(&mut hub), [sent(4, "HELLO")]);
    hub.connect(5);
    hub.receive(5, "HELLO alice");
    assert_eq!(
        drain(&mut hub),
        [Output::Close(5, 1002, "invalid peer uid".to_owned())]
    );
    // A closed connection's frames are nobody's.
    hub.receive(5, "HELLO carol");
    assert_eq!(drain(&mut hub), []);
}

#[test]
fn a_session_relays_everything_verbatim_and_ends_for_both() {
    let mut hub = with_peers(&["a", "b", "c"]);
    hub.receive(1, "SESSION nobody");
    assert_eq!(drain(&mut hub), [sent(1, "ERROR peer 'nobody' not found")]);
    hub.receive(1, "SESSION b");
    assert_eq!(drain(&mut hub), [sent(1, "SESSION_OK")]);
    hub.receive(3, "SESSION b");
    assert_eq!(drain(&mut hub), [sent(3, "ERROR peer 'b' busy")]);
    let offer = r#"{"sdp":{"type":"offer","sdp":"v=0"}}"#;
    hub.receive(1, offer);
    hub.receive(2, "OFFER_REQUEST");
    hub.receive(2, "SESSION c");
    assert_eq!(
        drain(&mut hub),
        [
            sent(2, offer),
            sent(1, "OFFER_REQUEST"),
            sent(1, "SESSION c")
        ]
    );
    // One side goes: the other is closed and unregistered, and must say HELLO again.
    hub.disconnect(1);
    assert_eq!(drain(&mut hub), [Output::Close(2, 1000, String::new())]);
    hub.connect(7);
    hub.receive(7, "HELLO b");
    assert_eq!(drain(&mut hub), [sent(7, "HELLO")]);
    hub.receive(3, "SESSION b");
    assert_eq!(drain(&mut hub), [sent(3, "SESSION_OK")]);
}

#[test]
fn rooms_list_join_leave_and_route_messages() {
    let mut hub = with_peers(&["a", "b", "c", "d"]);
    hub.receive(1, "ROOM r1");
    assert_eq!(drain(&mut hub), [sent(1, "ROOM_OK ")]);
    hub.receive(2, "ROOM r1");
    assert_eq!(
        drain(&mut hub),
        [sent(2, "ROOM_OK a"), sent(1, "ROOM_PEER_JOINED b")]
    );
    hub.receive(3, "ROOM r1");
    assert_eq!(
        drain(&mut hub),
        [
            sent(3, "ROOM_OK a b"),
            sent(1, "ROOM_PEER_JOINED c"),
            sent(2, "ROOM_PEER_JOINED c")
        ]
    );
    hub.receive(3, "ROOM_PEER_MSG a {\"sdp\": 1}");
    assert_eq!(drain(&mut hub), [sent(1, "ROOM_PEER_MSG c {\"sdp\": 1}")]);
    hub.receive(3, "ROOM_PEER_MSG zed hi");
    hub.receive(3, "ROOM_PEER_MSG d hi");
    hub.receive(3, "ROOM r2");
    hub.receive(3, "SESSION d");
    hub.receive(3, "ROOM_PEER_LIST");
    assert_eq!(
        drain(&mut hub),
        [
            sent(3, "ERROR peer 'zed' not found"),
            sent(3, "ERROR peer 'd' is not in the room"),
            sent(3, "ERROR invalid msg, already in room"),
            sent(3, "ERROR invalid msg, already in room"),
            sent(3, "ROOM_PEER_LIST a b"),
        ]
    );
    hub.disconnect(2);
    assert_eq!(
        drain(&mut hub),
        [sent(1, "ROOM_PEER_LEFT b"), sent(3, "ROOM_PEER_LEFT b")]
    );
    for bad in ["ROOM session", "ROOM", "ROOM two words"] {
        hub.receive(4, bad);
    }
    assert_eq!(
        drain(&mut hub),
        [
            sent(4, "ERROR invalid room id 'session'"),
            sent(4, "ERROR invalid room id ''"),
            sent(4, "ERROR invalid room id 'two words'"),
        ]
    );
    // A peer in a room is busy for sessions; unknown commands outside both are ignored.
    hub.receive(4, "SESSION a");
    hub.receive(4, "WHATEVER");
    assert_eq!(drain(&mut hub), [sent(4, "ERROR peer 'a' busy")]);
}
