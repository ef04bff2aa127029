//! One call (an INVITE session, RFC 3261 sections 13 to 15), sans-IO: the transaction user
//! above the endpoint's transactions.
//!
//! A [`Call`] is either outgoing (we sent the INVITE) or incoming. It is fed with the responses
//! to its requests, the requests of its dialog, transaction failures, timer expiries and the
//! owner's commands (hang up, answer, reject, answer an offer, send INFO), and it produces
//! [`CallOutput`]s (new requests, ACKs for 2xx, responses) and [`CallEvent`]s. The endpoint runs
//! the transactions and routes messages to calls.
//!
//! What it covers: early dialogs (one per fork) and PRACK for reliable provisional responses
//! (RFC 3262); digest authentication of the INVITE and of in-dialog requests; Record-Route;
//! CANCEL only once a provisional response came (a hang-up before any waits for one); a 2xx
//! that crosses our CANCEL, or comes from a second fork, is ACKed then ended with BYE;
//! retransmission of our 2xx until its ACK; re-INVITE and UPDATE from the far end (the owner
//! answers the offer, or gives one for an offerless re-INVITE); glare (491) and its retry;
//! session timers (RFC 4028), refreshing with UPDATE (or re-INVITE) when we are the refresher
//! and ending the call when the far end's refresh does not come, and 422 on our INVITE.
//! An incoming INVITE that requires reliable provisional responses gets none: the gateway then
//! sends no 180 (it needs no reliable provisional response of its own).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ezk_sip_types::{Method, Name};

use crate::auth::{Credentials, DigestClient};
use crate::dialog::{Dialog, record_routes};
use crate::message::{Message, RequestUri, StartLine};
use crate::transaction::Timers;
use crate::transport::Transport;

mod incoming;
mod outgoing;
mod refresh;

/// Whether a CANCEL says the call was answered elsewhere (RFC 3326: a `Reason` with protocol
/// `SIP` and `cause=200`), as forking proxies say to the devices that lost the race.
fn answered_elsewhere(cancel: &Message) -> bool {
    cancel
        .headers
        .get_raw(&Name::from("Reason".to_owned()))
        .flat_map(|value| crate::message::split_list(value.as_str()))
        .any(|reason| {
            let reason = reason.trim();
            let protocol = reason.split(';').next().unwrap_or_default().trim();
            protocol.eq_ignore_ascii_case("SIP")
                && crate::message::header_param(reason, "cause").map(str::trim) == Some("200")
        })
}

#[cfg(test)]
pub(crate) mod tests;

/// The methods the gateway's user agent takes (Allow in calls, registrations and the
/// endpoint's own answers): NOTIFY for its subscriptions; SUBSCRIBE is not among them since
/// only the local domain's server takes it (an account's binding answers 405).
pub(crate) const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, MESSAGE, NOTIFY";
/// The extensions we support.
const SUPPORTED: &str = "100rel, timer";
/// The `Reason` of a CANCEL sent because another branch of a fork answered (RFC 3326; the
/// wording is the one phones know from forking proxies).
const COMPLETED_ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

/// What a call needs to know about us.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// Our user part (From of outgoing calls).
    pub user: String,
    /// Our domain.
    pub domain: String,
    /// Our display name.
    pub display_name: Option<String>,
    /// For the challenges of our requests.
    pub credentials: Credentials,
    /// The transport toward the next hop.
    pub transport: Transport,
    /// Our `host:port` for Via and Contact.
    pub local: String,
    /// The user part of our Contact.
    pub contact_user: String,
    /// The User-Agent (and Server) header.
    pub user_agent: String,
    /// Our dialog tag.
    pub tag: String,
    /// Random text that branches and cnonces are made from (with a counter).
    pub seed: String,
    /// Transaction timers (T1, T2 time 2xx retransmissions).
    pub timers: Timers,
    /// The session interval we ask for (RFC 4028), or none to not ask.
    pub session_expires: Option<u32>,
    /// The smallest session interval we accept.
    pub min_se: u32,
}

