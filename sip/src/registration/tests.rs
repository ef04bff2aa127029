use std::time::{Duration, Instant};

use super::*;
use crate::auth::{Secret, ha1};

fn config() -> RegistrationConfig {
    RegistrationConfig {
        user: "alice".into(),
        domain: "127.0.0.1".into(),
        display_name: Some("Alice \"A\"".into()),
        credentials: Credentials {
            username: "alice".into(),
            secret: Secret::Ha1(ha1("alice", "127.0.0.1", "alicepw")),
        },
        route: None,
        transport: Transport::Udp,
        local: "127.0.0.1:5062".into(),
        local_fixed: false,
        contact_user: "gw7f3a".into(),
        instance: "urn:uuid:00000000-0000-4000-8000-000000000001".into(),
        contact_params: Vec::new(),
        expires: 600,
        user_agent: "sylkrtc-gateway".into(),
        call_id: "reg-call-1".into(),
        from_tag: "ftag".into(),
        nonce_seed: "s".into(),
    }
}

/// The registrar's final response to `request`, with extra header lines.
fn answer(request: &Message, code: u16, reason: &str, extra: &[&str]) -> Message {
    let mut response = request.response(code, reason, Some("rtag"));
    for line in extra {
        let (name, value) = line.split_once(": ").unwrap();
        response
            .headers
            .insert(Name::from(name.to_owned()), value.to_owned());
    }
    // Through the wire and back, as the driver would see it.
    Message::parse_datagram(&response.to_bytes(), 65536).unwrap()
}

fn challenge(stale: bool) -> String {
    format!(
        r#"WWW-Authenticate: Digest realm="127.0.0.1", nonce="n{stale}", qop="auth", stale={stale}"#
    )
}

fn events(registration: &mut Registration) -> Vec<RegistrationEvent> {
    std::iter::from_fn(|| registration.poll_event()).collect()
}

fn our_contact(request: &Message, expires: u32) -> String {
    let contact = request.header(&Name::CONTACT).unwrap();
    let ours = &contact[..=contact.find('>').unwrap()];
    format!("Contact: {ours};expires={expires}")
}

#[test]
fn registers_through_a_challenge_and_refreshes() {
    let start = Instant::now();
    let mut registration = Registration::new(config());
    registration.register();
    let first = registration.poll_request().unwrap();
    first.validate().unwrap();
    let text = String::from_utf8(first.to_bytes()).unwrap();
    assert!(
        text.starts_with(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;rport;branch=z9hG4bK"
        ),
        "{text}"
    );
    assert!(
        text.contains("\r\nFrom: \"Alice \\\"A\\\"\" <sip:alice@127.0.0.1>;tag=ftag\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nTo: \"Alice \\\"A\\\"\" <sip:alice@127.0.0.1>\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nContact: <sip:gw7f3a@127.0.0.1:5062;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-000000000001>\";expires=600\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nExpires: 600\r\n") && text.contains("\r\nCSeq: 1 REGISTER\r\n"),
        "{text}"
    );
    assert!(!text.contains("Authorization"));
    assert_eq!(events(&mut registration), [RegistrationEvent::Registering]);

    registration.handle_response(
        start,
        &answer(&first, 401, "Unauthorized", &[&challenge(false)]),
    );
    let second = registration.poll_request().unwrap();
    assert_eq!(second.cseq().unwrap().cseq, 2);
    assert_eq!(second.call_id(), Some("reg-call-1"));
    assert_ne!(
        second.vias().unwrap()[0].params.get_val("branch"),
        first.vias().unwrap()[0].params.get_val("branch")
    );
    assert!(
        second
            .header(&Name::AUTHORIZATION)
            .unwrap()
            .contains("nc=00000001")
    );
    assert!(
        events(&mut registration).is_empty(),
        "no repeated registering"
    );

    // The registrar lists our binding (300 s) among others, and says 600 in Expires.
    let ok = answer(
        &second,
        200,
        "OK",
        &[
            &our_contact(&second, 300),
            "Contact: <sip:other@192.0.2.9>;expires=120",
            "Expires: 600",
        ],
    );
    registration.handle_response(start, &ok);
    assert_eq!(
        events(&mut registration),
        [RegistrationEvent::Registered { expires: 300 }]
    );
    assert!(registration.is_registered());
    assert_eq!(
        registration.poll_timeout(),
        Some(start + Duration::from_secs(240))
    );

    // The refresh carries the credentials up front, and a repeated success is not reported.
    registration.handle_timeout(start + Duration::from_secs(240));
    let refresh = registration.poll_request().unwrap();
    assert_eq!(refresh.cseq().unwrap().cseq, 3);
    assert!(
        refresh
            .header(&Name::AUTHORIZATION)
            .unwrap()
            .contains("nc=00000002")
    );
    assert!(
        registration.is_registered(),
        "the binding stays up while it is refreshed"
    );
    registration.handle_response(
        start + Duration::from_secs(240),
        &answer(&refresh, 200, "OK", &["Expires: 600"]),
    );
    assert!(events(&mut registration).is_empty());
    assert_eq!(
        registration.poll_timeout(),
        Some(start + Duration::from_secs(240 + 540))
    );
}

