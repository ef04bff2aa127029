use super::*;
use crate::rtp::{RtpHeader, RtpView, write_rtp};
use crate::srtp::{Srtp, Suite};

const CALLER: &str = "192.0.2.1:4000";
const CALLEE: &str = "192.0.2.2:5000";

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("an address")
}

fn config(mode: SrtpMode) -> PairConfig {
    crate::init_crypto();
    PairConfig {
        caller_rtp: addr("127.0.0.1:30000"),
        callee_rtp: addr("127.0.0.1:30002"),
        codecs: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
        media_timeout: Duration::from_secs(5),
        srtp: SrtpPolicy::with_all_suites(mode),
        video: None,
        video_codecs: Vec::new(),
    }
}

/// A phone's description from `at`: PCMU and telephone-event (as `te`), with `extra` lines.
fn phone(at: &str, proto: &str, te: u8, extra: &str) -> String {
    let at = addr(at);
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} {proto} 0 {te}\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:{te} telephone-event/8000\r\na=sendrecv\r\n{extra}",
        ip = at.ip(),
        port = at.port()
    )
}

fn rtp(pt: u8, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut packet = Vec::new();
    let header = RtpHeader {
        pt,
        marker: false,
        seq,
        timestamp: u32::from(seq) * 160,
        ssrc: 0xabcd,
    };
    write_rtp(&mut packet, header, payload);
    packet
}

/// What the pair sends now: (side, destination, datagram).
fn sent(pair: &mut RtpPair) -> Vec<(Side, SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    while let PairOutput::Send {
        side,
        destination,
        data,
        ..
    } = pair.poll_output()
    {
        out.push((side, destination, data.to_vec()));
    }
    out
}

/// The caller's offer goes on to the callee from our address with the caller's numbers; the
/// callee's answer (which numbers telephone-event otherwise) comes back to the caller in the
/// caller's numbers, and packets cross both ways with their payload types mapped.
#[test]
fn a_call_between_two_phones_is_translated_and_relayed() {
    let now = Instant::now();
    let (mut pair, offer) = RtpPair::new(
        now,
        config(SrtpMode::Never),
        &phone(CALLER, "RTP/AVP", 101, ""),
    )
    .expect("pair");
    let offered = Description::parse(&offer).expect("SDP").lines[0].clone();
    assert_eq!(
        offered.rtp_target(),
        Some(addr("127.0.0.1:30002")),
        "{offer}"
    );
    assert!(offered.formats.contains(&"101".to_owned()), "{offer}");
    let answer = pair
        .accept_answer(now, &phone(CALLEE, "RTP/AVP", 96, ""))
        .expect("answered");
    let answered = Description::parse(&answer).expect("SDP").lines[0].clone();
    assert_eq!(
        answered.rtp_target(),
        Some(addr("127.0.0.1:30000")),
        "{answer}"
    );
    assert_eq!(answered.formats, ["0", "101"], "{answer}");

    pair.handle(now, Side::Caller, addr(CALLER), &rtp(0, 1, b"hello"), false);
    pair.handle(
        now,
        Side::Caller,
        addr(CALLER),
        &rtp(101, 2, b"\x05\x0a\x00\xa0"),
        false,
    );
    let out = sent(&mut pair);
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].0, out[0].1), (Side::Callee, addr(CALLEE)));
    assert_eq!(out[0].2, rtp(0, 1, b"hello"), "passed through unchanged");
    assert_eq!(
        RtpView::parse(&out[1].2).expect("RTP").pt(),
        96,
        "mapped by format"
    );
    pair.handle(
        now,
        Side::Callee,
        addr(CALLEE),
        &rtp(96, 9, b"\x05\x0a\x00\xa0"),
        false,
    );
    let out = sent(&mut pair);
    assert_eq!((out[0].0, out[0].1), (Side::Caller, addr(CALLER)));
    assert_eq!(RtpView::parse(&out[0].2).expect("RTP").pt(), 101);
    // A third party is not heard once the caller's source is latched.
    let later = now + Duration::from_secs(4);
    pair.handle(later, Side::Caller, addr(CALLER), &rtp(0, 3, b"x"), false);
    pair.handle(
        later,
        Side::Caller,
        addr("192.0.2.66:4000"),
        &rtp(0, 4, b"intruder"),
        false,
    );
    let out = sent(&mut pair);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].2, rtp(0, 3, b"x"));
}

