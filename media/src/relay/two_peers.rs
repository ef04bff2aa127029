//! A relay between two peers on a made-up clock, with no sockets: a str0m peer playing the
//! browser (full ICE, DTLS-SRTP, the browser's own offer) on one side, and a plain RTP peer
//! playing the phone on the other (SRTP with SDES keys when the test asks for it). Every datagram is handed over by the test, and time moves
//! only when the test moves it, so ICE, DTLS, relaying, strict source and the silence timers
//! run exactly as they would, in microseconds and the same way every time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use str0m::change::SdpAnswer;
use str0m::media::{Direction as WebRtcDirection, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event as WebRtcEvent, Input, Output as WebRtcOutput, Rtc};

use super::{Event, Output, Relay, RelayConfig};
use crate::codec::Codec;
use crate::rtp::{RtpHeader, RtpView, is_rtcp, write_rtp};
use crate::sdp::Description;
use crate::srtp::{Crypto, Srtp, SrtpMode, SrtpPolicy, Suite};

/// The browser's host candidate.
const BROWSER: &str = "192.0.2.10:50000";
/// The gateway's browser port (the relay's ICE candidate).
const GATEWAY: &str = "127.0.0.1:40000";
/// The gateway's RTP port toward the phone, as written in SDP.
const GATEWAY_RTP: &str = "127.0.0.1:30000";
/// The phone's RTP address, as its SDP gives it.
const PHONE: &str = "127.0.0.2:6000";
/// The gateway's video RTP port toward the phone.
const GATEWAY_VIDEO: &str = "127.0.0.1:30002";
/// The phone's video RTP and RTCP addresses.
const PHONE_VIDEO: &str = "127.0.0.2:6002";
const PHONE_VIDEO_RTCP: &str = "127.0.0.2:6003";

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("an address")
}

/// The phone's answer: PCMU and telephone-event from [`PHONE`].
fn phone_answer() -> String {
    "v=0\r\no=phone 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
     m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
     a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
        .to_owned()
}

/// A browser peer (full ICE, one host candidate) with PCMU alone.
fn pcmu_browser(now: Instant) -> Rtc {
    let mut browser = Rtc::builder()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_pcmu(true, false)
        .build(now);
    browser.add_local_candidate(Candidate::host(addr(BROWSER), "udp").expect("candidate"));
    browser
}

/// A send-and-receive m-line of `kind` in the browser's next offer.
fn add_media(change: &mut str0m::change::SdpApi<'_>, kind: MediaKind) -> Mid {
    change.add_media(kind, WebRtcDirection::SendRecv, None, None, None)
}

/// A browser's audio offer (PCMU) through a new relay: the browser, its m-line, its pending
/// offer, the relay and the SIP offer.
fn outgoing_relay(
    now: Instant,
    config: RelayConfig,
) -> (Rtc, Mid, str0m::change::SdpPendingOffer, Relay, String) {
    crate::init_crypto();
    let mut browser = pcmu_browser(now);
    let mut change = browser.sdp_api();
    let mid = add_media(&mut change, MediaKind::Audio);
    let (offer, pending) = change.apply().expect("an offer");
    let (relay, sip_offer) = Relay::outgoing(now, config, &offer.to_sdp_string()).expect("a relay");
    (browser, mid, pending, relay, sip_offer)
}

/// The relay's settings for an audio call (opus and PCMU).
fn audio_config(media_timeout: Duration, srtp: SrtpPolicy) -> RelayConfig {
    RelayConfig {
        browser: addr(GATEWAY),
        sip_rtp: addr(GATEWAY_RTP),
        codecs: vec![Codec::Opus, Codec::Pcmu],
        media_timeout,
        ice_timeout: Duration::from_secs(30),
        wallclock: SystemTime::now(),
        cname: "pair".into(),
        sip_video: None,
        video_codecs: Vec::new(),
        srtp,
    }
}