/// An outgoing call's request.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The To of the INVITE, and its Request-URI unless `target` is given.
    pub uri: RequestUri,
    /// The Request-URI when it is not `uri` (a registered Contact of the callee).
    pub target: Option<String>,
    /// A Route header value (an outbound proxy), if any.
    pub route: Option<String>,
    /// The Call-ID.
    pub call_id: String,
    /// The SDP offer.
    pub sdp: Bytes,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

/// A `Warning` header (RFC 3261 section 20.43): why a request was refused, in words for the
/// person at the other end, with a code that says the kind (`302` incompatible transport, `305`
/// incompatible media format, `399` anything else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The warn-code.
    pub code: u16,
    /// The warn-text.
    pub text: String,
}

impl Warning {
    /// `302 Incompatible transport protocol`.
    pub const INCOMPATIBLE_TRANSPORT: u16 = 302;
    /// `305 Incompatible media format`.
    pub const INCOMPATIBLE_MEDIA_FORMAT: u16 = 305;
    /// `399 Miscellaneous warning`.
    pub const MISCELLANEOUS: u16 = 399;

    /// A warning with this code and text.
    pub fn new(code: u16, text: impl Into<String>) -> Warning {
        Warning {
            code,
            text: text.into(),
        }
    }

    /// The header's value: `code agent "text"`, the agent a pseudonym token (the gateway), the
    /// text a quoted string on one line.
    pub fn header_value(&self) -> String {
        let text: String = self
            .text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        format!("{} sylkrtc-gateway \"{text}\"", self.code)
    }
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The SIP status behind it, when there is one (the final response, 487 for a CANCEL).
    pub code: Option<u16>,
    /// Readable, such as `486 Busy Here`.
    pub reason: String,
    /// The caller cancelled an incoming call before it was answered (not when the CANCEL said
    /// it was answered elsewhere, RFC 3326 `Reason: SIP;cause=200`: that call was not missed).
    pub cancelled: bool,
}

/// What the call tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A provisional response to our INVITE (with the fork's tag, when it has one).
    Provisional {
        /// The status code.
        code: u16,
        /// The reason phrase.
        reason: String,
        /// The early SDP answer, if any.
        sdp: Option<Bytes>,
        /// The fork's To tag.
        tag: Option<String>,
    },
    /// Our INVITE was redirected (3xx): follow it with `Call::follow_redirect` or end the
    /// call with `Call::refuse_redirect`; nothing happens until one of them is called.
    Redirected {
        /// The status code.
        code: u16,
        /// The status line.
        reason: String,
        /// The Contacts, most preferred first (by `q`, then in order).
        contacts: Vec<String>,
    },
    /// The first 2xx to our INVITE: the call is up.
    Answered {
        /// The SDP answer (or none, which the owner must treat as an error).
        sdp: Option<Bytes>,
    },
    /// The ACK of our 2xx to an incoming call: the call is up. It carries the SDP answer
    /// when the INVITE had no offer.
    Confirmed {
        /// The answer, for an offerless INVITE.
        sdp: Option<Bytes>,
    },
    /// The far end sent a new offer (re-INVITE or UPDATE), or asked for one (offerless
    /// re-INVITE, `None`): call `Call::answer_offer`.
    Offer {
        /// The offer.
        sdp: Option<Bytes>,
    },
    /// The far end's answer to our offer: in the ACK, for the offer we gave an offerless
    /// re-INVITE; in the 2xx, for our own re-INVITE (`Call::reoffer`).
    Answer {
        /// The answer.
        sdp: Bytes,
    },
    /// Our re-INVITE's offer was refused (or could not be sent): the session stays as it
    /// was (RFC 3261 section 14.1).
    OfferRefused {
        /// The status code.
        code: u16,
        /// The status line, or why it was not sent.
        reason: String,
    },
    /// Our INFO got its final response (or failed: 408, 503), so the next may go.
    InfoAnswered {
        /// The status code.
        code: u16,
    },
    /// An INFO arrived.
    Info {
        /// Its Content-Type.
        content_type: String,
        /// Its body.
        body: Bytes,
    },
    /// Our MESSAGE got its final response (or failed: 408, 503, 481 with no dialog).
    MessageAnswered {
        /// The status code.
        code: u16,
        /// The status line's reason.
        reason: String,
    },
    /// A MESSAGE arrived in the dialog (RFC 3428 allows them there).
    Message {
        /// Its Content-Type.
        content_type: String,
        /// Its body.
        body: Bytes,
    },
    /// The call is over (reported once).
    Terminated(Ending),
}

