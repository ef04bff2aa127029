use std::time::{Duration, Instant};

use bytes::Bytes;
use ezk_sip_types::Name;

use super::*;
use crate::auth::{Credentials, Secret};
use crate::message::Message;
use crate::transaction::Timers;
use crate::transport::Transport;

pub(super) const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

/// The test account's call configuration (alice@example.com), also the other dialogs' tests'.
pub(crate) fn config(transport: Transport) -> CallConfig {
    CallConfig {
        user: "alice".into(),
        domain: "example.com".into(),
        display_name: Some("Alice".into()),
        credentials: Credentials {
            username: "alice".into(),
            secret: Secret::Password("secret".into()),
        },
        transport,
        local: "127.0.0.1:5062".into(),
        contact_user: "c0ffee".into(),
        user_agent: "test".into(),
        tag: "ourtag".into(),
        seed: "s".into(),
        timers: Timers::default(),
        session_expires: Some(1800),
        min_se: 90,
    }
}

pub(super) fn outgoing(now: Instant) -> Call {
    Call::outgoing(
        now,
        config(Transport::Udp),
        Outgoing {
            uri: RequestUri::parse("sip:bob@example.com").unwrap(),
            target: None,
            route: None,
            call_id: "call1".into(),
            sdp: Bytes::from_static(OFFER.as_bytes()),
            headers: vec![("X-Test".into(), "1".into())],
        },
    )
}

pub(super) fn parse(text: &str) -> Message {
    Message::parse_datagram(text.replace('\n', "\r\n").as_bytes(), 65_535).expect("parses")
}

/// Everything the call sent, as (kind, message).
pub(super) fn drain(call: &mut Call) -> Vec<(&'static str, Message)> {
    std::iter::from_fn(|| call.poll_output())
        .map(|output| match output {
            CallOutput::Request(message) => ("request", message),
            CallOutput::Ack(message) => ("ack", message),
            CallOutput::Response(message) => ("response", message),
        })
        .collect()
}

pub(super) fn events(call: &mut Call) -> Vec<CallEvent> {
    std::iter::from_fn(|| call.poll_event()).collect()
}

pub(super) fn method(message: &Message) -> String {
    message.method().map(|m| m.to_string()).unwrap_or_default()
}

pub(super) fn only_request(call: &mut Call) -> Message {
    let sent = drain(call);
    assert_eq!(
        sent.len(),
        1,
        "{:?}",
        sent.iter().map(|(k, m)| (k, method(m))).collect::<Vec<_>>()
    );
    sent.into_iter().next().expect("one").1
}

/// A response from the far end, with a To tag and optional extra headers and SDP body.
pub(super) fn reply(
    request: &Message,
    code: u16,
    tag: Option<&str>,
    extra: &[(&str, &str)],
    sdp: bool,
) -> Message {
    let mut response = request.response(code, "Reason", tag);
    for (name, value) in extra {
        response
            .headers
            .insert(Name::from(name.to_string()), value.to_string());
    }
    if sdp {
        response
            .headers
            .insert(Name::CONTENT_TYPE, "application/sdp");
        response.body = Bytes::from_static(OFFER.as_bytes());
    }
    response
}

