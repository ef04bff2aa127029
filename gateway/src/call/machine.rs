//! A call's decisions, sans-IO: fed the front-end's commands, the far end's events, the relay's
//! media events and `now`, it answers with commands for the far end, news for the front-end
//! and the next time it must be woken. It owns the relay (itself sans-IO) for what the
//! signalling does with it (answers, re-offers, early media); the call's task only moves its
//! packets and runs this machine, which is tested on a fake clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use media::Relay;
use tracing::{debug, info, warn};

use super::interface::{CallUpdate, Caller, Command, Ending};
use super::warning_for;
use crate::leg::{LegCommand, LegEvent, Refusal, Text};

/// The timers and codes a call keeps to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// How long an incoming call rings before it is given up (480).
    pub(crate) ring_timeout: Duration,
    /// How long an outgoing call may ring unanswered before it is cancelled.
    pub(crate) no_answer_timeout: Duration,
    /// How long the front-end has to answer the far end's new offer.
    pub(crate) update_timeout: Duration,
    /// The status of declining an incoming call: 486 or 603.
    pub(crate) decline_code: u16,
}

/// What the machine has for the world.
#[derive(Debug)]
pub(crate) enum Output {
    /// For the far end (the SIP call, or the browser it is bridged to).
    FarEnd(LegCommand),
    /// For the front-end.
    Update(CallUpdate),
    /// The relay's ICE ufrag is known: the browser's datagrams on the shared port that carry
    /// it are this call's.
    ClaimBrowserPort(String),
}

/// Where the call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Outgoing: the request is out.
    Calling,
    /// Incoming: ringing, waiting for the front-end's answer.
    Ringing,
    /// Answered.
    Up,
    /// Over.
    Over,
}

/// One call's state.
pub(crate) struct Machine {
    policy: Policy,
    phase: Phase,
    /// The far end has ended on its own, or been told: no hang-up left to send.
    far_end_over: bool,
    call_id: Option<String>,
    caller: Option<Caller>,
    relay: Relay,
    /// The relay's ufrag the browser port is claimed for (a new one after an ICE restart is
    /// claimed too).
    claimed: Option<String>,
    /// Early media was given to the front-end: the answer has no SDP for it.
    early: bool,
    /// When an unanswered call stops ringing.
    ring_deadline: Option<Instant>,
    /// DTMF tones waiting to go, one INFO at a time: the next after the previous one's final
    /// response, spaced by the tone's duration (a phone's dialler takes them in order).
    dtmf: VecDeque<char>,
    dtmf_duration: u32,
    /// An INFO is waiting for its response.
    dtmf_in_flight: bool,
    /// When the next tone goes.
    dtmf_due: Option<Instant>,
    /// Messages waiting to go, one MESSAGE at a time: the far end's answers name no message,
    /// so the one in flight is the one answered (and the order is kept).
    messages: VecDeque<Box<Text>>,
    /// The id and timestamp of the message waiting for its answer.
    message_in_flight: Option<(String, String)>,
    /// The front-end's new offer is with the far end.
    updating: bool,
    /// The answer to the far end's new offer, held while the front-end is asked (its
    /// `UpdateReceived`), until it answers or `update_deadline`.
    held_answer: Option<String>,
    update_deadline: Option<Instant>,
    out: VecDeque<Output>,
}

impl Machine {
    /// An outgoing call whose request the task has just sent.
    pub(crate) fn outgoing(now: Instant, policy: Policy, relay: Relay, call_id: String) -> Self {
        let mut machine = Machine::new(policy, Phase::Calling, relay, Some(call_id), None);
        machine.ring_deadline = Some(now + policy.no_answer_timeout);
        machine.update(CallUpdate::Progress);
        machine
    }

    /// An incoming call: announced to the front-end with the offer made for it, ringing.
    pub(crate) fn incoming(
        now: Instant,
        policy: Policy,
        relay: Relay,
        announce: CallUpdate,
    ) -> Self {
        let (call_id, caller) = match &announce {
            CallUpdate::Incoming {
                caller, call_id, ..
            } => (call_id.clone(), Some(caller.clone())),
            _ => (None, None),
        };
        let mut machine = Machine::new(policy, Phase::Ringing, relay, call_id, caller);
        machine.claim_browser_port();
        machine.update(announce);
        machine.far_end(LegCommand::Ring);
        machine.ring_deadline = Some(now + policy.ring_timeout);
        machine
    }

