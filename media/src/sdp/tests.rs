use super::*;

fn data(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/sdp/");
    std::fs::read_to_string(format!("{path}{name}")).unwrap()
}

#[test]
fn reads_chrome_offers() {
    let offer = Description::parse(&data("chrome-offer-audio-video.sdp")).unwrap();
    assert_eq!(offer.lines.len(), 2);
    let (index, audio) = offer.audio().unwrap();
    assert_eq!(index, 0);
    assert_eq!(audio.proto, "UDP/TLS/RTP/SAVPF");
    assert_eq!(audio.mid.as_deref(), Some("0"));
    assert!(audio.rtcp_mux);
    let formats: Vec<Format> = audio
        .payloads
        .iter()
        .map(|payload| payload.format)
        .collect();
    assert_eq!(
        formats,
        [
            Format::Audio(Codec::Opus),
            Format::Audio(Codec::G722),
            Format::Audio(Codec::Pcmu),
            Format::Audio(Codec::Pcma),
            Format::TelephoneEvent(48_000),
            Format::TelephoneEvent(8_000),
        ]
    );
    assert_eq!(
        audio.payloads[0].fmtp.as_deref(),
        Some("minptime=10;useinbandfec=1")
    );
    assert_eq!(audio.codec_names[1], "red");
    assert_eq!(offer.lines[1].kind, "video");
    assert_eq!(audio.direction, Direction::SendRecv);
}

#[test]
fn reads_sip_offers_and_answers() {
    let baresip = Description::parse(&data("baresip-offer.sdp")).unwrap();
    let (_, audio) = baresip.audio().unwrap();
    assert_eq!(audio.rtp_target(), Some("127.0.0.1:10004".parse().unwrap()));
    assert_eq!(
        audio.rtcp_target(),
        Some("127.0.0.1:10005".parse().unwrap())
    );
    assert_eq!(audio.telephone_event(8_000).map(|te| te.pt), Some(101));
    assert_eq!(
        audio.first_codec().map(|codec| codec.format),
        Some(Format::Audio(Codec::Pcmu))
    );
    let sipp = Description::parse(&data("sipp-offer.sdp")).unwrap();
    let (_, audio) = sipp.audio().unwrap();
    assert_eq!(
        audio.first_codec().map(|codec| codec.format),
        Some(Format::Audio(Codec::Pcma))
    );
    let answer = Description::parse(&data("sipp-answer.sdp")).unwrap();
    assert_eq!(
        answer.audio().unwrap().1.rtp_target(),
        Some("127.0.0.1:6000".parse().unwrap())
    );
}

#[test]
fn hold_and_rtcp_attributes() {
    let text = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\na=sendonly\r\n\
                m=audio 4000 RTP/AVP 0\r\na=rtcp:4005 IN IP4 192.0.2.9\r\n";
    let description = Description::parse(text).unwrap();
    let (_, audio) = description.audio().unwrap();
    assert_eq!(
        audio.direction,
        Direction::SendOnly,
        "the session-level direction applies"
    );
    assert_eq!(audio.rtp_target(), None, "0.0.0.0 is no target");
    assert_eq!(audio.rtcp, Some("192.0.2.9:4005".parse().unwrap()));
    assert_eq!(Direction::SendOnly.answer(), Direction::RecvOnly);
    assert_eq!(Direction::Inactive.answer(), Direction::Inactive);
    assert!(Description::parse("not sdp").is_err());
}