#[test]
fn outgoing_call_with_auth_forks_ack_and_bye() {
    let now = Instant::now();
    let mut call = outgoing(now);
    let invite = only_request(&mut call);
    let text = String::from_utf8(invite.to_bytes()).expect("utf-8");
    assert!(text.starts_with("INVITE sip:bob@example.com SIP/2.0\r\n"));
    for expected in [
        "From: \"Alice\" <sip:alice@example.com>;tag=ourtag",
        "To: <sip:bob@example.com>",
        "CSeq: 1 INVITE",
        "Contact: <sip:c0ffee@127.0.0.1:5062;transport=udp>",
        "Supported: 100rel, timer",
        "Session-Expires: 1800",
        "X-Test: 1",
        "Content-Type: application/sdp",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }

    // A proxy challenge: the INVITE goes again with credentials and a new CSeq and branch.
    call.handle_response(
        now,
        &reply(
            &invite,
            407,
            Some("proxytag"),
            &[(
                "Proxy-Authenticate",
                "Digest realm=\"example.com\", nonce=\"n1\", qop=\"auth\"",
            )],
            false,
        ),
    );
    let invite2 = only_request(&mut call);
    assert_eq!(invite2.cseq().expect("cseq").cseq, 2);
    assert!(invite2.header(&Name::PROXY_AUTHORIZATION).is_some());
    assert_ne!(
        invite2.vias().expect("via")[0].params.get_val("branch"),
        invite.vias().expect("via")[0].params.get_val("branch")
    );

    // Two forks ring; one brings early media.
    call.handle_response(
        now,
        &reply(
            &invite2,
            180,
            Some("forkA"),
            &[("Contact", "<sip:a@10.0.0.1>")],
            false,
        ),
    );
    call.handle_response(
        now,
        &reply(
            &invite2,
            183,
            Some("forkB"),
            &[("Contact", "<sip:b@10.0.0.2>")],
            true,
        ),
    );
    let seen = events(&mut call);
    assert!(
        matches!(&seen[0], CallEvent::Provisional { code: 180, sdp: None, tag: Some(tag), .. } if tag == "forkA")
    );
    assert!(
        matches!(&seen[1], CallEvent::Provisional { code: 183, sdp: Some(_), tag: Some(tag), .. } if tag == "forkB")
    );

    // Fork B answers: ACK to its Contact through the reversed Record-Route.
    let ok = reply(
        &invite2,
        200,
        Some("forkB"),
        &[
            ("Contact", "<sip:b@10.0.0.2:5070>"),
            ("Record-Route", "<sip:p2;lr>, <sip:p1;lr>"),
        ],
        true,
    );
    call.handle_response(now, &ok);
    let ack = only_request(&mut call);
    let ack_text = String::from_utf8(ack.to_bytes()).expect("utf-8");
    assert!(
        ack_text.starts_with("ACK sip:b@10.0.0.2:5070 SIP/2.0\r\n"),
        "{ack_text}"
    );
    assert!(ack_text.contains("Route: <sip:p1;lr>\r\nRoute: <sip:p2;lr>\r\n"));
    assert!(ack_text.contains("CSeq: 2 ACK"));
    assert!(ack_text.contains("Proxy-Authorization: "));
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Answered { sdp: Some(_) }]
    ));
    assert_eq!(call.next_hop(), Some("sip:p1;lr"));

    // Its retransmission gets the same ACK; fork A's late 2xx gets ACK then BYE.
    call.handle_response(now, &ok);
    let again = drain(&mut call);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.to_bytes(), ack.to_bytes());
    call.handle_response(
        now,
        &reply(
            &invite2,
            200,
            Some("forkA"),
            &[("Contact", "<sip:a@10.0.0.1>")],
            true,
        ),
    );
    let sent = drain(&mut call);
    let kinds: Vec<_> = sent.iter().map(|(kind, m)| (*kind, method(m))).collect();
    assert_eq!(kinds, [("ack", "ACK".into()), ("request", "BYE".into())]);
    assert_eq!(sent[1].1.tag(&Name::TO), Some("forkA"));
    assert!(
        events(&mut call).is_empty(),
        "the second fork is not reported"
    );

    // We hang up: BYE, challenged, sent again with credentials.
    call.hangup(now);
    let bye = only_request(&mut call);
    assert_eq!(method(&bye), "BYE");
    assert_eq!(bye.tag(&Name::TO), Some("forkB"));
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Terminated(Ending { code: None, .. })]
    ));
    call.handle_response(
        now,
        &reply(
            &bye,
            407,
            Some("forkB"),
            &[(
                "Proxy-Authenticate",
                "Digest realm=\"example.com\", nonce=\"n2\"",
            )],
            false,
        ),
    );
    let bye2 = only_request(&mut call);
    assert!(bye2.header(&Name::PROXY_AUTHORIZATION).is_some());
    assert!(bye2.cseq().expect("cseq").cseq > bye.cseq().expect("cseq").cseq);
    assert!(!call.is_done());
    call.handle_response(now, &reply(&bye2, 200, Some("forkB"), &[], false));
    assert!(call.is_done());
    assert!(events(&mut call).is_empty(), "terminated is reported once");
}

