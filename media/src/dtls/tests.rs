//! Two DTLS-SRTP ends on a fake clock: the gateway's and a phone's (RSA, as softphones have).

use std::time::Duration;

use super::*;

const GATEWAY: ([u8; 4], u16) = ([127, 0, 0, 1], 20_000);
const PHONE: ([u8; 4], u16) = ([127, 0, 0, 2], 30_000);

/// A phone's end: its own certificate (RSA or ECDSA), the gateway's fingerprint expected.
pub(crate) fn phone(now: Instant, setup: Setup, rsa: bool, rtcp: bool) -> (DtlsSrtp, Fingerprint) {
    let identity = identity().unwrap();
    let algorithm = if rsa {
        &rcgen::PKCS_RSA_SHA256
    } else {
        &rcgen::PKCS_ECDSA_P256_SHA256
    };
    let certificate = Certificate::generate_self_signed_with_alg(
        vec!["phone".to_owned()],
        algorithm,
        identity.provider.crypto(),
    )
    .unwrap();
    let hash = identity
        .provider
        .crypto()
        .hash(HashAlgorithm::Sha256, &certificate.certificate[0])
        .unwrap();
    let config = Arc::new(config_with(setup, &identity.fingerprint, &certificate).unwrap());
    let rtcp = rtcp.then(|| SocketAddr::from((GATEWAY.0, GATEWAY.1 + 1)));
    let mut dtls = DtlsSrtp {
        setup,
        remote_fingerprint: identity.fingerprint.clone(),
        rtp: Association::new(now, setup, GATEWAY.into(), &config).unwrap(),
        rtcp: rtcp.map(|rtcp| Association::new(now, setup, rtcp, &config).unwrap()),
        transmits: VecDeque::new(),
    };
    dtls.collect();
    (dtls, Fingerprint(hash))
}

/// Each end's keys, per component.
type BothKeys = (Vec<(Component, SessionKeys)>, Vec<(Component, SessionKeys)>);

/// Runs both ends until neither has anything to send, delivering everything (or, with
/// `lose_first`, dropping each end's first datagram, which retransmission must make up for).
/// Returns each end's keys per component.
fn run(
    now: &mut Instant,
    gateway: &mut DtlsSrtp,
    phone: &mut DtlsSrtp,
    lose_first: bool,
) -> Result<BothKeys> {
    let (mut gateway_keys, mut phone_keys) = (Vec::new(), Vec::new());
    let mut lost = (!lose_first, !lose_first);
    for _ in 0..200 {
        let mut moved = false;
        while let Some((component, _, data)) = gateway.poll_transmit() {
            moved = true;
            if !lost.0 {
                lost.0 = true;
                continue;
            }
            if let Progress::Keys(keys) = phone.handle(*now, component, &data)? {
                phone_keys.push((component, *keys));
            }
        }
        while let Some((component, _, data)) = phone.poll_transmit() {
            moved = true;
            if !lost.1 {
                lost.1 = true;
                continue;
            }
            if let Progress::Keys(keys) = gateway.handle(*now, component, &data)? {
                gateway_keys.push((component, *keys));
            }
        }
        if gateway.is_done() && phone.is_done() {
            break;
        }
        if !moved {
            *now += Duration::from_millis(500);
            gateway.handle_timeout(*now)?;
            phone.handle_timeout(*now)?;
        }
    }
    Ok((gateway_keys, phone_keys))
}

/// What one end protects, the other takes back, both ways, for RTP and RTCP.
fn assert_keys_match(ours: &mut SessionKeys, theirs: &mut SessionKeys) {
    let mut rtp = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 0x11, 0x22, 0x33, 0x44];
    rtp.extend_from_slice(&[0xd5; 160]);
    let rtcp = [0x80, 201, 0, 1, 0x11, 0x22, 0x33, 0x44];
    one_way(ours, theirs, &rtp, &rtcp);
    one_way(theirs, ours, &rtp, &rtcp);
}

fn one_way(from: &mut SessionKeys, to: &mut SessionKeys, rtp: &[u8], rtcp: &[u8]) {
    let (mut protected, mut plain) = (Vec::new(), Vec::new());
    from.send.protect_rtp(rtp, &mut protected).unwrap();
    assert_ne!(protected[12..172], rtp[12..]);
    to.receive.unprotect_rtp(&protected, &mut plain).unwrap();
    assert_eq!(plain, rtp);
    from.send.protect_rtcp(rtcp, &mut protected).unwrap();
    to.receive.unprotect_rtcp(&protected, &mut plain).unwrap();
    assert_eq!(plain, rtcp);
}

