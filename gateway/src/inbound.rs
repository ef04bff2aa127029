//! The calls the SIP driver gives the local domain (from softphones): routed by the dial plan
//! ([`crate::routing::from_phone`]) to a browser of the callee, to the echo test, or refused;
//! callers who did not authenticate only within the admission's limits. Their later events are
//! forwarded to where they went.

use std::collections::HashMap;
use std::sync::Arc;

use sip::call::{CallEvent, Warning};
use sip::driver::{CallCommand, CallHandle, SipEvent};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::admission::Admission;
use crate::call::CallServices;
use crate::routing::PhoneRoute;

/// Takes the local domain's calls from `calls` until the driver stops.
pub(crate) async fn route(
    services: Arc<CallServices>,
    mut calls: mpsc::UnboundedReceiver<SipEvent>,
    mut admission: Admission,
) {
    let mut routes: HashMap<CallHandle, mpsc::UnboundedSender<SipEvent>> = HashMap::new();
    while let Some(event) = calls.recv().await {
        match event {
            SipEvent::LocalIncoming {
                call,
                user,
                source,
                authenticated,
                callee,
                invite,
            } => {
                let Some(local) = &services.local else {
                    continue;
                };
                if !authenticated && let Err(refusal) = admission.admit(call, source.ip()) {
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
                match crate::routing::from_phone(local, &user, callee) {
                    PhoneRoute::Echo => {
                        debug!(from = %invite.from_uri, "echo test call from SIP");
                        let (events, receiver) = mpsc::unbounded_channel();
                        routes.insert(call, events);
                        crate::echo::sip(services.clone(), call, *invite, receiver);
                    }
                    PhoneRoute::LocalBrowser(binding) => {
                        debug!(%user, from = %invite.from_uri, "call from SIP to a local browser");
                        routes.insert(call, binding.events.clone());
                        let _ = binding.events.send(SipEvent::Incoming {
                            handle: binding.handle,
                            call,
                            invite,
                        });
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
            SipEvent::Call { call, event } => {
                let ended = matches!(event, CallEvent::Terminated(_));
                if let Some(route) = routes.get(&call) {
                    let _ = route.send(SipEvent::Call { call, event });
                }
                if ended {
                    routes.remove(&call);
                    admission.ended(call);
                }
            }
            SipEvent::Registration { .. } | SipEvent::Incoming { .. } => {}
        }
    }
}
