//! A phone that offers DTLS-SRTP (`UDP/TLS/RTP/SAVP`, an RSA certificate as softphones have)
//! calls the browser: the relay answers with its fingerprint as the active side, completes the
//! handshake on the phone's ports, and audio flows both ways under the exported keys.

use super::*;
use crate::dtls::tests::phone as dtls_phone;
use crate::dtls::{DtlsSrtp, Fingerprint, Progress, Setup, is_dtls, local_fingerprint};
use str0m::change::SdpOffer;

const PHONE_RTCP: &str = "127.0.0.2:6001";

/// The phone's offer: DTLS-SRTP with its fingerprint, rtcp-mux or not.
fn phone_offer(fingerprint: &Fingerprint, rtcp_mux: bool) -> String {
    format!(
        "v=0\r\no=phone 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
         a=fingerprint:{}\r\n\
         m=audio 6000 UDP/TLS/RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=setup:actpass\r\n{}\
         a=sendrecv\r\n",
        fingerprint.attribute(),
        if rtcp_mux { "a=rtcp-mux\r\n" } else { "" }
    )
}

/// The call up to the phone's handshake: the relay answered the phone (returned) and the
/// browser leg is connected.
fn incoming_call(offer: &str, media_timeout: Duration) -> (Pair, String) {
    crate::init_crypto();
    let now = Instant::now();
    let config = audio_config(
        media_timeout,
        SrtpPolicy::with_all_suites(SrtpMode::Optional),
    );
    let (mut relay, browser_offer) = Relay::incoming(now, config, Some(offer)).expect("a relay");
    let mut browser = pcmu_browser(now);
    let answer = browser
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&browser_offer).expect("an offer"))
        .expect("the browser answers");
    let sip_answer = relay
        .accept_browser_answer(now, &answer.to_sdp_string())
        .expect("the SIP answer");
    let mid = relay.track.mid.expect("the audio mid");
    let mut pair = Pair::new(now, browser, (mid, None), relay);
    pair.run_until(|pair| pair.browser_connected && pair.relay.is_connected());
    (pair, sip_answer)
}

impl Pair {
    /// Hands the DTLS datagrams between the relay and the phone until both are quiet; the
    /// phone's keys per port (RTCP's with its own handshake).
    fn phone_handshake(&mut self, phone: &mut DtlsSrtp) -> Vec<(bool, crate::srtp::SessionKeys)> {
        let mut keys = Vec::new();
        for _ in 0..50 {
            let dtls: Vec<(SocketAddr, Vec<u8>)> = self
                .to_phone
                .iter()
                .filter(|(_, data)| is_dtls(data))
                .cloned()
                .collect();
            self.to_phone.retain(|(_, data)| !is_dtls(data));
            for (destination, data) in &dtls {
                let component = if *destination == addr(PHONE_RTCP) {
                    crate::dtls::Component::Rtcp
                } else {
                    assert_eq!(*destination, addr(PHONE));
                    crate::dtls::Component::Rtp
                };
                // A phone whose handshake fails (the relay's alert) just stops.
                if let Ok(Progress::Keys(got)) = phone.handle(self.now, component, data) {
                    keys.push((component == crate::dtls::Component::Rtcp, *got));
                }
            }
            while let Some((component, _, data)) = phone.poll_transmit() {
                let (source, rtcp_port) = match component {
                    crate::dtls::Component::Rtp => (addr(PHONE), false),
                    crate::dtls::Component::Rtcp => (addr(PHONE_RTCP), true),
                };
                self.relay.handle_sip(self.now, source, &data, rtcp_port);
            }
            self.exchange();
            if phone.is_done() && dtls.is_empty() {
                break;
            }
        }
        keys
    }
}

