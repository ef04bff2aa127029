//! One call's task: it ties the far end (a SIP call through the driver's handle, a bridge to
//! another browser, or a fork set of both ringing at once), the media relay and its sockets,
//! and the front-end's session.
//!
//! The call's decisions are the sans-IO [`machine::Machine`]; this task is its I/O: the select
//! loop over the front-end's commands, the far end's events, the machine's timers and the
//! call's media (a `media::driver::MediaSession`, which reads and writes the relay's packets). The task owns everything the call holds (the relay inside the machine,
//! the SIP leg's ports, its claim on the shared browser port), so that whatever ends it (a
//! hang-up, a failure, the front-end going away) releases all of it. It never waits on the
//! front-end: its news goes through an unbounded queue, in order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use machine::{Machine, Output, Policy};

use media::driver::{MediaSession, PortPair};
use media::srtp::{SrtpMode, SrtpPolicy};
use media::{Relay, RelayConfig};
use sip::Warning;
use sip::driver::{CallEvents, IncomingCall, OutgoingCall};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

pub(crate) mod awaiting;
mod fork;
pub(crate) mod fork_in;
mod interface;
mod machine;
mod record;
mod services;
use crate::leg::{self, LegCommand, LegEnding, LegEvent, Refusal};
use crate::local::{Arriving, BridgeEnd};
use crate::metrics::Gauge;
use crate::metrics::calls::Direction;
use fork::Fork;
pub(crate) use interface::{CallUpdate, Caller, Command, Ending, FarEnd, Incoming, StartCall};
pub(crate) use services::{CallServices, Media};

/// The connection's end of a call's task.
#[derive(Debug)]
pub(crate) struct CallTask {
    /// Commands from the client; dropping it ends the call.
    pub(crate) commands: mpsc::UnboundedSender<Command>,
}

/// Starts an outgoing call's task.
pub(crate) fn outgoing(
    services: Arc<CallServices>,
    start: StartCall,
    far_end: FarEnd,
    reports: mpsc::UnboundedSender<(String, CallUpdate)>,
) -> CallTask {
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let span = info_span!("call", session = %start.session, direction = "out");
    let session = start.session.clone();
    let task = async move {
        let far_end = match (far_end, &services.local) {
            (
                FarEnd::Local {
                    browsers,
                    mut phones,
                },
                Some(local),
            ) => {
                let user = start.uri.user().unwrap_or_default();
                local.add_stored_phones(user, &mut phones).await;
                FarEnd::Local { browsers, phones }
            }
            (far_end, _) => far_end,
        };
        let mut call = Call::new(services, session, reports, Direction::Out);
        match call.start_outgoing(start, far_end) {
            Ok(events) => call.run(commands_rx, events).await,
            Err(reason) => call.update(CallUpdate::Terminated(Ending::new(reason))),
        }
    };
    tokio::spawn(task.instrument(span));
    CallTask { commands }
}

/// Starts an incoming call's task, whose far end is `from`.
pub(crate) fn incoming(
    services: Arc<CallServices>,
    incoming: Incoming,
    from: Arriving,
    reports: mpsc::UnboundedSender<(String, CallUpdate)>,
) -> CallTask {
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let span = info_span!("call", session = %incoming.session, direction = "in");
    let task = async move {
        let session = incoming.session.clone();
        let mut call = Call::new(services, session, reports, Direction::In);
        if let Some(events) = call.start_incoming(incoming, from) {
            call.run(commands_rx, vec![events]).await;
        }
    };
    tokio::spawn(task.instrument(span));
    CallTask { commands }
}

/// How the call task reaches one branch of its far end.
#[derive(Debug)]
enum Leg {
    /// A SIP call, through the driver.
    Sip(sip::driver::CallHandle),
    /// Another browser of the local domain, through the bridge's end this side holds.
    Bridge(BridgeEnd),
}

/// How the call task hears one branch of its far end.
#[derive(Debug)]
enum Events {
    /// A SIP call's events, in SIP's words.
    Sip(CallEvents),
    /// A bridge's, in the call's.
    Bridge(mpsc::UnboundedReceiver<LegEvent>),
}

