use serde_json::{Value, json};

use super::*;

/// Parses `input`, checks the parsed request, encodes it, and checks that the encoding is
/// `expected` and parses back to the same request.
fn round_trip(input: Value, expected: Value) -> Request {
    let request = Request::parse(&input.to_string()).unwrap();
    assert_eq!(request.to_json(), expected);
    let again = Request::parse(&request.encode()).unwrap();
    assert_eq!(again, request);
    request
}

fn parse_err(input: Value) -> RequestError {
    Request::parse(&input.to_string()).unwrap_err()
}

#[test]
fn seed_examples_round_trip() {
    // The sylkRTC-1 requests of the 2015 wiki (seed 004), quotes made JSON.
    let add = json!({"account": "saghul@sip2sip.info", "password": "884edfee38ed471b8a15006700139485",
        "sylkrtc": "account-add", "transaction": "04013f0f-25bb-4082-a02f-44399df492ff"});
    let request = round_trip(add.clone(), add);
    let RequestBody::AccountAdd(body) = &request.body else {
        panic!("not account-add")
    };
    assert_eq!(
        body.secret,
        Secret::Ha1("884edfee38ed471b8a15006700139485".into())
    );

    for (name, transaction) in [
        ("account-remove", "bd3ee25d-5f16-4f76-b34e-8ac3fe0a4ac0"),
        ("account-register", "bcb87b0f-0cc7-42a9-897e-81f035910670"),
        ("account-unregister", "1c81eea0-b247-4ced-b3b3-3ced1eba810e"),
    ] {
        let input =
            json!({"account": "saghul@sip2sip.info", "sylkrtc": name, "transaction": transaction});
        let request = round_trip(input.clone(), input);
        assert_eq!(request.body.name(), name);
    }

    let answer = json!({"sdp": "v=0\r\n", "session": "38dffdf81acb44b2b11b61f4488c4ca9",
        "sylkrtc": "session-answer", "transaction": "179a855f-75a0-45a4-b5ef-0be8eb8389d1"});
    round_trip(answer.clone(), answer);

    let create = json!({"account": "saghul@sip2sip.info", "sdp": "v=0\r\n",
        "session": "20c40185-1ef2-419e-b91a-70415778acb4", "sylkrtc": "session-create",
        "transaction": "7afcb91a-8a64-4664-9448-8cb760492e1f", "uri": "3333@sip2sip.info"});
    round_trip(create.clone(), create);

    let trickle = json!({"candidates": [{"candidate": "candidate:0 1 UDP 2130379007 192.168.99.44 59051 typ host",
        "sdpMLineIndex": 0, "sdpMid": ""}], "session": "20c40185-1ef2-419e-b91a-70415778acb4",
        "sylkrtc": "session-trickle", "transaction": "ecf777d8-7d26-4f16-bace-18f6fae5d8f8"});
    let request = round_trip(trickle.clone(), trickle);
    let RequestBody::SessionTrickle(body) = &request.body else {
        panic!("not trickle")
    };
    assert_eq!(body.candidates[0].sdp_mline_index, Some(0));
    assert_eq!(body.candidates[0].sdp_mid.as_deref(), Some(""));

    let terminate = json!({"session": "38dffdf81acb44b2b11b61f4488c4ca9", "sylkrtc": "session-terminate",
        "transaction": "4d169de8-fe55-41f8-9a5c-c5f66c0a23c7"});
    round_trip(terminate.clone(), terminate);
}

#[test]
fn spec_examples_round_trip() {
    // Section 1's example exchange (sylkRTC-2).
    let add = json!({"sylkrtc": "account-add", "transaction": "t1", "account": "alice@example.com",
        "password": "0123456789abcdef0123456789ABCDEF", "display_name": "Alice",
        "user_agent": "SylkRTC (Chrome 156 on Linux)"});
    let mut expected = add.clone();
    // The HA1 is kept in lower case: hex digests are compared as text later.
    expected["password"] = json!("0123456789abcdef0123456789abcdef");
    round_trip(add, expected);

    let register =
        json!({"sylkrtc": "account-register", "transaction": "t2", "account": "alice@example.com"});
    round_trip(register.clone(), register);

    let ping = json!({"sylkrtc": "ping", "transaction": "p1"});
    assert_eq!(round_trip(ping.clone(), ping).body, RequestBody::Ping);
}

