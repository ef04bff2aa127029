//! A browser stand-in for the tests: a WebRTC peer on webrtc-rs (an implementation independent
//! of the gateway's str0m) that offers or answers like a browser, sends a tone or RFC 4733
//! events, and keeps every RTP packet it receives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_G722, MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU, MIME_TYPE_TELEPHONE_EVENT,
    MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceCandidateInit,
    RTCIceGatheringState, RTCPeerConnectionState,
};

use crate::audio::{Tone, ulaw_encode};

/// An audio codec the stand-in can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// opus/48000/2 (sending needs an encoder: see [`crate::opus`]).
    Opus,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722.
    G722,
}

impl AudioCodec {
    fn parameters(self) -> (&'static str, u32, u16, &'static str, u8) {
        match self {
            AudioCodec::Opus => (MIME_TYPE_OPUS, 48_000, 2, "minptime=10;useinbandfec=1", 111),
            AudioCodec::Pcmu => (MIME_TYPE_PCMU, 8_000, 0, "", 0),
            AudioCodec::Pcma => (MIME_TYPE_PCMA, 8_000, 0, "", 8),
            AudioCodec::G722 => (MIME_TYPE_G722, 8_000, 0, "", 9),
        }
    }

    /// The name in SDP.
    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::Opus => "opus",
            AudioCodec::Pcmu => "PCMU",
            AudioCodec::Pcma => "PCMA",
            AudioCodec::G722 => "G722",
        }
    }
}

struct Handler {
    state: watch::Sender<RTCPeerConnectionState>,
    gathered: Arc<Notify>,
    received: Arc<Mutex<Vec<rtp::Packet>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.notify_one();
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let received = self.received.clone();
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event
                    && let Ok(mut received) = received.lock()
                {
                    received.push(packet);
                }
            }
        });
    }
}

/// The stand-in browser.
pub struct Browser {
    peer: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    state: watch::Receiver<RTCPeerConnectionState>,
    gathered: Arc<Notify>,
    received: Arc<Mutex<Vec<rtp::Packet>>>,
    sender: Option<JoinHandle<()>>,
    /// The next sequence number and timestamp of what we send.
    position: Arc<Mutex<(u16, u32)>>,
    /// Every how many packets one is lost on the way (its sequence number skipped); 0: none.
    lose_every: Arc<std::sync::atomic::AtomicU16>,
}