    fn new(
        policy: Policy,
        phase: Phase,
        relay: Relay,
        call_id: Option<String>,
        caller: Option<Caller>,
    ) -> Self {
        Machine {
            policy,
            phase,
            far_end_over: false,
            call_id,
            caller,
            relay,
            claimed: None,
            early: false,
            ring_deadline: None,
            dtmf: VecDeque::new(),
            dtmf_duration: 0,
            dtmf_in_flight: false,
            dtmf_due: None,
            messages: VecDeque::new(),
            message_in_flight: None,
            updating: false,
            held_answer: None,
            update_deadline: None,
            out: VecDeque::new(),
        }
    }

    /// The relay, for the task to move its packets.
    pub(crate) fn relay_mut(&mut self) -> &mut Relay {
        &mut self.relay
    }

    /// Whether the call is over (the task may end).
    pub(crate) fn is_over(&self) -> bool {
        self.phase == Phase::Over
    }

    /// The next output.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Machine::handle_timeout`] is due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [self.ring_deadline, self.dtmf_due, self.update_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// The task goes away without the call having ended (shutdown): the far end's hang-up, if
    /// one is still owed.
    pub(crate) fn abandon(&mut self) -> Option<LegCommand> {
        (!std::mem::replace(&mut self.far_end_over, true)).then_some(LegCommand::Hangup)
    }

    fn update(&mut self, update: CallUpdate) {
        self.out.push_back(Output::Update(update));
    }

    fn far_end(&mut self, command: LegCommand) {
        self.out.push_back(Output::FarEnd(command));
    }

    /// Claims the browser's datagrams on the shared port, once the relay's ufrag exists.
    fn claim_browser_port(&mut self) {
        if let Some(ufrag) = self.relay.ice_ufrag()
            && self.claimed.as_ref() != Some(&ufrag)
        {
            self.claimed = Some(ufrag.clone());
            self.out.push_back(Output::ClaimBrowserPort(ufrag));
        }
    }

