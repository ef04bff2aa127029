//! DTLS-SRTP toward SIP endpoints (RFC 5763, RFC 5764), sans-IO: the SIP side offers
//! `UDP/TLS/RTP/SAVP` with the fingerprint of its certificate, we answer with ours, and a DTLS
//! handshake on the media ports yields the SRTP keys of both directions.
//!
//! There is no ICE and no BUNDLE toward SIP: each m-line has its own association on its RTP
//! port, and a second one on its RTCP port when RTCP is not multiplexed (RFC 5764 section 4.1:
//! SRTCP on that port is keyed by its own handshake, as softphones do). The handshake is the
//! WebRTC stack's sans-IO DTLS (`rtc-dtls`, on the same AWS-LC crypto as the browser leg),
//! which takes RSA certificates as well as ECDSA ones: desk phones and softphones often have
//! RSA.
//!
//! The peer is authenticated by its certificate's SHA-256 fingerprint from the SDP, nothing
//! else (self-signed certificates, RFC 5763 section 5). Keys never leave this module except as
//! [`SessionKeys`], whose `Debug` shows none.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::BytesMut;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::crypto_provider::{HashAlgorithm, RTCCryptoProvider};
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;

use crate::error::{Error, Result};
use crate::srtp::{Crypto, SessionKeys, Suite};

/// The label of RFC 5764 section 4.2 for the SRTP keying material.
const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// Whether a datagram is DTLS (RFC 7983: first byte 20 to 63).
pub fn is_dtls(data: &[u8]) -> bool {
    data.first().is_some_and(|byte| (20..=63).contains(byte))
}

/// A certificate fingerprint from SDP (`a=fingerprint`, RFC 8122): only SHA-256 is taken.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<u8>);

impl Fingerprint {
    /// Reads the attribute's value (`sha-256 AB:CD:...`); `None` for another hash function or a
    /// malformed value.
    pub fn parse(value: &str) -> Option<Fingerprint> {
        let (algorithm, hex) = value.trim().split_once(' ')?;
        if !algorithm.eq_ignore_ascii_case("sha-256") {
            return None;
        }
        let bytes = hex
            .trim()
            .split(':')
            .map(|byte| {
                (byte.len() == 2)
                    .then(|| u8::from_str_radix(byte, 16).ok())
                    .flatten()
            })
            .collect::<Option<Vec<u8>>>()?;
        (bytes.len() == 32).then_some(Fingerprint(bytes))
    }

    /// The attribute's value, as written after `a=fingerprint:`.
    pub fn attribute(&self) -> String {
        let hex: Vec<String> = self.0.iter().map(|byte| format!("{byte:02X}")).collect();
        format!("sha-256 {}", hex.join(":"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.attribute())
    }
}

/// Which side starts the handshake (`a=setup`, RFC 4145): ours, as the answer says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// We connect (the DTLS client): the answer to `actpass` or `passive` (RFC 5763 section 5
    /// says the answerer should be active).
    Active,
    /// The far end connects (the DTLS server): the answer to `active`.
    Passive,
    /// Either, as the answer chooses: what our offers say (RFC 5763 section 5).
    ActPass,
}

impl Setup {
    /// Our role in answer to the offer's `a=setup` (none is `active` for the offerer, RFC 4145
    /// section 4); `None` for a value we cannot answer (`holdconn`, unknown words).
    pub fn answering(offered: Option<&str>) -> Option<Setup> {
        match offered.map(str::trim) {
            None => Some(Setup::Passive),
            Some(value) if value.eq_ignore_ascii_case("actpass") => Some(Setup::Active),
            Some(value) if value.eq_ignore_ascii_case("passive") => Some(Setup::Active),
            Some(value) if value.eq_ignore_ascii_case("active") => Some(Setup::Passive),
            Some(_) => None,
        }
    }

    /// The attribute's value.
    pub fn attribute(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
        }
    }
}

