//! Offers from the far end (re-INVITE, UPDATE) and session refreshes (RFC 4028).

use std::time::{Duration, Instant};

use bytes::Bytes;
use ezk_sip_types::{Method, Name};

use super::*;
use crate::message::Message;

impl Call {
    pub(super) fn remote_offer(&mut self, now: Instant, method: Method, request: &Message) {
        if self.phase == Phase::Ringing && method == Method::UPDATE {
            // RFC 3311 section 5.2: in the early dialog an UPDATE without an offer is answered;
            // a new offer while the INVITE's offer has no answer yet gets 500 and Retry-After.
            let response = if request.body.is_empty() {
                self.refresh_ok(request)
            } else {
                let mut response =
                    self.respond_in_dialog(request, 500, "Server Internal Error (offer pending)");
                response
                    .headers
                    .insert(Name::RETRY_AFTER, retry_after(request));
                response
            };
            return self.out.push_back(CallOutput::Response(response));
        }
        // RFC 3261 section 14: one offer at a time; a crossing one is glare.
        let busy = self.pending.is_some()
            || self.refreshing.is_some()
            || self.unacked.is_some()
            || matches!(self.phase, Phase::Ringing | Phase::Accepting);
        if busy {
            let (code, reason) = if method == Method::INVITE && self.unacked.is_some() {
                (500, "Server Internal Error")
            } else {
                (491, "Request Pending")
            };
            let mut response = self.respond_in_dialog(request, code, reason);
            if code == 500 {
                response.headers.insert(Name::RETRY_AFTER, "1");
            }
            return self.out.push_back(CallOutput::Response(response));
        }
        if let Some(dialog) = &mut self.dialog {
            dialog.refresh_target(request);
        }
        // Any re-INVITE or UPDATE refreshes the session (RFC 4028 section 10).
        if let Some((interval, refresher)) = session_expires(request) {
            self.timer = Some(SessionTimer {
                interval,
                we_refresh: refresher.as_deref() == Some("uas"),
                due: now,
            });
        }
        self.arm_session_timer(now);
        if method == Method::UPDATE && request.body.is_empty() {
            // A refresh only.
            let response = self.refresh_ok(request);
            return self.out.push_back(CallOutput::Response(response));
        }
        let offered = request.body.is_empty();
        self.pending = Some(PendingOffer {
            request: request.clone(),
            offered,
        });
        self.events.push_back(CallEvent::Offer {
            sdp: (!offered).then(|| request.body.clone()),
        });
    }

    /// A 200 for a refresh, with the session interval echoed.
    pub(super) fn refresh_ok(&self, request: &Message) -> Message {
        let mut response = self.respond_in_dialog(request, 200, "OK");
        if let Some(timer) = self.timer {
            // In a response, `uac` names the sender of the request.
            let refresher = if timer.we_refresh { "uas" } else { "uac" };
            response.headers.insert(
                Name::SESSION_EXPIRES,
                format!("{};refresher={refresher}", timer.interval),
            );
            response.headers.insert(Name::REQUIRE, "timer");
        }
        response
    }