#[test]
fn writes_sip_offers_and_answers_that_read_back() {
    let chrome = Description::parse(&data("chrome-offer-audio-video.sdp")).unwrap();
    let (_, audio) = chrome.audio().unwrap();
    let preference = [Codec::Pcmu, Codec::Opus, Codec::Pcma];
    let payloads = common_payloads(&audio.payloads, &preference);
    let formats: Vec<Format> = payloads.iter().map(|payload| payload.format).collect();
    assert_eq!(
        formats,
        [
            Format::Audio(Codec::Pcmu),
            Format::Audio(Codec::Opus),
            Format::Audio(Codec::Pcma),
            Format::TelephoneEvent(48_000),
            Format::TelephoneEvent(8_000),
        ]
    );
    let offer = SipDescription {
        session_id: 7,
        version: 1,
        rtp: "192.0.2.10:30000".parse().unwrap(),
        payloads: &payloads,
        direction: Direction::SendRecv,
        answering: None,
        crypto: &[],
        secure: false,
        video: None,
        removed_video: None,
        dtls: None,
    }
    .write();
    assert!(
        offer.contains("m=audio 30000 RTP/AVP 0 111 8 110 126\r\n"),
        "{offer}"
    );
    assert!(offer.contains("c=IN IP4 192.0.2.10\r\n"), "{offer}");
    assert!(offer.contains("a=rtpmap:111 opus/48000/2\r\n"), "{offer}");
    assert!(
        offer.contains("a=fmtp:111 minptime=10;useinbandfec=1\r\n"),
        "{offer}"
    );
    let again = Description::parse(&offer).unwrap();
    assert_eq!(again.audio().unwrap().1.payloads, payloads);
    assert_eq!(
        again.audio().unwrap().1.rtp_target(),
        Some("192.0.2.10:30000".parse().unwrap())
    );

    // An answer keeps the offer's m-lines in place, declining the others.
    let answer = SipDescription {
        session_id: 7,
        version: 1,
        rtp: "192.0.2.10:30002".parse().unwrap(),
        payloads: &payloads[..1],
        direction: Direction::RecvOnly,
        answering: Some((&chrome, 0)),
        crypto: &[],
        secure: false,
        video: None,
        removed_video: None,
        dtls: None,
    }
    .write();
    let read = Description::parse(&answer).unwrap();
    assert_eq!(read.lines.len(), 2);
    assert_eq!(read.lines[1].kind, "video");
    assert_eq!(read.lines[1].port, 0);
    assert_eq!(read.lines[0].direction, Direction::RecvOnly);
}

#[test]
fn no_common_codec_names_both_sides() {
    let text = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                m=audio 4000 RTP/AVP 18 3\r\na=rtpmap:18 G729/8000\r\na=rtpmap:3 GSM/8000\r\n";
    let description = Description::parse(text).unwrap();
    let (_, audio) = description.audio().unwrap();
    assert!(common_payloads(&audio.payloads, &Codec::ALL).is_empty());
    assert_eq!(
        no_common_codec(audio, &Codec::ALL),
        "no common codec: the far end offers G729, GSM, the gateway relays opus, G722, PCMU, PCMA"
    );
}

/// A phone's description with an audio m-line of each profile, in this order.
fn phone_with(lines: &[(&str, bool)]) -> Description {
    let key = "WnD7c1ksDGs+dIefCEo8omPg4uO8DYIinNGL5yxQ";
    let mut text =
        "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n".to_owned();
    for (at, (proto, keyed)) in lines.iter().enumerate() {
        text += &format!(
            "m=audio {} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n",
            4000 + 2 * at
        );
        if *keyed {
            text += &format!("a=crypto:1 UNKNOWN_SUITE inline:{key}\r\n");
            text += &format!("a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{key}|2^31|1:1\r\n");
        }
    }
    Description::parse(&text).expect("valid")
}