/// The process's DTLS certificate toward SIP and its fingerprint: made once (a certificate per
/// call would cost a key generation per call, and the fingerprint is what authenticates us).
struct Identity {
    provider: Arc<dyn RTCCryptoProvider>,
    certificate: Certificate,
    fingerprint: Fingerprint,
}

fn identity() -> Result<&'static Identity> {
    static IDENTITY: OnceLock<std::result::Result<Identity, String>> = OnceLock::new();
    IDENTITY
        .get_or_init(|| {
            let provider =
                rtc_dtls::crypto_provider::default_provider().map_err(|error| error.to_string())?;
            let certificate = Certificate::generate_self_signed(
                vec!["sylkrtc-gateway".to_owned()],
                provider.crypto(),
            )
            .map_err(|error| error.to_string())?;
            let der = certificate
                .certificate
                .first()
                .ok_or("no certificate was made")?;
            let hash = provider
                .crypto()
                .hash(HashAlgorithm::Sha256, der)
                .map_err(|error| error.to_string())?;
            Ok(Identity {
                provider,
                certificate,
                fingerprint: Fingerprint(hash),
            })
        })
        .as_ref()
        .map_err(|error| Error::Dtls(format!("no DTLS certificate: {error}")))
}

/// The fingerprint of our certificate, for `a=fingerprint` in our answers.
pub fn local_fingerprint() -> Result<Fingerprint> {
    Ok(identity()?.fingerprint.clone())
}

/// Which port of the m-line a datagram or an association is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The RTP port (and RTCP with rtcp-mux).
    Rtp,
    /// The RTCP port.
    Rtcp,
}

/// One handshake, on one port.
struct Association {
    endpoint: Endpoint,
    /// The far end's address, fixed for the association (the endpoint keys its state by it;
    /// datagrams from a source the phone moved to still reach it).
    remote: SocketAddr,
    done: bool,
}

/// What a datagram brought.
#[derive(Debug)]
pub enum Progress {
    /// Nothing new (a handshake message, a retransmission, an alert that ends nothing).
    Nothing,
    /// The handshake on this component finished: its SRTP keys, ours to send with and the far
    /// end's to check with.
    Keys(Box<SessionKeys>),
}

/// The DTLS-SRTP of one m-line toward a SIP endpoint.
pub struct DtlsSrtp {
    setup: Setup,
    remote_fingerprint: Fingerprint,
    rtp: Association,
    rtcp: Option<Association>,
    /// Datagrams to send, with their port.
    transmits: VecDeque<(Component, SocketAddr, Vec<u8>)>,
}

impl fmt::Debug for DtlsSrtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsSrtp")
            .field("setup", &self.setup)
            .field("rtp_done", &self.rtp.done)
            .field("rtcp_done", &self.rtcp.as_ref().map(|rtcp| rtcp.done))
            .finish_non_exhaustive()
    }
}

impl DtlsSrtp {
    /// The associations for an m-line whose far end has `remote_fingerprint` and receives at
    /// `rtp` (and `rtcp`, without rtcp-mux); as `Setup::Active` the handshakes start now.
    pub fn new(
        now: Instant,
        setup: Setup,
        remote_fingerprint: Fingerprint,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    ) -> Result<DtlsSrtp> {
        if setup == Setup::ActPass {
            return Err(Error::Dtls(
                "no handshake before the answer says who starts it".to_owned(),
            ));
        }
        let config = Arc::new(handshake_config(setup, &remote_fingerprint)?);
        let mut dtls = DtlsSrtp {
            setup,
            remote_fingerprint,
            rtp: Association::new(now, setup, rtp, &config)?,
            rtcp: rtcp
                .map(|rtcp| Association::new(now, setup, rtcp, &config))
                .transpose()?,
            transmits: VecDeque::new(),
        };
        dtls.collect();
        Ok(dtls)
    }

    /// Whether a new description with `fingerprint` and our role `setup` keeps these
    /// associations (RFC 5763 section 6.7.1: same fingerprint, same roles).
    pub fn keeps(&self, setup: Setup, fingerprint: &Fingerprint) -> bool {
        self.setup == setup && self.remote_fingerprint == *fingerprint
    }