/// The far end: its branches (one, but for a call to a user of the local domain who takes
/// calls in several places) and the fork set's state, which makes them one far end to the
/// machine.
#[derive(Debug)]
struct FarEnds {
    legs: Vec<Leg>,
    fork: Fork,
}

impl FarEnds {
    fn one(leg: Leg) -> FarEnds {
        FarEnds {
            legs: vec![leg],
            fork: Fork::new(1),
        }
    }

    /// Sends the fork's commands to their branches.
    fn flush(&mut self, sip: &sip::driver::SipHandle) {
        while let Some((branch, command)) = self.fork.poll_command() {
            match &self.legs[branch] {
                Leg::Sip(call) => sip.call(*call, leg::to_sip(command)),
                Leg::Bridge(end) => end.command(command),
            }
        }
    }
}

/// The task's side of a call: the machine and the I/O around it.
struct Call {
    services: Arc<CallServices>,
    session: String,
    reports: mpsc::UnboundedSender<(String, CallUpdate)>,
    /// The call's decisions, once its relay exists.
    machine: Option<Machine>,
    far_end: Option<FarEnds>,
    /// The call's media I/O: its SIP leg's ports, its claim on the browser port.
    media: Option<MediaSession>,
    _gauges: Vec<Gauge>,
    /// Its entry in the metrics.
    record: record::Record,
}

impl Call {
    fn new(
        services: Arc<CallServices>,
        session: String,
        reports: mpsc::UnboundedSender<(String, CallUpdate)>,
        direction: crate::metrics::calls::Direction,
    ) -> Call {
        let gauge = services.metrics.call_started();
        Call {
            record: record::Record::new(services.metrics.clone(), direction),
            services,
            session,
            reports,
            machine: None,
            far_end: None,
            media: None,
            _gauges: vec![gauge],
        }
    }

    /// News for the front-end, in order. The call's end is preceded by its quality summary.
    fn update(&mut self, update: CallUpdate) {
        if matches!(update, CallUpdate::Terminated(_))
            && let Some(machine) = &mut self.machine
            && let Some(quality) = self.record.finish(machine.relay_mut().quality())
        {
            let _ = self
                .reports
                .send((self.session.clone(), CallUpdate::Quality(Box::new(quality))));
        }
        self.record.update(&update);
        let _ = self.reports.send((self.session.clone(), update));
    }

    fn policy(&self) -> Policy {
        let media = &self.services.media;
        Policy {
            ring_timeout: media.ring_timeout,
            no_answer_timeout: media.no_answer_timeout,
            update_timeout: media.update_timeout,
            decline_code: media.decline_code,
        }
    }

