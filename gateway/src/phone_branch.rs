//! One branch of a phone's call that rings another phone of the local domain: a task that
//! places the call to that phone through the SIP user agent (to the Contact it registered, on
//! its flow) and relays the media between the two phones (`media::RtpPair`: strict source on
//! both legs, each leg plain RTP or SDES-SRTP as its phone agrees).
//!
//! Toward the task that holds the caller's call and speaks for the fork (`inbound::ring_all`),
//! the branch is one more far end that rings, answers (with the answer our relay makes for the
//! caller) or refuses, in the call's own words (`leg`), exactly like a browser's call task; so
//! a user's phones and browsers ring at once and the first to answer takes the call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant as StdInstant;

use bytes::Bytes;
use media::driver::PairSession;
use media::{PairConfig, RtpPair, Side};
use sip::driver::{Account, CallCommand, CallHandle, IncomingCall, OutgoingCall};
use sip::{Credentials, RequestUri, Secret};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span};

use crate::call::{CallServices, warning_for};
use crate::leg::{self, LegCommand, LegEvent, Refusal};

/// What a phone branch starts from.
#[derive(Debug)]
pub(crate) struct PhoneBranch {
    /// The caller's INVITE (its offer, its identity).
    pub(crate) invite: IncomingCall,
    /// The callee.
    pub(crate) user: String,
    /// The callee's phone.
    pub(crate) phone: sip::Binding,
    /// The caller's call's events, from the fork.
    pub(crate) events: mpsc::UnboundedReceiver<LegEvent>,
    /// This branch's commands, to the fork.
    pub(crate) commands: mpsc::UnboundedSender<LegCommand>,
}

/// Starts the branch's task.
pub(crate) fn spawn(services: Arc<CallServices>, branch: PhoneBranch) {
    let span = info_span!("phone", callee = %branch.user, contact = %branch.phone.contact);
    tokio::spawn(run(services, branch).instrument(span));
}

