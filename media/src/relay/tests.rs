use std::time::{Duration, Instant, SystemTime};

use super::track::{Mapping, Rewrite, rescale_events, rescale_timestamp};
use super::*;
use crate::srtp::{Crypto, SrtpMode, SrtpPolicy, Suite};
use str0m::Candidate;

pub(super) fn data(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/sdp/");
    std::fs::read_to_string(format!("{path}{name}")).expect("test data")
}

pub(super) fn config(codecs: &[Codec]) -> RelayConfig {
    crate::init_crypto();
    RelayConfig {
        browser: "127.0.0.1:40000".parse().expect("addr"),
        sip_rtp: "127.0.0.1:30000".parse().expect("addr"),
        codecs: codecs.to_vec(),
        media_timeout: Duration::from_secs(30),
        ice_timeout: Duration::from_secs(30),
        wallclock: SystemTime::now(),
        cname: "gw".into(),
        srtp: crate::srtp::SrtpPolicy::never(),
        sip_video: None,
        video_codecs: Vec::new(),
    }
}

pub(super) const ALL: [Codec; 4] = [Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma];

pub(super) fn formats(line: &crate::sdp::MediaLine) -> Vec<Format> {
    line.payloads.iter().map(|payload| payload.format).collect()
}

#[test]
fn a_chrome_offer_becomes_a_sip_offer_and_the_sip_answer_the_browser_answer() {
    let now = Instant::now();
    let (mut relay, sip_offer) =
        Relay::outgoing(now, config(&ALL), &data("chrome-offer-audio.sdp")).expect("relay");
    let offer = Description::parse(&sip_offer).expect("valid SDP");
    let (_, audio) = offer.audio().expect("audio");
    assert_eq!(audio.proto, "RTP/AVP");
    assert_eq!(audio.rtp_target(), Some(config(&ALL).sip_rtp));
    assert_eq!(
        formats(audio),
        [
            Format::Audio(Codec::Opus),
            Format::Audio(Codec::G722),
            Format::Audio(Codec::Pcmu),
            Format::Audio(Codec::Pcma),
            Format::TelephoneEvent(48_000),
            Format::TelephoneEvent(8_000),
        ]
    );
    assert!(!sip_offer.contains("red/"), "no RED toward SIP");
    assert!(!sip_offer.contains("SAVPF") && !sip_offer.contains("ice-ufrag"));

    // baresip answers PCMU and telephone-event/8000.
    let answer = relay
        .accept_sip_answer(now, &data("baresip-answer.sdp"))
        .expect("accepted")
        .expect("a browser answer");
    let browser = Description::parse(&answer).expect("valid SDP");
    let (_, audio) = browser.audio().expect("audio");
    assert_eq!(audio.proto, "UDP/TLS/RTP/SAVPF");
    // The SIP side's codec first (the browser sends the answer's first), then the browser's
    // other codecs the call relays, so that the SIP side may later move the call to one.
    assert_eq!(
        formats(audio),
        [
            Format::Audio(Codec::Pcmu),
            Format::TelephoneEvent(8_000),
            Format::Audio(Codec::Opus),
            Format::TelephoneEvent(48_000),
            Format::Audio(Codec::G722),
            Format::Audio(Codec::Pcma),
        ]
    );
    assert!(answer.contains("a=ice-lite"));
    assert!(answer.contains("a=setup:"));
    assert!(answer.contains("127.0.0.1 40000 typ host"), "{answer}");
    assert!(!answer.contains("red/") && !answer.contains("ulpfec"));
    assert_eq!(relay.codec(), Some(Codec::Pcmu));
    assert!(relay.ice_ufrag().is_some());
    assert_eq!(relay.sip_direction(), Direction::SendRecv);
    // A later SIP description (the 200 after a 183) only moves the SIP leg.
    assert!(
        relay
            .accept_sip_answer(now, &data("baresip-answer.sdp"))
            .expect("accepted")
            .is_none()
    );
}

