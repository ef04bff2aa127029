use super::*;

fn ringing() -> LegEvent {
    LegEvent::Progress {
        code: 180,
        reason: "Ringing".into(),
        sdp: None,
    }
}

fn early(sdp: &str) -> LegEvent {
    LegEvent::Progress {
        code: 183,
        reason: "Session Progress".into(),
        sdp: Some(sdp.to_owned()),
    }
}

fn answered(sdp: &str) -> LegEvent {
    LegEvent::Answered {
        sdp: Some(sdp.to_owned()),
    }
}

fn ended(code: Option<u16>, reason: &str) -> LegEvent {
    LegEvent::Terminated(LegEnding {
        code,
        reason: reason.into(),
        cancelled: code == Some(487),
        elsewhere: false,
    })
}

fn info() -> LegCommand {
    LegCommand::Dtmf {
        digit: '1',
        duration: 100,
    }
}

/// What the machine hears, in short.
fn heard(event: Option<LegEvent>) -> String {
    match event {
        None => "-".into(),
        Some(LegEvent::Progress { code, sdp, .. }) => match sdp {
            Some(sdp) => format!("{code} {sdp}"),
            None => code.to_string(),
        },
        Some(LegEvent::Answered { sdp }) => format!("answered {}", sdp.unwrap_or_default()),
        Some(LegEvent::Terminated(ending)) => format!("ended {}", ending.reason),
        Some(LegEvent::DtmfAnswered { code }) => format!("info {code}"),
        Some(other) => format!("{other:?}"),
    }
}

/// The commands for the branches, in short.
fn sent(fork: &mut Fork) -> Vec<String> {
    std::iter::from_fn(|| fork.poll_command())
        .map(|(branch, command)| {
            let name = match command {
                LegCommand::Hangup => "hangup",
                LegCommand::AnsweredElsewhere => "answered elsewhere",
                LegCommand::Dtmf { .. } => "info",
                LegCommand::PictureFastUpdate => "keyframe info",
                LegCommand::RefuseOffer(_) => "refuse offer",
                LegCommand::AnswerOffer(_) => "answer offer",
                LegCommand::Reoffer(_) => "reoffer",
                LegCommand::Ring => "ring",
                LegCommand::EarlyMedia { .. } => "early media",
                LegCommand::Answer { .. } => "answer",
                LegCommand::Reject(_) => "reject",
                LegCommand::Message(_) => "message",
                LegCommand::Relay { .. } => "relay",
            };
            format!("{branch}: {name}")
        })
        .collect()
}

/// One branch: everything passes both ways as it is, its repeated provisionals included.
#[test]
fn a_single_branch_passes_everything_through() {
    let mut fork = Fork::new(1);
    assert_eq!(heard(fork.event(0, ringing())), "180");
    assert_eq!(heard(fork.event(0, ringing())), "180");
    assert_eq!(heard(fork.event(0, early("a"))), "183 a");
    assert_eq!(
        heard(fork.event(0, LegEvent::DtmfAnswered { code: 200 })),
        "info 200"
    );
    assert!(fork.command(info()).is_none());
    assert_eq!(fork.command(LegCommand::Ring), None);
    assert_eq!(sent(&mut fork), ["0: info", "0: ring"]);
    assert_eq!(
        heard(fork.event(0, ended(Some(486), "486 Busy Here"))),
        "ended 486 Busy Here"
    );
    assert_eq!(heard(fork.event(0, ringing())), "-");
}

/// Every branch rings; the caller hears ringing once; the first answer wins and the others
/// are told the call was completed elsewhere; a late answer from one of them is not heard.
#[test]
fn the_first_answer_wins_and_the_others_are_answered_elsewhere() {
    let mut fork = Fork::new(3);
    assert_eq!(heard(fork.event(1, ringing())), "180");
    assert_eq!(heard(fork.event(0, ringing())), "-");
    assert_eq!(heard(fork.event(1, ringing())), "180");
    assert_eq!(heard(fork.event(2, ringing())), "-");
    assert_eq!(heard(fork.event(2, answered("c"))), "answered c");
    assert_eq!(
        sent(&mut fork),
        ["0: answered elsewhere", "1: answered elsewhere"]
    );
    assert_eq!(heard(fork.event(0, answered("a"))), "-");
    assert_eq!(heard(fork.event(0, ended(None, "remote hangup"))), "-");
    assert_eq!(heard(fork.event(1, ended(Some(487), "487"))), "-");
    // After the answer, commands reach the winner alone.
    assert!(fork.command(info()).is_none());
    fork.command(LegCommand::Hangup);
    assert_eq!(sent(&mut fork), ["2: info", "2: hangup"]);
    assert_eq!(
        heard(fork.event(2, ended(None, "local hangup"))),
        "ended local hangup"
    );
}

