use std::time::Duration;

use super::*;
use crate::auth::{Credentials, Secret, ha1};
use crate::call::ALLOW;
use crate::transport::Transport;
use ezk_sip_types::Name;

const REGISTRAR: &str = "127.0.0.1:5060";

pub(crate) fn endpoint() -> Endpoint {
    endpoint_with(20_000)
}

fn endpoint_with(max_server_transactions: usize) -> Endpoint {
    Endpoint::new(
        EndpointConfig {
            timers: Timers::default(),
            max_message_size: 65536,
            user_agent: "sylkrtc-gateway test".into(),
            tag_seed: "t".into(),
            session_expires: Some(1800),
            min_se: 90,
            local: None,
            max_server_transactions,
            siblings: Vec::new(),
        },
        Instant::now(),
    )
}

/// An endpoint that is registrar of `local.test` (open registration), pinging its phones
/// every `ping_interval`.
fn local_endpoint(now: Instant, ping_interval: Option<Duration>) -> Endpoint {
    let mut config = endpoint().config.clone();
    config.local = Some(crate::registrar::LocalDomain {
        location: std::sync::Arc::new(crate::location::MemoryLocation::new(
            "local.test",
            HashMap::new(),
            true,
        )),
        secret: "s".into(),
        nonce_lifetime: Duration::from_secs(300),
        max_expires: 3600,
        min_expires: 60,
        ping_interval,
        peers: vec!["127.0.0.3:5060".parse().unwrap()],
    });
    Endpoint::new(config, now)
}

pub(crate) fn registrar() -> Target {
    Target {
        transport: Transport::Udp,
        addr: REGISTRAR.parse().unwrap(),
    }
}

pub(crate) fn registration(contact_user: &str) -> RegistrationConfig {
    RegistrationConfig {
        user: "alice".into(),
        domain: "127.0.0.1".into(),
        display_name: None,
        credentials: alice(),
        route: None,
        transport: Transport::Udp,
        local: "127.0.0.1:5062".into(),
        local_fixed: true,
        contact_user: contact_user.into(),
        instance: format!("urn:uuid:{contact_user}"),
        contact_params: Vec::new(),
        expires: 600,
        user_agent: "test".into(),
        call_id: format!("call-{contact_user}"),
        from_tag: "f".into(),
        nonce_seed: contact_user.into(),
    }
}

pub(super) fn alice() -> Credentials {
    Credentials {
        username: "alice".into(),
        secret: Secret::Ha1(ha1("alice", "127.0.0.1", "alicepw")),
    }
}

pub(crate) fn sent(endpoint: &mut Endpoint) -> Vec<(Target, Message)> {
    std::iter::from_fn(|| endpoint.poll_transmit())
        .map(|transmit| {
            (
                transmit.target,
                Message::parse_datagram(&transmit.bytes, 65536).unwrap(),
            )
        })
        .collect()
}

