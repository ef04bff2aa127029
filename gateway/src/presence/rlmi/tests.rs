use super::*;

/// One of carol's two instances' presence documents, as a part with Content-ID `<cid@...>`.
fn carol(cid: &str, basic: &str) -> String {
    format!(
        "--b0und;ary\r\nContent-ID: <{cid}@rls.example.com>\r\n\
         Content-Type: application/pidf+xml\r\n\r\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:carol@example.com\">\
         <tuple id=\"{cid}\"><status><basic>{basic}</basic></status></tuple></presence>\r\n"
    )
}

/// A list NOTIFY body as list servers write them: the RLMI root first, then one PIDF part per
/// active instance.
fn notify_body() -> (String, Vec<u8>) {
    let content_type = "multipart/related;type=\"application/rlmi+xml\";\
         start=\"<root1@rls.example.com>\";boundary=\"b0und;ary\""
        .to_owned();
    let body = format!(
        "\r\n--b0und;ary\r\n\
        Content-Transfer-Encoding: binary\r\n\
        Content-ID: <root1@rls.example.com>\r\n\
        Content-Type: application/rlmi+xml;charset=\"UTF-8\"\r\n\
        \r\n\
        <?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
        <list xmlns=\"urn:ietf:params:xml:ns:rlmi\" uri=\"sip:alice-list@example.com\" \
        version=\"0\" fullState=\"true\">\r\n\
        \x20 <name>Friends</name>\r\n\
        \x20 <resource uri=\"sip:bob@example.com\"><name>Bob</name>\r\n\
        \x20   <instance id=\"i1\" state=\"active\" cid=\"bob1@rls.example.com\"/>\r\n\
        \x20 </resource>\r\n\
        \x20 <resource uri=\"sip:carol@example.com\">\r\n\
        \x20   <instance id=\"i2\" state=\"active\" cid=\"carol1@rls.example.com\"/>\r\n\
        \x20   <instance id=\"i3\" state=\"active\" cid=\"carol2@rls.example.com\"/>\r\n\
        \x20 </resource>\r\n\
        \x20 <resource uri=\"sip:dave@example.com\">\r\n\
        \x20   <instance id=\"i4\" state=\"pending\"/>\r\n\
        \x20 </resource>\r\n\
        \x20 <resource uri=\"sip:erin@example.net\">\r\n\
        \x20   <instance id=\"i5\" state=\"terminated\" reason=\"rejected\"/>\r\n\
        \x20 </resource>\r\n\
        \x20 <resource uri=\"sip:frank@example.com&amp;x\"/>\r\n\
        </list>\r\n\
        --b0und;ary\r\n\
        Content-Transfer-Encoding: binary\r\n\
        Content-ID: <bob1@rls.example.com>\r\n\
        Content-Type: application/pidf+xml;charset=\"UTF-8\"\r\n\
        \r\n\
        <?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
        entity=\"sip:bob@example.com\"><tuple id=\"t\"><status><basic>closed</basic></status>\
        </tuple><note>At lunch</note></presence>\r\n\
        {carol1}{carol2}--b0und;ary--\r\n",
        carol1 = carol("carol1", "closed"),
        carol2 = carol("carol2", "open"),
    )
    .into_bytes();
    (content_type, body)
}

#[test]
fn a_full_list_gives_each_resource_its_state() {
    let (content_type, body) = notify_body();
    let list = read(&content_type, &body).expect("a list");
    assert_eq!(list.version, 0);
    assert!(list.full_state);
    let states: Vec<(&str, &State)> = list
        .resources
        .iter()
        .map(|resource| (resource.uri.as_str(), &resource.state))
        .collect();
    assert_eq!(
        states,
        [
            (
                "sip:bob@example.com",
                &State::Known(Status {
                    open: false,
                    note: Some("At lunch".into())
                })
            ),
            (
                "sip:carol@example.com",
                &State::Known(Status {
                    open: true,
                    note: None
                })
            ),
            ("sip:dave@example.com", &State::Pending),
            (
                "sip:erin@example.net",
                &State::Unknown(Some("rejected".into()))
            ),
            ("sip:frank@example.com&x", &State::Unknown(None)),
        ]
    );
}

