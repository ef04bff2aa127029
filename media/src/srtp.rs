//! SDES-SRTP toward SIP phones, sans-IO: the keys of RFC 4568 (`a=crypto` lines in SDP), and
//! SRTP and SRTCP (RFC 3711) with the suites desk phones and softphones use:
//! `AES_CM_128_HMAC_SHA1_80`, `AES_CM_128_HMAC_SHA1_32` and `AEAD_AES_128_GCM` (RFC 7714).
//!
//! The ciphers are those of the WebRTC stack's crypto provider (the same AES and HMAC code that
//! protects the browser leg); what is here is the part SDES needs and DTLS-SRTP keeps private:
//! key derivation, the rollover counter and replay window of each source, and the packet
//! layouts. A [`Srtp`] protects one direction: a call has one to send with our key and one to
//! receive with the phone's.
//!
//! Keys are secrets: [`Crypto`]'s `Debug` never shows them, and nothing here logs.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use str0m::crypto::{AeadAes128Gcm, AeadAes128GcmCipher, Aes128CmSha1_80, Aes128CmSha1_80Cipher};
use str0m::crypto::{CryptoProvider, SrtpProvider};

/// Whether the SIP leg uses SRTP (`[media] srtp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpMode {
    /// Plain RTP only: `RTP/SAVP` offers are refused, keys in `RTP/AVP` offers ignored.
    Never,
    /// Best-effort SRTP (RFC 8643): our offers are `RTP/AVP` with keys, used when the answer
    /// has one; offers are answered with SRTP when they carry a usable key, else plain.
    Optional,
    /// SRTP only: our offers are `RTP/SAVP`; plain offers and answers are refused.
    Mandatory,
}

/// What the SIP leg offers and accepts of SRTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpPolicy {
    /// Whether it is used.
    pub mode: SrtpMode,
    /// The suites taken, in the order offered.
    pub suites: Vec<Suite>,
    /// Whether the relay's offers toward SIP carry DTLS-SRTP (`UDP/TLS/RTP/SAVP` and our
    /// fingerprint, RFC 5763) instead of SDES keys, when SRTP is not off.
    pub dtls_offers: bool,
}

impl SrtpPolicy {
    /// Plain RTP only.
    pub fn never() -> SrtpPolicy {
        SrtpPolicy {
            mode: SrtpMode::Never,
            suites: Vec::new(),
            dtls_offers: false,
        }
    }

    /// `mode` with every suite.
    pub fn with_all_suites(mode: SrtpMode) -> SrtpPolicy {
        SrtpPolicy {
            mode,
            suites: Suite::ALL.to_vec(),
            dtls_offers: false,
        }
    }

    /// The keys of a new offer: one per suite, tags from 1 (none when SRTP is off).
    pub fn offer(&self) -> Vec<Crypto> {
        if self.mode == SrtpMode::Never {
            return Vec::new();
        }
        (1..)
            .zip(&self.suites)
            .map(|(tag, suite)| Crypto::generate(tag, *suite))
            .collect()
    }
}

/// An SRTP crypto suite (RFC 4568 section 6.2, RFC 7714 section 14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// AES-128 counter mode, an 80-bit HMAC-SHA1 tag.
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, a 32-bit HMAC-SHA1 tag on RTP (80 bits on RTCP).
    AesCm128HmacSha1_32,
    /// AES-128 in GCM, a 128-bit tag.
    AeadAes128Gcm,
}

impl Suite {
    /// Every suite, in the order we offer them.
    pub const ALL: [Suite; 3] = [
        Suite::AesCm128HmacSha1_80,
        Suite::AesCm128HmacSha1_32,
        Suite::AeadAes128Gcm,
    ];

