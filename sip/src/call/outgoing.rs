//! The outgoing side of a call: the INVITE, its challenges, forks, PRACK, CANCEL and ACK.

use std::time::Instant;

use bytes::Bytes;
use ezk_sip_types::{Headers, Method, Name};

use super::*;
use crate::dialog::Dialog;
use crate::message::{Message, RequestUri, StartLine};

impl Call {
    /// Follows the 3xx reported by [`CallEvent::Redirected`]: the INVITE again (same Call-ID,
    /// From and To, a higher CSeq, RFC 3261 section 8.1.3.4) with `uri` as its Request-URI.
    /// Refused, ending the call, past three redirections or for a URI already tried (a loop).
    pub fn follow_redirect(&mut self, now: Instant, uri: &str) -> Result<(), String> {
        let Some((code, line)) = self.redirect.take() else {
            return Err("no redirection to follow".to_owned());
        };
        let Some(outgoing) = &mut self.outgoing else {
            return Err("not an outgoing call".to_owned());
        };
        if self.visited.is_empty() {
            self.visited.push(
                outgoing
                    .target
                    .clone()
                    .unwrap_or_else(|| outgoing.uri.to_string()),
            );
        }
        let refusal = if self.visited.len() > MAX_REDIRECTS {
            Some(format!("more than {MAX_REDIRECTS} redirections"))
        } else if self.visited.iter().any(|seen| same_target(seen, uri)) {
            Some(format!("a redirection loop back to {uri}"))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.phase = Phase::Done;
            self.end(Some(code), format!("{line} (not followed: {refusal})"));
            return Err(refusal);
        }
        outgoing.target = Some(uri.to_owned());
        self.visited.push(uri.to_owned());
        self.send_invite(now);
        Ok(())
    }

    /// Ends the call on the 3xx reported by [`CallEvent::Redirected`], with `why` it was not
    /// followed (the status line and the Contact go in the reason).
    pub fn refuse_redirect(&mut self, why: &str) {
        let Some((code, line)) = self.redirect.take() else {
            return;
        };
        self.phase = Phase::Done;
        self.end(Some(code), format!("{line} ({why})"));
    }

    /// Our INVITE's server failed before any provisional response (no response, a transport
    /// error, 503): the INVITE again in a new transaction, for the next server of the domain
    /// (RFC 3263 section 4.3). False when `request` is not our outstanding INVITE, or when the
    /// call is committed (a provisional came) or being cancelled.
    pub fn failover(&mut self, now: Instant, request: &Message) -> bool {
        let ours = request.method() == Some(&Method::INVITE)
            && request
                .cseq()
                .is_ok_and(|cseq| Some(cseq.cseq) == self.invite_cseq());
        if !ours
            || self.outgoing.is_none()
            || self.phase != Phase::Calling
            || self.dialog.is_some()
            || self.cancel_pending
            || self.cancel_sent
            || self.terminated
        {
            return false;
        }
        self.send_invite(now);
        true
    }

