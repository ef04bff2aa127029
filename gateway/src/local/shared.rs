//! The location service of a cluster (`[instance] peers`): phone bindings live in the shared
//! store as well as in memory, so that no phone's registration lives only in one gateway.
//!
//! * The registrar works on this gateway's own bindings, in memory, as a single gateway does;
//!   each change is written through to the store by a task of its own (the registrar never
//!   waits on the database), in order, retried while the store is away, and only on change: a
//!   refresh that only extends a binding is written once the stored expiry covers less than
//!   half of the new lifetime, since phones behind NAT register every 30-60 s.
//! * A gateway restarted under the same id takes its UDP bindings back from the store (its TCP
//!   and TLS flows died with it: those phones register again when they reconnect).
//! * A call for a user of the domain rings the UDP bindings other gateways hold straight from
//!   the store (their flow is an address, usable from any gateway: the dispatcher in front,
//!   or the phone); the peers then ring only their browsers and the connections they hold.
//!   That way a phone stays reachable while the gateway it registered with is away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sip::{Binding, BrowserBinding, Credential, Location, Target, Transport};
use store::PhoneBinding;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::storage::Storage;

/// How long a failed write waits before it is tried again.
const RETRY: Duration = Duration::from_secs(2);
/// How long a change waits for the ones after it, to be written with them.
const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// How often expired rows (of every gateway) are deleted.
const SWEEP: Duration = Duration::from_secs(600);
/// The most bindings a restarted gateway takes back (as many as its registrar holds).
const MAX_RESTORED: u32 = 100_000;

/// A change for the store.
#[derive(Debug, Clone)]
enum Write {
    Put {
        user: String,
        binding: Binding,
        /// Its expiry, milliseconds since 1970.
        expires: i64,
    },
    Remove {
        user: String,
        contact: String,
    },
}

impl Write {
    fn key(&self) -> (String, String) {
        match self {
            Write::Put { user, binding, .. } => (user.clone(), binding.contact.clone()),
            Write::Remove { user, contact } => (user.clone(), contact.clone()),
        }
    }
}

/// What was last written of one binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Written {
    target: Target,
    outbound: bool,
    /// Milliseconds since 1970.
    expires: i64,
}

/// The location service shared through the store (see the module's documentation).
#[derive(Debug)]
pub(crate) struct SharedLocation {
    inner: Arc<dyn Location>,
    /// This gateway's id, once the server knows it.
    instance: OnceLock<Arc<str>>,
    /// The store, once the server has it.
    storage: OnceLock<Arc<Storage>>,
    writes: mpsc::UnboundedSender<(u64, Write)>,
    /// The writer's end, until it starts.
    pending: Mutex<Option<mpsc::UnboundedReceiver<(u64, Write)>>>,
    /// What was last written per user and Contact.
    written: Mutex<HashMap<String, HashMap<String, Written>>>,
    /// The bindings (user, Contact) whose latest change is not in the store yet, with that
    /// change's serial number: a peer that rang the stored bindings has not seen them.
    unconfirmed: Mutex<HashMap<(String, String), u64>>,
    serial: std::sync::atomic::AtomicU64,
}