/// The two peers, the relay between them, and the clock.
struct Pair {
    now: Instant,
    browser: Rtc,
    mid: Mid,
    relay: Relay,
    /// What the relay sent toward the phone: (destination, RTP datagram).
    to_phone: Vec<(SocketAddr, Vec<u8>)>,
    /// What the browser peer heard: (payload type, sequence number, payload).
    browser_heard: Vec<(u8, u64, Vec<u8>)>,
    browser_connected: bool,
    relay_events: Vec<Event>,
    browser_deadline: Instant,
    relay_deadline: Instant,
    /// The phone's SRTP: its sending context and its receiving one (our key).
    phone_srtp: Option<(Srtp, Srtp)>,
    /// The browser's video m-line, in a video call.
    video_mid: Option<Mid>,
    /// Relay-to-browser video datagrams (by this payload type) to lose: their ordinal numbers.
    lose_to_browser: Option<(u8, Vec<usize>)>,
    /// Video datagrams seen toward the browser so far.
    video_to_browser: usize,
    /// Keyframe requests the phone's video RTCP port got (PLI or FIR).
    phone_keyframe_requests: usize,
    /// The TMMBNs the phone got (their FCI: owner SSRC and bit rate word).
    phone_tmmbns: Vec<Vec<u8>>,
    /// The latest REMB the browser got, bits per second.
    browser_remb: Option<u64>,
}

impl Pair {
    /// A browser calls a phone: the browser's offer through the relay, the phone's answer
    /// back, then ICE and DTLS until both sides say they are connected.
    fn outgoing_call(media_timeout: Duration) -> Pair {
        Pair::outgoing_srtp_call(media_timeout, SrtpPolicy::never(), None)
    }

    /// As [`Pair::outgoing_call`], with the relay's SRTP `policy`; the phone answers with a key
    /// of `suite` (picking the offer's line of that suite) or, with `None`, in plain RTP.
    fn outgoing_srtp_call(
        media_timeout: Duration,
        policy: SrtpPolicy,
        suite: Option<Suite>,
    ) -> Pair {
        let now = Instant::now();
        let (browser, mid, pending, relay, sip_offer) =
            outgoing_relay(now, audio_config(media_timeout, policy));
        assert!(sip_offer.contains("PCMU/8000"), "{sip_offer}");
        let mut phone_answer = phone_answer();
        let mut phone_srtp = None;
        if let Some(suite) = suite {
            let offered = Description::parse(&sip_offer).expect("the SIP offer");
            let ours = offered.lines[0]
                .crypto
                .iter()
                .find(|line| line.suite == suite)
                .expect("the suite offered")
                .clone();
            let theirs = Crypto::generate(ours.tag, suite);
            phone_answer = phone_answer.replace(
                "a=sendrecv\r\n",
                &format!("a=sendrecv\r\na=crypto:{}\r\n", theirs.attribute()),
            );
            phone_srtp = Some((Srtp::new(&theirs, true), Srtp::new(&ours, false)));
        }
        let pair = Pair::connect(
            now,
            browser,
            (mid, None),
            pending,
            relay,
            &phone_answer,
            phone_srtp,
        );
        assert_eq!(pair.relay_events, [Event::Connected]);
        pair
    }

    /// The phone's answer through the relay to the browser, then ICE and DTLS until both sides
    /// say they are connected.
    fn connect(
        now: Instant,
        mut browser: Rtc,
        (mid, video_mid): (str0m::media::Mid, Option<str0m::media::Mid>),
        pending: str0m::change::SdpPendingOffer,
        mut relay: Relay,
        phone_answer: &str,
        phone_srtp: Option<(Srtp, Srtp)>,
    ) -> Pair {
        let answer = relay
            .accept_sip_answer(now, phone_answer)
            .expect("the phone's answer taken")
            .expect("an answer for the browser");
        let answer = SdpAnswer::from_sdp_string(&answer).expect("a valid answer");
        browser
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("the browser takes the answer");
        let mut pair = Pair::new(now, browser, (mid, video_mid), relay);
        pair.phone_srtp = phone_srtp;
        pair.run_until(|pair| pair.browser_connected && pair.relay.is_connected());
        pair
    }

