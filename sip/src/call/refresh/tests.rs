//! Mid-dialog offers and refreshes: re-INVITEs both ways, glare, session timers, INFO, and a
//! cancelled re-INVITE.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ezk_sip_types::{Method, Name};

use crate::call::tests::*;
use crate::call::*;

fn confirmed(now: Instant) -> Call {
    let (mut call, _) = incoming(now, true, "");
    call.answer(now, Bytes::from_static(b"answer"), &[]);
    call.handle_request(now, &in_dialog("ACK", 20, "", ""));
    drain(&mut call);
    events(&mut call);
    call
}

/// A confirmed call given the phone's hold (a re-INVITE with a sendonly offer).
fn held(now: Instant) -> Call {
    let mut call = confirmed(now);
    let hold = in_dialog(
        "INVITE",
        21,
        "Content-Type: application/sdp\n",
        "v=0 sendonly\n",
    );
    call.handle_request(now, &hold);
    call
}

#[test]
fn reinvites_are_handed_to_the_owner_and_glare_gets_491() {
    let now = Instant::now();
    let mut call = held(now);
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Offer { sdp: Some(_) }]
    ));
    // A second offer while the first is pending: glare.
    call.handle_request(
        now,
        &in_dialog("UPDATE", 22, "Content-Type: application/sdp\n", "v=0\n"),
    );
    assert_eq!(only_request(&mut call).code(), Some(491));
    call.answer_offer(now, Bytes::from_static(b"recvonly answer"));
    let ok = only_request(&mut call);
    assert_eq!(ok.code(), Some(200));
    assert_eq!(ok.body, Bytes::from_static(b"recvonly answer"));
    call.handle_request(now, &in_dialog("ACK", 21, "", ""));
    // The new Contact of the re-INVITE is the new remote target.
    call.hangup(now);
    let bye = only_request(&mut call);
    assert!(
        String::from_utf8(bye.to_bytes())
            .expect("utf-8")
            .starts_with("BYE sip:bob@127.0.0.1:5071 SIP/2.0")
    );

    // Offerless re-INVITE: we offer in the 200, the ACK answers.
    let mut call = confirmed(now);
    call.handle_request(now, &in_dialog("INVITE", 21, "", ""));
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Offer { sdp: None }]
    ));
    call.answer_offer(now, Bytes::from_static(b"our offer"));
    assert_eq!(only_request(&mut call).code(), Some(200));
    call.handle_request(
        now,
        &in_dialog("ACK", 21, "Content-Type: application/sdp\n", "their answer"),
    );
    assert!(
        matches!(&events(&mut call)[..], [CallEvent::Answer { sdp }] if sdp == &Bytes::from_static(b"their answer"))
    );

    // An old CSeq is refused; INFO is passed on; an unknown method gets 405.
    let mut call = confirmed(now);
    call.handle_request(now, &in_dialog("INFO", 19, "", ""));
    assert_eq!(only_request(&mut call).code(), Some(500));
    call.handle_request(
        now,
        &in_dialog(
            "INFO",
            23,
            "Content-Type: application/dtmf-relay\n",
            "Signal=5\r\nDuration=160\r\n",
        ),
    );
    assert_eq!(only_request(&mut call).code(), Some(200));
    assert!(
        matches!(&events(&mut call)[..], [CallEvent::Info { content_type, .. }] if content_type == "application/dtmf-relay")
    );
    // A MESSAGE in the dialog is taken and handed over; a method the call has no use for
    // gets 405.
    call.handle_request(
        now,
        &in_dialog("MESSAGE", 24, "Content-Type: text/plain\n", "hi"),
    );
    assert_eq!(only_request(&mut call).code(), Some(200));
    assert!(
        matches!(&events(&mut call)[..], [CallEvent::Message { content_type, body }]
            if content_type == "text/plain" && &body[..] == b"hi")
    );
    call.handle_request(now, &in_dialog("SUBSCRIBE", 25, "", ""));
    assert_eq!(only_request(&mut call).code(), Some(405));
    // Ours goes in the dialog; its answer is reported.
    assert!(call.message("text/plain", bytes::Bytes::from_static(b"hello")));
    let sent = only_request(&mut call);
    assert_eq!(sent.method(), Some(&ezk_sip_types::Method::MESSAGE));
    assert_eq!(&sent.body[..], b"hello");
    let ok = sent.response(200, "OK", None);
    call.handle_response(now, &ok);
    assert_eq!(
        events(&mut call),
        [CallEvent::MessageAnswered {
            code: 200,
            reason: "OK".into()
        }]
    );
    // Too large for UDP: refused here, nothing sent.
    assert!(!call.message("text/plain", bytes::Bytes::from(vec![b'x'; 1000])));
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::MessageAnswered { code: 513, .. }]
    ));
}

