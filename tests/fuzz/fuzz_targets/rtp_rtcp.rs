//! RTP and RTCP from the network, on the SIP leg of a call: the header parser (a packet it
//! reads writes back the same), the sender-report reader, and a relay in a call taking the
//! datagram on its RTP and on its RTCP port, audio's and video's, from the address the SDP
//! gave and from another.
//! Nothing may panic, and whatever the relay sends must be bounded by what it was given.

#![no_main]

#[path = "relay_setup.rs"]
mod relay_setup;

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use media::rtp::{RtpHeader, RtpView, read_keyframe_requests, read_sender_report, write_rtp};
use media::{Output, Relay};
use relay_setup::{CHROME, config};

const BARESIP: &str = include_str!("../../data/sdp/baresip-answer-video.sdp");

fuzz_target!(|data: &[u8]| {
    if let Some(view) = RtpView::parse(data) {
        let header = RtpHeader {
            pt: view.pt(),
            marker: view.marker(),
            seq: view.seq(),
            timestamp: view.timestamp(),
            ssrc: view.ssrc(),
        };
        let mut out = Vec::new();
        write_rtp(&mut out, header, view.payload());
        let again = RtpView::parse(&out).expect("what we write reads back");
        assert_eq!(
            (
                again.pt(),
                again.marker(),
                again.seq(),
                again.timestamp(),
                again.ssrc()
            ),
            (
                header.pt,
                header.marker,
                header.seq,
                header.timestamp,
                header.ssrc
            )
        );
        assert_eq!(again.payload(), view.payload());
    }
    let _ = read_sender_report(data);
    let _ = read_keyframe_requests(data);

    media::init_crypto();
    let now = Instant::now();
    let Ok((mut relay, _)) = Relay::outgoing(now, config(), CHROME) else {
        return;
    };
    relay
        .accept_sip_answer(now, BARESIP)
        .expect("baresip's answer");
    let phone = "127.0.0.1:10020".parse().expect("addr");
    let phone_video = "127.0.0.1:10022".parse().expect("addr");
    let stranger = "198.51.100.9:4000".parse().expect("addr");
    for (source, rtcp_port, video) in [
        (phone, false, false),
        (phone, true, false),
        (stranger, false, false),
        (phone_video, false, true),
        (phone_video, true, true),
    ] {
        if video {
            relay.handle_sip_video(now, source, data, rtcp_port);
        } else {
            relay.handle_sip(now, source, data, rtcp_port);
        }
        for _ in 0..64 {
            match relay.poll_output() {
                Output::Timeout(_) => break,
                Output::Browser { data: sent, .. }
                | Output::SipRtp { data: sent, .. }
                | Output::SipRtcp { data: sent, .. }
                | Output::SipVideoRtp { data: sent, .. }
                | Output::SipVideoRtcp { data: sent, .. } => {
                    assert!(
                        sent.len() <= data.len() + 1500,
                        "{} from {}",
                        sent.len(),
                        data.len()
                    );
                }
            }
        }
    }
});