impl Browser {
    /// A peer with one audio track and these codecs (first preferred), plus telephone-event at
    /// 48 and 8 kHz as browsers offer it.
    pub async fn new(codecs: &[AudioCodec]) -> Browser {
        let mut engine = MediaEngine::default();
        for codec in codecs {
            let (mime, rate, channels, fmtp, pt) = codec.parameters();
            engine
                .register_codec(
                    codec_parameters(mime, rate, channels, fmtp, pt),
                    RtpCodecKind::Audio,
                )
                .expect("codec registers");
        }
        for (rate, pt) in [(48_000, 110), (8_000, 126)] {
            engine
                .register_codec(
                    codec_parameters(MIME_TYPE_TELEPHONE_EVENT, rate, 0, "0-16", pt),
                    RtpCodecKind::Audio,
                )
                .expect("telephone-event registers");
        }
        let registry = register_default_interceptors(Registry::new(), &mut engine)
            .expect("interceptors register");
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let gathered = Arc::new(Notify::new());
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(Handler {
            state: state_tx,
            gathered: gathered.clone(),
            received: received.clone(),
        });
        // No mDNS: the tests run where loopback is the only interface, and nothing may leave it.
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .build();
        let peer = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .expect("a peer connection");
        let ssrc = rand_ssrc();
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "stream".to_owned(),
            "audio".to_owned(),
            "audio".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                ..Default::default()
            }],
        )));
        peer.add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .expect("the track is added");
        Browser {
            peer: Arc::new(peer),
            track,
            ssrc,
            state,
            gathered,
            received,
            sender: None,
            position: Arc::new(Mutex::new((1000, 0))),
            lose_every: Arc::new(std::sync::atomic::AtomicU16::new(0)),
        }
    }

    async fn local_sdp(&self) -> String {
        // Candidates come in the description once gathering is over (no trickle needed).
        let _ = tokio::time::timeout(Duration::from_secs(5), self.gathered.notified()).await;
        self.peer
            .local_description()
            .await
            .map(|description| description.sdp)
            .expect("a local description")
    }

    /// Makes an offer (with its candidates).
    pub async fn offer(&self) -> String {
        let offer = self.peer.create_offer(None).await.expect("an offer");
        self.peer
            .set_local_description(offer)
            .await
            .expect("the offer applies");
        self.local_sdp().await
    }

    /// A new offer mid-call whose streams say `direction` (`sendonly` to put the far end on
    /// hold), not applied here: the test looks at what the far end makes of it, and the peer
    /// goes on as it was.
    pub async fn offer_with_direction(&self, direction: &str) -> String {
        let offer = self.peer.create_offer(None).await.expect("an offer");
        offer.sdp.replace("a=sendrecv", &format!("a={direction}"))
    }

    /// Applies the answer to our offer.
    pub async fn accept_answer(&self, sdp: &str) {
        let answer = RTCSessionDescription::answer(sdp.to_owned()).expect("an answer");
        self.peer
            .set_remote_description(answer)
            .await
            .expect("the answer applies");
    }

    /// Answers an offer.
    pub async fn answer(&self, offer: &str) -> String {
        let offer = RTCSessionDescription::offer(offer.to_owned()).expect("an offer");
        self.peer
            .set_remote_description(offer)
            .await
            .expect("the offer applies");
        let answer = self.peer.create_answer(None).await.expect("an answer");
        self.peer
            .set_local_description(answer)
            .await
            .expect("the answer applies");
        self.local_sdp().await
    }

    /// Adds a candidate the far end trickled, given as a browser's `RTCIceCandidate` JSON.
    pub async fn add_candidate(&self, json: &str) {
        let candidate: RTCIceCandidateInit =
            serde_json::from_str(json).expect("an RTCIceCandidate in JSON");
        self.peer
            .add_ice_candidate(candidate)
            .await
            .expect("the candidate applies");
    }

    /// Waits until ICE and DTLS are up; false on failure or timeout.
    pub async fn connected(&mut self, timeout: Duration) -> bool {
        let wait = self.state.wait_for(|state| {
            matches!(
                state,
                RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed
            )
        });
        matches!(
            tokio::time::timeout(timeout, wait).await,
            Ok(Ok(state)) if *state == RTCPeerConnectionState::Connected
        )
    }

    /// Sends a G.711 µ-law tone with payload type `pt`, 20 ms per packet, until stopped.
    pub fn send_pcmu_tone(&mut self, pt: u8, frequency: f64) {
        let mut tone = Tone::new(frequency, 8000);
        self.send_frames(pt, 160, move || {
            tone.samples(160).into_iter().map(ulaw_encode).collect()
        });
    }

    /// Sends an Opus tone (48 kHz mono, 20 ms frames) with payload type `pt`, until stopped.
    pub fn send_opus_tone(&mut self, pt: u8, frequency: f64) {
        let mut tone = Tone::new(frequency, 48_000);
        let mut encoder = crate::opus::Encoder::new();
        self.send_frames(pt, 960, move || encoder.encode(&tone.samples(960)));
    }

    /// Sends frames made by `next`, every 20 ms, `step` timestamp units apart, until stopped.
    pub fn send_frames(
        &mut self,
        pt: u8,
        step: u32,
        mut next: impl FnMut() -> Vec<u8> + Send + 'static,
    ) {
        self.stop_sending();
        let track = self.track.clone();
        let ssrc = self.ssrc;
        let position = self.position.clone();
        let lose_every = self.lose_every.clone();
        self.sender = Some(tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(20));
            loop {
                interval.tick().await;
                let (seq, timestamp) = {
                    let Ok(mut position) = position.lock() else {
                        return;
                    };
                    let now = *position;
                    *position = (now.0.wrapping_add(1), now.1.wrapping_add(step));
                    now
                };
                let payload = next();
                let every = lose_every.load(std::sync::atomic::Ordering::Relaxed);
                if every > 0 && seq % every == 0 {
                    continue;
                }
                let packet = packet(pt, seq, timestamp, ssrc, false, payload);
                if track.write_rtp(packet).await.is_err() {
                    return;
                }
            }
        }));
    }

    /// Sends one RFC 4733 event (`event` 0-15) of `duration` timestamp units as a browser does:
    /// a marked start, updates, and three end packets, all with the event's start timestamp.
    /// Audio stops meanwhile.
    pub async fn send_event(&mut self, pt: u8, event: u8, duration: u16) {
        self.stop_sending();
        let (mut seq, timestamp) = self.position.lock().map(|p| *p).unwrap_or((0, 0));
        let mut elapsed: u16 = 0;
        let step = duration / 5;
        let mut first = true;
        while elapsed < duration {
            elapsed = elapsed.saturating_add(step).min(duration);
            let payload = vec![event, 10, (elapsed >> 8) as u8, elapsed as u8];
            let _ = self
                .track
                .write_rtp(packet(pt, seq, timestamp, self.ssrc, first, payload))
                .await;
            first = false;
            seq = seq.wrapping_add(1);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..3 {
            let payload = vec![event, 0x80 | 10, (duration >> 8) as u8, duration as u8];
            let _ = self
                .track
                .write_rtp(packet(pt, seq, timestamp, self.ssrc, false, payload))
                .await;
            seq = seq.wrapping_add(1);
        }
        if let Ok(mut position) = self.position.lock() {
            *position = (seq, timestamp.wrapping_add(u32::from(duration)));
        }
    }

    /// Loses one packet in `every` of what is sent from now on (their sequence numbers are
    /// skipped, as on a lossy path); 0 loses none.
    pub fn lose_every(&self, every: u16) {
        self.lose_every
            .store(every, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops the tone.
    pub fn stop_sending(&mut self) {
        if let Some(sender) = self.sender.take() {
            sender.abort();
        }
    }

    /// Every RTP packet received so far.
    pub fn received(&self) -> Vec<rtp::Packet> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Forgets what was received so far.
    pub fn clear_received(&self) {
        if let Ok(mut received) = self.received.lock() {
            received.clear();
        }
    }

    /// The connection state.
    pub fn state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    /// Closes the peer connection.
    pub async fn close(mut self) {
        self.stop_sending();
        let _ = self.peer.close().await;
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("ssrc", &self.ssrc)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

fn codec_parameters(
    mime: &str,
    rate: u32,
    channels: u16,
    fmtp: &str,
    pt: u8,
) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate: rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    }
}

fn packet(
    pt: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    marker: bool,
    payload: Vec<u8>,
) -> rtp::Packet {
    rtp::Packet {
        header: rtp::Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp,
            ssrc,
            ..Default::default()
        },
        payload: payload.into(),
    }
}

fn rand_ssrc() -> u32 {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) | 1
}

