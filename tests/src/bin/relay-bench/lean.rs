//! The generator's lean audio peer: what a browser puts on the wire for an audio call, without
//! a WebRTC stack's per-packet bookkeeping, so that the generator costs less per packet than
//! the systems it measures.
//!
//! On the wire it is a browser's audio call: an offer with ICE credentials, a host candidate,
//! the DTLS fingerprint and `actpass`; ICE checks as the controlling agent with USE-CANDIDATE,
//! every 50 ms until one is answered and then every 2.5 s (consent, RFC 7675); answers to the
//! system's own checks; the DTLS-SRTP handshake in the role the answer gives, once the pair is
//! up; SRTP audio and an SRTCP receiver report every second. It is built from the gateway's
//! own SIP-side DTLS-SRTP and SRTP (`media::dtls`, `media::srtp`, which offer the profiles
//! desk phones take, AES-CM and AES-128-GCM) and str0m's STUN messages. What it leaves out is what a relay does not
//! see: no jitter buffer, no NACK or resend history, no bandwidth estimation.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use media::dtls::{Component, DtlsSrtp, Fingerprint, Progress, Setup};
use media::rtp::{RtpHeader, RtpView, is_rtcp, write_rtp};
use media::srtp::SessionKeys;
use mio::net::UdpSocket;
use str0m::ice::{StunMessage, TransId};

/// ICE checks before one is answered, and consent checks after.
const CHECK: Duration = Duration::from_millis(50);
const CONSENT: Duration = Duration::from_millis(2500);
const REPORT: Duration = Duration::from_secs(1);

/// The far end as its answer describes it.
struct Remote {
    ufrag: String,
    pwd: String,
    addr: SocketAddr,
    setup: Setup,
    fingerprint: Fingerprint,
}

/// One peer's signalling and media state; its socket is the caller's.
pub(crate) struct Lean {
    ufrag: String,
    pwd: String,
    tie_breaker: u64,
    pub(crate) ssrc: u32,
    remote: Option<Remote>,
    /// The system answered one of our checks: the pair is up.
    ice_up: bool,
    /// The handshake, begun once the ICE pair is up (a system drops DTLS from an address no
    /// check has come from, and the first flight would then wait a whole retransmission).
    dtls: Option<DtlsSrtp>,
    /// DTLS that came before the pair was up here.
    early: Vec<Vec<u8>>,
    keys: Option<SessionKeys>,
    next_check: Instant,
    next_report: Instant,
    out: Vec<u8>,
    plain: Vec<u8>,
}

impl Lean {
    /// A peer bound at `local`, and its offer.
    pub(crate) fn new(local: SocketAddr) -> std::io::Result<(Lean, String)> {
        let random = uuid::Uuid::new_v4().as_u128();
        let ufrag = format!("{:08x}", random as u32);
        let pwd = format!("{:024x}", random >> 32);
        let ssrc = (random >> 96) as u32 | 1;
        let fingerprint = media::dtls::local_fingerprint()
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        let offer = format!(
            "v=0\r\n\
             o=- {session} 2 IN IP4 0.0.0.0\r\n\
             s=-\r\n\
             t=0 0\r\n\
             a=group:BUNDLE 0\r\n\
             a=msid-semantic: WMS\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n\
             c=IN IP4 0.0.0.0\r\n\
             a=rtcp:9 IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:{ufrag}\r\n\
             a=ice-pwd:{pwd}\r\n\
             a=fingerprint:{fingerprint}\r\n\
             a=setup:actpass\r\n\
             a=mid:0\r\n\
             a=sendrecv\r\n\
             a=msid:- audio0\r\n\
             a=rtcp-mux\r\n\
             a=rtpmap:0 PCMU/8000\r\n\
             a=ssrc:{ssrc} cname:{ufrag}\r\n\
             a=candidate:1 1 udp 2130706431 {ip} {port} typ host\r\n\
             a=end-of-candidates\r\n",
            session = random as u64 >> 2,
            fingerprint = fingerprint.attribute(),
            ip = local.ip(),
            port = local.port(),
        );
        let now = Instant::now();
        Ok((
            Lean {
                ufrag,
                pwd,
                tie_breaker: (random >> 40) as u64,
                ssrc,
                remote: None,
                ice_up: false,
                dtls: None,
                early: Vec::new(),
                keys: None,
                next_check: now,
                next_report: now + REPORT,
                out: Vec::with_capacity(1500),
                plain: Vec::with_capacity(1500),
            },
            offer,
        ))
    }