#[test]
fn our_reoffer_goes_in_a_reinvite_and_its_answer_or_refusal_comes_back() {
    let now = Instant::now();
    let mut call = confirmed(now);
    assert!(call.reoffer(now, Bytes::from_static(b"v=0 sendonly")));
    let reinvite = only_request(&mut call);
    assert_eq!(method(&reinvite), "INVITE");
    assert_eq!(reinvite.body, Bytes::from_static(b"v=0 sendonly"));
    // One offer at a time: a second one, and the far end's crossing one, wait.
    assert!(!call.reoffer(now, Bytes::from_static(b"v=0 again")));
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::OfferRefused { code: 491, .. }]
    ));
    call.handle_request(
        now,
        &in_dialog("INVITE", 21, "Content-Type: application/sdp\n", "v=0\n"),
    );
    assert_eq!(only_request(&mut call).code(), Some(491));
    // The answer comes in the 2xx, which is ACKed.
    call.handle_response(now, &reply(&reinvite, 200, Some("x"), &[], true));
    assert!(
        matches!(&events(&mut call)[..], [CallEvent::Answer { sdp }] if sdp == &Bytes::from_static(OFFER.as_bytes()))
    );
    assert_eq!(method(&only_request(&mut call)), "ACK");

    // Glare: retried after 2.5 s with the same offer; then refused: the old description is
    // ours again (a refresh re-INVITE would resend it).
    assert!(call.reoffer(now, Bytes::from_static(b"v=0 inactive")));
    let reinvite = only_request(&mut call);
    call.handle_response(now, &reply(&reinvite, 491, Some("x"), &[], false));
    assert!(events(&mut call).is_empty());
    let retry = call.poll_timeout().expect("a retry");
    assert!(retry <= now + Duration::from_secs(4));
    call.handle_timeout(retry);
    let again = only_request(&mut call);
    assert_eq!(again.body, Bytes::from_static(b"v=0 inactive"));
    call.handle_response(retry, &reply(&again, 488, Some("x"), &[], false));
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::OfferRefused { code: 488, .. }]
    ));
    assert_eq!(call.local_sdp, Bytes::from_static(b"v=0 sendonly"));
    // 481: the dialog is gone, and so is the call.
    assert!(call.reoffer(retry, Bytes::from_static(b"v=0")));
    let reinvite = only_request(&mut call);
    call.handle_response(retry, &reply(&reinvite, 481, Some("x"), &[], false));
    assert!(matches!(
        events(&mut call).last(),
        Some(CallEvent::Terminated(_))
    ));
}

#[test]
fn a_refresh_that_meets_glare_is_retried() {
    let now = Instant::now();
    let mut call = confirmed(now);
    call.handle_timeout(now + Duration::from_secs(60));
    let update = only_request(&mut call);
    // The far end's own offer crosses ours.
    call.handle_request(
        now,
        &in_dialog("INVITE", 21, "Content-Type: application/sdp\n", "v=0\n"),
    );
    assert_eq!(only_request(&mut call).code(), Some(491));
    call.handle_response(now, &reply(&update, 491, None, &[], false));
    let retry = call.poll_timeout().expect("a retry");
    assert!(retry <= now + Duration::from_secs(4));
    call.handle_timeout(retry);
    assert_eq!(method(&only_request(&mut call)), "UPDATE");
}

#[test]
fn the_far_ends_missing_refresh_ends_the_call() {
    let now = Instant::now();
    let invite = parse(&INCOMING.replace(
        "Session-Expires: 120;refresher=uas",
        "Session-Expires: 120;refresher=uac",
    ));
    let mut call = Call::incoming(now, config(Transport::Udp), &invite).expect("accepted");
    call.answer(now, Bytes::from_static(b"answer"), &[]);
    let ok = only_request(&mut call);
    assert_eq!(ok.header(&Name::SESSION_EXPIRES), Some("120;refresher=uac"));
    assert_eq!(ok.header(&Name::REQUIRE), Some("timer"));
    call.handle_request(now, &in_dialog("ACK", 20, "", ""));
    events(&mut call);
    // A refresh by UPDATE without a body restarts the interval.
    let refreshed = now + Duration::from_secs(50);
    call.handle_request(
        refreshed,
        &in_dialog("UPDATE", 21, "Session-Expires: 120;refresher=uac\n", ""),
    );
    assert_eq!(only_request(&mut call).code(), Some(200));
    assert_eq!(
        call.poll_timeout(),
        Some(refreshed + Duration::from_secs(88))
    );
    call.handle_timeout(refreshed + Duration::from_secs(88));
    assert_eq!(method(&only_request(&mut call)), "BYE");
    assert!(
        matches!(&events(&mut call)[..], [CallEvent::Terminated(Ending { reason, .. })] if reason == "session timer expired")
    );
}

