use super::*;

fn answer(sdp: &str) -> LegCommand {
    LegCommand::Answer {
        sdp: sdp.to_owned(),
        headers: Vec::new(),
    }
}

fn reject(code: u16) -> LegCommand {
    LegCommand::Reject(Refusal::new(code, &format!("reason {code}"), None))
}

fn cancel() -> LegEvent {
    LegEvent::Terminated(LegEnding::new(Some(487), "487 Request Terminated", true))
}

/// What was delivered, in short.
fn delivered(fork: &mut IncomingFork) -> Vec<String> {
    std::iter::from_fn(|| fork.poll())
        .map(|deliver| match deliver {
            Deliver::Phone(command) => format!(
                "phone: {}",
                match command {
                    LegCommand::Ring => "ring".to_owned(),
                    LegCommand::Answer { sdp, .. } => format!("answer {sdp}"),
                    LegCommand::Reject(refusal) => format!("reject {}", refusal.code),
                    LegCommand::Hangup => "hangup".to_owned(),
                    LegCommand::AnswerOffer(sdp) => format!("answer offer {sdp}"),
                    other => format!("{other:?}"),
                }
            ),
            Deliver::Branch(branch, event) => format!(
                "{branch}: {}",
                match event {
                    LegEvent::Terminated(ending) => format!(
                        "ended {}{}{}",
                        ending.reason,
                        if ending.cancelled { " (missed)" } else { "" },
                        if ending.elsewhere { " [elsewhere]" } else { "" }
                    ),
                    LegEvent::Offer { .. } => "offer".to_owned(),
                    LegEvent::Confirmed { .. } => "confirmed".to_owned(),
                    LegEvent::DtmfAnswered { code } => format!("info {code}"),
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
    fork.command(0, LegCommand::Ring);
    fork.command(1, LegCommand::Ring);
    fork.command(2, LegCommand::Ring);
    assert_eq!(delivered(&mut fork), ["phone: ring"]);
    fork.command(1, answer("b"));
    assert_eq!(
        delivered(&mut fork),
        [
            "0: ended answered elsewhere [elsewhere]",
            "2: ended answered elsewhere [elsewhere]",
            "phone: answer b"
        ]
    );
    // A late answer is not heard; the losers' last words neither.
    fork.command(0, answer("a"));
    fork.command(2, LegCommand::Hangup);
    assert!(delivered(&mut fork).is_empty());
    fork.event(LegEvent::Confirmed { sdp: None });
    fork.event(LegEvent::Offer { sdp: None });
    fork.command(1, LegCommand::AnswerOffer("held".into()));
    assert_eq!(
        delivered(&mut fork),
        ["1: confirmed", "1: offer", "phone: answer offer held"]
    );
    assert!(!fork.is_over());
    fork.command(1, LegCommand::Hangup);
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
    fork.command(2, LegCommand::Ring);
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
    fork.event(LegEvent::Offer { sdp: None });
    fork.command(1, LegCommand::AnswerOffer("one".into()));
    fork.command(0, LegCommand::AnswerOffer("zero".into()));
    fork.command(
        0,
        LegCommand::Dtmf {
            digit: '1',
            duration: 100,
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

/// A lone branch's early media reaches the phone (a 183 with its answer); among several it is
/// ringing, heard once.
#[test]
fn early_media_reaches_the_phone_only_from_a_lone_branch() {
    let early = || LegCommand::EarlyMedia {
        sdp: "ours".to_owned(),
    };
    let mut fork = IncomingFork::new(1);
    fork.command(0, LegCommand::Ring);
    fork.command(0, early());
    assert_eq!(
        delivered(&mut fork),
        ["phone: ring", "phone: EarlyMedia { sdp: \"ours\" }"]
    );
    fork.command(0, answer("ours"));
    assert_eq!(delivered(&mut fork), ["phone: answer ours"]);

    let mut fork = IncomingFork::new(2);
    fork.command(0, early());
    fork.command(1, LegCommand::Ring);
    fork.command(1, early());
    assert_eq!(delivered(&mut fork), ["phone: ring"]);
}