#[test]
fn hangup_before_any_provisional_waits_then_cancels() {
    let now = Instant::now();
    let mut call = outgoing(now);
    let invite = only_request(&mut call);
    call.hangup(now);
    assert!(
        drain(&mut call).is_empty(),
        "no CANCEL before a provisional response"
    );
    assert!(matches!(&events(&mut call)[..], [CallEvent::Terminated(_)]));
    call.handle_response(now, &reply(&invite, 100, None, &[], false));
    let cancel = only_request(&mut call);
    assert_eq!(method(&cancel), "CANCEL");
    assert_eq!(cancel.header(&Name::CSEQ), Some("1 CANCEL"));
    assert_eq!(cancel.header(&Name::VIA), invite.header(&Name::VIA));
    call.handle_response(now, &reply(&invite, 487, Some("t"), &[], false));
    assert!(call.is_done());
    assert!(events(&mut call).is_empty());
}

/// A branch of a fork another branch answered: its CANCEL says so (RFC 3326), and a plain
/// hang-up's does not.
#[test]
fn a_cancel_for_a_call_answered_elsewhere_gives_the_reason() {
    let now = Instant::now();
    let mut call = outgoing(now);
    let invite = only_request(&mut call);
    call.handle_response(now, &reply(&invite, 180, Some("t"), &[], false));
    call.hangup_answered_elsewhere(now);
    let cancel = only_request(&mut call);
    assert_eq!(method(&cancel), "CANCEL");
    assert_eq!(
        cancel.header(&Name::from("Reason".to_owned())),
        Some("SIP;cause=200;text=\"Call completed elsewhere\"")
    );
    assert!(answered_elsewhere(&cancel), "our own reading of it agrees");
    let mut plain = outgoing(now);
    let invite = only_request(&mut plain);
    plain.handle_response(now, &reply(&invite, 180, Some("t"), &[], false));
    plain.hangup(now);
    let cancel = only_request(&mut plain);
    assert_eq!(cancel.header(&Name::from("Reason".to_owned())), None);
}

#[test]
fn a_2xx_crossing_our_cancel_is_acked_then_ended() {
    let now = Instant::now();
    let mut call = outgoing(now);
    let invite = only_request(&mut call);
    call.handle_response(
        now,
        &reply(
            &invite,
            180,
            Some("t"),
            &[("Contact", "<sip:b@10.0.0.2>")],
            false,
        ),
    );
    call.hangup(now);
    assert_eq!(method(&only_request(&mut call)), "CANCEL");
    call.handle_response(
        now,
        &reply(
            &invite,
            200,
            Some("t"),
            &[("Contact", "<sip:b@10.0.0.2>")],
            true,
        ),
    );
    let sent = drain(&mut call);
    let kinds: Vec<_> = sent.iter().map(|(kind, m)| (*kind, method(m))).collect();
    assert_eq!(kinds, [("ack", "ACK".into()), ("request", "BYE".into())]);
    let seen = events(&mut call);
    assert_eq!(
        seen.iter()
            .filter(|e| matches!(e, CallEvent::Terminated(_)))
            .count(),
        1
    );
    assert!(!seen.iter().any(|e| matches!(e, CallEvent::Answered { .. })));
    call.handle_response(now, &reply(&sent[1].1, 200, Some("t"), &[], false));
    assert!(call.is_done());
}

