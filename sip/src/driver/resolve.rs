//! Finding the SIP servers of a domain (RFC 3263 sections 4.1 and 4.2).
//!
//! * An IP address, or a host with a port: that address, over the URI's `transport` (UDP by
//!   default), the port defaulting to 5060 (5061 for TLS).
//! * A host without a port or transport: its NAPTR records (services `SIP+D2U`, `SIP+D2T`,
//!   `SIPS+D2T`, flag `s`) name the transports it offers and their SRV names, in order and
//!   preference; only the transports we run count.
//! * No NAPTR records, or a `transport` parameter: SRV records for the transport (`_sip._udp`,
//!   `_sip._tcp`, `_sips._tcp`), or, without a `transport` parameter, for each transport in
//!   order of preference.
//! * The first transport whose SRV records give addresses wins: every address of every target,
//!   lowest priority first, and within a priority in RFC 2782's weighted random order, which
//!   spreads clients over the servers as their weights say. The caller fails over from one to
//!   the next (section 4.3).
//! * No SRV records: the host's A/AAAA records on the default port.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

use crate::transport::Target;
use crate::transport::Transport;

/// A SIP server to resolve: host, optional port and transport, as a URI names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUri {
    /// The host: a name or an IP address (IPv6 without brackets).
    pub host: String,
    /// The port, if the URI names one.
    pub port: Option<u16>,
    /// The transport, if the URI names one (`;transport=`); `sips:` means TLS.
    pub transport: Option<Transport>,
}

impl ServerUri {
    /// Parses `sip:host[:port][;transport=x]`, `sips:...` or a bare `host[:port]`.
    pub fn parse(text: &str) -> Option<ServerUri> {
        let text = text.trim().trim_start_matches('<').trim_end_matches('>');
        let (sips, rest) = match text.split_once(':') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sips") => (true, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sip") => (false, rest),
            _ => (false, text),
        };
        let mut parts = rest.split(';');
        let hostport = parts.next()?;
        let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, host)| host);
        let mut transport = sips.then_some(Transport::Tls);
        for param in parts {
            if let Some(value) = param.strip_prefix("transport=") {
                transport = Some(Transport::from_param(value)?);
            }
        }
        let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
            let (host, rest) = inner.split_once(']')?;
            (host, rest.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                _ => (hostport, None),
            }
        };
        if host.is_empty() {
            return None;
        }
        let port = match port {
            Some(port) => Some(port.parse().ok()?),
            None => None,
        };
        Some(ServerUri {
            host: host.to_owned(),
            port,
            transport,
        })
    }
}

/// Why no server was found.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The DNS gave no usable record.
    #[error("no DNS records for {0}")]
    NotFound(String),
    /// The resolver could not be set up or queried.
    #[error("DNS error: {0}")]
    Dns(String),
}

/// A DNS resolver for SIP servers.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    /// Transports to try, in order, when a URI names none.
    preference: Vec<Transport>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("preference", &self.preference)
            .finish()
    }
}

