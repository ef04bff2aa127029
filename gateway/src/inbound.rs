//! The calls the SIP driver gives the local domain (from softphones): routed by the dial plan
//! ([`crate::routing::from_phone`]) to the browsers of the callee (several at once through a
//! task that speaks for the fork), to the echo test, or refused;
//! callers who did not authenticate only within the admission's limits. Their later events are
//! forwarded to where they went. MESSAGEs for the domain's users go to the post
//! ([`crate::messaging::local`]).

use std::sync::Arc;

use sip::driver::{
    Answer, CallCommand, CallEvents, CallHandle, IncomingCall, LocalEvent, LocalIncoming,
    RequestHandle,
};
use sip::{CallEvent, Warning};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::admission::Admission;
use crate::call::CallServices;
use crate::call::fork_in::{Deliver, IncomingFork};
use crate::leg;
use crate::local::{Arriving, BrowserBinding};
use crate::matrix::{SipCall, ToMatrix};
use crate::messaging::local::{Post, SenderLimit};
use crate::push::{CALL_POLL, CALL_WAIT, Wake};
use crate::routing::PhoneRoute;

/// What the local domain's requests go to besides calls.
pub(crate) struct Services {
    /// The post, for MESSAGEs.
    pub(crate) post: Option<Post>,
    /// The presence server, for SUBSCRIBE and PUBLISH.
    pub(crate) presence: Option<crate::presence::server::PresenceServer>,
    /// The Matrix bridge, for the addresses that are Matrix users.
    pub(crate) to_matrix: Option<ToMatrix>,
}

/// Takes the local domain's calls from `calls` until the driver stops.
pub(crate) async fn route(
    services: Arc<CallServices>,
    mut calls: mpsc::UnboundedReceiver<LocalEvent>,
    mut admission: Admission,
    others: Services,
) {
    let Services {
        post,
        presence,
        to_matrix,
    } = others;
    // The admitted calls of callers who did not authenticate, as they end.
    let (ended, mut ended_rx) = mpsc::unbounded_channel();
    let mut senders = SenderLimit::default();
    loop {
        let incoming = tokio::select! {
            incoming = calls.recv() => match incoming {
                Some(LocalEvent::Call(incoming)) => incoming,
                Some(LocalEvent::Request { request, source, authenticated, message }) => {
                    if let Some(presence) = &presence
                        && matches!(message.method(),
                            Some(&ezk_sip_types::Method::SUBSCRIBE | &ezk_sip_types::Method::PUBLISH))
                    {
                        if !authenticated && !senders.allow(source.ip(), std::time::Instant::now()) {
                            services.sip.answer(request, Answer {
                                code: 503,
                                reason: "Service Unavailable (too many requests from this address)".to_owned(),
                                headers: vec![("Retry-After".to_owned(), "60".to_owned())],
                            });
                            continue;
                        }
                        presence.handle(crate::presence::server::PresenceRequest {
                            request, authenticated, message: *message,
                        });
                        continue;
                    }
                    request_for_domain(&services, post.as_ref(), &mut senders, request,
                        source, authenticated, *message);
                    continue;
                }
                None => return,
            },
            Some(call) = ended_rx.recv() => {
                admission.ended(call);
                continue;
            }
        };
        let LocalIncoming {
            call,
            user,
            uri_params,
            source,
            authenticated,
            invite,
            mut events,
        } = incoming;
        let Some(local) = &services.local else {
            continue;
        };
        if !authenticated {
            if let Err(refusal) = admission.admit(call, source.ip()) {
                warn!(%source, from = %invite.from_uri, "call refused: {}", refusal.text());
                services.sip.call(
                    call,
                    CallCommand::Reject {
                        code: 503,
                        reason: "Service Unavailable".to_owned(),
                        warning: Some(Warning::new(Warning::MISCELLANEOUS, refusal.text())),
                    },
                );
                continue;
            }
            events = watched(call, events, ended.clone());
        }
        if let Some(to_matrix) = &to_matrix
            && let Some(callee) = to_matrix.matrix_user(&user)
        {
            if !authenticated {
                // The caller's ghost would speak in Matrix under a From nobody checked.
                info!(%user, from = %invite.from_uri, "call to a Matrix user refused: caller not authenticated");
                let text = "calls to Matrix users are taken from the local domain's \
                            authenticated users only";
                services.sip.call(
                    call,
                    CallCommand::Reject {
                        code: 403,
                        reason: "Forbidden".to_owned(),
                        warning: Some(Warning::new(Warning::MISCELLANEOUS, text)),
                    },
                );
                continue;
            }
            debug!(%user, %callee, from = %invite.from_uri, "call from SIP to a Matrix user");
            let call = SipCall {
                call,
                invite: *invite,
                events,
                callee,
            };
            to_matrix.call(&services.sip, call);
            continue;
        }
        let stored_rung = uri_params
            .split(';')
            .any(|param| param.eq_ignore_ascii_case(crate::local::STORED_PHONES_RUNG));
        let route = crate::routing::from_phone(local, &user, source, stored_rung);
        if let PhoneRoute::Refuse { code: 480, .. } = &route
            && services.pusher.is_some()
            && local.knows(&user)
        {
            tokio::spawn(wake_then_ring(
                services.clone(),
                call,
                *invite,
                events,
                user,
                source,
                route,
            ));
            continue;
        }
        dispatch(&services, call, *invite, events, user, route);
    }
}