    /// Answers the far end's pending re-INVITE or UPDATE: `sdp` is the answer to its offer, or
    /// our offer when the re-INVITE had none.
    pub fn answer_offer(&mut self, now: Instant, sdp: Bytes) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let mut response = self.refresh_ok(&pending.request);
        response.headers.insert(Name::ALLOW, ALLOW);
        response
            .headers
            .insert(Name::CONTENT_TYPE, "application/sdp");
        response.body = sdp.clone();
        self.local_sdp = sdp;
        if pending.request.method() == Some(&Method::INVITE) {
            let cseq = pending
                .request
                .cseq()
                .map(|cseq| cseq.cseq)
                .unwrap_or_default();
            self.send_2xx(now, response, cseq, pending.offered);
        } else {
            self.out.push_back(CallOutput::Response(response));
        }
    }

    /// Refuses the far end's pending offer (488 when it cannot be taken).
    pub fn refuse_offer(&mut self, code: u16, reason: &str, warning: Option<&Warning>) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let mut response = self.respond_in_dialog(&pending.request, code, reason);
        if let Some(warning) = warning {
            response
                .headers
                .insert(Name::WARNING, warning.header_value());
        }
        self.out.push_back(CallOutput::Response(response));
    }

    pub(super) fn arm_session_timer(&mut self, now: Instant) {
        if let Some(timer) = &mut self.timer {
            let interval = u64::from(timer.interval);
            timer.due = if timer.we_refresh {
                now + Duration::from_secs(interval / 2)
            } else {
                // Section 10: the BYE goes out a little before the expiry.
                now + Duration::from_secs(interval - (interval / 3).min(32))
            };
        }
    }

    /// Sends a new offer to the far end in a re-INVITE (hold, resume, a new address): its
    /// answer comes as [`CallEvent::Answer`], a refusal as [`CallEvent::OfferRefused`] (the
    /// session then stays as it was); 491 is retried after 2.5 s (RFC 3261 section 14.1);
    /// 408 and 481 end the call. Refused at once (false, with the event) while the call is not
    /// confirmed or another offer or refresh is in progress.
    pub fn reoffer(&mut self, now: Instant, sdp: Bytes) -> bool {
        let busy = self.phase != Phase::Confirmed
            || self.dialog.is_none()
            || self.pending.is_some()
            || self.refreshing.is_some()
            || self.unacked.is_some()
            || self.reoffering.is_some();
        if busy {
            self.events.push_back(CallEvent::OfferRefused {
                code: 491,
                reason: "491 Request Pending (the call is not ready for a new offer)".to_owned(),
            });
            return false;
        }
        self.reoffering = Some(std::mem::replace(&mut self.local_sdp, sdp));
        self.send_session_request(now, Method::INVITE);
        true
    }

    pub(super) fn send_refresh(&mut self, now: Instant) {
        if self.timer.is_none() {
            return;
        }
        let method = if self.peer_update {
            Method::UPDATE
        } else {
            Method::INVITE
        };
        self.send_session_request(now, method);
    }

    /// A refresh, or our re-offer (`local_sdp` is the description sent in a re-INVITE).
    pub(super) fn send_session_request(&mut self, now: Instant, method: Method) {
        let Some(dialog) = self.dialog.clone() else {
            return;
        };
        self.cseq = self.cseq.max(dialog.local_seq) + 1;
        let via = self.via();
        let Some(mut request) = dialog.request(method.clone(), self.cseq, via) else {
            return;
        };
        request.headers.insert(Name::CONTACT, self.contact());
        request.headers.insert(Name::SUPPORTED, SUPPORTED);
        if let Some(timer) = self.timer {
            request.headers.insert(
                Name::SESSION_EXPIRES,
                format!("{};refresher=uac", timer.interval),
            );
            request
                .headers
                .insert(Name::MIN_SE, self.config.min_se.to_string());
        }
        if method == Method::INVITE {
            // The session is unchanged: the same description again (RFC 3264 section 8).
            request
                .headers
                .insert(Name::CONTENT_TYPE, "application/sdp");
            request.body = self.local_sdp.clone();
        }
        self.authorize(&mut request);
        self.refreshing = Some((method, self.cseq));
        self.out.push_back(CallOutput::Request(request));
        // Until the response, the next attempt is a full interval away.
        if let Some(timer) = &mut self.timer {
            timer.due = now + Duration::from_secs(u64::from(timer.interval));
        }
    }

    pub(super) fn refresh_response(
        &mut self,
        now: Instant,
        code: u16,
        method: &Method,
        response: &Message,
    ) {
        if code < 200 {
            return;
        }
        self.refreshing = None;
        match code {
            200..=299 => {
                if self.reoffering.take().is_some() {
                    self.events.push_back(CallEvent::Answer {
                        sdp: response.body.clone(),
                    });
                }
                if *method == Method::INVITE
                    && let Some(dialog) = self.dialog.clone()
                {
                    let via = self.via();
                    let cseq = response.cseq().map(|cseq| cseq.cseq).unwrap_or(self.cseq);
                    if let Some(mut ack) = dialog.request(Method::ACK, cseq, via) {
                        self.authorize(&mut ack);
                        self.out.push_back(CallOutput::Ack(ack));
                    }
                }
                if let Some(dialog) = &mut self.dialog {
                    dialog.refresh_target(response);
                }
                if let Some((interval, refresher)) = session_expires(response)
                    && let Some(timer) = &mut self.timer
                {
                    timer.interval = interval;
                    timer.we_refresh = refresher.as_deref() != Some("uas");
                }
                self.auth.succeeded();
                self.arm_session_timer(now);
            }
            401 | 407 if self.auth.challenge(response).is_ok() => {
                if self.reoffering.is_some() {
                    self.send_session_request(now, Method::INVITE);
                } else {
                    self.send_refresh(now);
                }
            }
            422 => {
                let min = response
                    .header(&Name::MIN_SE)
                    .and_then(|value| value.split(';').next())
                    .and_then(|value| value.trim().parse::<u32>().ok());
                if let (Some(min), Some(timer)) = (min, &mut self.timer) {
                    timer.interval = min.max(timer.interval);
                    self.config.min_se = min;
                    if self.reoffering.is_some() {
                        self.send_session_request(now, Method::INVITE);
                    } else {
                        self.send_refresh(now);
                    }
                } else if let Some(previous) = self.reoffering.take() {
                    self.local_sdp = previous;
                    self.events.push_back(CallEvent::OfferRefused {
                        code,
                        reason: response_line(response),
                    });
                }
            }
            // RFC 3261 section 14.1: glare, retry after 2.1 to 4 s (we own no Call-ID choice
            // to order by, so a fixed 2.5 s).
            491 => self.retry_refresh = Some(now + Duration::from_millis(2_500)),
            408 | 481 => {
                self.reoffering = None;
                self.hangup_with(now, Some(code), response_line(response));
            }
            // Other failures leave the session as it was, until it expires.
            _ => {
                if let Some(previous) = self.reoffering.take() {
                    self.local_sdp = previous;
                    self.events.push_back(CallEvent::OfferRefused {
                        code,
                        reason: response_line(response),
                    });
                }
            }
        }
    }
}

/// A Retry-After between 1 and 10 seconds (RFC 3311 asks for a random one up to 10), spread by
/// the request's Call-ID and CSeq line rather than read from a clock (the core reads none): two
/// phones retrying get different waits and do not collide again.
fn retry_after(request: &Message) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    request.call_id().hash(&mut hasher);
    request.header(&Name::CSEQ).hash(&mut hasher);
    (1 + hasher.finish() % 10).to_string()
}

#[cfg(test)]
mod tests;
