use std::path::PathBuf;

use ezk_sip_types::header::typed::Contact;

use super::*;

const MAX: usize = 65_536;

fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/sip")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            (
                file.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&file).unwrap(),
            )
        })
        .collect()
}

/// What a message means, independent of its spelling: start line, each header's canonical name
/// with its values in order, and the body.
fn meaning(message: &Message) -> (String, Vec<(String, String)>, Bytes) {
    let mut headers: Vec<(String, String)> = message
        .headers
        .iter()
        .filter(|(name, _)| **name != Name::CONTENT_LENGTH)
        .map(|(name, value)| (name.as_print_str().to_ascii_lowercase(), value.to_string()))
        .collect();
    // Fields of different names may be reordered; fields of one name keep their order.
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    (message.start.to_string(), headers, message.body.clone())
}

fn parse(text: &str) -> Message {
    Message::parse_datagram(text.as_bytes(), MAX).unwrap()
}

#[test]
fn every_corpus_message_parses_validates_prints_and_reparses() {
    let mut count = 0;
    for dir in ["real", "synth"] {
        for (name, bytes) in corpus(dir) {
            let message = Message::parse_datagram(&bytes, MAX)
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            message
                .validate()
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            message
                .vias()
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            let printed = message.to_bytes();
            let again = Message::parse_datagram(&printed, MAX)
                .unwrap_or_else(|error| panic!("{name} reprinted: {error}"));
            assert_eq!(meaning(&message), meaning(&again), "{name}");
            again.validate().unwrap();
            count += 1;
        }
    }
    assert_eq!(count, 144);
}

#[test]
fn compact_names_folding_and_lf_only() {
    let (_, bytes) = corpus("synth")
        .into_iter()
        .find(|(name, _)| name.starts_with("s04"))
        .unwrap();
    let message = Message::parse_datagram(&bytes, MAX).unwrap();
    assert_eq!(message.call_id(), Some("2fd4183d5ae5b9c4"));
    assert_eq!(message.tag(&Name::FROM), Some("e819aeefac70f8ab"));
    assert_eq!(message.body.len(), 176);
    assert!(message.body.starts_with(b"v=0"));
    let printed = String::from_utf8(message.to_bytes()).unwrap();
    assert!(
        printed.contains("\r\nCall-ID: 2fd4183d5ae5b9c4\r\n"),
        "{printed}"
    );
    assert!(
        printed.contains("\r\nContent-Length: 176\r\n\r\nv=0"),
        "{printed}"
    );

    let (_, bytes) = corpus("synth")
        .into_iter()
        .find(|(name, _)| name.starts_with("s08"))
        .unwrap();
    let message = Message::parse_datagram(&bytes, MAX).unwrap();
    assert_eq!(message.cseq().unwrap().cseq, 1);
    assert_eq!(
        message.header(&Name::CONTACT),
        Some("<sip:sipsak@127.0.0.1:40648>")
    );
}

#[test]
fn tel_and_other_request_uris_are_kept_as_text() {
    let message = parse(
        "INVITE tel:+15551234567;phone-context=example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <tel:+15551234567>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
    );
    let StartLine::Request { uri, .. } = &message.start else {
        panic!("{:?}", message.start)
    };
    assert!(!uri.is_sip());
    assert_eq!(uri.user(), None);
    assert_eq!(uri.as_str(), "tel:+15551234567;phone-context=example.com");
    message.validate().unwrap();
    assert!(
        String::from_utf8(message.to_bytes())
            .unwrap()
            .starts_with("INVITE tel:+15551234567;phone-context")
    );
}

#[test]
fn unknown_methods_parse() {
    let message = parse(
        "FROBNICATE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n\
         Call-ID: c\r\nCSeq: 1 FROBNICATE\r\nl: 0\r\n\r\n",
    );
    assert_eq!(message.method().unwrap().to_string(), "FROBNICATE");
    message.validate().unwrap();
}

