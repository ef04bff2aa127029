//! The called side of a call as a fork set, sans-IO: a call to a user of the local domain rings
//! every browser and phone where the user takes calls at once. The first to answer wins and the
//! others are told it was answered elsewhere (a CANCEL with `Reason: SIP;cause=200` for a
//! phone, so neither shows a missed call); early media comes from one branch; when every branch
//! fails, the caller hears the best of their final responses (RFC 3261 section 16.7: a 6xx ends
//! the whole fork at once, otherwise the lowest class wins, the first received within it).
//!
//! The call machine sees one far end: [`Fork::event`] turns the branches' events into the
//! events of that one far end, and [`Fork::command`] sends the machine's commands to the
//! branches they concern. A fork of one branch passes everything through unchanged, so a
//! call to a single place behaves as it always did.

use std::collections::{HashMap, VecDeque};

use crate::leg::{LegCommand, LegEnding, LegEvent, Refusal};

/// A fork set's state: which branches are still on, which answered, which gives early media.
#[derive(Debug)]
pub(crate) struct Fork {
    /// Whether each branch has ended.
    over: Vec<bool>,
    /// The branch that answered.
    winner: Option<usize>,
    /// The branch whose early media the caller hears.
    early: Option<usize>,
    /// Which branch first gave each provisional status, so the caller hears "ringing" once.
    provisional: HashMap<u16, usize>,
    /// The branch whose offer (an UPDATE in its early dialog) the machine answers next.
    offer_from: Option<usize>,
    /// The branch the last DTMF tone went to.
    info_to: Option<usize>,
    /// The best final response of the branches that failed so far.
    best: Option<LegEnding>,
    /// Commands for branches, in order.
    out: VecDeque<(usize, LegCommand)>,
}

impl Fork {
    /// A fork of `branches` branches (at least one).
    pub(crate) fn new(branches: usize) -> Fork {
        Fork {
            over: vec![false; branches.max(1)],
            winner: None,
            early: None,
            provisional: HashMap::new(),
            offer_from: None,
            info_to: None,
            best: None,
            out: VecDeque::new(),
        }
    }