#[test]
fn video_is_declined_toward_the_browser() {
    let now = Instant::now();
    for file in [
        "chrome-offer-audio-video.sdp",
        "firefox-offer-audio-video.sdp",
    ] {
        let (mut relay, sip_offer) =
            Relay::outgoing(now, config(&ALL), &data(file)).expect("relay");
        assert!(
            !sip_offer.contains("m=video"),
            "{file}: video is not offered to SIP"
        );
        let answer = relay
            .accept_sip_answer(now, &data("baresip-answer.sdp"))
            .expect("accepted")
            .expect("an answer");
        let browser = Description::parse(&answer).expect("valid SDP");
        let offer = Description::parse(&data(file)).expect("offer");
        assert_eq!(browser.lines.len(), offer.lines.len(), "{answer}");
        let video = offer
            .lines
            .iter()
            .position(|line| line.kind == "video")
            .expect("video");
        assert_eq!(browser.lines[video].kind, "video");
        assert_eq!(browser.lines[video].port, 0, "{answer}");
        // Strict parsers (aiortc, ...) refuse a declined m-line whose format the offer did not
        // have: it keeps the offer's proto and lists the offer's first format.
        assert_eq!(
            browser.lines[video].proto, offer.lines[video].proto,
            "{answer}"
        );
        assert_eq!(
            browser.lines[video].formats,
            [offer.lines[video].formats[0].clone()],
            "{answer}"
        );
    }
}

#[test]
fn no_common_codec_names_both_sides() {
    let now = Instant::now();
    let error = Relay::incoming(
        now,
        config(&[Codec::Opus, Codec::Pcma]),
        Some(&data("baresip-offer.sdp")),
    )
    .expect_err("refused");
    let text = error.to_string();
    assert!(text.contains("PCMU"), "{text}");
    assert!(text.contains("opus") && text.contains("PCMA"), "{text}");
    // An answer with none of the offered codecs is refused too.
    let (mut relay, _) =
        Relay::outgoing(now, config(&[Codec::Opus]), &data("chrome-offer-audio.sdp"))
            .expect("relay");
    assert!(matches!(
        relay.accept_sip_answer(now, &data("baresip-answer.sdp")),
        Err(Error::NoCommonCodec(_))
    ));
}

/// A str0m peer that plays the browser in these unit tests (the end-to-end tests use
/// webrtc-rs).
pub(super) fn browser_answer(offer: &str) -> String {
    let mut rtc = Rtc::builder().set_rtp_mode(true).build(Instant::now());
    rtc.add_local_candidate(
        Candidate::host("127.0.0.1:50000".parse().expect("addr"), "udp").expect("candidate"),
    );
    rtc.sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(offer).expect("offer"))
        .expect("answered")
        .to_sdp_string()
}

#[test]
fn a_sip_offer_becomes_a_browser_offer_and_the_browser_answer_the_200() {
    let now = Instant::now();
    let sip_offer = data("baresip-offer.sdp");
    let (mut relay, browser_offer) =
        Relay::incoming(now, config(&ALL), Some(&sip_offer)).expect("relay");
    let offer = Description::parse(&browser_offer).expect("valid SDP");
    let (_, audio) = offer.audio().expect("audio");
    assert_eq!(audio.proto, "UDP/TLS/RTP/SAVPF");
    assert_eq!(
        formats(audio),
        [Format::Audio(Codec::Pcmu), Format::TelephoneEvent(8_000)]
    );
    assert!(browser_offer.contains("a=ice-lite"));
    let answer = relay
        .accept_browser_answer(now, &browser_answer(&browser_offer))
        .expect("accepted");
    let sip = Description::parse(&answer).expect("valid SDP");
    let (_, audio) = sip.audio().expect("audio");
    assert_eq!(audio.proto, "RTP/AVP");
    assert_eq!(
        formats(audio),
        [Format::Audio(Codec::Pcmu), Format::TelephoneEvent(8_000)]
    );
    assert_eq!(
        audio.payloads[1].pt, 101,
        "the SIP side's own payload types"
    );
    assert_eq!(audio.direction, Direction::SendRecv);
    assert_eq!(relay.codec(), Some(Codec::Pcmu));

    // Hold: sendonly gets recvonly; resume gets sendrecv; the target moves.
    let hold = sip_offer
        .replace("a=sendrecv", "a=sendonly")
        .replace("m=audio 10004", "m=audio 10010");
    let answer = relay.answer_sip_offer(&hold).expect("answered");
    let (_, audio) = Description::parse(&answer)
        .expect("valid")
        .audio()
        .map(|(i, l)| (i, l.clone()))
        .expect("audio");
    assert_eq!(audio.direction, Direction::RecvOnly);
    assert_eq!(relay.sip_direction(), Direction::RecvOnly);
    assert_eq!(
        relay.sip.target,
        Some("127.0.0.1:10010".parse().expect("addr"))
    );
    let answer = relay.answer_sip_offer(&sip_offer).expect("answered");
    assert!(answer.contains("a=sendrecv"));
    // A re-offer without the codec in use cannot be taken (no transcoding).
    let pcma = sip_offer
        .replace("RTP/AVP 0 101", "RTP/AVP 8 101")
        .replace("0 PCMU/8000", "8 PCMA/8000");
    assert!(matches!(
        relay.answer_sip_offer(&pcma),
        Err(Error::NoCommonCodec(_))
    ));
}

