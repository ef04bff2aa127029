use bytes::Bytes;
use ezk_sip_types::{Method, Name};

use super::*;
use crate::transport::Transport;

fn config() -> CallConfig {
    CallConfig {
        display_name: Some("Alice \"A\"".into()),
        session_expires: None,
        ..crate::call::tests::config(Transport::Tcp)
    }
}

fn message() -> Request {
    Request::new(
        config(),
        OutgoingRequest {
            method: Method::MESSAGE,
            uri: RequestUri::parse("sip:bob@example.com").expect("a URI"),
            contact: None,
            route: Some("<sip:proxy.example.com;lr>".into()),
            call_id: "m1".into(),
            content_type: "message/cpim".into(),
            body: Bytes::from_static(b"hello"),
            headers: vec![("X-Test".into(), "1".into())],
        },
    )
}

fn reply(request: &Message, code: u16, extra: &[(&str, &str)]) -> Message {
    let mut response = request.response(code, "Reason", Some("theirs"));
    for (name, value) in extra {
        response
            .headers
            .insert(Name::from(name.to_string()), value.to_string());
    }
    response
}

const CHALLENGE: (&str, &str) = (
    "Proxy-Authenticate",
    "Digest realm=\"example.com\", nonce=\"n1\", qop=\"auth\"",
);

/// The MESSAGE as it goes out; a challenge is answered once with a new CSeq and branch; the
/// 2xx that follows is the outcome.
#[test]
fn a_message_answers_its_challenge_then_reports_its_answer() {
    let mut request = message();
    let first = request.poll_request().expect("the MESSAGE");
    assert!(request.poll_request().is_none());
    let text = String::from_utf8(first.to_bytes()).expect("utf-8");
    for expected in [
        "MESSAGE sip:bob@example.com SIP/2.0\r\n",
        "Via: SIP/2.0/TCP 127.0.0.1:5062;rport;branch=z9hG4bK",
        "Route: <sip:proxy.example.com;lr>",
        "From: \"Alice \\\"A\\\"\" <sip:alice@example.com>;tag=ourtag",
        "To: <sip:bob@example.com>",
        "Call-ID: m1",
        "CSeq: 1 MESSAGE",
        "X-Test: 1",
        "Content-Type: message/cpim",
        "\r\n\r\nhello",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    assert!(!text.contains("Contact:"), "{text}");

    request.handle_final(&reply(&first, 407, &[CHALLENGE]));
    assert_eq!(request.outcome(), None);
    let second = request.poll_request().expect("the MESSAGE again");
    assert_eq!(second.cseq().expect("CSeq").cseq, 2);
    assert!(second.header(&Name::PROXY_AUTHORIZATION).is_some());
    assert_ne!(
        second.vias().expect("Via")[0].params.get_val("branch"),
        first.vias().expect("Via")[0].params.get_val("branch")
    );
    // A late response to the first attempt changes nothing.
    request.handle_final(&reply(&first, 500, &[]));
    assert_eq!(request.outcome(), None);

    request.handle_final(&reply(&second, 202, &[]));
    assert_eq!(
        request.outcome(),
        Some(&RequestOutcome {
            code: 202,
            reason: "Reason".into()
        })
    );
    assert!(request.poll_request().is_none());
}

/// A second challenge means the credentials are wrong: that answer is the outcome.
#[test]
fn a_second_challenge_is_the_outcome() {
    let mut request = message();
    let first = request.poll_request().expect("the MESSAGE");
    request.handle_final(&reply(&first, 407, &[CHALLENGE]));
    let second = request.poll_request().expect("the MESSAGE again");
    request.handle_final(&reply(&second, 407, &[CHALLENGE]));
    assert_eq!(request.outcome().map(|outcome| outcome.code), Some(407));
    assert!(request.poll_request().is_none());
}

/// No answer, a server to fail over to, then a failure: the request again for the next
/// server, then the failure as the outcome; nothing after it.
#[test]
fn failures_fail_over_then_end_the_request() {
    let mut request = message();
    let _ = request.poll_request();
    assert!(request.failover());
    let again = request
        .poll_request()
        .expect("the MESSAGE for the next server");
    assert_eq!(again.cseq().expect("CSeq").cseq, 2);
    request.fail(408, "Request Timeout (no answer)");
    assert_eq!(request.outcome().map(|outcome| outcome.code), Some(408));
    assert!(!request.failover());
    request.handle_final(&reply(&again, 200, &[]));
    assert_eq!(request.outcome().map(|outcome| outcome.code), Some(408));
}