/// Each leg has its own SRTP: a caller that insists on it and a callee in plain RTP talk,
/// the relay decrypting one side and encrypting the other.
#[test]
fn each_leg_keeps_its_own_srtp() {
    let now = Instant::now();
    let caller_key = Crypto::generate(1, Suite::AesCm128HmacSha1_80);
    let offer_text = phone(
        CALLER,
        "RTP/SAVP",
        101,
        &format!("a=crypto:{}\r\n", caller_key.attribute()),
    );
    let (mut pair, offer) =
        RtpPair::new(now, config(SrtpMode::Optional), &offer_text).expect("pair");
    assert!(
        offer.contains("RTP/AVP") && offer.contains("a=crypto:"),
        "{offer}"
    );
    let answer = pair
        .accept_answer(now, &phone(CALLEE, "RTP/AVP", 101, ""))
        .expect("answered");
    let answered = Description::parse(&answer).expect("SDP").lines[0].clone();
    assert_eq!(answered.proto, "RTP/SAVP");
    assert_eq!(pair.srtp(Side::Caller), Some(Suite::AesCm128HmacSha1_80));
    assert_eq!(pair.srtp(Side::Callee), None);
    let mut caller_send = Srtp::new(&caller_key, true);
    let mut caller_receive = Srtp::new(&answered.crypto[0], false);
    let mut wire = Vec::new();
    caller_send
        .protect_rtp(&rtp(0, 1, b"secret"), &mut wire)
        .expect("protected");
    pair.handle(now, Side::Caller, addr(CALLER), &wire, false);
    let out = sent(&mut pair);
    assert_eq!(out[0].2, rtp(0, 1, b"secret"), "plain toward the callee");
    pair.handle(now, Side::Callee, addr(CALLEE), &rtp(0, 1, b"reply"), false);
    let out = sent(&mut pair);
    let mut back = Vec::new();
    caller_receive
        .unprotect_rtp(&out[0].2, &mut back)
        .expect("the caller decrypts");
    assert_eq!(back, rtp(0, 1, b"reply"));
    // Plain RTP from the caller's address is not heard on its SRTP leg.
    pair.handle(now, Side::Caller, addr(CALLER), &rtp(0, 2, b"clear"), false);
    assert!(sent(&mut pair).is_empty());
}

/// Hold from one phone is answered here (mirrored) and stops what goes to it; silence from a
/// phone that should be sending ends the call.
#[test]
fn hold_is_answered_and_silence_ends_the_call() {
    let now = Instant::now();
    let (mut pair, _) = RtpPair::new(
        now,
        config(SrtpMode::Never),
        &phone(CALLER, "RTP/AVP", 101, ""),
    )
    .expect("pair");
    pair.accept_answer(now, &phone(CALLEE, "RTP/AVP", 101, ""))
        .expect("answered");
    let hold = phone(CALLEE, "RTP/AVP", 101, "").replace("a=sendrecv", "a=sendonly");
    let answer = pair.answer_offer(Side::Callee, &hold).expect("answered");
    assert!(answer.contains("a=recvonly"), "{answer}");
    pair.handle(
        now,
        Side::Caller,
        addr(CALLER),
        &rtp(0, 1, b"to a held phone"),
        false,
    );
    assert!(sent(&mut pair).is_empty());
    for second in 1..=5 {
        let at = now + Duration::from_secs(second);
        pair.handle(
            at,
            Side::Callee,
            addr(CALLEE),
            &rtp(0, second as u16, b"music"),
            false,
        );
        pair.handle_timeout(at);
    }
    assert_eq!(pair.poll_event(), None);
    pair.handle_timeout(now + Duration::from_secs(7));
    assert_eq!(
        pair.poll_event(),
        Some(Event::Failed("no RTP from the caller for 5 s".into()))
    );
}

/// A phone's audio and video description from `at` (video on the port above audio's port + 1):
/// PCMU, and the video formats given as `(pt, rtpmap, fmtp)`.
fn video_phone(at: &str, formats: &[(u8, &str, &str)]) -> String {
    let at = addr(at);
    let mut video = format!("m=video {} RTP/AVP", at.port() + 2);
    for (pt, _, _) in formats {
        video.push_str(&format!(" {pt}"));
    }
    video.push_str("\r\n");
    for (pt, rtpmap, fmtp) in formats {
        video.push_str(&format!("a=rtpmap:{pt} {rtpmap}\r\n"));
        if !fmtp.is_empty() {
            video.push_str(&format!("a=fmtp:{pt} {fmtp}\r\n"));
        }
    }
    video.push_str("a=sendrecv\r\n");
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n{video}",
        ip = at.ip(),
        port = at.port()
    )
}