#[test]
fn wrong_credentials_fail_once_and_are_not_retried() {
    let start = Instant::now();
    let mut registration = Registration::new(config());
    registration.register();
    let first = registration.poll_request().unwrap();
    registration.handle_response(
        start,
        &answer(&first, 401, "Unauthorized", &[&challenge(false)]),
    );
    let second = registration.poll_request().unwrap();
    registration.handle_response(
        start,
        &answer(&second, 401, "Unauthorized", &[&challenge(false)]),
    );
    assert_eq!(
        events(&mut registration),
        [
            RegistrationEvent::Registering,
            RegistrationEvent::Failed {
                reason: "401 Unauthorized".into(),
                retry_in: None
            }
        ]
    );
    assert!(registration.poll_request().is_none());
    assert_eq!(registration.poll_timeout(), None);

    for code in [403, 404] {
        let mut registration = Registration::new(config());
        registration.register();
        let first = registration.poll_request().unwrap();
        registration.handle_response(start, &answer(&first, code, "No", &[]));
        assert_eq!(
            events(&mut registration)[1],
            RegistrationEvent::Failed {
                reason: format!("{code} No"),
                retry_in: None
            }
        );
        assert_eq!(registration.poll_timeout(), None);
    }
}

#[test]
fn a_stale_nonce_is_answered_again() {
    let start = Instant::now();
    let mut registration = Registration::new(config());
    registration.register();
    let first = registration.poll_request().unwrap();
    registration.handle_response(
        start,
        &answer(&first, 401, "Unauthorized", &[&challenge(false)]),
    );
    let second = registration.poll_request().unwrap();
    registration.handle_response(
        start,
        &answer(&second, 401, "Unauthorized", &[&challenge(true)]),
    );
    let third = registration.poll_request().unwrap();
    assert!(
        third
            .header(&Name::AUTHORIZATION)
            .unwrap()
            .contains("nonce=\"ntrue\"")
    );
}

#[test]
fn interval_too_brief_raises_the_expiry() {
    let start = Instant::now();
    let mut registration = Registration::new(config());
    registration.register();
    let first = registration.poll_request().unwrap();
    registration.handle_response(
        start,
        &answer(&first, 423, "Interval Too Brief", &["Min-Expires: 3600"]),
    );
    let second = registration.poll_request().unwrap();
    assert_eq!(second.header(&Name::EXPIRES), Some("3600"));
    assert!(
        second
            .header(&Name::CONTACT)
            .unwrap()
            .ends_with(";expires=3600")
    );
    // A 423 that asks for nothing more is a failure.
    registration.handle_response(
        start,
        &answer(&second, 423, "Interval Too Brief", &["Min-Expires: 60"]),
    );
    assert!(matches!(
        events(&mut registration).last(),
        Some(RegistrationEvent::Failed { .. })
    ));
}

#[test]
fn failures_are_retried_with_backoff() {
    let start = Instant::now();
    let mut registration = Registration::new(config());
    registration.register();
    registration.poll_request().unwrap();
    let mut now = start;
    let mut delays = Vec::new();
    for _ in 0..8 {
        registration.handle_failure(now, Failure::Timeout);
        let next = registration.poll_timeout().unwrap();
        delays.push((next - now).as_secs());
        now = next;
        registration.handle_timeout(now);
        registration.poll_request().unwrap();
    }
    assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1800, 1800]);
    // Each failure and each new attempt is one state change; identical failures are not
    // repeated.
    let reported = events(&mut registration);
    assert_eq!(
        reported[..3],
        [
            RegistrationEvent::Registering,
            RegistrationEvent::Failed {
                reason: "408 Request Timeout".into(),
                retry_in: Some(Duration::from_secs(30))
            },
            RegistrationEvent::Registering,
        ]
    );

    // A success resets the backoff; a failed refresh reports failed and retries.
    let request = {
        registration.handle_failure(now, Failure::Transport);
        now = registration.poll_timeout().unwrap();
        registration.handle_timeout(now);
        registration.poll_request().unwrap()
    };
    registration.handle_response(now, &answer(&request, 200, "OK", &["Expires: 100"]));
    assert!(matches!(
        events(&mut registration).last(),
        Some(RegistrationEvent::Registered { expires: 100 })
    ));
    now = registration.poll_timeout().unwrap();
    registration.handle_timeout(now);
    let refresh = registration.poll_request().unwrap();
    registration.handle_response(now, &answer(&refresh, 503, "Service Unavailable", &[]));
    assert_eq!(
        events(&mut registration),
        [RegistrationEvent::Failed {
            reason: "503 Service Unavailable".into(),
            retry_in: Some(Duration::from_secs(30))
        }]
    );
}