#[test]
fn every_modelled_request_round_trips() {
    let inputs = [
        json!({"sylkrtc": "account-add", "transaction": "a", "account": "bob@example.org", "password": "secret",
            "ha1": false, "incoming_header_prefixes": ["X-Foo", "X-Bar"]}),
        json!({"sylkrtc": "session-create", "transaction": "b", "account": "bob@example.org", "session": "s1",
            "uri": "alice@example.com", "sdp": "v=0\r\n", "headers": [{"name": "X-Call-Tag", "value": "42"}]}),
        json!({"sylkrtc": "session-answer", "transaction": "c", "session": "s2", "sdp": "v=0\r\n",
            "headers": [{"name": "X-A", "value": "b"}]}),
        json!({"sylkrtc": "session-trickle", "transaction": "d", "session": "s1", "candidates": []}),
        json!({"sylkrtc": "session-update", "transaction": "e", "session": "s1", "sdp": "v=0\r\n"}),
        json!({"sylkrtc": "session-dtmf-info", "transaction": "f", "session": "s1", "digit": "12#", "duration": 160}),
        json!({"sylkrtc": "session-dtmf-info", "transaction": "g", "session": "s1", "digit": "*"}),
        json!({"sylkrtc": "session-message", "transaction": "h", "session": "s1", "message_id": "9a1",
            "content": "hi", "content_type": "text/plain", "timestamp": "2026-12-04T10:00:00.000Z"}),
        json!({"sylkrtc": "account-sync-conversations", "transaction": "i", "account": "bob@example.org",
            "message_id": "8f2c", "since": "2026-12-04T10:00:00Z", "limit": 100}),
        // As sylkrtc.js's sendDispositionNotification sends it.
        json!({"sylkrtc": "account-disposition-notification", "transaction": "j",
            "account": "bob@example.org", "uri": "alice@example.com", "message_id": "8f2c",
            "state": "delivered", "timestamp": "2026-12-04T10:00:00.000Z"}),
        // As sylkrtc.js's markConversationRead, removeMessage and removeConversation send them.
        json!({"sylkrtc": "account-mark-conversation-read", "transaction": "k",
            "account": "bob@example.org", "contact": "alice@example.com"}),
        json!({"sylkrtc": "account-remove-message", "transaction": "l",
            "account": "bob@example.org", "message_id": "8f2c", "contact": "alice@example.com"}),
        json!({"sylkrtc": "account-remove-conversation", "transaction": "m",
            "account": "bob@example.org", "contact": "alice@example.com"}),
        // As sylkrtc.js's setDeviceToken sends it.
        json!({"sylkrtc": "account-devicetoken", "transaction": "q", "account": "bob@example.org",
            "token": "f3:Ab-9_x", "platform": "android", "device": "d1", "silent": false,
            "app": "com.agprojects.sylk"}),
        json!({"sylkrtc": "account-devicetoken", "transaction": "r", "account": "bob@example.org",
            "token": null}),
        // As sylkrtc.js's addressbook sends them.
        json!({"sylkrtc": "account-fetch-addressbook", "transaction": "n",
            "account": "bob@example.org"}),
        json!({"sylkrtc": "account-update-addressbook", "transaction": "o",
            "account": "bob@example.org", "action": "add", "type": "contact",
            "data": {"id": "c1", "name": "Alice", "uris": [{"id": "u1", "uri": "alice@example.com"}],
                "dialog": {"policy": "default", "subscribe": false},
                "presence": {"policy": "default", "subscribe": true}}}),
        json!({"sylkrtc": "account-update-addressbook", "transaction": "p",
            "account": "bob@example.org", "action": "add", "type": "groupMember",
            "data": {"groupId": "g1", "contactId": "c1"}}),
        // As sylkrtc.js's sendMessage sends it.
        json!({"sylkrtc": "account-message", "transaction": "h", "account": "bob@example.org",
            "uri": "alice@example.com", "message_id": "8f2c", "content": "hi ✓", "content_type": "text/plain",
            "timestamp": "2026-12-04T10:00:00.000Z"}),
    ];
    for input in inputs {
        round_trip(input.clone(), input);
    }
}

/// A message needs its id and type; the timestamp may be left out.
#[test]
fn account_message_fields_are_checked() {
    let message = json!({"sylkrtc": "account-message", "transaction": "t", "account": "a@b.c",
        "uri": "d@e.f", "message_id": "m", "content": "", "content_type": "text/plain"});
    let request = round_trip(message.clone(), message.clone());
    let RequestBody::AccountMessage(body) = request.body else {
        panic!("not account-message")
    };
    assert_eq!(body.timestamp, None);
    for (field, value) in [
        ("message_id", json!("")),
        ("content_type", json!("")),
        ("uri", json!("nobody")),
    ] {
        let mut bad = message.clone();
        bad[field] = value;
        let error = parse_err(bad);
        assert_eq!(error.transaction.as_deref(), Some("t"));
        assert!(error.to_string().contains(field), "{error}");
    }
}

fn secret_of(request: serde_json::Value) -> Secret {
    let request = Request::parse(&request.to_string()).unwrap();
    let RequestBody::AccountAdd(add) = request.body else {
        panic!()
    };
    add.secret
}