#[test]
fn the_sip_audio_stream_is_chosen_by_the_srtp_policy() {
    use crate::srtp::{SrtpMode, SrtpPolicy, Suite};
    let never = SrtpPolicy::never();
    let optional = SrtpPolicy::with_all_suites(SrtpMode::Optional);
    let mandatory = SrtpPolicy::with_all_suites(SrtpMode::Mandatory);
    let pick = |description: &Description, policy: &SrtpPolicy| {
        description
            .sip_audio_with(policy)
            .map(|(index, _, key)| (index, key.map(|key| (key.tag, key.suite))))
    };
    let savp = phone_with(&[("RTP/SAVP", true)]);
    let keyed_avp = phone_with(&[("RTP/AVP", true)]);
    let avp = phone_with(&[("RTP/AVP", false)]);
    let both = phone_with(&[("RTP/SAVP", true), ("RTP/AVP", false)]);
    // The unknown suite is skipped for the next line, MKI and all.
    let key = Some((2, Suite::AesCm128HmacSha1_32));
    assert_eq!(pick(&savp, &optional).ok(), Some((0, key)));
    assert_eq!(pick(&savp, &mandatory).ok(), Some((0, key)));
    assert_eq!(
        pick(&keyed_avp, &optional).ok(),
        Some((0, key)),
        "best effort"
    );
    assert_eq!(
        pick(&keyed_avp, &never).ok(),
        Some((0, None)),
        "keys ignored"
    );
    assert_eq!(pick(&avp, &optional).ok(), Some((0, None)));
    assert_eq!(pick(&both, &never).ok(), Some((1, None)));
    assert_eq!(pick(&both, &optional).ok(), Some((0, key)));
    let refused = |description: &Description, policy: &SrtpPolicy| match pick(description, policy) {
        Err(Error::IncompatibleTransport(why)) => why,
        other => panic!("{other:?}"),
    };
    assert!(refused(&savp, &never).contains("SRTP toward SIP is turned off"));
    assert!(refused(&avp, &mandatory).contains("requires SRTP"));
    let only_80 = SrtpPolicy {
        mode: SrtpMode::Optional,
        suites: vec![Suite::AesCm128HmacSha1_80],
        dtls_offers: false,
    };
    assert!(refused(&savp, &only_80).contains("without a key the gateway can use"));
    let dtls = phone_with(&[("UDP/TLS/RTP/SAVP", false)]);
    assert!(refused(&dtls, &optional).contains("without a SHA-256 certificate fingerprint"));
    let tcp = phone_with(&[("udptl", false)]);
    assert!(refused(&tcp, &optional).contains("DTLS-SRTP (UDP/TLS/RTP/SAVP)"));
}

/// A softphone's DTLS-SRTP offer (fingerprint at session level, as baresip writes it, or in
/// the m-line).
fn dtls_offer(session: &str, media: &str, proto: &str) -> Description {
    let text = format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n{session}\
         m=audio 4000 {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n{media}"
    );
    Description::parse(&text).expect("valid")
}

#[test]
fn dtls_srtp_lines_are_taken_with_a_sha_256_fingerprint() {
    use crate::dtls::{Fingerprint, Setup};
    use crate::srtp::{SrtpMode, SrtpPolicy};
    let fingerprint = format!("sha-256 {}", ["AB"; 32].join(":"));
    let optional = SrtpPolicy::with_all_suites(SrtpMode::Optional);
    let session = dtls_offer(
        &format!("a=fingerprint:{fingerprint}\r\na=setup:actpass\r\n"),
        "",
        "UDP/TLS/RTP/SAVP",
    );
    let (_, line, key) = session.sip_audio_with(&optional).unwrap();
    assert!(line.is_dtls_profile() && key.is_none());
    assert_eq!(line.fingerprint, Fingerprint::parse(&fingerprint));
    assert_eq!(line.setup.as_deref(), Some("actpass"));
    // The m-line's own attributes win; several hash functions, SHA-256 taken.
    let media = dtls_offer(
        "a=fingerprint:sha-1 00:11\r\n",
        &format!("a=fingerprint:sha-1 00:11\r\na=fingerprint:{fingerprint}\r\na=setup:active\r\n"),
        "UDP/TLS/RTP/SAVPF",
    );
    let (_, line, _) = media.sip_audio_with(&optional).unwrap();
    assert_eq!(line.fingerprint, Fingerprint::parse(&fingerprint));
    let refused =
        |description: &Description, policy: &SrtpPolicy| match description.sip_audio_with(policy) {
            Err(Error::IncompatibleTransport(why)) => why,
            other => panic!("{other:?}"),
        };
    assert!(refused(&session, &SrtpPolicy::never()).contains("turned off"));
    let sha1 = dtls_offer("a=fingerprint:sha-1 00:11\r\n", "", "UDP/TLS/RTP/SAVP");
    assert!(refused(&sha1, &optional).contains("SHA-256"));
    let holdconn = dtls_offer(
        &format!("a=fingerprint:{fingerprint}\r\na=setup:holdconn\r\n"),
        "",
        "UDP/TLS/RTP/SAVP",
    );
    assert!(refused(&holdconn, &optional).contains("a=setup:holdconn"));

    // Our answer: the offered profile, our fingerprint and role, no keys.
    let payloads = session.lines[0].payloads.clone();
    let ours = DtlsLine {
        proto: "UDP/TLS/RTP/SAVP".to_owned(),
        fingerprint: Fingerprint::parse(&format!("sha-256 {}", ["01"; 32].join(":"))).unwrap(),
        setup: Setup::Active,
    };
    let answer = SipDescription {
        session_id: 7,
        version: 1,
        rtp: "192.0.2.10:30000".parse().unwrap(),
        payloads: &payloads,
        direction: Direction::SendRecv,
        answering: Some((&session, 0)),
        crypto: &[],
        secure: false,
        video: None,
        removed_video: None,
        dtls: Some(&ours),
    }
    .write();
    assert!(
        answer.contains("m=audio 30000 UDP/TLS/RTP/SAVP 0\r\n"),
        "{answer}"
    );
    assert!(answer.contains(&format!(
        "a=fingerprint:{}\r\n",
        ours.fingerprint.attribute()
    )));
    assert!(answer.contains("a=setup:active\r\n"), "{answer}");
    assert!(!answer.contains("a=crypto"), "{answer}");
}

