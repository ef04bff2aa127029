//! SIP bytes from the network: as a datagram (parse, check, print, parse again) and as a
//! stream cut at an arbitrary point. Nothing may panic. The checks live in `sip::fuzzing`,
//! which the unit tests also run over the RFC 4475 messages and mutations of the corpus.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sip::fuzzing::check_message(data));