    /// The two peers and the relay, nothing exchanged yet.
    fn new(now: Instant, browser: Rtc, (mid, video_mid): (Mid, Option<Mid>), relay: Relay) -> Pair {
        Pair {
            now,
            browser,
            mid,
            relay,
            to_phone: Vec::new(),
            browser_heard: Vec::new(),
            browser_connected: false,
            relay_events: Vec::new(),
            browser_deadline: now,
            relay_deadline: now,
            phone_srtp: None,
            video_mid,
            lose_to_browser: None,
            video_to_browser: 0,
            phone_keyframe_requests: 0,
            phone_tmmbns: Vec::new(),
            browser_remb: None,
        }
    }

    /// Hands every datagram waiting on either side to the other, until both are idle.
    fn exchange(&mut self) {
        loop {
            let mut moved = false;
            loop {
                match self.browser.poll_output().expect("the browser peer runs") {
                    WebRtcOutput::Transmit(transmit) => {
                        assert_eq!(transmit.destination, addr(GATEWAY));
                        self.relay
                            .handle_browser(self.now, transmit.source, &transmit.contents);
                        moved = true;
                    }
                    WebRtcOutput::Event(WebRtcEvent::Connected) => self.browser_connected = true,
                    WebRtcOutput::Event(WebRtcEvent::RtpPacket(packet)) => {
                        self.browser_heard.push((
                            *packet.header.payload_type,
                            *packet.seq_no,
                            packet.payload.to_vec(),
                        ));
                    }
                    WebRtcOutput::Event(WebRtcEvent::EgressBitrateEstimate(
                        str0m::bwe::BweKind::Remb { estimate, .. },
                    )) => self.browser_remb = Some(estimate.as_u64()),
                    WebRtcOutput::Event(_) => {}
                    WebRtcOutput::Timeout(at) => {
                        self.browser_deadline = at;
                        break;
                    }
                }
            }
            loop {
                match self.relay.poll_output() {
                    Output::Browser { destination, data } => {
                        assert_eq!(destination, addr(BROWSER));
                        if let Some((pt, lose)) = &self.lose_to_browser
                            && data.len() > 12
                            && (128..192).contains(&data[0])
                            && data[1] & 0x7f == *pt
                        {
                            self.video_to_browser += 1;
                            if lose.contains(&self.video_to_browser) {
                                continue;
                            }
                        }
                        let receive = Receive::new(Protocol::Udp, addr(GATEWAY), destination, data)
                            .expect("a datagram str0m reads");
                        self.browser
                            .handle_input(Input::Receive(self.now, receive))
                            .expect("the browser peer takes it");
                        moved = true;
                    }
                    Output::SipVideoRtcp { destination, data } => {
                        assert_eq!(destination, addr(PHONE_VIDEO_RTCP));
                        let ask = crate::rtp::read_keyframe_requests(data);
                        if ask.pli || ask.fir {
                            self.phone_keyframe_requests += 1;
                        }
                        if data.len() >= 20 && data[1] == 205 && data[0] & 0x1f == 4 {
                            self.phone_tmmbns.push(data[12..20].to_vec());
                        }
                    }
                    Output::SipRtp { destination, data }
                    | Output::SipRtcp { destination, data }
                    | Output::SipVideoRtp { destination, data } => {
                        self.to_phone.push((destination, data.to_vec()));
                    }
                    Output::Timeout(at) => {
                        self.relay_deadline = at;
                        break;
                    }
                }
            }
            while let Some(event) = self.relay.poll_event() {
                self.relay_events.push(event);
            }
            if !moved {
                return;
            }
        }
    }

    /// Moves the clock to the next timer of either side, at most to `until`, and fires them.
    fn step(&mut self, until: Instant) {
        self.exchange();
        let next = self.browser_deadline.min(self.relay_deadline).min(until);
        self.now = self.now.max(next);
        self.browser
            .handle_input(Input::Timeout(self.now))
            .expect("the browser peer runs");
        self.relay.handle_timeout(self.now);
        self.exchange();
    }

