//! Opus for the tests, through libopus (the Debian package libopus-dev): the browser stand-in
//! encodes its tone and decodes what it receives, so that opus calls are checked by ear too.
//!
//! The only unsafe code of the project: a few calls into a C library, each checked.
#![allow(unsafe_code, reason = "bindings to libopus, used by tests only")]

use std::ffi::c_int;

#[repr(C)]
struct OpusEncoder {
    _private: [u8; 0],
}

#[repr(C)]
struct OpusDecoder {
    _private: [u8; 0],
}

/// OPUS_APPLICATION_VOIP.
const APPLICATION_VOIP: c_int = 2048;

#[link(name = "opus")]
unsafe extern "C" {
    fn opus_encoder_create(
        rate: i32,
        channels: c_int,
        application: c_int,
        error: *mut c_int,
    ) -> *mut OpusEncoder;
    fn opus_encode(
        encoder: *mut OpusEncoder,
        pcm: *const i16,
        frame_size: c_int,
        data: *mut u8,
        max_data: i32,
    ) -> i32;
    fn opus_encoder_destroy(encoder: *mut OpusEncoder);
    fn opus_decoder_create(rate: i32, channels: c_int, error: *mut c_int) -> *mut OpusDecoder;
    fn opus_decode(
        decoder: *mut OpusDecoder,
        data: *const u8,
        length: i32,
        pcm: *mut i16,
        frame_size: c_int,
        decode_fec: c_int,
    ) -> c_int;
    fn opus_decoder_destroy(decoder: *mut OpusDecoder);
}

/// A mono 48 kHz Opus encoder.
#[derive(Debug)]
pub struct Encoder(*mut OpusEncoder);

// SAFETY: the encoder state is only touched through `&mut self`, from one thread at a time.
unsafe impl Send for Encoder {}

impl Encoder {
    /// A VoIP encoder for 48 kHz mono.
    pub fn new() -> Encoder {
        let mut error = 0;
        // SAFETY: valid arguments; the result is checked before use.
        let encoder = unsafe { opus_encoder_create(48_000, 1, APPLICATION_VOIP, &mut error) };
        assert!(
            !encoder.is_null() && error == 0,
            "opus_encoder_create failed: {error}"
        );
        Encoder(encoder)
    }

    /// Encodes one frame (960 samples: 20 ms).
    pub fn encode(&mut self, samples: &[i16]) -> Vec<u8> {
        let mut out = vec![0u8; 1500];
        let frame = c_int::try_from(samples.len()).expect("a frame size");
        // SAFETY: `samples` holds `frame` samples and `out` 1500 bytes, as passed.
        let length =
            unsafe { opus_encode(self.0, samples.as_ptr(), frame, out.as_mut_ptr(), 1500) };
        assert!(length > 0, "opus_encode failed: {length}");
        out.truncate(length as usize);
        out
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_encoder_create, destroyed once.
        unsafe { opus_encoder_destroy(self.0) }
    }
}

/// A mono 48 kHz Opus decoder.
#[derive(Debug)]
pub struct Decoder(*mut OpusDecoder);

impl Decoder {
    /// A decoder to 48 kHz mono.
    pub fn new() -> Decoder {
        let mut error = 0;
        // SAFETY: valid arguments; the result is checked before use.
        let decoder = unsafe { opus_decoder_create(48_000, 1, &mut error) };
        assert!(
            !decoder.is_null() && error == 0,
            "opus_decoder_create failed: {error}"
        );
        Decoder(decoder)
    }

    /// Decodes one packet (empty on a corrupt packet).
    pub fn decode(&mut self, packet: &[u8]) -> Vec<i16> {
        let mut out = vec![0i16; 5760];
        let length = i32::try_from(packet.len()).unwrap_or(0);
        // SAFETY: `packet` holds `length` bytes, `out` 5760 samples (120 ms, the largest frame).
        let decoded =
            unsafe { opus_decode(self.0, packet.as_ptr(), length, out.as_mut_ptr(), 5760, 0) };
        out.truncate(usize::try_from(decoded).unwrap_or(0));
        out
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create, destroyed once.
        unsafe { opus_decoder_destroy(self.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{PROBES, Tone, dominant};

    #[test]
    fn a_tone_survives_encoding_and_decoding() {
        let (mut encoder, mut decoder) = (Encoder::new(), Decoder::new());
        let mut tone = Tone::new(700.0, 48_000);
        let mut decoded = Vec::new();
        for _ in 0..50 {
            decoded.extend(decoder.decode(&encoder.encode(&tone.samples(960))));
        }
        assert_eq!(dominant(&decoded[9600..], 48_000, &PROBES).0, 700.0);
    }
}
