//! The echo test of the local domain (`echo@<domain>`): the caller's own media comes back.
//!
//! * From a browser: a WebRTC peer of its own ([`media::Echo`]) answers the offer, audio and
//!   video, and sends every packet back; no SIP is involved.
//! * From a SIP phone: the gateway answers the INVITE with the codecs of the offer and sends
//!   every RTP packet back to where it came from; with SRTP (as `media.srtp` allows), each
//!   packet is checked and decrypted with the phone's key and protected again with ours: SDES
//!   keys from the SDP, or DTLS-SRTP's from a handshake on the RTP port (the RTCP port is not
//!   read, so a phone without rtcp-mux has no SRTCP association with the echo).

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use media::driver::MediaSession;
use media::dtls::{Component, DtlsSrtp, Fingerprint, Progress, Setup, is_dtls, local_fingerprint};
use media::sdp::{Description, Direction, DtlsLine, SipDescription, relayable};
use media::srtp::{Crypto, SessionKeys, SrtpPolicy};
use media::{Codec, Echo};
use sip::driver::{CallCommand, CallEvents, CallHandle, IncomingCall};
use sip::{CallEvent, Warning};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::call::{CallServices, CallTask, CallUpdate, Ending, warning_for};
use crate::call::{Command, StartCall};

/// How long an echo call may stay silent before it is ended.
const SILENCE: Duration = Duration::from_secs(60);

/// A browser calls the echo test.
pub(crate) fn browser(
    services: Arc<CallServices>,
    start: StartCall,
    reports: mpsc::UnboundedSender<(String, CallUpdate)>,
) -> CallTask {
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let span = info_span!("echo", session = %start.session);
    tokio::spawn(run_browser(services, start, reports, commands_rx).instrument(span));
    CallTask { commands }
}

async fn run_browser(
    services: Arc<CallServices>,
    start: StartCall,
    reports: mpsc::UnboundedSender<(String, CallUpdate)>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let _gauge = services.metrics.call_started();
    let session = start.session.clone();
    let update = |update: CallUpdate| {
        let _ = reports.send((session.clone(), update));
    };
    let media = &services.media;
    let made = Echo::new(
        StdInstant::now(),
        media.browser_addr,
        &start.sdp,
        media.ice_timeout,
    );
    let (mut echo, answer) = match made {
        Ok(made) => made,
        Err(error) => {
            update(CallUpdate::Terminated(Ending::new(format!(
                "488 Not Acceptable Here ({error})"
            ))));
            return;
        }
    };
    info!("echo test call");
    let mut session = MediaSession::new(&media.browser, None);
    session.claim(echo.ice_ufrag());
    update(CallUpdate::Progress);
    update(CallUpdate::Accepted {
        sdp: Some(answer),
        call_id: Some(uuid::Uuid::new_v4().simple().to_string()),
    });
    let reason = loop {
        // Send what is due, and learn when to come back.
        session.flush(&mut echo);
        let mut failed = None;
        while let Some(event) = echo.poll_event() {
            match event {
                media::Event::Connected => update(CallUpdate::Established),
                media::Event::Failed(reason) => failed = Some(reason),
                // The browser echo has no SIP side to ask.
                media::Event::KeyframeByInfo => {}
            }
        }
        if let Some(reason) = failed {
            warn!(%reason, "echo test ended");
            break reason;
        }
        tokio::select! {
            biased;
            input = session.next() => session.feed(&mut echo, input),
            command = commands.recv() => match command {
                Some(Command::Hangup | Command::Refuse { .. }) | None => {
                    break "local hangup".to_owned();
                }
                Some(Command::Dtmf { digits, .. }) => {
                    debug!(%digits, "DTMF to the echo test (nothing to send it to)");
                }
                Some(Command::Answer { .. }) => {}
                // A message comes back too, as a new message of the echo's.
                Some(Command::Message(text)) => {
                    update(CallUpdate::MessageAnswered {
                        message_id: text.message_id,
                        timestamp: text.timestamp.clone(),
                        code: 200,
                        reason: "OK".to_owned(),
                    });
                    update(CallUpdate::Message(Box::new(crate::cpim::Received {
                        message_id: uuid::Uuid::new_v4().to_string(),
                        timestamp: text.timestamp,
                        content_type: text.content_type,
                        content: text.content,
                        disposition: Vec::new(),
                        cpim_from: None,
                    })));
                }
                Some(Command::Update { sdp }) => match echo.reoffer(&sdp) {
                    Ok(answer) => update(CallUpdate::Updated { sdp: answer }),
                    Err(error) => update(CallUpdate::UpdateFailed {
                        reason: format!("488 the new offer cannot be used: {error}"),
                    }),
                },
            },
        }
    };
    echo.close();
    session.flush(&mut echo);
    update(CallUpdate::Terminated(Ending::new(reason)));
}