#[test]
fn reliable_provisional_responses_get_one_prack_each() {
    let now = Instant::now();
    let mut call = outgoing(now);
    let invite = only_request(&mut call);
    let early = reply(
        &invite,
        183,
        Some("t"),
        &[
            ("Contact", "<sip:b@10.0.0.2>"),
            ("Require", "100rel"),
            ("RSeq", "7"),
        ],
        true,
    );
    call.handle_response(now, &early);
    let prack = only_request(&mut call);
    assert_eq!(method(&prack), "PRACK");
    assert_eq!(prack.header(&Name::RACK), Some("7 1 INVITE"));
    assert_eq!(prack.tag(&Name::TO), Some("t"));
    call.handle_response(now, &early);
    assert!(
        drain(&mut call).is_empty(),
        "a retransmission is not PRACKed again"
    );
}

#[test]
fn failures_end_the_call_with_their_reason() {
    let now = Instant::now();
    let mut call = outgoing(now);
    let invite = only_request(&mut call);
    call.handle_response(now, &reply(&invite, 486, Some("t"), &[], false));
    assert!(call.is_done());
    assert!(
        matches!(&events(&mut call)[..], [CallEvent::Terminated(Ending { code: Some(486), reason, .. })] if reason == "486 Reason")
    );

    let mut call = outgoing(now);
    let invite = only_request(&mut call);
    call.handle_failure(now, &invite, true);
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Terminated(Ending {
            code: Some(408),
            ..
        })]
    ));

    // A second challenge for the same credentials is a failure, not a loop.
    let mut call = outgoing(now);
    let invite = only_request(&mut call);
    let challenge = [(
        "WWW-Authenticate",
        "Digest realm=\"example.com\", nonce=\"n1\"",
    )];
    call.handle_response(now, &reply(&invite, 401, Some("t"), &challenge, false));
    let invite2 = only_request(&mut call);
    call.handle_response(now, &reply(&invite2, 401, Some("t"), &challenge, false));
    assert!(drain(&mut call).is_empty());
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Terminated(Ending {
            code: Some(401),
            ..
        })]
    ));
}

#[test]
fn session_interval_too_small_is_retried_once_with_the_minimum() {
    let now = Instant::now();
    let mut call = outgoing(now);
    let invite = only_request(&mut call);
    call.handle_response(
        now,
        &reply(&invite, 422, Some("t"), &[("Min-SE", "3600")], false),
    );
    let invite2 = only_request(&mut call);
    assert_eq!(invite2.header(&Name::SESSION_EXPIRES), Some("3600"));
    assert_eq!(invite2.header(&Name::MIN_SE), Some("3600"));
    call.handle_response(
        now,
        &reply(&invite2, 422, Some("t"), &[("Min-SE", "7200")], false),
    );
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Terminated(Ending {
            code: Some(422),
            ..
        })]
    ));
}

pub(super) const INCOMING: &str = "INVITE sip:c0ffee@127.0.0.1:5062;transport=udp SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKphone
Max-Forwards: 69
Record-Route: <sip:127.0.0.1:5060;lr>
From: \"Bob\" <sip:bob@example.com>;tag=bobtag
To: <sip:alice@example.com>
Call-ID: in1
CSeq: 20 INVITE
Contact: <sip:bob@127.0.0.1:5070>
Allow: INVITE, ACK, BYE, CANCEL, UPDATE
Supported: timer
Session-Expires: 120;refresher=uas
Content-Type: application/sdp
Content-Length: 0

";

pub(super) fn incoming(now: Instant, sdp: bool, extra: &str) -> (Call, Message) {
    let mut text = INCOMING.replace(
        "Content-Length: 0\n",
        &format!("{extra}Content-Length: 0\n"),
    );
    if sdp {
        text = text.replace(
            "Content-Length: 0\n\n",
            &format!(
                "Content-Length: {}\n\n{}",
                OFFER.len(),
                OFFER.replace("\r\n", "\n")
            ),
        );
    }
    let invite = parse(&text);
    let call = Call::incoming(now, config(Transport::Udp), &invite).expect("accepted");
    (call, invite)
}