    /// The relay's settings for a call whose SIP leg takes a port pair (and a second one for
    /// video when the first offer, `sdp`, has video the configuration relays), with this SRTP
    /// policy.
    fn relay_config(&mut self, srtp: SrtpPolicy, sdp: Option<&str>) -> Result<RelayConfig, String> {
        let media = &self.services.media;
        let unavailable =
            |error: &dyn std::fmt::Display| format!("503 Service Unavailable ({error})");
        let pair = media
            .ports
            .allocate()
            .map_err(|error| unavailable(&error))?;
        let port = pair
            .rtp
            .local_addr()
            .map_err(|error| unavailable(&error))?
            .port();
        self._gauges.push(self.services.metrics.ports_taken());
        let mut session = MediaSession::new(&media.browser, Some(pair));
        // Without a pair for video (none left), the video is declined and the call goes on.
        let mut sip_video = None;
        if let Some((pair, addr, gauge)) = sdp.and_then(|sdp| video_pair(&self.services, sdp)) {
            self._gauges.push(gauge);
            session.add_video_ports(pair);
            sip_video = Some(addr);
        }
        self.media = Some(session);
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
            srtp,
            sip_video,
            video_codecs: media.video_codecs.clone(),
        })
    }

    /// Places the call; the events of each branch of the far end.
    fn start_outgoing(&mut self, start: StartCall, far_end: FarEnd) -> Result<Vec<Events>, String> {
        let srtp = outgoing_srtp(&self.services.media.srtp, &start.uri);
        let config = self.relay_config(srtp, Some(&start.sdp))?;
        let (relay, sip_offer) = Relay::outgoing(std::time::Instant::now(), config, &start.sdp)
            .map_err(|error| match error {
                media::Error::NoCommonCodec(reason) => reason,
                other => format!("488 Not Acceptable Here ({other})"),
            })?;
        let call_id = uuid::Uuid::new_v4().simple().to_string();
        info!(uri = %start.uri, %call_id, "calling");
        if sip_offer.contains("a=crypto:") {
            let encrypted = match &far_end {
                FarEnd::Sip {
                    server: Some(server),
                } => services::is_tls_uri(server),
                FarEnd::Sip { server: None } => self.services.media.signalling_encrypted,
                // Each phone's own flow, over whatever it registered with.
                FarEnd::Local { phones, .. } => phones
                    .iter()
                    .all(|phone| phone.target.transport == sip::Transport::Tls),
            } || start.uri.as_str().to_ascii_lowercase().starts_with("sips:");
            if !encrypted {
                warn_keys_in_clear();
            }
        }
        let mut legs = Vec::new();
        let mut events = Vec::new();
        match (far_end, self.services.local.as_ref()) {
            (FarEnd::Local { browsers, phones }, Some(local)) => {
                info!(
                    browsers = browsers.len(),
                    phones = phones.len(),
                    "calling a user of the local domain"
                );
                for callee in &browsers {
                    let invite = IncomingCall {
                        from_uri: format!("sip:{}@{}", start.account.user, start.account.domain),
                        display_name: start.account.display_name.clone(),
                        call_id: call_id.clone(),
                        sdp: Bytes::from(sip_offer.clone()),
                        headers: start.headers.clone(),
                    };
                    let (end, branch) = local.bridge(&self.services.sip, callee, invite);
                    legs.push(Leg::Bridge(end));
                    events.push(Events::Bridge(branch));
                }
                // The user agent knows the phones' flows; each branch has a Call-ID of its own.
                for (n, phone) in phones.into_iter().enumerate() {
                    let branch_id = match n {
                        0 => call_id.clone(),
                        n => format!("{call_id}-{n}"),
                    };
                    let (leg, branch) =
                        self.invite(&start, &sip_offer, branch_id, None, Some(phone));
                    legs.push(leg);
                    events.push(branch);
                }
            }
            (FarEnd::Local { .. }, None) => {
                return Err("500 a local user without a local domain".to_owned());
            }
            (FarEnd::Sip { server }, _) => {
                let (leg, branch) = self.invite(&start, &sip_offer, call_id.clone(), server, None);
                legs.push(leg);
                events.push(branch);
            }
        }
        if legs.is_empty() {
            return Err("480 Temporarily Unavailable (nowhere to ring)".to_owned());
        }
        let fork = Fork::new(legs.len());
        self.far_end = Some(FarEnds { legs, fork });
        let machine = Machine::outgoing(std::time::Instant::now(), self.policy(), relay, call_id);
        self.machine = Some(machine);
        self.apply();
        Ok(events)
    }

    /// Sends the INVITE of an outgoing call (or of one of its branches) through the SIP user
    /// agent.
    fn invite(
        &self,
        start: &StartCall,
        sdp: &str,
        call_id: String,
        server: Option<String>,
        binding: Option<sip::Binding>,
    ) -> (Leg, Events) {
        let (call, events) = self.services.sip.invite(OutgoingCall {
            account: start.account.clone(),
            uri: start.uri.clone(),
            sdp: Bytes::from(sdp.to_owned()),
            headers: start.headers.clone(),
            call_id,
            server,
            binding,
        });
        (Leg::Sip(call), Events::Sip(events))
    }

    /// Sets up an incoming call: its far end's events, or none when it was refused at once.
    fn start_incoming(&mut self, incoming: Incoming, from: Arriving) -> Option<Events> {
        let invite = incoming.invite;
        let (leg, events) = match from {
            Arriving::Sip(events) => (Leg::Sip(incoming.call), Events::Sip(events)),
            Arriving::Bridge { end, events } => (Leg::Bridge(end), Events::Bridge(events)),
        };
        self.far_end = Some(FarEnds::one(leg));
        let caller = Caller {
            uri: invite.from_uri.trim_start_matches("sip:").to_owned(),
            display_name: invite.display_name.clone(),
        };
        let offer = String::from_utf8_lossy(&invite.sdp).into_owned();
        let offer = (!offer.trim().is_empty()).then_some(offer);
        let srtp = self.services.media.srtp.clone();
        let made = self
            .relay_config(srtp, offer.as_deref())
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
                self.send_far_end(LegCommand::Reject(Refusal::new(code, phrase, warning)));
                self.far_end = None;
                // Never announced to the front-end: it ends without a word to the client.
                self.update(CallUpdate::Terminated(Ending::new(reason)));
                return None;
            }
        };
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
        info!(from = %caller.uri, call_id = %invite.call_id, "incoming call");
        let keyed = offer
            .as_deref()
            .is_some_and(|sdp| sdp.contains("a=crypto:"));
        if keyed && self.services.media.srtp.mode != SrtpMode::Never && !arrived_over_tls(&invite) {
            warn_keys_in_clear();
        }
        let announce = CallUpdate::Incoming {
            caller,
            sdp: browser_offer,
            call_id: Some(invite.call_id.clone()),
            headers,
        };
        let machine = Machine::incoming(std::time::Instant::now(), self.policy(), relay, announce);
        self.machine = Some(machine);
        self.apply();
        Some(events)
    }

    /// A command for the far end, to the branches it concerns (through a bridge to another
    /// browser, or to SIP); what it means at once when no branch can take it.
    fn send_far_end(&mut self, command: LegCommand) -> Option<LegEvent> {
        let far_end = self.far_end.as_mut()?;
        let answer = far_end.fork.command(command);
        far_end.flush(&self.services.sip);
        answer
    }

    /// Carries out what the machine decided.
    fn apply(&mut self) {
        while let Some(output) = self.machine.as_mut().and_then(Machine::poll_output) {
            match output {
                Output::FarEnd(command) => {
                    if let Some(event) = self.send_far_end(command)
                        && let Some(machine) = &mut self.machine
                    {
                        machine.handle_far_end(std::time::Instant::now(), event);
                    }
                }
                Output::Update(update) => self.update(update),
                Output::ClaimBrowserPort(ufrag) => {
                    if let Some(media) = &mut self.media {
                        media.claim(ufrag);
                    }
                }
            }
        }
    }

    fn is_over(&self) -> bool {
        self.machine.as_ref().is_none_or(Machine::is_over)
    }

    async fn run(&mut self, mut commands: mpsc::UnboundedReceiver<Command>, events: Vec<Events>) {
        let mut branches: Vec<Option<Events>> = events.into_iter().map(Some).collect();
        self.drain();
        // The call's own timer, kept across the loop and moved only when its deadline does: a
        // timer made per pass would be entered into the runtime's timer wheel and taken out
        // again for every packet the call relays.
        let mut timer = Box::pin(tokio::time::sleep_until(Instant::now()));
        let mut armed: Option<Instant> = None;
        while !self.is_over() {
            // The media session stays in the call (the machine may claim the browser port at
            // any time); the select borrows it and the machine side by side.
            let (Some(machine), Some(media), Some(far_end)) = (
                self.machine.as_mut(),
                self.media.as_mut(),
                self.far_end.as_mut(),
            ) else {
                break;
            };
            let call_deadline = machine.poll_timeout().map(Instant::from_std);
            // The media's tally for the metrics shares the call's timer.
            let tally_at = self.record.tally_at();
            let wake = call_deadline.map_or(tally_at, |at| at.min(tally_at));
            if armed != Some(wake) {
                timer.as_mut().reset(wake);
                armed = Some(wake);
            }
            // Media first: it is what arrives 100 times a second; signalling waits a packet.
            tokio::select! {
                biased;
                input = media.next() => media.feed(machine.relay_mut(), input),
                command = commands.recv() => match command {
                    Some(command) => {
                        if let Command::Update { sdp } = &command
                            && !machine.relay_mut().has_sip_video()
                        {
                            // The browser adds video: a port pair for it first.
                            take_video_ports(&self.services, media, machine.relay_mut(), sdp, &mut self._gauges);
                        }
                        machine.handle_command(std::time::Instant::now(), command)
                    }
                    // The front-end is gone: so is the call.
                    None => machine.front_end_gone(),
                },
                (branch, event) = next_event(&mut branches) => {
                    let heard = match event {
                        Some(event) => far_end.fork.event(branch, event),
                        None => {
                            branches[branch] = None;
                            far_end.fork.gone(branch, gone())
                        }
                    };
                    far_end.flush(&self.services.sip);
                    if let Some(event) = heard {
                        if let LegEvent::Offer { sdp: Some(sdp) } = &event
                            && !machine.relay_mut().has_sip_video()
                        {
                            // The far end adds video: a port pair for it first.
                            take_video_ports(&self.services, media, machine.relay_mut(), sdp, &mut self._gauges);
                        }
                        machine.handle_far_end(std::time::Instant::now(), event);
                    }
                }
                () = &mut timer => {
                    // Fired: armed again on the next pass, even for the same deadline.
                    armed = None;
                    let now = Instant::now();
                    if now >= tally_at {
                        self.record.tally(machine.relay_mut().quality());
                    }
                    if call_deadline.is_some_and(|at| at <= now) {
                        machine.handle_timeout(std::time::Instant::now());
                    }
                }
            }
            self.drain();
        }
        if let Some(machine) = &mut self.machine {
            // DTLS close_notify and the last RTCP go out.
            machine.relay_mut().close();
        }
        self.drain();
        debug!("call task ended");
    }

    /// Sends what the relay has for the network, then lets the machine see its events and
    /// carries out what it decided.
    fn drain(&mut self) {
        let (Some(machine), Some(media)) = (&mut self.machine, &mut self.media) else {
            return;
        };
        media.flush(machine.relay_mut());
        machine.handle_media_events();
        self.apply();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // A task dropped mid-call (shutdown) still ends the far end.
        if let Some(command) = self.machine.as_mut().and_then(Machine::abandon) {
            self.send_far_end(command);
        }
        if let Some(machine) = self.machine.as_mut() {
            self.record.finish(machine.relay_mut().quality());
        }
    }
}

