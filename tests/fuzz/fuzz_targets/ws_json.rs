//! The sylkRTC JSON envelope from the network: requests, and server messages in both versions.
//! Nothing may panic, and a parsed request encodes to something that parses to it again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{Request, ServerMessage, Version};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = Request::parse(text) {
        let again = Request::parse(&request.encode()).expect("an encoded request parses again");
        assert_eq!(again, request);
    }
    for version in [Version::V1, Version::V2] {
        if let Ok(message) = ServerMessage::parse(text, version) {
            let _ = message.encode(version);
        }
    }
});