    /// Runs the timers for `duration` of made-up time.
    fn advance(&mut self, duration: Duration) {
        let until = self.now + duration;
        while self.now < until {
            self.step(until);
        }
    }

    /// Runs until `done`, failing after ten seconds of made-up time.
    fn run_until(&mut self, done: impl Fn(&Pair) -> bool) {
        let limit = self.now + Duration::from_secs(10);
        while !done(self) {
            assert!(
                self.now < limit,
                "not done after 10 s: {:?}",
                self.relay_events
            );
            self.step(limit);
        }
    }

    /// The browser sends one PCMU packet.
    fn browser_sends(&mut self, seq: u64, payload: &[u8]) {
        let mut api = self.browser.direct_api();
        let stream = api
            .stream_tx_by_mid(self.mid, None)
            .expect("the browser's send stream");
        let timestamp = (seq * 160) as u32;
        stream.write_rtp(RtpWrite::new(
            0.into(),
            SeqNo::from(seq),
            timestamp,
            self.now,
            Arc::<[u8]>::from(payload),
        ));
        self.exchange();
    }

    /// A datagram reaches the relay's RTP port from `source`: the phone's stream when `source`
    /// is the phone, else a stream of its own (another SSRC, other sequence numbers).
    fn phone_sends(&mut self, source: SocketAddr, seq: u16, payload: &[u8]) {
        let (ssrc, seq) = if source == addr(PHONE) {
            (0x1234_5678, seq)
        } else {
            (0x0bad_cafe, seq.wrapping_add(30_000))
        };
        let mut packet = Vec::new();
        let header = RtpHeader {
            pt: 0,
            marker: seq == 0,
            seq,
            timestamp: u32::from(seq) * 160,
            ssrc,
        };
        write_rtp(&mut packet, header, payload);
        if let Some((send, _)) = &mut self.phone_srtp {
            let plain = std::mem::take(&mut packet);
            send.protect_rtp(&plain, &mut packet).expect("protected");
        }
        self.relay.handle_sip(self.now, source, &packet, false);
        self.exchange();
    }

    /// The RTP packets the phone got so far: (payload type, sequence number, payload).
    fn phone_heard(&mut self) -> Vec<(u8, u16, Vec<u8>)> {
        let mut srtp = self.phone_srtp.take();
        let heard = self
            .to_phone
            .iter()
            .filter(|(_, data)| !is_rtcp(data))
            .filter(|(destination, _)| *destination != addr(PHONE_VIDEO))
            .filter_map(|(destination, data)| {
                assert_eq!(*destination, addr(PHONE));
                let mut plain = data.clone();
                if let Some((_, receive)) = &mut srtp {
                    receive
                        .unprotect_rtp(data, &mut plain)
                        .expect("the relay's SRTP checks out at the phone");
                }
                let view = RtpView::parse(&plain)?;
                (view.pt() < 64).then(|| (view.pt(), view.seq(), view.payload().to_vec()))
            })
            .collect();
        self.phone_srtp = srtp;
        heard
    }
}

/// Audio goes both ways through the relay: every packet arrives once, with the payload
/// untouched, the payload type of the other side, and sequence numbers that follow on.
#[test]
fn audio_flows_both_ways() {
    let mut pair = Pair::outgoing_call(Duration::from_secs(30));
    let phone = addr(PHONE);
    for seq in 0..50u16 {
        let sent = [seq as u8; 160];
        pair.browser_sends(u64::from(seq) + 1000, &sent);
        pair.phone_sends(phone, seq, &[!(seq as u8); 160]);
        pair.advance(Duration::from_millis(20));
    }
    let heard = pair.phone_heard();
    assert_eq!(heard.len(), 50, "the phone hears every packet");
    for (index, (pt, seq, payload)) in heard.iter().enumerate() {
        assert_eq!(*pt, 0);
        assert_eq!(*seq, heard[0].1.wrapping_add(index as u16));
        assert_eq!(payload, &vec![index as u8; 160]);
    }
    assert_eq!(
        pair.browser_heard.len(),
        50,
        "the browser hears every packet"
    );
    for (index, (pt, _, payload)) in pair.browser_heard.iter().enumerate() {
        assert_eq!(*pt, 0);
        assert_eq!(payload, &vec![!(index as u8); 160]);
    }
    assert_eq!(pair.relay_events, [Event::Connected]);
}