async fn run(services: Arc<CallServices>, branch: PhoneBranch) {
    let PhoneBranch {
        invite,
        user,
        phone,
        mut events,
        commands,
    } = branch;
    let say = |command: LegCommand| {
        let _ = commands.send(command);
    };
    let _gauge = services.metrics.call_started();
    let Some(local) = services.local.clone() else {
        return;
    };
    // An INVITE without an offer: the callee gets ours, its answer makes our offer to the
    // caller (in the 200), whose answer comes in the ACK.
    let offerless = invite.sdp.iter().all(u8::is_ascii_whitespace);
    let media = &services.media;
    let (Ok(caller_ports), Ok(callee_ports)) = (media.ports.allocate(), media.ports.allocate())
    else {
        return say(LegCommand::Reject(Refusal::new(
            503,
            "Service Unavailable",
            None,
        )));
    };
    let mut _ports = vec![
        services.metrics.ports_taken(),
        services.metrics.ports_taken(),
    ];
    let mut session = PairSession::new(caller_ports, callee_ports);
    // Video takes a port pair on each side when the caller offers it and video is relayed.
    let offers_video = media::sdp::Description::parse(&String::from_utf8_lossy(&invite.sdp))
        .is_ok_and(|description| description.video().is_some());
    if offers_video
        && !media.video_codecs.is_empty()
        && let (Ok(caller_video), Ok(callee_video)) =
            (media.ports.allocate(), media.ports.allocate())
    {
        _ports.push(services.metrics.ports_taken());
        _ports.push(services.metrics.ports_taken());
        session.add_video(caller_video, callee_video);
    }
    let video = session.video_ports().map(|(caller, callee)| {
        (
            SocketAddr::new(media.advertised, caller),
            SocketAddr::new(media.advertised, callee),
        )
    });
    let (Some(caller_port), Some(callee_port)) = session.rtp_ports() else {
        return say(LegCommand::Reject(Refusal::new(
            503,
            "Service Unavailable",
            None,
        )));
    };
    let config = PairConfig {
        caller_rtp: SocketAddr::new(media.advertised, caller_port),
        callee_rtp: SocketAddr::new(media.advertised, callee_port),
        codecs: media.codecs.clone(),
        media_timeout: media.media_timeout,
        srtp: media.srtp.clone(),
        video,
        video_codecs: media.video_codecs.clone(),
    };
    let offer = String::from_utf8_lossy(&invite.sdp).into_owned();
    let made = if offerless {
        Ok(RtpPair::offerless(StdInstant::now(), config))
    } else {
        RtpPair::new(StdInstant::now(), config, &offer)
    };
    let (mut pair, callee_offer) = match made {
        Ok(made) => made,
        Err(error) => {
            info!(%error, "the caller's offer cannot be relayed to a phone");
            return say(LegCommand::Reject(Refusal::new(
                488,
                "Not Acceptable Here",
                Some(warning_for(&error)),
            )));
        }
    };
    // The caller as the callee sees it: its address of record.
    let from = RequestUri::parse(&invite.from_uri);
    let caller_user = from
        .as_ref()
        .and_then(RequestUri::user)
        .unwrap_or("anonymous")
        .to_owned();
    let caller_host = from
        .as_ref()
        .and_then(RequestUri::host)
        .unwrap_or(local.domain())
        .to_owned();
    let Some(uri) = RequestUri::parse(&format!("sip:{user}@{}", local.domain())) else {
        return say(LegCommand::Reject(Refusal::new(404, "Not Found", None)));
    };
    let account = Account {
        user: caller_user.clone(),
        domain: caller_host,
        display_name: invite.display_name.clone(),
        // The callee's phone has no credentials to ask for: the gateway is its registrar.
        credentials: Credentials {
            username: caller_user,
            secret: Secret::Password(String::new()),
        },
        user_agent: None,
        contact_params: Vec::new(),
    };
    if callee_offer.contains("a=crypto:") && phone.target.transport != sip::Transport::Tls {
        crate::call::warn_keys_in_clear();
    }
    let (callee, mut callee_events) = services.sip.invite(OutgoingCall {
        account,
        uri,
        sdp: Bytes::from(callee_offer),
        headers: Vec::new(),
        call_id: uuid::Uuid::new_v4().simple().to_string(),
        server: None,
        binding: Some(phone),
    });
    let mut branch = Branch {
        sip: &services.sip,
        callee,
        commands: &commands,
        answered: false,
        rung: false,
        early: None,
        awaiting_ack_answer: offerless,
        over: false,
    };
    let ring_deadline = Instant::now() + media.ring_timeout;
    session.flush(&mut pair);
    while !branch.over {
        tokio::select! {
            biased;
            input = session.next() => {
                session.feed(&mut pair, input);
                session.flush(&mut pair);
                if let Some(media::Event::Failed(reason)) = pair.poll_event() {
                    info!(%reason, "media failed");
                    branch.hang_up_both();
                }
            }
            event = callee_events.recv() => match event {
                Some(event) => {
                    if let Some(event) = leg::from_sip(event) {
                        branch.callee_said(&mut pair, event);
                        session.flush(&mut pair);
                    }
                }
                None => branch.callee_gone(),
            },
            event = events.recv() => match event {
                Some(event) => {
                    branch.caller_said(&mut pair, event);
                    session.flush(&mut pair);
                }
                None => {
                    // The fork's task is gone: so is the caller's call.
                    branch.sip.call(branch.callee, CallCommand::Hangup);
                    branch.over = true;
                }
            },
            () = tokio::time::sleep_until(ring_deadline), if !branch.answered => {
                info!("no answer: ring timeout");
                branch.sip.call(branch.callee, CallCommand::Hangup);
                branch.say(LegCommand::Reject(Refusal::new(480, "Temporarily Unavailable", None)));
                branch.over = true;
            }
        }
    }
    debug!("phone branch over");
}

/// The branch's signalling between the fork (the caller) and the callee's SIP call.
struct Branch<'a> {
    sip: &'a sip::driver::SipHandle,
    callee: CallHandle,
    commands: &'a mpsc::UnboundedSender<LegCommand>,
    answered: bool,
    rung: bool,
    /// Our answer to the caller given with the callee's early media (its 200 repeats it).
    early: Option<String>,
    /// The caller's INVITE had no offer: its answer to ours comes in the ACK.
    awaiting_ack_answer: bool,
    over: bool,
}

