//! The call machine on a fake clock: `now` is made up, nothing sleeps, no socket is bound.

use std::time::{Duration, Instant, SystemTime};

use media::{Codec, Relay, RelayConfig};

use crate::leg::LegEnding;

use super::*;

const CHROME: &str = include_str!("../../../../tests/data/sdp/chrome-offer-audio.sdp");
const BARESIP_ANSWER: &str = include_str!("../../../../tests/data/sdp/baresip-answer.sdp");
const SIPP_OFFER: &str = include_str!("../../../../tests/data/sdp/sipp-offer.sdp");

const POLICY: Policy = Policy {
    ring_timeout: Duration::from_secs(60),
    no_answer_timeout: Duration::from_secs(120),
    update_timeout: Duration::from_secs(10),
    decline_code: 486,
};

fn config() -> RelayConfig {
    media::init_crypto();
    RelayConfig {
        browser: "127.0.0.1:40000".parse().unwrap(),
        sip_rtp: "127.0.0.1:30000".parse().unwrap(),
        codecs: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma],
        media_timeout: Duration::from_secs(30),
        ice_timeout: Duration::from_secs(30),
        wallclock: SystemTime::UNIX_EPOCH,
        cname: "test".into(),
        srtp: media::srtp::SrtpPolicy::never(),
        sip_video: None,
        video_codecs: Vec::new(),
    }
}

fn outgoing(now: Instant) -> Machine {
    let (relay, _) = Relay::outgoing(now, config(), CHROME).unwrap();
    Machine::outgoing(now, POLICY, relay, "call-1".into())
}

fn caller() -> Caller {
    Caller {
        uri: "bob@example.com".into(),
        display_name: None,
    }
}

fn incoming(now: Instant) -> Machine {
    let (relay, offer) = Relay::incoming(now, config(), Some(SIPP_OFFER)).unwrap();
    let announce = CallUpdate::Incoming {
        caller: caller(),
        sdp: offer,
        call_id: Some("call-2".into()),
        headers: Default::default(),
    };
    Machine::incoming(now, POLICY, relay, announce)
}

/// The outputs, with the updates and far-end commands told apart (and the port claim kept).
fn outputs(machine: &mut Machine) -> Vec<String> {
    std::iter::from_fn(|| machine.poll_output())
        .map(|output| match output {
            Output::FarEnd(command) => format!("far end: {}", describe(&command)),
            Output::Update(CallUpdate::Incoming { .. }) => "update: incoming".to_owned(),
            Output::Update(CallUpdate::EarlyMedia { .. }) => "update: early media".to_owned(),
            Output::Update(CallUpdate::Accepted { sdp, .. }) => {
                format!("update: accepted (sdp: {})", sdp.is_some())
            }
            Output::Update(CallUpdate::Terminated(ending)) => {
                format!("update: terminated {}", ending.text)
            }
            Output::Update(update) => format!("update: {update:?}"),
            Output::ClaimBrowserPort(_) => "claim the browser port".to_owned(),
        })
        .collect()
}

fn describe(command: &LegCommand) -> String {
    match command {
        LegCommand::Reject(refusal) => format!("reject {} {}", refusal.code, refusal.reason),
        LegCommand::Dtmf { digit, .. } => format!("DTMF {digit}"),
        LegCommand::Message(text) => format!("message {}", text.message_id),
        LegCommand::Answer { .. } => "answer".to_owned(),
        LegCommand::Reoffer(sdp) if sdp.contains("a=sendonly") => "re-offer sendonly".to_owned(),
        LegCommand::Reoffer(_) => "re-offer".to_owned(),
        other => format!("{other:?}"),
    }
}

fn sip_answer() -> Option<String> {
    Some(BARESIP_ANSWER.to_owned())
}

#[test]
fn an_outgoing_call_rings_gets_early_media_then_the_answer_and_ends() {
    let now = Instant::now();
    let mut call = outgoing(now);
    assert_eq!(outputs(&mut call), ["update: Progress"]);
    let provisional = |code, sdp| LegEvent::Progress {
        code,
        reason: "x".into(),
        sdp,
    };
    call.handle_far_end(now, provisional(180, None));
    call.handle_far_end(now, provisional(183, sip_answer()));
    assert_eq!(
        outputs(&mut call),
        [
            "update: Ringing",
            "claim the browser port",
            "update: early media"
        ]
    );
    // The answer after early media carries no SDP for the front-end: it has it.
    call.handle_far_end(now, LegEvent::Answered { sdp: sip_answer() });
    assert_eq!(outputs(&mut call), ["update: accepted (sdp: false)"]);
    assert_eq!(call.poll_timeout(), None, "no more no-answer timer");
    call.handle_far_end(
        now,
        LegEvent::Terminated(LegEnding {
            code: None,
            reason: "remote hangup".into(),
            cancelled: false,
            elsewhere: false,
        }),
    );
    assert_eq!(outputs(&mut call), ["update: terminated remote hangup"]);
    assert!(call.is_over());
    assert!(
        call.abandon().is_none(),
        "the far end ended it: nothing owed"
    );
}

