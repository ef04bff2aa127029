//! A phone's call offered to several browsers of its callee at once, sans-IO: the other half
//! of a fork set, where the branches are call tasks of the gateway (each with its relay, each
//! believing it talks to the phone's SIP call) and the caller is one SIP call.
//!
//! The phone hears one callee: ringing once, the first answer (the other browsers are told it
//! was answered elsewhere, so none shows a missed call), or, when every browser refused, the
//! best refusal (RFC 3261 section 16.7: the lowest class; a 6xx at once, the others told it was
//! declined elsewhere). Before the answer the phone's CANCEL and offers reach every browser
//! still ringing (the first to answer an offer answers it); after it, the phone and the
//! answering browser talk as if nobody else had been there.

use std::collections::VecDeque;

use crate::leg::{LegCommand, LegEnding, LegEvent, Refusal};

/// Where the fork's next message goes.
#[derive(Debug, Clone)]
pub(crate) enum Deliver {
    /// A command for the phone's SIP call.
    Phone(LegCommand),
    /// An event for the call task of a branch.
    Branch(usize, LegEvent),
}

/// The state of a phone's call offered to several browsers.
#[derive(Debug)]
pub(crate) struct IncomingFork {
    /// Whether each branch is done with the call.
    over: Vec<bool>,
    winner: Option<usize>,
    rung: bool,
    /// The phone made an offer no branch has answered yet (before the answer).
    offer_open: bool,
    best: Option<Refusal>,
    /// The call is over for the phone.
    done: bool,
    out: VecDeque<Deliver>,
}

impl IncomingFork {
    /// A call offered to `branches` browsers.
    pub(crate) fn new(branches: usize) -> IncomingFork {
        IncomingFork {
            over: vec![false; branches],
            winner: None,
            rung: false,
            offer_open: false,
            best: None,
            done: branches == 0,
            out: VecDeque::new(),
        }
    }

    /// Whether the call is over for the phone and for every branch.
    pub(crate) fn is_over(&self) -> bool {
        self.done && self.over.iter().all(|over| *over)
    }

    /// The next message to deliver.
    pub(crate) fn poll(&mut self) -> Option<Deliver> {
        self.out.pop_front()
    }

    fn live(&self) -> Vec<usize> {
        (0..self.over.len())
            .filter(|branch| !self.over[*branch])
            .collect()
    }

    /// Ends `branch` for good with this news.
    fn end_branch(&mut self, branch: usize, ending: LegEnding) {
        if !self.over[branch] {
            self.over[branch] = true;
            self.out
                .push_back(Deliver::Branch(branch, LegEvent::Terminated(ending)));
        }
    }