    /// Its name in `a=crypto`.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    /// The suite of this name.
    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL
            .into_iter()
            .find(|suite| suite.name().eq_ignore_ascii_case(name))
    }

    /// The master salt's length (the master key is 16 bytes for all).
    fn salt_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm => 12,
            _ => 14,
        }
    }

    /// The length of the inline key: master key and master salt.
    pub(crate) fn master_len(self) -> usize {
        16 + self.salt_len()
    }

    /// The authentication tag on RTP.
    fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
            Suite::AeadAes128Gcm => 16,
        }
    }

    /// The authentication tag on RTCP (80 bits for both HMAC suites, RFC 4568 section 6.2.2).
    fn rtcp_tag_len(self) -> usize {
        match self {
            Suite::AeadAes128Gcm => 16,
            _ => 10,
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `a=crypto` line: a tag, a suite and one master key (with its salt), and how long the
/// MKI is that the sender puts in each packet (`|1:1` in desk phones' keys).
#[derive(Clone, PartialEq, Eq)]
pub struct Crypto {
    /// The tag, which the answer repeats.
    pub tag: u32,
    /// The suite.
    pub suite: Suite,
    /// Master key and master salt.
    master: Vec<u8>,
    /// The length in bytes of the MKI each packet carries (0: none).
    mki_len: usize,
}

impl fmt::Debug for Crypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is never shown.
        f.debug_struct("Crypto")
            .field("tag", &self.tag)
            .field("suite", &self.suite)
            .field("mki_len", &self.mki_len)
            .finish_non_exhaustive()
    }
}

impl Crypto {
    /// Reads the value of an `a=crypto` attribute (`1 AES_CM_128_HMAC_SHA1_80 inline:...`).
    /// `None` for a line this gateway cannot honour: an unknown suite, several keys, a key of
    /// the wrong length, a key derivation rate or any session parameter that changes the
    /// packets (`UNENCRYPTED_SRTP`, ...). The offerer may have another line that fits.
    pub fn parse(value: &str) -> Option<Crypto> {
        let mut fields = value.split_whitespace();
        let tag = fields.next()?.parse().ok()?;
        let suite = Suite::from_name(fields.next()?)?;
        let key_params = fields.next()?;
        // Session parameters: only the replay window size is harmless.
        if fields.any(|param| !param.to_ascii_uppercase().starts_with("WSH=")) {
            return None;
        }
        if key_params.contains(';') {
            return None; // several keys, each for some packets: not supported.
        }
        let inline = key_params.strip_prefix("inline:")?;
        let mut parts = inline.split('|');
        let key = parts.next()?;
        let master = STANDARD
            .decode(key)
            .or_else(|_| STANDARD_NO_PAD.decode(key))
            .ok()?;
        if master.len() != suite.master_len() {
            return None;
        }
        let mut mki_len = 0;
        for part in parts {
            if let Some((_, length)) = part.split_once(':') {
                mki_len = length.parse().ok().filter(|len| (1..=128).contains(len))?;
            }
            // A lifetime (`2^31` or a number): far beyond any call's packets, so nothing to do.
        }
        Some(Crypto {
            tag,
            suite,
            master,
            mki_len,
        })
    }

    /// A new random key for `suite`, with `tag`.
    pub fn generate(tag: u32, suite: Suite) -> Crypto {
        let mut master = vec![0; suite.master_len()];
        // Without the system's randomness there is no secret to offer: better to fail loudly
        // than to send a guessable key.
        getrandom::fill(&mut master).expect("the system's random number generator");
        Crypto {
            tag,
            suite,
            master,
            mki_len: 0,
        }
    }

    /// A key of `suite` from its master key and salt (DTLS-SRTP's keying material): tag 0,
    /// no MKI.
    pub(crate) fn from_master(suite: Suite, master: Vec<u8>) -> Crypto {
        debug_assert_eq!(master.len(), suite.master_len());
        Crypto {
            tag: 0,
            suite,
            master,
            mki_len: 0,
        }
    }

    /// The attribute's value, as written after `a=crypto:`.
    pub fn attribute(&self) -> String {
        format!(
            "{} {} inline:{}",
            self.tag,
            self.suite,
            STANDARD.encode(&self.master)
        )
    }

    /// Whether two lines carry the same suite and key (a re-offer that keeps the key keeps
    /// the stream's rollover counter).
    pub fn same_key(&self, other: &Crypto) -> bool {
        self.suite == other.suite && self.master == other.master && self.mki_len == other.mki_len
    }
}

/// Why a packet was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Too short, or not RTP or RTCP.
    Malformed,
    /// The tag does not match: another key, or tampered with.
    Authentication,
    /// Seen already, or too old for the replay window.
    Replay,
}

/// The rollover counter, the highest sequence number and the replay window of one source.
#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    roc: u32,
    highest: u16,
    /// Bit n: the packet n below the highest was seen.
    window: u64,
}