/// A SIP phone calls the echo test.
pub(crate) fn sip(
    services: Arc<CallServices>,
    call: CallHandle,
    invite: IncomingCall,
    events: CallEvents,
) {
    let span = info_span!("echo", call = call.0);
    tokio::spawn(run_sip(services, call, invite, events).instrument(span));
}

async fn run_sip(
    services: Arc<CallServices>,
    call: CallHandle,
    invite: IncomingCall,
    mut events: CallEvents,
) {
    let _gauge = services.metrics.call_started();
    let refuse_with = |code: u16, reason: &str, warning: Option<Warning>| {
        services.sip.call(
            call,
            CallCommand::Reject {
                code,
                reason: reason.to_owned(),
                warning,
            },
        );
    };
    let refuse = |code: u16, reason: &str| refuse_with(code, reason, None);
    let not_acceptable =
        |error: &media::Error| refuse_with(488, "Not Acceptable Here", Some(warning_for(error)));
    let policy = services.media.srtp.clone();
    let offer = match read_offer(&invite.sdp, &policy) {
        Ok(offer) => offer,
        Err(error) => return not_acceptable(&error),
    };
    let Ok(ports) = services.media.ports.allocate() else {
        return refuse(503, "Service Unavailable");
    };
    let _ports_gauge = services.metrics.ports_taken();
    let Ok(local) = ports.rtp.local_addr() else {
        return refuse(503, "Service Unavailable");
    };
    let rtp = std::net::SocketAddr::new(services.media.advertised, local.port());
    let mut session = EchoSession {
        rtp,
        version: 1,
        payloads: Vec::new(),
        phone_sends: false,
        policy,
        srtp: None,
        secure: false,
        dtls: None,
        plain: Vec::with_capacity(1500),
        protected: Vec::with_capacity(1500),
    };
    let answer = match session.take(offer) {
        Ok(answer) => answer,
        Err(error) => return not_acceptable(&error),
    };
    info!(from = %invite.from_uri, "echo test call from SIP");
    services.sip.call(
        call,
        CallCommand::Answer {
            sdp: Bytes::from(answer),
            headers: Vec::new(),
        },
    );
    let mut buffer = vec![0u8; 2048];
    let mut heard = Instant::now();
    loop {
        // DTLS-SRTP: what the handshake has to send, and when it runs its timers next.
        while let Some((_, destination, data)) = session.dtls_transmit() {
            let _ = ports.rtp.try_send_to(&data, destination);
        }
        let dtls_timer = session.dtls_timeout();
        tokio::select! {
            event = events.recv() => match event {
                Some(CallEvent::Terminated(_)) | None => return,
                Some(CallEvent::Offer { sdp }) => {
                    // Hold, resume, a new address or codec (re-INVITE or UPDATE): answered like
                    // the first offer, the direction mirrored.
                    let command = session.reoffer(sdp.as_deref());
                    if session.phone_sends {
                        heard = Instant::now();
                    }
                    services.sip.call(call, command);
                }
                Some(_) => {}
            },
            received = ports.rtp.recv_from(&mut buffer) => {
                if let Ok((length, source)) = received {
                    if is_dtls(&buffer[..length]) {
                        session.handle_dtls(&buffer[..length]);
                    } else if let Some(packet) = session.reflect(&buffer[..length]) {
                        heard = Instant::now();
                        let _ = ports.rtp.try_send_to(packet, source);
                    }
                }
            }
            () = tokio::time::sleep_until(dtls_timer.unwrap_or(heard)), if dtls_timer.is_some() => {
                if let Err(error) = session.dtls_timers() {
                    info!("echo test: {error}, hanging up");
                    services.sip.call(call, CallCommand::Hangup);
                    return;
                }
            }
            () = tokio::time::sleep_until(heard + SILENCE), if session.phone_sends => {
                info!("echo test: no RTP for {} s, hanging up", SILENCE.as_secs());
                services.sip.call(call, CallCommand::Hangup);
                return;
            }
        }
    }
}

