//! Both ends of a subscription talking to each other, as a presence server and a watcher do,
//! with a proxy's Record-Route and digest challenge in between.

use bytes::Bytes;
use ezk_sip_types::Name;

use super::*;
use crate::transport::Transport;

fn config() -> CallConfig {
    CallConfig {
        display_name: None,
        session_expires: None,
        ..crate::call::tests::config(Transport::Udp)
    }
}

fn subscriber() -> Subscriber {
    Subscriber::new(
        config(),
        SubscribeRequest {
            uri: RequestUri::parse("sip:bob@example.com").unwrap(),
            route: None,
            call_id: "sub1".into(),
            event: "presence".into(),
            accept: "application/pidf+xml".into(),
            expires: 600,
            eventlist: false,
        },
    )
}

fn notifier_config() -> NotifierConfig {
    NotifierConfig {
        transport: Transport::Udp,
        local: "127.0.0.1:5070".into(),
        contact_user: "n0t1fy".into(),
        user_agent: "test".into(),
        seed: "n".into(),
    }
}

fn text(message: &Message) -> String {
    String::from_utf8(message.to_bytes()).unwrap()
}

/// What a proxy that Record-Routes does to a request on its way.
fn through_proxy(mut request: Message) -> Message {
    request
        .headers
        .insert(Name::RECORD_ROUTE, "<sip:127.0.0.1:5060;lr>");
    request
}

fn accepted(subscribe: &Message, tag: &str, expires: &str) -> Message {
    let mut response = subscribe.response(200, "OK", Some(tag));
    response
        .headers
        .insert(Name::CONTACT, "<sip:bob@127.0.0.1:5070>");
    response
        .headers
        .insert(Name::RECORD_ROUTE, "<sip:127.0.0.1:5060;lr>");
    response.headers.insert(Name::EXPIRES, expires);
    response
}

#[test]
fn a_watcher_and_a_presence_server_through_a_proxy() {
    let mut ours = subscriber();
    let first = ours.poll_request().expect("a SUBSCRIBE");
    let written = text(&first);
    assert!(written.starts_with("SUBSCRIBE sip:bob@example.com SIP/2.0\r\n"));
    for header in [
        "Event: presence\r\n",
        "Accept: application/pidf+xml\r\n",
        "Expires: 600\r\n",
        "Contact: <sip:c0ffee@127.0.0.1:5062;transport=udp>\r\n",
        "From: <sip:alice@example.com>;tag=ourtag\r\n",
    ] {
        assert!(written.contains(header), "{header} in {written}");
    }
    // The proxy challenges; the SUBSCRIBE is sent again, authorized, with the next CSeq.
    let mut challenge = first.response(407, "Proxy Authentication Required", None);
    challenge.headers.insert(
        Name::PROXY_AUTHENTICATE,
        "Digest realm=\"example.com\", nonce=\"abc\", qop=\"auth\"",
    );
    ours.handle_final(&challenge);
    let second = ours.poll_request().expect("the SUBSCRIBE again");
    assert!(text(&second).contains("Proxy-Authorization: Digest"));
    assert!(text(&second).contains("CSeq: 2 SUBSCRIBE"));

    // The presence server accepts what the proxy relayed, granting less than asked.
    let relayed = through_proxy(second.clone());
    let mut theirs = Notifier::new(notifier_config(), &relayed, "srvtag", 300).expect("a notifier");
    ours.handle_final(&accepted(&second, "srvtag", "300"));
    assert_eq!(
        ours.poll_event(),
        Some(SubscriptionEvent::Accepted { expires: 300 })
    );
    assert_eq!(ours.next_hop(), Some("sip:127.0.0.1:5060;lr"));

    // Its NOTIFY reaches us, in the dialog, through the proxy.
    theirs.notify(
        "active;expires=300",
        "application/pidf+xml",
        Bytes::from_static(b"<presence/>"),
    );
    let notify = theirs.poll_request().expect("a NOTIFY");
    let written = text(&notify);
    assert!(written.starts_with("NOTIFY sip:c0ffee@127.0.0.1:5062;transport=udp SIP/2.0\r\n"));
    assert!(written.contains("Route: <sip:127.0.0.1:5060;lr>\r\n"));
    assert!(written.contains("From: <sip:bob@example.com>;tag=srvtag\r\n"));
    assert!(written.contains("To: <sip:alice@example.com>;tag=ourtag\r\n"));
    assert_eq!(ours.handle_notify(&notify), (200, "OK"));
    assert_eq!(
        ours.poll_event(),
        Some(SubscriptionEvent::Notify {
            state: "active".into(),
            reason: None,
            content_type: "application/pidf+xml".into(),
            body: Bytes::from_static(b"<presence/>"),
            eventlist: false,
        })
    );
    // The same NOTIFY again (a retransmission is the transaction's business; a stale CSeq
    // is refused).
    assert_eq!(ours.handle_notify(&notify).0, 500);

    // Our refresh goes in the dialog, still authorized.
    ours.refresh(600);
    let refresh = ours.poll_request().expect("a refresh");
    let written = text(&refresh);
    assert!(written.contains("To: <sip:bob@example.com>;tag=srvtag\r\n"));
    assert!(written.contains("Route: <sip:127.0.0.1:5060;lr>\r\n"));
    assert!(written.contains("Proxy-Authorization: Digest"));
    // It asked for 600: it gets what the SUBSCRIBE was granted, 300.
    assert_eq!(theirs.handle_subscribe(&refresh), (200, 300));
    assert_eq!(
        theirs.poll_event(),
        Some(SubscriptionEvent::Refreshed { expires: 300 })
    );

    // The server ends it: the watcher hears why.
    theirs.notify("terminated;reason=noresource", "", Bytes::new());
    assert!(theirs.is_ended());
    let last = theirs.poll_request().expect("the last NOTIFY");
    assert_eq!(ours.handle_notify(&last), (200, "OK"));
    assert!(matches!(
        ours.poll_event(),
        Some(SubscriptionEvent::Notify { .. })
    ));
    assert_eq!(
        ours.poll_event(),
        Some(SubscriptionEvent::Ended {
            code: 0,
            reason: "noresource".into(),
            retry_after: None,
        })
    );
    assert!(ours.is_ended());
    assert_eq!(ours.handle_notify(&last).0, 481);
}