/// Early media comes from the first branch that sends it; another branch's is not heard, its
/// offers are refused, and when the early branch fails, the next one's early media is heard.
#[test]
fn early_media_comes_from_one_branch() {
    let mut fork = Fork::new(2);
    assert_eq!(heard(fork.event(0, early("a"))), "183 a");
    assert_eq!(heard(fork.event(1, early("b"))), "-");
    assert_eq!(heard(fork.event(0, early("a2"))), "183 a2");
    assert_eq!(heard(fork.event(1, LegEvent::Offer { sdp: None })), "-");
    assert_eq!(sent(&mut fork), ["1: refuse offer"]);
    // DTMF before the answer goes to the branch with early media, and only its answer counts.
    assert!(fork.command(info()).is_none());
    assert_eq!(sent(&mut fork), ["0: info"]);
    assert_eq!(
        heard(fork.event(1, LegEvent::DtmfAnswered { code: 200 })),
        "-"
    );
    assert_eq!(
        heard(fork.event(0, LegEvent::DtmfAnswered { code: 200 })),
        "info 200"
    );
    assert_eq!(heard(fork.event(0, ended(Some(486), "486 Busy Here"))), "-");
    assert_eq!(heard(fork.event(1, early("b2"))), "183 b2");
}

/// With no dialog to carry it, an INFO is answered 481 at once, as SIP would.
#[test]
fn dtmf_before_any_dialog_gets_481() {
    let mut fork = Fork::new(2);
    assert_eq!(heard(fork.command(info())), "info 481");
    assert!(sent(&mut fork).is_empty());
}

/// A hang-up before the answer reaches every branch still on; the caller hears the end once
/// all have ended.
#[test]
fn a_hangup_before_the_answer_cancels_every_branch() {
    let mut fork = Fork::new(3);
    assert_eq!(
        heard(fork.event(1, ended(Some(480), "480 Temporarily Unavailable"))),
        "-"
    );
    fork.command(LegCommand::Hangup);
    assert_eq!(sent(&mut fork), ["0: hangup", "2: hangup"]);
    assert_eq!(
        heard(fork.event(0, ended(Some(487), "487 Request Terminated"))),
        "-"
    );
    assert_eq!(
        heard(fork.event(2, ended(Some(487), "487 Request Terminated"))),
        "ended 480 Temporarily Unavailable"
    );
}

/// When every branch fails the caller hears the lowest class, the first within it; a 6xx of
/// any branch ends the fork at once.
#[test]
fn the_best_failure_is_heard_and_a_6xx_ends_the_fork() {
    let mut fork = Fork::new(3);
    assert_eq!(
        heard(fork.event(0, ended(Some(503), "503 Service Unavailable"))),
        "-"
    );
    assert_eq!(heard(fork.event(1, ended(Some(486), "486 Busy Here"))), "-");
    assert_eq!(
        heard(fork.gone(
            2,
            LegEnding {
                code: Some(480),
                reason: "480 gone".into(),
                cancelled: false,
                elsewhere: false,
            }
        )),
        "ended 486 Busy Here"
    );

    let mut fork = Fork::new(3);
    assert_eq!(heard(fork.event(0, ringing())), "180");
    assert_eq!(
        heard(fork.event(1, ended(Some(603), "603 Decline"))),
        "ended 603 Decline"
    );
    assert_eq!(sent(&mut fork), ["0: hangup", "2: hangup"]);
    assert_eq!(heard(fork.event(0, ended(Some(487), "487"))), "-");
}