/// The call's quality counts each leg on its own: packets skipped by the browser are lost on
/// the browser leg alone, packets skipped by the phone on the SIP leg alone; the browser's
/// reports on our audio come through str0m, and the phone's report on our sender report gives
/// the SIP leg's round trip (answered 80 ms after it went, held 30 ms: 50 ms).
#[test]
fn quality_counts_each_leg_and_its_own_loss() {
    let mut pair = Pair::outgoing_call(Duration::from_secs(30));
    let phone = addr(PHONE);
    let mut sender_report = None;
    for seq in 0..400u16 {
        if seq % 10 != 9 {
            pair.browser_sends(u64::from(seq) + 1000, &[1; 160]);
        }
        if !(100..103).contains(&seq) {
            pair.phone_sends(phone, seq, &[2; 80]);
        }
        let until = pair.now + Duration::from_millis(20);
        while pair.now < until {
            let before = pair.to_phone.len();
            pair.step(until);
            let report = pair.to_phone[before..]
                .iter()
                .find(|(_, data)| is_rtcp(data) && data[1] == 200);
            if sender_report.is_none()
                && let Some((_, data)) = report
            {
                let (_, ntp) = crate::rtp::read_sender_report(data).expect("an SR");
                sender_report = Some(((ntp >> 16) as u32, pair.now));
            }
        }
    }
    let (lsr, sent_at) = sender_report.expect("the relay sent the phone a sender report");
    assert!(pair.now >= sent_at + Duration::from_millis(80));
    let block = crate::rtp::ReportBlock {
        ssrc: pair.relay.sip.ssrc,
        fraction_lost: 0,
        cumulative_lost: 0,
        highest_seq: 0,
        jitter: 8,
        lsr,
        dlsr: 65_536 * 30 / 1000,
    };
    let mut report = Vec::new();
    crate::rtp::write_report(&mut report, 0x1234_5678, None, Some(block), "phone");
    let answered = sent_at + Duration::from_millis(80);
    pair.relay.handle_sip(answered, phone, &report, false);

    let quality = pair.relay.quality();
    assert_eq!(quality.codec, Some(Codec::Pcmu));
    let browser = quality.browser;
    // 40 skipped; the last (399) is not known lost, as nothing came after it.
    assert_eq!((browser.packets_received, browser.packets_lost), (360, 39));
    assert_eq!(browser.bytes_received, 360 * 160);
    assert_eq!((browser.packets_sent, browser.bytes_sent), (397, 397 * 80));
    // The phone's three lost packets leave gaps toward the browser too: end to end, the
    // browser reports them.
    assert_eq!(browser.remote_packets_lost, Some(3), "{browser:?}");
    // No round trip on the browser leg here: both peers' report timers run on one made-up
    // clock, so the browser answers each sender report the instant it comes (DLSR 0, which
    // RFC 3550 reserves for "no SR"); the end-to-end tests see it with real peers.
    let sip = quality.sip;
    assert_eq!((sip.packets_received, sip.packets_lost), (397, 3));
    assert_eq!(sip.bytes_received, 397 * 80);
    assert_eq!((sip.packets_sent, sip.bytes_sent), (360, 360 * 160));
    assert_eq!(sip.remote_packets_lost, Some(0));
    assert_eq!(sip.remote_jitter, Some(Duration::from_millis(1)));
    let rtt = sip.round_trip_time.expect("the SIP leg's round trip");
    assert!(
        rtt.abs_diff(Duration::from_millis(50)) < Duration::from_millis(1),
        "{rtt:?}"
    );
}