#[test]
fn keys_are_written_with_the_profile() {
    use crate::srtp::{Crypto, Suite};
    let keys = [
        Crypto::generate(1, Suite::AesCm128HmacSha1_80),
        Crypto::generate(2, Suite::AeadAes128Gcm),
    ];
    let payloads = [Payload {
        pt: 0,
        format: Format::Audio(Codec::Pcmu),
        fmtp: None,
    }];
    for secure in [false, true] {
        let text = SipDescription {
            session_id: 1,
            version: 1,
            rtp: "192.0.2.10:30000".parse().unwrap(),
            payloads: &payloads,
            direction: Direction::SendRecv,
            answering: None,
            crypto: &keys,
            secure,
            video: None,
            removed_video: None,
            dtls: None,
        }
        .write();
        let read = Description::parse(&text).unwrap();
        let proto = if secure { "RTP/SAVP" } else { "RTP/AVP" };
        assert_eq!(read.lines[0].proto, proto, "{text}");
        assert_eq!(read.lines[0].crypto, keys, "{text}");
    }
}

#[test]
fn keys_are_left_out_of_error_texts() {
    assert_eq!(
        without_keys("bad line a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2VjcmV0|2^31|1:1 here"),
        "bad line a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:(key) here"
    );
    assert_eq!(without_keys("nothing secret"), "nothing secret");
    let broken =
        "v=0\r\nm=audio x RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2VjcmV0\r\n";
    if let Err(error) = Description::parse(broken) {
        assert!(!error.to_string().contains("c2VjcmV0"), "{error}");
    }
}

#[test]
fn bandwidth_goes_after_the_connection_line_of_the_video_section() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\nm=video 0 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 0.0.0.0\r\n";
    let out = with_bandwidth(
        sdp,
        "video",
        &[("AS".to_owned(), 512), ("TIAS".to_owned(), 500_000)],
    );
    assert_eq!(out.matches("b=AS:512\r\n").count(), 1, "{out}");
    assert!(
        out.contains("m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\nb=AS:512\r\nb=TIAS:500000\r\na=mid:1"),
        "{out}"
    );
    let read = Description::parse(&out).expect("valid SDP");
    assert_eq!(read.lines[1].bandwidth.len(), 2);
    assert!(read.lines[0].bandwidth.is_empty() && read.lines[2].bandwidth.is_empty());
    assert_eq!(with_bandwidth(sdp, "video", &[]), sdp);
}