#[test]
fn a_dtls_srtp_phone_is_answered_and_audio_flows_both_ways() {
    for rtcp_mux in [true, false] {
        let (mut phone, fingerprint) = dtls_phone(Instant::now(), Setup::Passive, true, !rtcp_mux);
        let (mut pair, answer) = incoming_call(
            &phone_offer(&fingerprint, rtcp_mux),
            Duration::from_secs(30),
        );
        assert!(
            answer.contains("m=audio 30000 UDP/TLS/RTP/SAVP 0 "),
            "{answer}"
        );
        assert!(answer.contains("a=setup:active\r\n"), "{answer}");
        let ours = local_fingerprint().unwrap().attribute();
        assert!(
            answer.contains(&format!("a=fingerprint:{ours}\r\n")),
            "{answer}"
        );
        assert!(!answer.contains("a=crypto"), "{answer}");
        // Nothing goes to the phone in the clear before the keys.
        pair.browser_sends(1, &[1; 160]);
        assert!(pair.to_phone.iter().all(|(_, data)| is_dtls(data)));

        // A third party that guessed the port sends DTLS-looking garbage first: dropped, the
        // call goes on.
        let garbage = [22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4];
        pair.relay
            .handle_sip(pair.now, addr("127.0.0.9:7000"), &garbage, false);
        let mut keys = pair.phone_handshake(&mut phone);
        assert!(phone.is_done());
        assert_eq!(keys.len(), if rtcp_mux { 1 } else { 2 });
        assert_eq!(
            pair.relay.sip_srtp(),
            Some(crate::srtp::Suite::AesCm128HmacSha1_80)
        );
        let position = keys.iter().position(|(rtcp, _)| !rtcp).unwrap();
        let (_, rtp_keys) = keys.remove(position);
        pair.phone_srtp = Some((rtp_keys.send, rtp_keys.receive));
        for seq in 0..20u16 {
            pair.browser_sends(u64::from(seq) + 1000, &[seq as u8; 160]);
            pair.phone_sends(addr(PHONE), seq, &[!(seq as u8); 160]);
            pair.advance(Duration::from_millis(20));
        }
        let heard = pair.phone_heard();
        assert_eq!(heard.len(), 20, "the phone hears every packet");
        assert_eq!(heard[3].2, vec![3; 160]);
        assert_eq!(
            pair.browser_heard.len(),
            20,
            "the browser hears every packet"
        );
        assert_eq!(pair.browser_heard[3].2, vec![!3; 160]);

        // The relay's RTCP report goes to the RTCP port under that port's own keys (or to the
        // RTP port, multiplexed).
        pair.advance(Duration::from_secs(6));
        let report = pair
            .to_phone
            .iter()
            .rev()
            .find(|(_, data)| is_rtcp(data))
            .cloned()
            .expect("a report");
        let mut plain = Vec::new();
        if rtcp_mux {
            assert_eq!(report.0, addr(PHONE));
            let (_, receive) = pair.phone_srtp.as_mut().unwrap();
            receive
                .unprotect_rtcp(&report.1, &mut plain)
                .expect("SRTCP");
        } else {
            assert_eq!(report.0, addr(PHONE_RTCP));
            let (_, mut rtcp_keys) = keys.pop().unwrap();
            rtcp_keys
                .receive
                .unprotect_rtcp(&report.1, &mut plain)
                .expect("SRTCP under the RTCP port's keys");
        }
        assert_eq!(plain[1], 200, "a sender report");
        assert_eq!(pair.relay_events, [Event::Connected]);
    }
}

#[test]
fn a_phone_whose_certificate_is_not_its_fingerprint_ends_the_call() {
    let (mut phone, _) = dtls_phone(Instant::now(), Setup::Passive, true, false);
    let other = Fingerprint::parse(&format!("sha-256 {}", ["5A"; 32].join(":"))).unwrap();
    let (mut pair, _) = incoming_call(&phone_offer(&other, true), Duration::from_secs(30));
    pair.phone_handshake(&mut phone);
    assert_eq!(pair.relay.sip_srtp(), None);
    assert!(
        matches!(&pair.relay_events[..], [Event::Connected, Event::Failed(why)]
            if why.contains("DTLS-SRTP") && why.contains("ertificate")),
        "{:?}",
        pair.relay_events
    );
}

#[test]
fn a_phone_that_never_does_the_handshake_is_named_in_the_silence() {
    let fingerprint = Fingerprint::parse(&format!("sha-256 {}", ["5A"; 32].join(":"))).unwrap();
    let (mut pair, _) = incoming_call(&phone_offer(&fingerprint, true), Duration::from_secs(5));
    // Plain RTP from the phone is not taken in place of SRTP.
    pair.phone_sends(addr(PHONE), 1, &[9; 160]);
    assert!(pair.browser_heard.is_empty());
    pair.run_until(|pair| pair.relay_events.len() > 1);
    assert!(
        matches!(&pair.relay_events[..], [Event::Connected, Event::Failed(why)]
            if why.contains("DTLS")),
        "{:?}",
        pair.relay_events
    );
}

