//! The handler of a sylkRTC connection: it feeds the client's requests, in order, and the SIP
//! driver's events to the sans-IO [`Connection`], and carries out what the connection decides:
//! replies to the writer, registrations to the SIP driver or the local domain, calls to their
//! tasks (routed by the dial plan), commands to the calls. News from the calls' tasks comes
//! back here and is translated by the connection into protocol events.

use std::collections::HashMap;
use std::sync::Arc;

use sip::RegistrationEvent;
use sip::driver::{CallHandle, RegistrationKey, SipEvent, SipHandle};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Sylkrtc;
use super::connection::{
    Connection, Handled, Outcome, Output, StoreAnswer, StoreQuery, SyncFrom, redact,
};
use super::pump::{Ended, Inbound, Outbound};
use crate::call::{self, CallServices, CallTask, CallUpdate};
use crate::devices::{Devices, Forked};
use crate::leg::{LegCommand, Refusal};
use crate::local::{Arrival, Arriving};
use crate::log_limit::LogLimit;
use crate::metrics::Metrics;
use crate::routing::Route;
use protocol::Aor;

mod addressbook;
mod messages;
mod presence;
mod watching;

/// Handles queued requests in order, and SIP events as they come. The [`Connection`] and its
/// accounts live in here, so that they are released (registrations removed) whenever this
/// future is dropped.
pub(super) async fn handle_loop(
    connection: Connection,
    mut requests: mpsc::Receiver<Inbound>,
    out: mpsc::Sender<Outbound>,
    sylkrtc: &Sylkrtc,
    id: u64,
) -> Option<Ended> {
    let services = &sylkrtc.calls;
    // Unbounded, like the driver's own queues: the driver must never wait on one connection,
    // nor a call's task.
    let (sip_events, mut sip_rx) = mpsc::unbounded_channel();
    let (arrivals, mut arrivals_rx) = mpsc::unbounded_channel();
    let (reports, mut reports_rx) = mpsc::unbounded_channel();
    let (sent, mut sent_rx) = mpsc::unbounded_channel();
    let (arrived, mut arrived_rx) = mpsc::unbounded_channel();
    let (forked, mut forked_rx) = mpsc::unbounded_channel();
    let (presence_reads, mut presence_rx) = presence::channel();
    let (notices, mut notices_rx) = watching::channel();
    let mut session = Session {
        devices: &sylkrtc.devices,
        post: sylkrtc.post.as_ref(),
        max_message_size: sylkrtc.max_message_size,
        forked,
        joined: Vec::new(),
        watches: HashMap::new(),
        presence_reads,
        remote: HashMap::new(),
        notices,
        sent,
        connection,
        storage: &sylkrtc.storage,
        metrics: &services.metrics,
        services,
        sip: &services.sip,
        sip_events,
        arrivals,
        reports,
        calls: HashMap::new(),
        draining: false,
        incoming_events: HashMap::new(),
        local_registrations: std::collections::HashSet::new(),
        owner: id,
        accounts: 0,
        warnings: LogLimit::new(),
    };
    let trace = sylkrtc.gate.websocket.trace_client;
    if !session.flush(&out, trace).await {
        return None;
    }
    // Once the gateway drains, the connection ends as soon as it has no call: its client
    // connects again, through the load balancer, to a gateway that is not draining.
    let draining = sylkrtc.gate.draining().clone();
    let mut presence = tokio::time::interval(presence::POLL);
    presence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = draining.cancelled(), if !session.draining => session.draining = true,
            _ = presence.tick() => session.presence_tick(),
            Some(read) = presence_rx.recv() => session.presence_read(read),
            Some(notice) = notices_rx.recv() => session.remote_notice(notice),
            inbound = requests.recv() => {
                let inbound = inbound?;
                let handled = match inbound {
                    Inbound::Text(text) => {
                        if trace {
                            info!(target: "gateway::client", "recv {}", redact(&text));
                        }
                        session.connection.handle_text(&text)
                    }
                    Inbound::Binary(data) => {
                        if trace {
                            info!(target: "gateway::client", "recv binary frame of {} bytes", data.len());
                        }
                        session.connection.handle_binary(&data)
                    }
                };
                session.record(handled);
            }
            Some(event) = sip_rx.recv() => {
                debug!(?event, "SIP event");
                session.sip_event(event, &arrived);
            }
            Some(message) = arrived_rx.recv() => session.arrived(message),
            Some(forked) = forked_rx.recv() => session.forked(forked),
            Some(arrival) = arrivals_rx.recv() => session.arrival(arrival),
            Some((call, report)) = reports_rx.recv() => session.report(call, report),
            Some((outgoing, state, outcome)) = sent_rx.recv() => {
                session.connection.handle_message_sent(&outgoing, state, Some(outcome));
            }
        }
        if !session.flush(&out, trace).await {
            return None;
        }
        if session.draining && session.calls.is_empty() {
            return Some(Ended::Draining);
        }
        session.join_devices();
    }
}