/// Takes a phone's call where its route goes.
fn dispatch(
    services: &Arc<CallServices>,
    call: CallHandle,
    invite: IncomingCall,
    events: CallEvents,
    user: String,
    route: PhoneRoute,
) {
    match route {
        PhoneRoute::Echo => {
            debug!(from = %invite.from_uri, "echo test call from SIP");
            crate::echo::sip(services.clone(), call, invite, events);
        }
        PhoneRoute::Local {
            mut browsers,
            phones,
        } if browsers.len() == 1 && phones.is_empty() => {
            debug!(%user, from = %invite.from_uri, "call from SIP to a local browser");
            let binding = browsers.remove(0);
            let arrival = crate::local::Arrival {
                handle: binding.handle,
                call,
                invite,
                from: Arriving::Sip(events),
            };
            if binding.calls.send(arrival).is_err() {
                // The browser's connection went away meanwhile.
                services.sip.call(
                    call,
                    CallCommand::Reject {
                        code: 480,
                        reason: "Temporarily Unavailable".to_owned(),
                        warning: None,
                    },
                );
            }
        }
        PhoneRoute::Local { browsers, phones } => {
            debug!(%user, from = %invite.from_uri, browsers = browsers.len(),
                phones = phones.len(), "call from SIP to every place of its local callee");
            let places = Places {
                user,
                browsers,
                phones,
            };
            tokio::spawn(ring_all(services.clone(), call, invite, events, places));
        }
        PhoneRoute::Refuse { code, reason, text } => {
            info!(%user, from = %invite.from_uri, code, "call from SIP refused: {text}");
            services.sip.call(
                call,
                CallCommand::Reject {
                    code,
                    reason: reason.to_owned(),
                    warning: Some(Warning::new(Warning::MISCELLANEOUS, text)),
                },
            );
        }
    }
}