#[test]
fn unregister_removes_only_our_contact() {
    let start = Instant::now();
    let mut registration = Registration::new(config());
    registration.register();
    let first = registration.poll_request().unwrap();
    registration.handle_response(
        start,
        &answer(&first, 200, "OK", &[&our_contact(&first, 600)]),
    );
    registration.unregister();
    let removal = registration.poll_request().unwrap();
    assert_eq!(removal.header(&Name::EXPIRES), Some("0"));
    let contact = removal.header(&Name::CONTACT).unwrap();
    assert!(
        contact.starts_with("<sip:gw7f3a@127.0.0.1:5062;transport=udp>")
            && contact.ends_with(";expires=0"),
        "{contact}"
    );
    assert!(!contact.contains('*'));
    registration.handle_response(start, &answer(&removal, 200, "OK", &[]));
    assert_eq!(
        events(&mut registration).last(),
        Some(&RegistrationEvent::Unregistered)
    );
    assert!(registration.is_done());
    assert_eq!(registration.poll_timeout(), None);

    // Never registered: nothing to remove.
    let mut idle = Registration::new(config());
    idle.unregister();
    assert!(idle.poll_request().is_none());
    assert!(idle.is_done());
}

#[test]
fn a_nat_mapping_rewrites_the_contact() {
    let start = Instant::now();
    let mut registration = Registration::new(config());
    registration.register();
    let first = registration.poll_request().unwrap();
    let mut ok = first.response(200, "OK", Some("r"));
    let via = format!(
        "{};received=203.0.113.5;rport=40000",
        first.header(&Name::VIA).unwrap().replace(";rport", "")
    );
    ok.headers.remove(&Name::VIA);
    ok.headers.insert(Name::VIA, via);
    registration.handle_response(
        start,
        &Message::parse_datagram(&ok.to_bytes(), 65536).unwrap(),
    );
    let again = registration.poll_request().unwrap();
    let contact = again.header(&Name::CONTACT).unwrap();
    assert!(
        contact.starts_with("<sip:gw7f3a@203.0.113.5:40000;transport=udp>;+sip.instance="),
        "{contact}"
    );
    assert!(
        contact.ends_with(", <sip:gw7f3a@127.0.0.1:5062;transport=udp>;expires=0"),
        "{contact}"
    );
    assert!(events(&mut registration) == [RegistrationEvent::Registering]);
    registration.handle_response(start, &answer(&again, 200, "OK", &["Expires: 600"]));
    assert_eq!(
        events(&mut registration),
        [RegistrationEvent::Registered { expires: 600 }]
    );

    // With an advertised address configured, the Contact is never rewritten.
    let mut fixed = Registration::new(RegistrationConfig {
        local_fixed: true,
        ..config()
    });
    fixed.register();
    let first = fixed.poll_request().unwrap();
    let mut ok = first.response(200, "OK", Some("r"));
    ok.headers.remove(&Name::VIA);
    ok.headers.insert(
        Name::VIA,
        "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKx;received=203.0.113.5;rport=40000",
    );
    fixed.handle_response(
        start,
        &Message::parse_datagram(&ok.to_bytes(), 65536).unwrap(),
    );
    assert!(fixed.poll_request().is_none());
    assert!(fixed.is_registered());
}