/// A request from the far end in the dialog.
pub(super) fn in_dialog(method: &str, cseq: u32, extra: &str, body: &str) -> Message {
    parse(&format!(
        "{method} sip:c0ffee@127.0.0.1:5062 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{method}{cseq}
Max-Forwards: 70
From: \"Bob\" <sip:bob@example.com>;tag=bobtag
To: <sip:alice@example.com>;tag=ourtag
Call-ID: in1
CSeq: {cseq} {method}
Contact: <sip:bob@127.0.0.1:5071>
{extra}Content-Length: {}

{body}",
        body.len()
    ))
}

#[test]
fn incoming_call_rings_answers_retransmits_until_ack_and_ends_on_bye() {
    let t1 = Duration::from_millis(500);
    let now = Instant::now();
    let (mut call, _) = incoming(now, true, "");
    call.ring(now);
    let ringing = only_request(&mut call);
    assert_eq!(ringing.code(), Some(180));
    assert_eq!(ringing.tag(&Name::TO), Some("ourtag"));
    assert_eq!(
        ringing.header(&Name::RECORD_ROUTE),
        Some("<sip:127.0.0.1:5060;lr>")
    );
    assert!(ringing.header(&Name::CONTACT).is_some());

    call.answer(
        now,
        Bytes::from_static(b"answer"),
        &[("X-Answered".into(), "yes".into())],
    );
    let ok = only_request(&mut call);
    assert_eq!(ok.code(), Some(200));
    assert_eq!(ok.body, Bytes::from_static(b"answer"));
    assert_eq!(ok.header(&Name::SESSION_EXPIRES), Some("120;refresher=uas"));
    assert!(ok.header(&Name::from("X-Answered".to_owned())).is_some());
    // Retransmitted at T1, then 2*T1, until the ACK.
    assert_eq!(call.poll_timeout(), Some(now + t1));
    call.handle_timeout(now + t1);
    assert_eq!(drain(&mut call).len(), 1);
    assert_eq!(call.poll_timeout(), Some(now + t1 * 3));
    call.handle_request(now + t1, &in_dialog("ACK", 20, "", ""));
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Confirmed { sdp: None }]
    ));
    call.handle_timeout(now + t1 * 3);
    assert!(
        drain(&mut call).is_empty(),
        "no retransmission after the ACK"
    );

    // We refresh (refresher=uas): at half the interval, by UPDATE since the caller allows it.
    let refresh_at = now + t1 + Duration::from_secs(60);
    assert!(call.poll_timeout().is_some_and(|due| due <= refresh_at));
    call.handle_timeout(refresh_at);
    let update = only_request(&mut call);
    assert_eq!(method(&update), "UPDATE");
    assert_eq!(
        update.header(&Name::SESSION_EXPIRES),
        Some("120;refresher=uac")
    );
    assert_eq!(update.header(&Name::ROUTE), Some("<sip:127.0.0.1:5060;lr>"));
    call.handle_response(
        refresh_at,
        &reply(
            &update,
            200,
            None,
            &[("Session-Expires", "120;refresher=uac")],
            false,
        ),
    );

    call.handle_request(now, &in_dialog("BYE", 21, "", ""));
    let sent = drain(&mut call);
    assert_eq!(sent[0].1.code(), Some(200));
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Terminated(Ending { code: None, .. })]
    ));
    assert!(call.is_done());
}