    pub(super) fn send_invite(&mut self, now: Instant) {
        let _ = now;
        let Some(outgoing) = self.outgoing.clone() else {
            return;
        };
        let uri = match &outgoing.target {
            Some(target) => RequestUri::parse(target),
            None => Some(outgoing.uri.clone()),
        };
        let Some(uri) = uri else {
            self.phase = Phase::Done;
            return self.end(Some(416), format!("416 Unsupported URI ({})", outgoing.uri));
        };
        self.cseq += 1;
        let mut headers = Headers::with_capacity(16);
        headers.insert(Name::VIA, self.via());
        headers.insert(Name::MAX_FORWARDS, "70");
        if let Some(route) = &outgoing.route {
            headers.insert(Name::ROUTE, route.clone());
        }
        headers.insert(
            Name::FROM,
            format!("{};tag={}", self.name_addr(), self.config.tag),
        );
        headers.insert(Name::TO, format!("<{}>", outgoing.uri));
        headers.insert(Name::CALL_ID, outgoing.call_id.clone());
        headers.insert(Name::CSEQ, format!("{} INVITE", self.cseq));
        headers.insert(Name::CONTACT, self.contact());
        headers.insert(Name::ALLOW, ALLOW);
        headers.insert(Name::SUPPORTED, SUPPORTED);
        if let Some(interval) = self.config.session_expires {
            headers.insert(Name::SESSION_EXPIRES, interval.to_string());
            headers.insert(Name::MIN_SE, self.config.min_se.to_string());
        }
        headers.insert(Name::USER_AGENT, self.config.user_agent.clone());
        for (name, value) in &outgoing.headers {
            headers.insert(Name::from(name.clone()), value.clone());
        }
        headers.insert(Name::CONTENT_TYPE, "application/sdp");
        let cnonce = self.next_id();
        if let Some((name, value)) =
            self.auth
                .authorize("INVITE", uri.as_str(), &outgoing.sdp, &cnonce)
        {
            headers.insert(name, value);
        }
        let invite = Message {
            start: StartLine::Request {
                method: Method::INVITE,
                uri,
            },
            headers,
            body: outgoing.sdp.clone(),
        };
        self.invite = Some(invite.clone());
        self.out.push_back(CallOutput::Request(invite));
    }

    pub(super) fn send_cancel(&mut self) {
        let Some(invite) = &self.invite else { return };
        let mut headers = Headers::with_capacity(8);
        for name in [Name::VIA, Name::FROM, Name::TO, Name::CALL_ID] {
            if let Some(value) = invite.headers.get_raw(&name).next() {
                headers.insert(name.clone(), value.as_str().to_owned());
            }
        }
        headers.insert(Name::MAX_FORWARDS, "70");
        for value in invite.headers.get_raw(&Name::ROUTE) {
            headers.insert(Name::ROUTE, value.as_str().to_owned());
        }
        let number = invite.cseq().map(|cseq| cseq.cseq).unwrap_or(self.cseq);
        headers.insert(Name::CSEQ, format!("{number} CANCEL"));
        if let Some(reason) = self.cancel_reason {
            headers.insert(Name::from("Reason".to_owned()), reason);
        }
        let StartLine::Request { uri, .. } = &invite.start else {
            return;
        };
        let cancel = Message {
            start: StartLine::Request {
                method: Method::CANCEL,
                uri: uri.clone(),
            },
            headers,
            body: Bytes::new(),
        };
        self.cancel_sent = true;
        self.out.push_back(CallOutput::Request(cancel));
    }

    /// A response to one of our requests.
    pub fn handle_response(&mut self, now: Instant, response: &Message) {
        let (Some(code), Ok(cseq)) = (response.code(), response.cseq()) else {
            return;
        };
        match cseq.method {
            Method::INVITE if Some(cseq.cseq) == self.invite_cseq() && self.outgoing.is_some() => {
                self.invite_response(now, code, response)
            }
            Method::INVITE | Method::UPDATE
                if self.refreshing.as_ref().map(|(_, number)| *number) == Some(cseq.cseq) =>
            {
                self.refresh_response(now, code, &cseq.method, response)
            }
            Method::BYE if self.bye == Some(cseq.cseq) => match code {
                100..=199 => {}
                401 | 407 if self.auth.challenge(response).is_ok() => self.send_bye(),
                _ => self.phase = Phase::Done,
            },
            Method::MESSAGE if code >= 200 => {
                self.events.push_back(CallEvent::MessageAnswered {
                    code,
                    reason: response_reason(response),
                });
            }
            Method::INFO if code >= 200 => {
                self.events.push_back(CallEvent::InfoAnswered { code });
                // RFC 3261 section 12.2.1.2: these mean the dialog is gone.
                if matches!(code, 408 | 481) && self.dialog.is_some() {
                    self.hangup_with(now, Some(code), response_reason(response));
                }
            }
            // RFC 3261 section 12.2.1.2: these mean the dialog is gone.
            Method::PRACK | Method::INFO | Method::UPDATE | Method::INVITE
                if matches!(code, 408 | 481) && self.dialog.is_some() =>
            {
                self.hangup_with(now, Some(code), response_reason(response));
            }
            _ => {}
        }
    }