/// What the call asks the endpoint to send.
#[derive(Debug, Clone)]
pub enum CallOutput {
    /// A request, in a new client transaction.
    Request(Message),
    /// An ACK for a 2xx, sent as is (no transaction).
    Ack(Message),
    /// A response, through the server transaction of its request.
    Response(Message),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Outgoing: INVITE sent, nothing heard.
    Calling,
    /// Outgoing: a provisional response came.
    Early,
    /// Incoming: not answered yet.
    Ringing,
    /// Incoming: our 2xx went out, its ACK has not come.
    Accepting,
    /// The dialog is up.
    Confirmed,
    /// We sent BYE (or wait for a chance to): waiting for it to complete.
    Ending,
    /// Nothing more will happen.
    Done,
}

/// A 2xx we retransmit until its ACK (RFC 3261 section 13.3.1.4).
#[derive(Debug, Clone)]
struct Unacked {
    response: Message,
    cseq: u32,
    due: Instant,
    interval: Duration,
    deadline: Instant,
    /// The 2xx carried our offer (offerless INVITE or re-INVITE): the ACK carries the answer.
    offered: bool,
}

/// A reliable provisional response (RFC 3262) retransmitted until its PRACK.
#[derive(Debug, Clone)]
struct Reliable {
    response: Message,
    rseq: u32,
    due: Instant,
    interval: Duration,
    /// 64*T1 after it was first sent: no PRACK by then, the INVITE is refused with a 5xx.
    deadline: Instant,
}

/// A request of the far end we have not answered yet, waiting for the owner.
#[derive(Debug, Clone)]
struct PendingOffer {
    request: Message,
    offered: bool,
}

/// Session timer state (RFC 4028).
#[derive(Debug, Clone, Copy)]
struct SessionTimer {
    interval: u32,
    we_refresh: bool,
    due: Instant,
}

/// One call.
#[derive(Debug)]
pub struct Call {
    config: CallConfig,
    outgoing: Option<Outgoing>,
    phase: Phase,
    auth: DigestClient,
    counter: u64,
    cseq: u32,
    /// Our INVITE as last sent (outgoing calls), or the far end's (incoming).
    invite: Option<Message>,
    /// Incoming: whether the INVITE requires 100rel (provisional responses are then sent
    /// reliably, RFC 3262).
    reliable_required: bool,
    /// Incoming: the reliable provisional response waiting for its PRACK.
    reliable: Option<Reliable>,
    /// Incoming: the RSeq of the next reliable provisional response.
    next_rseq: u32,
    /// Outgoing: a hang-up came before any provisional response.
    cancel_pending: bool,
    cancel_sent: bool,
    /// The CANCEL's `Reason` (RFC 3326), when there is one to give.
    cancel_reason: Option<&'static str>,
    /// Outgoing: a 3xx waiting for its owner's decision (its status code and line).
    redirect: Option<(u16, String)>,
    /// Outgoing: the Request-URIs our INVITE has been sent to, the first included.
    visited: Vec<String>,
    /// Outgoing: early dialogs by To tag, with the last RSeq acknowledged.
    early: HashMap<String, (Dialog, u32)>,
    /// Outgoing: the To tag of the last provisional response with SDP, the early dialog whose
    /// media the caller hears (and where an INFO before the answer goes).
    early_media: Option<String>,
    dialog: Option<Dialog>,
    /// The ACKs sent for 2xx, by To tag, to answer retransmissions.
    acks: HashMap<String, Message>,
    unacked: Option<Unacked>,
    pending: Option<PendingOffer>,
    /// The CSeq of our own re-INVITE or UPDATE in progress (a refresh).
    refreshing: Option<(Method, u32)>,
    /// When to retry a refresh (or our re-offer) that met glare.
    retry_refresh: Option<Instant>,
    /// Our own re-INVITE with a new offer is in progress: the description it replaces, which
    /// is ours again if the offer is refused.
    reoffering: Option<Bytes>,
    timer: Option<SessionTimer>,
    /// The far end accepts UPDATE (it listed it in Allow).
    peer_update: bool,
    /// Our current SDP, resent by re-INVITE refreshes.
    local_sdp: Bytes,
    /// A BYE to send once our 2xx is ACKed.
    bye_pending: bool,
    /// The CSeq of our BYE.
    bye: Option<u32>,
    /// A 422 was answered once already.
    retried_422: bool,
    terminated: bool,
    out: VecDeque<CallOutput>,
    events: VecDeque<CallEvent>,
}

