//! Finding the SIP server of a domain (RFC 3263 sections 4.1 and 4.2, without NAPTR).
//!
//! * An IP address, or a host with a port: that address, over the URI's `transport` (UDP by
//!   default), the port defaulting to 5060 (5061 for TLS).
//! * A host without a port: SRV records for the transport (`_sip._udp`, `_sip._tcp`,
//!   `_sips._tcp`), or, without a `transport` parameter, for each transport in order of
//!   preference; the first that has records wins, ordered by priority and weight.
//! * No SRV records: the host's A/AAAA records on the default port.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use crate::endpoint::Target;
use crate::registration::Transport;

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
        let transports = match uri.transport {
            Some(transport) => vec![transport],
            None => self.preference.clone(),
        };
        for transport in &transports {
            let service = match transport {
                Transport::Udp => "_sip._udp",
                Transport::Tcp => "_sip._tcp",
                Transport::Tls => "_sips._tcp",
            };
            let Ok(lookup) = self
                .inner
                .srv_lookup(format!("{service}.{}.", uri.host))
                .await
            else {
                continue;
            };
            let mut records: Vec<(u16, u16, u16, String)> = lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => {
                        Some((srv.priority, srv.weight, srv.port, srv.target.to_string()))
                    }
                    _ => None,
                })
                .collect();
            // Lowest priority first; within a priority, heavier weights first (a fixed order
            // rather than RFC 2782's weighted random choice, so that behaviour is repeatable).
            records.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            let mut targets = Vec::new();
            for (_, _, port, host) in records {
                if let Ok(found) = self.addresses(&host, port, *transport).await {
                    targets.extend(found);
                }
            }
            if !targets.is_empty() {
                return Ok(targets);
            }
        }
        let transport = uri.transport.unwrap_or(self.preference[0]);
        self.addresses(&uri.host, default_port(transport), transport)
            .await
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