/// What the echo test has agreed with a SIP phone, to answer its later offers.
struct EchoSession {
    rtp: std::net::SocketAddr,
    version: u64,
    payloads: Vec<media::Payload>,
    /// Whether the phone's direction has it sending (a held phone is not timed out).
    phone_sends: bool,
    policy: SrtpPolicy,
    /// The keys, when the phone's media is SRTP.
    srtp: Option<SessionKeys>,
    /// Whether our answers say `RTP/SAVP`.
    secure: bool,
    /// DTLS-SRTP, when the phone's m-line is `UDP/TLS/RTP/SAVP`: what our answer says and the
    /// handshake (its keys go to `srtp`).
    dtls: Option<(DtlsLine, DtlsSrtp)>,
    plain: Vec<u8>,
    protected: Vec<u8>,
}

impl EchoSession {
    /// Takes an offer: its payloads, direction and key (or DTLS-SRTP: the handshake is kept
    /// for the same fingerprint and role, else started anew); returns the answer.
    fn take(&mut self, offer: Offer) -> Result<String, media::Error> {
        self.payloads = offer.payloads;
        self.phone_sends = offer.direction.sends();
        self.secure = offer.secure;
        match offer.dtls {
            Some(dtls) => {
                let kept = self
                    .dtls
                    .as_ref()
                    .is_some_and(|(_, handshake)| handshake.keeps(dtls.setup, &dtls.fingerprint));
                if !kept {
                    let line = DtlsLine {
                        proto: dtls.proto,
                        fingerprint: local_fingerprint()?,
                        setup: dtls.setup,
                    };
                    // The phone checks our certificate against our answer, which goes out
                    // as this returns; a ClientHello that comes first is sent again.
                    let handshake = DtlsSrtp::new(
                        std::time::Instant::now(),
                        dtls.setup,
                        dtls.fingerprint,
                        dtls.target,
                        None,
                    )?;
                    self.dtls = Some((line, handshake));
                    self.srtp = None;
                }
            }
            None => {
                self.dtls = None;
                self.srtp = offer.key.map(|remote| {
                    let local = SessionKeys::answer_key(self.srtp.as_ref(), &remote);
                    SessionKeys::rekey(self.srtp.take(), local, remote)
                });
            }
        }
        Ok(self.answer(&offer.description, offer.index, offer.direction))
    }

    /// A DTLS datagram from the phone: its keys, when it completes the handshake. A failed
    /// handshake is left to the silence that ends the call.
    fn handle_dtls(&mut self, data: &[u8]) {
        let Some((_, handshake)) = &mut self.dtls else {
            return;
        };
        if let Ok(Progress::Keys(keys)) =
            handshake.handle(std::time::Instant::now(), Component::Rtp, data)
        {
            self.srtp = Some(*keys);
        }
    }

    /// The handshake's next datagram for the phone.
    fn dtls_transmit(&mut self) -> Option<(Component, std::net::SocketAddr, Vec<u8>)> {
        self.dtls.as_mut()?.1.poll_transmit()
    }

    /// When the handshake's timers run next.
    fn dtls_timeout(&self) -> Option<Instant> {
        let at = self.dtls.as_ref()?.1.poll_timeout()?;
        Some(Instant::from_std(at))
    }

    /// Runs the handshake's timers: an error when the phone never answered.
    fn dtls_timers(&mut self) -> Result<(), media::Error> {
        match &mut self.dtls {
            Some((_, handshake)) => handshake.handle_timeout(std::time::Instant::now()),
            None => Ok(()),
        }
    }

    /// A packet from the phone as it goes back: as it came, or under our key once the phone's
    /// checked out; `None` for one that did not.
    fn reflect<'a>(&'a mut self, packet: &'a [u8]) -> Option<&'a [u8]> {
        let Some(keys) = &mut self.srtp else {
            // DTLS-SRTP without keys yet: nothing goes back in the clear.
            return self.dtls.is_none().then_some(packet);
        };
        if media::rtp::is_rtcp(packet) {
            keys.receive.unprotect_rtcp(packet, &mut self.plain).ok()?;
            keys.send
                .protect_rtcp(&self.plain, &mut self.protected)
                .ok()?;
        } else {
            keys.receive.unprotect_rtp(packet, &mut self.plain).ok()?;
            keys.send
                .protect_rtp(&self.plain, &mut self.protected)
                .ok()?;
        }
        Some(&self.protected)
    }

