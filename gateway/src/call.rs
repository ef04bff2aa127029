//! One call's task: it ties the SIP call (through the driver's handle), the media relay and its
//! sockets, and the sylkRTC events of the session.
//!
//! The task owns everything the call holds (the relay, the SIP leg's ports, its claim on the
//! shared browser port), so that whatever ends it (a hang-up, a failure, the connection going
//! away) releases all of it. It never waits on the connection: its events go to the
//! connection's handler through an unbounded queue, in order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use media::driver::{Datagram, PortPair, Route};
use media::{Output as MediaOutput, Relay, RelayConfig};
use sip::call::{CallEvent, Warning};
use sip::driver::{CallCommand, CallHandle, IncomingCall, OutgoingCall, SipEvent};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

mod interface;
use crate::metrics::Gauge;
use crate::server::Shared;
pub(crate) use interface::{CallUpdate, Caller, Command, Ending, Incoming, StartCall};

/// Datagrams from the browser waiting for the call's task; past it they are dropped.
const BROWSER_QUEUE: usize = 512;
/// How many more datagrams are read from the SIP leg's socket once it is readable.
const BATCH: usize = 32;

/// The connection's end of a call's task.
#[derive(Debug)]
pub(crate) struct CallTask {
    /// Commands from the client; dropping it ends the call.
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    /// The call's SIP events, for incoming calls (whose events reach the connection first).
    pub(crate) sip_events: Option<mpsc::UnboundedSender<SipEvent>>,
}

/// Starts an outgoing call's task.
pub(crate) fn outgoing(
    shared: Arc<Shared>,
    start: StartCall,
    reports: mpsc::UnboundedSender<(String, CallUpdate)>,
) -> CallTask {
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let (sip_tx, sip_rx) = mpsc::unbounded_channel();
    let span = info_span!("call", session = %start.session, direction = "out");
    let session = start.session.clone();
    let task = async move {
        let mut call = Call::new(shared, session, reports, false);
        match call.start_outgoing(start, sip_tx) {
            Ok(()) => call.run(commands_rx, sip_rx).await,
            Err(reason) => call.finish(&reason),
        }
    };
    tokio::spawn(task.instrument(span));
    CallTask {
        commands,
        sip_events: None,
    }
}

/// Starts an incoming call's task.
pub(crate) fn incoming(
    shared: Arc<Shared>,
    incoming: Incoming,
    reports: mpsc::UnboundedSender<(String, CallUpdate)>,
) -> CallTask {
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let (sip_tx, sip_rx) = mpsc::unbounded_channel();
    let span = info_span!("call", session = %incoming.session, direction = "in");
    let task = async move {
        let session = incoming.session.clone();
        let mut call = Call::new(shared, session, reports, true);
        if call.start_incoming(incoming) {
            call.run(commands_rx, sip_rx).await;
        }
    };
    tokio::spawn(task.instrument(span));
    CallTask {
        commands,
        sip_events: Some(sip_tx),
    }
}

/// Where the call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Outgoing: the INVITE is out.
    Calling,
    /// Incoming: ringing, waiting for `session-answer`.
    Ringing,
    /// Answered.
    Up,
    /// Over.
    Over,
}

struct Call {
    shared: Arc<Shared>,
    session: String,
    reports: mpsc::UnboundedSender<(String, CallUpdate)>,
    phase: Phase,
    sip_call: Option<CallHandle>,
    /// The SIP call has ended on its own (no hang-up to send).
    sip_over: bool,
    call_id: Option<String>,
    originator: Option<Caller>,
    relay: Option<Relay>,
    ports: Option<PortPair>,
    route: Option<Route>,
    browser_tx: mpsc::Sender<Datagram>,
    browser_rx: Option<mpsc::Receiver<Datagram>>,
    /// When the relay wants its timer, and when an unanswered call stops ringing.
    relay_deadline: Option<std::time::Instant>,
    ring_deadline: Option<Instant>,
    /// Early media was given to the browser: the answer has no SDP for it.
    early: bool,
    /// DTMF tones waiting to go, one INFO at a time: the next after the previous one's final
    /// response, spaced by the tone's duration (a phone's dialler takes them in order).
    dtmf: std::collections::VecDeque<char>,
    dtmf_duration: u32,
    /// An INFO is waiting for its response.
    dtmf_in_flight: bool,
    /// When the next tone goes.
    dtmf_due: Option<Instant>,
    _gauges: Vec<Gauge>,
}