/// With `dtls_offers`, the relay's offer to the phone is DTLS-SRTP (`a=setup:actpass`, our
/// fingerprint, no keys); the phone's answer chooses who starts: as the client (`active`) it
/// connects to the relay, as the server (`passive`) the relay connects to it. Audio flows both
/// ways either way.
#[test]
fn a_dtls_srtp_offer_is_answered_by_a_phone_in_either_role() {
    for (role, theirs) in [("active", Setup::Active), ("passive", Setup::Passive)] {
        let now = Instant::now();
        let mut policy = SrtpPolicy::with_all_suites(SrtpMode::Optional);
        policy.dtls_offers = true;
        let (browser, mid, pending, relay, sip_offer) =
            outgoing_relay(now, audio_config(Duration::from_secs(30), policy));
        let (mut phone, fingerprint) = dtls_phone(now, theirs, true, false);
        assert!(sip_offer.contains(" UDP/TLS/RTP/SAVP "), "{sip_offer}");
        assert!(sip_offer.contains("a=setup:actpass\r\n"), "{sip_offer}");
        let ours = local_fingerprint().unwrap().attribute();
        assert!(
            sip_offer.contains(&format!("a=fingerprint:{ours}\r\n")),
            "{sip_offer}"
        );
        assert!(!sip_offer.contains("a=crypto"), "{sip_offer}");
        let answer =
            phone_offer(&fingerprint, true).replace("a=setup:actpass", &format!("a=setup:{role}"));
        let mut pair = Pair::connect(now, browser, (mid, None), pending, relay, &answer, None);
        let mut keys = pair.phone_handshake(&mut phone);
        assert!(phone.is_done(), "{role}");
        let (_, rtp_keys) = keys.pop().expect("the phone's keys");
        pair.phone_srtp = Some((rtp_keys.send, rtp_keys.receive));
        for seq in 0..20u16 {
            pair.browser_sends(u64::from(seq) + 1000, &[seq as u8; 160]);
            pair.phone_sends(addr(PHONE), seq, &[!(seq as u8); 160]);
            pair.advance(Duration::from_millis(20));
        }
        assert_eq!(pair.phone_heard().len(), 20, "{role}");
        assert_eq!(pair.browser_heard.len(), 20, "{role}");
        // A later offer of ours (the browser's hold) keeps our role.
        let again = pair.relay.sip_offer();
        let kept = if role == "active" {
            "passive"
        } else {
            "active"
        };
        assert!(again.contains(&format!("a=setup:{kept}\r\n")), "{again}");
        assert_eq!(pair.relay_events, [Event::Connected]);
    }
}

/// A phone's re-offer with the same fingerprint keeps the association (no handshake, the same
/// keys); one with another certificate's fingerprint makes a new handshake, and audio flows
/// under the new keys.
#[test]
fn a_reoffer_with_a_new_fingerprint_makes_a_new_handshake() {
    let (mut phone, fingerprint) = dtls_phone(Instant::now(), Setup::Passive, true, false);
    let offer = phone_offer(&fingerprint, true);
    let (mut pair, _) = incoming_call(&offer, Duration::from_secs(30));
    let (_, keys) = pair.phone_handshake(&mut phone).pop().expect("keys");
    pair.phone_srtp = Some((keys.send, keys.receive));

    let again = offer.replace("o=phone 1 1 ", "o=phone 1 2 ");
    let answer = pair.relay.answer_sip_offer(&again).expect("answered");
    assert!(answer.contains("a=setup:active\r\n"), "{answer}");
    pair.exchange();
    assert!(
        pair.to_phone.iter().all(|(_, data)| !is_dtls(data)),
        "no new handshake"
    );
    pair.phone_sends(addr(PHONE), 1, &[1; 160]);
    assert_eq!(pair.browser_heard.len(), 1, "the same keys");

    let (mut second, other) = dtls_phone(pair.now, Setup::Passive, true, false);
    let new = phone_offer(&other, true).replace("o=phone 1 1 ", "o=phone 1 3 ");
    pair.relay.answer_sip_offer(&new).expect("answered");
    pair.to_phone.clear();
    pair.exchange();
    let (_, keys) = pair.phone_handshake(&mut second).pop().expect("new keys");
    assert!(second.is_done());
    pair.phone_srtp = Some((keys.send, keys.receive));
    pair.to_phone.clear();
    for seq in 2..12u16 {
        pair.browser_sends(u64::from(seq) + 1000, &[seq as u8; 160]);
        pair.phone_sends(addr(PHONE), seq, &[!(seq as u8); 160]);
        pair.advance(Duration::from_millis(20));
    }
    assert_eq!(
        pair.phone_heard().len(),
        10,
        "the phone hears under the new keys"
    );
    assert_eq!(
        pair.browser_heard.len(),
        11,
        "the browser hears under the new keys"
    );
    assert_eq!(pair.relay_events, [Event::Connected]);
}