impl Branch<'_> {
    fn say(&self, command: LegCommand) {
        let _ = self.commands.send(command);
    }

    fn to_callee(&self, command: LegCommand) {
        self.sip.call(self.callee, leg::to_sip(command));
    }

    /// The media failed: both calls end.
    fn hang_up_both(&mut self) {
        self.to_callee(LegCommand::Hangup);
        self.say(if self.answered {
            LegCommand::Hangup
        } else {
            LegCommand::Reject(Refusal::new(500, "Server Internal Error", None))
        });
        self.over = true;
    }

    fn callee_gone(&mut self) {
        self.say(if self.answered {
            LegCommand::Hangup
        } else {
            LegCommand::Reject(Refusal::new(500, "Server Internal Error", None))
        });
        self.over = true;
    }

    /// An event of the callee's call.
    fn callee_said(&mut self, pair: &mut RtpPair, event: LegEvent) {
        match event {
            LegEvent::Progress { code, sdp, .. } => {
                // The callee's early media: relayed at once, the caller gets our answer in a
                // 183 (its 200 repeats it). A later early description only moves the leg.
                // (Not for a caller that made no offer: ours could only go in a reliable
                // response, and the 200 carries it.)
                if let Some(sdp) = sdp.filter(|_| !self.awaiting_ack_answer) {
                    if self.early.is_some() {
                        let _ = pair.accept_early_answer(StdInstant::now(), &sdp);
                        return;
                    }
                    match pair.accept_early_answer(StdInstant::now(), &sdp) {
                        Ok(answer) => {
                            info!(code, "early media from the callee");
                            self.rung = true;
                            self.early = Some(answer.clone());
                            self.say(LegCommand::EarlyMedia { sdp: answer });
                            return;
                        }
                        Err(error) => info!(%error, "the callee's early media cannot be used"),
                    }
                }
                // Ringing once.
                if (180..=183).contains(&code) && !std::mem::replace(&mut self.rung, true) {
                    self.say(LegCommand::Ring);
                }
            }
            LegEvent::Answered { sdp } => {
                let answer = match (sdp, &self.early) {
                    (Some(sdp), _) => pair.accept_answer(StdInstant::now(), &sdp),
                    // The offer was answered in a reliable 183.
                    (None, Some(_)) => {
                        pair.confirm(StdInstant::now());
                        Ok(String::new())
                    }
                    (None, None) => Err(media::Error::Sdp("the callee's answer has no SDP".into())),
                };
                match answer {
                    Ok(answer) => {
                        info!("the callee answered");
                        self.answered = true;
                        // After early media the 200 repeats the 183's answer (RFC 3261
                        // section 13.2.1).
                        let answer = self.early.clone().unwrap_or(answer);
                        self.say(LegCommand::Answer {
                            sdp: answer,
                            headers: Vec::new(),
                        });
                    }
                    Err(error) => {
                        info!(%error, "the callee's answer cannot be used");
                        self.to_callee(LegCommand::Hangup);
                        self.say(LegCommand::Reject(Refusal::new(
                            488,
                            "Not Acceptable Here",
                            Some(warning_for(&error)),
                        )));
                        self.over = true;
                    }
                }
            }
            LegEvent::Offer { sdp } => {
                let reply = reoffer(pair, Side::Callee, sdp.as_deref());
                self.to_callee(reply);
            }
            LegEvent::Answer { sdp } => {
                let _ = pair.accept_reanswer(Side::Callee, &sdp);
            }
            LegEvent::Dtmf { digit, duration } => self.say(LegCommand::Dtmf { digit, duration }),
            // A phone's out-of-band keyframe request goes to the other phone the same way.
            LegEvent::PictureFastUpdate => self.say(LegCommand::PictureFastUpdate),
            LegEvent::Confirmed { .. }
            | LegEvent::DtmfAnswered { .. }
            | LegEvent::MessageAnswered { .. }
            | LegEvent::OfferRefused { .. } => {}
            LegEvent::Said { content_type, body } => {
                self.say(LegCommand::Relay { content_type, body });
            }
            // Only a front-end's own leg reads messages.
            LegEvent::Message(_) | LegEvent::Notification { .. } => {}
            LegEvent::Terminated(ending) => {
                info!(reason = %ending.reason, "the callee's call ended");
                self.say(if self.answered {
                    LegCommand::Hangup
                } else {
                    // The callee's refusal is the caller's (the fork picks the best of all),
                    // but for a challenge: the gateway has no credentials for the callee's
                    // phone, and the caller could not answer it either.
                    let code = ending
                        .code
                        .filter(|code| *code >= 300 && !matches!(code, 401 | 407))
                        .unwrap_or(480);
                    let phrase = ending
                        .reason
                        .strip_prefix(&code.to_string())
                        .map(str::trim)
                        .filter(|phrase| !phrase.is_empty() && ending.code == Some(code))
                        .unwrap_or("Temporarily Unavailable");
                    LegCommand::Reject(Refusal::new(code, phrase, None))
                });
                self.over = true;
            }
        }
    }

    /// An event of the caller's call, through the fork.
    fn caller_said(&mut self, pair: &mut RtpPair, event: LegEvent) {
        match event {
            LegEvent::Terminated(ending) => {
                // Another branch answered: the callee's phone hears it in the CANCEL's Reason.
                let command = if ending.elsewhere {
                    LegCommand::AnsweredElsewhere
                } else {
                    LegCommand::Hangup
                };
                info!(reason = %ending.reason, "the caller's call ended");
                self.to_callee(command);
                self.over = true;
            }
            LegEvent::Offer { sdp } => {
                let reply = reoffer(pair, Side::Caller, sdp.as_deref());
                self.say(reply);
            }
            LegEvent::Answer { sdp } => {
                let _ = pair.accept_reanswer(Side::Caller, &sdp);
            }
            // The caller's answer to our offer in the 200 (its INVITE had none).
            LegEvent::Confirmed { sdp } if std::mem::take(&mut self.awaiting_ack_answer) => {
                let taken = sdp
                    .ok_or_else(|| media::Error::Sdp("the ACK has no answer".into()))
                    .and_then(|sdp| pair.accept_reanswer(Side::Caller, &sdp));
                if let Err(error) = taken {
                    info!(%error, "the caller's answer cannot be used");
                    self.to_callee(LegCommand::Hangup);
                    self.say(LegCommand::Hangup);
                    self.over = true;
                }
            }
            LegEvent::Dtmf { digit, duration } => {
                self.to_callee(LegCommand::Dtmf { digit, duration });
            }
            LegEvent::PictureFastUpdate => self.to_callee(LegCommand::PictureFastUpdate),
            LegEvent::Progress { .. }
            | LegEvent::Answered { .. }
            | LegEvent::Confirmed { .. }
            | LegEvent::DtmfAnswered { .. }
            | LegEvent::MessageAnswered { .. }
            | LegEvent::OfferRefused { .. } => {}
            LegEvent::Said { content_type, body } => {
                self.to_callee(LegCommand::Relay { content_type, body });
            }
            // Only a front-end's own leg reads messages.
            LegEvent::Message(_) | LegEvent::Notification { .. } => {}
        }
    }
}

/// The answer to one phone's new offer (or our offer for its offerless re-INVITE), answered
/// here for its leg.
fn reoffer(pair: &mut RtpPair, side: Side, sdp: Option<&str>) -> LegCommand {
    let answer = match sdp {
        Some(sdp) => pair.answer_offer(side, sdp),
        None => Ok(pair.offer(side)),
    };
    match answer {
        Ok(answer) => LegCommand::AnswerOffer(answer),
        Err(error) => LegCommand::RefuseOffer(Refusal::new(
            488,
            "Not Acceptable Here",
            Some(warning_for(&error)),
        )),
    }
}
