use serde_json::{Value, json};

use sip::RegistrationEvent;

use super::*;
use crate::call::{CallUpdate, Caller, Ending};

mod session_messages;
mod session_states;

fn connection(version: Version, domains: &[&str]) -> Connection {
    let domains: Vec<String> = domains.iter().map(|d| (*d).to_owned()).collect();
    let mut connection = Connection::new(version, Arc::new(SipDomains::new(&domains)));
    let Some(Output::Send(ready)) = connection.poll_output() else {
        panic!("no ready event")
    };
    let expected = match version {
        Version::V1 => json!({"sylkrtc": "event", "event": "ready"}),
        Version::V2 => json!({"sylkrtc": "ready-event"}),
    };
    assert_eq!(serde_json::from_str::<Value>(&ready).unwrap(), expected);
    connection
}

/// Sends `request` and returns everything the connection queued in reply.
fn exchange(connection: &mut Connection, request: Value) -> (Handled, Vec<Value>) {
    let handled = connection.handle_text(&request.to_string());
    (handled, outputs(connection))
}

/// A call's news for the connection; what the client is sent of it, as JSON.
fn update(connection: &mut Connection, session: &str, update: CallUpdate) -> Vec<Value> {
    connection.handle_update(session, update);
    outputs(connection)
}

/// What the connection has to send or do, as JSON.
fn outputs(connection: &mut Connection) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(output) = connection.poll_output() {
        match output {
            Output::Send(text) => out.push(serde_json::from_str(&text).unwrap()),
            Output::Register { handle, account } => out
                .push(json!({"register": handle, "user": account.user, "domain": account.domain})),
            Output::Unregister { handle } => out.push(json!({"unregister": handle})),
            Output::StartCall(start) => out.push(
                json!({"call": start.session, "uri": start.uri.as_str(), "user": start.account.user, "headers": start.headers}),
            ),
            Output::Incoming(incoming) => out.push(
                json!({"incoming": incoming.session, "prefixes": incoming.header_prefixes}),
            ),
            Output::RefuseCall(call) => out.push(json!({"refuse": call.0})),
            Output::Call { session, command } => {
                out.push(json!({"command": session, "what": format!("{command:?}")}))
            }
            Output::Store { transaction, query } => {
                out.push(json!({"store": transaction, "query": format!("{query:?}")}))
            }
            Output::SendMessage(outgoing) => out.push(json!({"send": outgoing.message_id})),
            Output::Fork { account, event } => out.push(fork(account, event)),
        }
    }
    out
}

/// Adds alice@example.com and registers her (the connection's first registration); what that
/// queued is dropped.
pub(super) fn register_alice(connection: &mut Connection) {
    for request in [
        add("a", "alice@example.com"),
        json!({"sylkrtc": "account-register", "transaction": "r", "account": "alice@example.com"}),
    ] {
        connection.handle_text(&request.to_string());
    }
    connection.handle_registration(1, sip::RegistrationEvent::Registered { expires: 600 });
    while connection.poll_output().is_some() {}
}

/// An event for the account's other connections, as JSON.
pub(super) fn fork(account: protocol::Aor, event: protocol::AccountEvent) -> Value {
    let event = protocol::ServerMessage::Event(protocol::Event::Account {
        account: account.to_string(),
        event,
    });
    json!({"fork": serde_json::from_str::<Value>(&event.encode(Version::V2)).unwrap()})
}

fn add(transaction: &str, account: &str) -> Value {
    json!({"sylkrtc": "account-add", "transaction": transaction, "account": account,
        "password": "884edfee38ed471b8a15006700139485"})
}

#[test]
fn ping_is_acked() {
    for version in Version::PREFERENCE {
        let mut connection = connection(version, &["*"]);
        let (handled, out) = exchange(
            &mut connection,
            json!({"sylkrtc": "ping", "transaction": "p"}),
        );
        assert_eq!(handled.outcome, Outcome::Ack);
        assert_eq!(handled.name.as_deref(), Some("ping"));
        assert_eq!(out, [json!({"sylkrtc": "ack", "transaction": "p"})]);
    }
}