#[test]
fn an_outgoing_call_that_only_rings_is_cancelled_at_the_no_answer_timeout() {
    let start = Instant::now();
    let mut call = outgoing(start);
    outputs(&mut call);
    let deadline = start + POLICY.no_answer_timeout;
    assert_eq!(call.poll_timeout(), Some(deadline));
    call.handle_timeout(deadline - Duration::from_millis(1));
    assert!(outputs(&mut call).is_empty());
    call.handle_timeout(deadline);
    assert_eq!(
        outputs(&mut call),
        [
            "far end: Hangup",
            "update: terminated 408 Request Timeout (no answer within 120 s)"
        ]
    );
    assert!(call.is_over());
}

#[test]
fn an_incoming_call_rings_and_is_missed_at_the_ring_timeout() {
    let start = Instant::now();
    let mut call = incoming(start);
    assert_eq!(
        outputs(&mut call),
        [
            "claim the browser port",
            "update: incoming",
            "far end: Ring"
        ]
    );
    call.handle_timeout(start + POLICY.ring_timeout);
    assert_eq!(
        outputs(&mut call),
        [
            "far end: reject 480 Temporarily Unavailable",
            "update: Missed { caller: Caller { uri: \"bob@example.com\", display_name: None } }",
            "update: terminated 480 no answer (ring timeout)"
        ]
    );
    assert!(call.abandon().is_none());
}

#[test]
fn declining_uses_the_decline_code_and_a_cancel_while_ringing_is_missed() {
    let now = Instant::now();
    let mut call = incoming(now);
    outputs(&mut call);
    call.handle_command(now, Command::Hangup);
    assert_eq!(
        outputs(&mut call),
        [
            "far end: reject 486 Busy Here",
            "update: terminated 486 Busy Here"
        ]
    );
    let mut call = incoming(now);
    outputs(&mut call);
    call.handle_far_end(
        now,
        LegEvent::Terminated(LegEnding {
            code: Some(487),
            reason: "487 Request Terminated".into(),
            cancelled: true,
            elsewhere: false,
        }),
    );
    let out = outputs(&mut call);
    assert!(out[0].starts_with("update: Missed"), "{out:?}");
    assert_eq!(out[1], "update: terminated 487 Request Terminated");
    // Answered elsewhere (not cancelled as such): ended, not missed.
    let mut call = incoming(now);
    outputs(&mut call);
    call.handle_far_end(
        now,
        LegEvent::Terminated(LegEnding {
            code: Some(487),
            reason: "answered elsewhere".into(),
            cancelled: false,
            elsewhere: false,
        }),
    );
    assert_eq!(
        outputs(&mut call),
        ["update: terminated answered elsewhere"]
    );
}

#[test]
fn dtmf_goes_one_info_at_a_time_spaced_by_the_duration() {
    let start = Instant::now();
    let mut call = outgoing(start);
    call.handle_far_end(start, LegEvent::Answered { sdp: sip_answer() });
    outputs(&mut call);
    call.handle_command(
        start,
        Command::Dtmf {
            digits: "12".into(),
            duration: 100,
        },
    );
    assert_eq!(outputs(&mut call), ["far end: DTMF 1"]);
    // Nothing more until the INFO is answered, then the tone's duration later.
    assert_eq!(call.poll_timeout(), None);
    let answered = start + Duration::from_millis(40);
    call.handle_far_end(answered, LegEvent::DtmfAnswered { code: 200 });
    assert!(outputs(&mut call).is_empty());
    let due = answered + Duration::from_millis(100);
    assert_eq!(call.poll_timeout(), Some(due));
    call.handle_timeout(due);
    assert_eq!(outputs(&mut call), ["far end: DTMF 2"]);
    // A refused tone drops the rest.
    call.handle_command(
        due,
        Command::Dtmf {
            digits: "34".into(),
            duration: 100,
        },
    );
    call.handle_far_end(due, LegEvent::DtmfAnswered { code: 200 });
    call.handle_timeout(due + Duration::from_millis(100));
    assert_eq!(outputs(&mut call), ["far end: DTMF 3"]);
    call.handle_far_end(due, LegEvent::DtmfAnswered { code: 415 });
    assert_eq!(call.poll_timeout(), None);
    assert!(outputs(&mut call).is_empty());
}