    /// A DTLS datagram from the far end on `component`: the keys when it completes that
    /// component's handshake; an error when the RTP port's handshake fails (a wrong
    /// fingerprint, an alert). The RTCP port's handshake failing only ends that association:
    /// SRTCP is then not sent there, and the call goes on.
    pub fn handle(&mut self, now: Instant, component: Component, data: &[u8]) -> Result<Progress> {
        let association = match component {
            Component::Rtp => &mut self.rtp,
            Component::Rtcp => match &mut self.rtcp {
                Some(rtcp) => rtcp,
                None => return Ok(Progress::Nothing),
            },
        };
        let outcome = association.read(now, data);
        self.collect();
        match (outcome, component) {
            (Err(_), Component::Rtcp) => {
                self.rtcp = None;
                Ok(Progress::Nothing)
            }
            (outcome, _) => outcome,
        }
    }

    /// Handshake retransmissions that are due; an error when the far end never answered on the
    /// RTP port (one that never answers on the RTCP port only loses SRTCP there).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<()> {
        let outcome = self.rtp.handle_timeout(now);
        if let Some(rtcp) = &mut self.rtcp
            && rtcp.handle_timeout(now).is_err()
        {
            self.rtcp = None;
        }
        self.collect();
        outcome
            .map_err(|error| Error::Dtls(format!("no DTLS handshake with the SIP side: {error}")))
    }

    /// When [`DtlsSrtp::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        std::iter::once(&self.rtp)
            .chain(self.rtcp.as_ref())
            .filter_map(|association| association.endpoint.poll_timeout(&association.remote))
            .min()
    }

    /// The next datagram to send: its port, where to, and what.
    pub fn poll_transmit(&mut self) -> Option<(Component, SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// Whether every handshake finished.
    pub fn is_done(&self) -> bool {
        self.rtp.done && self.rtcp.as_ref().is_none_or(|rtcp| rtcp.done)
    }

    /// Ends the associations (close_notify).
    pub fn close(&mut self, now: Instant) {
        for association in std::iter::once(&mut self.rtp).chain(self.rtcp.as_mut()) {
            let _ = association.endpoint.close(now);
        }
        self.collect();
    }

    /// Moves the endpoints' datagrams to the queue.
    fn collect(&mut self) {
        for (component, association) in std::iter::once((Component::Rtp, &mut self.rtp))
            .chain(self.rtcp.as_mut().map(|rtcp| (Component::Rtcp, rtcp)))
        {
            while let Some(message) = association.endpoint.poll_transmit() {
                self.transmits.push_back((
                    component,
                    message.transport.peer_addr,
                    message.message.to_vec(),
                ));
            }
        }
    }
}

impl Association {
    fn new(
        now: Instant,
        setup: Setup,
        remote: SocketAddr,
        config: &Arc<HandshakeConfig>,
    ) -> Result<Association> {
        let local: SocketAddr = ([0, 0, 0, 0], 0).into();
        let mut endpoint = match setup {
            Setup::Passive => Endpoint::new(local, TransportProtocol::UDP, Some(config.clone())),
            Setup::Active | Setup::ActPass => Endpoint::new(local, TransportProtocol::UDP, None),
        };
        if setup == Setup::Active {
            endpoint
                .connect(now, remote, config.clone(), None)
                .map_err(|error| Error::Dtls(format!("DTLS toward {remote}: {error}")))?;
        }
        Ok(Association {
            endpoint,
            remote,
            done: false,
        })
    }

    /// A datagram for this association.
    fn read(&mut self, now: Instant, data: &[u8]) -> Result<Progress> {
        let events = self
            .endpoint
            .read(now, self.remote, None, BytesMut::from(data))
            .map_err(|error| Error::Dtls(format!("handshake with the SIP side: {error}")))?;
        let mut progress = Progress::Nothing;
        for event in events {
            match event {
                EndpointEvent::HandshakeComplete if !self.done => {
                    self.done = true;
                    progress = Progress::Keys(Box::new(self.keys()?));
                }
                EndpointEvent::PeerClosed => {
                    return Err(Error::Dtls(
                        "the SIP side closed its DTLS association".to_owned(),
                    ));
                }
                _ => {}
            }
        }
        Ok(progress)
    }