/// Once the phone's source is learnt (a 3 s window after its first packet), a third party
/// sending to the call's port is not heard; when the phone then goes silent, the call fails
/// after the media timeout, and not before.
#[test]
fn a_third_party_is_not_heard_and_silence_ends_the_call() {
    let mut pair = Pair::outgoing_call(Duration::from_secs(5));
    let phone = addr(PHONE);
    let intruder = addr("127.0.0.9:7000");
    for seq in 0..200u16 {
        pair.phone_sends(phone, seq, &[1; 160]);
        pair.browser_sends(u64::from(seq), &[2; 160]);
        if seq >= 175 {
            pair.phone_sends(intruder, seq, &[9; 160]);
        }
        pair.advance(Duration::from_millis(20));
    }
    assert_eq!(pair.browser_heard.len(), 200);
    assert!(
        pair.browser_heard
            .iter()
            .all(|(_, _, payload)| payload[0] == 1),
        "nothing from the third party reached the browser"
    );
    // The phone goes silent; the browser still talks and answers ICE.
    for seq in 200..(200 + 4_900 / 20) {
        pair.browser_sends(seq, &[2; 160]);
        pair.advance(Duration::from_millis(20));
    }
    assert_eq!(pair.relay_events, [Event::Connected], "not yet: 4.9 s");
    for seq in 445..(445 + 1_200 / 20) {
        pair.browser_sends(seq, &[2; 160]);
        pair.advance(Duration::from_millis(20));
    }
    assert_eq!(
        pair.relay_events,
        [
            Event::Connected,
            Event::Failed("no RTP from the SIP side for 5 s".into())
        ]
    );
}

/// With SDES keys, audio flows both ways as in plain RTP with every suite: the phone decrypts
/// all the relay sends, the browser hears all the phone sends; packets in the clear or under
/// another key are not heard, and when nothing else comes the call's end says why.
#[test]
fn srtp_with_every_suite_flows_both_ways_and_refuses_the_unprotected() {
    for suite in Suite::ALL {
        let policy = SrtpPolicy::with_all_suites(SrtpMode::Optional);
        let mut pair = Pair::outgoing_srtp_call(Duration::from_secs(5), policy, Some(suite));
        assert_eq!(pair.relay.sip_srtp(), Some(suite));
        let phone = addr(PHONE);
        for seq in 0..50u16 {
            pair.browser_sends(u64::from(seq) + 1000, &[seq as u8; 160]);
            pair.phone_sends(phone, seq, &[!(seq as u8); 160]);
            pair.advance(Duration::from_millis(20));
        }
        let heard = pair.phone_heard();
        assert_eq!(heard.len(), 50, "{suite}: the phone decrypts every packet");
        for (index, (_, _, payload)) in heard.iter().enumerate() {
            assert_eq!(payload, &vec![index as u8; 160], "{suite}");
        }
        assert_eq!(pair.browser_heard.len(), 50, "{suite}");
        for (index, (_, _, payload)) in pair.browser_heard.iter().enumerate() {
            assert_eq!(payload, &vec![!(index as u8); 160], "{suite}");
        }
        // Plain RTP from the phone's own address is not heard now.
        let keys = pair.phone_srtp.take();
        for seq in 50..300u16 {
            pair.phone_sends(phone, seq, &[7; 160]);
            pair.browser_sends(u64::from(seq) + 1000, &[1; 160]);
            pair.advance(Duration::from_millis(20));
        }
        assert_eq!(
            pair.browser_heard.len(),
            50,
            "{suite}: nothing in the clear"
        );
        pair.phone_srtp = keys;
        assert_eq!(
            pair.relay_events,
            [
                Event::Connected,
                Event::Failed(
                    "no RTP from the SIP side for 5 s (250 packets failed SRTP authentication)"
                        .into()
                )
            ],
            "{suite}"
        );
    }
}