#[test]
fn datagram_bodies_follow_content_length() {
    let head = "MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n";
    // Without Content-Length the body is the rest of the datagram.
    assert_eq!(
        &parse(&format!("{head}\r\nhello\r\n\r\nworld")).body[..],
        b"hello\r\n\r\nworld"
    );
    // With it, extra bytes are ignored; a shorter body is refused.
    assert_eq!(
        &parse(&format!("{head}Content-Length: 5\r\n\r\nhello world")).body[..],
        b"hello"
    );
    let short = format!("{head}Content-Length: 50\r\n\r\nhello");
    assert!(matches!(
        Message::parse_datagram(short.as_bytes(), MAX),
        Err(ParseError::Malformed(_))
    ));
    for bad in [
        "Content-Length: -1\r\n",
        "Content-Length: 5\r\nl: 5\r\n",
        "Content-Length: five\r\n",
    ] {
        let text = format!("{head}{bad}\r\nhello");
        assert!(
            matches!(
                Message::parse_datagram(text.as_bytes(), MAX),
                Err(ParseError::Malformed(_))
            ),
            "{bad}"
        );
    }
    // Leading CRLFs (keep-alives before a message) are skipped.
    assert!(Message::parse_datagram(format!("\r\n\r\n{head}\r\n").as_bytes(), MAX).is_ok());
    assert_eq!(
        Message::parse_datagram(&vec![b'a'; MAX + 1], MAX).unwrap_err(),
        ParseError::TooLarge(MAX)
    );
}