impl Call {
    fn new(
        shared: Arc<Shared>,
        session: String,
        reports: mpsc::UnboundedSender<(String, CallUpdate)>,
        incoming: bool,
    ) -> Call {
        let (browser_tx, browser_rx) = mpsc::channel(BROWSER_QUEUE);
        let gauge = shared.metrics.call_started();
        Call {
            shared,
            session,
            reports,
            phase: if incoming {
                Phase::Ringing
            } else {
                Phase::Calling
            },
            sip_call: None,
            sip_over: false,
            call_id: None,
            originator: None,
            relay: None,
            ports: None,
            route: None,
            browser_tx,
            browser_rx: Some(browser_rx),
            relay_deadline: None,
            ring_deadline: None,
            early: false,
            dtmf: std::collections::VecDeque::new(),
            dtmf_duration: 0,
            dtmf_in_flight: false,
            dtmf_due: None,
            _gauges: vec![gauge],
        }
    }

    /// News for the front-end, in order.
    fn update(&self, update: CallUpdate) {
        let _ = self.reports.send((self.session.clone(), update));
    }

    /// The relay's settings for a call whose SIP leg has these ports.
    fn relay_config(&mut self) -> Result<RelayConfig, String> {
        let media = &self.shared.media;
        let pair = media
            .ports
            .allocate()
            .map_err(|error| format!("503 Service Unavailable ({error})"))?;
        let port = pair
            .rtp
            .local_addr()
            .map_err(|error| format!("503 Service Unavailable ({error})"))?
            .port();
        self._gauges.push(self.shared.metrics.ports_taken());
        self.ports = Some(pair);
        Ok(RelayConfig {
            browser: media.browser_addr,
            sip_rtp: SocketAddr::new(media.advertised, port),
            codecs: media.codecs.clone(),
            media_timeout: media.media_timeout,
            ice_timeout: media.ice_timeout,
            wallclock: SystemTime::now(),
            cname: format!(
                "{}@sylkrtc-gateway",
                &self.session[..self.session.len().min(16)]
            ),
        })
    }

    /// Claims the browser's datagrams on the shared port, once the relay's ufrag exists.
    fn claim_browser_port(&mut self) {
        if self.route.is_some() {
            return;
        }
        if let Some(ufrag) = self.relay.as_mut().and_then(Relay::ice_ufrag) {
            self.route = Some(
                self.shared
                    .media
                    .browser
                    .register(ufrag, self.browser_tx.clone()),
            );
        }
    }

    fn start_outgoing(
        &mut self,
        start: StartCall,
        sip_events: mpsc::UnboundedSender<SipEvent>,
    ) -> Result<(), String> {
        let config = self.relay_config()?;
        let (relay, sip_offer) = Relay::outgoing(std::time::Instant::now(), config, &start.sdp)
            .map_err(|error| match error {
                media::Error::NoCommonCodec(reason) => reason,
                other => format!("488 Not Acceptable Here ({other})"),
            })?;
        self.relay = Some(relay);
        let call_id = uuid::Uuid::new_v4().simple().to_string();
        info!(uri = %start.uri, %call_id, "calling");
        self.call_id = Some(call_id.clone());
        let host = sip::registrar::uri_host(&start.uri)
            .unwrap_or_default()
            .to_owned();
        let user = sip::registrar::uri_user(&start.uri)
            .unwrap_or_default()
            .to_owned();
        let local = self.shared.local.as_ref();
        // A browser of the local domain: bridged inside the gateway.
        if let Some(local) = local
            && local.is_local(&host)
            && let Some(callee) = local.browser(&user)
        {
            info!(%user, "calling a browser of the local domain");
            let invite = IncomingCall {
                from_uri: format!("sip:{}@{}", start.account.user, start.account.domain),
                display_name: start.account.display_name.clone(),
                call_id,
                sdp: Bytes::from(sip_offer),
                headers: start.headers,
            };
            let call = local.bridge(&self.shared.sip, sip_events, &callee, invite);
            self.sip_call = Some(call);
            self.ring_deadline = Some(Instant::now() + self.shared.media.no_answer_timeout);
            self.update(CallUpdate::Progress);
            return Ok(());
        }
        // An account of the local domain calling elsewhere: to the callee's domain (there is
        // no registrar above us to send it to).
        let server = local
            .filter(|local| local.is_local(&start.account.domain) && !local.is_local(&host))
            .map(|_| host.clone());
        let call = self.shared.sip.invite(
            OutgoingCall {
                account: start.account,
                uri: start.uri,
                sdp: Bytes::from(sip_offer),
                headers: start.headers,
                call_id,
                server,
            },
            sip_events,
        );
        self.sip_call = Some(call);
        self.ring_deadline = Some(Instant::now() + self.shared.media.no_answer_timeout);
        self.update(CallUpdate::Progress);
        Ok(())
    }