impl SharedLocation {
    /// Shares `inner`'s phone bindings; nothing is written until [`SharedLocation::start`].
    pub(crate) fn new(inner: Arc<dyn Location>) -> SharedLocation {
        let (writes, pending) = mpsc::unbounded_channel();
        SharedLocation {
            inner,
            instance: OnceLock::new(),
            storage: OnceLock::new(),
            writes,
            pending: Mutex::new(Some(pending)),
            written: Mutex::default(),
            unconfirmed: Mutex::default(),
            serial: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Queues `write` for the writer; its binding is unconfirmed until it is in the store.
    fn send(&self, write: Write) {
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        lock(&self.unconfirmed).insert(write.key(), serial);
        // The writer ends only with the gateway.
        let _ = self.writes.send((serial, write));
    }

    /// These changes are in the store: their bindings are confirmed, unless changed since.
    fn confirm(&self, written: &[(u64, Write)]) {
        let mut unconfirmed = lock(&self.unconfirmed);
        for (serial, write) in written {
            let key = write.key();
            if unconfirmed.get(&key) == Some(serial) {
                unconfirmed.remove(&key);
            }
        }
    }

    /// Takes every change as written (for tests of what a written binding does).
    #[cfg(test)]
    pub(crate) fn confirm_all(&self) {
        lock(&self.unconfirmed).clear();
    }

    /// Whether the store has this gateway's latest of `user`'s binding at `contact` (so that
    /// the gateway a call entered rang it from there).
    pub(crate) fn in_store(&self, user: &str, contact: &str) -> bool {
        !lock(&self.unconfirmed).contains_key(&(user.to_owned(), contact.to_owned()))
    }

    /// Takes this gateway's bindings back from the store, then writes changes through until
    /// `stop`.
    pub(crate) fn start(
        self: &Arc<Self>,
        storage: Arc<Storage>,
        instance: Arc<str>,
        stop: CancellationToken,
    ) {
        let _ = self.instance.set(instance);
        let _ = self.storage.set(storage.clone());
        let Some(receiver) = lock(&self.pending).take() else {
            return;
        };
        let shared = self.clone();
        tokio::spawn(async move {
            shared.restore(&storage, &stop).await;
            shared.write_through(&storage, receiver, stop).await;
        });
    }

    /// The UDP bindings of `user` that other gateways hold, from the store.
    pub(crate) async fn others(&self, user: &str) -> Result<Vec<Binding>, store::Error> {
        let instance = self.instance.get().map_or("", |id| &**id);
        let Some(storage) = self.storage.get() else {
            return Err(store::Error::Unavailable("not started yet".to_owned()));
        };
        let rows = storage.get()?.phones(user, store::now_millis()).await?;
        Ok(rows
            .iter()
            .filter(|row| row.instance != instance && row.transport == "udp")
            .filter_map(binding)
            .map(|found| Binding {
                shared: true,
                ..found
            })
            .collect())
    }

    /// Loads this gateway's own bindings (a restart under the same id); retried until the
    /// store answers.
    async fn restore(&self, storage: &Storage, stop: &CancellationToken) {
        let Some(instance) = self.instance.get().cloned() else {
            return;
        };
        let rows = loop {
            let result = match storage.get() {
                Ok(store) => {
                    store
                        .instance_phones(&instance, store::now_millis(), MAX_RESTORED)
                        .await
                }
                Err(error) => Err(error),
            };
            match result {
                Ok(rows) => break rows,
                Err(error) => {
                    debug!("phone bindings not restored yet: {error}");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        };
        let mut by_user: HashMap<String, Vec<(Binding, i64)>> = HashMap::new();
        let mut dead_flows = Vec::new();
        for row in rows {
            match binding(&row) {
                Some(found) if found.target.transport == Transport::Udp => {
                    by_user
                        .entry(row.user)
                        .or_default()
                        .push((found, row.expires));
                }
                _ => dead_flows.push(Write::Remove {
                    user: row.user,
                    contact: row.contact,
                }),
            }
        }
        let restored: usize = by_user.values().map(Vec::len).sum();
        for (user, stored) in by_user {
            // A phone that registered again since the start wins over its stored binding.
            let mut phones = self.inner.phones(&user);
            let mut written = lock(&self.written);
            let record = written.entry(user.clone()).or_default();
            for (found, expires) in stored {
                if phones.iter().all(|known| known.contact != found.contact) {
                    record.insert(
                        found.contact.clone(),
                        Written {
                            target: found.target,
                            outbound: found.outbound,
                            expires,
                        },
                    );
                    phones.push(found);
                }
            }
            drop(written);
            self.inner.set_phones(&user, phones);
        }
        if restored > 0 || !dead_flows.is_empty() {
            info!(
                restored,
                dropped = dead_flows.len(),
                "phone bindings taken back from the store (TCP and TLS ones dropped: their \
                 connections are gone)"
            );
        }
        for write in dead_flows {
            self.send(write);
        }
    }

    /// Applies the registrar's changes to the store, in order, as many as are waiting at
    /// once (the bindings to store in one statement); the latest change of each binding
    /// waits while the store is away.
    async fn write_through(
        &self,
        storage: &Storage,
        mut receiver: mpsc::UnboundedReceiver<(u64, Write)>,
        stop: CancellationToken,
    ) {
        let mut pending = Pending::default();
        let mut next_sweep = tokio::time::Instant::now() + SWEEP;
        let mut failing = false;
        loop {
            let retry_at = (!pending.is_empty()).then(|| tokio::time::Instant::now() + RETRY);
            tokio::select! {
                () = stop.cancelled() => return,
                write = receiver.recv() => match write {
                    Some(write) => pending.push(write),
                    None => return,
                },
                () = sleep_until(retry_at) => {}
                () = tokio::time::sleep_until(next_sweep) => {
                    next_sweep += SWEEP;
                    if let Ok(store) = storage.get()
                        && let Ok(removed @ 1..) = store.remove_expired_phones(store::now_millis()).await
                    {
                        debug!(removed, "expired phone bindings deleted from the store");
                    }
                    continue;
                }
            }
            // The registrations of the next moments go in the same statement: under load a
            // statement per binding costs the gateway more than the registration itself.
            tokio::time::sleep(BATCH_WINDOW).await;
            while let Ok(write) = receiver.try_recv() {
                pending.push(write);
            }
            let Ok(store) = storage.get() else {
                continue;
            };
            let instance = self.instance.get().map_or("", |id| &**id);
            while !pending.is_empty() {
                let batch = pending.next_batch();
                let mut rows = Vec::new();
                let mut removals = Vec::new();
                for (_, write) in &batch {
                    match write {
                        Write::Put {
                            user,
                            binding,
                            expires,
                        } => rows.push(PhoneBinding {
                            user: user.clone(),
                            contact: binding.contact.clone(),
                            instance: instance.to_owned(),
                            transport: transport_name(binding.target.transport).to_owned(),
                            target: binding.target.addr.to_string(),
                            expires: *expires,
                            outbound: binding.outbound,
                        }),
                        Write::Remove { user, contact } => removals.push((user, contact)),
                    }
                }
                let mut result = store.put_phones(&rows).await;
                for (user, contact) in removals {
                    if result.is_ok() {
                        result = store
                            .remove_phone(user, contact, instance)
                            .await
                            .map(|_| ());
                    }
                }
                match result {
                    Ok(()) => {
                        pending.done(batch.len());
                        self.confirm(&batch);
                        if failing {
                            failing = false;
                            info!("phone bindings are written to the store again");
                        }
                    }
                    Err(error) => {
                        if !failing {
                            failing = true;
                            warn!(
                                waiting = pending.len(),
                                "phone bindings cannot be written to the store ({error}); \
                                 kept, and tried again every {} s",
                                RETRY.as_secs()
                            );
                        }
                        break;
                    }
                }
            }
        }
    }

    /// The writes that bring the store from what was written of `user` to `bindings`.
    fn changes(&self, user: &str, bindings: &[Binding]) -> Vec<Write> {
        let (now, now_ms) = (Instant::now(), store::now_millis());
        let mut written = lock(&self.written);
        let record = written.entry(user.to_owned()).or_default();
        let mut writes = Vec::new();
        record.retain(|contact, _| {
            let kept = bindings.iter().any(|binding| binding.contact == *contact);
            if !kept {
                writes.push(Write::Remove {
                    user: user.to_owned(),
                    contact: contact.clone(),
                });
            }
            kept
        });
        for binding in bindings {
            let expires = millis_at(now_ms, binding.expires.saturating_duration_since(now));
            let new = Written {
                target: binding.target,
                outbound: binding.outbound,
                expires,
            };
            if let Some(old) = record.get(&binding.contact)
                && !needs_write(old, &new, now_ms)
            {
                continue;
            }
            record.insert(binding.contact.clone(), new);
            writes.push(Write::Put {
                user: user.to_owned(),
                binding: binding.clone(),
                expires,
            });
        }
        if record.is_empty() {
            written.remove(user);
        }
        writes
    }
}

/// Whether `new` must be written over `old`: it moved, changed, got shorter, or `old` covers
/// less than half of what is left of it.
fn needs_write(old: &Written, new: &Written, now: i64) -> bool {
    old.target != new.target
        || old.outbound != new.outbound
        || new.expires < old.expires
        || old.expires - now < (new.expires - now) / 2
}

/// The changes waiting for the store: only the latest of each binding, in the order the
/// bindings first changed (constant time per change, however many wait).
#[derive(Debug, Default)]
struct Pending {
    order: std::collections::VecDeque<(String, String)>,
    latest: HashMap<(String, String), (u64, Write)>,
}

impl Pending {
    fn push(&mut self, (serial, write): (u64, Write)) {
        let key = write.key();
        if self.latest.insert(key.clone(), (serial, write)).is_none() {
            self.order.push_back(key);
        }
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn len(&self) -> usize {
        self.order.len()
    }

    /// The next changes to write together, oldest first, still waiting until
    /// [`Pending::done`].
    fn next_batch(&self) -> Vec<(u64, Write)> {
        self.order
            .iter()
            .take(store::MAX_PHONES_PER_PUT)
            .filter_map(|key| self.latest.get(key).cloned())
            .collect()
    }

    /// The first `count` changes are in the store.
    fn done(&mut self, count: usize) {
        for key in self.order.drain(..count.min(self.order.len())) {
            self.latest.remove(&key);
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// `now_ms` plus `left`, in milliseconds since 1970.
fn millis_at(now_ms: i64, left: Duration) -> i64 {
    now_ms.saturating_add(i64::try_from(left.as_millis()).unwrap_or(i64::MAX))
}

/// A stored row as the registrar's binding; `None` for one this build cannot read.
fn binding(row: &PhoneBinding) -> Option<Binding> {
    let transport = match row.transport.as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        _ => return None,
    };
    let left = u64::try_from(row.expires - store::now_millis()).ok()?;
    Some(Binding {
        contact: row.contact.clone(),
        target: Target {
            transport,
            addr: row.target.parse().ok()?,
        },
        expires: Instant::now() + Duration::from_millis(left),
        outbound: row.outbound,
        shared: false,
    })
}

fn transport_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Location for SharedLocation {
    fn domain(&self) -> &str {
        self.inner.domain()
    }

    fn open_registration(&self) -> bool {
        self.inner.open_registration()
    }

    fn credential(&self, user: &str) -> Option<Credential> {
        self.inner.credential(user)
    }

    fn phones(&self, user: &str) -> Vec<Binding> {
        self.inner.phones(user)
    }

    fn set_phones(&self, user: &str, bindings: Vec<Binding>) {
        for write in self.changes(user, &bindings) {
            self.send(write);
        }
        self.inner.set_phones(user, bindings);
    }

    fn phone_users(&self) -> Vec<String> {
        self.inner.phone_users()
    }

    fn phone_count(&self) -> usize {
        self.inner.phone_count()
    }

    fn add_browser(&self, user: &str, binding: BrowserBinding) {
        self.inner.add_browser(user, binding);
    }

    fn remove_browser(&self, binding: BrowserBinding) {
        self.inner.remove_browser(binding);
    }

    fn browsers(&self, user: &str) -> Vec<BrowserBinding> {
        self.inner.browsers(user)
    }

    fn browser_count(&self) -> usize {
        self.inner.browser_count()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use sip::MemoryLocation;

    use super::*;

    fn phone(contact: &str, port: u16, seconds: u64) -> Binding {
        Binding {
            contact: contact.to_owned(),
            target: Target {
                transport: Transport::Udp,
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            },
            expires: Instant::now() + Duration::from_secs(seconds),
            outbound: false,
            shared: false,
        }
    }

    fn shared() -> (SharedLocation, mpsc::UnboundedReceiver<(u64, Write)>) {
        let memory = MemoryLocation::new("local.test", HashMap::new(), true);
        let shared = SharedLocation::new(Arc::new(memory));
        let receiver = lock(&shared.pending).take().expect("not started");
        (shared, receiver)
    }

    fn drained(receiver: &mut mpsc::UnboundedReceiver<(u64, Write)>) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok((_, write)) = receiver.try_recv() {
            seen.push(match write {
                Write::Put { binding, .. } => format!("put {}", binding.contact),
                Write::Remove { contact, .. } => format!("remove {contact}"),
            });
        }
        seen
    }

    /// A registration is written once; refreshes that only extend it are not, until the
    /// stored expiry covers less than half of the new lifetime; a move, a shorter lifetime
    /// and a removal are written at once. Memory always has the registrar's latest.
    #[test]
    fn bindings_are_written_on_change_only() {
        let (shared, mut writes) = shared();
        shared.set_phones("carol", vec![phone("sip:carol@a", 5080, 3600)]);
        assert_eq!(drained(&mut writes), ["put sip:carol@a"]);
        // A NAT refresh a minute later, same lifetime: nothing to write.
        shared.set_phones("carol", vec![phone("sip:carol@a", 5080, 3660)]);
        assert!(drained(&mut writes).is_empty());
        assert_eq!(shared.phones("carol").len(), 1);
        // Twice as long: the stored expiry covers less than half of it.
        shared.set_phones("carol", vec![phone("sip:carol@a", 5080, 8000)]);
        assert_eq!(drained(&mut writes), ["put sip:carol@a"]);
        // Shorter, moved, a second phone, then the first removed.
        shared.set_phones("carol", vec![phone("sip:carol@a", 5080, 600)]);
        assert_eq!(drained(&mut writes), ["put sip:carol@a"]);
        shared.set_phones("carol", vec![phone("sip:carol@a", 5090, 600)]);
        assert_eq!(drained(&mut writes), ["put sip:carol@a"]);
        shared.set_phones(
            "carol",
            vec![
                phone("sip:carol@a", 5090, 600),
                phone("sip:carol@b", 5091, 600),
            ],
        );
        assert_eq!(drained(&mut writes), ["put sip:carol@b"]);
        shared.set_phones("carol", vec![phone("sip:carol@b", 5091, 600)]);
        assert_eq!(drained(&mut writes), ["remove sip:carol@a"]);
        shared.set_phones("carol", Vec::new());
        assert_eq!(drained(&mut writes), ["remove sip:carol@b"]);
        assert!(lock(&shared.written).is_empty());
        assert_eq!(shared.phone_count(), 0);
    }

    /// While the store is away only the latest change of each binding waits, in the order
    /// the bindings first changed; they go in batches of at most a statement's worth, and
    /// stay until written.
    #[test]
    fn a_waiting_change_is_replaced_by_the_next_one() {
        let mut pending = Pending::default();
        let put = |contact: &str| Write::Put {
            user: "carol".into(),
            binding: phone(contact, 5080, 60),
            expires: 1,
        };
        pending.push((1, put("sip:a")));
        pending.push((2, put("sip:b")));
        pending.push((
            3,
            Write::Remove {
                user: "carol".into(),
                contact: "sip:a".into(),
            },
        ));
        let batch = pending.next_batch();
        let keys: Vec<_> = batch.iter().map(|(_, write)| write.key()).collect();
        assert_eq!(
            keys,
            [
                ("carol".to_owned(), "sip:a".to_owned()),
                ("carol".to_owned(), "sip:b".to_owned())
            ]
        );
        assert!(matches!(batch[0], (3, Write::Remove { .. })));
        assert_eq!(pending.len(), 2, "nothing goes before it is written");
        for n in 0..store::MAX_PHONES_PER_PUT {
            pending.push((4, put(&format!("sip:{n}"))));
        }
        assert_eq!(pending.next_batch().len(), store::MAX_PHONES_PER_PUT);
        pending.done(store::MAX_PHONES_PER_PUT);
        assert_eq!(pending.len(), 2);
        pending.done(2);
        assert!(pending.is_empty() && pending.latest.is_empty());
    }

    /// A binding is in the store once its latest change is written, not an earlier one.
    #[test]
    fn a_binding_is_in_the_store_once_its_latest_change_is_written() {
        let (shared, mut writes) = shared();
        shared.set_phones("carol", vec![phone("sip:carol@a", 5080, 600)]);
        let first: Vec<_> = std::iter::from_fn(|| writes.try_recv().ok()).collect();
        assert!(!shared.in_store("carol", "sip:carol@a"));
        // It moves before the first write is done: that write confirms nothing.
        shared.set_phones("carol", vec![phone("sip:carol@a", 5090, 600)]);
        let second: Vec<_> = std::iter::from_fn(|| writes.try_recv().ok()).collect();
        shared.confirm(&first);
        assert!(!shared.in_store("carol", "sip:carol@a"));
        shared.confirm(&second);
        assert!(shared.in_store("carol", "sip:carol@a"));
    }

    /// Stored rows come back as bindings with what is left of their lifetime; rows of
    /// transports or addresses this build cannot read, or expired ones, do not.
    #[test]
    fn stored_rows_read_back_as_bindings() {
        let row = PhoneBinding {
            user: "carol".into(),
            contact: "sip:carol@a".into(),
            instance: "gw-2".into(),
            transport: "udp".into(),
            target: "127.0.0.1:5060".into(),
            expires: store::now_millis() + 60_000,
            outbound: true,
        };
        let read = binding(&row).expect("readable");
        assert_eq!(read.target.addr.port(), 5060);
        assert!(read.outbound);
        let left = read.expires.saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(55) && left <= Duration::from_secs(60));
        for broken in [
            PhoneBinding {
                transport: "sctp".into(),
                ..row.clone()
            },
            PhoneBinding {
                target: "nowhere".into(),
                ..row.clone()
            },
            PhoneBinding {
                expires: 0,
                ..row.clone()
            },
        ] {
            assert_eq!(binding(&broken), None);
        }
        assert_eq!(transport_name(Transport::Tls), "tls");
    }
}
