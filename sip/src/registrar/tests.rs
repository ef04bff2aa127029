use std::collections::HashMap;
use std::time::{Duration, Instant};

use ezk_sip_types::Name;

use super::*;
use crate::auth::{Credentials, DigestClient, Secret, ha1};
use crate::transport::Transport;
use crate::uri::uri_host;

fn registrar(open: bool, now: Instant) -> Registrar {
    let mut users = HashMap::new();
    users.insert("carol".to_owned(), ha1("carol", "local.test", "carolpw"));
    Registrar::new(
        LocalDomain {
            location: std::sync::Arc::new(crate::location::MemoryLocation::new(
                "local.test",
                users,
                open,
            )),
            secret: "s3cret".into(),
            nonce_lifetime: Duration::from_secs(300),
            max_expires: 3600,
            min_expires: 60,
            ping_interval: Some(Duration::from_secs(30)),
            peers: Vec::new(),
        },
        now,
    )
}

fn source() -> Target {
    Target {
        transport: Transport::Udp,
        addr: "127.0.0.1:5080".parse().expect("addr"),
    }
}

fn register(cseq: u32, extra: &str) -> Message {
    let text = format!(
        "REGISTER sip:local.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK{cseq}\r\n\
         From: <sip:carol@local.test>;tag=c\r\nTo: <sip:carol@local.test>\r\nCall-ID: reg1\r\n\
         CSeq: {cseq} REGISTER\r\nContact: <sip:carol@127.0.0.1:5080>;expires=600\r\nMax-Forwards: 70\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    );
    Message::parse_datagram(text.as_bytes(), 65_535).expect("parses")
}

/// The Authorization a phone with `password` sends for `challenge`.
fn answer(challenge: &Message, password: &str) -> String {
    let mut client = DigestClient::new(Credentials {
        username: "carol".into(),
        secret: Secret::Password(password.into()),
    });
    client.challenge(challenge).expect("a challenge");
    let (_, value) = client
        .authorize("REGISTER", "sip:local.test", b"", "cn0nce")
        .expect("authorized");
    format!("Authorization: {value}\r\n")
}

#[test]
fn a_phone_registers_through_a_challenge_and_wrong_passwords_are_refused() {
    let now = Instant::now();
    let mut registrar = registrar(false, now);
    let challenge = registrar.handle_register(now, &register(1, ""), source(), "t");
    assert_eq!(challenge.code(), Some(401));
    let header = challenge
        .header(&Name::WWW_AUTHENTICATE)
        .expect("a challenge");
    assert!(
        header.contains("realm=\"local.test\"") && header.contains("qop=\"auth\""),
        "{header}"
    );

    let ok = registrar.handle_register(
        now,
        &register(2, &answer(&challenge, "carolpw")),
        source(),
        "t",
    );
    assert_eq!(ok.code(), Some(200));
    assert_eq!(
        ok.header(&Name::CONTACT),
        Some("<sip:carol@127.0.0.1:5080>;expires=600")
    );
    let bindings = registrar.lookup(now, "carol");
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].target, source());
    // The same Authorization again (same nonce count): a replay.
    let replay = registrar.handle_register(
        now,
        &register(3, &answer(&challenge, "carolpw")),
        source(),
        "t",
    );
    assert_eq!(replay.code(), Some(403));
    // A wrong password, an unknown user.
    let challenge = registrar.handle_register(now, &register(4, ""), source(), "t");
    let wrong = registrar.handle_register(
        now,
        &register(5, &answer(&challenge, "nope")),
        source(),
        "t",
    );
    assert_eq!(wrong.code(), Some(403));
    // The binding expires.
    assert!(
        registrar
            .lookup(now + Duration::from_secs(601), "carol")
            .is_empty()
    );
}

