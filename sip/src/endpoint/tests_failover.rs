//! Failing over between the servers of a domain (RFC 3263 section 4.3): registrations and
//! calls move to the next server when one times out, fails at the transport or answers 503.

use std::time::Duration;

use super::tests::{alice, endpoint, events, registration, sent};
use super::*;
use crate::call::{CallConfig, Outgoing};
use crate::transport::Transport;
use ezk_sip_types::Name;

fn server(port: u16) -> Target {
    Target {
        transport: Transport::Udp,
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
    }
}

/// Runs the timers until something is sent (or `limit` passes); returns what was sent.
fn until_sent(
    endpoint: &mut Endpoint,
    now: &mut Instant,
    limit: Duration,
) -> Vec<(Target, Message)> {
    let end = *now + limit;
    loop {
        let out = sent(endpoint);
        if !out.is_empty() {
            return out;
        }
        match endpoint.poll_timeout() {
            Some(deadline) if deadline <= end => {
                *now = deadline.max(*now);
                endpoint.handle_timeout(*now);
            }
            _ => return Vec::new(),
        }
    }
}

#[test]
fn a_registration_moves_to_the_next_server_on_timeout_503_and_transport_errors() {
    let start = Instant::now();
    let mut now = start;
    let mut endpoint = endpoint();
    let (first, second, third) = (server(5071), server(5072), server(5073));
    let id = endpoint.register(now, registration("c1"), first);
    endpoint.set_registration_targets(id, vec![first, second, third]);
    let (target, register) = sent(&mut endpoint).pop().unwrap();
    assert_eq!(target, first);
    // The first never answers: its retransmissions, then Timer F, then the second server.
    let mut retransmissions = 0;
    let moved = loop {
        let out = until_sent(&mut endpoint, &mut now, Duration::from_secs(40));
        assert!(!out.is_empty(), "nothing after {:?}", now - start);
        let (target, message) = out.into_iter().next().unwrap();
        if target == first {
            retransmissions += 1;
            continue;
        }
        break (target, message);
    };
    assert!(retransmissions > 3);
    assert_eq!(moved.0, second);
    assert_ne!(
        top_branch(&moved.1),
        top_branch(&register),
        "a new transaction"
    );
    assert!(
        events(&mut endpoint).iter().all(|event| !matches!(
            event,
            EndpointEvent::Registration {
                event: RegistrationEvent::Failed { .. },
                ..
            }
        )),
        "a failover is not a failure"
    );
    // The second answers 503: the third.
    let unavailable = moved.1.response(503, "Service Unavailable", Some("s"));
    endpoint
        .handle_datagram(now, second, &unavailable.to_bytes())
        .unwrap();
    let (target, request) = sent(&mut endpoint).pop().unwrap();
    assert_eq!(target, third);
    let mut ok = request.response(200, "OK", Some("t"));
    ok.headers.insert(Name::EXPIRES, "600");
    endpoint
        .handle_datagram(now, third, &ok.to_bytes())
        .unwrap();
    assert!(
        events(&mut endpoint).contains(&EndpointEvent::Registration {
            id,
            event: RegistrationEvent::Registered { expires: 600 }
        })
    );
    // Refreshes stay with the server that answered.
    let (target, _) = until_sent(&mut endpoint, &mut now, Duration::from_secs(700))
        .pop()
        .unwrap();
    assert_eq!(target, third);
    // A transport error there: the others are tried in turn (wrapping round to the first),
    // and only every server failing is a failure, retried later from the first.
    endpoint.handle_transport_error(now, third);
    let (target, _) = sent(&mut endpoint).pop().unwrap();
    assert_eq!(target, first);
    endpoint.handle_transport_error(now, first);
    let (target, _) = sent(&mut endpoint).pop().unwrap();
    assert_eq!(target, second);
    assert!(events(&mut endpoint).is_empty());
    endpoint.handle_transport_error(now, second);
    assert!(sent(&mut endpoint).is_empty());
    assert!(events(&mut endpoint).iter().any(|event| matches!(
        event,
        EndpointEvent::Registration {
            event: RegistrationEvent::Failed {
                retry_in: Some(_),
                ..
            },
            ..
        }
    )));
    let (target, _) = until_sent(&mut endpoint, &mut now, Duration::from_secs(600))
        .pop()
        .unwrap();
    assert_eq!(target, first);
}

fn call_config() -> CallConfig {
    CallConfig {
        user: "alice".into(),
        domain: "example.com".into(),
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
    }
}