#[test]
fn the_stream_framer_cuts_by_content_length() {
    let (_, two) = corpus("synth")
        .into_iter()
        .find(|(name, _)| name.starts_with("s09"))
        .unwrap();
    // Whole, and then one byte at a time: the same two messages come out.
    for chunk in [two.len(), 1] {
        let mut framer = StreamFramer::new(MAX);
        let mut methods = Vec::new();
        for piece in two.chunks(chunk) {
            framer.push(piece);
            while let Some(frame) = framer.next_frame().unwrap() {
                match frame {
                    Frame::Message(message) => methods.push(message.method().unwrap().to_string()),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(methods, ["OPTIONS", "REGISTER"], "chunks of {chunk}");
    }
}

#[test]
fn the_stream_framer_handles_keepalives_and_refuses_what_it_cannot_frame() {
    let mut framer = StreamFramer::new(MAX);
    framer.push(b"\r\n\r\n");
    assert!(matches!(framer.next_frame(), Ok(Some(Frame::Ping))));
    framer.push(b"\r\n");
    assert!(matches!(framer.next_frame(), Ok(Some(Frame::Pong))));
    assert!(matches!(framer.next_frame(), Ok(None)));

    let mut framer = StreamFramer::new(MAX);
    framer.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\n");
    assert!(
        matches!(framer.next_frame(), Err(ParseError::Malformed(_))),
        "no Content-Length on a stream"
    );

    let mut framer = StreamFramer::new(100);
    framer.push(&[b'x'; 200]);
    assert_eq!(framer.next_frame().unwrap_err(), ParseError::TooLarge(100));

    // A framed message with a broken head is reported and the stream goes on.
    let mut framer = StreamFramer::new(MAX);
    framer.push(b"BROKEN LINE\r\nContent-Length: 3\r\n\r\nabcOPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    assert!(matches!(framer.next_frame(), Ok(Some(Frame::Invalid(_)))));
    assert!(matches!(framer.next_frame(), Ok(Some(Frame::Message(_)))));
}

#[test]
fn lists_are_decoded_strictly() {
    let message = parse(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/TCP h2:5061;branch=z9hG4bK2\r\n\
         Via: SIP/2.0/UDP h3;branch=z9hG4bK3\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
    );
    let vias = message.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[1].sent_by.port, Some(5061));

    let broken = parse(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1, garbage here\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
    );
    assert_eq!(broken.vias().unwrap_err().status, 400);
    assert!(broken.validate().is_err());

    let contacts = parse(
        &String::from_utf8(
            corpus("synth")
                .into_iter()
                .find(|(n, _)| n.starts_with("s01"))
                .unwrap()
                .1,
        )
        .unwrap(),
    );
    let list = list::<Contact>(&contacts.headers, &Name::CONTACT).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        list[0].params.get_val("expires").map(|v| v.as_str()),
        Some("300")
    );
}

#[test]
fn validation_names_what_is_wrong() {
    let base = |extra: &str, cseq: &str| {
        format!(
            "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: {cseq}\r\n{extra}\r\n"
        )
    };
    let reason = |text: String| parse(&text).validate().unwrap_err().reason;
    assert_eq!(
        reason(base("", "1 OPTIONS")),
        "CSeq method differs from the request method"
    );
    assert_eq!(
        reason(base("", "4294967296 INVITE"))
            .split(':')
            .next()
            .unwrap(),
        "invalid CSeq"
    );
    assert_eq!(
        reason(base("", "2147483648 INVITE")),
        "CSeq number too large"
    );
    assert_eq!(
        reason(base("Max-Forwards: 300\r\n", "1 INVITE")),
        "Max-Forwards is not a number from 0 to 255"
    );
    assert_eq!(
        reason(base("Expires: 99999999999\r\n", "1 INVITE")),
        "Expires is not a number of seconds"
    );
    let no_call_id = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert_eq!(reason(no_call_id.into()), "missing Call-ID");
    let quotes = base("", "1 INVITE").replace("From: <sip:a@b>", "From: \"Bob <sip:a@b>");
    assert_eq!(reason(quotes), "From: unterminated quoted string");
    let bare = base("", "1 INVITE").replace("To: <sip:a@b>", "To: sip:a@b?Route=x");
    assert_eq!(
        reason(bare),
        "To: a URI with spaces, commas or headers must be in <>"
    );
}

#[test]
fn start_lines_are_strict() {
    for line in [
        "INVITE  sip:a@b SIP/2.0",
        "INVITE sip:a@b SIP/2.0 ",
        "INVITE <sip:a@b> SIP/2.0",
        "INVITE sip:a@b?Route=x SIP/2.0",
        "INVITE sip:a@b SIP/7.0",
        "SIP/2.0 4294967301 Big",
        "SIP/2.0 99 Low",
        "IN VITE sip:a@b SIP/2.0",
    ] {
        let text = format!("{line}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n");
        assert!(
            Message::parse_datagram(text.as_bytes(), MAX).is_err(),
            "{line}"
        );
    }
    let response = parse("SIP/2.0 200 \r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n");
    assert_eq!(response.code(), Some(200));
}

#[test]
fn header_params_are_found_outside_the_uri() {
    assert_eq!(header_param("<sip:a@b;tag=no>;tag=yes", "tag"), Some("yes"));
    assert_eq!(header_param("sip:a@b;tag=x", "tag"), Some("x"));
    assert_eq!(header_param("\"a>b\" <sip:a@b>;TAG=7", "tag"), Some("7"));
    assert_eq!(header_param("<sip:a@b>", "tag"), None);
    assert_eq!(
        header_param("<sip:a@b>;expires=60;q=0.5", "expires"),
        Some("60")
    );
}

#[test]
fn responses_copy_the_dialog_headers() {
    let request = parse(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP h2;branch=z9hG4bK2\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 7 OPTIONS\r\nMax-Forwards: 70\r\n\r\n",
    );
    let response = request.response(200, "OK", Some("t9"));
    response.validate().unwrap();
    assert_eq!(response.vias().unwrap().len(), 2);
    assert_eq!(response.tag(&Name::TO), Some("t9"));
    assert_eq!(response.cseq().unwrap().cseq, 7);
    assert!(response.header(&Name::MAX_FORWARDS).is_none());
    let text = String::from_utf8(response.to_bytes()).unwrap();
    assert!(
        text.starts_with(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h1;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP h2"
        ),
        "{text}"
    );
    // A To that already has a tag keeps it.
    let tagged = request
        .response(200, "OK", Some("t9"))
        .response(200, "OK", Some("other"));
    assert_eq!(tagged.tag(&Name::TO), Some("t9"));
}

#[test]
fn request_uris() {
    let uri = RequestUri::parse("sip:user;par=u%40example.net@example.com").unwrap();
    assert_eq!(uri.user(), Some("user;par=u%40example.net"));
    let uri = RequestUri::parse(
        "sips:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com:5061;transport=tls",
    )
    .unwrap();
    assert!(uri.is_sip());
    assert_eq!(
        uri.user(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(RequestUri::parse("sip:[::1]:5060").unwrap().user(), None);
    // The host, as the dial plan and the driver read it: no port, parameters or brackets.
    for (text, host) in [
        ("sip:[::1]:5060", Some("::1")),
        ("sip:bob@Local.Test:5070;transport=tcp", Some("Local.Test")),
        ("sip:example.com", Some("example.com")),
        (
            "sips:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com:5061",
            Some("example.com"),
        ),
        ("tel:+15551234567", None),
    ] {
        let uri = RequestUri::parse(text).unwrap();
        assert_eq!(uri.host(), host, "{text}");
        assert_eq!(
            uri.host(),
            crate::uri::uri_host(text),
            "{text}: as uri_host reads it"
        );
    }
    for bad in [
        "sip:user@example.com?Route=x",
        "sip:@example.com",
        "sip:user@exa mple.com",
        "sip:user@[::1",
        "sip:u@h:5x",
        "<sip:a@b>",
        "1sip:x",
        "sip:",
    ] {
        assert!(RequestUri::parse(bad).is_none(), "{bad}");
    }
    assert!(RequestUri::parse("soap.beep://192.0.2.103:3002").is_some());
}

#[test]
fn rfc_4475_valid_messages_parse_and_validate() {
    let messages = corpus("rfc4475/valid");
    assert_eq!(messages.len(), 13);
    for (name, bytes) in messages {
        let message =
            Message::parse_datagram(&bytes, MAX).unwrap_or_else(|error| panic!("{name}: {error}"));
        message
            .validate()
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        // Printing keeps the meaning.
        let again = Message::parse_datagram(&message.to_bytes(), MAX)
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(meaning(&message), meaning(&again), "{name}");
    }
}

#[test]
fn rfc_4475_invalid_messages_are_rejected() {
    let messages = corpus("rfc4475/invalid");
    assert_eq!(messages.len(), 19);
    for (name, bytes) in messages {
        let verdict = Message::parse_datagram(&bytes, MAX).map(|message| message.validate());
        assert!(!matches!(verdict, Ok(Ok(()))), "{name} was accepted");
    }
}

#[test]
fn dates_and_contact_lists() {
    assert!(valid_date("Sat, 15 Oct 2005 04:44:56 GMT"));
    assert!(!valid_date("Fri, 01 Jan 2010 16:00:00 EST"));
    assert!(!valid_date("Fri, 1 Jan 2010 16:00:00 GMT"));
    assert!(!valid_date("yesterday"));
    assert_eq!(
        split_list(r#""a, b" <sip:x@y;p=1,2>;q=1, <sip:z@w>"#),
        [r#""a, b" <sip:x@y;p=1,2>;q=1"#, " <sip:z@w>"]
    );
}

#[test]
fn the_fuzz_corpus_replays() {
    // The fuzz target's seeds (every captured and torture message) and the inputs that once
    // broke it (tests/fuzz/regressions).
    let mut count = 0;
    for dir in [
        "real",
        "synth",
        "rfc4475/valid",
        "rfc4475/invalid",
        "../../fuzz/regressions/sip_message",
    ] {
        for (name, bytes) in corpus(dir) {
            if !name.starts_with('.') {
                crate::fuzzing::check_message(&bytes);
                count += 1;
            }
        }
    }
    assert!(count >= 176, "{count}");
}
