//! SRTP and SRTCP from the network: a receiving context of every suite, with and without an
//! MKI, takes arbitrary datagrams (nothing may panic, and nothing that was not protected with
//! its key may pass); a datagram that is an RTP or RTCP packet, protected and unprotected again
//! with the same key, comes back as it was. And `a=crypto` lines: whatever parses writes back
//! the same line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use media::srtp::{Crypto, Srtp, Suite};

/// A fixed key per suite (30 bytes of key and salt for AES-CM, 28 for AES-GCM).
fn key(suite: Suite, tag: u32, mki: bool) -> Crypto {
    let inline = match suite {
        Suite::AeadAes128Gcm => "WnD7c1ksDGs+dIefCEo8omPg4uO8DYIinNGL5w==",
        _ => "WnD7c1ksDGs+dIefCEo8omPg4uO8DYIinNGL5yxQ",
    };
    let mki = if mki { "|2^31|1:1" } else { "" };
    Crypto::parse(&format!("{tag} {} inline:{inline}{mki}", suite.name())).expect("a valid key")
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(line) = Crypto::parse(text)
    {
        let again = Crypto::parse(&line.attribute()).expect("what we write reads back");
        assert_eq!(again, line);
    }
    let mut out = Vec::new();
    for suite in Suite::ALL {
        for mki in [false, true] {
            let mut receive = Srtp::new(&key(suite, 1, mki), false);
            // Forged packets: a 2^-32 chance at best for the shortest tag, never in practice.
            assert!(receive.unprotect_rtp(data, &mut out).is_err());
            assert!(receive.unprotect_rtcp(data, &mut out).is_err());
        }
        let mut send = Srtp::new(&key(suite, 1, false), true);
        let mut receive = Srtp::new(&key(suite, 1, false), false);
        let mut back = Vec::new();
        if send.protect_rtp(data, &mut out).is_ok() {
            receive.unprotect_rtp(&out, &mut back).expect("our own packet");
            assert_eq!(back, data);
        }
        if send.protect_rtcp(data, &mut out).is_ok() {
            receive.unprotect_rtcp(&out, &mut back).expect("our own packet");
            assert_eq!(back, data);
        }
    }
});