#[test]
fn accounts_are_added_once_and_removed() {
    let mut connection = connection(Version::V2, &["*"]);
    let (_, out) = exchange(&mut connection, add("1", "alice@example.com"));
    assert_eq!(out, [json!({"sylkrtc": "ack", "transaction": "1"})]);
    // The same account, spelt with sip: and another case of domain, is a duplicate.
    let (handled, out) = exchange(&mut connection, add("2", "sip:alice@EXAMPLE.com"));
    assert_eq!(
        out,
        [
            json!({"sylkrtc": "error", "transaction": "2", "error": "Account alice@EXAMPLE.com already added"})
        ]
    );
    assert!(matches!(
        handled.outcome,
        Outcome::Error {
            kind: ErrorKind::Refused,
            ..
        }
    ));
    exchange(&mut connection, add("3", "bob@example.com"));
    assert_eq!(connection.account_count(), 2);

    let remove =
        |t: &str, a: &str| json!({"sylkrtc": "account-remove", "transaction": t, "account": a});
    let (_, out) = exchange(&mut connection, remove("4", "alice@example.com"));
    assert_eq!(out, [json!({"sylkrtc": "ack", "transaction": "4"})]);
    let (_, out) = exchange(&mut connection, remove("5", "alice@example.com"));
    assert_eq!(
        out,
        [
            json!({"sylkrtc": "error", "transaction": "5", "error": "Unknown account specified: alice@example.com"})
        ]
    );
    assert_eq!(connection.account_count(), 1);
    // Removed accounts can be added again.
    let (_, out) = exchange(&mut connection, add("6", "alice@example.com"));
    assert_eq!(out, [json!({"sylkrtc": "ack", "transaction": "6"})]);
}

#[test]
fn domains_outside_sip_domains_are_refused() {
    let mut connection = connection(Version::V2, &["Example.com", "127.0.0.1"]);
    let (_, out) = exchange(&mut connection, add("1", "alice@example.COM"));
    assert_eq!(out[0]["sylkrtc"], "ack");
    let (_, out) = exchange(&mut connection, add("2", "alice@127.0.0.1"));
    assert_eq!(out[0]["sylkrtc"], "ack");
    let (handled, out) = exchange(&mut connection, add("3", "alice@example.org"));
    assert_eq!(
        out,
        [
            json!({"sylkrtc": "error", "transaction": "3", "error": "SIP domain not allowed: example.org"})
        ]
    );
    assert!(matches!(
        handled.outcome,
        Outcome::Error {
            kind: ErrorKind::Refused,
            ..
        }
    ));
    assert_eq!(connection.account_count(), 2);
}

#[test]
fn features_not_built_say_so() {
    let mut connection = connection(Version::V1, &["*"]);
    for (name, extra) in [
        ("videoroom-join", json!({})),
        ("videoroom-leave", json!({"session": "s1"})),
    ] {
        let mut request = json!({"sylkrtc": name, "transaction": "t"});
        request
            .as_object_mut()
            .unwrap()
            .append(&mut extra.as_object().unwrap().clone());
        let (handled, out) = exchange(&mut connection, request);
        let text = format!("not supported yet: {name}");
        assert_eq!(
            out,
            [json!({"sylkrtc": "error", "transaction": "t", "error": text})]
        );
        assert_eq!(
            handled.outcome,
            Outcome::Error {
                kind: ErrorKind::NotSupported,
                text
            }
        );
    }
}