#[test]
fn an_ephemeral_tcp_port_is_no_nat() {
    let start = Instant::now();
    let mut registration = Registration::new(RegistrationConfig {
        transport: Transport::Tcp,
        ..config()
    });
    registration.register();
    let first = registration.poll_request().unwrap();
    let mut ok = first.response(200, "OK", Some("r"));
    ok.headers.remove(&Name::VIA);
    ok.headers.insert(
        Name::VIA,
        "SIP/2.0/TCP 127.0.0.1:5062;branch=z9hG4bKx;received=127.0.0.1;rport=41234",
    );
    registration.handle_response(
        start,
        &Message::parse_datagram(&ok.to_bytes(), 65536).unwrap(),
    );
    assert!(registration.poll_request().is_none());
    assert!(registration.is_registered());
}

#[test]
fn backoff_doubles_from_30_s_to_30_min() {
    let seconds: Vec<u64> = [0, 1, 2, 5, 6, 7, 40, u32::MAX]
        .into_iter()
        .map(|attempt| backoff(attempt).as_secs())
        .collect();
    assert_eq!(seconds, [30, 60, 120, 960, 1800, 1800, 1800, 1800]);
}

/// Push parameters go into the Contact URI, escaped where a URI parameter cannot hold a
/// character as it is, and the REGISTER stays valid and is granted as usual.
#[test]
fn contact_parameters_are_escaped_into_the_contact_uri() {
    let mut registration = Registration::new(RegistrationConfig {
        contact_params: vec![
            ("pn-tok".into(), "f3:Ab-9_x;y=z \"q\"".into()),
            ("pn-silent".into(), "1".into()),
        ],
        ..config()
    });
    registration.register();
    let request = registration.poll_request().unwrap();
    request.validate().unwrap();
    let contact = request.header(&Name::CONTACT).unwrap();
    assert!(
        contact.contains(";transport=udp;pn-tok=f3:Ab-9_x%3By%3Dz%20%22q%22;pn-silent=1>"),
        "{contact}"
    );
    let ok = answer(&request, 200, "OK", &[&our_contact(&request, 600)]);
    registration.handle_response(Instant::now(), &ok);
    assert_eq!(
        events(&mut registration),
        [
            RegistrationEvent::Registering,
            RegistrationEvent::Registered { expires: 600 }
        ]
    );
}

/// The registrar's list of the account's other Contacts, from the first 2xx only, is handed
/// over; a Contact asked to go is removed with a REGISTER at once (carried again through a
/// challenge) and not in the refreshes after it.
#[test]
fn other_bindings_are_listed_once_and_removed_on_request() {
    let now = Instant::now();
    let mut registration = Registration::new(config());
    registration.register();
    let first = registration.poll_request().unwrap();
    let listed = [
        our_contact(&first, 600),
        "Contact: <sip:gw11aa@127.0.0.3:5060;transport=udp>;expires=400".to_owned(),
        "Contact: <sip:alice@192.0.2.9:5070>;expires=100".to_owned(),
    ];
    let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
    registration.handle_response(now, &answer(&first, 200, "OK", &listed));
    let others: Vec<String> = std::iter::from_fn(|| registration.poll_other_contact()).collect();
    assert_eq!(
        others,
        [
            "sip:gw11aa@127.0.0.3:5060;transport=udp",
            "sip:alice@192.0.2.9:5070"
        ]
    );
    assert!(registration.poll_request().is_none());

    registration.remove_contact("sip:gw11aa@127.0.0.3:5060;transport=udp".into());
    let removal = registration.poll_request().expect("a REGISTER at once");
    let contact = removal.header(&Name::CONTACT).unwrap().to_owned();
    assert!(
        contact.ends_with(", <sip:gw11aa@127.0.0.3:5060;transport=udp>;expires=0"),
        "{contact}"
    );
    assert!(contact.contains(";expires=600"), "ours stays: {contact}");
    registration.handle_response(
        now,
        &answer(&removal, 401, "Unauthorized", &[&challenge(false)]),
    );
    let again = registration.poll_request().expect("the challenge's answer");
    assert_eq!(again.header(&Name::CONTACT).unwrap(), contact);
    // The registrar lists the account's Contacts again: a refresh's 2xx hands nothing over.
    let refreshed = [our_contact(&again, 600)];
    let refreshed: Vec<&str> = refreshed.iter().map(String::as_str).collect();
    registration.handle_response(now, &answer(&again, 200, "OK", &refreshed));
    assert!(registration.poll_other_contact().is_none());
    registration.handle_timeout(now + Duration::from_secs(600));
    let refresh = registration.poll_request().expect("a refresh");
    assert!(
        !refresh.header(&Name::CONTACT).unwrap().contains("gw11aa"),
        "removed once"
    );
}