#[test]
fn an_offerless_invite_gets_our_offer_after_the_browser_answers() {
    let now = Instant::now();
    let (mut relay, browser_offer) = Relay::incoming(now, config(&ALL), None).expect("relay");
    let offer = Description::parse(&browser_offer).expect("valid SDP");
    let (_, audio) = offer.audio().expect("audio");
    assert!(formats(audio).contains(&Format::Audio(Codec::Opus)));
    assert!(formats(audio).contains(&Format::TelephoneEvent(48_000)));
    let sip_offer = relay
        .accept_browser_answer(now, &browser_answer(&browser_offer))
        .expect("accepted");
    let (_, audio) = Description::parse(&sip_offer)
        .expect("valid")
        .audio()
        .map(|(i, l)| (i, l.clone()))
        .expect("audio");
    assert_eq!(audio.payloads[0].format, Format::Audio(Codec::Opus));
    assert!(
        audio
            .payloads
            .iter()
            .all(|p| p.format != Format::Audio(Codec::Pcmu))
    );
    // The SIP side answers in the ACK.
    let ack_answer = sip_offer.replace("m=audio 30000", "m=audio 10050");
    relay.accept_sip_answer(now, &ack_answer).expect("accepted");
    assert_eq!(
        relay.sip.target,
        Some("127.0.0.1:10050".parse().expect("addr"))
    );
}

#[test]
fn payload_types_map_by_format_and_events_change_rate() {
    let mapping = Mapping {
        browser: vec![
            (111, Format::Audio(Codec::Opus)),
            (110, Format::TelephoneEvent(48_000)),
        ],
        sip: vec![
            (96, Format::Audio(Codec::Opus)),
            (101, Format::TelephoneEvent(8_000)),
        ],
    };
    assert_eq!(mapping.map(111, true), Some((96, None)));
    assert_eq!(mapping.map(110, true), Some((101, Some((48_000, 8_000)))));
    assert_eq!(mapping.map(101, false), Some((110, Some((8_000, 48_000)))));
    assert_eq!(mapping.map(0, true), None);
    let mut out = Vec::new();
    // Event 5, end bit, duration 960 at 48 kHz = 160 at 8 kHz.
    rescale_events(&[5, 0x8a, 0x03, 0xc0], (48_000, 8_000), &mut out);
    assert_eq!(out, [5, 0x8a, 0x00, 0xa0]);
    assert_eq!(rescale_timestamp(48_000, (48_000, 8_000)), 8_000);
}

#[test]
fn rewrites_keep_the_output_continuous_across_sources() {
    let now = Instant::now();
    let mut rewrite = Rewrite::default();
    assert_eq!(rewrite.apply(1, 100, 1000, 8000, now), (100, 1000));
    assert_eq!(rewrite.apply(1, 101, 1160, 8000, now), (101, 1160));
    // A new source 20 ms later continues after the last output.
    let later = now + Duration::from_millis(20);
    let (seq, ts) = rewrite.apply(2, 5000, 777, 8000, later);
    assert_eq!(seq, 102);
    assert_eq!(ts, 1160 + 160);
    // Sequence numbers extend across the 16-bit wrap.
    let mut rewrite = Rewrite::default();
    rewrite.apply(1, 65_535, 0, 8000, now);
    assert_eq!(rewrite.apply(1, 0, 160, 8000, now).0, 65_536);
}