#[test]
fn old_nonces_are_stale_and_foreign_ones_are_rechallenged() {
    let now = Instant::now();
    let mut registrar = registrar(false, now);
    let challenge = registrar.handle_register(now, &register(1, ""), source(), "t");
    let later = now + Duration::from_secs(301);
    let stale = registrar.handle_register(
        later,
        &register(2, &answer(&challenge, "carolpw")),
        source(),
        "t",
    );
    assert_eq!(stale.code(), Some(401));
    assert!(
        stale
            .header(&Name::WWW_AUTHENTICATE)
            .expect("challenge")
            .contains("stale=true")
    );
    // A nonce from another registrar (another secret) gets a plain new challenge.
    let mut other = {
        let mut config = registrar.config.clone();
        config.secret = "other".into();
        Registrar::new(config, now)
    };
    let foreign = other.challenge(now, &register(3, ""), 401, false, "t");
    let again = registrar.handle_register(
        now,
        &register(4, &answer(&foreign, "carolpw")),
        source(),
        "t",
    );
    assert_eq!(again.code(), Some(401));
    assert!(
        !again
            .header(&Name::WWW_AUTHENTICATE)
            .expect("challenge")
            .contains("stale")
    );
}

#[test]
fn open_registration_takes_any_password_and_contacts_can_be_removed() {
    let now = Instant::now();
    let mut registrar = registrar(true, now);
    let challenge = registrar.handle_register(now, &register(1, ""), source(), "t");
    let ok = registrar.handle_register(
        now,
        &register(2, &answer(&challenge, "anything")),
        source(),
        "t",
    );
    assert_eq!(ok.code(), Some(200));
    // Unregistering with `*` and Expires: 0.
    let challenge = registrar.handle_register(now, &register(3, ""), source(), "t");
    let remove = register(
        4,
        &format!("{}Expires: 0\r\n", answer(&challenge, "anything")),
    )
    .to_bytes();
    let text = String::from_utf8(remove).expect("utf-8").replace(
        "Contact: <sip:carol@127.0.0.1:5080>;expires=600",
        "Contact: *",
    );
    let remove = Message::parse_datagram(text.as_bytes(), 65_535).expect("parses");
    let done = registrar.handle_register(now, &remove, source(), "t");
    assert_eq!(done.code(), Some(200));
    assert!(registrar.lookup(now, "carol").is_empty());
    // Too short: 423 with the minimum.
    let challenge = registrar.handle_register(now, &register(5, ""), source(), "t");
    let text = String::from_utf8(register(6, &answer(&challenge, "x")).to_bytes())
        .expect("utf-8")
        .replace("expires=600", "expires=10");
    let brief = registrar.handle_register(
        now,
        &Message::parse_datagram(text.as_bytes(), 65_535).expect("parses"),
        source(),
        "t",
    );
    assert_eq!(brief.code(), Some(423));
    assert_eq!(brief.header(&Name::MIN_EXPIRES), Some("60"));
}

#[test]
fn uris_split_into_user_and_host() {
    assert_eq!(
        uri_user("sip:carol@local.test;transport=udp"),
        Some("carol")
    );
    assert_eq!(
        uri_host("sip:carol@local.test:5060;transport=udp"),
        Some("local.test")
    );
    assert_eq!(uri_host("sip:[::1]:5060"), Some("::1"));
    assert_eq!(uri_user("sip:local.test"), None);
}

/// A REGISTER authenticated with a fresh challenge, with `contact` lines instead of the usual.
fn registered(registrar: &mut Registrar, now: Instant, cseq: u32, contacts: &str) -> Message {
    let challenge = registrar.handle_register(now, &register(cseq, ""), source(), "t");
    let text = String::from_utf8(register(cseq + 1, &answer(&challenge, "carolpw")).to_bytes())
        .expect("utf-8")
        .replace(
            "Contact: <sip:carol@127.0.0.1:5080>;expires=600\r\n",
            contacts,
        );
    let request = Message::parse_datagram(text.as_bytes(), 65_535).expect("parses");
    registrar.handle_register(now, &request, source(), "t")
}