    pub(super) fn invite_cseq(&self) -> Option<u32> {
        self.invite
            .as_ref()
            .and_then(|invite| invite.cseq().ok())
            .map(|cseq| cseq.cseq)
    }

    pub(super) fn invite_response(&mut self, now: Instant, code: u16, response: &Message) {
        let Some(invite) = self.invite.clone() else {
            return;
        };
        match code {
            100..=199 => {
                if self.phase == Phase::Calling {
                    self.phase = Phase::Early;
                }
                if self.cancel_pending && !self.cancel_sent {
                    return self.send_cancel();
                }
                if self.terminated {
                    return;
                }
                let tag = response.tag(&Name::TO).map(str::to_owned);
                if let Some(tag) = &tag
                    && code > 100
                {
                    self.early_response(&invite, response, tag);
                    if !response.body.is_empty() {
                        self.early_media = Some(tag.clone());
                    }
                }
                self.events.push_back(CallEvent::Provisional {
                    code,
                    reason: response_reason(response),
                    sdp: sdp_of(response),
                    tag,
                });
            }
            200..=299 => self.invite_accepted(now, &invite, response),
            300..=399 if !self.cancel_pending && !self.cancel_sent && !self.terminated => {
                let contacts = redirect_contacts(response);
                if contacts.is_empty() {
                    self.phase = Phase::Done;
                    return self.end(
                        Some(code),
                        format!("{} (no Contact)", response_line(response)),
                    );
                }
                self.redirect = Some((code, response_line(response)));
                self.events.push_back(CallEvent::Redirected {
                    code,
                    reason: response_line(response),
                    contacts,
                });
            }
            401 | 407 if !self.cancel_sent && !self.terminated => {
                match self.auth.challenge(response) {
                    Ok(()) => self.send_invite(now),
                    Err(error) => {
                        self.phase = Phase::Done;
                        self.end(Some(code), format!("{} ({error})", response_line(response)));
                    }
                }
            }
            422 if !self.retried_422 && !self.cancel_sent && !self.terminated => {
                self.retried_422 = true;
                let min = response
                    .header(&Name::MIN_SE)
                    .and_then(|value| value.split(';').next())
                    .and_then(|value| value.trim().parse::<u32>().ok());
                match min {
                    Some(min) => {
                        self.config.session_expires = Some(min);
                        self.config.min_se = min;
                        self.send_invite(now);
                    }
                    None => {
                        self.phase = Phase::Done;
                        self.end(Some(code), response_line(response));
                    }
                }
            }
            _ => {
                self.phase = Phase::Done;
                self.end(Some(code), response_line(response));
            }
        }
    }

    /// A provisional response with a tag: its early dialog, and PRACK when it is reliable.
    pub(super) fn early_response(&mut self, invite: &Message, response: &Message, tag: &str) {
        let invite_cseq = self.invite_cseq().unwrap_or(self.cseq);
        let entry = match self.early.remove(tag) {
            Some((mut dialog, rseq)) => {
                dialog.refresh_target(response);
                (dialog, rseq)
            }
            None => match Dialog::from_response(invite, response, invite_cseq) {
                Some(dialog) => (dialog, 0),
                None => return,
            },
        };
        let (mut dialog, mut last_rseq) = entry;
        let reliable = tokens(response, &Name::REQUIRE)
            .iter()
            .any(|option| option == "100rel");
        let rseq = response
            .header(&Name::RSEQ)
            .and_then(|value| value.trim().parse::<u32>().ok());
        if reliable
            && let Some(rseq) = rseq
            && rseq > last_rseq
        {
            last_rseq = rseq;
            self.cseq = self.cseq.max(dialog.local_seq) + 1;
            dialog.local_seq = self.cseq;
            let via = self.via();
            if let Some(mut prack) = dialog.request(Method::PRACK, self.cseq, via) {
                prack
                    .headers
                    .insert(Name::RACK, format!("{rseq} {invite_cseq} INVITE"));
                self.authorize(&mut prack);
                self.out.push_back(CallOutput::Request(prack));
            }
        }
        self.early.insert(tag.to_owned(), (dialog, last_rseq));
    }