impl Resolver {
    /// A resolver using `servers` (UDP and TCP), or the system's configuration when empty.
    pub fn new(
        servers: &[SocketAddr],
        preference: Vec<Transport>,
    ) -> Result<Resolver, ResolveError> {
        let provider = TokioRuntimeProvider::default();
        let builder = if servers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|error| ResolveError::Dns(error.to_string()))?
        } else {
            let name_servers = servers
                .iter()
                .map(|server| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = server.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = server.port();
                    NameServerConfig::new(server.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(name_servers),
                provider,
            )
        };
        let inner = builder
            .build()
            .map_err(|error| ResolveError::Dns(error.to_string()))?;
        Ok(Resolver { inner, preference })
    }

    /// The targets for `uri`, best first.
    pub async fn resolve(&self, uri: &ServerUri) -> Result<Vec<Target>, ResolveError> {
        let default_port = |transport: Transport| {
            if transport == Transport::Tls {
                5061
            } else {
                5060
            }
        };
        if let Ok(ip) = uri.host.parse::<IpAddr>() {
            let transport = uri.transport.unwrap_or(self.preference[0]);
            let port = uri.port.unwrap_or(default_port(transport));
            return Ok(vec![Target {
                transport,
                addr: SocketAddr::new(ip, port),
            }]);
        }
        if let Some(port) = uri.port {
            let transport = uri.transport.unwrap_or(self.preference[0]);
            return self.addresses(&uri.host, port, transport).await;
        }
        let transports: Vec<(Transport, String)> = match uri.transport {
            Some(transport) => vec![(transport, srv_name(transport, &uri.host))],
            None => {
                let mut offered = self.naptr(&uri.host).await;
                if offered.is_empty() {
                    offered = self
                        .preference
                        .iter()
                        .map(|transport| (*transport, srv_name(*transport, &uri.host)))
                        .collect();
                }
                offered
            }
        };
        for (transport, name) in &transports {
            let targets = self.srv(name, *transport).await;
            if !targets.is_empty() {
                return Ok(targets);
            }
        }
        let transport = uri.transport.unwrap_or(self.preference[0]);
        self.addresses(&uri.host, default_port(transport), transport)
            .await
    }

    /// The transports a domain's NAPTR records offer, with their SRV names, best first; only
    /// the transports we run, in the records' order and preference.
    async fn naptr(&self, host: &str) -> Vec<(Transport, String)> {
        let Ok(lookup) = self
            .inner
            .lookup(format!("{host}."), RecordType::NAPTR)
            .await
        else {
            return Vec::new();
        };
        let mut records: Vec<(u16, u16, Transport, String)> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::NAPTR(naptr) if naptr.flags.eq_ignore_ascii_case(b"s") => {
                    let transport = naptr_transport(&naptr.services)?;
                    self.preference.contains(&transport).then(|| {
                        (
                            naptr.order,
                            naptr.preference,
                            transport,
                            naptr.replacement.to_string(),
                        )
                    })
                }
                _ => None,
            })
            .collect();
        records.sort_by_key(|(order, preference, _, _)| (*order, *preference));
        records
            .into_iter()
            .map(|(_, _, transport, name)| (transport, name))
            .collect()
    }

    /// Every address of the SRV targets of `name`, in RFC 2782 order.
    async fn srv(&self, name: &str, transport: Transport) -> Vec<Target> {
        let Ok(lookup) = self.inner.srv_lookup(name).await else {
            return Vec::new();
        };
        let records: Vec<SrvRecord> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(SrvRecord {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    host: srv.target.to_string(),
                }),
                _ => None,
            })
            // RFC 2782: a target of "." means the service is decidedly not offered.
            .filter(|record| record.host != ".")
            .collect();
        let mut targets = Vec::new();
        for record in rfc2782_order(records, |total| fastrand::u32(0..total)) {
            if let Ok(found) = self.addresses(&record.host, record.port, transport).await {
                targets.extend(found);
            }
        }
        targets
    }

    async fn addresses(
        &self,
        host: &str,
        port: u16,
        transport: Transport,
    ) -> Result<Vec<Target>, ResolveError> {
        let name = if host.ends_with('.') {
            host.to_owned()
        } else {
            format!("{host}.")
        };
        let lookup = self
            .inner
            .lookup_ip(name)
            .await
            .map_err(|error| ResolveError::NotFound(format!("{host} ({error})")))?;
        let targets: Vec<Target> = lookup
            .iter()
            .map(|ip| Target {
                transport,
                addr: SocketAddr::new(ip, port),
            })
            .collect();
        if targets.is_empty() {
            return Err(ResolveError::NotFound(host.to_owned()));
        }
        Ok(targets)
    }
}

/// The SRV name of a transport's SIP service at `host`.
fn srv_name(transport: Transport, host: &str) -> String {
    let service = match transport {
        Transport::Udp => "_sip._udp",
        Transport::Tcp => "_sip._tcp",
        Transport::Tls => "_sips._tcp",
    };
    format!("{service}.{host}.")
}