/// A steady stream of REGISTERs keeps only the nonces of the last lifetime (each request
/// costs the same however long the registrar runs), and replays are still refused.
#[test]
fn nonces_are_forgotten_in_time_order_and_replays_still_refused() {
    let start = Instant::now();
    let mut registrar = registrar(false, start);
    let contact = "Contact: <sip:carol@127.0.0.1:5080>;expires=600\r\n";
    for second in 0..1200u32 {
        let now = start + Duration::from_secs(u64::from(second));
        let ok = registered(&mut registrar, now, second * 2 + 1, contact);
        assert_eq!(ok.code(), Some(200), "at {second} s");
        assert!(
            registrar.nonces_remembered() <= 302,
            "{} nonces at {second} s",
            registrar.nonces_remembered()
        );
    }
    // A replayed request (same nonce and count) within the lifetime is refused.
    let now = start + Duration::from_secs(1300);
    let challenge = registrar.handle_register(now, &register(9001, ""), source(), "t");
    let authorization = answer(&challenge, "carolpw");
    let first = registrar.handle_register(now, &register(9002, &authorization), source(), "t");
    assert_eq!(first.code(), Some(200));
    let replay = registrar.handle_register(now, &register(9003, &authorization), source(), "t");
    assert_eq!(replay.code(), Some(403));
}

/// One REGISTER adds at most MAX_CONTACTS, one user holds at most as many, and bindings
/// nobody looks up again are dropped once they expire.
#[test]
fn contacts_are_bounded_and_expired_bindings_pruned() {
    let now = Instant::now();
    let mut registrar = registrar(false, now);
    let many: String = (0..=MAX_CONTACTS)
        .map(|n| {
            format!(
                "Contact: <sip:carol@127.0.0.1:{}>;expires=600\r\n",
                6000 + n
            )
        })
        .collect();
    let refused = registered(&mut registrar, now, 1, &many);
    assert_eq!(refused.code(), Some(403));
    assert_eq!(registrar.binding_count(), 0);
    let some: String = (0..MAX_CONTACTS - 1)
        .map(|n| {
            format!(
                "Contact: <sip:carol@127.0.0.1:{}>;expires=600\r\n",
                6000 + n
            )
        })
        .collect();
    assert_eq!(registered(&mut registrar, now, 3, &some).code(), Some(200));
    assert_eq!(registrar.binding_count(), MAX_CONTACTS - 1);
    let two = "Contact: <sip:carol@127.0.0.1:7000>;expires=600\r\n\
               Contact: <sip:carol@127.0.0.1:7001>;expires=600\r\n";
    let refused = registered(&mut registrar, now, 5, two);
    assert_eq!(refused.code(), Some(403));
    assert_eq!(
        registrar.binding_count(),
        MAX_CONTACTS - 1,
        "nothing of it was taken"
    );
    // Time passes with no lookup: the next REGISTER (a query, adding nothing) sweeps them.
    let later = now + Duration::from_secs(700);
    let challenge = registrar.handle_register(later, &register(7, ""), source(), "t");
    let text = String::from_utf8(register(8, &answer(&challenge, "carolpw")).to_bytes())
        .expect("utf-8")
        .replace("Contact: <sip:carol@127.0.0.1:5080>;expires=600\r\n", "");
    let query = Message::parse_datagram(text.as_bytes(), 65_535).expect("parses");
    assert_eq!(
        registrar
            .handle_register(later, &query, source(), "t")
            .code(),
        Some(200)
    );
    assert_eq!(registrar.binding_count(), 0);
    assert_eq!(registrar.registered_count(), 0);
}