impl Source {
    /// The packet's rollover counter and 48-bit index (RFC 3711 section 3.3.1); `None` for a
    /// packet from before the first rollover counter (older than the stream's start).
    fn estimate(&self, seq: u16) -> Option<(u32, u64)> {
        let roc = if self.highest < 32_768 {
            if seq > self.highest && seq - self.highest > 32_768 {
                self.roc.checked_sub(1)?
            } else {
                self.roc
            }
        } else if self.highest - 32_768 > seq {
            self.roc.wrapping_add(1)
        } else {
            self.roc
        };
        Some((roc, (u64::from(roc) << 16) | u64::from(seq)))
    }

    fn index(&self) -> u64 {
        (u64::from(self.roc) << 16) | u64::from(self.highest)
    }

    /// Whether the index is new and within the window.
    fn fresh(&self, index: u64) -> bool {
        let highest = self.index();
        if index > highest {
            return true;
        }
        let behind = highest - index;
        behind < 64 && self.window & (1 << behind) == 0
    }

    fn record(&mut self, roc: u32, seq: u16) {
        let index = (u64::from(roc) << 16) | u64::from(seq);
        let highest = self.index();
        if index > highest {
            let ahead = index - highest;
            self.window = if ahead >= 64 { 0 } else { self.window << ahead };
            self.window |= 1;
            self.roc = roc;
            self.highest = seq;
        } else {
            self.window |= 1 << (highest - index);
        }
    }
}

/// The sources of one direction: a few at most (a phone changes SSRC on a transfer).
#[derive(Debug, Default)]
struct Sources(Vec<Source>);

impl Sources {
    const MAX: usize = 8;

    fn get(&self, ssrc: u32) -> Option<&Source> {
        self.0.iter().find(|source| source.ssrc == ssrc)
    }

    fn entry(&mut self, ssrc: u32, seq: u16) -> &mut Source {
        if let Some(at) = self.0.iter().position(|source| source.ssrc == ssrc) {
            return &mut self.0[at];
        }
        if self.0.len() == Self::MAX {
            self.0.remove(0);
        }
        self.0.push(Source {
            ssrc,
            roc: 0,
            // The first packet counts as new: the window below it is empty.
            highest: seq,
            window: 0,
        });
        self.0.last_mut().expect("just pushed")
    }
}

/// The keys of one kind of packet (RTP or RTCP), derived from the master key.
struct Keys {
    cm: Option<Box<dyn Aes128CmSha1_80Cipher>>,
    gcm: Option<Box<dyn AeadAes128GcmCipher>>,
    auth: [u8; 20],
    salt: [u8; 14],
}

/// The key derivation labels of RFC 3711 section 4.3.1.
const LABELS_RTP: [u8; 3] = [0, 1, 2];
const LABELS_RTCP: [u8; 3] = [3, 4, 5];

impl Keys {
    fn derive(provider: &CryptoProvider, crypto: &Crypto, labels: [u8; 3], sending: bool) -> Keys {
        let srtp = provider.srtp_provider;
        let (master, salt) = crypto.master.split_at(16);
        let mut key = [0; 16];
        derive(srtp, master, salt, labels[0], &mut key);
        let mut auth = [0; 20];
        let mut session_salt = [0; 14];
        let salt_len = crypto.suite.salt_len();
        derive(srtp, master, salt, labels[2], &mut session_salt[..salt_len]);
        let (cm, gcm) = match crypto.suite {
            Suite::AeadAes128Gcm => (
                None,
                Some(srtp.aead_aes_128_gcm().create_cipher(key, sending)),
            ),
            _ => {
                derive(srtp, master, salt, labels[1], &mut auth);
                (
                    Some(srtp.aes_128_cm_sha1_80().create_cipher(key, sending)),
                    None,
                )
            }
        };
        Keys {
            cm,
            gcm,
            auth,
            salt: session_salt,
        }
    }
}

/// The session salt of the GCM suite (12 bytes).
fn gcm_salt(salt: &[u8; 14]) -> [u8; 12] {
    let mut short = [0; 12];
    short.copy_from_slice(&salt[..12]);
    short
}