#[test]
fn info_is_sent_in_the_dialog() {
    let now = Instant::now();
    let mut call = confirmed(now);
    call.info(
        "application/dtmf-relay",
        Bytes::from_static(b"Signal=1\r\nDuration=100\r\n"),
    );
    let info = only_request(&mut call);
    assert_eq!(method(&info), "INFO");
    assert_eq!(
        info.header(&Name::CONTENT_TYPE),
        Some("application/dtmf-relay")
    );
    let text = String::from_utf8(info.to_bytes()).expect("utf-8");
    assert!(text.starts_with("INFO sip:bob@127.0.0.1:5070 SIP/2.0\r\n"));
    assert_eq!(info.method(), Some(&Method::INFO));
}

/// Before the answer an INFO goes in the early dialog whose media the caller hears: the last
/// fork that sent SDP, not one that only rang; with no early media there is nowhere to send it.
#[test]
fn info_in_early_media_goes_to_the_branch_that_sent_sdp() {
    let now = Instant::now();
    let mut call = outgoing(now);
    let invite = only_request(&mut call);
    let dtmf = || Bytes::from_static(b"Signal=5\r\nDuration=100\r\n");
    call.handle_response(
        now,
        &reply(
            &invite,
            180,
            Some("ringer"),
            &[("Contact", "<sip:r@10.0.0.3>")],
            false,
        ),
    );
    events(&mut call);
    assert!(
        !call.info("application/dtmf-relay", dtmf()),
        "only ringing: no early media"
    );
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::InfoAnswered { code: 481 }]
    ));
    assert!(drain(&mut call).is_empty());
    call.handle_response(
        now,
        &reply(
            &invite,
            183,
            Some("media"),
            &[("Contact", "<sip:m@10.0.0.2>")],
            true,
        ),
    );
    events(&mut call);
    assert!(call.info("application/dtmf-relay", dtmf()));
    let info = only_request(&mut call);
    assert_eq!(method(&info), "INFO");
    assert_eq!(info.tag(&Name::TO), Some("media"));
    assert!(
        String::from_utf8(info.to_bytes())
            .expect("utf-8")
            .starts_with("INFO sip:m@10.0.0.2 SIP/2.0\r\n")
    );
    let first = info.cseq().expect("cseq").cseq;
    assert!(first > invite.cseq().expect("cseq").cseq);
    call.handle_response(now, &reply(&info, 200, None, &[], false));
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::InfoAnswered { code: 200 }]
    ));
    // The next one has a higher CSeq, and the answer's dialog goes on from there.
    call.info("application/dtmf-relay", dtmf());
    let second = only_request(&mut call);
    assert!(second.cseq().expect("cseq").cseq > first);
}

#[test]
fn a_cancelled_reinvite_gets_487_and_the_call_goes_on() {
    let now = Instant::now();
    let mut call = held(now);
    events(&mut call);
    // A CANCEL of another branch (the first INVITE, long answered) changes nothing.
    call.handle_cancel_of(&in_dialog("CANCEL", 20, "", ""));
    assert!(drain(&mut call).is_empty());
    // The re-INVITE's own CANCEL: 487 for it, and no answer later.
    let cancel = parse(
        "CANCEL sip:c0ffee@127.0.0.1:5062 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKINVITE21
Max-Forwards: 70
From: \"Bob\" <sip:bob@example.com>;tag=bobtag
To: <sip:alice@example.com>;tag=ourtag
Call-ID: in1
CSeq: 21 CANCEL
Content-Length: 0

",
    );
    call.handle_cancel_of(&cancel);
    assert_eq!(only_request(&mut call).code(), Some(487));
    call.answer_offer(now, Bytes::from_static(b"late"));
    assert!(drain(&mut call).is_empty());
    assert!(!call.is_done());
    // The next offer is taken as usual.
    call.handle_request(
        now,
        &in_dialog("UPDATE", 22, "Content-Type: application/sdp\n", "v=0\n"),
    );
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Offer { sdp: Some(_) }]
    ));
}
