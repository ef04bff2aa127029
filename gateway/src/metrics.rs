//! Counters for `/metrics`, rendered in the Prometheus text format.
//!
//! Plain atomics, one set per running gateway (not a process-wide registry), so that several
//! gateways in one test process each report their own numbers.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use protocol::REQUEST_NAMES;

pub(crate) mod calls;
mod histogram;
pub(crate) mod media;
mod sip_wire;
pub(crate) mod store;

/// Why a request got an `error`, or was dropped unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// Not JSON, not an object, or no `transaction`.
    Malformed,
    /// A mandatory field is missing or invalid.
    Invalid,
    /// The request name is not part of the protocol.
    UnknownRequest,
    /// The request is part of the protocol but not built yet.
    NotSupported,
    /// The request was valid but refused (unknown account, duplicate, domain not allowed).
    Refused,
    /// The connection's request queue was full.
    QueueFull,
    /// A binary frame.
    BinaryFrame,
    /// A message over `max_message_size`.
    TooBig,
    /// The message store could not do what the request needed.
    Store,
}

impl ErrorKind {
    const ALL: [ErrorKind; 9] = [
        ErrorKind::Malformed,
        ErrorKind::Invalid,
        ErrorKind::UnknownRequest,
        ErrorKind::NotSupported,
        ErrorKind::Refused,
        ErrorKind::QueueFull,
        ErrorKind::BinaryFrame,
        ErrorKind::TooBig,
        ErrorKind::Store,
    ];

    fn label(self) -> &'static str {
        match self {
            ErrorKind::Malformed => "malformed",
            ErrorKind::Invalid => "invalid",
            ErrorKind::UnknownRequest => "unknown_request",
            ErrorKind::NotSupported => "not_supported",
            ErrorKind::Refused => "refused",
            ErrorKind::QueueFull => "queue_full",
            ErrorKind::BinaryFrame => "binary_frame",
            ErrorKind::TooBig => "too_big",
            ErrorKind::Store => "store",
        }
    }
}

/// Why a WebSocket upgrade was refused.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rejection {
    /// The `Origin` is not in `web_origins`.
    Origin,
    /// No sylkRTC subprotocol was offered.
    Subprotocol,
    /// `max_connections` are open.
    Capacity,
    /// The gateway is draining.
    Draining,
}

impl Rejection {
    const ALL: [Rejection; 4] = [
        Rejection::Origin,
        Rejection::Subprotocol,
        Rejection::Capacity,
        Rejection::Draining,
    ];

    fn label(self) -> &'static str {
        match self {
            Rejection::Origin => "origin",
            Rejection::Subprotocol => "subprotocol",
            Rejection::Capacity => "capacity",
            Rejection::Draining => "draining",
        }
    }
}

/// The seed signalling protocols hosted beside sylkRTC.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Seed {
    NextRtc,
    GStreamer,
    Webrtcsink,
    Cuttlefish,
}

impl Seed {
    const ALL: [Seed; 4] = [
        Seed::NextRtc,
        Seed::GStreamer,
        Seed::Webrtcsink,
        Seed::Cuttlefish,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Seed::NextRtc => "nextrtc",
            Seed::GStreamer => "gstreamer",
            Seed::Webrtcsink => "webrtcsink",
            Seed::Cuttlefish => "cuttlefish",
        }
    }
}

/// One seed protocol's counters.
#[derive(Debug, Default)]
struct SeedCounters {
    connections: AtomicI64,
    connections_total: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
}

