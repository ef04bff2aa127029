use super::*;

fn inputs<'a>(
    realm: &'a str,
    nonce: &'a str,
    uri: &'a str,
    cnonce: &'a str,
    qop: Option<&'a str>,
) -> Inputs<'a> {
    Inputs {
        username: "Mufasa",
        realm,
        nonce,
        method: "GET",
        uri,
        body: b"",
        qop,
        nc: 1,
        cnonce,
        session: false,
    }
}

#[test]
fn rfc_2617_example() {
    // RFC 2617 section 3.5.
    let inputs = inputs(
        "testrealm@host.com",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "/dir/index.html",
        "0a4f113b",
        Some("auth"),
    );
    let password = Secret::Password("Circle Of Life".into());
    assert_eq!(
        compute(Hash::Md5, &password, &inputs).unwrap(),
        "6629fae49393a05397450978507c4ef1"
    );
    // The same from the HA1, as the browser sends it.
    let ha1 = Secret::Ha1(ha1("Mufasa", "testrealm@host.com", "Circle Of Life"));
    assert_eq!(
        compute(Hash::Md5, &ha1, &inputs).unwrap(),
        "6629fae49393a05397450978507c4ef1"
    );
}

#[test]
fn rfc_7616_examples() {
    // RFC 7616 section 3.9.1, MD5 and SHA-256.
    let inputs = inputs(
        "http-auth@example.org",
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "/dir/index.html",
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        Some("auth"),
    );
    let password = Secret::Password("Circle of Life".into());
    assert_eq!(
        compute(Hash::Md5, &password, &inputs).unwrap(),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
    assert_eq!(
        compute(Hash::Sha256, &password, &inputs).unwrap(),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    // An HA1 is an MD5 digest: it cannot answer SHA-256.
    let ha1 = Secret::Ha1(ha1("Mufasa", "http-auth@example.org", "Circle of Life"));
    assert_eq!(compute(Hash::Sha256, &ha1, &inputs), None);
}

fn message(text: &str) -> Message {
    Message::parse_datagram(text.replace('\n', "\r\n").as_bytes(), 65536).unwrap()
}

fn unauthorized(extra: &str) -> Message {
    message(&format!(
        "SIP/2.0 401 Unauthorized\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\nFrom: <sip:alice@127.0.0.1>;tag=1\n\
         To: <sip:alice@127.0.0.1>;tag=2\nCall-ID: c\nCSeq: 1 REGISTER\n{extra}\n\n"
    ))
}

fn alice(secret: Secret) -> DigestClient {
    DigestClient::new(Credentials {
        username: "alice".into(),
        secret,
    })
}

#[test]
fn answers_with_the_ha1_and_counts_nonces() {
    let mut client = alice(Secret::Ha1(ha1("alice", "127.0.0.1", "alicepw")));
    assert!(
        client
            .authorize("REGISTER", "sip:127.0.0.1", b"", "c1")
            .is_none()
    );
    client
        .challenge(&unauthorized(
            r#"WWW-Authenticate: Digest realm="127.0.0.1", nonce="n1", qop="auth", opaque="op""#,
        ))
        .unwrap();
    let (name, value) = client
        .authorize("REGISTER", "sip:127.0.0.1", b"", "c1")
        .unwrap();
    assert_eq!(name, Name::AUTHORIZATION);
    let expected_response = compute(
        Hash::Md5,
        &Secret::Password("alicepw".into()),
        &Inputs {
            username: "alice",
            realm: "127.0.0.1",
            nonce: "n1",
            method: "REGISTER",
            uri: "sip:127.0.0.1",
            body: b"",
            qop: Some("auth"),
            nc: 1,
            cnonce: "c1",
            session: false,
        },
    )
    .unwrap();
    assert_eq!(
        value,
        format!(
            r#"Digest username="alice", realm="127.0.0.1", nonce="n1", uri="sip:127.0.0.1", response="{expected_response}", algorithm=MD5, opaque="op", qop=auth, cnonce="c1", nc=00000001"#
        )
    );
    // The next request with the same nonce counts up, in lower-case hex.
    for _ in 0..9 {
        client
            .authorize("REGISTER", "sip:127.0.0.1", b"", "c2")
            .unwrap();
    }
    let (_, value) = client
        .authorize("REGISTER", "sip:127.0.0.1", b"", "c2")
        .unwrap();
    assert!(value.ends_with("nc=0000000b"), "{value}");
}

#[test]
fn a_second_challenge_is_a_rejection_but_stale_is_retried_once() {
    let challenge = |stale: bool| {
        unauthorized(&format!(
            r#"WWW-Authenticate: Digest realm="127.0.0.1", nonce="n", stale={stale}"#
        ))
    };
    let mut client = alice(Secret::Ha1("0".repeat(32)));
    client.challenge(&challenge(false)).unwrap();
    client.authorize("REGISTER", "sip:x", b"", "c").unwrap();
    assert_eq!(
        client.challenge(&challenge(false)),
        Err(AuthError::Rejected)
    );

    let mut client = alice(Secret::Ha1("0".repeat(32)));
    client.challenge(&challenge(false)).unwrap();
    client.challenge(&challenge(true)).unwrap();
    assert_eq!(client.challenge(&challenge(true)), Err(AuthError::Rejected));

    // After a success, the next challenge (a nonce expired between refreshes) is answered.
    let mut client = alice(Secret::Ha1("0".repeat(32)));
    client.challenge(&challenge(false)).unwrap();
    client.succeeded();
    client.challenge(&challenge(false)).unwrap();
}

#[test]
fn picks_a_challenge_it_can_answer() {
    // tests/data/sip/synth/s02: SHA-256 first, then MD5.
    let two = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/sip/synth/s02_401_multi_challenge.sip"
    ))
    .unwrap();
    let two = Message::parse_datagram(&two, 65536).unwrap();
    let mut with_ha1 = alice(Secret::Ha1("0".repeat(32)));
    with_ha1.challenge(&two).unwrap();
    let (_, value) = with_ha1
        .authorize("REGISTER", "sip:127.0.0.1", b"", "c")
        .unwrap();
    assert!(
        value.contains("algorithm=MD5") && value.contains(r#"nonce="bxSg"#),
        "{value}"
    );
    let mut with_password = alice(Secret::Password("alicepw".into()));
    with_password.challenge(&two).unwrap();
    let (_, value) = with_password
        .authorize("REGISTER", "sip:127.0.0.1", b"", "c")
        .unwrap();
    assert!(value.contains("algorithm=SHA-256"), "{value}");

    let sha_only =
        unauthorized(r#"WWW-Authenticate: Digest realm="r", nonce="n", algorithm=SHA-256"#);
    assert_eq!(
        alice(Secret::Ha1("0".repeat(32))).challenge(&sha_only),
        Err(AuthError::Unsupported("SHA-256".into()))
    );
    assert_eq!(
        alice(Secret::Ha1("0".repeat(32))).challenge(&unauthorized("")),
        Err(AuthError::NoChallenge)
    );
}

#[test]
fn proxy_challenges_are_answered_with_proxy_authorization() {
    // tests/data/sip/synth/s03: a 407 with no spaces between parameters.
    let text = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/sip/synth/s03_407_nospaces_token_realm.sip"
    ))
    .unwrap();
    let response = Message::parse_datagram(&text, 65536).unwrap();
    let mut client = alice(Secret::Ha1("0".repeat(32)));
    client.challenge(&response).unwrap();
    let (name, value) = client
        .authorize("INVITE", "sip:bob@127.0.0.1", b"", "c")
        .unwrap();
    assert_eq!(name, Name::PROXY_AUTHORIZATION);
    assert!(value.contains("qop=auth,"), "{value}");
}

#[test]
fn debug_output_hides_the_secret() {
    let credentials = Credentials {
        username: "alice".into(),
        secret: Secret::Ha1("884edfee38ed471b8a15006700139485".into()),
    };
    let debug = format!(
        "{credentials:?} {:?}",
        DigestClient::new(credentials.clone())
    );
    assert!(!debug.contains("884edfee"), "{debug}");
}