#[test]
fn the_browsers_video_is_restricted_to_the_agreed_format_or_declined() {
    let offer = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/sdp/chrome-offer-audio-video.sdp"
    ))
    .unwrap();
    let kept = restrict_video(&offer, Some(&[96, 97]));
    let read = Description::parse(&kept).unwrap();
    let (_, video) = read.video().unwrap();
    assert_eq!(video.formats, ["96", "97"], "{kept}");
    assert_eq!(video.rtx, [(97, 96)]);
    assert!(!kept.contains("a=rtpmap:98 ") && !kept.contains("a=fmtp:102 "));
    assert!(kept.contains("a=group:BUNDLE 0 1"), "{kept}");
    // The audio m-line is untouched.
    assert_eq!(
        read.audio().unwrap().1,
        Description::parse(&offer).unwrap().audio().unwrap().1
    );
    let declined = restrict_video(&offer, None);
    let read = Description::parse(&declined).unwrap();
    assert!(read.video().is_none(), "{declined}");
    assert_eq!(read.lines[1].port, 0);
    assert!(declined.contains("a=group:BUNDLE 0\r\n"), "{declined}");
}

#[test]
fn kept_formats_follow_the_given_order() {
    let offer = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/sdp/chrome-offer-audio-video.sdp"
    ))
    .unwrap();
    // PCMA before telephone-event, though the offer lists them the other way round.
    let kept = keep_formats(&offer, "audio", &[8, 126, 250]);
    let read = Description::parse(&kept).unwrap();
    let (_, audio) = read.audio().unwrap();
    assert_eq!(audio.formats, ["8", "126"], "{kept}");
    assert!(!kept.contains("a=rtpmap:111 ") && !kept.contains("a=fmtp:111 "));
    // The video m-line is untouched.
    assert_eq!(
        read.video().unwrap().1,
        Description::parse(&offer).unwrap().video().unwrap().1
    );
}

#[test]
fn a_declined_answer_line_keeps_no_format_lines() {
    let offer = Description::parse(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=rtpmap:0 PCMU/8000\r\n\
         m=video 0 UDP/TLS/RTP/SAVPF 100\r\na=mid:1\r\na=rtpmap:100 VP8/90000\r\n",
    )
    .unwrap();
    let answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=rtpmap:0 PCMU/8000\r\n\
         m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\n\
         a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtcp-fb:96 nack\r\na=inactive\r\n";
    let out = declined_as_offered(answer, &offer);
    assert!(
        out.ends_with("m=video 0 UDP/TLS/RTP/SAVPF 100\r\na=mid:1\r\na=inactive\r\n"),
        "{out}"
    );
    assert!(out.contains("a=rtpmap:0 PCMU/8000"), "{out}");
}

#[test]
fn an_answer_gets_stream_and_track_ids_of_its_own() {
    let offer = "v=0\r\na=msid-semantic: WMS s1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n\
                 a=msid:s1 t1\r\na=ssrc:5 msid:s1 t1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
                 a=msid:- t2\r\n";
    let answer = "v=0\r\na=msid-semantic: WMS s1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n\
                  a=msid:s1 t1\r\na=ssrc:7 msid:s1 t1\r\na=ssrc:7 cname:s1x\r\n\
                  m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:mine t2\r\n";
    let own = own_msid(answer, offer);
    assert_eq!(
        own,
        "v=0\r\na=msid-semantic: WMS gw-s1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n\
         a=msid:gw-s1 gw-t1\r\na=ssrc:7 msid:gw-s1 gw-t1\r\na=ssrc:7 cname:s1x\r\n\
         m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:mine gw-t2\r\n"
    );
    // The same in every answer; ids of our own, and offers without any, untouched.
    assert_eq!(own_msid(answer, offer), own);
    assert_eq!(own_msid(answer, "v=0\r\nm=audio 9 RTP/AVP 0\r\n"), answer);
}
