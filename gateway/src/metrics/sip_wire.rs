//! The SIP driver's counters ([`sip::driver::wire::WireStats`]) in the Prometheus format.

use std::fmt::Write as _;

use sip::driver::wire::WireStats;

use super::family;

pub(crate) fn render(stats: &WireStats, out: &mut String) {
    let counts = stats.counts();
    family(
        out,
        "sylkrtc_sip_requests_total",
        "counter",
        "SIP requests received (in) and sent (out, retransmissions included), by method.",
    );
    for (key, count) in counts.iter().filter(|(key, _)| key.code.is_none()) {
        let _ = writeln!(
            out,
            "sylkrtc_sip_requests_total{{direction=\"{}\",method=\"{}\"}} {count}",
            key.direction.label(),
            key.method
        );
    }
    family(
        out,
        "sylkrtc_sip_responses_total",
        "counter",
        "SIP responses received (in) and sent (out), by method and status code.",
    );
    for (key, count) in &counts {
        if let Some(code) = key.code {
            let _ = writeln!(
                out,
                "sylkrtc_sip_responses_total{{direction=\"{}\",method=\"{}\",code=\"{code}\"}} {count}",
                key.direction.label(),
                key.method
            );
        }
    }
    let (server, client) = stats.transactions();
    family(
        out,
        "sylkrtc_sip_transactions",
        "gauge",
        "SIP transactions held, by kind.",
    );
    let _ = writeln!(out, "sylkrtc_sip_transactions{{kind=\"server\"}} {server}");
    let _ = writeln!(out, "sylkrtc_sip_transactions{{kind=\"client\"}} {client}");
    let (registered, all) = stats.registrations();
    family(
        out,
        "sylkrtc_sip_registrations",
        "gauge",
        "The gateway's registrations of SIP accounts with their registrars, by state.",
    );
    let _ = writeln!(
        out,
        "sylkrtc_sip_registrations{{state=\"registered\"}} {registered}"
    );
    let _ = writeln!(
        out,
        "sylkrtc_sip_registrations{{state=\"other\"}} {}",
        all.saturating_sub(registered)
    );
}
