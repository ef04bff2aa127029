//! The packet paths of a relay: browser to SIP, SIP to browser, RTCP on the SIP leg, and the
//! timers (reports, silence, ICE consent).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite, SeqNo};
use str0m::{Event as WebRtcEvent, Input, Output as WebRtcOutput};

use super::track::{rescale_events, rescale_timestamp};
use super::{Event, Output, Relay};
use crate::codec::Format;
use crate::dtls::is_dtls;
use crate::rtp::{RtpHeader, RtpView, is_rtcp, ntp_time, write_report, write_rtp};

/// How often RTCP reports go to the SIP side (RFC 3550's recommended minimum).
const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// What `poll_output` hands out, before borrowing it.
enum Next {
    Browser(SocketAddr),
    Sip(SocketAddr),
    SipRtcp(SocketAddr),
    SipVideo(SocketAddr),
    SipVideoRtcp(SocketAddr),
    Timeout(Instant),
}

/// Whether a datagram is STUN (RFC 7983: first byte 0 to 3).
pub fn is_stun(data: &[u8]) -> bool {
    data.first().is_some_and(|byte| *byte < 4)
}

impl Relay {
    /// A datagram from the browser (on the shared port).
    pub fn handle_browser(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        self.now = self.now.max(now);
        let Some(rtc) = &mut self.browser.rtc else {
            return;
        };
        if is_stun(data) {
            self.browser.last_stun = now;
        }
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.config.browser, data) else {
            return; // Not STUN, DTLS, RTP or RTCP.
        };
        if let Err(error) = rtc.handle_input(Input::Receive(now, receive)) {
            self.fail(format!("browser leg: {error}"));
        }
    }

    /// A datagram from the SIP side, on the call's RTP port or (`rtcp_port`) its RTCP port.
    pub fn handle_sip(&mut self, now: Instant, source: SocketAddr, data: &[u8], rtcp_port: bool) {
        self.now = self.now.max(now);
        if is_dtls(data) {
            if let Err(error) = self.sip.handle_dtls(now, source, data, rtcp_port) {
                self.fail(format!("SIP leg: {error}"));
            }
            return;
        }
        let rtcp = rtcp_port || is_rtcp(data);
        if self.sip.srtp.is_none() && self.sip.dtls.is_none() {
            self.handle_sip_plain(now, source, data, rtcp, rtcp_port);
            return;
        }
        // SRTP is checked before anything else: a packet that fails is not heard, and does not
        // teach the latch a source.
        let mut plain = std::mem::take(&mut self.plain);
        if self.sip.unprotect(data, rtcp, rtcp_port, &mut plain) == Some(true) {
            self.handle_sip_plain(now, source, &plain, rtcp, rtcp_port);
        }
        self.plain = plain;
    }

    /// A datagram from the SIP side's video, on the call's video RTP port or (`rtcp_port`) its
    /// RTCP port.
    pub fn handle_sip_video(
        &mut self,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
        rtcp_port: bool,
    ) {
        self.now = self.now.max(now);
        let Some(video) = &mut self.video else { return };
        if is_dtls(data) {
            if let Err(error) = video.sip.handle_dtls(now, source, data, rtcp_port) {
                self.fail(format!("SIP leg's video: {error}"));
            }
            return;
        }
        let rtcp = rtcp_port || is_rtcp(data);
        let mut plain = std::mem::take(&mut self.plain);
        match video.sip.unprotect(data, rtcp, rtcp_port, &mut plain) {
            Some(false) => self.handle_sip_video_plain(now, source, data, rtcp, rtcp_port),
            Some(true) => self.handle_sip_video_plain(now, source, &plain, rtcp, rtcp_port),
            None => {}
        }
        self.plain = plain;
    }

    /// Browser video toward the SIP side: rewritten into `scratch`; returns where it goes.
    fn forward_video_to_sip(&mut self, now: Instant, packet: &RtpPacket) -> Option<SocketAddr> {
        let video = self.video.as_mut()?;
        if !video.sip.direction.sends() || video.sip.awaiting_keys() {
            return None;
        }
        let destination = video.sip.rtp_source.destination()?;
        let header = &packet.header;
        let (pt, _) = video.track.mapping.map(*header.payload_type, true)?;
        let (seq, timestamp) = video.track.to_sip.apply(
            *header.ssrc,
            header.sequence_number,
            header.timestamp,
            90_000,
            now,
        );
        let out = RtpHeader {
            pt,
            marker: header.marker,
            seq: seq as u16,
            timestamp,
            ssrc: video.sip.ssrc,
        };
        write_rtp(&mut self.scratch, out, &packet.payload);
        if let Some(srtp) = &mut video.sip.srtp {
            let mut protected = std::mem::take(&mut self.plain);
            let done = srtp.send.protect_rtp(&self.scratch, &mut protected);
            std::mem::swap(&mut self.scratch, &mut protected);
            self.plain = protected;
            done.ok()?;
        }
        video.sip.sent.packets = video.sip.sent.packets.wrapping_add(1);
        video.sip.sent.octets = video
            .sip
            .sent
            .octets
            .wrapping_add(packet.payload.len() as u32);
        video.sip.sent.last = Some((timestamp, now));
        Some(destination)
    }

    /// A datagram from the SIP side in the clear (plain RTP, or SRTP once checked).
    fn handle_sip_plain(
        &mut self,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
        rtcp: bool,
        rtcp_port: bool,
    ) {
        if rtcp {
            self.sip.take_rtcp(now, source, data, rtcp_port);
            return;
        }
        let Some(view) = RtpView::parse(data) else {
            return;
        };
        // Only the learnt source is heard (and answered: symmetric RTP).
        if !self.sip.rtp_source.accept(now, source) {
            return;
        }
        self.sip.last_rtp = now;
        let clock = self.clock();
        let arrival =
            (now.saturating_duration_since(self.created).as_secs_f64() * f64::from(clock)) as i64;
        self.sip
            .received
            .record(view.ssrc(), view.seq(), view.timestamp(), arrival);
        self.sip.bytes_received += view.payload().len() as u64;
        if !self.sip.direction.receives() {
            return;
        }
        let Some((pt, rescale)) = self.track.browser_pt_for(view.pt()) else {
            return;
        };
        let (Some(rtc), Some(mid)) = (&mut self.browser.rtc, self.track.mid) else {
            return;
        };
        let (seq, mut timestamp) =
            self.track
                .to_browser
                .apply(view.ssrc(), view.seq(), view.timestamp(), clock, now);
        // The payload must be owned by str0m: one copy per packet, whatever we do.
        let payload: Arc<[u8]> = match rescale {
            Some(rates) => {
                timestamp = rescale_timestamp(timestamp, rates);
                self.scratch.clear();
                rescale_events(view.payload(), rates, &mut self.scratch);
                Arc::from(&self.scratch[..])
            }
            None => Arc::from(view.payload()),
        };
        let mut api = rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        let bytes = payload.len() as u64;
        stream.write_rtp(
            RtpWrite::new(pt.into(), SeqNo::from(seq), timestamp, now, payload)
                .marker(view.marker()),
        );
        self.browser.counts.packets_sent += 1;
        self.browser.counts.bytes_sent += bytes;
    }

    /// The RTP clock rate of the codec in use.
    fn clock(&self) -> u32 {
        self.track.clock()
    }

    /// Browser RTP toward the SIP side: rewritten into `scratch`; returns where it goes.
    fn forward_to_sip(&mut self, now: Instant, packet: &RtpPacket) -> Option<SocketAddr> {
        self.browser.last_rtp = now;
        let header = &packet.header;
        let arrival = (now.saturating_duration_since(self.created).as_secs_f64()
            * f64::from(self.clock())) as i64;
        let counts = &mut self.browser.counts;
        counts.received.record(
            *header.ssrc,
            header.sequence_number,
            header.timestamp,
            arrival,
        );
        counts.bytes_received += packet.payload.len() as u64;
        if !self.sip.direction.sends() || self.sip.awaiting_keys() {
            return None;
        }
        let destination = self.sip.rtp_source.destination()?;
        let header = &packet.header;
        let (pt, rescale) = self.track.mapping.map(*header.payload_type, true)?;
        let clock = self.clock();
        let (seq, mut timestamp) = self.track.to_sip.apply(
            *header.ssrc,
            header.sequence_number,
            header.timestamp,
            clock,
            now,
        );
        let seq = seq as u16;
        let out = RtpHeader {
            pt,
            marker: header.marker,
            seq,
            timestamp,
            ssrc: self.sip.ssrc,
        };
        match rescale {
            Some(rates) => {
                timestamp = rescale_timestamp(timestamp, rates);
                write_rtp(&mut self.scratch, RtpHeader { timestamp, ..out }, &[]);
                rescale_events(&packet.payload, rates, &mut self.scratch);
            }
            None => write_rtp(&mut self.scratch, out, &packet.payload),
        }
        if let Some(srtp) = &mut self.sip.srtp {
            let mut protected = std::mem::take(&mut self.plain);
            let done = srtp.send.protect_rtp(&self.scratch, &mut protected);
            std::mem::swap(&mut self.scratch, &mut protected);
            self.plain = protected;
            done.ok()?;
        }
        self.sip.sent.packets = self.sip.sent.packets.wrapping_add(1);
        self.sip.sent.octets = self
            .sip
            .sent
            .octets
            .wrapping_add(packet.payload.len() as u32);
        if matches!(
            self.track.mapping.sip.iter().find(|(p, _)| *p == pt),
            Some((_, Format::Audio(_)))
        ) {
            self.sip.sent.last = Some((timestamp, now));
        }
        Some(destination)
    }

    fn fail(&mut self, reason: String) {
        if !self.failed {
            self.failed = true;
            self.events.push_back(Event::Failed(reason));
        }
    }

    /// Timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if let Some(rtc) = &mut self.browser.rtc
            && let Err(error) = rtc.handle_input(Input::Timeout(now))
        {
            self.fail(format!("browser leg: {error}"));
        }
        if let Err(error) = self.sip.dtls_handle_timeout(now) {
            self.fail(format!("SIP leg: {error}"));
        }
        if let Some(video) = &mut self.video
            && let Err(error) = video.sip.dtls_handle_timeout(now)
        {
            self.fail(format!("SIP leg's video: {error}"));
        }
        if now >= self.next_check {
            self.next_check = now + Duration::from_secs(1);
            self.check_silence(now);
        }
        if self.sip.target.is_some() && self.track.codec.is_some() {
            let due = *self.sip.next_report.get_or_insert(now + REPORT_INTERVAL);
            if now >= due {
                self.sip.next_report = Some(now + REPORT_INTERVAL);
                self.make_report(now);
            }
        }
        if let Some(video) = &mut self.video
            && video.sip.target.is_some()
            && video.format.is_some()
        {
            let due = *video.sip.next_report.get_or_insert(now + REPORT_INTERVAL);
            if now >= due {
                video.sip.next_report = Some(now + REPORT_INTERVAL);
                let wallclock = self.config.wallclock + now.saturating_duration_since(self.created);
                video.sip.report =
                    make_report(&mut video.sip, now, wallclock, 90_000, &self.config.cname);
            }
        }
        if self
            .video
            .as_ref()
            .is_some_and(|video| video.want_from_browser)
            && self.browser.connected
        {
            self.request_from_browser(now);
        }
    }

    fn check_silence(&mut self, now: Instant) {
        let waiting_for_browser = matches!(
            self.negotiation,
            super::Negotiation::AwaitingBrowserAnswer { .. }
                | super::Negotiation::AwaitingSipAnswer { .. }
        );
        if self.browser.rtc.is_some()
            && !waiting_for_browser
            && now.saturating_duration_since(self.browser.last_stun) > self.config.ice_timeout
        {
            let seconds = self.config.ice_timeout.as_secs();
            self.fail(format!("no ICE checks from the browser for {seconds} s"));
        }
        let timeout = self.config.media_timeout;
        if self.track.codec.is_some()
            && self.sip.direction.receives()
            && now.saturating_duration_since(self.sip.last_rtp) > timeout
        {
            // Packets that came but failed SRTP's checks say what is wrong: the keys.
            let rejected = match self.sip.srtp_rejected {
                _ if self.sip.awaiting_keys() => " (no DTLS-SRTP handshake)".to_owned(),
                0 => String::new(),
                count => format!(" ({count} packets failed SRTP authentication)"),
            };
            self.fail(format!(
                "no RTP from the SIP side for {} s{rejected}",
                timeout.as_secs()
            ));
        }
        if self.browser.connected
            && self.browser.sends
            && now.saturating_duration_since(self.browser.last_rtp) > timeout
        {
            self.fail(format!(
                "no RTP from the browser for {} s",
                timeout.as_secs()
            ));
        }
    }

    fn make_report(&mut self, now: Instant) {
        let wallclock = self.config.wallclock + now.saturating_duration_since(self.created);
        let clock = self.clock();
        self.sip.report = make_report(&mut self.sip, now, wallclock, clock, &self.config.cname);
    }

    /// The next datagram to send, or when to call [`Relay::handle_timeout`]. Call again until
    /// it returns [`Output::Timeout`]; each datagram is valid until the next call.
    pub fn poll_output(&mut self) -> Output<'_> {
        self.raise_info_request();
        match self.next_output() {
            Next::Browser(destination) => Output::Browser {
                destination,
                data: self
                    .browser
                    .held
                    .as_ref()
                    .map_or(&[][..], |held| &held.contents[..]),
            },
            Next::Sip(destination) => Output::SipRtp {
                destination,
                data: &self.scratch,
            },
            Next::SipRtcp(destination) => Output::SipRtcp {
                destination,
                data: &self.scratch,
            },
            Next::SipVideo(destination) => Output::SipVideoRtp {
                destination,
                data: &self.scratch,
            },
            Next::SipVideoRtcp(destination) => Output::SipVideoRtcp {
                destination,
                data: &self.scratch,
            },
            Next::Timeout(at) => Output::Timeout(at),
        }
    }

    fn next_output(&mut self) -> Next {
        self.browser.held = None;
        if let Some((rtcp_port, destination, data)) = self.sip.dtls_transmit() {
            self.scratch = data;
            return if rtcp_port {
                Next::SipRtcp(destination)
            } else {
                Next::Sip(destination)
            };
        }
        if let Some(video) = &mut self.video
            && let Some((rtcp_port, destination, data)) = video.sip.dtls_transmit()
        {
            self.scratch = data;
            return if rtcp_port {
                Next::SipVideoRtcp(destination)
            } else {
                Next::SipVideo(destination)
            };
        }
        if let Some(video) = &mut self.video
            && let Some(destination) = video.sip.rtcp_destination()
            && let Some(packet) = video
                .rtcp_out
                .pop_front()
                .or_else(|| video.sip.report.take())
        {
            self.scratch = packet;
            return if video.sip.rtcp_mux {
                Next::SipVideo(destination)
            } else {
                Next::SipVideoRtcp(destination)
            };
        }
        if let Some(report) = self.sip.report.take() {
            let destination = self.sip.rtcp_destination();
            if let Some(destination) = destination {
                self.scratch = report;
                return if self.sip.rtcp_mux {
                    Next::Sip(destination)
                } else {
                    Next::SipRtcp(destination)
                };
            }
        }
        let mut deadline = [
            self.sip.next_report,
            self.sip.dtls_timeout(),
            self.video
                .as_ref()
                .and_then(|video| video.sip.dtls_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let mut caught_up = 0;
        while let Some(rtc) = &mut self.browser.rtc {
            let output = match rtc.poll_output() {
                Ok(output) => output,
                Err(error) => {
                    self.fail(format!("browser leg: {error}"));
                    break;
                }
            };
            match output {
                WebRtcOutput::Transmit(transmit) => {
                    let destination = transmit.destination;
                    self.browser.held = Some(transmit);
                    return Next::Browser(destination);
                }
                WebRtcOutput::Event(event) => match event {
                    WebRtcEvent::Connected if !self.browser.connected => {
                        self.browser.connected = true;
                        self.browser.last_rtp = self.browser.last_rtp.max(self.browser.last_stun);
                        self.events.push_back(Event::Connected);
                    }
                    WebRtcEvent::RtpPacket(packet) => {
                        if self.is_browser_video(*packet.header.payload_type) {
                            let now = packet.timestamp;
                            if self
                                .video
                                .as_ref()
                                .is_some_and(|video| video.want_from_browser)
                            {
                                self.request_from_browser(now);
                            }
                            if let Some(destination) = self.forward_video_to_sip(now, &packet) {
                                return Next::SipVideo(destination);
                            }
                        } else if let Some(destination) =
                            self.forward_to_sip(packet.timestamp, &packet)
                        {
                            return Next::Sip(destination);
                        }
                    }
                    WebRtcEvent::KeyframeRequest(request) => {
                        let now = self.now;
                        self.browser_wants_keyframe(now, request.mid);
                    }
                    WebRtcEvent::MediaEgressStats(stats) if Some(stats.mid) == self.track.mid => {
                        self.browser.counts.take_egress(stats);
                    }
                    WebRtcEvent::Closed => {
                        self.fail("the browser closed the connection".to_owned())
                    }
                    _ => {}
                },
                // str0m asks for a timeout that is already due when it has new media to send
                // (its pacer takes a snapshot of the queues there). Doing it now, rather than
                // through the runtime's timer, saves a wake-up and up to a millisecond per packet.
                WebRtcOutput::Timeout(at) if at <= self.now && caught_up < 2 => {
                    caught_up += 1;
                    if let Err(error) = rtc.handle_input(Input::Timeout(self.now)) {
                        self.fail(format!("browser leg: {error}"));
                        break;
                    }
                }
                WebRtcOutput::Timeout(at) => {
                    deadline = Some(deadline.map_or(at, |ours| ours.min(at)));
                    break;
                }
            }
        }
        // Silence checks run once a second.
        Next::Timeout(deadline.map_or(self.next_check, |at| at.min(self.next_check)))
    }

    /// Whether the browser leg is up.
    pub fn is_connected(&self) -> bool {
        self.browser.connected
    }
}

/// An RTCP report (SR, or RR before we sent anything) for a SIP leg, protected when the leg
/// is SRTP; none when protection fails.
fn make_report(
    sip: &mut super::sip_leg::SipLeg,
    now: Instant,
    wallclock: std::time::SystemTime,
    clock: u32,
    cname: &str,
) -> Option<Vec<u8>> {
    let block = sip.received.report(now);
    let sender = sip.sent.last.map(|(timestamp, at)| {
        let since = now.saturating_duration_since(at).as_secs_f64() * f64::from(clock);
        (
            ntp_time(wallclock),
            timestamp.wrapping_add(since as u32),
            &sip.sent,
        )
    });
    if let Some((ntp, _, _)) = sender {
        sip.far.sent(ntp, now);
    }
    let mut report = Vec::with_capacity(96);
    write_report(&mut report, sip.ssrc, sender, block, cname);
    sip.protect_rtcp(report)
}