    /// Takes the system's answer: its credentials, candidate, fingerprint and DTLS role.
    pub(crate) fn accept(&mut self, now: Instant, sdp: &str) -> Result<(), String> {
        let attribute = |name: &str| {
            sdp.lines()
                .find_map(|line| line.trim().strip_prefix(name))
                .map(str::trim)
        };
        let ufrag = attribute("a=ice-ufrag:").ok_or("no ice-ufrag in the answer")?;
        let pwd = attribute("a=ice-pwd:").ok_or("no ice-pwd in the answer")?;
        let fingerprint = attribute("a=fingerprint:")
            .and_then(Fingerprint::parse)
            .ok_or("no SHA-256 fingerprint in the answer")?;
        let setup = Setup::answering(attribute("a=setup:")).ok_or("no DTLS role")?;
        let addr = sdp
            .lines()
            .filter_map(|line| line.trim().strip_prefix("a=candidate:"))
            .find_map(|candidate| {
                let fields: Vec<&str> = candidate.split_whitespace().collect();
                let udp = fields.get(2)?.eq_ignore_ascii_case("udp");
                let addr =
                    SocketAddr::new(fields.get(4)?.parse().ok()?, fields.get(5)?.parse().ok()?);
                (fields.get(1) == Some(&"1") && udp && addr.is_ipv4()).then_some(addr)
            })
            .ok_or("no IPv4 UDP candidate in the answer")?;
        self.remote = Some(Remote {
            ufrag: ufrag.to_owned(),
            pwd: pwd.to_owned(),
            addr,
            setup,
            fingerprint,
        });
        self.next_check = now;
        Ok(())
    }

    /// The pair is up: the handshake starts, with what came early.
    fn start_dtls(&mut self, now: Instant, socket: &UdpSocket) {
        let Some(remote) = &self.remote else {
            return;
        };
        if self.dtls.is_some() {
            return;
        }
        match DtlsSrtp::new(
            now,
            remote.setup,
            remote.fingerprint.clone(),
            remote.addr,
            None,
        ) {
            Ok(mut dtls) => {
                for data in self.early.drain(..) {
                    if let Ok(Progress::Keys(keys)) = dtls.handle(now, Component::Rtp, &data) {
                        self.keys = Some(*keys);
                    }
                }
                self.dtls = Some(dtls);
                self.flush(socket);
            }
            Err(error) => eprintln!("a lean peer's DTLS did not start: {error}"),
        }
    }

    /// SRTP is keyed: media flows.
    pub(crate) fn connected(&self) -> bool {
        self.keys.is_some()
    }

    /// A datagram from the system: the payload of an RTP packet it brought, if any.
    pub(crate) fn handle(
        &mut self,
        now: Instant,
        data: &[u8],
        source: SocketAddr,
        socket: &UdpSocket,
    ) -> Option<&[u8]> {
        match data.first()? {
            0..=1 => self.stun(now, data, source, socket),
            20..=63 => {
                let Some(dtls) = self.dtls.as_mut() else {
                    if self.early.len() < 8 {
                        self.early.push(data.to_vec());
                    }
                    return None;
                };
                if let Ok(Progress::Keys(keys)) = dtls.handle(now, Component::Rtp, data) {
                    self.keys = Some(*keys);
                }
                self.flush(socket);
            }
            128..=191 if !is_rtcp(data) => {
                let keys = self.keys.as_mut()?;
                keys.receive.unprotect_rtp(data, &mut self.plain).ok()?;
                return RtpView::parse(&self.plain).map(|packet| packet.payload());
            }
            _ => {}
        }
        None
    }

    fn stun(&mut self, now: Instant, data: &[u8], source: SocketAddr, socket: &UdpSocket) {
        let Ok(message) = StunMessage::parse(data) else {
            return;
        };
        if message.is_binding_request() {
            if !message.verify(self.pwd.as_bytes(), hmac) {
                return;
            }
            let reply = StunMessage::binding_reply(message.trans_id(), source);
            let mut buffer = [0u8; 256];
            if let Ok(length) = reply.to_bytes(Some(self.pwd.as_bytes()), &mut buffer, hmac) {
                let _ = socket.send_to(&buffer[..length], source);
            }
        } else if message.is_successful_binding_response() {
            self.ice_up = true;
            self.start_dtls(now, socket);
        }
    }

    /// When the peer next has something to do (a check, a report, a DTLS retransmission).
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.remote.as_ref()?;
        let dtls = self.dtls.as_ref().and_then(DtlsSrtp::poll_timeout);
        let report = self.keys.as_ref().map(|_| self.next_report);
        [Some(self.next_check), dtls, report]
            .into_iter()
            .flatten()
            .min()
    }

    /// Does what is due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant, socket: &UdpSocket) {
        let Some(remote) = &self.remote else {
            return;
        };
        let destination = remote.addr;
        if self.next_check <= now {
            let username = format!("{}:{}", remote.ufrag, self.ufrag);
            let request = StunMessage::binding_request(
                &username,
                TransId::new(),
                true,
                self.tie_breaker,
                2_130_706_431,
                true,
            );
            let mut buffer = [0u8; 256];
            if let Ok(length) = request.to_bytes(Some(remote.pwd.as_bytes()), &mut buffer, hmac) {
                let _ = socket.send_to(&buffer[..length], remote.addr);
            }
            self.next_check = now + if self.ice_up { CONSENT } else { CHECK };
        }
        if let Some(dtls) = &mut self.dtls
            && dtls.poll_timeout().is_some_and(|at| at <= now)
        {
            let _ = dtls.handle_timeout(now);
            self.flush(socket);
        }
        if self.next_report <= now
            && let Some(keys) = &mut self.keys
        {
            self.next_report = now + REPORT;
            media::rtp::write_report(&mut self.plain, self.ssrc, None, None, &self.ufrag);
            if keys.send.protect_rtcp(&self.plain, &mut self.out).is_ok() {
                let _ = socket.send_to(&self.out, destination);
            }
        }
    }

    /// Sends one RTP packet; whether it went out.
    pub(crate) fn send(&mut self, header: RtpHeader, payload: &[u8], socket: &UdpSocket) -> bool {
        let (Some(keys), Some(remote)) = (&mut self.keys, &self.remote) else {
            return false;
        };
        write_rtp(&mut self.plain, header, payload);
        if keys.send.protect_rtp(&self.plain, &mut self.out).is_err() {
            return false;
        }
        socket.send_to(&self.out, remote.addr).is_ok()
    }

    /// Sends the handshake's datagrams.
    fn flush(&mut self, socket: &UdpSocket) {
        let Some(dtls) = &mut self.dtls else {
            return;
        };
        while let Some((_, destination, data)) = dtls.poll_transmit() {
            let _ = socket.send_to(&data, destination);
        }
    }
}