#[test]
fn no_ack_ends_the_call_with_bye() {
    let now = Instant::now();
    let (mut call, _) = incoming(now, true, "");
    call.answer(now, Bytes::from_static(b"answer"), &[]);
    drain(&mut call);
    let mut at = now;
    while let Some(due) = call.poll_timeout() {
        if due > now + Duration::from_secs(40) {
            break;
        }
        at = due;
        call.handle_timeout(at);
        if call.is_terminated() {
            break;
        }
    }
    assert!(at >= now + Duration::from_secs(32));
    let sent = drain(&mut call);
    let bye = sent
        .iter()
        .find(|(_, m)| method(m) == "BYE")
        .expect("a BYE");
    assert_eq!(bye.1.header(&Name::ROUTE), Some("<sip:127.0.0.1:5060;lr>"));
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Terminated(Ending {
            code: Some(408),
            ..
        })]
    ));
}

#[test]
fn cancel_reject_and_extensions() {
    let now = Instant::now();
    let (mut call, _) = incoming(now, true, "");
    call.ring(now);
    drain(&mut call);
    call.handle_cancel();
    assert_eq!(only_request(&mut call).code(), Some(487));
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Terminated(Ending {
            cancelled: true,
            code: Some(487),
            ..
        })]
    ));
    assert!(call.is_done());

    let (mut call, _) = incoming(now, true, "");
    call.reject(603, "Decline");
    assert_eq!(only_request(&mut call).code(), Some(603));
    assert!(call.is_done());

    // A refusal can say why, in a Warning header (quotes and line ends made safe).
    let (mut call, _) = incoming(now, true, "");
    let warning = Warning::new(
        Warning::INCOMPATIBLE_TRANSPORT,
        "no \"RTP/SAVP\"\r\nX-Injected: 1",
    );
    call.reject_with(488, "Not Acceptable Here", Some(&warning));
    let response = only_request(&mut call);
    assert_eq!(response.code(), Some(488));
    assert_eq!(
        response.header(&Name::WARNING),
        Some(r#"302 sylkrtc-gateway "no \"RTP/SAVP\"  X-Injected: 1""#)
    );

    let invite = parse(&INCOMING.replace("Supported: timer\n", "Require: foo, timer\n"));
    let refused = Call::incoming(now, config(Transport::Udp), &invite).expect_err("refused");
    assert_eq!(refused.code(), Some(420));
    assert_eq!(refused.header(&Name::UNSUPPORTED), Some("foo"));

    let invite =
        parse(&INCOMING.replace("Session-Expires: 120;refresher=uas", "Session-Expires: 30"));
    let refused = Call::incoming(now, config(Transport::Udp), &invite).expect_err("refused");
    assert_eq!(refused.code(), Some(422));
    assert_eq!(refused.header(&Name::MIN_SE), Some("90"));
}