/// A phone doing SIP Outbound (`+sip.instance` and `reg-id`, or `;ob`) is told its flow is kept
/// (`Require: outbound`) and how often to keep it alive (`Flow-Timer`); others are not.
#[test]
fn outbound_registrations_get_require_outbound_and_a_flow_timer() {
    let now = Instant::now();
    for (contact, outbound) in [
        (
            "Contact: <sip:carol@127.0.0.1:5080>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1;expires=600\r\n",
            true,
        ),
        (
            "Contact: <sip:carol@127.0.0.1:5080;ob>;expires=600\r\n",
            true,
        ),
        (
            "Contact: <sip:carol@127.0.0.1:5080>;reg-id=1;expires=600\r\n",
            false,
        ),
        ("Contact: <sip:carol@127.0.0.1:5080>;expires=600\r\n", false),
    ] {
        let mut registrar = registrar(false, now);
        let ok = registered(&mut registrar, now, 1, contact);
        assert_eq!(ok.code(), Some(200), "{contact}");
        let flow_timer = ok.header(&Name::from("Flow-Timer".to_owned()));
        if outbound {
            assert_eq!(ok.header(&Name::REQUIRE), Some("outbound"), "{contact}");
            assert_eq!(flow_timer, Some("25"));
        } else {
            assert_eq!(ok.header(&Name::REQUIRE), None, "{contact}");
            assert_eq!(flow_timer, None);
        }
        assert_eq!(registrar.lookup(now, "carol")[0].outbound, outbound);
    }
}

/// Phones without Outbound registered over UDP get an OPTIONS ping each interval, counted from
/// their last REGISTER; Outbound phones keep their flow alive themselves and are not pinged. A
/// ping with no answer removes its binding, unless a REGISTER since moved it to another flow.
#[test]
fn phones_without_outbound_are_pinged_and_removed_when_gone() {
    let now = Instant::now();
    let plain = "Contact: <sip:carol@127.0.0.1:5080>;expires=600\r\n";
    let mut registrar = registrar(false, now);
    assert_eq!(registered(&mut registrar, now, 1, plain).code(), Some(200));
    assert_eq!(registrar.next_ping(), Some(now + Duration::from_secs(30)));
    assert!(
        registrar
            .due_pings(now + Duration::from_secs(29))
            .is_empty()
    );
    let due = registrar.due_pings(now + Duration::from_secs(30));
    assert_eq!(
        due,
        [Ping {
            user: "carol".into(),
            contact: "sip:carol@127.0.0.1:5080".into(),
            target: source(),
        }]
    );
    // A refresh at 40 s moves the next ping to 70 s: the one queued for 60 s is skipped.
    let refreshed = now + Duration::from_secs(40);
    assert_eq!(
        registered(&mut registrar, refreshed, 3, plain).code(),
        Some(200)
    );
    assert!(
        registrar
            .due_pings(now + Duration::from_secs(60))
            .is_empty()
    );
    assert_eq!(registrar.due_pings(now + Duration::from_secs(70)).len(), 1);
    // No answer: the binding goes, once; the user is no longer reachable.
    assert!(registrar.ping_failed(&due[0]));
    assert!(!registrar.ping_failed(&due[0]));
    assert!(registrar.lookup(now, "carol").is_empty());
    assert_eq!(registrar.binding_count(), 0);
    assert!(
        registrar
            .due_pings(now + Duration::from_secs(100))
            .is_empty()
    );
    // A phone that re-registered from another flow is not removed by the old flow's failure.
    assert_eq!(registered(&mut registrar, now, 5, plain).code(), Some(200));
    let stale = Ping {
        target: Target {
            transport: Transport::Udp,
            addr: "127.0.0.1:6000".parse().expect("addr"),
        },
        ..due[0].clone()
    };
    assert!(!registrar.ping_failed(&stale));
    assert_eq!(registrar.lookup(now, "carol").len(), 1);

    // An Outbound phone is never pinged.
    let mut other = self::registrar(false, now);
    let outbound = "Contact: <sip:carol@127.0.0.1:5080;ob>;expires=600\r\n";
    assert_eq!(registered(&mut other, now, 1, outbound).code(), Some(200));
    assert_eq!(other.next_ping(), None);
    assert!(other.due_pings(now + Duration::from_secs(600)).is_empty());
}