pub(crate) fn events(endpoint: &mut Endpoint) -> Vec<EndpointEvent> {
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
            EndpointEvent::RegistrationSettled(id),
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
    let mut reported = events(&mut endpoint);
    assert_eq!(reported.pop(), Some(EndpointEvent::RegistrationSettled(id)));
    let failure = reported.pop().unwrap();
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

/// A probe's OPTIONS to the server itself (no user) is 200; while draining it is 503, as are
/// new calls, while a registration's MESSAGE is still handed over and in-dialog requests are
/// still matched (here: 481, no dialog).
#[test]
fn draining_refuses_what_is_new() {
    let now = Instant::now();
    let mut endpoint = endpoint();
    let id = registered(&mut endpoint, now, "gw1");
    let probe = "sip:127.0.0.1:5062";
    assert_eq!(
        answer(&mut endpoint, now, &request("OPTIONS", probe, "z9hG4bKp1")),
        [200]
    );
    endpoint.set_draining(true);
    assert!(endpoint.is_draining());
    assert_eq!(
        answer(&mut endpoint, now, &request("OPTIONS", probe, "z9hG4bKp2")),
        [503]
    );
    let live = "sip:gw1@127.0.0.1:5062";
    assert_eq!(
        answer(&mut endpoint, now, &request("INVITE", live, "z9hG4bKp3")),
        [100, 503]
    );
    assert_eq!(
        answer(&mut endpoint, now, &request("MESSAGE", live, "z9hG4bKp4")),
        Vec::<u16>::new()
    );
    assert!(matches!(
        endpoint.poll_event(),
        Some(EndpointEvent::Request { registration, .. }) if registration == Some(id)
    ));
    let in_dialog = request("BYE", live, "z9hG4bKp5").replace(
        "To: <sip:gw1@127.0.0.1:5062>",
        "To: <sip:gw1@127.0.0.1:5062>;tag=x",
    );
    assert_eq!(answer(&mut endpoint, now, &in_dialog), [481]);
    endpoint.set_draining(false);
    assert_eq!(
        answer(&mut endpoint, now, &request("OPTIONS", probe, "z9hG4bKp6")),
        [200]
    );
}

#[test]
fn requests_to_us_are_answered() {
    let now = Instant::now();
    let mut endpoint = endpoint();
    let id = registered(&mut endpoint, now, "gw1");
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
    // A MESSAGE waits for the registration's owner, who answers it.
    assert_eq!(
        answer(&mut endpoint, now, &request("MESSAGE", live, "z9hG4bK2")),
        Vec::<u16>::new()
    );
    let Some(EndpointEvent::Request {
        pending,
        registration,
        request: message,
        ..
    }) = endpoint.poll_event()
    else {
        panic!("the MESSAGE is handed over");
    };
    assert_eq!(registration, Some(id));
    assert_eq!(message.call_id(), Some("in-z9hG4bK2"));
    endpoint.answer_request(now, &pending, 405, "Method Not Allowed", &[]);
    let answered = sent(&mut endpoint);
    assert_eq!(answered[0].1.code(), Some(405));
    assert_eq!(answered[0].1.header(&Name::ALLOW), Some(ALLOW));
    // An INVITE gets 100 Trying first; this one has no Contact, so no dialog can be made.
    assert_eq!(
        answer(&mut endpoint, now, &request("INVITE", live, "z9hG4bK3")),
        [100, 400]
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
    // Scanners: any Request-URI that is no live binding gets 404 (the server itself, with no
    // user, answers 200: see `draining_refuses_what_is_new`).
    for (index, uri) in ["sip:100@127.0.0.1:5062", "sip:alice@127.0.0.1"]
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
    let mut reported = events(&mut endpoint);
    assert_eq!(reported.pop(), Some(EndpointEvent::RegistrationSettled(id)));
    let last = reported.pop().unwrap();
    assert!(
        matches!(last, EndpointEvent::Registration { id: got, event: RegistrationEvent::Failed { .. } } if got == id)
    );
    // Over TCP nothing is retransmitted.
    endpoint.handle_timeout(now + Duration::from_secs(1));
    assert!(sent(&mut endpoint).is_empty());
}

const PHONE_INVITE: &str = "INVITE sip:gw1@127.0.0.1:5062 SIP/2.0\r
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKinv1\r
Record-Route: <sip:127.0.0.1:5060;lr>\r
From: <sip:bob@127.0.0.1>;tag=bob1\r
To: <sip:alice@127.0.0.1>\r
Call-ID: incall\r
CSeq: 5 INVITE\r
Contact: <sip:bob@127.0.0.1:5070>\r
Max-Forwards: 70\r
Content-Type: application/sdp\r
Content-Length: 4\r
\r
v=0\n";

#[test]
fn an_incoming_call_is_reported_rung_and_cancelled() {
    let now = Instant::now();
    let mut endpoint = endpoint();
    let registration = registered(&mut endpoint, now, "gw1");
    endpoint
        .handle_datagram(now, registrar(), PHONE_INVITE.as_bytes())
        .unwrap();
    assert_eq!(sent(&mut endpoint)[0].1.code(), Some(100));
    let Some(EndpointEvent::Incoming {
        registration: reached,
        id,
        invite,
    }) = endpoint.poll_event()
    else {
        panic!("an incoming call");
    };
    assert_eq!(reached, registration);
    assert_eq!(invite.call_id(), Some("incall"));
    // A retransmitted INVITE is absorbed by its transaction (100 again), not a second call.
    endpoint
        .handle_datagram(now, registrar(), PHONE_INVITE.as_bytes())
        .unwrap();
    assert_eq!(sent(&mut endpoint)[0].1.code(), Some(100));
    assert!(events(&mut endpoint).is_empty());

    endpoint.with_call(now, id, |call| call.ring(now));
    let ringing = sent(&mut endpoint);
    assert_eq!(ringing[0].1.code(), Some(180));
    let tag = ringing[0].1.tag(&Name::TO).unwrap().to_owned();

    let cancel = PHONE_INVITE
        .replace("INVITE sip:gw1", "CANCEL sip:gw1")
        .replace("CSeq: 5 INVITE", "CSeq: 5 CANCEL")
        .replace(
            "Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n",
            "Content-Length: 0\r\n\r\n",
        );
    endpoint
        .handle_datagram(now, registrar(), cancel.as_bytes())
        .unwrap();
    let codes: Vec<_> = sent(&mut endpoint)
        .iter()
        .map(|(_, message)| message.code())
        .collect();
    assert_eq!(codes, [Some(200), Some(487)]);
    assert!(matches!(
        &events(&mut endpoint)[..],
        [EndpointEvent::Call { event: CallEvent::Terminated(ending), .. }] if ending.cancelled
    ));
    assert_eq!(endpoint.call_count(), 0);
    // The ACK of the 487 belongs to the INVITE transaction; a BYE for the gone dialog gets 481.
    let ack = format!(
        "ACK sip:gw1@127.0.0.1:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKinv1\r\nFrom: <sip:bob@127.0.0.1>;tag=bob1\r\nTo: <sip:alice@127.0.0.1>;tag={tag}\r\nCall-ID: incall\r\nCSeq: 5 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    assert!(answer(&mut endpoint, now, &ack).is_empty());
    let bye = ack
        .replace("ACK sip", "BYE sip")
        .replace("CSeq: 5 ACK", "CSeq: 6 BYE")
        .replace("z9hG4bKinv1", "z9hG4bKbye1");
    assert_eq!(answer(&mut endpoint, now, &bye), [481]);
}

#[test]
fn an_outgoing_call_runs_through_transactions() {
    use crate::call::{CallConfig, Outgoing};
    let now = Instant::now();
    let mut endpoint = endpoint();
    let config = CallConfig {
        user: "alice".into(),
        domain: "127.0.0.1".into(),
        display_name: None,
        credentials: alice(),
        transport: Transport::Udp,
        local: "127.0.0.1:5062".into(),
        contact_user: "c1".into(),
        user_agent: "test".into(),
        tag: "ours".into(),
        seed: "x".into(),
        timers: Timers::default(),
        session_expires: None,
        min_se: 90,
    };
    let id = endpoint.invite(
        now,
        config,
        Outgoing {
            uri: crate::RequestUri::parse("sip:bob@127.0.0.1").unwrap(),
            target: None,
            route: None,
            call_id: "out1".into(),
            sdp: Bytes::from_static(b"v=0\r\n"),
            headers: vec![],
        },
        registrar(),
    );
    let (target, invite) = sent(&mut endpoint).pop().unwrap();
    assert_eq!(target, registrar());
    // Retransmitted at T1 over UDP, by the INVITE client transaction.
    let t1 = Timers::default().t1;
    endpoint.handle_timeout(now + t1);
    assert_eq!(sent(&mut endpoint).len(), 1);
    let mut ok = invite.response(200, "OK", Some("far"));
    ok.headers.insert(Name::CONTACT, "<sip:bob@127.0.0.1:5070>");
    endpoint
        .handle_datagram(now + t1, registrar(), &ok.to_bytes())
        .unwrap();
    let (target, ack) = sent(&mut endpoint).pop().unwrap();
    assert_eq!(ack.method(), Some(&Method::ACK));
    // No Record-Route: the ACK goes straight to the far end's Contact.
    assert_eq!(target.addr, "127.0.0.1:5070".parse().unwrap());
    assert!(matches!(
        &events(&mut endpoint)[..],
        [EndpointEvent::Call { id: got, event: CallEvent::Answered { .. } }] if *got == id
    ));
    // The far end hangs up.
    let bye = "BYE sip:c1@127.0.0.1:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKfarbye\r\nFrom: <sip:bob@127.0.0.1>;tag=far\r\nTo: <sip:bob@127.0.0.1>;tag=ours\r\nCall-ID: out1\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(answer(&mut endpoint, now + t1, bye), [200]);
    assert!(matches!(
        &events(&mut endpoint)[..],
        [EndpointEvent::Call {
            event: CallEvent::Terminated(_),
            ..
        }]
    ));
    assert_eq!(endpoint.call_count(), 0);
}

/// A flood of requests fills the transaction table only up to its bound: past it each new
/// request gets a stateless 503 with Retry-After and holds nothing, retransmissions of held
/// transactions are still answered from them, and room comes back as transactions end.
#[test]
fn transactions_are_bounded_and_the_excess_shed_with_503() {
    let now = Instant::now();
    let mut endpoint = endpoint_with(100);
    let uri = "sip:nobody@127.0.0.1:5062";
    for index in 0..1000 {
        let codes = answer(
            &mut endpoint,
            now,
            &request("OPTIONS", uri, &format!("z9hG4bKflood{index}")),
        );
        // Not for any registration of ours: 404, in a transaction of its own.
        let expected = if index < 100 { 404 } else { 503 };
        assert_eq!(codes, [expected], "request {index}");
    }
    assert_eq!(endpoint.server_transactions(), 100);
    assert_eq!(endpoint.shed_count(), 900);
    endpoint
        .handle_datagram(
            now,
            registrar(),
            request("OPTIONS", uri, "z9hG4bKflood1000").as_bytes(),
        )
        .unwrap();
    let shed = sent(&mut endpoint);
    assert_eq!(shed[0].1.header(&Name::RETRY_AFTER), Some("5"));
    // A retransmission of a held one gets its own answer again.
    assert_eq!(
        answer(
            &mut endpoint,
            now,
            &request("OPTIONS", uri, "z9hG4bKflood7")
        ),
        [404]
    );
    // Once they end (Timer J, 64*T1 over UDP), new requests are served again.
    let later = now + Duration::from_secs(33);
    endpoint.handle_timeout(later);
    assert_eq!(endpoint.server_transactions(), 0);
    assert_eq!(
        answer(
            &mut endpoint,
            later,
            &request("OPTIONS", uri, "z9hG4bKafter")
        ),
        [404]
    );
}

/// A phone of the local domain registered over UDP without Outbound gets an OPTIONS ping over
/// its registration's flow each interval; a ping that is answered changes nothing, one that
/// gets no response through all its retransmissions unregisters the phone.
#[test]
fn local_phones_are_pinged_and_unregistered_when_they_stop_answering() {
    let start = Instant::now();
    let mut endpoint = local_endpoint(start, Some(Duration::from_secs(25)));
    let phone = Target {
        transport: Transport::Udp,
        addr: "127.0.0.2:5090".parse().unwrap(),
    };
    let register = |branch: &str, authorization: &str| {
        format!(
            "REGISTER sip:local.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.9:5090;rport;branch={branch}\r\n\
             From: <sip:carol@local.test>;tag=c\r\nTo: <sip:carol@local.test>\r\nCall-ID: reg\r\n\
             CSeq: 1 REGISTER\r\nContact: <sip:carol@192.168.1.9:5090>\r\nMax-Forwards: 70\r\n\
             {authorization}Content-Length: 0\r\n\r\n"
        )
    };
    endpoint
        .handle_datagram(start, phone, register("z9hG4bKr1", "").as_bytes())
        .unwrap();
    let (_, challenge) = sent(&mut endpoint).pop().unwrap();
    let mut client = crate::auth::DigestClient::new(Credentials {
        username: "carol".into(),
        secret: Secret::Password("any".into()),
    });
    client.challenge(&challenge).unwrap();
    let (_, value) = client
        .authorize("REGISTER", "sip:local.test", b"", "cn")
        .unwrap();
    let authorized = register("z9hG4bKr2", &format!("Authorization: {value}\r\n"));
    endpoint
        .handle_datagram(start, phone, authorized.as_bytes())
        .unwrap();
    assert_eq!(sent(&mut endpoint).pop().unwrap().1.code(), Some(200));
    assert_eq!(
        endpoint.poll_timeout(),
        Some(start + Duration::from_secs(25))
    );

    // The first ping is answered.
    let first = start + Duration::from_secs(25);
    endpoint.handle_timeout(first);
    let ping = endpoint.poll_ping().expect("a ping is due");
    assert!(endpoint.poll_ping().is_none());
    endpoint.send_ping(first, ping, "127.0.0.1:5060");
    let (target, options) = sent(&mut endpoint).pop().unwrap();
    assert_eq!(
        target, phone,
        "over the registration's flow, not to the Contact"
    );
    assert_eq!(options.method(), Some(&Method::OPTIONS));
    let text = String::from_utf8(options.to_bytes()).unwrap();
    assert!(
        text.starts_with("OPTIONS sip:carol@192.168.1.9:5090 SIP/2.0\r\n"),
        "{text}"
    );
    let ok = options.response(200, "OK", Some("p"));
    endpoint
        .handle_datagram(first, phone, &ok.to_bytes())
        .unwrap();
    assert!(events(&mut endpoint).is_empty());
    assert_eq!(endpoint.local_bindings(first, "carol").len(), 1);

    // The next one 25 s later is not: retransmitted, then the binding goes.
    let second = first + Duration::from_secs(25);
    endpoint.handle_timeout(second);
    let ping = endpoint.poll_ping().expect("the next ping");
    endpoint.send_ping(second, ping, "127.0.0.1:5060");
    assert_eq!(sent(&mut endpoint).len(), 1);
    let mut now = second;
    while let Some(deadline) = endpoint.poll_timeout() {
        if deadline > second + Duration::from_secs(40) {
            break;
        }
        now = deadline;
        endpoint.handle_timeout(now);
        while let Some(ping) = endpoint.poll_ping() {
            endpoint.send_ping(now, ping, "127.0.0.1:5060");
        }
    }
    assert!(sent(&mut endpoint).len() > 5, "retransmitted");
    match &events(&mut endpoint)[..] {
        [EndpointEvent::BindingLost(ping)] => {
            assert_eq!(ping.user, "carol");
            assert_eq!(ping.target, phone);
        }
        other => panic!("{other:?}"),
    }
    assert!(endpoint.local_bindings(now, "carol").is_empty());
    assert!(endpoint.poll_ping().is_none());
}

/// A request held for its owner absorbs its retransmissions, is answered once, and gets 500
/// from the endpoint when nobody answers by its deadline; one for the local domain names no
/// registration.
#[test]
fn held_requests_are_answered_once_or_by_their_deadline() {
    let start = Instant::now();
    let mut endpoint = local_endpoint(start, None);
    let message = request("MESSAGE", "sip:carol@local.test", "z9hG4bKm1");
    assert!(answer(&mut endpoint, start, &message).is_empty());
    let Some(EndpointEvent::Request {
        pending,
        registration: None,
        authenticated: false,
        ..
    }) = endpoint.poll_event()
    else {
        panic!("the MESSAGE is handed over for the local domain, from a stranger");
    };
    assert_eq!(endpoint.pending_requests(), 1);
    // Its retransmission: nothing yet, and no second hand-over.
    assert!(answer(&mut endpoint, start, &message).is_empty());
    assert!(events(&mut endpoint).is_empty());
    let headers = [("Warning".to_owned(), "399 x \"later\"".to_owned())];
    endpoint.answer_request(start, &pending, 405, "Method Not Allowed", &headers);
    let answered = sent(&mut endpoint);
    assert_eq!(answered.len(), 1);
    assert_eq!(
        answered[0].1.header(&Name::WARNING),
        Some("399 x \"later\"")
    );
    // The local domain takes what its presence server does, too.
    assert_eq!(
        answered[0].1.header(&Name::ALLOW),
        Some(format!("{ALLOW}, SUBSCRIBE, PUBLISH").as_str())
    );
    // Once only; a retransmission now gets the same answer from the transaction.
    endpoint.answer_request(start, &pending, 200, "OK", &[]);
    assert!(sent(&mut endpoint).is_empty());
    assert_eq!(answer(&mut endpoint, start, &message), [405]);

    // Nobody answers the next one: 500 after 16 T1.
    let subscribe = request("SUBSCRIBE", "sip:carol@local.test", "z9hG4bKm2");
    assert!(answer(&mut endpoint, start, &subscribe).is_empty());
    assert_eq!(events(&mut endpoint).len(), 1);
    let deadline = start + Timers::default().t1 * 16;
    endpoint.handle_timeout(deadline - Duration::from_millis(1));
    assert!(sent(&mut endpoint).is_empty());
    endpoint.handle_timeout(deadline);
    let overdue = sent(&mut endpoint);
    assert_eq!(overdue.len(), 1);
    assert_eq!(overdue[0].1.code(), Some(500));
    assert_eq!(endpoint.pending_requests(), 0);
}

/// A MESSAGE for the local domain from one of its users is challenged (407) like a call, and
/// handed over as authenticated once it carries the user's credentials; wrong ones get 403.
#[test]
fn local_users_messages_are_authenticated() {
    let start = Instant::now();
    let mut endpoint = local_endpoint(start, None);
    let message = |branch: &str, extra: &str| {
        format!(
            "MESSAGE sip:dave@local.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n\
             From: <sip:carol@local.test>;tag=c\r\nTo: <sip:dave@local.test>\r\nCall-ID: m-{branch}\r\n\
             CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    endpoint
        .handle_datagram(start, registrar(), message("z9hG4bKa1", "").as_bytes())
        .unwrap();
    let challenge = sent(&mut endpoint).remove(0).1;
    assert_eq!(challenge.code(), Some(407));
    assert!(events(&mut endpoint).is_empty());
    let mut client = crate::auth::DigestClient::new(crate::Credentials {
        username: "carol".into(),
        secret: crate::Secret::Password("anything".into()),
    });
    client.challenge(&challenge).expect("a challenge");
    let (_, value) = client
        .authorize("MESSAGE", "sip:dave@local.test", b"", "cn0nce")
        .expect("authorized");
    let extra = format!("Proxy-Authorization: {value}\r\n");
    endpoint
        .handle_datagram(start, registrar(), message("z9hG4bKa2", &extra).as_bytes())
        .unwrap();
    assert!(sent(&mut endpoint).is_empty());
    let Some(EndpointEvent::Request {
        registration: None,
        authenticated: true,
        source,
        ..
    }) = endpoint.poll_event()
    else {
        panic!("the MESSAGE is handed over, authenticated");
    };
    assert_eq!(source, registrar().addr);
}

/// Another gateway of the domain (a peer) is not challenged for its calls from the domain's
/// users: it challenged them; the same call from elsewhere is.
#[test]
fn peers_calls_are_taken_without_a_challenge() {
    let start = Instant::now();
    let mut endpoint = local_endpoint(start, None);
    let invite = |branch: &str| {
        format!(
            "INVITE sip:dave@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:5060;branch={branch}\r\n\
             From: <sip:carol@local.test>;tag=c\r\nTo: <sip:dave@local.test>\r\nCall-ID: i-{branch}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:gw@127.0.0.3:5060>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let peer = Target {
        transport: Transport::Udp,
        addr: "127.0.0.3:5060".parse().unwrap(),
    };
    assert!(endpoint.is_peer(peer.addr));
    endpoint
        .handle_datagram(start, peer, invite("z9hG4bKp1").as_bytes())
        .unwrap();
    let codes: Vec<Option<u16>> = sent(&mut endpoint).iter().map(|(_, m)| m.code()).collect();
    assert!(!codes.contains(&Some(407)), "{codes:?}");
    assert!(matches!(
        endpoint.poll_event(),
        Some(EndpointEvent::LocalInvite {
            authenticated: true,
            ..
        })
    ));
    endpoint
        .handle_datagram(start, registrar(), invite("z9hG4bKp2").as_bytes())
        .unwrap();
    let codes: Vec<Option<u16>> = sent(&mut endpoint).iter().map(|(_, m)| m.code()).collect();
    assert!(codes.contains(&Some(407)), "{codes:?}");
    // Another port of the peer's host (a proxy or phone beside it) is no peer.
    let beside = Target {
        transport: Transport::Udp,
        addr: "127.0.0.3:5070".parse().unwrap(),
    };
    endpoint
        .handle_datagram(start, beside, invite("z9hG4bKp3").as_bytes())
        .unwrap();
    let codes: Vec<Option<u16>> = sent(&mut endpoint).iter().map(|(_, m)| m.code()).collect();
    assert!(codes.contains(&Some(407)), "{codes:?}");
}