impl Call {
    /// Starts an outgoing call: the INVITE is the first output.
    pub fn outgoing(now: Instant, config: CallConfig, outgoing: Outgoing) -> Call {
        let mut call = Call::new(config, Phase::Calling);
        call.local_sdp = outgoing.sdp.clone();
        call.outgoing = Some(outgoing);
        call.send_invite(now);
        call
    }

    /// Takes an incoming INVITE (already answered 100 by its transaction). An error is the final
    /// response to send instead (such as 420 for an extension we lack, 422 for a session
    /// interval below our minimum).
    pub fn incoming(
        now: Instant,
        config: CallConfig,
        invite: &Message,
    ) -> Result<Call, Box<Message>> {
        let unsupported: Vec<String> = tokens(invite, &Name::REQUIRE)
            .into_iter()
            .filter(|option| !SUPPORTED.split(", ").any(|ours| ours == option))
            .collect();
        if !unsupported.is_empty() {
            let mut response = invite.response(420, "Bad Extension", Some(&config.tag));
            response
                .headers
                .insert(Name::UNSUPPORTED, unsupported.join(", "));
            return Err(Box::new(response));
        }
        let asked = session_expires(invite);
        if let Some((interval, _)) = asked
            && interval < config.min_se
        {
            let mut response =
                invite.response(422, "Session Interval Too Small", Some(&config.tag));
            response
                .headers
                .insert(Name::MIN_SE, config.min_se.to_string());
            return Err(Box::new(response));
        }
        let Some(dialog) = Dialog::from_request(invite, &config.tag, 0) else {
            let response = invite.response(400, "Bad Request (no Contact)", Some(&config.tag));
            return Err(Box::new(response));
        };
        let mut call = Call::new(config, Phase::Ringing);
        call.reliable_required = tokens(invite, &Name::REQUIRE).iter().any(|t| t == "100rel");
        call.peer_update = allows_update(invite);
        // RFC 4028 section 9: without a refresher parameter the UAS picks; the caller refreshes
        // when it supports timers, otherwise we do.
        call.timer = asked.map(|(interval, refresher)| {
            let uac_supports = tokens(invite, &Name::SUPPORTED)
                .iter()
                .any(|t| t == "timer");
            let we_refresh = match refresher.as_deref() {
                Some("uas") => true,
                Some(_) => false,
                None => !uac_supports,
            };
            SessionTimer {
                interval,
                we_refresh,
                due: now,
            }
        });
        call.dialog = Some(dialog);
        call.invite = Some(invite.clone());
        Ok(call)
    }

