use std::time::Duration;

use super::*;
use crate::auth::{Credentials, Secret, ha1};

const REGISTRAR: &str = "127.0.0.1:5060";

fn endpoint() -> Endpoint {
    Endpoint::new(EndpointConfig {
        timers: Timers::default(),
        max_message_size: 65536,
        user_agent: "sylkrtc-gateway test".into(),
        tag_seed: "t".into(),
    })
}

fn registrar() -> Target {
    Target {
        transport: Transport::Udp,
        addr: REGISTRAR.parse().unwrap(),
    }
}

fn registration(contact_user: &str) -> RegistrationConfig {
    RegistrationConfig {
        user: "alice".into(),
        domain: "127.0.0.1".into(),
        display_name: None,
        credentials: Credentials {
            username: "alice".into(),
            secret: Secret::Ha1(ha1("alice", "127.0.0.1", "alicepw")),
        },
        route: None,
        transport: Transport::Udp,
        local: "127.0.0.1:5062".into(),
        local_fixed: true,
        contact_user: contact_user.into(),
        instance: format!("urn:uuid:{contact_user}"),
        expires: 600,
        user_agent: "test".into(),
        call_id: format!("call-{contact_user}"),
        from_tag: "f".into(),
        nonce_seed: contact_user.into(),
    }
}

fn sent(endpoint: &mut Endpoint) -> Vec<(Target, Message)> {
    std::iter::from_fn(|| endpoint.poll_transmit())
        .map(|transmit| {
            (
                transmit.target,
                Message::parse_datagram(&transmit.bytes, 65536).unwrap(),
            )
        })
        .collect()
}

fn events(endpoint: &mut Endpoint) -> Vec<EndpointEvent> {
    std::iter::from_fn(|| endpoint.poll_event()).collect()
}

/// Registers `contact_user` (through a challenge) and returns its id.
fn registered(endpoint: &mut Endpoint, now: Instant, contact_user: &str) -> RegistrationId {
    let id = endpoint.register(now, registration(contact_user), registrar());
    let (target, request) = sent(endpoint).pop().unwrap();
    assert_eq!(target, registrar());
    let mut challenge = request.response(401, "Unauthorized", Some("r"));
    challenge.headers.insert(
        Name::WWW_AUTHENTICATE,
        r#"Digest realm="127.0.0.1", nonce="abc""#,
    );
    endpoint
        .handle_datagram(now, registrar(), &challenge.to_bytes())
        .unwrap();
    let (_, request) = sent(endpoint).pop().unwrap();
    assert!(request.header(&Name::AUTHORIZATION).is_some());
    let mut ok = request.response(200, "OK", Some("r"));
    ok.headers.insert(Name::EXPIRES, "600");
    endpoint
        .handle_datagram(now, registrar(), &ok.to_bytes())
        .unwrap();
    assert_eq!(
        events(endpoint),
        [
            EndpointEvent::Registration {
                id,
                event: RegistrationEvent::Registering
            },
            EndpointEvent::Registration {
                id,
                event: RegistrationEvent::Registered { expires: 600 }
            },
        ]
    );
    id
}