/// The handler's state: the connection, its share of the `accounts` gauge, and its link to the
/// SIP driver.
struct Session<'a> {
    connection: Connection,
    /// Where the tasks sending messages report what became of them.
    sent: mpsc::UnboundedSender<messages::Sent>,
    storage: &'a crate::storage::Storage,
    /// Which connections hold which accounts.
    devices: &'a Devices,
    /// Messages within the local domain.
    post: Option<&'a crate::messaging::local::Post>,
    /// The largest message content taken.
    max_message_size: usize,
    /// Where the other connections' events for this one's accounts arrive.
    forked: mpsc::UnboundedSender<Forked>,
    /// The accounts this connection is a member for in `devices`.
    joined: Vec<Aor>,
    /// What each local account registered here watches (presence).
    watches: HashMap<Aor, presence::Watch>,
    /// Where the tasks reading whom an account may watch report.
    presence_reads: mpsc::UnboundedSender<presence::Read>,
    /// What each account of another domain registered here watches, through SIP.
    remote: HashMap<Aor, watching::Remote>,
    /// Where those subscriptions report.
    notices: mpsc::UnboundedSender<watching::Notice>,
    metrics: &'a Metrics,
    sip: &'a SipHandle,
    services: &'a Arc<CallServices>,
    /// Where the driver sends this connection's SIP events.
    sip_events: mpsc::UnboundedSender<SipEvent>,
    /// Where the local domain sends this connection's incoming calls.
    arrivals: mpsc::UnboundedSender<Arrival>,
    /// Where calls' tasks send their events.
    reports: mpsc::UnboundedSender<(String, CallUpdate)>,
    /// The calls' tasks, by session id.
    calls: HashMap<String, CallTask>,
    /// Set once the gateway drains: no new call starts here.
    draining: bool,
    /// Incoming calls' far ends, until the connection takes or refuses the call.
    incoming_events: HashMap<CallHandle, Arriving>,
    /// Registrations of local-domain accounts (held by the gateway, not a SIP registrar).
    local_registrations: std::collections::HashSet<u64>,
    /// This connection's number, which names its registrations in the driver.
    owner: u64,
    /// Accounts counted in the gauge for this connection.
    accounts: usize,
    /// This connection's budget of warnings about what it sends.
    warnings: LogLimit,
}

