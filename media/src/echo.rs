//! The echo test's media, sans-IO: a WebRTC peer (str0m, ICE-lite, RTP mode) that answers the
//! browser's offer for audio and video and sends every packet back on the stream it came in
//! on, so that the caller hears and sees itself through the whole network path. Keyframe
//! requests from the browser are passed back to the browser's own sender.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::media::{KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event as WebRtcEvent, Input, Output as WebRtcOutput, Rtc, RtcConfig};

use crate::error::{Error, Result};
use crate::relay::{Event, Output, is_stun};

/// One echo test call.
#[derive(Debug)]
pub struct Echo {
    rtc: Rtc,
    browser: SocketAddr,
    ice_timeout: Duration,
    last_stun: Instant,
    connected: bool,
    failed: bool,
    /// The mid each incoming stream belongs to.
    mids: HashMap<Ssrc, Mid>,
    held: Option<str0m::net::Transmit>,
    events: VecDeque<Event>,
    next_check: Instant,
    /// str0m's next deadline.
    deadline: Instant,
}

impl Echo {
    /// Answers the browser's `offer`; `browser` is the gateway's candidate (the advertised
    /// address and the shared port).
    pub fn new(
        now: Instant,
        browser: SocketAddr,
        offer: &str,
        ice_timeout: Duration,
    ) -> Result<(Echo, String)> {
        // str0m's default codecs (opus and the video codecs browsers have), plus G.711 and G.722
        // for callers that offer only those.
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .enable_pcmu(true, false)
            .enable_pcma(true, false)
            .enable_g722(true, false)
            .build(now);
        let candidate =
            Candidate::host(browser, "udp").map_err(|error| Error::WebRtc(error.to_string()))?;
        rtc.add_local_candidate(candidate);
        let offer_text = offer;
        let offer = SdpOffer::from_sdp_string(offer)
            .map_err(|error| Error::Sdp(crate::sdp::without_keys(&error.to_string())))?;
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|error| Error::WebRtc(error.to_string()))?;
        let echo = Echo {
            rtc,
            browser,
            ice_timeout,
            last_stun: now,
            connected: false,
            failed: false,
            mids: HashMap::new(),
            held: None,
            events: VecDeque::new(),
            next_check: now + Duration::from_secs(1),
            deadline: now,
        };
        Ok((
            echo,
            crate::sdp::own_msid(&answer.to_sdp_string(), offer_text),
        ))
    }

    /// The browser's new offer mid-call (hold, resume, video added): the answer. The echo
    /// sends back whatever still comes.
    pub fn reoffer(&mut self, offer_text: &str) -> Result<String> {
        let offer = SdpOffer::from_sdp_string(offer_text)
            .map_err(|error| Error::Sdp(crate::sdp::without_keys(&error.to_string())))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|error| Error::WebRtc(error.to_string()))?;
        Ok(crate::sdp::own_msid(&answer.to_sdp_string(), offer_text))
    }

    /// The ICE username fragment (for the browser port's demultiplexing).
    pub fn ice_ufrag(&mut self) -> String {
        self.rtc.direct_api().local_ice_credentials().ufrag
    }

    fn fail(&mut self, reason: String) {
        if !self.failed {
            self.failed = true;
            self.events.push_back(Event::Failed(reason));
        }
    }

    /// A datagram from the browser.
    pub fn handle_browser(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        if is_stun(data) {
            self.last_stun = now;
        }
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.browser, data) else {
            return;
        };
        if let Err(error) = self.rtc.handle_input(Input::Receive(now, receive)) {
            self.fail(format!("browser leg: {error}"));
        }
    }

    /// Timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Err(error) = self.rtc.handle_input(Input::Timeout(now)) {
            self.fail(format!("browser leg: {error}"));
        }
        if now >= self.next_check {
            self.next_check = now + Duration::from_secs(1);
            if now.saturating_duration_since(self.last_stun) > self.ice_timeout {
                let seconds = self.ice_timeout.as_secs();
                self.fail(format!("no ICE checks from the browser for {seconds} s"));
            }
        }
    }

    /// The next datagram for the browser, or when to call [`Echo::handle_timeout`].
    pub fn poll_output(&mut self) -> Output<'_> {
        match self.next() {
            Some(destination) => Output::Browser {
                destination,
                data: self
                    .held
                    .as_ref()
                    .map_or(&[][..], |held| &held.contents[..]),
            },
            None => Output::Timeout(self.deadline.min(self.next_check)),
        }
    }

    fn next(&mut self) -> Option<SocketAddr> {
        self.held = None;
        loop {
            let output = match self.rtc.poll_output() {
                Ok(output) => output,
                Err(error) => {
                    self.fail(format!("browser leg: {error}"));
                    self.deadline = self.next_check;
                    return None;
                }
            };
            match output {
                WebRtcOutput::Transmit(transmit) => {
                    let destination = transmit.destination;
                    self.held = Some(transmit);
                    return Some(destination);
                }
                WebRtcOutput::Timeout(at) => {
                    self.deadline = at;
                    return None;
                }
                WebRtcOutput::Event(event) => self.event(event),
            }
        }
    }

    fn event(&mut self, event: WebRtcEvent) {
        match event {
            WebRtcEvent::Connected if !self.connected => {
                self.connected = true;
                self.events.push_back(Event::Connected);
            }
            WebRtcEvent::RtpPacket(packet) => {
                let ssrc = packet.header.ssrc;
                let mid = match packet.header.ext_vals.mid {
                    Some(mid) => *self.mids.entry(ssrc).or_insert(mid),
                    None => {
                        let mut api = self.rtc.direct_api();
                        let Some(mid) = self
                            .mids
                            .get(&ssrc)
                            .copied()
                            .or_else(|| api.stream_rx(&ssrc).map(|stream| stream.mid()))
                        else {
                            return;
                        };
                        mid
                    }
                };
                let mut api = self.rtc.direct_api();
                let Some(stream) = api.stream_tx_by_mid(mid, None) else {
                    return;
                };
                stream.write_rtp(
                    RtpWrite::new(
                        packet.header.payload_type,
                        packet.seq_no,
                        packet.header.timestamp,
                        packet.timestamp,
                        packet.payload.clone(),
                    )
                    .marker(packet.header.marker)
                    // Kept for the browser's NACKs, answered with RTX where it was
                    // negotiated (the WebRTC stack marks packets without RTX unanswerable).
                    .nackable(true),
                );
            }
            WebRtcEvent::KeyframeRequest(request) => {
                // Our video is the browser's own: its encoder is what must send a keyframe.
                let mut api = self.rtc.direct_api();
                if let Some(stream) = api.stream_rx_by_mid(request.mid, request.rid) {
                    stream.request_keyframe(KeyframeRequestKind::Pli);
                }
            }
            WebRtcEvent::Closed => self.fail("the browser closed the connection".to_owned()),
            _ => {}
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Ends the browser leg (DTLS close).
    pub fn close(&mut self) {
        let _ = self.rtc.close();
    }
}
