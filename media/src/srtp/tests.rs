use super::*;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex"))
        .collect()
}

fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x80, 0];
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// A receiver report with one block (RFC 3550 section 6.4.2).
fn rtcp(ssrc: u32) -> Vec<u8> {
    let mut packet = vec![0x81, 201, 0, 7];
    packet.extend_from_slice(&ssrc.to_be_bytes());
    packet.extend_from_slice(&[7; 24]);
    packet
}

fn pair(suite: Suite) -> (Srtp, Srtp) {
    let key = Crypto::generate(1, suite);
    (Srtp::new(&key, true), Srtp::new(&key, false))
}

#[test]
fn session_keys_match_rfc_3711_appendix_b3() {
    let master = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
    let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
    let srtp = provider().srtp_provider;
    let mut key = [0; 16];
    derive(srtp, &master, &salt, 0, &mut key);
    assert_eq!(key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut session_salt = [0; 14];
    derive(srtp, &master, &salt, 2, &mut session_salt);
    assert_eq!(session_salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    let mut auth = [0; 20];
    derive(srtp, &master, &salt, 1, &mut auth);
    assert_eq!(
        auth.to_vec(),
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
}

#[test]
fn every_suite_protects_and_unprotects_rtp_across_the_rollover() {
    for suite in Suite::ALL {
        let (mut send, mut receive) = pair(suite);
        let (mut wire, mut back) = (Vec::new(), Vec::new());
        for seq in (65_530..=65_535).chain(0..6) {
            let packet = rtp(seq, 0x1234_5678, b"twenty bytes of tone");
            send.protect_rtp(&packet, &mut wire).expect("protect");
            assert_eq!(wire.len(), packet.len() + suite.rtp_tag_len(), "{suite}");
            assert_ne!(
                wire[12..32],
                packet[12..],
                "{suite}: the payload is encrypted"
            );
            assert_eq!(wire[..12], packet[..12], "{suite}: the header is not");
            receive.unprotect_rtp(&wire, &mut back).expect("unprotect");
            assert_eq!(back, packet, "{suite} at {seq}");
        }
        let source = receive.sources.get(0x1234_5678).expect("the source");
        assert_eq!((source.roc, source.highest), (1, 5), "{suite}");
    }
}

#[test]
fn tampered_replayed_and_foreign_packets_are_refused() {
    for suite in Suite::ALL {
        let (mut send, mut receive) = pair(suite);
        let mut wire = Vec::new();
        let mut back = Vec::new();
        let mut sent = Vec::new();
        for seq in 100..110 {
            send.protect_rtp(&rtp(seq, 9, &[seq as u8; 40]), &mut wire)
                .expect("protect");
            sent.push(wire.clone());
        }
        // Out of order within the window: each heard once.
        for at in [0, 2, 1, 5, 3, 4] {
            receive.unprotect_rtp(&sent[at], &mut back).expect("fresh");
        }
        assert_eq!(
            receive.unprotect_rtp(&sent[2], &mut back),
            Err(Rejected::Replay),
            "{suite}"
        );
        let mut tampered = sent[6].clone();
        tampered[20] ^= 1;
        assert_eq!(
            receive.unprotect_rtp(&tampered, &mut back),
            Err(Rejected::Authentication),
            "{suite}"
        );
        // The tampered packet did not use up its sequence number.
        receive.unprotect_rtp(&sent[6], &mut back).expect("genuine");
        let (_, mut stranger) = pair(suite);
        assert_eq!(
            stranger.unprotect_rtp(&sent[7], &mut back),
            Err(Rejected::Authentication),
            "{suite}: another key"
        );
        assert_eq!(
            receive.unprotect_rtp(&sent[7][..14], &mut back),
            Err(Rejected::Malformed),
            "{suite}: too short for the tag"
        );
    }
}

#[test]
fn a_late_packet_from_before_the_rollover_is_heard_after_it() {
    let (mut send, mut receive) = pair(Suite::AesCm128HmacSha1_80);
    let mut packets = Vec::new();
    for seq in [65_533, 65_534, 65_535, 0, 1] {
        let mut wire = Vec::new();
        send.protect_rtp(&rtp(seq, 5, b"x"), &mut wire)
            .expect("protect");
        packets.push(wire);
    }
    let mut back = Vec::new();
    for at in [0, 1, 3, 2, 4] {
        receive
            .unprotect_rtp(&packets[at], &mut back)
            .unwrap_or_else(|error| panic!("packet {at}: {error:?}"));
    }
}

#[test]
fn every_suite_protects_and_unprotects_rtcp() {
    for suite in Suite::ALL {
        let (mut send, mut receive) = pair(suite);
        let (mut wire, mut back) = (Vec::new(), Vec::new());
        let mut sent = Vec::new();
        for _ in 0..3 {
            send.protect_rtcp(&rtcp(42), &mut wire).expect("protect");
            assert_eq!(
                wire.len(),
                rtcp(42).len() + 4 + suite.rtcp_tag_len(),
                "{suite}"
            );
            assert_ne!(wire[8..32], rtcp(42)[8..], "{suite}: encrypted");
            receive.unprotect_rtcp(&wire, &mut back).expect("unprotect");
            assert_eq!(back, rtcp(42), "{suite}");
            sent.push(wire.clone());
        }
        assert_eq!(
            receive.unprotect_rtcp(&sent[1], &mut back),
            Err(Rejected::Replay),
            "{suite}"
        );
        let mut tampered = sent[2].clone();
        tampered[10] ^= 0x40;
        let (_, mut fresh) = pair(suite);
        assert_eq!(
            fresh.unprotect_rtcp(&tampered, &mut back),
            Err(Rejected::Authentication),
            "{suite}"
        );
    }
}

#[test]
fn packets_with_the_mki_desk_phones_send_are_read() {
    let line = Crypto::generate(1, Suite::AesCm128HmacSha1_80);
    let with_mki = Crypto::parse(&format!("{}|2^31|1:1", line.attribute())).expect("parsed");
    assert_eq!(with_mki.mki_len, 1);
    let mut send = Srtp::new(&line, true);
    let mut receive = Srtp::new(&with_mki, false);
    let (mut wire, mut back) = (Vec::new(), Vec::new());
    let packet = rtp(7, 1, b"hello");
    send.protect_rtp(&packet, &mut wire).expect("protect");
    // The MKI sits between the encrypted payload and the tag, outside the authenticated part.
    let tag_at = wire.len() - 10;
    wire.insert(tag_at, 1);
    receive.unprotect_rtp(&wire, &mut back).expect("unprotect");
    assert_eq!(back, packet);
    send.protect_rtcp(&rtcp(1), &mut wire).expect("protect");
    let tag_at = wire.len() - 10;
    wire.insert(tag_at, 1);
    receive.unprotect_rtcp(&wire, &mut back).expect("unprotect");
    assert_eq!(back, rtcp(1));
}

#[test]
fn crypto_lines_are_read_as_offerers_write_them() {
    let key = "WnD7c1ksDGs+dIefCEo8omPg4uO8DYIinNGL5yxQ";
    let line = Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}")).expect("plain");
    assert_eq!(
        (line.tag, line.suite, line.mki_len),
        (1, Suite::AesCm128HmacSha1_80, 0)
    );
    assert_eq!(
        line.attribute(),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key}")
    );
    let desk = Crypto::parse(&format!("2 AES_CM_128_HMAC_SHA1_32 inline:{key}|2^31|1:1"))
        .expect("lifetime and MKI");
    assert_eq!((desk.tag, desk.mki_len), (2, 1));
    assert!(Crypto::parse(&format!("3 AES_CM_128_HMAC_SHA1_80 inline:{key}|1048576")).is_some());
    assert!(Crypto::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key} WSH=128")).is_some());
    // What the relay cannot honour: another line of the offer may do.
    for refused in [
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key} UNENCRYPTED_SRTP"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key} KDR=24"),
        format!("1 AES_256_CM_HMAC_SHA1_80 inline:{key}"),
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key};inline:{key}"),
        "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=".to_owned(),
        format!("1 AEAD_AES_128_GCM inline:{key}"),
        format!("x AES_CM_128_HMAC_SHA1_80 inline:{key}"),
        "1 AES_CM_128_HMAC_SHA1_80".to_owned(),
    ] {
        assert!(Crypto::parse(&refused).is_none(), "{refused}");
    }
    let gcm = Crypto::generate(9, Suite::AeadAes128Gcm);
    assert_eq!(Crypto::parse(&gcm.attribute()), Some(gcm.clone()));
    assert!(!format!("{gcm:?}").contains(&gcm.attribute()[24..]));
    assert!(!format!("{line:?}").contains(key), "keys never reach a log");
    assert!(line.same_key(&Crypto::parse(&line.attribute()).expect("again")));
    assert!(!line.same_key(&desk));
}
