//! Redirections of an outgoing call.

use std::time::Instant;

use ezk_sip_types::Name;

use crate::call::tests::*;
use crate::call::*;

/// A 3xx is reported with its Contacts (highest q first) and waits: followed, the INVITE goes
/// again (same Call-ID and To, higher CSeq) to the new Request-URI; a loop back to a URI
/// already tried, more than three redirections, or a refusal end the call with the reason.
#[test]
fn redirections_are_followed_once_each_and_loops_refused() {
    let now = Instant::now();
    let mut call = outgoing(now);
    let invite = only_request(&mut call);
    let moved = reply(
        &invite,
        302,
        None,
        &[(
            "Contact",
            "<sip:bob@b.example.com>;q=0.5, <sip:bob@a.example.com>;q=0.9",
        )],
        false,
    );
    call.handle_response(now, &moved);
    match &events(&mut call)[..] {
        [
            CallEvent::Redirected {
                code: 302,
                contacts,
                ..
            },
        ] => {
            assert_eq!(
                contacts,
                &["sip:bob@a.example.com", "sip:bob@b.example.com"]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(drain(&mut call).is_empty(), "waits for its owner");
    assert!(!call.is_done());
    call.follow_redirect(now, "sip:bob@a.example.com").unwrap();
    let again = only_request(&mut call);
    assert!(
        String::from_utf8(again.to_bytes())
            .unwrap()
            .starts_with("INVITE sip:bob@a.example.com SIP/2.0\r\n")
    );
    assert_eq!(again.call_id(), invite.call_id());
    assert_eq!(again.header(&Name::TO), invite.header(&Name::TO));
    assert!(again.cseq().unwrap().cseq > invite.cseq().unwrap().cseq);
    // Redirected back to the first URI: a loop, refused.
    call.handle_response(
        now,
        &reply(
            &again,
            301,
            None,
            &[("Contact", "<sip:bob@example.com>")],
            false,
        ),
    );
    events(&mut call);
    assert!(call.follow_redirect(now, "sip:bob@example.com").is_err());
    assert!(matches!(
        &events(&mut call)[..],
        [CallEvent::Terminated(Ending { code: Some(301), reason, .. })] if reason.contains("loop")
    ));
    assert!(call.is_done());

    // Three redirections are followed, not a fourth.
    let mut call = outgoing(now);
    let mut invite = only_request(&mut call);
    for hop in 0..4 {
        let contact = format!("<sip:bob@hop{hop}.example.com>");
        call.handle_response(
            now,
            &reply(&invite, 302, None, &[("Contact", &contact)], false),
        );
        events(&mut call);
        let result = call.follow_redirect(now, &format!("sip:bob@hop{hop}.example.com"));
        if hop < 3 {
            result.unwrap();
            invite = only_request(&mut call);
        } else {
            assert!(result.unwrap_err().contains("more than 3"));
        }
    }
    assert!(call.is_done());

    // Refused by its owner, or hung up while the owner decides: over, nothing sent.
    for hang_up in [false, true] {
        let mut call = outgoing(now);
        let invite = only_request(&mut call);
        call.handle_response(
            now,
            &reply(&invite, 302, None, &[("Contact", "<sip:x@y>")], false),
        );
        events(&mut call);
        if hang_up {
            call.hangup(now);
        } else {
            call.refuse_redirect("not allowed");
        }
        assert!(drain(&mut call).is_empty());
        assert!(call.is_done());
        let ended = events(&mut call);
        assert!(
            matches!(&ended[..], [CallEvent::Terminated(_)]),
            "{ended:?}"
        );
    }
}