/// A call for a user none of whose browsers or phones is there to ring (its `route` is 480):
/// when a device of theirs gave a push token, it is woken (`crate::push`), the caller hears
/// ringing, and the call goes where the route then goes as soon as a place appears, for up to
/// [`CALL_WAIT`]; a caller who gives up first, or the wait running out, sends the devices a
/// `cancel`. Without a token the call is refused at once, as before.
async fn wake_then_ring(
    services: Arc<CallServices>,
    call: CallHandle,
    invite: IncomingCall,
    mut events: CallEvents,
    user: String,
    source: std::net::SocketAddr,
    route: PhoneRoute,
) {
    let (Some(local), Some(pusher)) = (services.local.clone(), services.pusher.clone()) else {
        return dispatch(&services, call, invite, events, user, route);
    };
    let Ok(callee) = protocol::Aor::parse(&format!("{user}@{}", local.domain())) else {
        return dispatch(&services, call, invite, events, user, route);
    };
    if !pusher.has_tokens(&callee).await {
        return dispatch(&services, call, invite, events, user, route);
    }
    let from = invite
        .from_uri
        .trim_start_matches("sips:")
        .trim_start_matches("sip:")
        .to_owned();
    pusher.wake(
        &callee,
        Wake::Call {
            call_id: invite.call_id.clone(),
            from: from.clone(),
            display_name: invite.display_name.clone(),
            video: crate::push::offers_video(&invite.sdp),
        },
    );
    services.sip.call(call, CallCommand::Ring);
    info!(%user, "no place to ring: the devices are woken");
    let cancel = Wake::Cancel {
        call_id: invite.call_id.clone(),
        from,
    };
    let deadline = tokio::time::Instant::now() + CALL_WAIT;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(CallEvent::Terminated(ending)) => {
                    info!(%user, reason = %ending.reason, "the caller gave up while the devices woke");
                    pusher.wake(&callee, cancel);
                    return;
                }
                Some(other) => debug!(?other, "caller's event while the devices wake"),
                None => {
                    pusher.wake(&callee, cancel);
                    return;
                }
            },
            () = tokio::time::sleep(CALL_POLL) => {
                let route = crate::routing::from_phone(&local, &user, source, false);
                if matches!(route, PhoneRoute::Local { .. }) {
                    info!(%user, "a woken device is there: the call goes on");
                    return dispatch(&services, call, invite, events, user, route);
                }
                if tokio::time::Instant::now() >= deadline {
                    pusher.wake(&callee, cancel);
                    let text = format!(
                        "{user} has no device registered (none woke within {} s)",
                        CALL_WAIT.as_secs()
                    );
                    return dispatch(&services, call, invite, events, user, PhoneRoute::Refuse {
                        code: 480,
                        reason: "Temporarily Unavailable",
                        text,
                    });
                }
            }
        }
    }
}

/// An out-of-dialog request for the local domain: a MESSAGE for one of its users goes to the
/// post (in a task; its answer waits for the delivery), within the limit of senders who did not
/// authenticate; anything else is answered as the domain does not take it.
fn request_for_domain(
    services: &CallServices,
    post: Option<&Post>,
    senders: &mut SenderLimit,
    request: RequestHandle,
    source: std::net::SocketAddr,
    authenticated: bool,
    message: sip::Message,
) {
    let user = match (&message.start, post) {
        (sip::StartLine::Request { uri, .. }, Some(_))
            if message.method() == Some(&ezk_sip_types::Method::MESSAGE) =>
        {
            uri.user().map(str::to_owned)
        }
        _ => None,
    };
    let (Some(post), Some(user)) = (post, user) else {
        debug!(method = ?message.method(), "out-of-dialog request for the local domain");
        return services
            .sip
            .answer(request, crate::routing::request_answer(&message));
    };
    if !authenticated && !senders.allow(source.ip(), std::time::Instant::now()) {
        debug!(%source, "a MESSAGE refused: too many from this source");
        return services.sip.answer(
            request,
            Answer {
                code: 503,
                reason: "Service Unavailable (too many messages from this address)".to_owned(),
                headers: vec![("Retry-After".to_owned(), "60".to_owned())],
            },
        );
    }
    let post = post.clone();
    let sip = services.sip.clone();
    tokio::spawn(async move {
        let outcome = post
            .phone_message(&message, &user, source, authenticated)
            .await;
        sip.answer(
            request,
            Answer {
                code: outcome.code,
                reason: outcome.reason,
                headers: Vec::new(),
            },
        );
    });
}