#[test]
fn a_partial_list_and_line_feeds_alone() {
    let body = "--xyz\n\
        Content-Type: application/rlmi+xml\n\
        \n\
        <r:list xmlns:r=\"urn:ietf:params:xml:ns:rlmi\" uri=\"sip:l@example.com\" version='7' \
        fullState='false'><!-- <resource uri=\"sip:ghost@example.com\"/> -->\
        <r:resource uri='sip:bob@example.com'><r:instance id='x' state='active' \
        cid='&lt;p1&gt;'/></r:resource></r:list>\n\
        --xyz\n\
        Content-ID: p1\n\
        Content-Type: application/pidf+xml\n\
        \n\
        <presence><tuple><status><basic>open</basic></status></tuple></presence>\n\
        --xyz--\n";
    let list = read("Multipart/Related; boundary=xyz", body.as_bytes()).expect("a list");
    assert_eq!(
        list,
        List {
            version: 7,
            full_state: false,
            resources: vec![Resource {
                uri: "sip:bob@example.com".into(),
                state: State::Known(Status {
                    open: true,
                    note: None
                }),
            }],
        }
    );
}

#[test]
fn what_is_not_a_list_reads_as_none() {
    let (content_type, body) = notify_body();
    assert_eq!(read("application/pidf+xml", &body), None);
    // No boundary, a boundary that is not in the body, a root that is not RLMI, a start that
    // names no part, no version.
    assert_eq!(read("multipart/related", &body), None);
    assert_eq!(read("multipart/related;boundary=other", &body), None);
    let pidf_root = content_type.replace("<root1@rls.example.com>", "<bob1@rls.example.com>");
    assert_eq!(read(&pidf_root, &body), None);
    let nowhere = content_type.replace("<root1@rls.example.com>", "<nowhere>");
    assert_eq!(read(&nowhere, &body), None);
    let unversioned = String::from_utf8(body.clone())
        .unwrap()
        .replace("version=\"0\"", "");
    assert_eq!(read(&content_type, unversioned.as_bytes()), None);
}

#[test]
fn hostile_bodies_never_panic() {
    let (content_type, body) = notify_body();
    // Every truncation of a real body, and bytes that are not UTF-8.
    for end in 0..body.len() {
        let _ = read(&content_type, &body[..end]);
    }
    let mut garbled = body.clone();
    for byte in garbled.iter_mut().step_by(7) {
        *byte = 0xff;
    }
    let _ = read(&content_type, &garbled);
    let _ = read("multipart/related;boundary=\"", b"--");
    let _ = read("multipart/related;boundary=", b"----\r\n--");
    let _ = read(
        "multipart/related;boundary=a",
        b"--a\r\n<list version=\"1\"><resource uri=\"",
    );
}

#[test]
fn mutated_bodies_never_panic() {
    // Deterministic mutations of a real body (bytes changed, dropped, repeated), as a fuzzer
    // would make them; the parser must only ever answer.
    let (content_type, body) = notify_body();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let alphabet = b"<>/=\"' -\r\n:;abcdefgilmnoprstuvx0123456789&#\xff";
    for _ in 0..20_000 {
        let mut mutated = body.clone();
        for _ in 0..(next() % 8 + 1) {
            let at = (next() as usize) % mutated.len().max(1);
            match next() % 3 {
                0 if !mutated.is_empty() => {
                    mutated[at] = alphabet[(next() as usize) % alphabet.len()];
                }
                1 if !mutated.is_empty() => {
                    let end = (at + (next() as usize) % 40).min(mutated.len());
                    mutated.drain(at..end);
                }
                _ => {
                    let end = (at + (next() as usize) % 40).min(mutated.len());
                    let copy = mutated[at..end].to_vec();
                    mutated.splice(at..at, copy);
                }
            }
        }
        let _ = read(&content_type, &mutated);
    }
}