/// The transport of a NAPTR service field (RFC 3263 section 4.1).
fn naptr_transport(services: &[u8]) -> Option<Transport> {
    match services.to_ascii_uppercase().as_slice() {
        b"SIP+D2U" => Some(Transport::Udp),
        b"SIP+D2T" => Some(Transport::Tcp),
        b"SIPS+D2T" => Some(Transport::Tls),
        _ => None,
    }
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SrvRecord {
    priority: u16,
    weight: u16,
    port: u16,
    host: String,
}

/// RFC 2782's order: lowest priority first; within a priority, repeatedly pick a record with a
/// probability proportional to its weight (`random(total)` gives a number in `0..total`), so
/// that weights 3 and 1 put the first server first three times in four. Records of weight 0
/// come after the weighted ones of their priority (RFC 2782 gives them "a very small chance").
fn rfc2782_order(
    mut records: Vec<SrvRecord>,
    mut random: impl FnMut(u32) -> u32,
) -> Vec<SrvRecord> {
    records.sort_by_key(|record| record.priority);
    let mut ordered = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let end = records
            .iter()
            .position(|record| record.priority != priority)
            .unwrap_or(records.len());
        let mut group: Vec<SrvRecord> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|record| u32::from(record.weight)).sum();
            let chosen = if total == 0 {
                0
            } else {
                let pick = random(total);
                let mut sum = 0;
                group
                    .iter()
                    .position(|record| {
                        sum += u32::from(record.weight);
                        sum > pick
                    })
                    .unwrap_or(0)
            };
            ordered.push(group.remove(chosen));
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_uris() {
        let parse = |text| ServerUri::parse(text).unwrap();
        assert_eq!(
            parse("example.com"),
            ServerUri {
                host: "example.com".into(),
                port: None,
                transport: None
            }
        );
        assert_eq!(
            parse("sip:proxy.example.com:5070;transport=tcp;lr"),
            ServerUri {
                host: "proxy.example.com".into(),
                port: Some(5070),
                transport: Some(Transport::Tcp)
            }
        );
        assert_eq!(parse("sips:example.com").transport, Some(Transport::Tls));
        assert_eq!(parse("<sip:[2001:db8::1]:5080>").host, "2001:db8::1");
        assert_eq!(parse("sip:alice@127.0.0.1").host, "127.0.0.1");
        assert!(ServerUri::parse("sip:host;transport=sctp").is_none());
        assert!(ServerUri::parse("sip:host:port").is_none());
    }

    #[tokio::test]
    async fn ip_addresses_need_no_dns() {
        let resolver = Resolver::new(
            &["127.0.0.1:1".parse().unwrap()],
            vec![Transport::Udp, Transport::Tcp],
        )
        .unwrap();
        let targets = resolver
            .resolve(&ServerUri::parse("127.0.0.1").unwrap())
            .await
            .unwrap();
        assert_eq!(
            targets,
            [Target {
                transport: Transport::Udp,
                addr: "127.0.0.1:5060".parse().unwrap()
            }]
        );
        let targets = resolver
            .resolve(&ServerUri::parse("sips:[::1]").unwrap())
            .await
            .unwrap();
        assert_eq!(
            targets,
            [Target {
                transport: Transport::Tls,
                addr: "[::1]:5061".parse().unwrap()
            }]
        );
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;

    fn record(priority: u16, weight: u16, host: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: 5060,
            host: host.into(),
        }
    }

    /// Priorities strictly first; within one, weights decide how often a server comes first:
    /// over many draws a 3:1 weighting puts the heavier first about three times in four.
    #[test]
    fn srv_records_go_by_priority_then_weighted_random() {
        let records = vec![
            record(20, 0, "backup"),
            record(10, 1, "light"),
            record(10, 3, "heavy"),
        ];
        let mut seed = fastrand::Rng::with_seed(7);
        let mut heavy_first = 0;
        for _ in 0..4000 {
            let order = rfc2782_order(records.clone(), |total| seed.u32(0..total));
            let hosts: Vec<&str> = order.iter().map(|record| record.host.as_str()).collect();
            assert_eq!(hosts.len(), 3);
            assert_eq!(hosts[2], "backup");
            if hosts[0] == "heavy" {
                heavy_first += 1;
            }
        }
        assert!((2850..3150).contains(&heavy_first), "{heavy_first} of 4000");
        // A zero weight comes after the weighted ones of its priority.
        let order = rfc2782_order(vec![record(1, 0, "zero"), record(1, 5, "five")], |_| 0);
        assert_eq!(order[0].host, "five");
        assert_eq!(order[1].host, "zero");
    }

    #[test]
    fn naptr_services_name_our_transports() {
        assert_eq!(naptr_transport(b"SIP+D2U"), Some(Transport::Udp));
        assert_eq!(naptr_transport(b"sip+d2t"), Some(Transport::Tcp));
        assert_eq!(naptr_transport(b"SIPS+D2T"), Some(Transport::Tls));
        assert_eq!(naptr_transport(b"SIP+D2S"), None);
        assert_eq!(naptr_transport(b"E2U+sip"), None);
    }
}