    fn new(config: CallConfig, phase: Phase) -> Call {
        Call {
            auth: DigestClient::new(config.credentials.clone()),
            config,
            outgoing: None,
            phase,
            counter: 0,
            cseq: 0,
            invite: None,
            reliable_required: false,
            cancel_pending: false,
            cancel_sent: false,
            cancel_reason: None,
            redirect: None,
            visited: Vec::new(),
            early: HashMap::new(),
            early_media: None,
            dialog: None,
            acks: HashMap::new(),
            unacked: None,
            reliable: None,
            next_rseq: 1,
            pending: None,
            refreshing: None,
            retry_refresh: None,
            reoffering: None,
            timer: None,
            peer_update: false,
            local_sdp: Bytes::new(),
            bye_pending: false,
            bye: None,
            retried_422: false,
            terminated: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Whether nothing more will happen: the endpoint forgets the call.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Whether the call was reported terminated (it may still be finishing a BYE or CANCEL).
    pub fn is_terminated(&self) -> bool {
        self.terminated
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.invite.as_ref().and_then(Message::call_id)
    }

    /// Our tag.
    pub fn tag(&self) -> &str {
        &self.config.tag
    }

    /// Whether the dialog has a route set (its requests go through proxies).
    pub fn routed(&self) -> bool {
        self.dialog.as_ref().is_some_and(Dialog::has_routes)
    }

    /// The URI in-dialog requests are sent to (first route or remote target), once there is a
    /// dialog.
    pub fn next_hop(&self) -> Option<&str> {
        self.dialog.as_ref().map(Dialog::next_hop)
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("{}{:x}", self.config.seed, self.counter)
    }

    fn via(&mut self) -> String {
        let branch = self.next_id();
        format!(
            "SIP/2.0/{} {};rport;branch=z9hG4bK{branch}",
            self.config.transport.via_name(),
            self.config.local
        )
    }

    fn contact(&self) -> String {
        format!(
            "<sip:{}@{};transport={}>",
            self.config.contact_user,
            self.config.local,
            self.config.transport.param()
        )
    }

    fn name_addr(&self) -> String {
        let aor = format!("sip:{}@{}", self.config.user, self.config.domain);
        crate::uri::name_addr(self.config.display_name.as_deref(), &aor)
    }

    fn report(&mut self, ending: Ending) {
        if !self.terminated {
            self.terminated = true;
            self.events.push_back(CallEvent::Terminated(ending));
        }
    }

    fn end(&mut self, code: Option<u16>, reason: impl Into<String>) {
        self.report(Ending {
            code,
            reason: reason.into(),
            cancelled: false,
        });
    }

    // ----- Both -----

    /// Ends the call from our side: CANCEL (outgoing, once a provisional response came), BYE
    /// (once the dialog is up), 480 for an incoming call not answered yet. Reported as
    /// terminated at once; the call lingers until its CANCEL or BYE completes.
    pub fn hangup(&mut self, now: Instant) {
        self.hangup_with(now, None, "local hangup".to_owned());
    }

    /// Hangs up a call another branch of the same fork answered: its CANCEL says so
    /// (`Reason: SIP;cause=200`, RFC 3326), so the phone shows no missed call. A branch that
    /// answered meanwhile gets a BYE, as with [`Call::hangup`].
    pub fn hangup_answered_elsewhere(&mut self, now: Instant) {
        self.cancel_reason = Some(COMPLETED_ELSEWHERE);
        self.hangup_with(now, None, "answered elsewhere".to_owned());
    }

    fn hangup_with(&mut self, now: Instant, code: Option<u16>, reason: String) {
        let _ = now;
        match self.phase {
            // A redirection waits for nobody but us: nothing is outstanding.
            Phase::Calling if self.redirect.take().is_some() => self.phase = Phase::Done,
            Phase::Calling => self.cancel_pending = true,
            Phase::Early => {
                if !self.cancel_sent {
                    self.send_cancel();
                }
            }
            Phase::Ringing => {
                if let Some(response) = self.dialog_response(480, "Temporarily Unavailable") {
                    self.out.push_back(CallOutput::Response(response));
                }
                self.phase = Phase::Done;
            }
            Phase::Accepting => {
                self.bye_pending = true;
                self.phase = Phase::Ending;
            }
            Phase::Confirmed => self.send_bye(),
            Phase::Ending | Phase::Done => {}
        }
        self.end(code, reason);
    }

    fn send_bye(&mut self) {
        let Some(dialog) = &self.dialog else {
            self.phase = Phase::Done;
            return;
        };
        let dialog = dialog.clone();
        self.cseq = self.cseq.max(dialog.local_seq) + 1;
        let via = self.via();
        if let Some(mut bye) = dialog.request(Method::BYE, self.cseq, via) {
            bye.headers
                .insert(Name::USER_AGENT, self.config.user_agent.clone());
            self.authorize(&mut bye);
            self.out.push_back(CallOutput::Request(bye));
            self.bye = Some(self.cseq);
            self.phase = Phase::Ending;
        } else {
            self.phase = Phase::Done;
        }
        self.unacked = None;
        self.timer = None;
    }

    /// Adds credentials from the challenge held, if any.
    fn authorize(&mut self, request: &mut Message) {
        let StartLine::Request { method, uri } = &request.start else {
            return;
        };
        let (method, uri) = (method.to_string(), uri.as_str().to_owned());
        let cnonce = self.next_id();
        if let Some((name, value)) = self.auth.authorize(&method, &uri, &request.body, &cnonce) {
            request.headers.insert(name, value);
        }
    }

    /// Sends an INFO in the dialog (DTMF by `application/dtmf-relay`, for instance), or before
    /// the answer in the early dialog whose media the caller hears (RFC 6086 section 4.2.1
    /// allows INFO in early dialogs). Returns false when there is no dialog to send it in; the
    /// caller still hears of it as `InfoAnswered` with 481, so a queue of INFOs moves on.
    pub fn info(&mut self, content_type: &str, body: Bytes) -> bool {
        let via = self.via();
        let dialog = match self.phase {
            Phase::Confirmed | Phase::Accepting => self.dialog.as_mut(),
            Phase::Early => match &self.early_media {
                Some(tag) => self.early.get_mut(tag).map(|(dialog, _)| dialog),
                None => None,
            },
            _ => None,
        };
        let Some(dialog) = dialog else {
            self.events.push_back(CallEvent::InfoAnswered { code: 481 });
            return false;
        };
        self.cseq = self.cseq.max(dialog.local_seq) + 1;
        dialog.local_seq = self.cseq;
        let Some(mut info) = dialog.request(Method::INFO, self.cseq, via) else {
            self.events.push_back(CallEvent::InfoAnswered { code: 481 });
            return false;
        };
        info.headers
            .insert(Name::CONTENT_TYPE, content_type.to_owned());
        info.body = body;
        self.authorize(&mut info);
        self.out.push_back(CallOutput::Request(info));
        true
    }

    /// Sends a MESSAGE in the confirmed dialog; its outcome comes as `MessageAnswered` (481
    /// at once when there is no dialog to send it in).
    pub fn message(&mut self, content_type: &str, body: Bytes) -> bool {
        // RFC 3428 section 9: no large MESSAGE over UDP, and a dialog keeps its transport.
        if !self.config.transport.reliable() && body.len() + 500 > crate::transport::MAX_UDP_REQUEST
        {
            self.events.push_back(CallEvent::MessageAnswered {
                code: 513,
                reason: "Message Too Large (for a call over UDP)".to_owned(),
            });
            return false;
        }
        let via = self.via();
        let dialog = match self.phase {
            Phase::Confirmed => self.dialog.as_mut(),
            _ => None,
        };
        let request = dialog.and_then(|dialog| {
            self.cseq = self.cseq.max(dialog.local_seq) + 1;
            dialog.local_seq = self.cseq;
            dialog.request(Method::MESSAGE, self.cseq, via)
        });
        let Some(mut message) = request else {
            self.events.push_back(CallEvent::MessageAnswered {
                code: 481,
                reason: "Call/Transaction Does Not Exist (the call is not established)".to_owned(),
            });
            return false;
        };
        message
            .headers
            .insert(Name::CONTENT_TYPE, content_type.to_owned());
        message.body = body;
        self.authorize(&mut message);
        self.out.push_back(CallOutput::Request(message));
        true
    }

    /// A request of our dialog (or an ACK for our 2xx). Everything but ACK gets a response.
    pub fn handle_request(&mut self, now: Instant, request: &Message) {
        let (Some(method), Ok(cseq)) = (request.method().cloned(), request.cseq()) else {
            return;
        };
        if method == Method::ACK {
            return self.handle_ack(now, cseq.cseq, request);
        }
        let Some(dialog) = &mut self.dialog else {
            let response = self.respond_in_dialog(request, 481, "Call/Transaction Does Not Exist");
            return self.out.push_back(CallOutput::Response(response));
        };
        // RFC 3261 section 12.2.2: an old CSeq is refused.
        if dialog.remote_seq != 0 && cseq.cseq <= dialog.remote_seq {
            let response = self.respond_in_dialog(request, 500, "Server Internal Error (old CSeq)");
            return self.out.push_back(CallOutput::Response(response));
        }
        dialog.remote_seq = cseq.cseq;
        let ended = matches!(self.phase, Phase::Ending | Phase::Done);
        match method {
            Method::BYE => {
                let response = self.respond_in_dialog(request, 200, "OK");
                self.out.push_back(CallOutput::Response(response));
                if self.phase == Phase::Ringing {
                    // A BYE before the answer (RFC 3261 section 15.1.2) ends the INVITE too.
                    if let Some(response) = self.dialog_response(487, "Request Terminated") {
                        self.out.push_back(CallOutput::Response(response));
                    }
                }
                self.phase = Phase::Done;
                self.unacked = None;
                self.end(None, "remote hangup");
            }
            Method::INVITE | Method::UPDATE if ended => {
                let response =
                    self.respond_in_dialog(request, 481, "Call/Transaction Does Not Exist");
                self.out.push_back(CallOutput::Response(response));
            }
            Method::INVITE | Method::UPDATE => self.remote_offer(now, method, request),
            // Both are taken (200) and handed to the owner with their body.
            Method::INFO | Method::MESSAGE => {
                let response = self.respond_in_dialog(request, 200, "OK");
                self.out.push_back(CallOutput::Response(response));
                let content_type = request
                    .header(&Name::CONTENT_TYPE)
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                let body = request.body.clone();
                if !ended {
                    self.events.push_back(if method == Method::INFO {
                        CallEvent::Info { content_type, body }
                    } else {
                        CallEvent::Message { content_type, body }
                    });
                }
            }
            Method::OPTIONS => {
                let mut response = self.respond_in_dialog(request, 200, "OK");
                response.headers.insert(Name::ALLOW, ALLOW);
                response.headers.insert(Name::ACCEPT, "application/sdp");
                self.out.push_back(CallOutput::Response(response));
            }
            Method::PRACK => self.handle_prack(request),
            _ => {
                let mut response = self.respond_in_dialog(request, 405, "Method Not Allowed");
                response.headers.insert(Name::ALLOW, ALLOW);
                self.out.push_back(CallOutput::Response(response));
            }
        }
    }

    /// A transaction of ours failed (no response in time, or the transport failed).
    pub fn handle_failure(&mut self, now: Instant, request: &Message, timeout: bool) {
        let (Some(method), Ok(cseq)) = (request.method(), request.cseq()) else {
            return;
        };
        let (code, reason) = if timeout {
            (408, "408 Request Timeout")
        } else {
            (503, "503 Service Unavailable (transport failure)")
        };
        match *method {
            Method::INVITE if Some(cseq.cseq) == self.invite_cseq() && self.outgoing.is_some() => {
                if self.dialog.is_none() {
                    self.phase = Phase::Done;
                    self.end(Some(code), reason);
                }
            }
            Method::BYE => self.phase = Phase::Done,
            Method::INFO => {
                self.events.push_back(CallEvent::InfoAnswered { code });
                if self.dialog.is_some() && !self.terminated {
                    self.hangup_with(now, Some(code), reason.to_owned());
                }
            }
            Method::CANCEL => {
                // The INVITE transaction times out on its own.
            }
            // A message that did not go is the message's failure, not the call's.
            Method::MESSAGE => self.events.push_back(CallEvent::MessageAnswered {
                code,
                reason: reason.to_owned(),
            }),
            _ => {
                if self.refreshing.as_ref().map(|(_, number)| *number) == Some(cseq.cseq) {
                    self.refreshing = None;
                }
                if self.dialog.is_some() && !self.terminated {
                    self.hangup_with(now, Some(code), reason.to_owned());
                }
            }
        }
    }

    /// Timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(reliable) = &mut self.reliable {
            if self.phase != Phase::Ringing {
                self.reliable = None;
            } else if now >= reliable.deadline {
                // RFC 3262 section 3: no PRACK in 64*T1, the INVITE is refused with a 5xx.
                self.reliable = None;
                self.reject(504, "Server Time-out (no PRACK)");
            } else if now >= reliable.due {
                self.out
                    .push_back(CallOutput::Response(reliable.response.clone()));
                reliable.interval *= 2;
                reliable.due = now + reliable.interval;
            }
        }
        if let Some(unacked) = &mut self.unacked {
            if now >= unacked.deadline {
                // RFC 3261 section 13.3.1.4: no ACK, the session ends.
                self.unacked = None;
                self.bye_pending = false;
                self.phase = Phase::Confirmed;
                self.send_bye();
                self.end(Some(408), "408 no ACK for the 2xx");
            } else if now >= unacked.due {
                if !self.config.transport.reliable() {
                    self.out
                        .push_back(CallOutput::Response(unacked.response.clone()));
                }
                unacked.interval = (unacked.interval * 2).min(self.config.timers.t2);
                unacked.due = now + unacked.interval;
            }
        }
        if self.retry_refresh.is_some_and(|due| now >= due) {
            self.retry_refresh = None;
            if self.reoffering.is_some() {
                self.send_session_request(now, Method::INVITE);
            } else {
                self.send_refresh(now);
            }
        }
        if self.phase == Phase::Confirmed
            && self.refreshing.is_none()
            && let Some(timer) = self.timer
            && now >= timer.due
        {
            if timer.we_refresh {
                self.send_refresh(now);
            } else {
                self.hangup_with(now, Some(408), "session timer expired".to_owned());
            }
        }
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let unacked = self
            .unacked
            .as_ref()
            .map(|unacked| unacked.due.min(unacked.deadline));
        let timer = (self.phase == Phase::Confirmed && self.refreshing.is_none())
            .then_some(self.timer.map(|timer| timer.due))
            .flatten();
        let reliable = self
            .reliable
            .as_ref()
            .map(|reliable| reliable.due.min(reliable.deadline));
        [unacked, timer, self.retry_refresh, reliable]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next message to send.
    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }
}