#[test]
fn plain_passwords_with_or_without_ha1_false() {
    let plain = |extra: serde_json::Value| {
        let mut request = json!({"sylkrtc": "account-add", "transaction": "a",
            "account": "bob@example.org", "password": "pw"});
        if let serde_json::Value::Object(extra) = extra {
            request.as_object_mut().unwrap().extend(extra);
        }
        secret_of(request)
    };
    // sylkrtc.js with `ha1: false` sends the plain password and no `ha1` field at all.
    assert_eq!(plain(json!({})), Secret::Password("pw".into()));
    assert_eq!(plain(json!({"ha1": false})), Secret::Password("pw".into()));
    // 32 hex digits are an HA1 unless the client says otherwise.
    let hex = "0123456789abcdef0123456789ABCDEF";
    assert_eq!(
        secret_of(json!({"sylkrtc": "account-add", "transaction": "a",
            "account": "bob@example.org", "password": hex})),
        Secret::Ha1(hex.to_ascii_lowercase())
    );
    assert_eq!(
        secret_of(json!({"sylkrtc": "account-add", "transaction": "a",
            "account": "bob@example.org", "password": hex, "ha1": false})),
        Secret::Password(hex.into())
    );
    let error = parse_err(
        json!({"sylkrtc": "account-add", "transaction": "a", "account": "bob@example.org",
        "password": "pw", "ha1": true}),
    );
    assert_eq!(
        error.to_string(),
        "invalid field `password`: `ha1: true` needs the HA1 as 32 hex digits"
    );
    let error = parse_err(
        json!({"sylkrtc": "account-add", "transaction": "a", "account": "bob@example.org",
        "password": "", "ha1": false}),
    );
    assert_eq!(
        error.to_string(),
        "invalid field `password`: must be 1 to 9999 characters"
    );
    let error = parse_err(
        json!({"sylkrtc": "account-add", "transaction": "a", "account": "bob@example.org",
        "password": "x".repeat(10_000), "ha1": false}),
    );
    assert_eq!(
        error.to_string(),
        "invalid field `password`: must be 1 to 9999 characters"
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let ha1 = "884edfee38ed471b8a15006700139485";
    let request = Request::parse(
        &json!({"sylkrtc": "account-add", "transaction": "t",
        "account": "a@b.c", "password": ha1})
        .to_string(),
    )
    .unwrap();
    let debug = format!("{request:?} {request:#?}");
    assert!(!debug.contains(ha1), "{debug}");
    assert!(debug.contains("<redacted>"));
    let plain = format!("{:?}", Secret::Password("hunter2".into()));
    assert!(!plain.contains("hunter2"));
}

#[test]
fn sip_prefix_is_stripped() {
    let input = json!({"sylkrtc": "account-remove", "transaction": "t", "account": "sip:alice@example.com"});
    let expected =
        json!({"sylkrtc": "account-remove", "transaction": "t", "account": "alice@example.com"});
    round_trip(input, expected);
}

#[test]
fn unknown_fields_are_ignored() {
    let input = json!({"sylkrtc": "session-trickle", "transaction": "t", "session": "s", "extra": {"x": 1},
        "candidates": [{"candidate": "c", "sdpMid": "0", "usernameFragment": "abcd"}]});
    let expected = json!({"sylkrtc": "session-trickle", "transaction": "t", "session": "s",
        "candidates": [{"candidate": "c", "sdpMid": "0"}]});
    round_trip(input, expected);
}

#[test]
fn not_modelled_requests_are_known() {
    for name in NOT_MODELLED {
        assert!(REQUEST_NAMES.contains(name), "{name} not in REQUEST_NAMES");
        let request =
            Request::parse(&json!({"sylkrtc": name, "transaction": "t"}).to_string()).unwrap();
        assert_eq!(request.body, RequestBody::NotModelled(name));
        assert_eq!(request.body.name(), *name);
    }
    // Every listed name parses into something other than "unknown request".
    for name in REQUEST_NAMES {
        let error = Request::parse(&json!({"sylkrtc": name, "transaction": "t"}).to_string()).err();
        assert!(
            !matches!(
                error,
                Some(RequestError {
                    error: Error::UnknownRequest(_),
                    ..
                })
            ),
            "{name}"
        );
    }
}

#[test]
fn errors_keep_the_transaction_and_name_the_field() {
    let error = parse_err(json!({"sylkrtc": "bogus-request", "transaction": "t9"}));
    assert_eq!(error.to_string(), "unknown request: bogus-request");
    assert_eq!(error.transaction.as_deref(), Some("t9"));
    assert_eq!(error.name.as_deref(), Some("bogus-request"));

    let error = parse_err(json!({"sylkrtc": "account-add", "transaction": "t1", "password": "x"}));
    assert_eq!(error.to_string(), "missing field `account`");
    assert_eq!(error.transaction.as_deref(), Some("t1"));

    let error = parse_err(json!({"sylkrtc": "account-remove", "transaction": "t1", "account": 7}));
    assert_eq!(
        error.to_string(),
        "invalid field `account`: expected a string"
    );

    let error =
        parse_err(json!({"sylkrtc": "account-remove", "transaction": "t1", "account": "nobody"}));
    assert_eq!(
        error.to_string(),
        "invalid field `account`: expected a SIP address of the form user@domain: \"nobody\""
    );

    let error = parse_err(json!({"sylkrtc": "ping"}));
    assert_eq!(error.to_string(), "missing field `transaction`");
    assert_eq!(error.transaction, None);
    assert_eq!(error.name.as_deref(), Some("ping"));

    let error = parse_err(json!({"transaction": "t3"}));
    assert_eq!(error.to_string(), "missing field `sylkrtc`");
    assert_eq!(error.transaction.as_deref(), Some("t3"));

    let error = parse_err(json!({"sylkrtc": "ping", "transaction": 5}));
    assert_eq!(
        error.to_string(),
        "invalid field `transaction`: expected a string"
    );
    assert_eq!(error.transaction, None);

    let error = Request::parse("{not json").unwrap_err();
    assert!(error.to_string().starts_with("malformed JSON"), "{error}");
    assert_eq!(
        Request::parse("[]").unwrap_err().to_string(),
        "message is not a JSON object"
    );

    let error = parse_err(
        json!({"sylkrtc": "session-trickle", "transaction": "t", "session": "s",
        "candidates": [{"candidate": "c", "sdpMid": "0"}, {"sdpMid": "0"}]}),
    );
    assert_eq!(error.to_string(), "missing field `candidates[1].candidate`");
    let error = parse_err(
        json!({"sylkrtc": "session-trickle", "transaction": "t", "session": "s",
        "candidates": [{"candidate": "c"}]}),
    );
    assert_eq!(error.to_string(), "missing field `candidates[0].sdpMid`");
    let error =
        parse_err(json!({"sylkrtc": "session-trickle", "transaction": "t", "session": "s"}));
    assert_eq!(error.to_string(), "missing field `candidates`");
    let error =
        parse_err(json!({"sylkrtc": "session-terminate", "transaction": "t", "session": ""}));
    assert_eq!(
        error.to_string(),
        "invalid field `session`: must not be empty"
    );
}

#[test]
fn headers_cannot_inject_sip() {
    let base = |headers: Value| json!({"sylkrtc": "session-answer", "transaction": "t", "session": "s", "sdp": "v=0", "headers": headers});
    let error = parse_err(base(json!([{"name": "X-A", "value": "1\r\nBye: now"}])));
    assert_eq!(
        error.to_string(),
        "invalid field `headers[0].value`: must be a single line"
    );
    let error = parse_err(base(json!([{"name": "X A", "value": "1"}])));
    assert_eq!(
        error.to_string(),
        "invalid field `headers[0].name`: not a valid SIP header name"
    );
    let error = parse_err(base(json!([{"name": "X-A"}])));
    assert_eq!(error.to_string(), "missing field `headers[0].value`");
    let error = parse_err(base(json!(["X-A: 1"])));
    assert_eq!(
        error.to_string(),
        "invalid field `headers[0]`: expected an object with `name` and `value`"
    );
    let error = parse_err(
        json!({"sylkrtc": "account-add", "transaction": "t", "account": "a@b.c",
        "password": "p", "ha1": false, "user_agent": "x\ny"}),
    );
    assert_eq!(
        error.to_string(),
        "invalid field `user_agent`: must be a single line"
    );
}

#[test]
fn dtmf_is_validated() {
    let base = |digit: Value, duration: Value| json!({"sylkrtc": "session-dtmf-info", "transaction": "t", "session": "s", "digit": digit, "duration": duration});
    let error = parse_err(base(json!("12x"), Value::Null));
    assert_eq!(
        error.to_string(),
        "invalid field `digit`: DTMF tones are 0-9, *, # and A-D"
    );
    let error = parse_err(base(json!(""), Value::Null));
    assert_eq!(
        error.to_string(),
        "invalid field `digit`: must not be empty"
    );
    let error = parse_err(base(json!("1"), json!(0)));
    assert_eq!(
        error.to_string(),
        "invalid field `duration`: must be 1 to 10000 milliseconds"
    );
    let error = parse_err(base(json!("1"), json!("100")));
    assert_eq!(
        error.to_string(),
        "invalid field `duration`: expected a non-negative integer"
    );
    let request = Request::parse(&base(json!("ab"), json!(100)).to_string()).unwrap();
    let RequestBody::SessionDtmfInfo(dtmf) = request.body else {
        panic!()
    };
    assert_eq!(dtmf.digit, "AB");
}