    /// Sets up an incoming call; false when it was refused at once.
    fn start_incoming(&mut self, incoming: Incoming) -> bool {
        let invite = incoming.invite;
        self.sip_call = Some(incoming.call);
        self.call_id = Some(invite.call_id.clone());
        let originator = Caller {
            uri: invite.from_uri.trim_start_matches("sip:").to_owned(),
            display_name: invite.display_name.clone(),
        };
        self.originator = Some(originator.clone());
        let offer = String::from_utf8_lossy(&invite.sdp).into_owned();
        let offer = (!offer.trim().is_empty()).then_some(offer);
        let made = self
            .relay_config()
            .map_err(|reason| (503, "Service Unavailable", reason, None))
            .and_then(|config| {
                Relay::incoming(std::time::Instant::now(), config, offer.as_deref()).map_err(
                    |error| {
                        let warning = Some(warning_for(&error));
                        (488, "Not Acceptable Here", error.to_string(), warning)
                    },
                )
            });
        let (relay, browser_offer) = match made {
            Ok(made) => made,
            Err((code, phrase, reason, warning)) => {
                info!(%reason, "incoming call refused");
                self.sip(CallCommand::Reject {
                    code,
                    reason: phrase.to_owned(),
                    warning,
                });
                self.sip_over = true;
                self.phase = Phase::Over;
                // Never announced to the front-end: it ends without a word to the client.
                self.update(CallUpdate::Terminated(Ending::new(reason)));
                return false;
            }
        };
        self.relay = Some(relay);
        self.claim_browser_port();
        let prefixes: Vec<String> = incoming
            .header_prefixes
            .iter()
            .map(|prefix| prefix.to_ascii_lowercase())
            .collect();
        let headers: BTreeMap<String, String> = invite
            .headers
            .iter()
            .filter(|(name, _)| {
                let name = name.to_ascii_lowercase();
                prefixes
                    .iter()
                    .any(|prefix| name.starts_with(prefix.as_str()))
            })
            .cloned()
            .collect();
        info!(from = %originator.uri, call_id = %invite.call_id, "incoming call");
        self.update(CallUpdate::Incoming {
            caller: originator,
            sdp: browser_offer,
            call_id: Some(invite.call_id.clone()),
            headers,
        });
        self.sip(CallCommand::Ring);
        self.ring_deadline = Some(Instant::now() + self.shared.media.ring_timeout);
        true
    }

    /// A command for the far end: through a bridge to another browser, or to SIP.
    fn sip(&self, command: CallCommand) {
        let Some(call) = self.sip_call else { return };
        if let Some(local) = &self.shared.local
            && local.bridge_command(call, command.clone())
        {
            return;
        }
        self.shared.sip.call(call, command);
    }

