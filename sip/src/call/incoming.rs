//! The incoming side of a call: ringing (reliably, with PRACK, when the INVITE asks), the
//! answer and its retransmission until the ACK, rejections, and CANCEL.

use std::time::Instant;

use bytes::Bytes;
use ezk_sip_types::{Method, Name};

use super::*;
use crate::message::Message;

impl Call {
    /// Sends 180 Ringing (reliably when the INVITE requires it).
    pub fn ring(&mut self, now: Instant) {
        self.provisional(now, 180, "Ringing", None);
    }

    /// Sends 183 Session Progress with our answer (early media, RFC 3261 section 13.3.1.1;
    /// reliably when the INVITE requires it). The 200 must then carry the same answer.
    pub fn early_media(&mut self, now: Instant, sdp: Bytes) {
        self.provisional(now, 183, "Session Progress", Some(sdp));
    }

    fn provisional(&mut self, now: Instant, code: u16, reason: &str, sdp: Option<Bytes>) {
        if self.phase != Phase::Ringing {
            return;
        }
        let Some(mut response) = self.dialog_response(code, reason) else {
            return;
        };
        if let Some(sdp) = sdp {
            response
                .headers
                .insert(Name::CONTENT_TYPE, "application/sdp");
            response.body = sdp;
        }
        if self.reliable_required {
            // RFC 3262: reliable, retransmitted from T1 (doubling) until the PRACK. One at a
            // time: a second ring while the first waits changes nothing.
            if self.reliable.is_some() {
                return;
            }
            let rseq = self.next_rseq;
            self.next_rseq += 1;
            response.headers.insert(Name::REQUIRE, "100rel");
            response.headers.insert(Name::RSEQ, rseq.to_string());
            let t1 = self.config.timers.t1;
            self.reliable = Some(Reliable {
                response: response.clone(),
                rseq,
                due: now + t1,
                interval: t1,
                deadline: now + t1 * 64,
            });
        }
        self.out.push_back(CallOutput::Response(response));
    }

