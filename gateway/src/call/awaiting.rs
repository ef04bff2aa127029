//! An outgoing call to a user of the local domain who has no place to ring but gave push
//! tokens: the devices are woken (`crate::push`) and the call waits, up to
//! [`CALL_WAIT`], for a place of the callee to appear, then goes on as any call to that user;
//! the caller hanging up first, or the wait running out, sends the devices a `cancel`.

use std::sync::Arc;

use protocol::Aor;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span};

use super::{Call, CallServices, CallTask, CallUpdate, Command, Ending, FarEnd, StartCall};
use crate::push::{CALL_POLL, CALL_WAIT, Pusher, Wake};

/// Starts the call's task, which wakes the callee's devices and waits for one before
/// calling: `place` is the dial plan asked again (a far end once the callee has a place to
/// ring), `refusal` what the caller hears if no device comes.
pub(crate) fn outgoing(
    services: Arc<CallServices>,
    pusher: Arc<Pusher>,
    start: StartCall,
    place: impl Fn() -> Option<FarEnd> + Send + 'static,
    refusal: Ending,
    reports: mpsc::UnboundedSender<(String, CallUpdate)>,
) -> CallTask {
    let (commands, mut commands_rx) = mpsc::unbounded_channel();
    let span = info_span!("call", session = %start.session, direction = "out");
    let session = start.session.clone();
    let task = async move {
        let report = |update| {
            let _ = reports.send((session.clone(), update));
        };
        let callee = Aor::parse(&format!(
            "{}@{}",
            start.uri.user().unwrap_or_default(),
            start.uri.host().unwrap_or_default()
        ));
        let Ok(callee) = callee else {
            return report(CallUpdate::Terminated(refusal));
        };
        if !pusher.has_tokens(&callee).await {
            return report(CallUpdate::Terminated(refusal));
        }
        let from = format!("{}@{}", start.account.user, start.account.domain);
        pusher.wake(
            &callee,
            Wake::Call {
                call_id: start.session.clone(),
                from: from.clone(),
                display_name: start.account.display_name.clone(),
                video: crate::push::offers_video(start.sdp.as_bytes()),
            },
        );
        let cancel = Wake::Cancel {
            call_id: start.session.clone(),
            from,
        };
        info!(%callee, "no place to ring: the devices are woken");
        // The caller hears it ring meanwhile, as a phone caller hears 180.
        report(CallUpdate::Progress);
        report(CallUpdate::Ringing);
        let deadline = tokio::time::Instant::now() + CALL_WAIT;
        let far_end = loop {
            tokio::select! {
                command = commands_rx.recv() => match command {
                    Some(Command::Hangup) | None => {
                        pusher.wake(&callee, cancel);
                        return report(CallUpdate::Terminated(Ending::new("local hangup")));
                    }
                    // Nothing else means anything before the call is placed.
                    Some(other) => debug!(?other, "command while the devices wake"),
                },
                () = tokio::time::sleep(CALL_POLL) => {
                    if let Some(far_end) = place() {
                        info!(%callee, "a woken device is there: calling");
                        break far_end;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        pusher.wake(&callee, cancel);
                        let text = format!(
                            "{refusal}; no device woke within {} s",
                            CALL_WAIT.as_secs()
                        );
                        return report(CallUpdate::Terminated(Ending::new(text)));
                    }
                }
            }
        };
        let mut call = Call::new(
            services,
            session.clone(),
            reports.clone(),
            crate::metrics::calls::Direction::Out,
        );
        match call.start_outgoing(start, far_end) {
            Ok(events) => call.run(commands_rx, events).await,
            Err(reason) => call.update(CallUpdate::Terminated(Ending::new(reason))),
        }
    };
    tokio::spawn(task.instrument(span));
    CallTask { commands }
}