/// Best-effort SRTP with a phone that answers without a key: plain RTP, as before.
#[test]
fn an_answer_without_a_key_keeps_the_call_in_plain_rtp() {
    let policy = SrtpPolicy::with_all_suites(SrtpMode::Optional);
    let mut pair = Pair::outgoing_srtp_call(Duration::from_secs(30), policy, None);
    assert_eq!(pair.relay.sip_srtp(), None);
    for seq in 0..10u16 {
        pair.browser_sends(u64::from(seq), &[3; 160]);
        pair.phone_sends(addr(PHONE), seq, &[4; 160]);
        pair.advance(Duration::from_millis(20));
    }
    assert_eq!(pair.phone_heard().len(), 10);
    assert_eq!(pair.browser_heard.len(), 10);
}

impl Pair {
    /// A browser calls a video phone (audio PCMU, video VP8 with RTX on the browser leg): the
    /// relay between them, up and connected.
    fn outgoing_video_call() -> Pair {
        crate::init_crypto();
        let now = Instant::now();
        let mut browser = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_pcmu(true, false)
            .enable_vp8(true)
            .build(now);
        browser.add_local_candidate(Candidate::host(addr(BROWSER), "udp").expect("candidate"));
        let mut change = browser.sdp_api();
        let mid = add_media(&mut change, MediaKind::Audio);
        let video_mid = add_media(&mut change, MediaKind::Video);
        let (offer, pending) = change.apply().expect("an offer");
        let config = RelayConfig {
            browser: addr(GATEWAY),
            sip_rtp: addr(GATEWAY_RTP),
            codecs: vec![Codec::Pcmu],
            media_timeout: Duration::from_secs(30),
            ice_timeout: Duration::from_secs(30),
            wallclock: SystemTime::now(),
            cname: "pair".into(),
            sip_video: Some(addr(GATEWAY_VIDEO)),
            video_codecs: vec![crate::codec::VideoCodec::Vp8],
            srtp: SrtpPolicy::never(),
        };
        let (relay, sip_offer) =
            Relay::outgoing(now, config, &offer.to_sdp_string()).expect("a relay");
        assert!(sip_offer.contains("m=video 30002 RTP/AVP"), "{sip_offer}");
        let answer = phone_answer()
            + "m=video 6002 RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\n\
               a=rtcp-fb:100 nack pli\r\na=sendrecv\r\n";
        Pair::connect(
            now,
            browser,
            (mid, Some(video_mid)),
            pending,
            relay,
            &answer,
            None,
        )
    }

    /// The browser's VP8 payload type.
    fn vp8_pt(&self) -> u8 {
        self.browser
            .codec_config()
            .params()
            .iter()
            .find(|params| params.spec().codec == str0m::format::Codec::Vp8)
            .map(|params| *params.pt())
            .expect("VP8")
    }

    /// The browser sends VP8 packets of 700 bytes with these sequence numbers, 33 ms apart.
    fn browser_sends_video(&mut self, seqs: std::ops::RangeInclusive<u64>) {
        let vp8 = self.vp8_pt();
        let video_mid = self.video_mid.expect("a video m-line");
        for seq in seqs {
            let mut api = self.browser.direct_api();
            let stream = api
                .stream_tx_by_mid(video_mid, None)
                .expect("the browser's video stream");
            stream.write_rtp(RtpWrite::new(
                vp8.into(),
                SeqNo::from(seq),
                (seq * 3000) as u32,
                self.now,
                Arc::<[u8]>::from(&[seq as u8; 700][..]),
            ));
            self.advance(Duration::from_millis(33));
        }
    }

    /// The phone sends one video packet (VP8, its payload type 100) from its video address.
    fn phone_sends_video(&mut self, seq: u16, payload: &[u8]) {
        let mut packet = Vec::new();
        let header = RtpHeader {
            pt: 100,
            marker: true,
            seq,
            timestamp: u32::from(seq) * 3000,
            ssrc: 0x5151_5151,
        };
        write_rtp(&mut packet, header, payload);
        self.relay
            .handle_sip_video(self.now, addr(PHONE_VIDEO), &packet, false);
        self.exchange();
    }
}