/// The gateway's counters.
#[derive(Debug)]
pub(crate) struct Metrics {
    seeds: [SeedCounters; Seed::ALL.len()],
    connections: AtomicI64,
    connections_total: AtomicU64,
    rejected: [AtomicU64; Rejection::ALL.len()],
    accounts: AtomicI64,
    /// Calls whose task runs.
    calls: AtomicI64,
    calls_total: AtomicU64,
    /// UDP ports the SIP legs of calls hold.
    media_ports: AtomicI64,
    /// One counter per name of [`REQUEST_NAMES`], then one for unknown names.
    requests: Box<[AtomicU64]>,
    errors: [AtomicU64; ErrorKind::ALL.len()],
    /// The local domain's location service, whose bindings are counted when rendered.
    location: std::sync::OnceLock<std::sync::Arc<dyn sip::Location>>,
    /// This instance's id (`[instance] id`), a label of `sylkrtc_instance_info`.
    instance: std::sync::OnceLock<String>,
    /// Whether the gateway drains.
    draining: std::sync::atomic::AtomicBool,
    /// Calls by outcome and their set-up times.
    pub(crate) calls_ended: calls::CallStats,
    /// Calls' media per leg.
    pub(crate) media: media::MediaStats,
    /// The message store's latency.
    pub(crate) store: store::StoreStats,
    /// The SIP driver's counters.
    sip: std::sync::OnceLock<std::sync::Arc<sip::driver::wire::WireStats>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            seeds: Default::default(),
            connections: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            rejected: Default::default(),
            accounts: AtomicI64::new(0),
            calls: AtomicI64::new(0),
            calls_total: AtomicU64::new(0),
            media_ports: AtomicI64::new(0),
            instance: std::sync::OnceLock::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
            calls_ended: calls::CallStats::default(),
            media: media::MediaStats::default(),
            store: store::StoreStats::default(),
            sip: std::sync::OnceLock::new(),
            requests: (0..=REQUEST_NAMES.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            errors: Default::default(),
            location: std::sync::OnceLock::new(),
        }
    }
}

impl Metrics {
    pub(crate) fn connection_opened(&self) {
        self.connections.fetch_add(1, Relaxed);
        self.connections_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.connections.fetch_sub(1, Relaxed);
    }

    pub(crate) fn seed_opened(&self, seed: Seed) {
        let counters = &self.seeds[seed as usize];
        counters.connections.fetch_add(1, Relaxed);
        counters.connections_total.fetch_add(1, Relaxed);
    }

    pub(crate) fn seed_closed(&self, seed: Seed) {
        self.seeds[seed as usize].connections.fetch_sub(1, Relaxed);
    }