/// The AES-CM pseudo-random function of RFC 3711 section 4.3.3 with a key derivation rate of 0:
/// the session key `label` asks for, into `out`.
fn derive(srtp: &dyn SrtpProvider, master: &[u8], salt: &[u8], label: u8, out: &mut [u8]) {
    let mut input = [0; 16];
    input[..salt.len()].copy_from_slice(salt);
    input[7] ^= label;
    let mut block = [0; 32];
    for (counter, chunk) in out.chunks_mut(16).enumerate() {
        input[14..].copy_from_slice(&(counter as u16).to_be_bytes());
        srtp.srtp_aes_128_ecb_round(master, &input, &mut block);
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// One direction of SRTP and SRTCP under one master key.
pub struct Srtp {
    suite: Suite,
    mki_len: usize,
    hmac: &'static dyn str0m::crypto::Sha1HmacProvider,
    rtp: Keys,
    rtcp: Keys,
    sources: Sources,
    /// The SRTCP index of the next packet sent (31 bits).
    rtcp_index: u32,
    /// The highest SRTCP index received and the window below it, per source.
    rtcp_sources: Sources,
}

impl fmt::Debug for Srtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Srtp")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

/// The SRTCP index and E flag.
const ENCRYPTED: u32 = 0x8000_0000;

impl Srtp {
    /// A context for the packets `crypto`'s key protects: ours to send (`sending`), or the
    /// far end's to receive.
    pub fn new(crypto: &Crypto, sending: bool) -> Srtp {
        let provider = provider();
        Srtp {
            suite: crypto.suite,
            mki_len: crypto.mki_len,
            hmac: provider.sha1_hmac_provider,
            rtp: Keys::derive(provider, crypto, LABELS_RTP, sending),
            rtcp: Keys::derive(provider, crypto, LABELS_RTCP, sending),
            sources: Sources::default(),
            rtcp_index: 0,
            rtcp_sources: Sources::default(),
        }
    }

    /// Protects an RTP packet into `out`.
    pub fn protect_rtp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), Rejected> {
        let header = header_len(packet).ok_or(Rejected::Malformed)?;
        let (ssrc, seq) = ssrc_seq(packet);
        let source = self.sources.entry(ssrc, seq);
        // Our own packets only go forward; a sender that went back is sent in its own past.
        let (roc, index) = source
            .estimate(seq)
            .unwrap_or((source.roc, (u64::from(source.roc) << 16) | u64::from(seq)));
        source.record(roc, seq);
        out.clear();
        out.extend_from_slice(&packet[..header]);
        let payload = &packet[header..];
        out.resize(header + payload.len(), 0);
        match (&mut self.rtp.cm, &mut self.rtp.gcm) {
            (Some(cipher), _) => {
                let iv = Aes128CmSha1_80::rtp_iv(self.rtp.salt, ssrc, index);
                cipher
                    .encrypt(&iv, payload, &mut out[header..])
                    .map_err(|_| Rejected::Malformed)?;
                let tag = self
                    .hmac
                    .sha1_hmac(&self.rtp.auth, &[&out[..], &roc.to_be_bytes()]);
                out.extend_from_slice(&tag[..self.suite.rtp_tag_len()]);
            }
            (None, Some(cipher)) => {
                out.resize(header + payload.len() + 16, 0);
                let iv = AeadAes128Gcm::rtp_iv(gcm_salt(&self.rtp.salt), ssrc, roc, seq);
                cipher
                    .encrypt(&iv, &packet[..header], payload, &mut out[header..])
                    .map_err(|_| Rejected::Malformed)?;
            }
            (None, None) => return Err(Rejected::Malformed),
        }
        Ok(())
    }

    /// Checks and decrypts an SRTP packet into `out`.
    pub fn unprotect_rtp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), Rejected> {
        let header = header_len(packet).ok_or(Rejected::Malformed)?;
        let tag_len = self.suite.rtp_tag_len();
        if packet.len() < header + tag_len + self.mki_len {
            return Err(Rejected::Malformed);
        }
        let (ssrc, seq) = ssrc_seq(packet);
        let (roc, index) = match self.sources.get(ssrc) {
            Some(source) => {
                let (roc, index) = source.estimate(seq).ok_or(Rejected::Replay)?;
                if !source.fresh(index) {
                    return Err(Rejected::Replay);
                }
                (roc, index)
            }
            None => (0, u64::from(seq)),
        };
        out.clear();
        out.extend_from_slice(&packet[..header]);
        match (&mut self.rtp.cm, &mut self.rtp.gcm) {
            (Some(cipher), _) => {
                let tag_at = packet.len() - tag_len;
                let signed = &packet[..tag_at - self.mki_len];
                let tag = self
                    .hmac
                    .sha1_hmac(&self.rtp.auth, &[signed, &roc.to_be_bytes()]);
                if !equal(&tag[..tag_len], &packet[tag_at..]) {
                    return Err(Rejected::Authentication);
                }
                let payload = &signed[header..];
                out.resize(header + payload.len(), 0);
                let iv = Aes128CmSha1_80::rtp_iv(self.rtp.salt, ssrc, index);
                cipher
                    .decrypt(&iv, payload, &mut out[header..])
                    .map_err(|_| Rejected::Malformed)?;
            }
            (None, Some(cipher)) => {
                let sealed = &packet[header..packet.len() - self.mki_len];
                out.resize(header + sealed.len(), 0);
                let iv = AeadAes128Gcm::rtp_iv(gcm_salt(&self.rtp.salt), ssrc, roc, seq);
                let plain = cipher
                    .decrypt(&iv, &[&packet[..header]], sealed, &mut out[header..])
                    .map_err(|_| Rejected::Authentication)?;
                out.truncate(header + plain);
            }
            (None, None) => return Err(Rejected::Malformed),
        }
        self.sources.entry(ssrc, seq).record(roc, seq);
        Ok(())
    }

    /// Protects a (compound) RTCP packet into `out`.
    pub fn protect_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), Rejected> {
        if packet.len() < 8 {
            return Err(Rejected::Malformed);
        }
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let index = self.rtcp_index;
        self.rtcp_index = (self.rtcp_index + 1) & !ENCRYPTED;
        let e_index = (ENCRYPTED | index).to_be_bytes();
        out.clear();
        out.extend_from_slice(&packet[..8]);
        let body = &packet[8..];
        match (&mut self.rtcp.cm, &mut self.rtcp.gcm) {
            (Some(cipher), _) => {
                out.resize(8 + body.len(), 0);
                let iv = Aes128CmSha1_80::rtp_iv(self.rtcp.salt, ssrc, u64::from(index));
                cipher
                    .encrypt(&iv, body, &mut out[8..])
                    .map_err(|_| Rejected::Malformed)?;
                out.extend_from_slice(&e_index);
                let tag = self.hmac.sha1_hmac(&self.rtcp.auth, &[&out[..]]);
                out.extend_from_slice(&tag[..self.suite.rtcp_tag_len()]);
            }
            (None, Some(cipher)) => {
                out.resize(8 + body.len() + 16, 0);
                let mut aad = [0; 12];
                aad[..8].copy_from_slice(&packet[..8]);
                aad[8..].copy_from_slice(&e_index);
                let iv = AeadAes128Gcm::rtcp_iv(gcm_salt(&self.rtcp.salt), ssrc, index);
                cipher
                    .encrypt(&iv, &aad, body, &mut out[8..])
                    .map_err(|_| Rejected::Malformed)?;
                out.extend_from_slice(&e_index);
            }
            (None, None) => return Err(Rejected::Malformed),
        }
        Ok(())
    }

    /// Checks and (when encrypted) decrypts an SRTCP packet into `out`.
    pub fn unprotect_rtcp(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), Rejected> {
        let tag_len = match self.suite {
            Suite::AeadAes128Gcm => 0, // inside the sealed part
            suite => suite.rtcp_tag_len(),
        };
        let trailer = 4 + self.mki_len + tag_len;
        let minimum = 8 + trailer + if tag_len == 0 { 16 } else { 0 };
        if packet.len() < minimum {
            return Err(Rejected::Malformed);
        }
        let index_at = packet.len() - trailer;
        let e_index = u32::from_be_bytes([
            packet[index_at],
            packet[index_at + 1],
            packet[index_at + 2],
            packet[index_at + 3],
        ]);
        let index = e_index & !ENCRYPTED;
        let encrypted = e_index & ENCRYPTED != 0;
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        // The 31-bit index is tracked as a rollover counter and a 16-bit number.
        let (high, low) = (index >> 16, index as u16);
        if let Some(source) = self.rtcp_sources.get(ssrc)
            && !source.fresh((u64::from(high) << 16) | u64::from(low))
        {
            return Err(Rejected::Replay);
        }
        out.clear();
        match (&mut self.rtcp.cm, &mut self.rtcp.gcm) {
            (Some(cipher), _) => {
                let tag_at = packet.len() - tag_len;
                let signed = &packet[..index_at + 4];
                let tag = self.hmac.sha1_hmac(&self.rtcp.auth, &[signed]);
                if !equal(&tag[..tag_len], &packet[tag_at..]) {
                    return Err(Rejected::Authentication);
                }
                out.extend_from_slice(&packet[..index_at]);
                if encrypted {
                    let iv = Aes128CmSha1_80::rtp_iv(self.rtcp.salt, ssrc, u64::from(index));
                    cipher
                        .decrypt(&iv, &packet[8..index_at], &mut out[8..])
                        .map_err(|_| Rejected::Malformed)?;
                }
            }
            (None, Some(cipher)) => {
                let iv = AeadAes128Gcm::rtcp_iv(gcm_salt(&self.rtcp.salt), ssrc, index);
                let e_bytes = e_index.to_be_bytes();
                if encrypted {
                    let mut aad = [0; 12];
                    aad[..8].copy_from_slice(&packet[..8]);
                    aad[8..].copy_from_slice(&e_bytes);
                    let sealed = &packet[8..index_at];
                    out.extend_from_slice(&packet[..8]);
                    out.resize(8 + sealed.len(), 0);
                    let plain = cipher
                        .decrypt(&iv, &[&aad], sealed, &mut out[8..])
                        .map_err(|_| Rejected::Authentication)?;
                    out.truncate(8 + plain);
                } else {
                    // Authenticated only: the whole packet is associated data.
                    let tag_at = index_at - 16;
                    let mut scratch = [0; 16];
                    cipher
                        .decrypt(
                            &iv,
                            &[&packet[..tag_at], &e_bytes],
                            &packet[tag_at..index_at],
                            &mut scratch,
                        )
                        .map_err(|_| Rejected::Authentication)?;
                    out.extend_from_slice(&packet[..tag_at]);
                }
            }
            (None, None) => return Err(Rejected::Malformed),
        }
        self.rtcp_sources.entry(ssrc, low).record(high, low);
        Ok(())
    }
}