    /// A PRACK (RFC 3262 section 3): `RAck` must name our reliable provisional response that
    /// waits (its RSeq, and the INVITE's CSeq and method); it then stops being retransmitted.
    pub(super) fn handle_prack(&mut self, request: &Message) {
        let rack = request
            .headers
            .get_raw(&Name::RACK)
            .next()
            .map(|value| {
                value
                    .as_str()
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let invite_cseq = self
            .invite
            .as_ref()
            .and_then(|invite| invite.cseq().ok())
            .map(|cseq| cseq.cseq);
        let matches = match (&self.reliable, rack.as_slice()) {
            (Some(reliable), [rseq, cseq, method]) => {
                rseq.parse::<u32>().ok() == Some(reliable.rseq)
                    && cseq.parse::<u32>().ok() == invite_cseq
                    && method.eq_ignore_ascii_case("INVITE")
            }
            _ => false,
        };
        let response = if matches {
            self.reliable = None;
            self.respond_in_dialog(request, 200, "OK")
        } else {
            self.respond_in_dialog(request, 481, "Call/Transaction Does Not Exist")
        };
        self.out.push_back(CallOutput::Response(response));
    }

    /// A response to the pending INVITE (or re-INVITE) with our tag, Contact and Record-Route.
    pub(super) fn dialog_response(&self, code: u16, reason: &str) -> Option<Message> {
        let request = match &self.pending {
            Some(pending) => &pending.request,
            None => self.invite.as_ref()?,
        };
        Some(self.respond_in_dialog(request, code, reason))
    }

    pub(super) fn respond_in_dialog(&self, request: &Message, code: u16, reason: &str) -> Message {
        let mut response = request.response(code, reason, Some(&self.config.tag));
        for route in record_routes(request) {
            response.headers.insert(Name::RECORD_ROUTE, route);
        }
        if code > 100 && code < 300 {
            response.headers.insert(Name::CONTACT, self.contact());
        }
        response
            .headers
            .insert(Name::SERVER, self.config.user_agent.clone());
        response
    }

    /// Answers the incoming call: 200 OK with `sdp` (an answer, or our offer when the INVITE
    /// had none) and extra headers.
    pub fn answer(&mut self, now: Instant, sdp: Bytes, headers: &[(String, String)]) {
        if self.phase != Phase::Ringing {
            return;
        }
        let Some(invite) = self.invite.clone() else {
            return;
        };
        let mut response = self.respond_in_dialog(&invite, 200, "OK");
        response.headers.insert(Name::ALLOW, ALLOW);
        response.headers.insert(Name::SUPPORTED, SUPPORTED);
        if let Some(timer) = self.timer {
            let refresher = if timer.we_refresh { "uas" } else { "uac" };
            response.headers.insert(
                Name::SESSION_EXPIRES,
                format!("{};refresher={refresher}", timer.interval),
            );
            if !timer.we_refresh {
                response.headers.insert(Name::REQUIRE, "timer");
            }
        }
        for (name, value) in headers {
            response
                .headers
                .insert(Name::from(name.clone()), value.clone());
        }
        response
            .headers
            .insert(Name::CONTENT_TYPE, "application/sdp");
        response.body = sdp.clone();
        self.local_sdp = sdp;
        let offered = invite.body.is_empty();
        let cseq = invite.cseq().map(|cseq| cseq.cseq).unwrap_or_default();
        self.send_2xx(now, response, cseq, offered);
        self.phase = Phase::Accepting;
        self.arm_session_timer(now);
    }

    pub(super) fn send_2xx(&mut self, now: Instant, response: Message, cseq: u32, offered: bool) {
        self.out.push_back(CallOutput::Response(response.clone()));
        let t1 = self.config.timers.t1;
        self.unacked = Some(Unacked {
            response,
            cseq,
            due: now + t1,
            interval: t1,
            deadline: now + t1 * 64,
            offered,
        });
    }

    /// Refuses the incoming call with a final response (486, 603, 480...).
    pub fn reject(&mut self, code: u16, reason: &str) {
        self.reject_with(code, reason, None);
    }

    /// As [`Call::reject`], with a `Warning` that says why.
    pub fn reject_with(&mut self, code: u16, reason: &str, warning: Option<&Warning>) {
        if self.phase != Phase::Ringing {
            return;
        }
        if let Some(mut response) = self.dialog_response(code, reason) {
            if let Some(warning) = warning {
                response
                    .headers
                    .insert(Name::WARNING, warning.header_value());
            }
            self.out.push_back(CallOutput::Response(response));
        }
        self.phase = Phase::Done;
        self.end(Some(code), format!("{code} {reason}"));
    }

    /// A CANCEL matched one of this call's INVITEs (the endpoint answers the CANCEL itself):
    /// the first INVITE while it rings ends the call with 487; a re-INVITE still waiting for
    /// our answer gets 487 and the call goes on as it was. Anything else has had its final
    /// response already, and the CANCEL changes nothing.
    pub fn handle_cancel_of(&mut self, cancel: &Message) {
        if self.phase == Phase::Ringing {
            if answered_elsewhere(cancel) {
                // RFC 3326 `Reason: SIP;cause=200`: another device took the call; it was not
                // missed.
                if let Some(response) = self.dialog_response(487, "Request Terminated") {
                    self.out.push_back(CallOutput::Response(response));
                }
                self.phase = Phase::Done;
                return self.report(Ending {
                    code: Some(487),
                    reason: "answered elsewhere".to_owned(),
                    cancelled: false,
                });
            }
            return self.handle_cancel();
        }
        let branch = |message: &Message| {
            message.vias().ok().and_then(|vias| {
                vias.first().and_then(|via| {
                    via.params
                        .get_val("branch")
                        .map(|branch| branch.to_string())
                })
            })
        };
        let pending_invite = self.pending.as_ref().is_some_and(|pending| {
            pending.request.method() == Some(&Method::INVITE)
                && branch(&pending.request).is_some()
                && branch(&pending.request) == branch(cancel)
        });
        if !pending_invite {
            return;
        }
        if let Some(pending) = self.pending.take() {
            let response = self.respond_in_dialog(&pending.request, 487, "Request Terminated");
            self.out.push_back(CallOutput::Response(response));
        }
    }

    /// The caller cancelled the INVITE (the endpoint answers the CANCEL itself).
    pub fn handle_cancel(&mut self) {
        if self.phase != Phase::Ringing {
            return;
        }
        if let Some(response) = self.dialog_response(487, "Request Terminated") {
            self.out.push_back(CallOutput::Response(response));
        }
        self.phase = Phase::Done;
        self.report(Ending {
            code: Some(487),
            reason: "487 Request Terminated".to_owned(),
            cancelled: true,
        });
    }

    pub(super) fn handle_ack(&mut self, now: Instant, cseq: u32, ack: &Message) {
        let Some(unacked) = &self.unacked else {
            return; // A retransmitted ACK, or one for nothing.
        };
        if unacked.cseq != cseq {
            return;
        }
        let offered = unacked.offered;
        self.unacked = None;
        let sdp = (!ack.body.is_empty()).then(|| ack.body.clone());
        match self.phase {
            Phase::Accepting => {
                self.phase = Phase::Confirmed;
                self.events.push_back(CallEvent::Confirmed {
                    sdp: if offered { sdp } else { None },
                });
            }
            Phase::Ending if self.bye_pending => {
                self.bye_pending = false;
                self.send_bye();
            }
            _ => {
                if offered && let Some(sdp) = sdp {
                    self.events.push_back(CallEvent::Answer { sdp });
                }
            }
        }
        let _ = now;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;
    use ezk_sip_types::Name;

    use crate::call::tests::{in_dialog, incoming, only_request};

    /// Early media: a 183 with our answer (and its content type), then the 200 with the same
    /// answer; with 100rel required the 183 is reliable (RSeq), as a 180 would be.
    #[test]
    fn early_media_is_a_183_with_the_answer_the_200_repeats() {
        let now = Instant::now();
        let (mut call, _) = incoming(now, true, "");
        call.early_media(now, Bytes::from_static(b"answer"));
        let progress = only_request(&mut call);
        assert_eq!(progress.code(), Some(183));
        assert_eq!(progress.body, Bytes::from_static(b"answer"));
        assert_eq!(
            progress.header(&Name::CONTENT_TYPE),
            Some("application/sdp")
        );
        assert!(progress.header(&Name::CONTACT).is_some());
        call.answer(now, Bytes::from_static(b"answer"), &[]);
        let ok = only_request(&mut call);
        assert_eq!(ok.code(), Some(200));
        assert_eq!(ok.body, Bytes::from_static(b"answer"));
        call.handle_request(now, &in_dialog("ACK", 20, "", ""));

        let (mut call, _) = incoming(now, true, "Require: 100rel\n");
        call.early_media(now, Bytes::from_static(b"answer"));
        let progress = only_request(&mut call);
        assert_eq!(progress.code(), Some(183));
        assert!(progress.header(&Name::RSEQ).is_some());
        assert_eq!(progress.body, Bytes::from_static(b"answer"));
    }
}