/// The tokens of a comma-separated option header (Require, Supported), lower-cased.
pub(crate) fn tokens(message: &Message, name: &Name) -> Vec<String> {
    message
        .headers
        .get_raw(name)
        .flat_map(|value| value.as_str().split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect()
}

fn allows_update(message: &Message) -> bool {
    tokens(message, &Name::ALLOW)
        .iter()
        .any(|method| method == "update")
}

/// Session-Expires: the interval and the refresher parameter.
fn session_expires(message: &Message) -> Option<(u32, Option<String>)> {
    let value = message.header(&Name::SESSION_EXPIRES)?;
    let mut parts = value.split(';');
    let interval = parts.next()?.trim().parse().ok()?;
    let refresher = parts.find_map(|part| {
        let (name, value) = part.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("refresher")
            .then(|| value.trim().to_ascii_lowercase())
    });
    Some((interval, refresher))
}

fn sdp_of(message: &Message) -> Option<Bytes> {
    let sdp = message.header(&Name::CONTENT_TYPE).is_some_and(|value| {
        value
            .trim()
            .to_ascii_lowercase()
            .starts_with("application/sdp")
    });
    (sdp && !message.body.is_empty()).then(|| message.body.clone())
}

fn response_reason(response: &Message) -> String {
    match &response.start {
        StartLine::Response { reason, .. } => reason.clone(),
        StartLine::Request { .. } => String::new(),
    }
}

/// `486 Busy Here`.
fn response_line(response: &Message) -> String {
    format!(
        "{} {}",
        response.code().unwrap_or_default(),
        response_reason(response)
    )
}