    /// The answer to an offer: our port, the offer's payloads we carry, the direction mirrored.
    fn answer(&self, offer: &Description, audio_index: usize, direction: Direction) -> String {
        let keys = self.keys();
        SipDescription {
            session_id: u64::from(self.rtp.port()) << 16,
            version: self.version,
            rtp: self.rtp,
            payloads: &self.payloads,
            direction: direction.answer(),
            answering: Some((offer, audio_index)),
            crypto: &keys,
            secure: self.secure,
            video: None,
            removed_video: None,
            dtls: self.dtls.as_ref().map(|(line, _)| line),
        }
        .write()
    }

    /// The command that answers a re-INVITE's or UPDATE's offer (or, for an offerless
    /// re-INVITE, gives ours). The echo reflects whatever it receives, so any codec it carries
    /// will do.
    fn reoffer(&mut self, sdp: Option<&[u8]>) -> CallCommand {
        self.version += 1;
        let Some(sdp) = sdp else {
            self.phone_sends = true;
            let keys = self.keys();
            let offer = SipDescription {
                session_id: u64::from(self.rtp.port()) << 16,
                version: self.version,
                rtp: self.rtp,
                payloads: &self.payloads,
                direction: Direction::SendRecv,
                answering: None,
                crypto: &keys,
                secure: self.secure,
                video: None,
                removed_video: None,
                dtls: self.dtls.as_ref().map(|(line, _)| line),
            }
            .write();
            return CallCommand::AnswerOffer(Bytes::from(offer));
        };
        let refuse = |error: &media::Error| CallCommand::RefuseOffer {
            code: 488,
            reason: "Not Acceptable Here".to_owned(),
            warning: Some(warning_for(error)),
        };
        let offer = match read_offer(sdp, &self.policy) {
            Ok(offer) => offer,
            Err(error) => return refuse(&error),
        };
        info!(direction = %offer.direction.answer(), "echo test: new offer answered");
        match self.take(offer) {
            Ok(answer) => CallCommand::AnswerOffer(Bytes::from(answer)),
            Err(error) => refuse(&error),
        }
    }

    /// The SDES key our descriptions give (none with DTLS-SRTP, whose keys are never written).
    fn keys(&self) -> Vec<Crypto> {
        match &self.dtls {
            Some(_) => Vec::new(),
            None => self.srtp.iter().map(|keys| keys.local.clone()).collect(),
        }
    }
}

/// A phone's offer as the echo takes it.
struct Offer {
    description: Description,
    /// Its audio m-line.
    index: usize,
    /// The payloads the echo carries of it.
    payloads: Vec<media::Payload>,
    /// The phone's direction.
    direction: Direction,
    /// The phone's key, when its media is SRTP.
    key: Option<Crypto>,
    /// Whether its profile is `RTP/SAVP`.
    secure: bool,
    /// DTLS-SRTP, when its profile is `UDP/TLS/RTP/SAVP`.
    dtls: Option<OfferedDtls>,
}

/// What a phone's DTLS-SRTP offer says.
struct OfferedDtls {
    proto: String,
    fingerprint: Fingerprint,
    /// Our role.
    setup: Setup,
    /// Where the phone receives.
    target: std::net::SocketAddr,
}

/// Reads a phone's offer, or says why it cannot be taken.
fn read_offer(sdp: &[u8], policy: &SrtpPolicy) -> Result<Offer, media::Error> {
    let description = Description::parse(&String::from_utf8_lossy(sdp))?;
    let (index, audio, key) = description.sip_audio_with(policy)?;
    let dtls = match (
        audio.is_dtls_profile(),
        &audio.fingerprint,
        audio.rtp_target(),
    ) {
        (false, _, _) => None,
        (true, Some(fingerprint), Some(target)) => Some(OfferedDtls {
            proto: audio.proto.clone(),
            fingerprint: fingerprint.clone(),
            setup: Setup::answering(audio.setup.as_deref()).ok_or_else(|| {
                media::Error::IncompatibleTransport(format!("{}: a=setup", audio.proto))
            })?,
            target,
        }),
        (true, _, _) => {
            return Err(media::Error::IncompatibleTransport(format!(
                "{} without a fingerprint or an address",
                audio.proto
            )));
        }
    };
    let payloads = relayable(audio, &Codec::ALL)?;
    Ok(Offer {
        index,
        payloads,
        direction: audio.direction,
        key: key.cloned(),
        secure: audio.is_srtp_profile(),
        dtls,
        description,
    })
}