    /// A message of a seed protocol, received (`inbound`) or sent.
    pub(crate) fn seed_message(&self, seed: Seed, inbound: bool) {
        let counters = &self.seeds[seed as usize];
        let counter = if inbound {
            &counters.messages_in
        } else {
            &counters.messages_out
        };
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn connections(&self) -> i64 {
        self.connections.load(Relaxed)
    }

    /// Calls whose task runs (sylkRTC, phones, Matrix, echo).
    pub(crate) fn calls(&self) -> i64 {
        self.calls.load(Relaxed)
    }

    /// Renders the SIP driver's counters too.
    pub(crate) fn watch_sip(&self, stats: std::sync::Arc<sip::driver::wire::WireStats>) {
        let _ = self.sip.set(stats);
    }

    /// Names the instance in the rendered metrics (once; later names are ignored).
    pub(crate) fn set_instance(&self, id: &str) {
        let _ = self.instance.set(id.to_owned());
    }

    /// The gateway began draining.
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    pub(crate) fn rejected(&self, why: Rejection) {
        self.rejected[why as usize].fetch_add(1, Relaxed);
    }

    /// A call's task started: counted until the guard is dropped.
    pub(crate) fn call_started(self: &std::sync::Arc<Self>) -> Gauge {
        self.calls.fetch_add(1, Relaxed);
        self.calls_total.fetch_add(1, Relaxed);
        Gauge {
            metrics: self.clone(),
            which: Which::Calls,
            count: 1,
        }
    }

    /// A call took its RTP and RTCP ports: counted until the guard is dropped.
    pub(crate) fn ports_taken(self: &std::sync::Arc<Self>) -> Gauge {
        self.media_ports.fetch_add(2, Relaxed);
        Gauge {
            metrics: self.clone(),
            which: Which::Ports,
            count: 2,
        }
    }

    pub(crate) fn accounts_changed(&self, delta: i64) {
        if delta != 0 {
            self.accounts.fetch_add(delta, Relaxed);
        }
    }

    /// Counts a request by name; names outside the protocol count as `unknown`.
    pub(crate) fn request(&self, name: &str) {
        let index = REQUEST_NAMES
            .iter()
            .position(|known| *known == name)
            .unwrap_or(REQUEST_NAMES.len());
        self.requests[index].fetch_add(1, Relaxed);
    }

    pub(crate) fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    /// Counts the bindings of the local domain's location service from now on.
    pub(crate) fn watch_location(&self, location: std::sync::Arc<dyn sip::Location>) {
        let _ = self.location.set(location);
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if let Some(instance) = self.instance.get() {
            family(
                &mut out,
                "sylkrtc_instance_info",
                "gauge",
                "This gateway instance: its id ([instance] id; Prometheus adds its own instance label) and version.",
            );
            let _ = writeln!(
                out,
                "sylkrtc_instance_info{{id=\"{instance}\",version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            );
        }
        family(
            &mut out,
            "sylkrtc_draining",
            "gauge",
            "1 while the gateway drains (no new connections or calls), else 0.",
        );
        let _ = writeln!(
            out,
            "sylkrtc_draining {}",
            u8::from(self.draining.load(Relaxed))
        );
        family(
            &mut out,
            "sylkrtc_connections",
            "gauge",
            "Open sylkRTC WebSocket connections.",
        );
        let _ = writeln!(
            out,
            "sylkrtc_connections {}",
            self.connections.load(Relaxed)
        );
        family(
            &mut out,
            "sylkrtc_connections_total",
            "counter",
            "sylkRTC WebSocket connections accepted.",
        );
        let _ = writeln!(
            out,
            "sylkrtc_connections_total {}",
            self.connections_total.load(Relaxed)
        );
        family(
            &mut out,
            "sylkrtc_connections_rejected_total",
            "counter",
            "WebSocket upgrades refused, by reason.",
        );
        for why in Rejection::ALL {
            let count = self.rejected[why as usize].load(Relaxed);
            let _ = writeln!(
                out,
                "sylkrtc_connections_rejected_total{{reason=\"{}\"}} {count}",
                why.label()
            );
        }
        family(
            &mut out,
            "sylkrtc_accounts",
            "gauge",
            "Accounts added on open connections.",
        );
        let _ = writeln!(out, "sylkrtc_accounts {}", self.accounts.load(Relaxed));
        family(&mut out, "sylkrtc_calls", "gauge", "Calls in progress.");
        let _ = writeln!(out, "sylkrtc_calls {}", self.calls.load(Relaxed));
        self.calls_ended.render(&mut out);
        self.media.render(&mut out);
        self.store.render(&mut out);
        if let Some(sip) = self.sip.get() {
            sip_wire::render(sip, &mut out);
        }
        family(
            &mut out,
            "sylkrtc_calls_total",
            "counter",
            "Calls started, both directions.",
        );
        let _ = writeln!(
            out,
            "sylkrtc_calls_total {}",
            self.calls_total.load(Relaxed)
        );
        family(
            &mut out,
            "sylkrtc_media_ports",
            "gauge",
            "UDP ports held by the SIP legs of calls (RTP and RTCP).",
        );
        let _ = writeln!(
            out,
            "sylkrtc_media_ports {}",
            self.media_ports.load(Relaxed)
        );
        if let Some(location) = self.location.get() {
            family(
                &mut out,
                "sylkrtc_local_bindings",
                "gauge",
                "Bindings at the local domain: phones registered over SIP (expired ones not yet \
                 swept included) and browsers signed in.",
            );
            let _ = writeln!(
                out,
                "sylkrtc_local_bindings{{kind=\"phone\"}} {}",
                location.phone_count()
            );
            let _ = writeln!(
                out,
                "sylkrtc_local_bindings{{kind=\"browser\"}} {}",
                location.browser_count()
            );
        }
        family(
            &mut out,
            "sylkrtc_requests_total",
            "counter",
            "Requests received, by request name.",
        );
        for (index, counter) in self.requests.iter().enumerate() {
            let label = REQUEST_NAMES.get(index).copied().unwrap_or("unknown");
            let _ = writeln!(
                out,
                "sylkrtc_requests_total{{request=\"{label}\"}} {}",
                counter.load(Relaxed)
            );
        }
        family(
            &mut out,
            "sylkrtc_errors_total",
            "counter",
            "Requests answered with an error or dropped, by kind.",
        );
        for kind in ErrorKind::ALL {
            let count = self.errors[kind as usize].load(Relaxed);
            let _ = writeln!(
                out,
                "sylkrtc_errors_total{{kind=\"{}\"}} {count}",
                kind.label()
            );
        }
        self.render_seeds(&mut out);
        out
    }

    fn render_seeds(&self, out: &mut String) {
        family(
            out,
            "sylkrtc_signalling_connections",
            "gauge",
            "Open WebSocket connections of the other signalling protocols.",
        );
        for seed in Seed::ALL {
            let count = self.seeds[seed as usize].connections.load(Relaxed);
            let _ = writeln!(
                out,
                "sylkrtc_signalling_connections{{protocol=\"{}\"}} {count}",
                seed.label()
            );
        }
        family(
            out,
            "sylkrtc_signalling_connections_total",
            "counter",
            "WebSocket connections of the other signalling protocols accepted.",
        );
        for seed in Seed::ALL {
            let count = self.seeds[seed as usize].connections_total.load(Relaxed);
            let _ = writeln!(
                out,
                "sylkrtc_signalling_connections_total{{protocol=\"{}\"}} {count}",
                seed.label()
            );
        }
        family(
            out,
            "sylkrtc_signalling_messages_total",
            "counter",
            "Messages of the other signalling protocols, by direction.",
        );
        for seed in Seed::ALL {
            let counters = &self.seeds[seed as usize];
            for (direction, counter) in [
                ("in", &counters.messages_in),
                ("out", &counters.messages_out),
            ] {
                let _ = writeln!(
                    out,
                    "sylkrtc_signalling_messages_total{{protocol=\"{}\",direction=\"{direction}\"}} {}",
                    seed.label(),
                    counter.load(Relaxed)
                );
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Calls,
    Ports,
}

/// Holds a gauge up while it lives.
#[derive(Debug)]
pub(crate) struct Gauge {
    metrics: std::sync::Arc<Metrics>,
    which: Which,
    count: i64,
}

impl Drop for Gauge {
    fn drop(&mut self) {
        let gauge = match self.which {
            Which::Calls => &self.metrics.calls,
            Which::Ports => &self.metrics.media_ports,
        };
        gauge.fetch_sub(self.count, Relaxed);
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, line_start: &str) -> &'a str {
        text.lines()
            .find_map(|line| line.strip_prefix(line_start))
            .unwrap_or_else(|| panic!("no {line_start:?} in\n{text}"))
            .trim()
    }

    #[test]
    fn renders_every_family_with_its_samples() {
        let metrics = Metrics::default();
        metrics.connection_opened();
        metrics.connection_opened();
        metrics.connection_closed();
        metrics.request("ping");
        metrics.request("ping");
        metrics.request("no-such-request");
        metrics.error(ErrorKind::NotSupported);
        metrics.rejected(Rejection::Origin);
        metrics.accounts_changed(3);
        metrics.accounts_changed(-1);
        let text = metrics.render();
        assert_eq!(sample(&text, "sylkrtc_connections "), "1");
        assert_eq!(sample(&text, "sylkrtc_connections_total "), "2");
        assert_eq!(sample(&text, "sylkrtc_accounts "), "2");
        assert_eq!(
            sample(&text, "sylkrtc_requests_total{request=\"ping\"}"),
            "2"
        );
        assert_eq!(
            sample(&text, "sylkrtc_requests_total{request=\"unknown\"}"),
            "1"
        );
        assert_eq!(
            sample(&text, "sylkrtc_requests_total{request=\"account-add\"}"),
            "0"
        );
        assert_eq!(
            sample(&text, "sylkrtc_errors_total{kind=\"not_supported\"}"),
            "1"
        );
        assert_eq!(
            sample(
                &text,
                "sylkrtc_connections_rejected_total{reason=\"origin\"}"
            ),
            "1"
        );
        // Each family's samples follow its TYPE line, before the next family's HELP.
        let type_line = text.find("# TYPE sylkrtc_accounts gauge").unwrap();
        let accounts = text.find("sylkrtc_accounts 2").unwrap();
        let next_help = text.find("# HELP sylkrtc_requests_total").unwrap();
        assert!(type_line < accounts && accounts < next_help, "{text}");
    }
}
