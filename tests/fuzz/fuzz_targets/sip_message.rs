//! SIP bytes from the network: as a datagram (parse, check, print, parse again) and as a
//! stream cut at an arbitrary point. Nothing may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sip::{Frame, Message, StreamFramer};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::parse_datagram(data, 65_536) {
        if message.validate().is_ok() {
            let printed = message.to_bytes();
            let again = Message::parse_datagram(&printed, 131_072).expect("a printed message parses again");
            assert!(again.validate().is_ok(), "a printed valid message stays valid");
        }
        let _ = message.vias();
        let _ = message.cseq();
    }
    let split = data.first().map_or(0, |first| usize::from(*first) % (data.len() + 1));
    let mut framer = StreamFramer::new(65_536);
    for piece in [&data[..split], &data[split..]] {
        framer.push(piece);
        while let Ok(Some(frame)) = framer.next_frame() {
            if let Frame::Message(message) = frame {
                let _ = message.validate();
            }
        }
    }
});