fn video_config() -> PairConfig {
    PairConfig {
        video: Some((addr("127.0.0.1:30004"), addr("127.0.0.1:30006"))),
        video_codecs: crate::codec::VideoCodec::ALL.to_vec(),
        ..config(SrtpMode::Never)
    }
}

/// Two phones with video: the callee's offer carries the caller's video formats on the
/// callee's video port, the callee's choice (with its own number) goes back to the caller
/// with the caller's number, and video packets cross on the video legs with their payload
/// type mapped, as does a keyframe request (RTCP).
#[test]
fn video_between_two_phones_crosses_on_its_own_legs() {
    let now = Instant::now();
    let caller_offer = video_phone(CALLER, &[(96, "VP8/90000", ""), (100, "VP9/90000", "")]);
    let (mut pair, offer) = RtpPair::new(now, video_config(), &caller_offer).expect("a pair");
    let description = Description::parse(&offer).expect("valid SDP");
    let (_, video) = description.video().expect("video offered to the callee");
    assert_eq!(video.port, 30006);
    assert_eq!(video.payloads.len(), 2);
    let answer = pair
        .accept_answer(now, &video_phone(CALLEE, &[(120, "VP9/90000", "")]))
        .expect("answered");
    assert!(pair.has_video());
    let description = Description::parse(&answer).expect("valid SDP");
    let (index, video) = description.video().expect("video answered to the caller");
    assert_eq!((index, video.port), (1, 30004));
    let pts: Vec<u8> = video.payloads.iter().map(|payload| payload.pt).collect();
    assert_eq!(pts, [100], "the caller's number for VP9: {answer}");

    let caller_video = SocketAddr::new(addr(CALLER).ip(), addr(CALLER).port() + 2);
    let callee_video = SocketAddr::new(addr(CALLEE).ip(), addr(CALLEE).port() + 2);
    pair.handle_video(
        now,
        Side::Caller,
        caller_video,
        &rtp(100, 1, &[7; 900]),
        false,
    );
    match pair.poll_output() {
        PairOutput::Send {
            side,
            video,
            rtcp,
            destination,
            data,
        } => {
            assert_eq!((side, video, rtcp), (Side::Callee, true, false));
            assert_eq!(destination, callee_video);
            assert_eq!(data[1] & 0x7f, 120, "the callee's number");
            assert_eq!(data.len(), 912);
        }
        PairOutput::Timeout(_) => panic!("nothing relayed"),
    }
    assert!(matches!(pair.poll_output(), PairOutput::Timeout(_)));
    // The callee's PLI goes to the caller's video RTCP port.
    let mut pli = Vec::new();
    crate::rtp::write_pli(&mut pli, 1, 2);
    let callee_rtcp = SocketAddr::new(callee_video.ip(), callee_video.port() + 1);
    pair.handle_video(now, Side::Callee, callee_rtcp, &pli, true);
    match pair.poll_output() {
        PairOutput::Send {
            side,
            video,
            rtcp,
            destination,
            data,
        } => {
            assert_eq!((side, video, rtcp), (Side::Caller, true, true));
            assert_eq!(destination.port(), caller_video.port() + 1);
            assert_eq!(data, &pli[..]);
        }
        PairOutput::Timeout(_) => panic!("the PLI was not relayed"),
    }
}

/// A callee that declines video leaves the call with audio: the caller's answer declines its
/// video m-line in place.
#[test]
fn a_callee_without_video_leaves_the_call_with_audio() {
    let now = Instant::now();
    let caller_offer = video_phone(CALLER, &[(96, "VP8/90000", "")]);
    let (mut pair, _) = RtpPair::new(now, video_config(), &caller_offer).expect("a pair");
    let answer = pair
        .accept_answer(now, &phone(CALLEE, "RTP/AVP", 101, ""))
        .expect("answered");
    assert!(!pair.has_video());
    let description = Description::parse(&answer).expect("valid SDP");
    assert_eq!(description.lines.len(), 2, "{answer}");
    assert_eq!(description.lines[1].kind, "video");
    assert_eq!(description.lines[1].port, 0, "{answer}");
}