#[test]
fn a_firefox_offer_keeps_its_8khz_events_next_to_opus() {
    let now = Instant::now();
    let (mut relay, sip_offer) =
        Relay::outgoing(now, config(&ALL), &data("firefox-offer-audio.sdp")).expect("relay");
    let offer = Description::parse(&sip_offer).expect("valid SDP");
    let (_, audio) = offer.audio().expect("audio");
    assert_eq!(
        formats(audio),
        [
            Format::Audio(Codec::Opus),
            Format::Audio(Codec::G722),
            Format::Audio(Codec::Pcmu),
            Format::Audio(Codec::Pcma),
            Format::TelephoneEvent(8_000),
        ]
    );
    // The SIP side takes opus with telephone-event/8000.
    let sip_answer = sip_offer.replace("RTP/AVP 109 9 0 8 101", "RTP/AVP 109 101");
    let answer = relay
        .accept_sip_answer(now, &sip_answer)
        .expect("accepted")
        .expect("a browser answer");
    let browser = Description::parse(&answer).expect("valid");
    let (_, audio) = browser.audio().expect("audio");
    assert_eq!(
        formats(audio)[..2],
        [Format::Audio(Codec::Opus), Format::TelephoneEvent(8_000)]
    );
    // Firefox's audio+video offer: video declined.
    let (mut relay, _) =
        Relay::outgoing(now, config(&ALL), &data("firefox-offer-audio-video.sdp")).expect("relay");
    let answer = relay
        .accept_sip_answer(now, &data("baresip-answer.sdp"))
        .expect("accepted")
        .expect("an answer");
    let browser = Description::parse(&answer).expect("valid SDP");
    assert!(
        browser
            .lines
            .iter()
            .any(|line| line.kind == "video" && line.port == 0),
        "{answer}"
    );
}

#[test]
fn sipp_offers_translate_both_ways() {
    let now = Instant::now();
    let (mut relay, browser_offer) =
        Relay::incoming(now, config(&ALL), Some(&data("sipp-offer.sdp"))).expect("relay");
    let answer = relay
        .accept_browser_answer(now, &browser_answer(&browser_offer))
        .expect("accepted");
    let sip = Description::parse(&answer).expect("valid SDP");
    let (_, audio) = sip.audio().expect("audio");
    assert_eq!(audio.proto, "RTP/AVP");
    assert_eq!(relay.codec(), Some(Codec::Pcmu));
}

#[test]
fn rtcp_mux_is_answered_when_offered() {
    let now = Instant::now();
    let offer = data("baresip-offer.sdp").replace("a=sendrecv", "a=sendrecv\r\na=rtcp-mux");
    let (mut relay, browser_offer) =
        Relay::incoming(now, config(&ALL), Some(&offer)).expect("relay");
    let answer = relay
        .accept_browser_answer(now, &browser_answer(&browser_offer))
        .expect("accepted");
    assert!(answer.contains("a=rtcp-mux"), "{answer}");
    let (mut relay, browser_offer) =
        Relay::incoming(now, config(&ALL), Some(&data("baresip-offer.sdp"))).expect("relay");
    let answer = relay
        .accept_browser_answer(now, &browser_answer(&browser_offer))
        .expect("accepted");
    assert!(!answer.contains("a=rtcp-mux"), "{answer}");
}

/// A phone's SDP with one codec and telephone-event/8000 (baresip's shape).
pub(super) fn phone_sdp(codec: Codec) -> String {
    let pt = codec.static_pt().unwrap_or(96);
    let rtpmap = match codec.channels() {
        Some(channels) => format!("{}/{}/{channels}", codec.name(), codec.clock_rate()),
        None => format!("{}/{}", codec.name(), codec.clock_rate()),
    };
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 10020 RTP/AVP {pt} 101\r\na=rtpmap:{pt} {rtpmap}\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
    )
}

/// The audio codec of a description's first audio m-line.
fn audio_codec(sdp: &str) -> Option<Codec> {
    let description = Description::parse(sdp).expect("valid SDP");
    let (_, audio) = description.audio().expect("audio");
    audio
        .payloads
        .iter()
        .find_map(|payload| match payload.format {
            Format::Audio(codec) => Some(codec),
            Format::TelephoneEvent(_) | Format::Video(_) => None,
        })
}

/// Every codec of the list, as the phone's only codec, both call directions: the browser's
/// answer (or offer) carries that codec, and so does the SIP answer. G.722 was the case that
/// failed: str0m models it at 16 kHz and matched nothing configured at 8 kHz.
#[test]
fn each_codec_alone_on_the_phone_is_negotiated_both_ways() {
    let now = Instant::now();
    for codec in ALL {
        // A browser calls the phone.
        let (mut relay, _) =
            Relay::outgoing(now, config(&ALL), &data("chrome-offer-audio.sdp")).expect("relay");
        let answer = relay
            .accept_sip_answer(now, &phone_sdp(codec))
            .expect("accepted")
            .expect("a browser answer");
        assert_eq!(audio_codec(&answer), Some(codec), "{answer}");
        assert_eq!(relay.codec(), Some(codec));
        if codec == Codec::G722 {
            assert!(answer.contains("a=rtpmap:9 G722/8000"), "{answer}");
        }

        // The phone calls a browser.
        let (mut relay, browser_offer) =
            Relay::incoming(now, config(&ALL), Some(&phone_sdp(codec))).expect("relay");
        assert_eq!(audio_codec(&browser_offer), Some(codec), "{browser_offer}");
        let sip_answer = relay
            .accept_browser_answer(now, &browser_answer(&browser_offer))
            .expect("accepted");
        assert_eq!(audio_codec(&sip_answer), Some(codec), "{sip_answer}");
        assert_eq!(relay.codec(), Some(codec));
    }
}