#[test]
fn fingerprints_are_read_and_written() {
    let ours = local_fingerprint().unwrap();
    assert_eq!(Fingerprint::parse(&ours.attribute()), Some(ours.clone()));
    let lower = ours.attribute().to_ascii_lowercase();
    assert_eq!(Fingerprint::parse(&lower), Some(ours));
    assert!(
        Fingerprint::parse("sha-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB")
            .is_none()
    );
    assert!(Fingerprint::parse("sha-256 AB:CD").is_none());
    assert!(Fingerprint::parse("sha-256 zz").is_none());
    assert!(Fingerprint::parse("").is_none());
}

#[test]
fn setup_answers_the_offer() {
    assert_eq!(Setup::answering(Some("actpass")), Some(Setup::Active));
    assert_eq!(Setup::answering(Some("passive")), Some(Setup::Active));
    assert_eq!(Setup::answering(Some("ACTIVE")), Some(Setup::Passive));
    assert_eq!(Setup::answering(None), Some(Setup::Passive));
    assert_eq!(Setup::answering(Some("holdconn")), None);
}

#[test]
fn handshake_with_an_rsa_phone_gives_matching_keys_on_both_ports() {
    let mut now = Instant::now();
    for (setup, theirs) in [
        (Setup::Active, Setup::Passive),
        (Setup::Passive, Setup::Active),
    ] {
        let (mut phone, phone_fingerprint) = phone(now, theirs, true, true);
        let mut gateway = DtlsSrtp::new(
            now,
            setup,
            phone_fingerprint,
            PHONE.into(),
            Some(SocketAddr::from((PHONE.0, PHONE.1 + 1))),
        )
        .unwrap();
        let (gateway_keys, phone_keys) = run(&mut now, &mut gateway, &mut phone, false).unwrap();
        assert!(gateway.is_done() && phone.is_done(), "{setup:?}");
        assert_eq!(gateway_keys.len(), 2);
        let mut phone_keys = phone_keys;
        for (component, mut ours) in gateway_keys {
            let index = phone_keys
                .iter()
                .position(|(c, _)| *c == component)
                .unwrap();
            let (_, mut theirs) = phone_keys.remove(index);
            assert_eq!(ours.local.suite, Suite::AesCm128HmacSha1_80);
            assert_keys_match(&mut ours, &mut theirs);
        }
    }
}

#[test]
fn lost_datagrams_are_sent_again() {
    let mut now = Instant::now();
    let (mut phone, fingerprint) = phone(now, Setup::Passive, false, false);
    let mut gateway = DtlsSrtp::new(now, Setup::Active, fingerprint, PHONE.into(), None).unwrap();
    assert!(gateway.poll_timeout().is_some());
    let (mut gateway_keys, mut phone_keys) = run(&mut now, &mut gateway, &mut phone, true).unwrap();
    assert!(gateway.is_done() && phone.is_done());
    let (Some((_, mut ours)), Some((_, mut theirs))) = (gateway_keys.pop(), phone_keys.pop())
    else {
        panic!("no keys");
    };
    assert_keys_match(&mut ours, &mut theirs);
}

#[test]
fn a_certificate_other_than_the_fingerprint_fails_the_handshake() {
    let mut now = Instant::now();
    let (mut phone, _) = phone(now, Setup::Passive, true, false);
    let wrong = Fingerprint(vec![7; 32]);
    let mut gateway = DtlsSrtp::new(now, Setup::Active, wrong, PHONE.into(), None).unwrap();
    let error = run(&mut now, &mut gateway, &mut phone, false).unwrap_err();
    assert!(error.to_string().contains("fingerprint"), "{error}");
    assert!(!gateway.is_done());
}

#[test]
fn a_silent_far_end_ends_in_an_error() {
    let mut now = Instant::now();
    let fingerprint = Fingerprint(vec![7; 32]);
    let mut gateway = DtlsSrtp::new(now, Setup::Active, fingerprint, PHONE.into(), None).unwrap();
    let mut sent = 0;
    let failed = (0..600).any(|_| {
        while gateway.poll_transmit().is_some() {
            sent += 1;
        }
        now += Duration::from_secs(1);
        gateway.handle_timeout(now).is_err()
    });
    assert!(failed, "still trying after 600 s");
    assert!(sent > 1, "the ClientHello was not sent again");
}

#[test]
fn dtls_is_told_from_rtp_and_stun() {
    assert!(is_dtls(&[22, 254, 253]));
    assert!(!is_dtls(&[0x80, 0]));
    assert!(!is_dtls(&[0, 1]));
    assert!(!is_dtls(&[]));
}