/// Where a local user takes calls.
struct Places {
    user: String,
    browsers: Vec<BrowserBinding>,
    phones: Vec<sip::Binding>,
}

/// A phone's call offered to several places at once (or to one phone): this task holds the
/// caller's SIP call and speaks for the fork ([`IncomingFork`]) until the call is over; each
/// branch (a browser's call task, or a task calling one of the callee's phones and relaying
/// between the two) talks to it as it would to any far end. The caller's SIP is translated
/// here.
async fn ring_all(
    services: Arc<CallServices>,
    call: CallHandle,
    invite: IncomingCall,
    mut phone: CallEvents,
    mut places: Places,
) {
    let Some(local) = services.local.clone() else {
        return;
    };
    local
        .add_stored_phones(&places.user, &mut places.phones)
        .await;
    let mut to_branches = Vec::new();
    let mut from_branches = Vec::new();
    for browser in &places.browsers {
        let (events, commands) = local.offer(&services.sip, browser, invite.clone());
        to_branches.push(events);
        from_branches.push(Some(commands));
    }
    for callee_phone in places.phones {
        let (events, events_rx) = mpsc::unbounded_channel();
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let branch = crate::phone_branch::PhoneBranch {
            invite: invite.clone(),
            user: places.user.clone(),
            phone: callee_phone,
            events: events_rx,
            commands,
        };
        crate::phone_branch::spawn(services.clone(), branch);
        to_branches.push(events);
        from_branches.push(Some(commands_rx));
    }
    let mut fork = IncomingFork::new(to_branches.len());
    let mut phone_open = true;
    while !fork.is_over() {
        tokio::select! {
            event = phone.recv(), if phone_open => match event {
                Some(event) => {
                    if let Some(event) = leg::from_sip(event) {
                        fork.event(event);
                    }
                }
                None => {
                    phone_open = false;
                    fork.phone_gone();
                }
            },
            (branch, command) = crate::call::next_of(&mut from_branches) => match command {
                Some(command) => fork.command(branch, command),
                None => {
                    from_branches[branch] = None;
                    fork.branch_gone(branch);
                }
            },
        }
        while let Some(deliver) = fork.poll() {
            match deliver {
                Deliver::Phone(command) => services.sip.call(call, leg::to_sip(command)),
                Deliver::Branch(branch, event) => {
                    let _ = to_branches[branch].send(event);
                }
            }
        }
    }
    debug!("forked call over");
}

/// An admitted call's events, watched on their way to whoever takes the call: `ended` hears
/// of the call once it is over (whoever took it, even if they stopped listening).
fn watched(
    call: CallHandle,
    mut events: CallEvents,
    ended: mpsc::UnboundedSender<CallHandle>,
) -> CallEvents {
    let (forward, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let over = matches!(event, CallEvent::Terminated(_));
            let _ = forward.send(event);
            if over {
                break;
            }
        }
        let _ = ended.send(call);
    });
    receiver
}

#[cfg(test)]
mod tests {
    use sip::Ending;

    use super::*;

    /// The watcher passes a call's events on and reports the call over at its end, also when
    /// whoever took the call stopped listening (an echo that hung up), so that an admitted
    /// caller's slot always comes back.
    #[tokio::test]
    async fn a_watched_call_is_reported_over_even_unheard() {
        let (driver, events) = mpsc::unbounded_channel();
        let (ended, mut ended_rx) = mpsc::unbounded_channel();
        let mut taken = watched(CallHandle(5), events, ended);
        let ack = CallEvent::InfoAnswered { code: 200 };
        driver.send(ack.clone()).unwrap();
        assert_eq!(taken.recv().await, Some(ack));
        drop(taken);
        assert!(ended_rx.try_recv().is_err(), "not over yet");
        driver
            .send(CallEvent::Terminated(Ending {
                code: None,
                reason: "remote hangup".into(),
                cancelled: false,
            }))
            .unwrap();
        assert_eq!(ended_rx.recv().await, Some(CallHandle(5)));
    }
}