#[test]
fn a_notify_may_come_before_the_answer() {
    let mut ours = subscriber();
    let subscribe = ours.poll_request().unwrap();
    let mut theirs = Notifier::new(notifier_config(), &subscribe, "t1", 600).unwrap();
    theirs.notify("pending", "", Bytes::new());
    let notify = theirs.poll_request().unwrap();
    assert_eq!(ours.handle_notify(&notify), (200, "OK"));
    assert_eq!(
        ours.next_hop(),
        Some("sip:n0t1fy@127.0.0.1:5070;transport=udp")
    );
    ours.handle_final(&accepted(&subscribe, "t1", "600"));
    assert!(matches!(
        ours.poll_event(),
        Some(SubscriptionEvent::Notify { .. })
    ));
    assert_eq!(
        ours.poll_event(),
        Some(SubscriptionEvent::Accepted { expires: 600 })
    );
    // Unsubscribing ends it once answered.
    ours.refresh(0);
    let unsubscribe = ours.poll_request().unwrap();
    assert!(text(&unsubscribe).contains("Expires: 0\r\n"));
    ours.handle_final(&unsubscribe.response(200, "OK", None));
    assert!(ours.is_ended());
}

#[test]
fn refusals_end_it_with_their_code_and_retry_after() {
    let mut ours = subscriber();
    let subscribe = ours.poll_request().unwrap();
    let mut refusal = subscribe.response(489, "Bad Event", Some("x"));
    refusal
        .headers
        .insert(Name::RETRY_AFTER, "3600 (no presence here)");
    ours.handle_final(&refusal);
    assert_eq!(
        ours.poll_event(),
        Some(SubscriptionEvent::Ended {
            code: 489,
            reason: "Bad Event".into(),
            retry_after: Some(3600),
        })
    );
    // A NOTIFY for another package is refused.
    let mut other = subscriber();
    let subscribe = other.poll_request().unwrap();
    let mut theirs = Notifier::new(notifier_config(), &subscribe, "t", 600).unwrap();
    theirs.event = "dialog".into();
    theirs.notify("active", "", Bytes::new());
    assert_eq!(other.handle_notify(&theirs.poll_request().unwrap()).0, 489);
}

#[test]
fn a_notify_the_subscriber_refuses_ends_ours() {
    let mut ours = subscriber();
    let subscribe = ours.poll_request().unwrap();
    let mut theirs = Notifier::new(notifier_config(), &subscribe, "t", 600).unwrap();
    theirs.notify("active", "", Bytes::new());
    let notify = theirs.poll_request().unwrap();
    // An answer to an earlier NOTIFY does not count; the last one's does.
    theirs.notify("active", "", Bytes::new());
    let newer = theirs.poll_request().unwrap();
    theirs.handle_final(&notify.response(481, "Subscription Does Not Exist", None));
    assert!(!theirs.is_ended());
    theirs.handle_final(&newer.response(481, "Subscription Does Not Exist", None));
    assert!(theirs.is_ended());
    assert!(matches!(
        theirs.poll_event(),
        Some(SubscriptionEvent::Ended { code: 481, .. })
    ));
}

#[test]
fn a_list_subscription_says_it_takes_lists_and_takes_their_notifies() {
    // Without eventlist: no Supported, and a NOTIFY that requires it is refused (RFC 3261
    // section 8.2.2.3).
    let mut plain = subscriber();
    let subscribe = plain.poll_request().unwrap();
    assert!(!text(&subscribe).contains("Supported:"));
    let mut theirs = Notifier::new(notifier_config(), &subscribe, "t", 600).unwrap();
    theirs.notify("active", "", Bytes::new());
    let mut notify = theirs.poll_request().unwrap();
    notify.headers.insert(Name::REQUIRE, "eventlist");
    assert_eq!(plain.handle_notify(&notify).0, 420);
    assert_eq!(plain.poll_event(), None);

    // With it: Supported: eventlist, and the list's NOTIFY is taken; another extension is not.
    let mut listed = Subscriber::new(
        config(),
        SubscribeRequest {
            uri: RequestUri::parse("sip:alice-list@example.com").unwrap(),
            route: None,
            call_id: "sub2".into(),
            event: "presence".into(),
            accept: "multipart/related, application/rlmi+xml, application/pidf+xml".into(),
            expires: 600,
            eventlist: true,
        },
    );
    let subscribe = listed.poll_request().unwrap();
    assert!(text(&subscribe).contains("Supported: eventlist\r\n"));
    let mut theirs = Notifier::new(notifier_config(), &subscribe, "t", 600).unwrap();
    theirs.notify("active", "", Bytes::new());
    let mut notify = theirs.poll_request().unwrap();
    notify.headers.insert(Name::REQUIRE, "eventlist");
    assert_eq!(listed.handle_notify(&notify), (200, "OK"));
    assert!(matches!(
        listed.poll_event(),
        Some(SubscriptionEvent::Notify {
            eventlist: true,
            ..
        })
    ));
    theirs.notify("active", "", Bytes::new());
    let mut notify = theirs.poll_request().unwrap();
    notify.headers.insert(Name::REQUIRE, "eventlist, foo");
    assert_eq!(listed.handle_notify(&notify).0, 420);
}