    pub(super) fn invite_accepted(&mut self, now: Instant, invite: &Message, response: &Message) {
        let Some(tag) = response.tag(&Name::TO).map(str::to_owned) else {
            return; // A 2xx without a To tag cannot be acknowledged in a dialog.
        };
        if let Some(ack) = self.acks.get(&tag) {
            // A retransmission: the same ACK again.
            return self.out.push_back(CallOutput::Ack(ack.clone()));
        }
        let invite_cseq = self.invite_cseq().unwrap_or(self.cseq);
        let Some(mut dialog) = Dialog::from_response(invite, response, invite_cseq) else {
            return;
        };
        dialog.local_seq = self.cseq;
        let via = self.via();
        let Some(mut ack) = dialog.request(Method::ACK, invite_cseq, via) else {
            return;
        };
        // RFC 3261 section 22.1: the ACK of a 2xx carries the INVITE's credentials.
        for name in [Name::AUTHORIZATION, Name::PROXY_AUTHORIZATION] {
            for value in invite.headers.get_raw(&name) {
                ack.headers.insert(name.clone(), value.as_str().to_owned());
            }
        }
        self.acks.insert(tag.clone(), ack.clone());
        self.out.push_back(CallOutput::Ack(ack));
        self.auth.succeeded();
        if self.dialog.is_some() || self.terminated || self.cancel_sent || self.cancel_pending {
            // A second fork, or a 2xx that crossed our CANCEL or hang-up: end that dialog.
            self.cseq += 1;
            let via = self.via();
            if let Some(mut bye) = dialog.request(Method::BYE, self.cseq, via) {
                self.authorize(&mut bye);
                self.out.push_back(CallOutput::Request(bye));
            }
            if self.dialog.is_none() {
                // Our own dialog ends with this BYE; its response finishes the call.
                self.bye = Some(self.cseq);
                self.dialog = Some(dialog);
                self.phase = Phase::Ending;
                self.end(None, "cancelled");
            }
            return;
        }
        self.early.clear();
        self.peer_update = allows_update(response);
        self.timer = session_expires(response).map(|(interval, refresher)| SessionTimer {
            interval,
            we_refresh: refresher.as_deref() != Some("uas"),
            due: now,
        });
        self.arm_session_timer(now);
        self.dialog = Some(dialog);
        self.phase = Phase::Confirmed;
        self.events.push_back(CallEvent::Answered {
            sdp: sdp_of(response),
        });
    }
}

/// The most 3xx responses one call follows.
pub(super) const MAX_REDIRECTS: usize = 3;

/// The Contact URIs of a 3xx, highest `q` first (RFC 3261 section 8.1.3.4), in order otherwise.
fn redirect_contacts(response: &Message) -> Vec<String> {
    let mut contacts: Vec<(u32, String)> = response
        .headers
        .get_raw(&Name::CONTACT)
        .flat_map(|value| crate::message::split_list(value.as_str()))
        .filter_map(|entry| {
            let uri = crate::uri::bare_uri(entry.trim()).trim();
            if uri.is_empty() || uri == "*" {
                return None;
            }
            // q in thousandths: "1", "0.5", "0.25" and so on.
            let q = crate::message::header_param(entry, "q")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .map_or(1000, |q| (q.clamp(0.0, 1.0) * 1000.0) as u32);
            Some((q, uri.to_owned()))
        })
        .collect();
    contacts.sort_by_key(|(q, _)| std::cmp::Reverse(*q));
    contacts.into_iter().map(|(_, uri)| uri).collect()
}

/// Whether two URIs name the same target (scheme, user and host, case aside; parameters too).
fn same_target(a: &str, b: &str) -> bool {
    let strip = |uri: &str| {
        uri.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_ascii_lowercase()
    };
    strip(a) == strip(b)
}

#[cfg(test)]
mod tests;
