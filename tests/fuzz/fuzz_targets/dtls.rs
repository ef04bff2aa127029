//! DTLS-SRTP toward a phone from the network: arbitrary datagrams into a fresh association as
//! the client (our ClientHello sent, on the RTP and the RTCP port) and as the server, then
//! their timers. Nothing may panic, no keys may come out of a handshake that never happened,
//! and what goes out stays bounded.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use media::dtls::{Component, DtlsSrtp, Fingerprint, Progress, Setup};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let phone: SocketAddr = ([127, 0, 0, 2], 6000).into();
    let rtcp: SocketAddr = ([127, 0, 0, 2], 6001).into();
    let fingerprint =
        Fingerprint::parse(&format!("sha-256 {}", ["AB"; 32].join(":"))).expect("valid");
    // The datagram, and the same cut in two, as one or two records.
    let cut = data.len() / 2;
    for setup in [Setup::Active, Setup::Passive] {
        let mut dtls =
            DtlsSrtp::new(now, setup, fingerprint.clone(), phone, Some(rtcp)).expect("made");
        for (component, datagram) in [
            (Component::Rtp, data),
            (Component::Rtcp, data),
            (Component::Rtp, &data[..cut]),
            (Component::Rtp, &data[cut..]),
        ] {
            if let Ok(Progress::Keys(_)) = dtls.handle(now, component, datagram) {
                panic!("keys without a handshake");
            }
        }
        let _ = dtls.handle_timeout(now + Duration::from_secs(2));
        let mut sent = 0;
        while dtls.poll_transmit().is_some() {
            sent += 1;
            assert!(sent < 64, "unbounded output");
        }
        assert!(!dtls.is_done());
    }
});