/// Video crosses both ways on its own legs: the browser's VP8 reaches the phone's video port
/// with the phone's payload type, the phone's reaches the browser's video m-line; the phone
/// is asked for a keyframe as soon as its video starts; a video packet lost on the way to the
/// browser is NACKed by the browser and resent by the relay (RTX), so the browser ends with
/// every packet, in order of sequence.
#[test]
fn video_flows_both_ways_and_a_loss_toward_the_browser_is_repaired() {
    let mut pair = Pair::outgoing_video_call();
    let vp8 = pair.vp8_pt();
    // Browser to phone.
    pair.browser_sends_video(1..=5);
    let video: Vec<(u8, usize)> = pair
        .to_phone
        .iter()
        .filter(|(destination, _)| *destination == addr(PHONE_VIDEO))
        .filter_map(|(_, data)| RtpView::parse(data).map(|view| (view.pt(), view.payload().len())))
        .collect();
    assert_eq!(video, vec![(100, 700); 5]);

    // Phone to browser, the third packet lost on the browser leg.
    pair.lose_to_browser = Some((vp8, vec![3]));
    for seq in 1..=6u16 {
        pair.phone_sends_video(seq, &[seq as u8; 600]);
        pair.advance(Duration::from_millis(33));
    }
    assert!(
        pair.phone_keyframe_requests >= 1,
        "the phone is asked for a keyframe"
    );
    pair.advance(Duration::from_millis(500));
    let mut heard: Vec<u8> = pair
        .browser_heard
        .iter()
        .filter(|(pt, _, _)| *pt == vp8)
        .map(|(_, _, payload)| payload[0])
        .collect();
    heard.sort_unstable();
    heard.dedup();
    assert_eq!(
        heard,
        [1, 2, 3, 4, 5, 6],
        "the lost packet came again by RTX"
    );
}

/// A phone's TMMBR on the video it receives reaches the browser as REMB (at the requested
/// rate) and is acknowledged to the phone with a TMMBN naming the phone as the owner; a TMMBR
/// about another stream is left alone.
#[test]
fn a_phones_tmmbr_limits_the_browser_by_remb_and_is_acknowledged() {
    let mut pair = Pair::outgoing_video_call();
    // The browser's video first: the relay knows its stream (for the REMB) once it sends, and
    // the phone learns our SSRC (the TMMBR's target).
    pair.browser_sends_video(1..=3);
    let ours = pair
        .to_phone
        .iter()
        .filter(|(destination, _)| *destination == addr(PHONE_VIDEO))
        .find_map(|(_, data)| RtpView::parse(data).map(|view| view.ssrc()))
        .expect("our video to the phone");
    let request = crate::rtp::Tmmbr {
        sender: 0x5151_5151,
        target: ours ^ 1,
        bitrate: 256_000,
        overhead: 40,
    };
    let mut packet = Vec::new();
    crate::rtp::write_tmmbr(&mut packet, request.sender, &request);
    pair.relay
        .handle_sip_video(pair.now, addr(PHONE_VIDEO_RTCP), &packet, true);
    pair.advance(Duration::from_millis(100));
    assert!(pair.phone_tmmbns.is_empty(), "another stream's request");
    assert_eq!(pair.browser_remb, None);
    let request = crate::rtp::Tmmbr {
        target: ours,
        ..request
    };
    crate::rtp::write_tmmbr(&mut packet, request.sender, &request);
    pair.relay
        .handle_sip_video(pair.now, addr(PHONE_VIDEO_RTCP), &packet, true);
    pair.advance(Duration::from_millis(100));
    assert_eq!(pair.phone_tmmbns.len(), 1);
    assert_eq!(pair.phone_tmmbns[0][..4], 0x5151_5151u32.to_be_bytes());
    assert_eq!(pair.browser_remb, Some(256_000));
}

mod dtls;