    /// A command from the front-end.
    pub(crate) fn handle_command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Hangup => match self.phase {
                Phase::Ringing => {
                    let code = self.policy.decline_code;
                    let reason = if code == 603 { "Decline" } else { "Busy Here" };
                    self.far_end(LegCommand::Reject(Refusal::new(code, reason, None)));
                    self.far_end_over = true;
                    self.finish(&format!("{code} {reason}"));
                }
                _ => self.hang_up("local hangup"),
            },
            Command::Refuse { code, reason, text } => match self.phase {
                Phase::Ringing => {
                    let warning = sip::Warning::new(sip::Warning::MISCELLANEOUS, &text);
                    self.far_end(LegCommand::Reject(Refusal::new(
                        code,
                        &reason,
                        Some(warning),
                    )));
                    self.far_end_over = true;
                    self.finish(&format!("{code} {reason} ({text})"));
                }
                _ => self.hang_up(&text),
            },
            Command::Answer { sdp, headers } => self.answer(now, &sdp, headers),
            // An answer to our offer (a new offer says `a=setup:actpass`, RFC 5763; an offer
            // of ours the client never answered is superseded by its own).
            Command::Update { sdp }
                if self.relay.browser_update_pending() && !media::sdp::is_dtls_offer(&sdp) =>
            {
                self.browser_update_answer(now, &sdp);
            }
            Command::Update { sdp } => self.reoffer(now, &sdp),
            Command::Message(text) => {
                if self.phase != Phase::Up {
                    return self.message_answered(
                        text.message_id,
                        text.timestamp,
                        481,
                        "Call/Transaction Does Not Exist (the call is not answered)",
                    );
                }
                self.messages.push_back(text);
                if self.message_in_flight.is_none() {
                    self.send_message();
                }
            }
            Command::Dtmf { digits, duration } => {
                self.dtmf.extend(digits.chars());
                self.dtmf_duration = duration;
                if !self.dtmf_in_flight && self.dtmf_due.is_none() {
                    self.send_dtmf();
                }
            }
        }
    }

    /// The front-end is gone: so is the call.
    pub(crate) fn front_end_gone(&mut self) {
        self.hang_up("the client disconnected");
    }

    fn answer(&mut self, now: Instant, sdp: &str, headers: Vec<(String, String)>) {
        if self.phase != Phase::Ringing {
            return;
        }
        match self.relay.accept_browser_answer(now, sdp) {
            Ok(sip_sdp) => {
                self.far_end(LegCommand::Answer {
                    sdp: sip_sdp,
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
                self.far_end(LegCommand::Reject(Refusal::new(
                    488,
                    "Not Acceptable Here",
                    Some(warning_for(&error)),
                )));
                self.far_end_over = true;
                self.finish(&format!("the answer cannot be used: {error}"));
            }
        }
    }

    /// The front-end's answer to the far end's new offer: the far end gets its answer now.
    fn browser_update_answer(&mut self, now: Instant, sdp: &str) {
        match self.relay.accept_browser_update(now, sdp) {
            // The client took less than it was offered (declined the video the far end added,
            // or answered a stream inactive): so does the far end's answer.
            Ok(Some(answer)) if self.held_answer.is_some() => self.held_answer = Some(answer),
            Ok(_) => {}
            Err(error) => warn!(%error, "the client's answer to the update cannot be used"),
        }
        self.release_held_answer();
    }

    /// Gives the far end the answer held for it.
    fn release_held_answer(&mut self) {
        self.update_deadline = None;
        if let Some(answer) = self.held_answer.take() {
            info!(direction = %self.relay.sip_direction(), "re-INVITE answered");
            self.far_end(LegCommand::AnswerOffer(answer));
        }
    }

    /// The front-end's new offer mid-call: re-offered to the far end, one at a time; one that
    /// changes nothing the far end hears (an ICE restart) is answered on the browser leg alone.
    fn reoffer(&mut self, now: Instant, sdp: &str) {
        let refused = match (self.phase, self.updating) {
            (Phase::Up, false) if self.held_answer.is_some() => {
                "491 Request Pending (the far end's update waits for your answer)".to_owned()
            }
            (Phase::Up, false)
                if self.relay.browser_offer_concerns_sip(sdp).ok() == Some(false) =>
            {
                match self.relay.answer_browser_offer(now, sdp) {
                    Ok(answer) => {
                        info!("new offer for the browser leg alone");
                        // An ICE restart gives the leg a new ufrag.
                        self.claim_browser_port();
                        return self.update(CallUpdate::Updated { sdp: answer });
                    }
                    Err(error) => format!("488 the new offer cannot be used: {error}"),
                }
            }
            (Phase::Up, false) => match self.relay.browser_reoffer(sdp) {
                Ok(offer) => {
                    self.updating = true;
                    info!("new offer from the front-end: re-INVITE");
                    return self.far_end(LegCommand::Reoffer(offer));
                }
                Err(error) => format!("488 the new offer cannot be used: {error}"),
            },
            (Phase::Up, true) => "491 Request Pending (an update is in progress)".to_owned(),
            _ => "the call is not answered: no update yet".to_owned(),
        };
        self.update(CallUpdate::UpdateFailed { reason: refused });
    }

    /// Sends the next message waiting.
    fn send_message(&mut self) {
        if let Some(text) = self.messages.pop_front() {
            self.message_in_flight = Some((text.message_id.clone(), text.timestamp.clone()));
            self.far_end(LegCommand::Message(text));
        }
    }

    fn message_answered(&mut self, message_id: String, timestamp: String, code: u16, reason: &str) {
        self.update(CallUpdate::MessageAnswered {
            message_id,
            timestamp,
            code,
            reason: reason.to_owned(),
        });
    }

    /// Sends the next DTMF tone (to SIP, one INFO).
    fn send_dtmf(&mut self) {
        let Some(digit) = self.dtmf.pop_front() else {
            return;
        };
        let duration = self.dtmf_duration;
        self.dtmf_in_flight = true;
        self.far_end(LegCommand::Dtmf { digit, duration });
    }

    /// Timers that are due: the ring or no-answer timeout, the next DTMF tone.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.ring_deadline.is_some_and(|deadline| deadline <= now) {
            self.ring_timeout();
        }
        if self.dtmf_due.is_some_and(|due| due <= now) {
            self.dtmf_due = None;
            self.send_dtmf();
        }
        if self.update_deadline.is_some_and(|due| due <= now) {
            // The client did not answer in time: the far end gets the session as it stands.
            info!("no answer from the client to the update: answered here");
            self.release_held_answer();
        }
    }

    fn ring_timeout(&mut self) {
        self.ring_deadline = None;
        if self.phase == Phase::Calling {
            // Our call only rings: CANCEL it rather than ring for ever.
            let seconds = self.policy.no_answer_timeout.as_secs();
            info!(seconds, "no answer: CANCEL");
            return self.hang_up(&format!(
                "408 Request Timeout (no answer within {seconds} s)"
            ));
        }
        if self.phase != Phase::Ringing {
            return;
        }
        info!("no answer: ring timeout");
        self.far_end(LegCommand::Reject(Refusal::new(
            480,
            "Temporarily Unavailable",
            None,
        )));
        self.far_end_over = true;
        self.missed();
        self.finish("480 no answer (ring timeout)");
    }

    fn missed(&mut self) {
        if let Some(caller) = self.caller.clone() {
            self.update(CallUpdate::Missed { caller });
        }
    }

    /// What the relay's media did since the last time: established, or failed.
    pub(crate) fn handle_media_events(&mut self) {
        let mut failed = None;
        let mut connected = false;
        while let Some(event) = self.relay.poll_event() {
            match event {
                media::Event::Connected => connected = true,
                media::Event::Failed(reason) => failed = Some(reason),
                // One INFO at a time in the dialog: a keyframe request goes when no DTMF tone
                // is on its way (the relay asks again for the next one).
                media::Event::KeyframeByInfo => {
                    if !self.dtmf_in_flight && self.dtmf.is_empty() {
                        self.dtmf_in_flight = true;
                        self.far_end(LegCommand::PictureFastUpdate);
                    }
                }
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

    /// An event of the far end.
    pub(crate) fn handle_far_end(&mut self, now: Instant, event: LegEvent) {
        match event {
            LegEvent::Progress { code, reason, sdp } => self.provisional(now, code, &reason, sdp),
            LegEvent::Answered { sdp } => self.answered(now, sdp),
            LegEvent::Confirmed { sdp } => {
                if let Some(sdp) = sdp
                    && let Err(error) = self.relay.accept_sip_answer(now, &sdp)
                {
                    self.hang_up(&format!("the SIP answer cannot be used: {error}"));
                }
            }
            LegEvent::Offer { sdp } => {
                let offered = sdp.is_some();
                let answer = match sdp {
                    Some(sdp) => self.relay.answer_sip_offer(&sdp),
                    None => Ok(self.relay.sip_offer()),
                };
                match answer {
                    Ok(answer) => {
                        if offered && self.ask_front_end(now) {
                            self.held_answer = Some(answer);
                        } else {
                            info!(direction = %self.relay.sip_direction(), "re-INVITE answered");
                            self.far_end(LegCommand::AnswerOffer(answer));
                        }
                    }
                    Err(error) => {
                        info!(%error, "re-INVITE refused");
                        self.far_end(LegCommand::RefuseOffer(Refusal::new(
                            488,
                            "Not Acceptable Here",
                            Some(warning_for(&error)),
                        )));
                    }
                }
            }
            LegEvent::Answer { sdp } if std::mem::take(&mut self.updating) => {
                match self.relay.finish_browser_reoffer(now, &sdp) {
                    Ok(answer) => {
                        info!(direction = %self.relay.sip_direction(), "update answered");
                        self.claim_browser_port();
                        self.update(CallUpdate::Updated { sdp: answer });
                    }
                    // The far end took an offer the front-end's side cannot follow: the two
                    // sides no longer agree, so the call ends.
                    Err(error) => {
                        self.update(CallUpdate::UpdateFailed {
                            reason: error.to_string(),
                        });
                        self.hang_up(&format!("the answer to the update cannot be used: {error}"));
                    }
                }
            }
            LegEvent::Answer { sdp } => {
                if let Err(error) = self.relay.accept_sip_reanswer(&sdp) {
                    warn!(%error, "the answer to our offer cannot be used");
                }
            }
            LegEvent::OfferRefused { code, reason } => {
                if std::mem::take(&mut self.updating) {
                    info!(code, %reason, "update refused");
                    self.relay.abandon_browser_reoffer();
                    self.update(CallUpdate::UpdateFailed { reason });
                }
            }
            LegEvent::PictureFastUpdate => {
                debug!("the far end asks for a keyframe by INFO");
                self.relay.keyframe_requested_by_info(now);
            }
            LegEvent::MessageAnswered { code, reason } => {
                let Some((message_id, timestamp)) = self.message_in_flight.take() else {
                    debug!(code, "an answer to no message");
                    return;
                };
                debug!(%message_id, code, "message answered");
                self.message_answered(message_id, timestamp, code, &reason);
                self.send_message();
            }
            LegEvent::Said { content_type, body } => {
                match crate::leg::read_said(&content_type, &body) {
                    Some(LegEvent::Message(received)) => {
                        self.update(CallUpdate::Message(received));
                    }
                    Some(LegEvent::Notification { message_id, state }) => {
                        self.update(CallUpdate::Notification { message_id, state });
                    }
                    _ => {}
                }
            }
            LegEvent::Message(received) => self.update(CallUpdate::Message(received)),
            LegEvent::Notification { message_id, state } => {
                self.update(CallUpdate::Notification { message_id, state });
            }
            LegEvent::Dtmf { digit, duration } => {
                // The front-end's protocol has no DTMF toward the browser: the tone is in the
                // media too (telephone-event) where the phone sends it there.
                debug!(%digit, duration, "DTMF from the far end");
            }
            LegEvent::DtmfAnswered { code } => {
                debug!(code, "DTMF answered");
                self.dtmf_in_flight = false;
                if code >= 300 && !self.dtmf.is_empty() {
                    // The far end takes no DTMF this way (or there is no dialog for it): the
                    // remaining tones would fare no better.
                    warn!(code, dropped = self.dtmf.len(), "DTMF refused");
                    self.dtmf.clear();
                }
                if !self.dtmf.is_empty() {
                    let spacing = Duration::from_millis(u64::from(self.dtmf_duration));
                    self.dtmf_due = Some(now + spacing);
                }
            }
            LegEvent::Terminated(ending) => {
                self.far_end_over = true;
                if ending.cancelled && self.phase == Phase::Ringing {
                    self.missed();
                }
                info!(reason = %ending.reason, "call ended by the far end");
                self.finish(&ending.reason);
            }
        }
    }

    /// Whether the far end's new offer (already taken by the relay) changes what the
    /// front-end sends or receives, so that the front-end is asked (`UpdateReceived`) before
    /// the far end gets its answer. Refreshes and moves that change nothing for it are
    /// answered at once.
    fn ask_front_end(&mut self, now: Instant) -> bool {
        if self.phase != Phase::Up || self.updating || self.held_answer.is_some() {
            return false;
        }
        match self.relay.browser_update() {
            Ok(Some(offer)) => {
                info!(direction = %self.relay.sip_direction(), "re-INVITE: asking the client");
                self.update_deadline = Some(now + self.policy.update_timeout);
                self.update(CallUpdate::UpdateReceived { sdp: offer });
                true
            }
            Ok(None) => false,
            Err(error) => {
                warn!(%error, "no offer for the client");
                false
            }
        }
    }

    fn provisional(&mut self, now: Instant, code: u16, reason: &str, sdp: Option<String>) {
        if self.phase != Phase::Calling {
            return;
        }
        if let Some(sdp) = sdp {
            match self.relay.accept_sip_answer(now, &sdp) {
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

    fn answered(&mut self, now: Instant, sdp: Option<String>) {
        if self.phase != Phase::Calling {
            return;
        }
        let Some(sdp) = sdp else {
            return self.hang_up("the SIP answer has no SDP");
        };
        match self.relay.accept_sip_answer(now, &sdp) {
            Ok(answer) => {
                self.phase = Phase::Up;
                self.ring_deadline = None;
                self.claim_browser_port();
                info!("answered");
                let sdp = answer.filter(|_| !self.early);
                self.update(CallUpdate::Accepted {
                    sdp,
                    call_id: self.call_id.clone(),
                });
            }
            Err(error) => self.hang_up(&format!("the SIP answer cannot be used: {error}")),
        }
    }

    /// Ends the call from our side: hangs up the far end, then reports it terminated.
    fn hang_up(&mut self, reason: &str) {
        if self.phase == Phase::Over {
            return;
        }
        if !self.far_end_over {
            self.far_end(LegCommand::Hangup);
            self.far_end_over = true;
        }
        info!(%reason, "hanging up");
        self.finish(reason);
    }

    /// Reports the call terminated (once).
    fn finish(&mut self, reason: &str) {
        if self.phase == Phase::Over {
            return;
        }
        self.phase = Phase::Over;
        self.ring_deadline = None;
        self.dtmf_due = None;
        // Messages not answered yet failed with the call (before the front-end forgets it).
        let unsent = self.message_in_flight.take().into_iter().chain(
            std::mem::take(&mut self.messages)
                .into_iter()
                .map(|text| (text.message_id, text.timestamp)),
        );
        for (message_id, timestamp) in unsent.collect::<Vec<_>>() {
            self.message_answered(message_id, timestamp, 481, "the call ended");
        }
        self.update(CallUpdate::Terminated(Ending::new(reason)));
    }
}

#[cfg(test)]
mod tests;