fn request(method: &str, uri: &str, branch: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\nFrom: <sip:bob@127.0.0.1>;tag=b\r\n\
         To: <{uri}>\r\nCall-ID: in-{branch}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Sends a request from the registrar's address and returns the response codes sent back.
fn answer(endpoint: &mut Endpoint, now: Instant, text: &str) -> Vec<u16> {
    endpoint
        .handle_datagram(now, registrar(), text.as_bytes())
        .unwrap();
    sent(endpoint)
        .into_iter()
        .map(|(target, message)| {
            assert_eq!(target, registrar(), "responses go back to the source");
            message.code().unwrap()
        })
        .collect()
}

#[test]
fn registers_through_a_challenge() {
    let now = Instant::now();
    let mut endpoint = endpoint();
    registered(&mut endpoint, now, "gw1");
    assert_eq!(endpoint.registration_count(), 1);
}

#[test]
fn an_unanswered_register_is_retransmitted_then_fails_with_408() {
    let start = Instant::now();
    let mut endpoint = endpoint();
    let id = endpoint.register(start, registration("gw1"), registrar());
    assert_eq!(sent(&mut endpoint).len(), 1);
    let mut sends = 1;
    let mut now = start;
    while now - start < Duration::from_secs(32) {
        now = endpoint.poll_timeout().unwrap();
        endpoint.handle_timeout(now);
        sends += sent(&mut endpoint).len();
    }
    assert_eq!(sends, 11);
    let failure = events(&mut endpoint).pop().unwrap();
    assert_eq!(
        failure,
        EndpointEvent::Registration {
            id,
            event: RegistrationEvent::Failed {
                reason: "408 Request Timeout".into(),
                retry_in: Some(Duration::from_secs(30))
            }
        }
    );
}

#[test]
fn requests_to_us_are_answered() {
    let now = Instant::now();
    let mut endpoint = endpoint();
    registered(&mut endpoint, now, "gw1");
    let live = "sip:gw1@127.0.0.1:5062";
    assert_eq!(
        answer(&mut endpoint, now, &request("OPTIONS", live, "z9hG4bK1")),
        [200]
    );
    // A retransmission gets the same answer from the transaction, not a new one.
    endpoint
        .handle_datagram(
            now,
            registrar(),
            request("OPTIONS", live, "z9hG4bK1").as_bytes(),
        )
        .unwrap();
    let resent = sent(&mut endpoint);
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].1.header(&Name::ALLOW), Some(ALLOW));
    // A known method we do not take yet: 405 with Allow (an INVITE gets 100 Trying first).
    assert_eq!(
        answer(&mut endpoint, now, &request("MESSAGE", live, "z9hG4bK2")),
        [405]
    );
    assert_eq!(
        answer(&mut endpoint, now, &request("INVITE", live, "z9hG4bK3")),
        [100, 405]
    );
    // Its ACK is absorbed by the transaction.
    assert_eq!(
        answer(&mut endpoint, now, &request("ACK", live, "z9hG4bK3")),
        Vec::<u16>::new()
    );
    // An unknown method: 501.
    assert_eq!(
        answer(&mut endpoint, now, &request("FROBNICATE", live, "z9hG4bK4")),
        [501]
    );
    // Scanners: any Request-URI that is no live binding gets 404.
    for (index, uri) in [
        "sip:100@127.0.0.1:5062",
        "sip:127.0.0.1:5062",
        "sip:alice@127.0.0.1",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            answer(
                &mut endpoint,
                now,
                &request("OPTIONS", uri, &format!("z9hG4bKs{index}"))
            ),
            [404],
            "{uri}"
        );
    }
    assert_eq!(
        answer(
            &mut endpoint,
            now,
            &request("INVITE", "sip:1000@127.0.0.1", "z9hG4bK5")
        ),
        [100, 404]
    );
    // tel: Request-URIs: 416.
    let tel = request("OPTIONS", "tel:+15551234567", "z9hG4bK6")
        .replace("To: <tel:+15551234567>", "To: <sip:x@y>");
    assert_eq!(answer(&mut endpoint, now, &tel), [416]);
    // Malformed but answerable: 400.
    let mismatch =
        request("OPTIONS", live, "z9hG4bK7").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    assert_eq!(answer(&mut endpoint, now, &mismatch), [400]);
    // Not answerable (no Call-ID to echo): dropped silently.
    let headless = request("OPTIONS", live, "z9hG4bK8").replace("Call-ID: in-z9hG4bK8\r\n", "");
    assert_eq!(answer(&mut endpoint, now, &headless), Vec::<u16>::new());
    // Not SIP at all: an error for the driver to log, and nothing sent.
    assert!(
        endpoint
            .handle_datagram(now, registrar(), b"GET / HTTP/1.1\r\n\r\n")
            .is_err()
    );
    assert!(
        endpoint
            .handle_datagram(now, registrar(), b"\x16\x03\x01garbage")
            .is_err()
    );
    assert!(sent(&mut endpoint).is_empty());
}

#[test]
fn unregistering_removes_the_binding_and_its_contact() {
    let now = Instant::now();
    let mut endpoint = endpoint();
    let id = registered(&mut endpoint, now, "gw1");
    let other = registered(&mut endpoint, now, "gw2");
    endpoint.unregister(now, id);
    let (_, removal) = sent(&mut endpoint).pop().unwrap();
    assert_eq!(removal.header(&Name::EXPIRES), Some("0"));
    assert!(removal.header(&Name::CONTACT).unwrap().contains("sip:gw1@"));
    endpoint
        .handle_datagram(
            now,
            registrar(),
            &removal.response(200, "OK", Some("r")).to_bytes(),
        )
        .unwrap();
    assert_eq!(
        events(&mut endpoint),
        [EndpointEvent::Registration {
            id,
            event: RegistrationEvent::Unregistered
        }]
    );
    assert_eq!(endpoint.registration_count(), 1);
    assert_eq!(
        answer(
            &mut endpoint,
            now,
            &request("OPTIONS", "sip:gw1@127.0.0.1:5062", "z9hG4bKa")
        ),
        [404]
    );
    assert_eq!(
        answer(
            &mut endpoint,
            now,
            &request("OPTIONS", "sip:gw2@127.0.0.1:5062", "z9hG4bKb")
        ),
        [200]
    );
    let _ = other;
}

#[test]
fn a_transport_error_fails_the_register() {
    let now = Instant::now();
    let mut endpoint = endpoint();
    let tcp = Target {
        transport: Transport::Tcp,
        addr: REGISTRAR.parse().unwrap(),
    };
    let id = endpoint.register(
        now,
        RegistrationConfig {
            transport: Transport::Tcp,
            ..registration("gw1")
        },
        tcp,
    );
    assert_eq!(sent(&mut endpoint).len(), 1);
    endpoint.handle_transport_error(now, tcp);
    let last = events(&mut endpoint).pop().unwrap();
    assert!(
        matches!(last, EndpointEvent::Registration { id: got, event: RegistrationEvent::Failed { .. } } if got == id)
    );
    // Over TCP nothing is retransmitted.
    endpoint.handle_timeout(now + Duration::from_secs(1));
    assert!(sent(&mut endpoint).is_empty());
}
