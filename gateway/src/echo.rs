//! The echo test of the local domain (`echo@<domain>`): the caller's own media comes back.
//!
//! * From a browser: a WebRTC peer of its own ([`media::Echo`]) answers the offer, audio and
//!   video, and sends every packet back; no SIP is involved.
//! * From a SIP phone: the gateway answers the INVITE with the codecs of the offer and sends
//!   every RTP packet back to where it came from.

use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use bytes::Bytes;
use media::sdp::{Description, SipDescription, common_payloads, no_common_codec};
use media::{Codec, Echo, Output};
use protocol::{Event, SessionEvent, SessionState};
use sip::call::{CallEvent, Warning};
use sip::driver::{CallCommand, CallHandle, IncomingCall, SipEvent};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::call::{CallTask, Report, warning_for};
use crate::connection::{Notice, SessionCommand, StartCall};
use crate::server::Shared;

/// How long an echo call may stay silent before it is ended.
const SILENCE: Duration = Duration::from_secs(60);

/// A browser calls the echo test.
pub(crate) fn browser(
    shared: Arc<Shared>,
    start: StartCall,
    reports: mpsc::UnboundedSender<(String, Report)>,
) -> CallTask {
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let span = info_span!("echo", session = %start.session);
    tokio::spawn(run_browser(shared, start, reports, commands_rx).instrument(span));
    CallTask {
        commands,
        sip_events: None,
    }
}

async fn run_browser(
    shared: Arc<Shared>,
    start: StartCall,
    reports: mpsc::UnboundedSender<(String, Report)>,
    mut commands: mpsc::UnboundedReceiver<SessionCommand>,
) {
    let _gauge = shared.metrics.call_started();
    let session = start.session.clone();
    let report = |report: Report| {
        let _ = reports.send((session.clone(), report));
    };
    let state = |state: SessionState| {
        report(Report::Event(Event::Session {
            session: session.clone(),
            event: SessionEvent::State(state),
        }));
    };
    let media = &shared.media;
    let made = Echo::new(
        StdInstant::now(),
        media.browser_addr,
        &start.sdp,
        media.ice_timeout,
    );
    let (mut echo, answer) = match made {
        Ok(made) => made,
        Err(error) => {
            state(SessionState::Terminated {
                reason: Some(format!("488 Not Acceptable Here ({error})")),
            });
            report(Report::Notice(Notice::Ended));
            return;
        }
    };
    info!("echo test call");
    let (datagrams_tx, mut datagrams) = mpsc::channel(512);
    let _route = media.browser.register(echo.ice_ufrag(), datagrams_tx);
    state(SessionState::Progress);
    state(SessionState::Accepted {
        sdp: Some(answer),
        call_id: Some(uuid::Uuid::new_v4().simple().to_string()),
        headers: Default::default(),
    });
    report(Report::Notice(Notice::Accepted));
    let socket = media.browser.socket().clone();
    let mut deadline;
    let reason = loop {
        // Send what is due, and learn when to come back.
        loop {
            match echo.poll_output() {
                Output::Browser { destination, data } => {
                    let _ = socket.try_send_to(data, destination);
                }
                Output::Timeout(at) => {
                    deadline = at;
                    break;
                }
                Output::SipRtp { .. } | Output::SipRtcp { .. } => {}
            }
        }
        let mut failed = None;
        while let Some(event) = echo.poll_event() {
            match event {
                media::Event::Connected => state(SessionState::Established),
                media::Event::Failed(reason) => failed = Some(reason),
            }
        }
        if let Some(reason) = failed {
            warn!(%reason, "echo test ended");
            break reason;
        }
        tokio::select! {
            command = commands.recv() => match command {
                Some(SessionCommand::Terminate) | None => break "local hangup".to_owned(),
                Some(SessionCommand::Dtmf { digits, .. }) => {
                    debug!(%digits, "DTMF to the echo test (nothing to send it to)");
                }
                Some(SessionCommand::Answer { .. }) => {}
            },
            Some(datagram) = datagrams.recv() => {
                echo.handle_browser(datagram.at, datagram.source, &datagram.data);
                while let Ok(datagram) = datagrams.try_recv() {
                    echo.handle_browser(datagram.at, datagram.source, &datagram.data);
                }
            }
            () = tokio::time::sleep_until(Instant::from_std(deadline)) => {
                echo.handle_timeout(StdInstant::now());
            }
        }
    };
    echo.close();
    while let Output::Browser { destination, data } = echo.poll_output() {
        let _ = socket.try_send_to(data, destination);
    }
    state(SessionState::Terminated {
        reason: Some(reason),
    });
    report(Report::Notice(Notice::Ended));
}

/// A SIP phone calls the echo test.
pub(crate) fn sip(
    shared: Arc<Shared>,
    call: CallHandle,
    invite: IncomingCall,
    events: mpsc::UnboundedReceiver<SipEvent>,
) {
    let span = info_span!("echo", call = call.0);
    tokio::spawn(run_sip(shared, call, invite, events).instrument(span));
}

async fn run_sip(
    shared: Arc<Shared>,
    call: CallHandle,
    invite: IncomingCall,
    mut events: mpsc::UnboundedReceiver<SipEvent>,
) {
    let _gauge = shared.metrics.call_started();
    let refuse_with = |code: u16, reason: &str, warning: Option<Warning>| {
        shared.sip.call(
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
    let offer = String::from_utf8_lossy(&invite.sdp).into_owned();
    let description = match Description::parse(&offer) {
        Ok(description) => description,
        Err(error) => return not_acceptable(&error),
    };
    let (audio_index, audio) = match description.sip_audio() {
        Ok(audio) => audio,
        Err(error) => return not_acceptable(&error),
    };
    let payloads = common_payloads(&audio.payloads, &Codec::ALL);
    if payloads.is_empty() {
        return not_acceptable(&media::Error::NoCommonCodec(no_common_codec(
            audio,
            &Codec::ALL,
        )));
    }
    let Ok(ports) = shared.media.ports.allocate() else {
        return refuse(503, "Service Unavailable");
    };
    let _ports_gauge = shared.metrics.ports_taken();
    let Ok(local) = ports.rtp.local_addr() else {
        return refuse(503, "Service Unavailable");
    };
    let answer = SipDescription {
        session_id: u64::from(local.port()) << 16,
        version: 1,
        rtp: std::net::SocketAddr::new(shared.media.advertised, local.port()),
        payloads: &payloads,
        direction: audio.direction.answer(),
        answering: Some((&description, audio_index)),
    }
    .write();
    info!(from = %invite.from_uri, "echo test call from SIP");
    shared.sip.call(
        call,
        CallCommand::Answer {
            sdp: Bytes::from(answer),
            headers: Vec::new(),
        },
    );
    let mut buffer = vec![0u8; 2048];
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(SipEvent::Call { event: CallEvent::Terminated(_), .. }) | None => return,
                Some(_) => {}
            },
            received = ports.rtp.recv_from(&mut buffer) => {
                if let Ok((length, source)) = received {
                    heard = Instant::now();
                    let _ = ports.rtp.try_send_to(&buffer[..length], source);
                }
            }
            () = tokio::time::sleep_until(heard + SILENCE) => {
                info!("echo test: no RTP for {} s, hanging up", SILENCE.as_secs());
                shared.sip.call(call, CallCommand::Hangup);
                return;
            }
        }
    }
}
