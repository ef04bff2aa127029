//! STUN from the network: a keep-alive on the SIP UDP port (answered with a Binding response,
//! RFC 5626 section 8) and a connectivity check on the shared browser port (whose USERNAME names
//! the call it is for). Nothing may panic; a response must be well formed and answer the
//! request's transaction.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(ufrag) = media::stun::stun_ufrag(data) {
        assert!(!ufrag.contains(':'));
        assert!(ufrag.len() + 20 <= data.len());
    }
    let source = "192.0.2.7:5080".parse().expect("addr");
    if let Some(response) = sip::binding_response(data, source) {
        assert!(sip::is_stun(&response));
        assert!(response.len() >= 20);
        let length = usize::from(u16::from_be_bytes([response[2], response[3]]));
        assert_eq!(
            length + 20,
            response.len(),
            "the header's length is the body's"
        );
        assert_eq!(response[8..20], data[8..20], "the request's transaction id");
    }
});