/// The SRTP of one media stream: our key, which we send with, and the far end's, which it
/// sends with.
#[derive(Debug)]
pub struct SessionKeys {
    /// Ours, as given in our description.
    pub local: Crypto,
    /// The far end's.
    pub remote: Crypto,
    /// Protects what we send.
    pub send: Srtp,
    /// Checks what the far end sends.
    pub receive: Srtp,
}

impl SessionKeys {
    /// The contexts for a pair of keys; a context whose key did not change is kept, and with
    /// it the stream's rollover counter and replay window (a re-offer that repeats the key).
    pub fn rekey(current: Option<SessionKeys>, local: Crypto, remote: Crypto) -> SessionKeys {
        let (send, receive) = match current {
            Some(current) => (
                if current.local.same_key(&local) {
                    current.send
                } else {
                    Srtp::new(&local, true)
                },
                if current.remote.same_key(&remote) {
                    current.receive
                } else {
                    Srtp::new(&remote, false)
                },
            ),
            None => (Srtp::new(&local, true), Srtp::new(&remote, false)),
        };
        SessionKeys {
            local,
            remote,
            send,
            receive,
        }
    }

    /// Our key for answering an offer of `remote`'s: the one in use if the suite stays (so
    /// that the far end's context and rollover counter stay), else a new one; with the offer's
    /// tag.
    pub fn answer_key(current: Option<&SessionKeys>, remote: &Crypto) -> Crypto {
        let mut local = match current {
            Some(current) if current.local.suite == remote.suite => current.local.clone(),
            _ => Crypto::generate(remote.tag, remote.suite),
        };
        local.tag = remote.tag;
        local
    }
}

/// The crypto provider of the WebRTC stack (installed by `media::init_crypto`, or made here).
fn provider() -> &'static CryptoProvider {
    static PROVIDER: std::sync::OnceLock<CryptoProvider> = std::sync::OnceLock::new();
    PROVIDER.get_or_init(str0m::crypto::from_feature_flags)
}

/// The length of an RTP packet's header (fixed part, CSRCs and extension).
fn header_len(packet: &[u8]) -> Option<usize> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= packet.len()).then_some(len)
}

fn ssrc_seq(packet: &[u8]) -> (u32, u16) {
    (
        u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        u16::from_be_bytes([packet[2], packet[3]]),
    )
}

/// Compares tags in time independent of where they differ.
fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
