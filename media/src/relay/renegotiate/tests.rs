//! Mid-call changes on the relay alone: another codec from the SIP side, video removed by
//! either side, the browser declining the video the SIP side added.

use std::time::Instant;

use super::super::Relay;
use super::super::tests::{ALL, browser_answer, config, data, formats, phone_sdp, video_config};
use crate::codec::{Codec, Format};
use crate::error::Error;
use crate::sdp::Description;

/// The str0m peer playing the browser answers as the browser of `original` (its offer): the
/// same ICE credentials and certificate, so that the answer is no ICE restart.
fn as_browser_of(answer: &str, original: &str) -> String {
    let kept = |prefix: &str| {
        original
            .lines()
            .find(|line| line.starts_with(prefix))
            .map(str::to_owned)
    };
    answer
        .split("\r\n")
        .map(|line| {
            ["a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"]
                .iter()
                .find(|prefix| line.starts_with(*prefix))
                .and_then(|prefix| kept(prefix))
                .unwrap_or_else(|| line.to_owned())
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A call placed by Chrome's `offer` (a file of test data) and answered by `answer` (one too),
/// and the offer's text.
fn call(offer: &str, answer: &str, config: crate::relay::RelayConfig) -> (Relay, String) {
    let now = Instant::now();
    let chrome = data(offer);
    let (mut relay, _) = Relay::outgoing(now, config, &chrome).expect("relay");
    relay
        .accept_sip_answer(now, &data(answer))
        .expect("accepted");
    (relay, chrome)
}

/// An audio call (Chrome to baresip) to which the phone adds video (VP9, VP8): the relay, the
/// phone's answer held for it, Chrome's first offer, and our offer to the browser.
fn phone_adds_video() -> (Relay, String, String, String) {
    let (mut relay, chrome) = call(
        "chrome-offer-audio.sdp",
        "baresip-answer.sdp",
        video_config(),
    );
    let answer = relay
        .answer_sip_offer(&data("baresip-offer-video.sdp"))
        .expect("answered");
    let offer = relay
        .browser_update()
        .expect("an offer")
        .expect("video offered to the browser");
    (relay, answer, chrome, offer)
}

/// The m-line of `kind` of a description (declined or not).
fn line(sdp: &str, kind: &str) -> crate::sdp::MediaLine {
    Description::parse(sdp)
        .expect("valid SDP")
        .lines
        .into_iter()
        .find(|line| line.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} m-line in {sdp}"))
}

/// A browser call answered in PCMU, then the phone re-offers PCMA alone: the phone's answer
/// has PCMA, and the browser is offered PCMA alone so that it sends it; once it answered, both
/// legs carry PCMA. A codec the call does not relay is still refused.
#[test]
fn a_phone_moving_to_another_codec_moves_the_browser_too() {
    let now = Instant::now();
    let (mut relay, chrome) = call("chrome-offer-audio.sdp", "baresip-answer.sdp", config(&ALL));
    assert_eq!(relay.codec(), Some(Codec::Pcmu));
    let answer = relay
        .answer_sip_offer(&phone_sdp(Codec::Pcma))
        .expect("answered");
    assert_eq!(
        formats(&line(&answer, "audio")),
        [Format::Audio(Codec::Pcma), Format::TelephoneEvent(8_000)]
    );
    assert_eq!(relay.codec(), Some(Codec::Pcma));
    let offer = relay
        .browser_update()
        .expect("an offer")
        .expect("the browser must move too");
    assert_eq!(
        formats(&line(&offer, "audio")),
        [Format::Audio(Codec::Pcma), Format::TelephoneEvent(8_000)],
        "PCMA alone, telephone-event at its rate: {offer}"
    );
    assert!(offer.contains("a=sendrecv"), "{offer}");
    let replaced = relay
        .accept_browser_update(now, &as_browser_of(&browser_answer(&offer), &chrome))
        .expect("accepted");
    assert_eq!(replaced, None, "the phone's answer stands");
    assert_eq!(
        relay.track.mapping.map(8, true).map(|(pt, _)| pt),
        Some(8),
        "the browser's PCMA goes to the phone as PCMA"
    );

    // Without PCMA in the list of relayed codecs, the move cannot be made.
    let (mut relay, _) = call(
        "chrome-offer-audio.sdp",
        "baresip-answer.sdp",
        config(&[Codec::Opus, Codec::Pcmu]),
    );
    assert!(matches!(
        relay.answer_sip_offer(&phone_sdp(Codec::Pcma)),
        Err(Error::NoCommonCodec(_))
    ));
    assert_eq!(relay.codec(), Some(Codec::Pcmu));
}

/// A video call whose phone re-offers its video at port 0: the answer declines it in place,
/// the browser's video m-line is stopped by our next offer to it, and our later offers to
/// the phone keep the video m-line, declined.
#[test]
fn the_phone_removing_video_stops_it_on_both_legs() {
    let now = Instant::now();
    let (mut relay, chrome) = call(
        "chrome-offer-audio-video.sdp",
        "baresip-answer-video.sdp",
        video_config(),
    );
    assert!(relay.video.is_some());
    let removed = data("baresip-answer-video.sdp").replace("m=video 10022", "m=video 0");
    let answer = relay.answer_sip_offer(&removed).expect("answered");
    assert_eq!(line(&answer, "video").port, 0, "{answer}");
    assert_eq!(line(&answer, "audio").port, 30000, "{answer}");
    assert!(relay.video.is_none());
    let offer = relay
        .browser_update()
        .expect("an offer")
        .expect("the browser's video stops");
    assert_eq!(line(&offer, "video").port, 0, "{offer}");
    assert_eq!(line(&offer, "audio").port, 9, "{offer}");
    relay
        .accept_browser_update(now, &as_browser_of(&browser_answer(&offer), &chrome))
        .expect("accepted");
    let ours = relay.sip_offer();
    let description = Description::parse(&ours).expect("valid SDP");
    assert_eq!(description.lines.len(), 2, "{ours}");
    assert_eq!(description.lines[1].kind, "video");
    assert_eq!(description.lines[1].port, 0, "{ours}");
}

/// The browser stops its video (its new offer has the video m-line at port 0): the phone is
/// offered the video declined, in place, and the call goes on with audio.
#[test]
fn the_browser_removing_video_declines_it_toward_the_phone() {
    let now = Instant::now();
    let (mut relay, chrome) = call(
        "chrome-offer-audio-video.sdp",
        "baresip-answer-video.sdp",
        video_config(),
    );
    let stopped = chrome
        .replace("m=video 36490", "m=video 0")
        .replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
    assert!(relay.browser_offer_concerns_sip(&stopped).expect("read"));
    let offer = relay.browser_reoffer(&stopped).expect("re-offered");
    let description = Description::parse(&offer).expect("valid SDP");
    assert_eq!(description.lines.len(), 2, "{offer}");
    assert_eq!(description.lines[1].kind, "video");
    assert_eq!(description.lines[1].port, 0, "{offer}");
    assert_eq!(description.lines[0].port, 30000, "{offer}");
    let phone = data("baresip-answer-video.sdp").replace("m=video 10022", "m=video 0");
    let answer = relay
        .finish_browser_reoffer(now, &phone)
        .expect("the browser's answer");
    assert_eq!(line(&answer, "video").port, 0, "{answer}");
    assert!(relay.video.is_none());

    // Refused by the phone instead: the video goes on.
    let (mut relay, _) = call(
        "chrome-offer-audio-video.sdp",
        "baresip-answer-video.sdp",
        video_config(),
    );
    relay.browser_reoffer(&stopped).expect("re-offered");
    relay.abandon_browser_reoffer();
    assert!(relay.video.is_some());
    let ours = relay.sip_offer();
    assert_eq!(line(&ours, "video").port, 30002, "{ours}");
}

/// The phone adds video to an audio call and the browser declines it: the answer held for the
/// phone is made again with the video declined.
#[test]
fn a_browser_declining_the_phones_video_declines_it_in_the_phones_answer() {
    let now = Instant::now();
    let (mut relay, answer, chrome, offer) = phone_adds_video();
    assert_eq!(line(&answer, "video").port, 30002, "{answer}");
    let declined =
        as_browser_of(&browser_answer(&offer), &chrome).replace("m=video 9", "m=video 0");
    let again = relay
        .accept_browser_update(now, &declined)
        .expect("accepted")
        .expect("the phone's answer made again");
    assert_eq!(line(&again, "video").port, 0, "{again}");
    assert_eq!(line(&again, "audio").port, 30000, "{again}");
    assert!(relay.video.is_none());
}

/// The phone adds video and the browser answers it inactive (a transceiver it stopped while
/// the offer was in hand): the phone's answer says inactive too; the video stays in the session.
#[test]
fn a_browser_answering_the_phones_video_inactive_makes_it_inactive_for_the_phone() {
    let now = Instant::now();
    let (mut relay, _, chrome, offer) = phone_adds_video();
    let answer = as_browser_of(&browser_answer(&offer), &chrome);
    let video_at = answer.find("m=video").expect("a video m-line");
    let inactive = format!(
        "{}{}",
        &answer[..video_at],
        answer[video_at..].replace("a=sendrecv", "a=inactive")
    );
    let again = relay
        .accept_browser_update(now, &inactive)
        .expect("accepted")
        .expect("the phone's answer made again");
    let video = line(&again, "video");
    assert_eq!(video.port, 30002, "{again}");
    assert_eq!(video.direction, crate::sdp::Direction::Inactive, "{again}");
    assert_eq!(
        line(&again, "audio").direction,
        crate::sdp::Direction::SendRecv
    );
    assert!(relay.video.is_some());
    // An answer that takes all that was offered leaves the phone's answer as it was.
    let (mut relay, _, _, offer) = phone_adds_video();
    let answer = as_browser_of(&browser_answer(&offer), &chrome);
    assert_eq!(
        relay.accept_browser_update(now, &answer).expect("accepted"),
        None
    );
}

/// A phone offering far more payload types than there are dynamic numbers (its video format
/// listed again and again, events at odd rates): the browser is offered each relayed format
/// once, with valid and distinct payload types, and its answer makes a SIP answer.
#[test]
fn a_phone_offering_a_flood_of_payload_types_gets_a_valid_browser_offer() {
    let now = Instant::now();
    let mut sdp = String::from(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 10000 RTP/AVP 0",
    );
    for pt in 96..=127 {
        sdp.push_str(&format!(" {pt}"));
    }
    sdp.push_str("\r\na=rtpmap:0 PCMU/8000\r\n");
    for pt in 96u32..=127 {
        sdp.push_str(&format!("a=rtpmap:{pt} telephone-event/{}\r\n", 8000 + pt));
    }
    sdp.push_str("m=video 10002 RTP/AVP");
    for pt in 35..=127 {
        sdp.push_str(&format!(" {pt}"));
    }
    sdp.push_str("\r\n");
    for pt in 35..=127 {
        sdp.push_str(&format!("a=rtpmap:{pt} VP8/90000\r\n"));
    }
    let (mut relay, offer) = Relay::incoming(now, video_config(), Some(&sdp)).expect("a relay");
    let video = line(&offer, "video");
    assert_eq!(video.payloads.len(), 1, "VP8 once: {offer}");
    let answer = relay
        .accept_browser_answer(now, &browser_answer(&offer))
        .expect("a SIP answer");
    assert_eq!(line(&answer, "video").payloads.len(), 1, "{answer}");
}

/// The phone removes its video and later adds it again in another format than the call's
/// first: the browser's stopped video m-line gives way to a new one (or is recycled) in a
/// valid offer of that format alone, and the answers on both sides carry the video again.
#[test]
fn video_removed_then_added_again_by_the_phone() {
    let now = Instant::now();
    let (mut relay, chrome) = call(
        "chrome-offer-audio-video.sdp",
        "baresip-answer-video.sdp",
        video_config(),
    );
    let removed = data("baresip-answer-video.sdp").replace("m=video 10022", "m=video 0");
    relay.answer_sip_offer(&removed).expect("answered");
    let offer = relay.browser_update().expect("an offer").expect("stopped");
    relay
        .accept_browser_update(now, &as_browser_of(&browser_answer(&offer), &chrome))
        .expect("accepted");
    assert!(relay.video.is_none());
    // Back, in another format (VP9 or VP8: VP8, the configuration's first): the browser leg's
    // peer knows every configured one.
    let again = data("baresip-offer-video.sdp");
    let answer = relay.answer_sip_offer(&again).expect("answered");
    assert_eq!(line(&answer, "video").port, 30002, "{answer}");
    let offer = relay
        .browser_update()
        .expect("an offer")
        .expect("video offered again");
    let video_lines = offer.matches("m=video ").count();
    assert!(video_lines >= 1, "{offer}");
    assert!(
        offer.contains("m=video 9 "),
        "a live video m-line again: {offer}"
    );
    assert!(
        offer.contains("VP8/90000") && !offer.contains("VP9/90000"),
        "{offer}"
    );
    let browser = as_browser_of(&browser_answer(&offer), &chrome);
    assert_eq!(
        relay
            .accept_browser_update(now, &browser)
            .expect("accepted"),
        None
    );
    assert!(relay.video.is_some());
}

/// An incoming video call: the browser is offered the phone's video formats alone (its leg
/// knows every configured one besides), and after the phone removed its video it can bring it
/// back in another of them (H.264, which its first offer did not have).
#[test]
fn an_incoming_video_call_offers_the_phones_formats_and_takes_others_later() {
    let now = Instant::now();
    let (mut relay, offer) =
        Relay::incoming(now, video_config(), Some(&data("baresip-offer-video.sdp")))
            .expect("a relay");
    assert!(
        !offer.contains("H264/90000"),
        "the phone's formats alone: {offer}"
    );
    assert!(
        offer.contains("VP8/90000") && offer.contains("VP9/90000"),
        "{offer}"
    );
    let browser = browser_answer(&offer);
    relay
        .accept_browser_answer(now, &browser)
        .expect("a SIP answer");
    assert!(relay.video.is_some());
    let removed = data("baresip-offer-video.sdp").replace("m=video 10032", "m=video 0");
    relay.answer_sip_offer(&removed).expect("answered");
    let stop = relay.browser_update().expect("an offer").expect("stopped");
    relay
        .accept_browser_update(now, &as_browser_of(&browser_answer(&stop), &browser))
        .expect("accepted");
    let h264 = data("baresip-answer-video.sdp");
    let answer = relay.answer_sip_offer(&h264).expect("answered");
    assert_eq!(line(&answer, "video").port, 30002, "{answer}");
    let again = relay
        .browser_update()
        .expect("an offer")
        .expect("video offered again");
    assert!(again.contains("H264/90000"), "{again}");
}