/// Early media: the callee's 183 makes the caller's answer and media flows at once, but
/// silence is not counted until the final answer (a caller need not send before its 200),
/// whose answer for the caller is the same.
#[test]
fn an_early_answer_relays_at_once_and_counts_silence_from_the_final_one() {
    let now = Instant::now();
    let (mut pair, _) = RtpPair::new(
        now,
        config(SrtpMode::Never),
        &phone(CALLER, "RTP/AVP", 101, ""),
    )
    .expect("pair");
    let callee = phone(CALLEE, "RTP/AVP", 96, "");
    let early = pair
        .accept_early_answer(now, &callee)
        .expect("an early answer");
    // The callee's early media reaches the caller at once.
    pair.handle(
        now,
        Side::Callee,
        addr(CALLEE),
        &rtp(0, 1, b"ringback"),
        false,
    );
    assert_eq!(sent(&mut pair).len(), 1);
    let later = now + Duration::from_secs(60);
    pair.handle_timeout(later);
    assert_eq!(pair.poll_event(), None, "no silence counted while it rings");
    let answer = pair
        .accept_answer(later, &callee)
        .expect("the final answer");
    assert_eq!(answer, early);
    pair.handle_timeout(later + Duration::from_secs(6));
    assert!(matches!(
        pair.poll_event(),
        Some(crate::relay::Event::Failed(_))
    ));
}

/// A caller whose INVITE had no offer: the callee is offered every configured codec, its
/// answer makes our offer to the caller in that codec alone, and the caller's answer (in its
/// ACK) completes the pair: packets cross both ways.
#[test]
fn an_offerless_caller_gets_our_offer_in_the_callees_codec() {
    let now = Instant::now();
    let (mut pair, offer) = RtpPair::offerless(now, config(SrtpMode::Never));
    let offered = Description::parse(&offer).expect("SDP").lines[0].clone();
    assert_eq!(offered.rtp_target(), Some(addr("127.0.0.1:30002")));
    assert!(offered.formats.len() >= 4, "every codec: {offer}");
    let ours = pair
        .accept_answer(now, &phone(CALLEE, "RTP/AVP", 96, ""))
        .expect("our offer to the caller");
    let line = Description::parse(&ours).expect("SDP").lines[0].clone();
    assert_eq!(line.rtp_target(), Some(addr("127.0.0.1:30000")), "{ours}");
    assert_eq!(line.direction, Direction::SendRecv);
    assert!(
        line.payloads
            .iter()
            .all(|payload| !matches!(payload.format, Format::Audio(codec) if codec != Codec::Pcmu)),
        "PCMU alone: {ours}"
    );
    let te = line
        .payloads
        .iter()
        .find(|payload| matches!(payload.format, Format::TelephoneEvent(8_000)))
        .map_or(101, |payload| payload.pt);
    pair.accept_reanswer(Side::Caller, &phone(CALLER, "RTP/AVP", te, ""))
        .expect("the caller's answer");
    pair.handle(now, Side::Caller, addr(CALLER), &rtp(0, 1, b"hello"), false);
    pair.handle(now, Side::Callee, addr(CALLEE), &rtp(0, 1, b"there"), false);
    let crossed: Vec<(Side, SocketAddr)> = sent(&mut pair)
        .into_iter()
        .map(|(side, destination, _)| (side, destination))
        .collect();
    assert_eq!(
        crossed,
        [(Side::Callee, addr(CALLEE)), (Side::Caller, addr(CALLER))]
    );
}

/// DTLS-SRTP between two phones is refused with words that say so, as the caller's offer and
/// as the callee's answer.
#[test]
fn dtls_srtp_between_two_phones_is_refused_with_the_reason() {
    let fingerprint = format!(
        "a=fingerprint:sha-256 {}\r\na=setup:actpass\r\n",
        ["AB"; 32].join(":")
    );
    let offer = phone(CALLER, "UDP/TLS/RTP/SAVP", 101, &fingerprint);
    let why = |result: Result<String>| match result {
        Err(Error::IncompatibleTransport(why)) => why,
        other => panic!("{other:?}"),
    };
    let refused = why(
        RtpPair::new(Instant::now(), config(SrtpMode::Optional), &offer).map(|(_, offer)| offer),
    );
    assert!(refused.contains("between two phones"), "{refused}");
    let (mut pair, _) = RtpPair::new(
        Instant::now(),
        config(SrtpMode::Optional),
        &phone(CALLER, "RTP/AVP", 101, ""),
    )
    .unwrap();
    let answer = phone(CALLEE, "UDP/TLS/RTP/SAVP", 101, &fingerprint);
    let refused = why(pair.accept_answer(Instant::now(), &answer));
    assert!(refused.contains("between two phones"), "{refused}");
}
