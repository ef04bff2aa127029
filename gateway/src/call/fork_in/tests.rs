use bytes::Bytes;

use super::*;

fn answer(sdp: &str) -> CallCommand {
    CallCommand::Answer {
        sdp: Bytes::from(sdp.to_owned()),
        headers: Vec::new(),
    }
}

fn reject(code: u16) -> CallCommand {
    CallCommand::Reject {
        code,
        reason: format!("reason {code}"),
        warning: None,
    }
}

fn cancel() -> CallEvent {
    CallEvent::Terminated(Ending {
        code: Some(487),
        reason: "487 Request Terminated".into(),
        cancelled: true,
    })
}

/// What was delivered, in short.
fn delivered(fork: &mut IncomingFork) -> Vec<String> {
    std::iter::from_fn(|| fork.poll())
        .map(|deliver| match deliver {
            Deliver::Phone(command) => format!(
                "phone: {}",
                match command {
                    CallCommand::Ring => "ring".to_owned(),
                    CallCommand::Answer { sdp, .. } =>
                        format!("answer {}", String::from_utf8_lossy(&sdp)),
                    CallCommand::Reject { code, .. } => format!("reject {code}"),
                    CallCommand::Hangup => "hangup".to_owned(),
                    CallCommand::AnswerOffer(sdp) =>
                        format!("answer offer {}", String::from_utf8_lossy(&sdp)),
                    other => format!("{other:?}"),
                }
            ),
            Deliver::Branch(branch, event) => format!(
                "{branch}: {}",
                match event {
                    CallEvent::Terminated(ending) => format!(
                        "ended {}{}",
                        ending.reason,
                        if ending.cancelled { " (missed)" } else { "" }
                    ),
                    CallEvent::Offer { .. } => "offer".to_owned(),
                    CallEvent::Confirmed { .. } => "confirmed".to_owned(),
                    CallEvent::InfoAnswered { code } => format!("info {code}"),
                    other => format!("{other:?}"),
                }
            ),
        })
        .collect()
}

/// Every browser rings, the phone hears ringing once; the first answer is the phone's answer,
/// the others are told it was answered elsewhere (not missed); afterwards the phone and the
/// answering browser talk alone.
#[test]
fn the_first_browser_to_answer_takes_the_call() {
    let mut fork = IncomingFork::new(3);
    fork.command(0, CallCommand::Ring);
    fork.command(1, CallCommand::Ring);
    fork.command(2, CallCommand::Ring);
    assert_eq!(delivered(&mut fork), ["phone: ring"]);
    fork.command(1, answer("b"));
    assert_eq!(
        delivered(&mut fork),
        [
            "0: ended answered elsewhere",
            "2: ended answered elsewhere",
            "phone: answer b"
        ]
    );
    // A late answer is not heard; the losers' last words neither.
    fork.command(0, answer("a"));
    fork.command(2, CallCommand::Hangup);
    assert!(delivered(&mut fork).is_empty());
    fork.event(CallEvent::Confirmed { sdp: None });
    fork.event(CallEvent::Offer { sdp: None });
    fork.command(1, CallCommand::AnswerOffer(Bytes::from_static(b"held")));
    assert_eq!(
        delivered(&mut fork),
        ["1: confirmed", "1: offer", "phone: answer offer held"]
    );
    assert!(!fork.is_over());
    fork.command(1, CallCommand::Hangup);
    assert_eq!(delivered(&mut fork), ["phone: hangup"]);
    assert!(fork.is_over());
}

/// The phone's CANCEL reaches every browser still ringing as it is: a missed call for each.
#[test]
fn a_cancel_reaches_every_ringing_browser() {
    let mut fork = IncomingFork::new(2);
    fork.command(0, reject(486));
    fork.event(cancel());
    assert_eq!(
        delivered(&mut fork),
        ["1: ended 487 Request Terminated (missed)"]
    );
    assert!(fork.is_over());
}

/// When every browser refuses, the phone hears the lowest class (the first within it); a
/// browser whose task ended counts as unavailable; a 6xx ends the others at once.
#[test]
fn refusals_are_heard_once_all_have_refused_and_a_6xx_at_once() {
    let mut fork = IncomingFork::new(3);
    fork.command(0, reject(503));
    fork.command(1, reject(486));
    assert!(delivered(&mut fork).is_empty());
    fork.branch_gone(2);
    assert_eq!(delivered(&mut fork), ["phone: reject 486"]);
    assert!(fork.is_over());

    let mut fork = IncomingFork::new(3);
    fork.command(2, CallCommand::Ring);
    fork.command(1, reject(603));
    assert_eq!(
        delivered(&mut fork),
        [
            "phone: ring",
            "0: ended declined elsewhere",
            "2: ended declined elsewhere",
            "phone: reject 603"
        ]
    );
    assert!(fork.is_over());
}

/// An offer of the phone before the answer (an UPDATE in the early dialog) goes to every
/// ringing browser; the first answer to it is the phone's, the others are dropped.
#[test]
fn an_early_offer_is_answered_once() {
    let mut fork = IncomingFork::new(2);
    fork.event(CallEvent::Offer { sdp: None });
    fork.command(1, CallCommand::AnswerOffer(Bytes::from_static(b"one")));
    fork.command(0, CallCommand::AnswerOffer(Bytes::from_static(b"zero")));
    fork.command(
        0,
        CallCommand::Info {
            content_type: "application/dtmf-relay".into(),
            body: Bytes::new(),
        },
    );
    assert_eq!(
        delivered(&mut fork),
        [
            "0: offer",
            "1: offer",
            "phone: answer offer one",
            "0: info 481"
        ]
    );
}

/// The phone's user agent going away ends every branch.
#[test]
fn the_phone_going_away_ends_every_branch() {
    let mut fork = IncomingFork::new(2);
    fork.phone_gone();
    assert_eq!(
        delivered(&mut fork),
        [
            "0: ended 500 the SIP user agent stopped",
            "1: ended 500 the SIP user agent stopped"
        ]
    );
    assert!(fork.is_over());
}