    async fn run(
        &mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut sip_events: mpsc::UnboundedReceiver<SipEvent>,
    ) {
        let mut rtp_buffer = vec![0u8; 2048];
        let mut rtcp_buffer = vec![0u8; 1500];
        let (Some(ports), Some(mut browser_rx)) = (self.ports.take(), self.browser_rx.take())
        else {
            return;
        };
        self.drain(&ports);
        // One timer for the relay, moved only when its deadline changes: a new timer per
        // packet would cost a timer-wheel insertion and removal each time.
        let far = Instant::now() + std::time::Duration::from_secs(86_400);
        let relay_timer = tokio::time::sleep_until(far);
        tokio::pin!(relay_timer);
        let mut armed: Option<std::time::Instant> = None;
        while self.phase != Phase::Over {
            // The timer only ever moves earlier: a later deadline lets it fire early, which
            // costs one spare poll of the relay, instead of a timer-wheel update per packet.
            if let Some(deadline) = self.relay_deadline
                && armed.is_none_or(|armed| deadline < armed)
            {
                armed = Some(deadline);
                relay_timer.as_mut().reset(Instant::from_std(deadline));
            }
            // Media first: it is what arrives 100 times a second; signalling waits a packet.
            tokio::select! {
                biased;
                Some(datagram) = browser_rx.recv() => {
                    if let Some(relay) = &mut self.relay {
                        relay.handle_browser(datagram.at, datagram.source, &datagram.data);
                        // Whatever else is queued goes through before the output is polled.
                        while let Ok(datagram) = browser_rx.try_recv() {
                            relay.handle_browser(datagram.at, datagram.source, &datagram.data);
                        }
                    }
                }
                received = ports.rtp.recv_from(&mut rtp_buffer) => {
                    if let (Ok((length, source)), Some(relay)) = (received, &mut self.relay) {
                        let now = std::time::Instant::now();
                        relay.handle_sip(now, source, &rtp_buffer[..length], false);
                        for _ in 0..BATCH {
                            let Ok((length, source)) = ports.rtp.try_recv_from(&mut rtp_buffer) else {
                                break;
                            };
                            relay.handle_sip(now, source, &rtp_buffer[..length], false);
                        }
                    }
                }
                received = ports.rtcp.recv_from(&mut rtcp_buffer) => {
                    if let (Ok((length, source)), Some(relay)) = (received, &mut self.relay) {
                        relay.handle_sip(std::time::Instant::now(), source, &rtcp_buffer[..length], true);
                    }
                }
                () = &mut relay_timer => {
                    armed = None;
                    self.relay_deadline = None;
                    if let Some(relay) = &mut self.relay {
                        relay.handle_timeout(std::time::Instant::now());
                    }
                }
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    // The connection is gone: so is the call.
                    None => self.hang_up("the client disconnected"),
                },
                event = sip_events.recv() => match event {
                    Some(SipEvent::Call { event, .. }) => self.sip_event(event),
                    Some(_) => {}
                    None => self.finish("500 the SIP user agent stopped"),
                },
                () = sleep_until(self.ring_deadline) => self.ring_timeout(),
                () = sleep_until(self.dtmf_due) => {
                    self.dtmf_due = None;
                    self.send_dtmf();
                }
            }
            self.drain(&ports);
        }
        if let Some(relay) = &mut self.relay {
            // DTLS close_notify and the last RTCP go out.
            relay.close();
        }
        self.drain(&ports);
        debug!("call task ended");
    }

    /// Sends what the relay has for the network and handles its events.
    fn drain(&mut self, ports: &PortPair) {
        let Some(relay) = &mut self.relay else {
            return;
        };
        let browser = self.shared.media.browser.socket();
        loop {
            // Sends never wait: a full socket buffer drops the datagram, as the network would.
            match relay.poll_output() {
                MediaOutput::Browser { destination, data } => {
                    let _ = browser.try_send_to(data, destination);
                }
                MediaOutput::SipRtp { destination, data } => {
                    let _ = ports.rtp.try_send_to(data, destination);
                }
                MediaOutput::SipRtcp { destination, data } => {
                    let _ = ports.rtcp.try_send_to(data, destination);
                }
                MediaOutput::Timeout(at) => {
                    self.relay_deadline = Some(at);
                    break;
                }
            }
        }
        let mut failed = None;
        let mut connected = false;
        while let Some(event) = relay.poll_event() {
            match event {
                media::Event::Connected => connected = true,
                media::Event::Failed(reason) => failed = Some(reason),
            }
        }
        if connected && self.phase != Phase::Over {
            info!("media established");
            self.update(CallUpdate::Established);
        }
        if let Some(reason) = failed {
            warn!(%reason, "media failed");
            self.hang_up(&reason);
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Hangup => match self.phase {
                Phase::Ringing => {
                    let code = self.shared.media.decline_code;
                    let reason = if code == 603 { "Decline" } else { "Busy Here" };
                    self.sip(CallCommand::Reject {
                        code,
                        reason: reason.to_owned(),
                        warning: None,
                    });
                    self.sip_over = true;
                    self.finish(&format!("{code} {reason}"));
                }
                _ => self.hang_up("local hangup"),
            },
            Command::Answer { sdp, headers } => self.answer(&sdp, headers),
            Command::Dtmf { digits, duration } => {
                self.dtmf.extend(digits.chars());
                self.dtmf_duration = duration;
                if !self.dtmf_in_flight && self.dtmf_due.is_none() {
                    self.send_dtmf();
                }
            }
        }
    }

    fn answer(&mut self, sdp: &str, headers: Vec<(String, String)>) {
        if self.phase != Phase::Ringing {
            return;
        }
        let Some(relay) = &mut self.relay else { return };
        match relay.accept_browser_answer(std::time::Instant::now(), sdp) {
            Ok(sip_sdp) => {
                self.sip(CallCommand::Answer {
                    sdp: Bytes::from(sip_sdp),
                    headers,
                });
                self.phase = Phase::Up;
                self.ring_deadline = None;
                self.update(CallUpdate::Accepted {
                    sdp: None,
                    call_id: self.call_id.clone(),
                });
            }
            Err(error) => {
                warn!(%error, "the browser's answer cannot be used");
                self.sip(CallCommand::Reject {
                    code: 488,
                    reason: "Not Acceptable Here".to_owned(),
                    warning: Some(warning_for(&error)),
                });
                self.sip_over = true;
                self.finish(&format!("the answer cannot be used: {error}"));
            }
        }
    }

    /// Sends the next DTMF tone as one SIP INFO (`application/dtmf-relay`).
    fn send_dtmf(&mut self) {
        let Some(digit) = self.dtmf.pop_front() else {
            return;
        };
        let duration = self.dtmf_duration;
        self.dtmf_in_flight = true;
        self.sip(CallCommand::Info {
            content_type: "application/dtmf-relay".to_owned(),
            body: Bytes::from(format!("Signal={digit}\r\nDuration={duration}\r\n")),
        });
    }

    fn ring_timeout(&mut self) {
        self.ring_deadline = None;
        if self.phase == Phase::Calling {
            // Our call only rings: CANCEL it rather than ring for ever.
            let seconds = self.shared.media.no_answer_timeout.as_secs();
            info!(seconds, "no answer: CANCEL");
            return self.hang_up(&format!(
                "408 Request Timeout (no answer within {seconds} s)"
            ));
        }
        if self.phase != Phase::Ringing {
            return;
        }
        info!("no answer: ring timeout");
        self.sip(CallCommand::Reject {
            code: 480,
            reason: "Temporarily Unavailable".to_owned(),
            warning: None,
        });
        self.sip_over = true;
        self.missed();
        self.finish("480 no answer (ring timeout)");
    }

    fn missed(&self) {
        if let Some(originator) = &self.originator {
            self.update(CallUpdate::Missed {
                caller: originator.clone(),
            });
        }
    }

    fn sip_event(&mut self, event: CallEvent) {
        match event {
            CallEvent::Provisional {
                code, reason, sdp, ..
            } => self.provisional(code, &reason, sdp),
            CallEvent::Answered { sdp } => self.answered(sdp),
            CallEvent::Confirmed { sdp } => {
                if let (Some(sdp), Some(relay)) = (sdp, &mut self.relay)
                    && let Err(error) = relay.accept_sip_answer(
                        std::time::Instant::now(),
                        &String::from_utf8_lossy(&sdp),
                    )
                {
                    self.hang_up(&format!("the SIP answer cannot be used: {error}"));
                }
            }
            CallEvent::Offer { sdp } => {
                let Some(relay) = &mut self.relay else { return };
                let answer = match sdp {
                    Some(sdp) => relay.answer_sip_offer(&String::from_utf8_lossy(&sdp)),
                    None => Ok(relay.sip_offer()),
                };
                match answer {
                    Ok(answer) => {
                        info!(direction = %relay.sip_direction(), "re-INVITE answered");
                        self.sip(CallCommand::AnswerOffer(Bytes::from(answer)));
                    }
                    Err(error) => {
                        info!(%error, "re-INVITE refused");
                        self.sip(CallCommand::RefuseOffer {
                            code: 488,
                            reason: "Not Acceptable Here".to_owned(),
                            warning: Some(warning_for(&error)),
                        });
                    }
                }
            }
            CallEvent::Answer { sdp } => {
                if let Some(relay) = &mut self.relay
                    && let Err(error) = relay.accept_sip_reanswer(&String::from_utf8_lossy(&sdp))
                {
                    warn!(%error, "the answer to our offer cannot be used");
                }
            }
            CallEvent::Info { content_type, body } => {
                debug!(%content_type, body = %String::from_utf8_lossy(&body), "INFO from the SIP side");
            }
            CallEvent::Redirected { code, contacts, .. } => {
                // The SIP driver follows it or ends the call, as its policy says.
                info!(code, ?contacts, "call redirected");
            }
            CallEvent::InfoAnswered { code } => {
                debug!(code, "DTMF INFO answered");
                self.dtmf_in_flight = false;
                if code >= 300 && !self.dtmf.is_empty() {
                    // The far end takes no DTMF by INFO (or there is no dialog for it): the
                    // remaining tones would fare no better.
                    warn!(code, dropped = self.dtmf.len(), "DTMF INFO refused");
                    self.dtmf.clear();
                }
                if !self.dtmf.is_empty() {
                    let spacing = std::time::Duration::from_millis(u64::from(self.dtmf_duration));
                    self.dtmf_due = Some(Instant::now() + spacing);
                }
            }
            CallEvent::Terminated(ending) => {
                self.sip_over = true;
                if ending.cancelled && self.phase == Phase::Ringing {
                    self.missed();
                }
                info!(reason = %ending.reason, "call ended by SIP");
                self.finish(&ending.reason);
            }
        }
    }

    fn provisional(&mut self, code: u16, reason: &str, sdp: Option<Bytes>) {
        if self.phase != Phase::Calling {
            return;
        }
        if let Some(sdp) = sdp {
            let Some(relay) = &mut self.relay else { return };
            match relay.accept_sip_answer(std::time::Instant::now(), &String::from_utf8_lossy(&sdp))
            {
                Ok(Some(answer)) => {
                    self.early = true;
                    self.claim_browser_port();
                    info!(code, "early media");
                    self.update(CallUpdate::EarlyMedia {
                        sdp: answer,
                        call_id: self.call_id.clone(),
                    });
                }
                Ok(None) => {}
                Err(error) => self.hang_up(&format!("the early SDP cannot be used: {error}")),
            }
            return;
        }
        debug!(code, reason, "provisional response");
        if code == 180 || code == 181 {
            self.update(CallUpdate::Ringing);
        } else {
            self.update(CallUpdate::Proceeding { code });
        }
    }

    fn answered(&mut self, sdp: Option<Bytes>) {
        if self.phase != Phase::Calling {
            return;
        }
        let Some(relay) = &mut self.relay else { return };
        let Some(sdp) = sdp else {
            return self.hang_up("the SIP answer has no SDP");
        };
        match relay.accept_sip_answer(std::time::Instant::now(), &String::from_utf8_lossy(&sdp)) {
            Ok(answer) => {
                self.phase = Phase::Up;
                self.ring_deadline = None;
                self.claim_browser_port();
                info!("answered");
                self.update(CallUpdate::Accepted {
                    sdp: answer.filter(|_| !self.early),
                    call_id: self.call_id.clone(),
                });
            }
            Err(error) => self.hang_up(&format!("the SIP answer cannot be used: {error}")),
        }
    }

    /// Ends the call from our side: hangs up SIP, then reports it terminated.
    fn hang_up(&mut self, reason: &str) {
        if self.phase == Phase::Over {
            return;
        }
        if !self.sip_over {
            self.sip(CallCommand::Hangup);
            self.sip_over = true;
        }
        info!(%reason, "hanging up");
        self.finish(reason);
    }

    /// Reports the call terminated (once) and stops the task.
    fn finish(&mut self, reason: &str) {
        if self.phase == Phase::Over {
            return;
        }
        self.phase = Phase::Over;
        self.ring_deadline = None;
        self.update(CallUpdate::Terminated(Ending::new(reason)));
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // A task dropped mid-call (shutdown) still ends the SIP side.
        if !self.sip_over {
            self.sip(CallCommand::Hangup);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The `Warning` of a 488 for a description the relay cannot take: its kind as RFC 3261's
/// warn-code, and the relay's own words (which name the codecs or the profile).
pub(crate) fn warning_for(error: &media::Error) -> Warning {
    let code = match error {
        media::Error::IncompatibleTransport(_) => Warning::INCOMPATIBLE_TRANSPORT,
        media::Error::NoCommonCodec(_) | media::Error::NoAudio => {
            Warning::INCOMPATIBLE_MEDIA_FORMAT
        }
        _ => Warning::MISCELLANEOUS,
    };
    Warning::new(code, error.to_string())
}