/// The store is asked first; the ack and the event (the key, or null when none is known)
/// come with its answer, and a store that cannot answer gives the request an error.
#[test]
fn lookup_public_key_waits_for_the_store() {
    for version in Version::PREFERENCE {
        let mut connection = connection(version, &["*"]);
        let (handled, out) = exchange(
            &mut connection,
            json!({"sylkrtc": "lookup-public-key", "transaction": "t", "uri": "sip:Bob@Example.com"}),
        );
        assert_eq!(handled.outcome, Outcome::Deferred);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0]["store"], "t");
        let uri = Aor::parse("Bob@Example.com").unwrap();
        for (transaction, key) in [("t", None), ("t2", Some("KEY".to_owned()))] {
            let handled = connection.handle_store(
                transaction.to_owned(),
                Ok(StoreAnswer::PublicKey {
                    uri: uri.clone(),
                    key: key.clone(),
                }),
            );
            assert_eq!(handled.outcome, Outcome::Ack);
            assert_eq!(
                outputs(&mut connection),
                [
                    json!({"sylkrtc": "ack", "transaction": transaction}),
                    json!({"sylkrtc": "lookup-public-key-event", "uri": "Bob@Example.com", "public_key": key}),
                ]
            );
        }
        let handled = connection.handle_store(
            "t3".to_owned(),
            Err("the message store is unavailable: down".to_owned()),
        );
        assert!(
            matches!(
                handled.outcome,
                Outcome::Error {
                    kind: ErrorKind::Store,
                    ..
                }
            ),
            "{handled:?}"
        );
        assert_eq!(
            outputs(&mut connection),
            [
                json!({"sylkrtc": "error", "transaction": "t3", "error": "the message store is unavailable: down"})
            ]
        );
        let (_, out) = exchange(
            &mut connection,
            json!({"sylkrtc": "lookup-public-key", "transaction": "u"}),
        );
        assert_eq!(
            out,
            [json!({"sylkrtc": "error", "transaction": "u", "error": "missing field `uri`"})]
        );
    }
}

#[test]
fn unknown_and_invalid_requests_get_errors() {
    let mut connection = connection(Version::V2, &["*"]);
    let (handled, out) = exchange(
        &mut connection,
        json!({"sylkrtc": "frobnicate", "transaction": "t"}),
    );
    assert_eq!(
        out,
        [json!({"sylkrtc": "error", "transaction": "t", "error": "unknown request: frobnicate"})]
    );
    assert_eq!(handled.name.as_deref(), Some("frobnicate"));
    assert!(matches!(
        handled.outcome,
        Outcome::Error {
            kind: ErrorKind::UnknownRequest,
            ..
        }
    ));

    let (handled, out) = exchange(
        &mut connection,
        json!({"sylkrtc": "account-add", "transaction": "u"}),
    );
    assert_eq!(
        out,
        [json!({"sylkrtc": "error", "transaction": "u", "error": "missing field `account`"})]
    );
    assert!(matches!(
        handled.outcome,
        Outcome::Error {
            kind: ErrorKind::Invalid,
            ..
        }
    ));
}

#[test]
fn messages_without_a_transaction_are_not_answered() {
    let mut connection = connection(Version::V2, &["*"]);
    for text in [
        "{oops",
        "[1]",
        r#"{"sylkrtc":"ping"}"#,
        r#"{"sylkrtc":"ping","transaction":7}"#,
    ] {
        let handled = connection.handle_text(text);
        assert!(
            matches!(
                handled.outcome,
                Outcome::Unanswered {
                    kind: ErrorKind::Malformed,
                    ..
                }
            ),
            "{text}: {handled:?}"
        );
        assert!(connection.poll_output().is_none());
    }
}

#[test]
fn binary_frames_are_refused() {
    let mut connection = connection(Version::V2, &["*"]);
    let handled = connection.handle_binary(br#"{"sylkrtc":"ping","transaction":"b1"}"#);
    assert!(matches!(
        handled.outcome,
        Outcome::Error {
            kind: ErrorKind::BinaryFrame,
            ..
        }
    ));
    let Some(Output::Send(reply)) = connection.poll_output() else {
        panic!("no reply")
    };
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["transaction"], "b1");
    assert_eq!(
        reply["error"],
        "binary frames are not supported: send each request as a text frame"
    );
    let handled = connection.handle_binary(&[0xff, 0x00, 0x13]);
    assert!(matches!(
        handled.outcome,
        Outcome::Unanswered {
            kind: ErrorKind::BinaryFrame,
            ..
        }
    ));
    assert!(connection.poll_output().is_none());
}