    /// Retransmits the handshake's last flight when it is due.
    fn handle_timeout(&mut self, now: Instant) -> rtc_shared::error::Result<()> {
        if self.endpoint.poll_timeout(&self.remote).is_some() {
            self.endpoint.handle_timeout(self.remote, now)?;
        }
        Ok(())
    }

    /// The SRTP keys of the finished handshake (RFC 5764 section 4.2).
    fn keys(&self) -> Result<SessionKeys> {
        let state = self
            .endpoint
            .get_connection_state(self.remote)
            .ok_or_else(|| Error::Dtls("the DTLS association is gone".to_owned()))?;
        let suite = match state.srtp_protection_profile() {
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => Suite::AesCm128HmacSha1_80,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32 => Suite::AesCm128HmacSha1_32,
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Suite::AeadAes128Gcm,
            other => {
                return Err(Error::Dtls(format!(
                    "the SIP side chose SRTP profile {other:?}, which the gateway does not take"
                )));
            }
        };
        let (key_len, salt_len) = (16, suite.master_len() - 16);
        let material = state
            .export_keying_material(EXPORTER_LABEL, &[], 2 * (key_len + salt_len))
            .map_err(|error| Error::Dtls(format!("SRTP keys: {error}")))?;
        let material: &[u8] = material.as_ref();
        // client key, server key, client salt, server salt.
        let (keys, salts) = material.split_at(2 * key_len);
        let client = [&keys[..key_len], &salts[..salt_len]].concat();
        let server = [&keys[key_len..], &salts[salt_len..]].concat();
        let (local, remote) = if state.is_client() {
            (client, server)
        } else {
            (server, client)
        };
        Ok(SessionKeys::rekey(
            None,
            Crypto::from_master(suite, local),
            Crypto::from_master(suite, remote),
        ))
    }
}

/// The handshake's settings: our certificate (asked for by the server, RFC 5763 section 5),
/// the SRTP profiles we take, and the far end's fingerprint as the only check of its
/// certificate.
fn handshake_config(setup: Setup, remote: &Fingerprint) -> Result<HandshakeConfig> {
    config_with(setup, remote, &identity()?.certificate)
}

fn config_with(
    setup: Setup,
    remote: &Fingerprint,
    certificate: &Certificate,
) -> Result<HandshakeConfig> {
    let identity = identity()?;
    let expected = remote.0.clone();
    let provider = identity.provider.clone();
    let verify: rtc_dtls::config::VerifyPeerCertificateFn = Arc::new(move |certificates, _| {
        let Some(der) = certificates.first() else {
            return Err(rtc_shared::error::Error::ErrNonCertificate);
        };
        let hash = provider
            .crypto()
            .hash(HashAlgorithm::Sha256, der)
            .map_err(|error| rtc_shared::error::Error::Crypto(error.to_string()))?;
        if rtc_dtls::crypto_provider::constant_time_eq(&hash, &expected) {
            Ok(())
        } else {
            Err(rtc_shared::error::Error::ErrNoMatchingCertificateFingerprint)
        }
    });
    ConfigBuilder::default()
        .with_crypto_provider(identity.provider.clone())
        .with_certificates(vec![certificate.clone()])
        .with_srtp_protection_profiles(vec![
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32,
        ])
        .with_client_auth(ClientAuthType::RequireAnyClientCert)
        .with_insecure_skip_verify(true)
        .with_verify_peer_certificate(Some(verify))
        // Phones with an older TLS library have no extended master secret.
        .with_extended_master_secret(ExtendedMasterSecretType::Request)
        .build(setup == Setup::Active, None)
        .map_err(|error| Error::Dtls(format!("DTLS settings: {error}")))
}

#[cfg(test)]
pub(crate) mod tests;