/// With SRTP off (`media.srtp = "never"`), an `RTP/SAVP` audio offer is refused as an
/// incompatible transport, never answered with `RTP/AVP`; next to a plain RTP audio m-line it is
/// only declined.
#[test]
fn an_srtp_offer_is_refused_or_its_m_line_declined() {
    let now = Instant::now();
    let savp = phone_sdp(Codec::Pcmu).replace("RTP/AVP", "RTP/SAVP")
        + "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
    match Relay::incoming(now, config(&ALL), Some(&savp)) {
        Err(Error::IncompatibleTransport(why)) => assert!(why.starts_with("RTP/SAVP:"), "{why}"),
        other => panic!("expected an incompatible transport, got {other:?}"),
    }
    // Both: the plain one is taken, the SRTP one declined in its place with its own proto.
    let both = savp.clone()
        + &phone_sdp(Codec::Pcmu)[phone_sdp(Codec::Pcmu).find("m=audio").expect("m-line")..];
    let (mut relay, browser_offer) =
        Relay::incoming(now, config(&ALL), Some(&both)).expect("relay");
    let answer = relay
        .accept_browser_answer(now, &browser_answer(&browser_offer))
        .expect("accepted");
    let sip = Description::parse(&answer).expect("valid SDP");
    assert_eq!(sip.lines.len(), 2, "{answer}");
    assert_eq!(
        (sip.lines[0].port, sip.lines[0].proto.as_str()),
        (0, "RTP/SAVP")
    );
    assert_eq!(sip.lines[1].proto, "RTP/AVP");
    assert_ne!(sip.lines[1].port, 0);
    // The same for a re-offer and for an answer to our offer.
    assert!(matches!(
        relay.answer_sip_offer(&savp),
        Err(Error::IncompatibleTransport(_))
    ));
    let (mut relay, _) =
        Relay::outgoing(now, config(&ALL), &data("chrome-offer-audio.sdp")).expect("relay");
    assert!(matches!(
        relay.accept_sip_answer(now, &savp),
        Err(Error::IncompatibleTransport(_))
    ));
}

fn srtp_config(mode: SrtpMode) -> RelayConfig {
    RelayConfig {
        srtp: SrtpPolicy::with_all_suites(mode),
        ..config(&ALL)
    }
}

/// The phone's key line for `tag` and `suite`, and the line itself.
fn phone_key(tag: u32, suite: Suite) -> (Crypto, String) {
    let key = Crypto::generate(tag, suite);
    let line = format!("a=crypto:{}\r\n", key.attribute());
    (key, line)
}

/// An `RTP/SAVP` offer is answered in kind with our own key under the offer's tag and suite; a
/// re-offer with the same key keeps ours, and one with a new suite gets a new one.
#[test]
fn an_srtp_offer_is_answered_with_a_key_of_its_suite() {
    let now = Instant::now();
    let (_, line) = phone_key(3, Suite::AesCm128HmacSha1_32);
    let savp = phone_sdp(Codec::Pcmu).replace("RTP/AVP", "RTP/SAVP") + &line;
    let (mut relay, browser_offer) =
        Relay::incoming(now, srtp_config(SrtpMode::Optional), Some(&savp)).expect("relay");
    let answer = relay
        .accept_browser_answer(now, &browser_answer(&browser_offer))
        .expect("accepted");
    let audio = Description::parse(&answer).expect("SDP").lines[0].clone();
    assert_eq!(audio.proto, "RTP/SAVP", "{answer}");
    assert_eq!(audio.crypto.len(), 1, "{answer}");
    assert_eq!(
        (audio.crypto[0].tag, audio.crypto[0].suite),
        (3, Suite::AesCm128HmacSha1_32)
    );
    assert!(!audio.crypto[0].same_key(&Crypto::parse(&line[9..line.len() - 2]).expect("key")));
    assert_eq!(relay.sip_srtp(), Some(Suite::AesCm128HmacSha1_32));
    // A re-offer with the same key (hold): our key stays.
    let hold = savp.replace("a=sendrecv", "a=sendonly");
    let again = relay.answer_sip_offer(&hold).expect("answered");
    let kept = Description::parse(&again).expect("SDP").lines[0].crypto[0].clone();
    assert!(kept.same_key(&audio.crypto[0]), "{again}");
    // Another suite: a new key of that suite.
    let (_, gcm) = phone_key(1, Suite::AeadAes128Gcm);
    let rekeyed = phone_sdp(Codec::Pcmu).replace("RTP/AVP", "RTP/SAVP") + &gcm;
    let again = relay.answer_sip_offer(&rekeyed).expect("answered");
    let new = Description::parse(&again).expect("SDP").lines[0].crypto[0].clone();
    assert_eq!((new.tag, new.suite), (1, Suite::AeadAes128Gcm));
    // A plain re-offer (best effort gave up): plain from now on.
    let plain = relay
        .answer_sip_offer(&phone_sdp(Codec::Pcmu))
        .expect("answered");
    let audio = Description::parse(&plain).expect("SDP").lines[0].clone();
    assert_eq!((audio.proto.as_str(), audio.crypto.len()), ("RTP/AVP", 0));
    assert_eq!(relay.sip_srtp(), None);
}