fn text(id: &str) -> Command {
    Command::Message(Box::new(crate::leg::Text {
        from: protocol::Aor::parse("alice@example.com").unwrap(),
        display_name: None,
        to: protocol::Aor::parse("bob@example.com").unwrap(),
        message_id: id.into(),
        timestamp: "2026-12-04T10:00:00Z".into(),
        content_type: "text/plain".into(),
        content: "hi".into(),
    }))
}

fn answered_message(id: &str, code: u16, reason: &str) -> String {
    format!(
        "update: {:?}",
        CallUpdate::MessageAnswered {
            message_id: id.into(),
            timestamp: "2026-12-04T10:00:00Z".into(),
            code,
            reason: reason.into(),
        }
    )
}

/// Messages go one MESSAGE at a time, each answer naming the one in flight; before the
/// answer there is no dialog for them, and those not answered when the call ends failed.
#[test]
fn messages_go_one_at_a_time_and_fail_with_the_call() {
    let now = Instant::now();
    let mut call = outgoing(now);
    outputs(&mut call);
    call.handle_command(now, text("early"));
    assert_eq!(
        outputs(&mut call),
        [answered_message(
            "early",
            481,
            "Call/Transaction Does Not Exist (the call is not answered)"
        )]
    );
    call.handle_far_end(now, LegEvent::Answered { sdp: sip_answer() });
    outputs(&mut call);
    for id in ["m1", "m2", "m3"] {
        call.handle_command(now, text(id));
    }
    assert_eq!(outputs(&mut call), ["far end: message m1"]);
    let answer = |code: u16, reason: &str| LegEvent::MessageAnswered {
        code,
        reason: reason.into(),
    };
    call.handle_far_end(now, answer(200, "OK"));
    assert_eq!(
        outputs(&mut call),
        [
            answered_message("m1", 200, "OK"),
            "far end: message m2".into()
        ]
    );
    // A refusal is that message's alone: the next one goes.
    call.handle_far_end(now, answer(415, "Unsupported Media Type"));
    assert_eq!(
        outputs(&mut call),
        [
            answered_message("m2", 415, "Unsupported Media Type"),
            "far end: message m3".into()
        ]
    );
    call.handle_command(now, text("m4"));
    call.handle_far_end(
        now,
        LegEvent::Terminated(LegEnding::new(None, "remote hangup", false)),
    );
    assert_eq!(
        outputs(&mut call),
        [
            answered_message("m3", 481, "the call ended"),
            answered_message("m4", 481, "the call ended"),
            "update: terminated remote hangup".into()
        ]
    );
    call.handle_far_end(now, answer(200, "OK"));
    assert!(outputs(&mut call).is_empty());
}

#[test]
fn a_front_end_that_goes_away_hangs_up_once() {
    let now = Instant::now();
    let mut call = outgoing(now);
    outputs(&mut call);
    call.front_end_gone();
    assert_eq!(
        outputs(&mut call),
        [
            "far end: Hangup",
            "update: terminated the client disconnected"
        ]
    );
    call.handle_command(now, Command::Hangup);
    assert!(outputs(&mut call).is_empty(), "over: nothing more");
    assert!(call.abandon().is_none());
    // A call dropped mid-way (shutdown) still owes the far end its hang-up.
    let mut call = outgoing(now);
    assert!(matches!(call.abandon(), Some(LegCommand::Hangup)));
}