/// The next message of any of `receivers` still open, with its index; `None` when that
/// receiver's senders are all gone (a branch's driver, bridge or call task).
pub(crate) async fn next_of<T>(
    receivers: &mut [Option<mpsc::UnboundedReceiver<T>>],
) -> (usize, Option<T>) {
    std::future::poll_fn(|context| {
        for (index, receiver) in receivers.iter_mut().enumerate() {
            if let Some(receiver) = receiver
                && let std::task::Poll::Ready(message) = receiver.poll_recv(context)
            {
                return std::task::Poll::Ready((index, message));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// The next event of any branch still open, in the call's words, with its index; `None` when
/// that branch's channel closed. SIP events that mean nothing to a call are passed over.
async fn next_event(branches: &mut [Option<Events>]) -> (usize, Option<LegEvent>) {
    std::future::poll_fn(|context| {
        for (index, branch) in branches.iter_mut().enumerate() {
            loop {
                let polled = match branch {
                    Some(Events::Sip(events)) => match events.poll_recv(context) {
                        std::task::Poll::Ready(Some(event)) => match leg::from_sip(event) {
                            Some(event) => std::task::Poll::Ready(Some(event)),
                            None => continue,
                        },
                        std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
                        std::task::Poll::Pending => std::task::Poll::Pending,
                    },
                    Some(Events::Bridge(events)) => events.poll_recv(context),
                    None => std::task::Poll::Pending,
                };
                if let std::task::Poll::Ready(event) = polled {
                    return std::task::Poll::Ready((index, event));
                }
                break;
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// How a branch whose channel closed without a final word ended.
fn gone() -> LegEnding {
    LegEnding::new(Some(500), "500 the SIP user agent stopped", false)
}

/// The SRTP policy of an outgoing call to `uri`: best-effort SRTP is not offered to telephone
/// numbers, which end at PSTN gateways that take no keys (and some refuse an offer with them).
fn outgoing_srtp(policy: &SrtpPolicy, uri: &sip::RequestUri) -> SrtpPolicy {
    if policy.mode == SrtpMode::Optional && looks_like_telephone_number(uri) {
        return SrtpPolicy::never();
    }
    policy.clone()
}

/// `user=phone`, a `tel:` URI, or a user part that is a number (`+`, digits and the visual
/// separators of RFC 3966), with at least three digits.
fn looks_like_telephone_number(uri: &sip::RequestUri) -> bool {
    let text = uri.as_str().to_ascii_lowercase();
    if text.starts_with("tel:") || text.contains(";user=phone") {
        return true;
    }
    let Some(user) = uri.user() else {
        return false;
    };
    let digits = user.bytes().filter(u8::is_ascii_digit).count();
    digits >= 3
        && user.bytes().enumerate().all(|(at, byte)| {
            byte.is_ascii_digit() || b"-.()".contains(&byte) || (at == 0 && byte == b'+')
        })
}

/// Whether the INVITE came over TLS (or a secure WebSocket): its topmost Via says so.
fn arrived_over_tls(invite: &IncomingCall) -> bool {
    invite
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("via") || name == "v")
        .is_some_and(|(_, via)| {
            let via = via.trim_start().to_ascii_uppercase();
            via.starts_with("SIP/2.0/TLS") || via.starts_with("SIP/2.0/WSS")
        })
}

/// SDES keys travel in the SDP: over a transport that is not encrypted, anyone on the path can
/// read them and decrypt the call. Said for every call, within the log's budget (a few lines
/// per ten seconds for the whole process, with the count of those held back).
pub(crate) fn warn_keys_in_clear() {
    static LIMIT: std::sync::OnceLock<std::sync::Mutex<crate::log_limit::LogLimit>> =
        std::sync::OnceLock::new();
    let allowed = LIMIT
        .get_or_init(|| std::sync::Mutex::new(crate::log_limit::LogLimit::new()))
        .lock()
        .map(|mut limit| limit.allow(std::time::Instant::now()))
        .unwrap_or(Some(0));
    if let Some(held_back) = allowed {
        warn!(
            held_back,
            "SRTP keys (SDES) are in an SDP that goes over an unencrypted SIP transport: anyone \
             on the path can read them; use TLS toward SIP (sips: or transport=tls) or set \
             media.srtp = \"never\""
        );
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

/// A video port pair for a call whose offer (the first, or a later one from either side) has
/// video, when the configuration relays video and the range has a pair left: the pair, its
/// address as written in SDP, and its gauge.
fn video_pair(services: &CallServices, offer: &str) -> Option<(PortPair, SocketAddr, Gauge)> {
    let media = &services.media;
    let offers_video = media::sdp::Description::parse(offer)
        .is_ok_and(|description| description.video().is_some());
    if !offers_video || media.video_codecs.is_empty() {
        return None;
    }
    let pair = media.ports.allocate().ok()?;
    let port = pair.rtp.local_addr().ok()?.port();
    let gauge = services.metrics.ports_taken();
    Some((pair, SocketAddr::new(media.advertised, port), gauge))
}

/// Takes a video port pair for a call whose new offer brings video it did not have (see
/// [`video_pair`]); without one the video is declined.
fn take_video_ports(
    services: &CallServices,
    session: &mut MediaSession,
    relay: &mut Relay,
    offer: &str,
    gauges: &mut Vec<Gauge>,
) {
    if let Some((pair, addr, gauge)) = video_pair(services, offer) {
        gauges.push(gauge);
        session.add_video_ports(pair);
        relay.set_sip_video(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> sip::RequestUri {
        sip::RequestUri::parse(text).expect("a URI")
    }

    #[test]
    fn best_effort_srtp_is_not_offered_to_telephone_numbers() {
        let optional = SrtpPolicy::with_all_suites(SrtpMode::Optional);
        for number in [
            "sip:+31201234567@pstn.example.com",
            "sip:0049-30-1234@example.com",
            "sip:bob@example.com;user=phone",
            "tel:+1-201-555-0123",
        ] {
            assert_eq!(
                outgoing_srtp(&optional, &uri(number)).mode,
                SrtpMode::Never,
                "{number}"
            );
        }
        for person in [
            "sip:bob@example.com",
            "sip:12@example.com",
            "sip:b0b1@example.com",
        ] {
            assert_eq!(outgoing_srtp(&optional, &uri(person)), optional, "{person}");
        }
        let mandatory = SrtpPolicy::with_all_suites(SrtpMode::Mandatory);
        assert_eq!(
            outgoing_srtp(&mandatory, &uri("sip:+3120@example.com")),
            mandatory
        );
    }
}
