use bytes::Bytes;

use super::*;

fn ringing() -> CallEvent {
    CallEvent::Provisional {
        code: 180,
        reason: "Ringing".into(),
        sdp: None,
        tag: None,
    }
}

fn early(sdp: &str) -> CallEvent {
    CallEvent::Provisional {
        code: 183,
        reason: "Session Progress".into(),
        sdp: Some(Bytes::from(sdp.to_owned())),
        tag: None,
    }
}

fn answered(sdp: &str) -> CallEvent {
    CallEvent::Answered {
        sdp: Some(Bytes::from(sdp.to_owned())),
    }
}

fn ended(code: Option<u16>, reason: &str) -> CallEvent {
    CallEvent::Terminated(Ending {
        code,
        reason: reason.into(),
        cancelled: code == Some(487),
    })
}

fn info() -> CallCommand {
    CallCommand::Info {
        content_type: "application/dtmf-relay".into(),
        body: Bytes::from_static(b"Signal=1\r\nDuration=100\r\n"),
    }
}

/// What the machine hears, in short.
fn heard(event: Option<CallEvent>) -> String {
    match event {
        None => "-".into(),
        Some(CallEvent::Provisional { code, sdp, .. }) => match sdp {
            Some(sdp) => format!("{code} {}", String::from_utf8_lossy(&sdp)),
            None => code.to_string(),
        },
        Some(CallEvent::Answered { sdp }) => {
            format!(
                "answered {}",
                String::from_utf8_lossy(&sdp.unwrap_or_default())
            )
        }
        Some(CallEvent::Terminated(ending)) => format!("ended {}", ending.reason),
        Some(CallEvent::InfoAnswered { code }) => format!("info {code}"),
        Some(other) => format!("{other:?}"),
    }
}

/// The commands for the branches, in short.
fn sent(fork: &mut Fork) -> Vec<String> {
    std::iter::from_fn(|| fork.poll_command())
        .map(|(branch, command)| {
            let name = match command {
                CallCommand::Hangup => "hangup",
                CallCommand::AnsweredElsewhere => "answered elsewhere",
                CallCommand::Info { .. } => "info",
                CallCommand::RefuseOffer { .. } => "refuse offer",
                CallCommand::AnswerOffer(_) => "answer offer",
                CallCommand::Ring => "ring",
                CallCommand::Answer { .. } => "answer",
                CallCommand::Reject { .. } => "reject",
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
        heard(fork.event(0, CallEvent::InfoAnswered { code: 200 })),
        "info 200"
    );
    assert!(fork.command(info()).is_none());
    assert_eq!(fork.command(CallCommand::Ring), None);
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
    fork.command(CallCommand::Hangup);
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
    assert_eq!(heard(fork.event(1, CallEvent::Offer { sdp: None })), "-");
    assert_eq!(sent(&mut fork), ["1: refuse offer"]);
    // DTMF before the answer goes to the branch with early media, and only its answer counts.
    assert!(fork.command(info()).is_none());
    assert_eq!(sent(&mut fork), ["0: info"]);
    assert_eq!(
        heard(fork.event(1, CallEvent::InfoAnswered { code: 200 })),
        "-"
    );
    assert_eq!(
        heard(fork.event(0, CallEvent::InfoAnswered { code: 200 })),
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
    fork.command(CallCommand::Hangup);
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
            Ending {
                code: Some(480),
                reason: "480 gone".into(),
                cancelled: false,
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