impl Session<'_> {
    fn record(&mut self, handled: Handled) {
        if let Some(name) = &handled.name {
            self.metrics.request(name);
        }
        match handled.outcome {
            Outcome::Ack | Outcome::Deferred => {}
            Outcome::Error { kind, text } => {
                self.metrics.error(kind);
                debug!(
                    request = handled.name.as_deref().unwrap_or("?"),
                    "error reply: {text}"
                );
            }
            Outcome::Unanswered { kind, reason } => {
                self.metrics.error(kind);
                match self.warnings.allow(std::time::Instant::now()) {
                    Some(0) => warn!("message ignored: {reason}"),
                    Some(held_back) => warn!(
                        "message ignored: {reason} ({held_back} more such warnings not shown)"
                    ),
                    None => {}
                }
            }
        }
        let accounts = self.connection.account_count();
        self.metrics
            .accounts_changed(accounts as i64 - self.accounts as i64);
        self.accounts = accounts;
    }

    /// A SIP event for one of the connection's registrations. An incoming call's own events
    /// wait here until the connection takes the call (they go to its task) or refuses it.
    fn sip_event(&mut self, event: SipEvent, arrived: &mpsc::UnboundedSender<messages::Arrived>) {
        match event {
            SipEvent::Registration { handle, event } => {
                self.connection.handle_registration(handle, event);
            }
            SipEvent::Incoming {
                handle,
                call,
                invite,
                events,
            } => {
                self.incoming_events.insert(call, Arriving::Sip(events));
                self.connection.handle_incoming(handle, call, *invite);
            }
            SipEvent::Request {
                handle,
                request,
                message,
            } => self.account_request(handle, request, &message, arrived),
        }
    }

    /// Joins the devices of the accounts registered here since the last time, and leaves
    /// those no longer registered.
    fn join_devices(&mut self) {
        let registered: Vec<&Aor> = self.connection.registered_accounts().collect();
        if registered.len() == self.joined.len()
            && registered.iter().all(|aor| self.joined.contains(aor))
        {
            return;
        }
        for gone in self.joined.iter().filter(|aor| !registered.contains(aor)) {
            self.devices.leave(gone, self.owner);
        }
        for aor in &registered {
            self.devices.join(aor, self.owner, &self.forked);
        }
        self.joined = registered.into_iter().cloned().collect();
    }

    /// An event from elsewhere in the gateway for one of this connection's accounts, still
    /// registered here.
    fn forked(&mut self, forked: Forked) {
        if self
            .connection
            .registered_accounts()
            .any(|aor| *aor == forked.account)
        {
            self.connection.account_event(&forked.account, forked.event);
        }
    }

    /// An incoming call from the local domain.
    fn arrival(&mut self, arrival: Arrival) {
        self.incoming_events.insert(arrival.call, arrival.from);
        self.connection
            .handle_incoming(arrival.handle, arrival.call, arrival.invite);
    }

    /// News from a call's task.
    fn report(&mut self, session: String, update: CallUpdate) {
        let over = matches!(update, CallUpdate::Terminated(_));
        self.connection.handle_update(&session, update);
        if over {
            self.calls.remove(&session);
        }
    }

    /// Registers an account of the local domain with the gateway itself; false for other
    /// accounts. The outcome arrives as SIP events do, after the ack.
    fn register_local(&mut self, handle: u64, account: &sip::driver::Account) -> bool {
        let Some(local) = &self.services.local else {
            return false;
        };
        if !local.is_local(&account.domain) {
            return false;
        }
        let binding = crate::local::BrowserBinding {
            calls: self.arrivals.clone(),
            handle,
            owner: self.owner,
        };
        let outcome = match local.register(&account.user, &account.credentials.secret, binding) {
            Ok(()) => RegistrationEvent::Registered { expires: 0 },
            Err(crate::local::Refused(reason)) => RegistrationEvent::Failed {
                reason,
                retry_in: None,
            },
        };
        self.local_registrations.insert(handle);
        for event in [RegistrationEvent::Registering, outcome] {
            let _ = self
                .sip_events
                .send(SipEvent::Registration { handle, event });
        }
        true
    }

    /// Starts a call's task: the echo test, a call the open local domain may not make, or a
    /// call through the relay.
    fn start_call(&mut self, start: crate::call::StartCall) {
        let session = start.session.clone();
        if self.draining {
            let ending = call::Ending::new(
                "503 Service Unavailable (the gateway is draining: call again once reconnected)",
            );
            self.connection
                .handle_update(&session, CallUpdate::Terminated(ending));
            return;
        }
        let route = crate::routing::outgoing(
            self.services.local.as_deref(),
            self.owner,
            &start.account.domain,
            &start.uri,
        );
        let task = match (route, self.services.pusher.clone()) {
            (Route::Echo, _) => {
                crate::echo::browser(self.services.clone(), start, self.reports.clone())
            }
            // A user of the local domain with no place to ring: their devices may wake.
            (Route::Refuse(ending), Some(pusher)) if ending.code == Some(480) => {
                let (services, owner) = (self.services.clone(), self.owner);
                let (domain, uri) = (start.account.domain.clone(), start.uri.clone());
                let place = move || match crate::routing::outgoing(
                    services.local.as_deref(),
                    owner,
                    &domain,
                    &uri,
                ) {
                    Route::Call(far_end) => Some(far_end),
                    _ => None,
                };
                call::awaiting::outgoing(
                    self.services.clone(),
                    pusher,
                    start,
                    place,
                    ending,
                    self.reports.clone(),
                )
            }
            (Route::Refuse(ending), _) => {
                self.connection
                    .handle_update(&session, CallUpdate::Terminated(ending));
                return;
            }
            (Route::Call(far_end), _) => {
                call::outgoing(self.services.clone(), start, far_end, self.reports.clone())
            }
        };
        self.calls.insert(session, task);
    }

    /// Asks the message store; an error is the text for the client.
    async fn ask_store(&self, query: StoreQuery) -> Result<StoreAnswer, String> {
        if let StoreQuery::AddMessage(outgoing) = &query
            && outgoing.content.len() > self.max_message_size
        {
            return Err(format!(
                "the message is too large: {} bytes (the limit is {})",
                outgoing.content.len(),
                self.max_message_size
            ));
        }
        if let StoreQuery::AddMessage(outgoing) = &query
            && let Some(local) = &self.services.local
            && local.is_local(outgoing.from.host())
            && !local.is_local(outgoing.to.host())
        {
            let domain = local.domain();
            return Err(format!(
                "accounts of the local domain {domain} can send messages only within {domain} \
                 (messages to other domains are not supported yet)"
            ));
        }
        let store = self.storage.get().map_err(|error| error.to_string())?;
        let result = match query {
            StoreQuery::PublicKey { uri } => store
                .public_key(&uri.key())
                .await
                .map(|key| StoreAnswer::PublicKey { uri, key }),
            StoreQuery::AddMessage(outgoing) => messages::add_message(&*store, outgoing).await,
            StoreQuery::Notify {
                account,
                message_id,
                state,
                imdn,
            } => store
                .update_state(&account.key(), &message_id, state)
                .await
                .map(|_| StoreAnswer::Notified(imdn)),
            StoreQuery::Sync {
                account,
                from,
                limit,
            } => {
                let since = match &from {
                    SyncFrom::Start => store::Since::Start,
                    SyncFrom::Message(id) => store::Since::Message(id),
                    SyncFrom::Time(at) => store::Since::Time(*at),
                };
                store
                    .messages(&account.key(), since, limit)
                    .await
                    .map(|messages| StoreAnswer::Synced { account, messages })
            }
            StoreQuery::Change { account, change } => {
                messages::change(&*store, account, change).await
            }
            StoreQuery::Addressbook { account } => addressbook::fetch(&*store, account).await,
            StoreQuery::UpdateAddressbook(update) => addressbook::update(&*store, *update).await,
            StoreQuery::PushToken {
                account,
                device,
                app,
                token,
            } => match token {
                Some(token) => store
                    .set_push_token(&account.key(), &token, store::now_millis())
                    .await
                    .map(|()| StoreAnswer::Stored),
                None => store
                    .remove_push_token(&account.key(), &device, &app)
                    .await
                    .map(|_| StoreAnswer::Stored),
            },
        };
        result.map_err(|error| {
            warn!("{error}");
            error.to_string()
        })
    }

    fn key(&self, handle: u64) -> RegistrationKey {
        RegistrationKey {
            owner: self.owner,
            handle,
        }
    }

    /// Passes everything the connection emitted to the writer and the SIP driver; false once
    /// the writer is gone.
    async fn flush(&mut self, out: &mpsc::Sender<Outbound>, trace: bool) -> bool {
        while let Some(output) = self.connection.poll_output() {
            match output {
                Output::Send(text) => {
                    if trace {
                        info!(target: "gateway::client", "send {text}");
                    }
                    if out.send(Outbound::Text(text)).await.is_err() {
                        return false;
                    }
                }
                Output::Register { handle, account } => {
                    if self.register_local(handle, &account) {
                        continue;
                    }
                    self.sip
                        .register(self.key(handle), *account, self.sip_events.clone());
                }
                Output::Unregister { handle } => {
                    if self.local_registrations.remove(&handle) {
                        if let Some(local) = &self.services.local {
                            local.unregister(self.owner, handle);
                        }
                    } else {
                        self.sip.unregister(self.key(handle));
                    }
                }
                Output::StartCall(start) => self.start_call(*start),
                Output::Incoming(incoming) => {
                    let Some(from) = self.incoming_events.remove(&incoming.call) else {
                        continue;
                    };
                    let session = incoming.session.clone();
                    let task = call::incoming(
                        self.services.clone(),
                        *incoming,
                        from,
                        self.reports.clone(),
                    );
                    self.calls.insert(session, task);
                }
                Output::RefuseCall(call) => {
                    let refusal = Refusal::new(480, "Temporarily Unavailable", None);
                    // A call from another place in the gateway is refused through its bridge,
                    // one from SIP through the driver.
                    match self.incoming_events.remove(&call) {
                        Some(Arriving::Bridge { end, .. }) => {
                            end.command(LegCommand::Reject(refusal));
                        }
                        Some(Arriving::Sip(_)) | None => self
                            .sip
                            .call(call, crate::leg::to_sip(LegCommand::Reject(refusal))),
                    }
                }
                Output::Call { session, command } => {
                    if let Some(task) = self.calls.get(&session) {
                        let _ = task.commands.send(command);
                    }
                }
                // Requests are handled in order: the next waits for this answer (at most the
                // store's acquire timeout when the database is down).
                Output::Store { transaction, query } => {
                    if let StoreQuery::UpdateAddressbook(update) = &query {
                        self.address_book_changed(&update.account);
                    }
                    let answer = self.ask_store(query).await;
                    let handled = self.connection.handle_store(transaction, answer);
                    self.record(handled);
                }
                Output::SendMessage(outgoing) => self.send_message(outgoing),
                Output::Fork { account, event } => {
                    self.devices.fork(&account, Some(self.owner), &event);
                }
            }
        }
        true
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let held_back = self.warnings.take_suppressed();
        if held_back > 0 {
            warn!("{held_back} more warnings about ignored messages were not shown");
        }
        self.metrics.accounts_changed(-(self.accounts as i64));
        self.remote_leave(&[]);
        for aor in &self.joined {
            self.devices.leave(aor, self.owner);
        }
        for handle in self.connection.registrations() {
            if self.local_registrations.contains(&handle) {
                if let Some(local) = &self.services.local {
                    local.unregister(self.owner, handle);
                }
                continue;
            }
            self.sip.unregister(RegistrationKey {
                owner: self.owner,
                handle,
            });
        }
    }
}