#[test]
fn redaction_masks_passwords_however_spelt() {
    let ha1 = "884edfee38ed471b8a15006700139485";
    let plain = add("1", "alice@example.com").to_string();
    let escaped = plain.replace("\"password\"", "\"pass\\u0077ord\"");
    assert_ne!(plain, escaped);
    for text in [plain.as_str(), escaped.as_str()] {
        let shown = redact(text);
        assert!(!shown.contains(ha1), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
    let broken = format!(r#"{{"password":"{ha1}""#);
    assert!(!redact(&broken).contains(ha1));
    let ping = r#"{"sylkrtc":"ping","transaction":"p"}"#;
    assert_eq!(redact(ping), ping);
}

fn drain(connection: &mut Connection) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(output) = connection.poll_output() {
        if let Output::Send(text) = output {
            out.push(serde_json::from_str(&text).unwrap());
        }
    }
    out
}

#[test]
fn registration_is_started_and_its_states_reported_once_each() {
    let mut connection = connection(Version::V2, &["*"]);
    exchange(&mut connection, add("1", "alice@example.com:5080"));
    let register = json!({"sylkrtc": "account-register", "transaction": "2", "account": "alice@example.com:5080"});
    let (_, out) = exchange(&mut connection, register.clone());
    // The ack comes first; the SIP work is handed to the driver.
    assert_eq!(
        out,
        [
            json!({"sylkrtc": "ack", "transaction": "2"}),
            json!({"register": 1, "user": "alice", "domain": "example.com:5080"}),
        ]
    );
    // Registering again while it runs changes nothing.
    let (_, out) = exchange(&mut connection, register.clone());
    assert_eq!(out, [json!({"sylkrtc": "ack", "transaction": "2"})]);

    for event in [
        RegistrationEvent::Registering,
        RegistrationEvent::Registering,
        RegistrationEvent::Registered { expires: 600 },
        RegistrationEvent::Registered { expires: 300 },
    ] {
        connection.handle_registration(1, event);
    }
    let state = |state: &str| json!({"sylkrtc": "account-event", "account": "alice@example.com:5080", "event": "registration-state", "state": state});
    assert_eq!(
        drain(&mut connection),
        [state("registering"), state("registered")]
    );
    connection.handle_registration(
        1,
        RegistrationEvent::Failed {
            reason: "408 Request Timeout".into(),
            retry_in: None,
        },
    );
    let mut failed = state("failed");
    failed["reason"] = json!("408 Request Timeout");
    assert_eq!(drain(&mut connection), [failed]);
    // Events of registrations we no longer hold are dropped.
    connection.handle_registration(99, RegistrationEvent::Registering);
    assert!(drain(&mut connection).is_empty());

    // A failed registration is started afresh by account-register.
    let (_, out) = exchange(&mut connection, register);
    assert_eq!(out[1], json!({"unregister": 1}));
    assert_eq!(out[2]["register"], 2);
    assert_eq!(connection.registrations().collect::<Vec<_>>(), [2]);

    // Unregister: ack, then the driver removes the binding; events of it are not relayed.
    let (_, out) = exchange(
        &mut connection,
        json!({"sylkrtc": "account-unregister", "transaction": "3", "account": "alice@example.com:5080"}),
    );
    assert_eq!(
        out,
        [
            json!({"sylkrtc": "ack", "transaction": "3"}),
            json!({"unregister": 2})
        ]
    );
    connection.handle_registration(2, RegistrationEvent::Registered { expires: 60 });
    assert!(drain(&mut connection).is_empty());
    assert_eq!(connection.registrations().count(), 0);
}

#[test]
fn removing_an_account_removes_its_registration() {
    let mut connection = connection(Version::V1, &["*"]);
    exchange(&mut connection, add("1", "alice@example.com"));
    exchange(
        &mut connection,
        json!({"sylkrtc": "account-register", "transaction": "2", "account": "alice@example.com"}),
    );
    connection.handle_registration(1, RegistrationEvent::Registered { expires: 60 });
    // sylkRTC-1 encoding of the event.
    assert_eq!(
        drain(&mut connection),
        [
            json!({"sylkrtc": "account_event", "account": "alice@example.com", "event": "registration_state",
            "data": {"state": "registered"}})
        ]
    );
    let (_, out) = exchange(
        &mut connection,
        json!({"sylkrtc": "account-remove", "transaction": "3", "account": "alice@example.com"}),
    );
    assert_eq!(
        out,
        [
            json!({"sylkrtc": "ack", "transaction": "3"}),
            json!({"unregister": 1})
        ]
    );
    let (_, out) = exchange(
        &mut connection,
        json!({"sylkrtc": "account-register", "transaction": "4", "account": "alice@example.com"}),
    );
    assert_eq!(
        out,
        [
            json!({"sylkrtc": "error", "transaction": "4", "error": "Unknown account specified: alice@example.com"})
        ]
    );
}

fn request(name: &str, transaction: &str, fields: Value) -> Value {
    let mut request = json!({"sylkrtc": name, "transaction": transaction});
    if let (Some(request), Some(fields)) = (request.as_object_mut(), fields.as_object()) {
        request.extend(fields.clone());
    }
    request
}

/// A connection whose account alice@example.com has placed call `s1` to bob@example.com.
fn calling(version: Version) -> Connection {
    let mut connection = connection(version, &["*"]);
    exchange(&mut connection, add("1", "alice@example.com"));
    let create = json!({"account": "alice@example.com", "session": "s1", "uri": "bob@example.com",
        "sdp": "v=0"});
    exchange(&mut connection, request("session-create", "2", create));
    connection
}

#[test]
fn outgoing_sessions_are_checked_then_handed_to_their_task() {
    let mut connection = connection(Version::V2, &["*"]);
    exchange(&mut connection, add("1", "alice@example.com"));
    let create = json!({"account": "alice@example.com", "session": "s1", "uri": "sip:bob@example.com",
        "sdp": "v=0", "headers": [{"name": "X-Test", "value": "1"}]});
    let (_, out) = exchange(
        &mut connection,
        request("session-create", "2", create.clone()),
    );
    // The ack comes before the call starts.
    assert_eq!(
        out,
        [
            json!({"sylkrtc": "ack", "transaction": "2"}),
            json!({"call": "s1", "uri": "sip:bob@example.com", "user": "alice", "headers": [["X-Test", "1"]]}),
        ]
    );
    // A trickle right after is accepted (an ICE-lite gateway needs no candidates), the end
    // marker too.
    let trickle = json!({"session": "s1", "candidates": [{"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}]});
    let (_, out) = exchange(&mut connection, request("session-trickle", "3", trickle));
    assert_eq!(out, [json!({"sylkrtc": "ack", "transaction": "3"})]);
    let (_, out) = exchange(
        &mut connection,
        request(
            "session-trickle",
            "4",
            json!({"session": "s1", "candidates": []}),
        ),
    );
    assert_eq!(out, [json!({"sylkrtc": "ack", "transaction": "4"})]);
    // The same id again, an unknown account, an answer to an outgoing call, DTMF too early.
    let (_, out) = exchange(&mut connection, request("session-create", "5", create));
    assert_eq!(out[0]["error"], "Session ID s1 already in use");
    let unknown = json!({"account": "carol@example.com", "session": "s2", "uri": "bob@example.com", "sdp": "v=0"});
    let (_, out) = exchange(&mut connection, request("session-create", "6", unknown));
    assert_eq!(
        out[0]["error"],
        "Unknown account specified: carol@example.com"
    );
    let (_, out) = exchange(
        &mut connection,
        request(
            "session-answer",
            "7",
            json!({"session": "s1", "sdp": "v=0"}),
        ),
    );
    assert_eq!(
        out[0]["error"],
        "Session s1 is not an incoming call waiting for an answer"
    );
    let dtmf = json!({"session": "s1", "digit": "12#"});
    let (_, out) = exchange(
        &mut connection,
        request("session-dtmf-info", "8", dtmf.clone()),
    );
    assert_eq!(
        out[0]["error"],
        "Session s1 has neither an answer nor early media yet: no DTMF"
    );
    update(
        &mut connection,
        "s1",
        CallUpdate::Accepted {
            sdp: None,
            call_id: None,
        },
    );
    let (_, out) = exchange(&mut connection, request("session-dtmf-info", "9", dtmf));
    assert_eq!(out[1]["what"], "Dtmf { digits: \"12#\", duration: 100 }");
    let (_, out) = exchange(
        &mut connection,
        request(
            "session-dtmf-info",
            "10",
            json!({"session": "s1", "digit": "x"}),
        ),
    );
    assert_eq!(out[0]["sylkrtc"], "error", "{out:?}");
    let (_, out) = exchange(
        &mut connection,
        request("session-terminate", "11", json!({"session": "s1"})),
    );
    assert_eq!(out[1], json!({"command": "s1", "what": "Hangup"}));
    // Once the task reports the end, the id is unknown (and free again).
    update(
        &mut connection,
        "s1",
        CallUpdate::Terminated(Ending::new("local hangup")),
    );
    let (_, out) = exchange(
        &mut connection,
        request(
            "session-trickle",
            "12",
            json!({"session": "s1", "candidates": []}),
        ),
    );
    assert_eq!(out[0]["error"], "Unknown session: s1");
}

#[test]
fn incoming_calls_become_sessions_of_their_account() {
    let mut connection = connection(Version::V2, &["*"]);
    let mut add = add("1", "alice@example.com");
    add["incoming_header_prefixes"] = json!(["X-"]);
    exchange(&mut connection, add);
    let (_, out) = exchange(
        &mut connection,
        json!({"sylkrtc": "account-register", "transaction": "2", "account": "alice@example.com"}),
    );
    let handle = out[1]["register"].as_u64().unwrap();
    let invite = || sip::driver::IncomingCall {
        from_uri: "sip:bob@example.com".into(),
        display_name: None,
        call_id: "c".into(),
        sdp: Default::default(),
        headers: vec![],
    };
    connection.handle_incoming(handle, sip::driver::CallHandle(7), invite());
    let Some(Output::Incoming(incoming)) = connection.poll_output() else {
        panic!("an incoming call");
    };
    assert_eq!(incoming.header_prefixes, ["X-"]);
    let session = incoming.session.clone();
    // The call's task announces it: the client hears of it for its account.
    let caller = Caller {
        uri: "bob@example.com".into(),
        display_name: Some("Bob".into()),
    };
    let out = update(
        &mut connection,
        &session,
        CallUpdate::Incoming {
            caller: caller.clone(),
            sdp: "v=0 offer".into(),
            call_id: Some("c".into()),
            headers: Default::default(),
        },
    );
    assert_eq!(out[0]["sylkrtc"], "account-event", "{out:?}");
    assert_eq!(out[0]["account"], "alice@example.com");
    assert_eq!(out[0]["event"], "incoming-session");
    assert_eq!(out[0]["originator"]["uri"], "bob@example.com", "{out:?}");
    assert_eq!(out[0]["originator"]["display_name"], "Bob");
    let answer = json!({"session": session, "sdp": "v=0"});
    let (_, out) = exchange(
        &mut connection,
        request("session-answer", "3", answer.clone()),
    );
    assert_eq!(out[0], json!({"sylkrtc": "ack", "transaction": "3"}));
    assert!(out[1]["what"].as_str().unwrap().starts_with("Answer"));
    // Answered once only.
    let (_, out) = exchange(&mut connection, request("session-answer", "4", answer));
    assert!(out[0]["error"].as_str().is_some());
    // A call for a registration that is gone is refused.
    connection.handle_incoming(handle + 100, sip::driver::CallHandle(8), invite());
    assert!(matches!(
        connection.poll_output(),
        Some(Output::RefuseCall(_))
    ));
}

/// Removing an account ends its calls (after the ack), and only its calls.
#[test]
fn account_remove_ends_the_accounts_calls() {
    let mut connection = connection(Version::V2, &["*"]);
    exchange(&mut connection, add("1", "alice@example.com"));
    exchange(&mut connection, add("2", "bob@example.com"));
    for (transaction, account, session) in [
        ("3", "alice@example.com", "a1"),
        ("4", "alice@example.com", "a2"),
        ("5", "bob@example.com", "b1"),
    ] {
        let create = json!({"account": account, "session": session, "uri": "carol@example.com",
            "sdp": "v=0"});
        exchange(
            &mut connection,
            request("session-create", transaction, create),
        );
    }
    let (_, out) = exchange(
        &mut connection,
        json!({"sylkrtc": "account-remove", "transaction": "6", "account": "alice@example.com"}),
    );
    assert_eq!(
        out,
        [
            json!({"sylkrtc": "ack", "transaction": "6"}),
            json!({"command": "a1", "what": "Hangup"}),
            json!({"command": "a2", "what": "Hangup"}),
        ]
    );
}

/// An incoming call its task refuses before announcing it (no media port, an offer it cannot
/// take) ends without a word to the client, and its id is forgotten; a call given up while it
/// rang is reported missed, then terminated.
#[test]
fn unannounced_calls_end_silently_and_missed_ones_are_reported() {
    let mut connection = connection(Version::V2, &["*"]);
    exchange(&mut connection, add("1", "alice@example.com"));
    let (_, out) = exchange(
        &mut connection,
        json!({"sylkrtc": "account-register", "transaction": "2", "account": "alice@example.com"}),
    );
    let handle = out[1]["register"].as_u64().unwrap();
    let mut ring = |call: u64| {
        connection.handle_incoming(
            handle,
            sip::driver::CallHandle(call),
            sip::driver::IncomingCall {
                from_uri: "sip:bob@example.com".into(),
                display_name: None,
                call_id: format!("c{call}"),
                sdp: Default::default(),
                headers: vec![],
            },
        );
        let Some(Output::Incoming(incoming)) = connection.poll_output() else {
            panic!("an incoming call");
        };
        incoming.session
    };
    let refused = ring(1);
    let rang = ring(2);
    let out = update(
        &mut connection,
        &refused,
        CallUpdate::Terminated(Ending::new("503 Service Unavailable (no port)")),
    );
    assert!(out.is_empty(), "{out:?}");
    let answer = json!({"session": refused, "sdp": "v=0"});
    let (_, out) = exchange(&mut connection, request("session-answer", "3", answer));
    assert_eq!(out[0]["sylkrtc"], "error", "the id is gone: {out:?}");

    let caller = Caller {
        uri: "bob@example.com".into(),
        display_name: None,
    };
    update(
        &mut connection,
        &rang,
        CallUpdate::Incoming {
            caller: caller.clone(),
            sdp: "v=0".into(),
            call_id: None,
            headers: Default::default(),
        },
    );
    let mut out = update(&mut connection, &rang, CallUpdate::Missed { caller });
    out.extend(update(
        &mut connection,
        &rang,
        CallUpdate::Terminated(Ending::new("487 Request Terminated")),
    ));
    assert_eq!(out[0]["event"], "missed-session", "{out:?}");
    assert_eq!(out[1]["state"], "terminated", "{out:?}");
    assert_eq!(out[1]["reason"], "487 Request Terminated");
}