#[test]
fn an_invite_fails_over_until_a_server_answers_and_not_after_a_provisional_response() {
    let now = Instant::now();
    let mut endpoint = endpoint();
    let (first, second, third) = (server(5071), server(5072), server(5073));
    let id = endpoint.invite(
        now,
        call_config(),
        Outgoing {
            uri: crate::RequestUri::parse("sip:bob@example.com").unwrap(),
            target: None,
            route: None,
            call_id: "out1".into(),
            sdp: Bytes::from_static(b"v=0\r\n"),
            headers: vec![],
        },
        first,
    );
    endpoint.set_call_targets(id, vec![first, second, third]);
    let (target, invite) = sent(&mut endpoint).pop().unwrap();
    assert_eq!(target, first);
    // A transport error at the first: the INVITE goes to the second, a new transaction.
    endpoint.handle_transport_error(now, first);
    let (target, again) = sent(&mut endpoint).pop().unwrap();
    assert_eq!(target, second);
    assert_eq!(again.method(), Some(&Method::INVITE));
    assert_ne!(top_branch(&again), top_branch(&invite));
    // 503 from the second: ACKed by its transaction, then the third.
    let unavailable = again.response(503, "Service Unavailable", Some("s"));
    endpoint
        .handle_datagram(now, second, &unavailable.to_bytes())
        .unwrap();
    let out = sent(&mut endpoint);
    let methods: Vec<_> = out
        .iter()
        .map(|(target, message)| (*target, message.method().cloned()))
        .collect();
    assert_eq!(
        methods,
        [(second, Some(Method::ACK)), (third, Some(Method::INVITE))]
    );
    assert!(
        events(&mut endpoint).is_empty(),
        "the call knows nothing of it"
    );
    // The third rings, then answers 503: committed to it, the call fails with that.
    let invite = out[1].1.clone();
    let ringing = invite.response(180, "Ringing", Some("r"));
    endpoint
        .handle_datagram(now, third, &ringing.to_bytes())
        .unwrap();
    let unavailable = invite.response(503, "Service Unavailable", Some("r"));
    endpoint
        .handle_datagram(now, third, &unavailable.to_bytes())
        .unwrap();
    let out = sent(&mut endpoint);
    assert!(
        out.iter()
            .all(|(target, message)| *target == third && message.method() == Some(&Method::ACK)),
        "{out:?}"
    );
    assert!(events(&mut endpoint).iter().any(|event| matches!(
        event,
        EndpointEvent::Call { event: CallEvent::Terminated(ending), .. } if ending.code == Some(503)
    )));
}

/// A MESSAGE for an account: the first server answers nothing, so it goes to the next (a new
/// transaction with a new CSeq), whose challenge it answers; the 2xx after that is its outcome,
/// reported once.
#[test]
fn a_message_fails_over_answers_its_challenge_and_reports_its_outcome() {
    let mut now = Instant::now();
    let mut endpoint = endpoint();
    let config = call_config();
    let request = message_request("msg1");
    let id = endpoint.send_request(now, config, request, vec![server(5060), server(5070)]);
    let first = sent(&mut endpoint);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, server(5060));
    // Retransmitted to the first server until timer F, then sent to the second.
    let mut moved = Vec::new();
    while moved.is_empty() {
        let out = until_sent(&mut endpoint, &mut now, Duration::from_secs(40));
        assert!(!out.is_empty(), "nothing sent");
        moved = out
            .into_iter()
            .filter(|(to, _)| *to == server(5070))
            .collect();
    }
    let (_, second) = moved.remove(0);
    assert_eq!(second.cseq().unwrap().cseq, 2);
    let mut challenge = second.response(401, "Unauthorized", Some("far"));
    challenge.headers.insert(
        Name::WWW_AUTHENTICATE,
        "Digest realm=\"127.0.0.1\", nonce=\"n\", qop=\"auth\"",
    );
    endpoint
        .handle_datagram(now, server(5070), &challenge.to_bytes())
        .unwrap();
    let third = sent(&mut endpoint);
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].0, server(5070));
    assert!(third[0].1.header(&Name::AUTHORIZATION).is_some());
    assert!(events(&mut endpoint).is_empty());
    let ok = third[0].1.response(200, "OK", Some("far"));
    endpoint
        .handle_datagram(now, server(5070), &ok.to_bytes())
        .unwrap();
    assert_eq!(
        events(&mut endpoint),
        [EndpointEvent::RequestDone {
            id,
            outcome: crate::RequestOutcome {
                code: 200,
                reason: "OK".into()
            }
        }]
    );
    assert_eq!(endpoint.outgoing_requests(), 0);
}

/// A MESSAGE nobody answers, with no other server: 408 after timer F.
#[test]
fn an_unanswered_message_ends_with_408() {
    let mut now = Instant::now();
    let mut endpoint = endpoint();
    let config = call_config();
    let request = message_request("msg2");
    let id = endpoint.send_request(now, config, request, vec![server(5060)]);
    while until_sent(&mut endpoint, &mut now, Duration::from_secs(40)).len() == 1 {}
    assert!(matches!(
        &events(&mut endpoint)[..],
        [EndpointEvent::RequestDone { id: got, outcome }] if *got == id && outcome.code == 408
    ));
}

/// A short MESSAGE to bob with Call-ID `call_id`.
fn message_request(call_id: &str) -> crate::request::OutgoingRequest {
    crate::request::OutgoingRequest {
        method: Method::MESSAGE,
        uri: crate::RequestUri::parse("sip:bob@127.0.0.1").unwrap(),
        contact: None,
        route: None,
        call_id: call_id.into(),
        content_type: "text/plain".into(),
        body: Bytes::from_static(b"hi"),
        headers: vec![],
    }
}