#[test]
fn an_update_from_the_front_end_is_reoffered_and_answered_or_refused() {
    let now = Instant::now();
    let mut call = outgoing(now);
    call.handle_command(
        now,
        Command::Update {
            sdp: CHROME.to_owned(),
        },
    );
    let out = outputs(&mut call);
    assert_eq!(
        out.last().map(String::as_str),
        Some("update: UpdateFailed { reason: \"the call is not answered: no update yet\" }")
    );
    call.handle_far_end(now, LegEvent::Answered { sdp: sip_answer() });
    outputs(&mut call);
    // The same direction again (an ICE restart): the browser leg alone answers it.
    call.handle_command(
        now,
        Command::Update {
            sdp: CHROME.to_owned(),
        },
    );
    let out = outputs(&mut call);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        out[0].starts_with("update: Updated"),
        "no re-INVITE: {out:?}"
    );
    // Hold: the browser's offer says sendonly, and so does the re-INVITE's.
    let hold = CHROME.replace("a=sendrecv", "a=sendonly");
    call.handle_command(now, Command::Update { sdp: hold.clone() });
    assert_eq!(outputs(&mut call), ["far end: re-offer sendonly"]);
    // One at a time.
    call.handle_command(now, Command::Update { sdp: hold });
    assert_eq!(
        outputs(&mut call),
        ["update: UpdateFailed { reason: \"491 Request Pending (an update is in progress)\" }"]
    );
    let held = BARESIP_ANSWER.replace("a=sendrecv", "a=recvonly");
    call.handle_far_end(now, LegEvent::Answer { sdp: held });
    let out = outputs(&mut call);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].starts_with("update: Updated"), "{out:?}");
    assert!(
        out[0].contains("a=recvonly"),
        "the browser's answer: {out:?}"
    );
    // A refused update leaves the call as it was.
    call.handle_command(
        now,
        Command::Update {
            sdp: CHROME.to_owned(),
        },
    );
    assert_eq!(outputs(&mut call), ["far end: re-offer"]);
    call.handle_far_end(
        now,
        LegEvent::OfferRefused {
            code: 488,
            reason: "488 Not Acceptable Here".into(),
        },
    );
    assert_eq!(
        outputs(&mut call),
        ["update: UpdateFailed { reason: \"488 Not Acceptable Here\" }"]
    );
    assert!(!call.is_over());
}

/// A phone's hold asks the front-end first (its answer releases the 200's answer), or, when it
/// does not answer in time, is answered with the session as it stands; a move that changes
/// nothing for the front-end is answered at once. An offer of the front-end's crossing ours
/// gets 491 while ours waits, and supersedes ours once the wait is over; so does the far end's
/// next change.
#[test]
fn a_far_end_hold_asks_the_front_end_then_answers() {
    let now = Instant::now();
    let mut call = outgoing(now);
    call.handle_far_end(now, LegEvent::Answered { sdp: sip_answer() });
    outputs(&mut call);
    let hold = BARESIP_ANSWER.replace("a=sendrecv", "a=sendonly");
    call.handle_far_end(now, LegEvent::Offer { sdp: Some(hold) });
    let out = outputs(&mut call);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].starts_with("update: UpdateReceived"), "{out:?}");
    assert!(
        out[0].contains("a=sendonly"),
        "our offer to the browser: {out:?}"
    );
    let due = now + Duration::from_secs(10);
    assert_eq!(call.poll_timeout(), Some(due));
    // An offer of the front-end's own crosses ours: refused while ours waits.
    let hold = CHROME.replace("a=sendrecv", "a=sendonly");
    call.handle_command(now, Command::Update { sdp: hold });
    let out = outputs(&mut call);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        out[0].contains("UpdateFailed") && out[0].contains("491"),
        "{out:?}"
    );
    // Nobody answers: the far end gets the answer at the deadline.
    call.handle_timeout(due);
    let out = outputs(&mut call);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        out[0].contains("AnswerOffer") && out[0].contains("a=recvonly"),
        "{out:?}"
    );
    // The same offer again (a refresh): answered at once, nobody asked.
    let again = BARESIP_ANSWER.replace("a=sendrecv", "a=sendonly");
    call.handle_far_end(due, LegEvent::Offer { sdp: Some(again) });
    let out = outputs(&mut call);
    assert!(out[0].contains("AnswerOffer"), "{out:?}");
    // The unanswered offer was given up: the resume asks the front-end again.
    let resume = BARESIP_ANSWER.to_owned();
    call.handle_far_end(due, LegEvent::Offer { sdp: Some(resume) });
    let out = outputs(&mut call);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        out[0].starts_with("update: UpdateReceived") && out[0].contains("a=sendrecv"),
        "{out:?}"
    );
    // Unanswered again; then the front-end sends an offer of its own (a hold): it is taken as
    // one, not as an answer, once the wait is over.
    call.handle_timeout(due + Duration::from_secs(10));
    let out = outputs(&mut call);
    assert!(out[0].contains("AnswerOffer"), "{out:?}");
    let hold = CHROME.replace("a=sendrecv", "a=sendonly");
    call.handle_command(due, Command::Update { sdp: hold });
    assert_eq!(outputs(&mut call), ["far end: re-offer sendonly"]);
}