/// A description without its candidates, and the candidates as a browser trickles them
/// (`RTCIceCandidate` JSON: `candidate`, `sdpMid`, `sdpMLineIndex`), for signalling that
/// carries them apart from the SDP.
pub fn trickle(sdp: &str) -> (String, Vec<String>) {
    // Each m-line's mid, wherever in its section the a=mid line is.
    let mut mids: Vec<Option<String>> = Vec::new();
    for line in sdp.lines() {
        if line.starts_with("m=") {
            mids.push(None);
        } else if let (Some(value), Some(slot)) = (line.strip_prefix("a=mid:"), mids.last_mut()) {
            *slot = Some(value.to_owned());
        }
    }
    let mut description = String::new();
    let mut candidates = Vec::new();
    let mut section: usize = 0;
    let mut seen_media = false;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            if seen_media {
                section += 1;
            }
            seen_media = true;
        }
        if let Some(candidate) = line.strip_prefix("a=") {
            if candidate.starts_with("candidate:") {
                let mid = mids.get(section).cloned().flatten();
                candidates.push(
                    serde_json::json!({
                        "candidate": candidate,
                        "sdpMid": mid,
                        "sdpMLineIndex": section,
                    })
                    .to_string(),
                );
                continue;
            }
            if candidate == "end-of-candidates" {
                continue;
            }
        }
        description.push_str(line);
        description.push_str("\r\n");
    }
    (description, candidates)
}