/// An INVITE that requires 100rel gets a reliable 180 (RFC 3262): `Require: 100rel` and an
/// RSeq, retransmitted from T1 (doubling) until a PRACK names it; a PRACK for anything else
/// gets 481; with no PRACK within 64*T1 the INVITE is refused with a 5xx.
#[test]
fn a_required_100rel_gets_a_reliable_180_until_its_prack() {
    let t1 = Duration::from_millis(500);
    let now = Instant::now();
    let (mut call, invite) = incoming(now, true, "Require: 100rel\n");
    call.ring(now);
    let ringing = only_request(&mut call);
    assert_eq!(ringing.code(), Some(180));
    assert_eq!(ringing.header(&Name::REQUIRE), Some("100rel"));
    let rseq = ringing
        .header(&Name::RSEQ)
        .expect("an RSeq")
        .trim()
        .to_owned();
    assert_eq!(call.poll_timeout(), Some(now + t1));
    call.handle_timeout(now + t1);
    assert_eq!(only_request(&mut call).code(), Some(180));
    assert_eq!(call.poll_timeout(), Some(now + t1 * 3));
    // A PRACK naming another RSeq: 481, and the 180 goes on.
    let cseq = invite.cseq().unwrap().cseq;
    let prack = |n: u32, rack: String| in_dialog("PRACK", cseq + n, &format!("RAck: {rack}\n"), "");
    call.handle_request(now + t1 * 2, &prack(1, format!("999 {cseq} INVITE")));
    assert_eq!(only_request(&mut call).code(), Some(481));
    call.handle_request(now + t1 * 2, &prack(2, format!("{rseq} {cseq} INVITE")));
    assert_eq!(only_request(&mut call).code(), Some(200));
    assert_eq!(call.poll_timeout(), None, "no more retransmissions");
    // The call is answered as usual afterwards.
    call.answer(now + t1 * 3, Bytes::from_static(b"answer"), &[]);
    assert_eq!(only_request(&mut call).code(), Some(200));

    // No PRACK at all: 504 after 64*T1.
    let (mut call, _) = incoming(now, true, "Require: 100rel\n");
    call.ring(now);
    drain(&mut call);
    let mut at = now;
    while let Some(next) = call.poll_timeout() {
        at = next;
        call.handle_timeout(at);
        if call.is_done() {
            break;
        }
    }
    let last = drain(&mut call);
    assert_eq!(
        last.last().and_then(|(_, message)| message.code()),
        Some(504),
        "{last:?}"
    );
    assert!(at >= now + t1 * 64);
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Terminated(Ending {
            code: Some(504),
            ..
        })]
    ));
}

#[test]
fn a_cancel_answered_elsewhere_is_not_a_missed_call() {
    let now = Instant::now();
    let cancel = |reason: &str| {
        parse(&format!(
            "CANCEL sip:alice@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKinv
Max-Forwards: 70
From: \"Bob\" <sip:bob@example.com>;tag=bobtag
To: <sip:alice@example.com>
Call-ID: in1
CSeq: 1 CANCEL
{reason}Content-Length: 0

"
        ))
    };
    for (reason, missed) in [
        (
            "Reason: SIP;cause=200;text=\"Call completed elsewhere\"\n",
            false,
        ),
        ("Reason: Q.850;cause=16, SIP ;cause=200\n", false),
        ("Reason: SIP;cause=487\n", true),
        ("", true),
    ] {
        let (mut call, _) = incoming(now, true, "");
        call.ring(now);
        drain(&mut call);
        call.handle_cancel_of(&cancel(reason));
        assert_eq!(only_request(&mut call).code(), Some(487), "{reason}");
        match &events(&mut call)[..] {
            [CallEvent::Terminated(ending)] => {
                assert_eq!(ending.cancelled, missed, "{reason}");
                if !missed {
                    assert_eq!(ending.reason, "answered elsewhere");
                }
            }
            other => panic!("{other:?}"),
        }
    }
}

/// UPDATE while the call rings (the early dialog): without a body it is answered 200; with an
/// offer, while the INVITE's offer has no answer yet, 500 with a Retry-After of 1 to 10 s
/// (RFC 3311 section 5.2), and the call goes on ringing.
#[test]
fn an_update_in_the_early_dialog_is_answered() {
    let now = Instant::now();
    let (mut call, _) = incoming(now, true, "");
    call.ring(now);
    drain(&mut call);
    events(&mut call);
    call.handle_request(now, &in_dialog("UPDATE", 21, "", ""));
    assert_eq!(only_request(&mut call).code(), Some(200));
    call.handle_request(
        now,
        &in_dialog(
            "UPDATE",
            22,
            "Content-Type: application/sdp\n",
            "v=0 sendonly\n",
        ),
    );
    let refused = only_request(&mut call);
    assert_eq!(refused.code(), Some(500));
    let retry: u32 = refused
        .header(&Name::RETRY_AFTER)
        .and_then(|value| value.trim().parse().ok())
        .expect("Retry-After");
    assert!((1..=10).contains(&retry), "{retry}");
    assert!(events(&mut call).is_empty());
    assert!(!call.is_done());
}