/// Our offers: best effort is `RTP/AVP` with a key per suite, mandatory `RTP/SAVP`; the answer
/// must pick one of our keys, and under mandatory must have one.
#[test]
fn our_offers_carry_keys_and_the_answer_must_pick_one() {
    let now = Instant::now();
    let offer = data("chrome-offer-audio.sdp");
    for (mode, proto) in [
        (SrtpMode::Optional, "RTP/AVP"),
        (SrtpMode::Mandatory, "RTP/SAVP"),
    ] {
        let (mut relay, sip_offer) =
            Relay::outgoing(now, srtp_config(mode), &offer).expect("relay");
        let audio = Description::parse(&sip_offer).expect("SDP").lines[0].clone();
        assert_eq!(audio.proto, proto, "{sip_offer}");
        let suites: Vec<Suite> = audio.crypto.iter().map(|key| key.suite).collect();
        assert_eq!(suites, Suite::ALL, "{sip_offer}");
        // A key under a tag we did not offer for its suite.
        let (_, wrong) = phone_key(1, Suite::AeadAes128Gcm);
        let answer = phone_sdp(Codec::Pcmu).replace("RTP/AVP", proto) + &wrong;
        assert!(matches!(
            relay.accept_sip_answer(now, &answer),
            Err(Error::IncompatibleTransport(_))
        ));
        let (_, right) = phone_key(3, Suite::AeadAes128Gcm);
        let answer = phone_sdp(Codec::Pcmu).replace("RTP/AVP", proto) + &right;
        relay.accept_sip_answer(now, &answer).expect("taken");
        assert_eq!(relay.sip_srtp(), Some(Suite::AeadAes128Gcm));
    }
    let (mut relay, _) =
        Relay::outgoing(now, srtp_config(SrtpMode::Mandatory), &offer).expect("relay");
    assert!(matches!(
        relay.accept_sip_answer(now, &phone_sdp(Codec::Pcmu)),
        Err(Error::IncompatibleTransport(_))
    ));
    let (_, never) = Relay::outgoing(now, config(&ALL), &offer).expect("relay");
    assert!(!never.contains("a=crypto"), "{never}");
    // A DTLS-SRTP answer to an offer without it.
    let (mut relay, _) =
        Relay::outgoing(now, srtp_config(SrtpMode::Optional), &offer).expect("relay");
    let fingerprint = ["AB"; 32].join(":");
    let answer = phone_sdp(Codec::Pcmu).replace("RTP/AVP", "UDP/TLS/RTP/SAVP")
        + &format!("a=fingerprint:sha-256 {fingerprint}\r\na=setup:active\r\n");
    match relay.accept_sip_answer(now, &answer) {
        Err(Error::IncompatibleTransport(why)) => {
            assert!(why.contains("which our offer did not"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

pub(super) fn video_config() -> RelayConfig {
    RelayConfig {
        sip_video: Some("127.0.0.1:30002".parse().expect("addr")),
        video_codecs: crate::codec::VideoCodec::ALL.to_vec(),
        ..config(&ALL)
    }
}

/// Chrome's audio and video offer to a phone that answers H.264 in packetization mode 0 at a
/// lower level, with a bandwidth, taking FIR only: the SIP offer has the browser's video
/// formats on the video port; the browser's answer has exactly the answered format (Chrome's
/// payload type of the same mode and profile, at the phone's level), its RTX, the phone's
/// `b=AS`, and transport-cc.
#[test]
fn a_video_offer_becomes_a_sip_video_offer_and_the_answers_format_the_browsers() {
    let now = Instant::now();
    let (mut relay, sip_offer) =
        Relay::outgoing(now, video_config(), &data("chrome-offer-audio-video.sdp")).expect("relay");
    let offer = Description::parse(&sip_offer).expect("valid SDP");
    let (_, video) = offer.video().expect("video offered to SIP");
    assert_eq!(video.proto, "RTP/AVP");
    assert_eq!(video.port, 30002);
    assert_eq!(video.payloads.first().map(|p| p.pt), Some(96), "VP8 first");
    assert!(video.rtx.is_empty(), "no RTX toward SIP: {sip_offer}");
    assert!(!sip_offer.contains("AV1"), "{sip_offer}");
    assert!(video.has_feedback(96, "nack pli") && video.has_feedback(96, "ccm fir"));
    let answer = relay
        .accept_sip_answer(now, &data("baresip-answer-video.sdp"))
        .expect("accepted")
        .expect("an answer");
    let browser = Description::parse(&answer).expect("valid SDP");
    let (_, video) = browser.video().expect("video answered");
    let formats: Vec<u8> = video.payloads.iter().map(|payload| payload.pt).collect();
    assert_eq!(
        formats,
        [114],
        "Chrome's mode 0 constrained baseline: {answer}"
    );
    assert_eq!(video.rtx, [(115, 114)], "{answer}");
    let fmtp = video.payloads[0].fmtp.as_deref().unwrap_or_default();
    assert!(fmtp.contains("profile-level-id=42e015"), "{fmtp}");
    assert!(fmtp.contains("packetization-mode=0"), "{fmtp}");
    assert_eq!(video.bandwidth, [("AS".to_owned(), 512)], "{answer}");
    assert!(answer.contains("transport-wide-cc"), "{answer}");
    // The phone takes FIR only.
    let stream = relay.video.as_ref().expect("a video stream");
    assert!(stream.takes_fir && !stream.takes_pli);
}

/// An audio-only call keeps transport-cc off its browser leg.
#[test]
fn audio_only_calls_go_without_transport_cc() {
    let now = Instant::now();
    let (mut relay, sip_offer) =
        Relay::outgoing(now, video_config(), &data("chrome-offer-audio.sdp")).expect("relay");
    assert!(!sip_offer.contains("m=video"));
    let answer = relay
        .accept_sip_answer(now, &data("baresip-answer.sdp"))
        .expect("accepted")
        .expect("an answer");
    assert!(!answer.contains("transport-wide-cc"), "{answer}");
}

/// A phone's audio and video offer: the browser is offered its video formats with an RTX
/// payload type each; the browser's choice is the SIP answer's only video format (with the
/// phone's payload type), on our video port, in the offer's place.
#[test]
fn a_sip_video_offer_becomes_a_browser_video_offer_and_the_choice_the_sip_answer() {
    let now = Instant::now();
    let (mut relay, browser_offer) =
        Relay::incoming(now, video_config(), Some(&data("baresip-offer-video.sdp")))
            .expect("relay");
    let offer = Description::parse(&browser_offer).expect("valid SDP");
    let (_, video) = offer.video().expect("video offered to the browser");
    let vp9 = video
        .payloads
        .iter()
        .find(|payload| payload.format == Format::Video(crate::codec::Video::Vp9 { profile: 0 }))
        .expect("VP9");
    assert!(video.rtx_for(vp9.pt).is_some(), "{browser_offer}");
    let answer = browser_answer(&browser_offer);
    let sip_answer = relay
        .accept_browser_answer(now, &answer)
        .expect("a SIP answer");
    let description = Description::parse(&sip_answer).expect("valid SDP");
    assert_eq!(description.lines.len(), 2);
    let (index, video) = description.video().expect("video answered");
    assert_eq!(index, 1);
    assert_eq!(video.port, 30002);
    assert_eq!(video.payloads.len(), 1, "{sip_answer}");
    // The browser's choice, with the phone's number for it.
    let chosen = Description::parse(&answer)
        .expect("valid SDP")
        .video()
        .and_then(|(_, line)| line.first_video().map(|payload| payload.format))
        .expect("the browser chose a video format");
    let phone = Description::parse(&data("baresip-offer-video.sdp")).expect("valid SDP");
    let phones = phone
        .video()
        .and_then(|(_, line)| line.payloads.iter().find(|p| p.format == chosen).cloned())
        .expect("the phone offered it");
    assert_eq!(video.payloads[0].pt, phones.pt, "{sip_answer}");
    assert_eq!(video.payloads[0].format, chosen);
}

/// Without a video port pair, or without video codecs, video is declined and audio goes on.
#[test]
fn video_without_a_port_or_codecs_is_declined() {
    let now = Instant::now();
    let (mut relay, browser_offer) =
        Relay::incoming(now, config(&ALL), Some(&data("baresip-offer-video.sdp"))).expect("relay");
    assert!(!browser_offer.contains("m=video"), "{browser_offer}");
    let sip_answer = relay
        .accept_browser_answer(now, &browser_answer(&browser_offer))
        .expect("a SIP answer");
    let description = Description::parse(&sip_answer).expect("valid SDP");
    assert_eq!(description.lines.len(), 2);
    assert_eq!(description.lines[1].kind, "video");
    assert_eq!(description.lines[1].port, 0, "{sip_answer}");
}

/// The browser's PLI becomes a FIR for a phone that takes only FIR, its sequence number raised
/// for each new request, and no more often than the interval allows.
#[test]
fn keyframe_requests_toward_a_fir_phone_are_firs_with_rising_numbers() {
    let now = Instant::now();
    let (mut relay, _) =
        Relay::outgoing(now, video_config(), &data("chrome-offer-audio-video.sdp")).expect("relay");
    relay
        .accept_sip_answer(now, &data("baresip-answer-video.sdp"))
        .expect("accepted");
    let phone: std::net::SocketAddr = "127.0.0.1:10022".parse().expect("addr");
    // The phone's first video packet: learnt, and a keyframe asked for at once.
    let mut packet = Vec::new();
    crate::rtp::write_rtp(
        &mut packet,
        crate::rtp::RtpHeader {
            pt: 39,
            marker: false,
            seq: 1,
            timestamp: 0,
            ssrc: 0x1234,
        },
        &[0u8; 20],
    );
    relay.handle_sip_video(now, phone, &packet, false);
    let firs = |relay: &mut Relay| {
        let mut sequences = Vec::new();
        loop {
            match relay.poll_output() {
                Output::SipVideoRtcp { data, destination } => {
                    assert_eq!(destination.port(), 10023);
                    assert_eq!(data[1], 206);
                    assert_eq!(data[0] & 0x1f, 4, "a FIR");
                    sequences.push(data[16]);
                }
                Output::Timeout(_) => return sequences,
                _ => {}
            }
        }
    };
    assert_eq!(firs(&mut relay), [1]);
    let mid = relay
        .video
        .as_ref()
        .and_then(|video| video.track.mid)
        .expect("mid");
    relay.browser_wants_keyframe(now + Duration::from_millis(100), mid);
    assert_eq!(firs(&mut relay), Vec::<u8>::new(), "too soon");
    relay.browser_wants_keyframe(now + Duration::from_millis(400), mid);
    assert_eq!(firs(&mut relay), [2]);
}

/// A phone whose `a=rtcp-fb` lists feedback but neither PLI nor FIR is asked for keyframes by
/// SIP INFO: the relay raises the event instead of sending RTCP.
#[test]
fn a_phone_without_pli_or_fir_is_asked_by_info() {
    let now = Instant::now();
    let (mut relay, _) =
        Relay::outgoing(now, video_config(), &data("chrome-offer-audio-video.sdp")).expect("relay");
    let answer =
        data("baresip-answer-video.sdp").replace("a=rtcp-fb:* ccm fir", "a=rtcp-fb:* nack");
    relay.accept_sip_answer(now, &answer).expect("accepted");
    let mut packet = Vec::new();
    crate::rtp::write_rtp(
        &mut packet,
        crate::rtp::RtpHeader {
            pt: 39,
            marker: false,
            seq: 1,
            timestamp: 0,
            ssrc: 0x1234,
        },
        &[0u8; 20],
    );
    relay.handle_sip_video(
        now,
        "127.0.0.1:10022".parse().expect("addr"),
        &packet,
        false,
    );
    loop {
        match relay.poll_output() {
            Output::SipVideoRtcp { .. } => panic!("no RTCP keyframe request for this phone"),
            Output::Timeout(_) => break,
            _ => {}
        }
    }
    assert_eq!(relay.poll_event(), Some(Event::KeyframeByInfo));
    assert_eq!(relay.poll_event(), None);
}