/// HMAC-SHA1 for STUN's MESSAGE-INTEGRITY, from the WebRTC stack's crypto provider.
fn hmac(key: &[u8], payloads: &[&[u8]]) -> [u8; 20] {
    static PROVIDER: std::sync::OnceLock<str0m::crypto::CryptoProvider> =
        std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(str0m::crypto::from_feature_flags)
        .sha1_hmac_provider
        .sha1_hmac(key, payloads)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use str0m::change::SdpOffer;
    use str0m::net::{Protocol, Receive};
    use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

    use super::*;

    /// A lean peer calls a full WebRTC stack (str0m, full ICE, as a browser's far end would
    /// be) over loopback: ICE and DTLS come up both ways, its SRTP packets are read there, and
    /// what the stack sends back is read by the lean peer.
    #[test]
    fn a_lean_peer_connects_to_a_webrtc_stack_and_its_audio_is_heard() {
        let lean_socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let (mut lean, offer) = Lean::new(lean_socket.local_addr().unwrap()).unwrap();
        let stack_socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        stack_socket.set_nonblocking(true).unwrap();
        let stack_addr = stack_socket.local_addr().unwrap();
        let mut config = RtcConfig::new().clear_codecs().set_rtp_mode(true);
        config.codec_config().enable_pcmu(true, false);
        let mut rtc: Rtc = config.build(Instant::now());
        rtc.add_local_candidate(Candidate::host(stack_addr, "udp").unwrap());
        let answer = rtc
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
            .unwrap();
        lean.accept(Instant::now(), &answer.to_sdp_string())
            .unwrap();
        let mid = str0m::media::Mid::from("0");
        let (mut stack_up, mut heard, mut back, mut seq) = (false, Vec::new(), Vec::new(), 1u16);
        let mut buffer = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(10);
        while heard.len() < 3 || back.len() < 3 {
            assert!(
                Instant::now() < deadline,
                "up {stack_up}/{} heard {heard:?}",
                lean.connected()
            );
            let now = Instant::now();
            lean.handle_timeout(now, &lean_socket);
            let _ = rtc.handle_input(Input::Timeout(now));
            while let Ok(output) = rtc.poll_output() {
                match output {
                    Output::Transmit(send) => {
                        let _ = stack_socket.send_to(&send.contents, send.destination);
                    }
                    Output::Event(Event::Connected) => stack_up = true,
                    Output::Event(Event::RtpPacket(packet)) => {
                        heard.push(packet.payload[0]);
                        // Sent back on the stack's own stream, as a relay would.
                        let mut api = rtc.direct_api();
                        if let Some(stream) = api.stream_tx_by_mid(mid, None) {
                            stream.write_rtp(str0m::rtp::RtpWrite::new(
                                packet.header.payload_type,
                                packet.seq_no,
                                packet.header.timestamp,
                                now,
                                &packet.payload[..],
                            ));
                        }
                    }
                    Output::Event(_) => {}
                    Output::Timeout(_) => break,
                }
            }
            while let Ok((length, source)) = lean_socket.recv_from(&mut buffer) {
                if let Some(payload) =
                    lean.handle(Instant::now(), &buffer[..length], source, &lean_socket)
                {
                    back.push(payload[0]);
                }
            }
            while let Ok((length, source)) = stack_socket.recv_from(&mut buffer) {
                let receive =
                    Receive::new(Protocol::Udp, source, stack_addr, &buffer[..length]).unwrap();
                let _ = rtc.handle_input(Input::Receive(Instant::now(), receive));
            }
            if stack_up && lean.connected() {
                let header = RtpHeader {
                    pt: 0,
                    marker: false,
                    seq,
                    timestamp: u32::from(seq) * 160,
                    ssrc: lean.ssrc,
                };
                assert!(lean.send(header, &[seq as u8; 160], &lean_socket));
                seq += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(heard[..3], [1, 2, 3]);
        assert_eq!(back[..3], [1, 2, 3]);
    }
}