    /// A command of `branch`'s call task.
    pub(crate) fn command(&mut self, branch: usize, command: LegCommand) {
        if branch >= self.over.len() || self.over[branch] {
            return;
        }
        if self.winner == Some(branch) {
            if matches!(command, LegCommand::Hangup | LegCommand::AnsweredElsewhere) {
                self.over[branch] = true;
                self.done = true;
                self.out.push_back(Deliver::Phone(LegCommand::Hangup));
            } else {
                self.out.push_back(Deliver::Phone(command));
            }
            return;
        }
        match command {
            LegCommand::Ring => {
                if !std::mem::replace(&mut self.rung, true) {
                    self.out.push_back(Deliver::Phone(LegCommand::Ring));
                }
            }
            // Early media reaches the phone only from a lone branch: the phone's dialog with
            // the gateway is one, and its 200 must repeat the 183's answer, which another
            // branch's answer would not. Among several, it is ringing.
            LegCommand::EarlyMedia { sdp } => {
                let command = if self.over.len() == 1 {
                    LegCommand::EarlyMedia { sdp }
                } else {
                    LegCommand::Ring
                };
                let first = !std::mem::replace(&mut self.rung, true);
                if first || matches!(command, LegCommand::EarlyMedia { .. }) {
                    self.out.push_back(Deliver::Phone(command));
                }
            }
            LegCommand::Answer { sdp, headers } => {
                self.winner = Some(branch);
                self.offer_open = false;
                for other in self.live() {
                    if other != branch {
                        self.end_branch(other, LegEnding::answered_elsewhere());
                    }
                }
                self.out
                    .push_back(Deliver::Phone(LegCommand::Answer { sdp, headers }));
            }
            LegCommand::Reject(refusal) => self.refused(branch, refusal),
            // A browser that leaves before answering (its connection went away): as if busy
            // elsewhere, which the other branches' answers outrank.
            LegCommand::Hangup | LegCommand::AnsweredElsewhere => {
                self.refused(branch, Refusal::new(480, "Temporarily Unavailable", None))
            }
            // The first answer to the phone's offer in the early dialog is the callee's.
            LegCommand::AnswerOffer(_) | LegCommand::RefuseOffer(_) => {
                if std::mem::replace(&mut self.offer_open, false) {
                    self.out.push_back(Deliver::Phone(command));
                }
            }
            // A browser offers anew only once the call is up (it is the winner then).
            LegCommand::Reoffer(_) => self.out.push_back(Deliver::Branch(
                branch,
                LegEvent::OfferRefused {
                    code: 491,
                    reason: "491 Request Pending (the call is not answered)".to_owned(),
                },
            )),
            // A ringing browser sends no DTMF (nor keyframe requests); if one did, no dialog
            // carries it.
            LegCommand::Dtmf { .. } | LegCommand::PictureFastUpdate => self.out.push_back(
                Deliver::Branch(branch, LegEvent::DtmfAnswered { code: 481 }),
            ),
            LegCommand::Message(_) | LegCommand::Relay { .. } => {
                self.out.push_back(Deliver::Branch(
                    branch,
                    LegEvent::MessageAnswered {
                        code: 481,
                        reason: "Call/Transaction Does Not Exist (the call is not answered)"
                            .to_owned(),
                    },
                ))
            }
        }
    }

    fn refused(&mut self, branch: usize, refusal: Refusal) {
        self.over[branch] = true;
        if self.done {
            return;
        }
        let code = refusal.code;
        if code >= 600 {
            // A global refusal: the phone hears it now, the others stop ringing.
            for other in self.live() {
                self.end_branch(
                    other,
                    LegEnding::new(Some(487), "declined elsewhere", false),
                );
            }
            self.best = Some(refusal);
        } else if self
            .best
            .as_ref()
            .is_none_or(|best| code / 100 < best.code / 100)
        {
            self.best = Some(refusal);
        }
        if self.live().is_empty()
            && let Some(best) = self.best.take()
        {
            self.done = true;
            self.out.push_back(Deliver::Phone(LegCommand::Reject(best)));
        }
    }

    /// A branch's call task ended without a last word.
    pub(crate) fn branch_gone(&mut self, branch: usize) {
        if branch < self.over.len() && !self.over[branch] {
            self.command(branch, LegCommand::Hangup);
            self.over[branch] = true;
        }
    }

    /// An event of the phone's SIP call.
    pub(crate) fn event(&mut self, event: LegEvent) {
        if self.done {
            return;
        }
        let over = matches!(event, LegEvent::Terminated(_));
        if let Some(winner) = self.winner {
            if !self.over[winner] {
                self.out.push_back(Deliver::Branch(winner, event));
            }
            if over {
                self.over[winner] = true;
                self.done = true;
            }
            return;
        }
        match event {
            // A CANCEL, or the call's end: every browser still ringing hears it as it is
            // (a caller who gave up is a missed call).
            LegEvent::Terminated(_) => {
                for branch in self.live() {
                    self.out.push_back(Deliver::Branch(branch, event.clone()));
                    self.over[branch] = true;
                }
                self.done = true;
            }
            LegEvent::Offer { .. } => {
                self.offer_open = true;
                for branch in self.live() {
                    self.out.push_back(Deliver::Branch(branch, event.clone()));
                }
            }
            // Nothing else has anyone to hear it before the answer.
            _ => {}
        }
    }

    /// The phone's call went away without a last word (the SIP user agent stopped).
    pub(crate) fn phone_gone(&mut self) {
        self.event(LegEvent::Terminated(LegEnding::new(
            Some(500),
            "500 the SIP user agent stopped",
            false,
        )));
        self.done = true;
    }
}

#[cfg(test)]
mod tests;