    fn single(&self) -> bool {
        self.over.len() == 1
    }

    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.over.len()).filter(|branch| !self.over[*branch])
    }

    /// The next command for a branch.
    pub(crate) fn poll_command(&mut self) -> Option<(usize, LegCommand)> {
        self.out.pop_front()
    }

    /// A command of the call machine. What it means to the machine at once, when no branch
    /// can take it (an INFO before any dialog would carry it: 481, as SIP would say).
    pub(crate) fn command(&mut self, command: LegCommand) -> Option<LegEvent> {
        if self.single() {
            self.out.push_back((0, command));
            return None;
        }
        match command {
            LegCommand::Dtmf { .. } | LegCommand::PictureFastUpdate => {
                let Some(branch) = self.winner.or(self.early) else {
                    return Some(LegEvent::DtmfAnswered { code: 481 });
                };
                self.info_to = Some(branch);
                self.out.push_back((branch, command));
            }
            // A message goes in the answered dialog only.
            LegCommand::Message(_) | LegCommand::Relay { .. } => {
                let Some(branch) = self.winner else {
                    return Some(LegEvent::MessageAnswered {
                        code: 481,
                        reason: "Call/Transaction Does Not Exist (no branch has answered)"
                            .to_owned(),
                    });
                };
                self.out.push_back((branch, command));
            }
            LegCommand::Reoffer(_) => {
                let Some(branch) = self.winner else {
                    return Some(LegEvent::OfferRefused {
                        code: 491,
                        reason: "491 Request Pending (no branch has answered)".to_owned(),
                    });
                };
                self.out.push_back((branch, command));
            }
            LegCommand::AnswerOffer(_) | LegCommand::RefuseOffer(_) => {
                if let Some(branch) = self.offer_from.take() {
                    self.out.push_back((branch, command));
                }
            }
            // A hang-up, and what only a called side says (which a call's own machine does
            // not send to its far end): to the answered branch, or to every branch still on.
            LegCommand::Hangup
            | LegCommand::AnsweredElsewhere
            | LegCommand::Ring
            | LegCommand::EarlyMedia { .. }
            | LegCommand::Answer { .. }
            | LegCommand::Reject(_) => match self.winner {
                Some(branch) => self.out.push_back((branch, command)),
                None => {
                    let live: Vec<usize> = self.live().collect();
                    for branch in live {
                        self.out.push_back((branch, command.clone()));
                    }
                }
            },
        }
        None
    }

    /// An event of `branch`: what the machine hears of it, if anything.
    pub(crate) fn event(&mut self, branch: usize, event: LegEvent) -> Option<LegEvent> {
        if branch >= self.over.len() || self.over[branch] {
            return None;
        }
        if let LegEvent::Terminated(ending) = event {
            return self.terminated(branch, ending);
        }
        if self.single() {
            return Some(event);
        }
        if self.winner.is_some_and(|winner| winner != branch) {
            // A branch that answered too late is hung up by its own side (it was told the
            // call was answered elsewhere); nothing of it reaches the caller.
            return None;
        }
        match event {
            LegEvent::Progress { code, reason, sdp } => {
                if sdp.is_some() && self.early.is_none_or(|early| early == branch) {
                    self.early = Some(branch);
                    self.provisional.entry(code).or_insert(branch);
                    return Some(LegEvent::Progress { code, reason, sdp });
                }
                // Each status once, from the branch that gave it first (its repeats too).
                let first = *self.provisional.entry(code).or_insert(branch);
                (first == branch).then_some(LegEvent::Progress {
                    code,
                    reason,
                    sdp: None,
                })
            }
            LegEvent::Answered { sdp } => {
                self.winner = Some(branch);
                let others: Vec<usize> = self.live().filter(|other| *other != branch).collect();
                for other in others {
                    self.out.push_back((other, LegCommand::AnsweredElsewhere));
                }
                Some(LegEvent::Answered { sdp })
            }
            LegEvent::DtmfAnswered { code } => {
                (self.info_to == Some(branch)).then_some(LegEvent::DtmfAnswered { code })
            }
            event if self.winner == Some(branch) || self.early == Some(branch) => {
                if matches!(event, LegEvent::Offer { .. }) {
                    self.offer_from = Some(branch);
                }
                Some(event)
            }
            // Before any answer, what a branch without early media says mid-dialog (an
            // INFO, an UPDATE's offer) has nobody to hear it: the caller's media is not there.
            LegEvent::Offer { .. } => {
                self.out.push_back((
                    branch,
                    LegCommand::RefuseOffer(Refusal::new(488, "Not Acceptable Here", None)),
                ));
                None
            }
            _ => None,
        }
    }

    /// `branch` went away without a final word (its channel closed): it is over, with this
    /// ending.
    pub(crate) fn gone(&mut self, branch: usize, ending: LegEnding) -> Option<LegEvent> {
        self.event(branch, LegEvent::Terminated(ending))
    }

    fn terminated(&mut self, branch: usize, ending: LegEnding) -> Option<LegEvent> {
        self.over[branch] = true;
        if self.single() || self.winner == Some(branch) {
            return Some(LegEvent::Terminated(ending));
        }
        if self.winner.is_some() {
            return None;
        }
        if self.early == Some(branch) {
            // Another branch's early media may take its place.
            self.early = None;
        }
        if ending.code.is_some_and(|code| code >= 600) {
            // A global failure: the other branches are cancelled and the caller hears it.
            let live: Vec<usize> = self.live().collect();
            for other in live {
                self.out.push_back((other, LegCommand::Hangup));
                self.over[other] = true;
            }
            return Some(LegEvent::Terminated(ending));
        }
        if self
            .best
            .as_ref()
            .is_none_or(|best| rank(&ending) < rank(best))
        {
            self.best = Some(ending);
        }
        if self.live().next().is_some() {
            return None;
        }
        self.best.take().map(LegEvent::Terminated)
    }
}

/// How a failed branch's ending ranks for the caller, lowest first: by the class of its status
/// (a 487 the fork's own CANCEL caused after everything else, then endings without a status).
fn rank(ending: &LegEnding) -> u16 {
    match ending.code {
        Some(487) if ending.cancelled => 900,
        Some(code) => code / 100 * 100,
        None => 1000,
    }
}

#[cfg(test)]
mod tests;
