//! The other gateways of a cluster, seen from our accounts' registrations: a browser whose
//! gateway went away registers its account again through another one, and the binding the
//! gone gateway left at the registrar would make every call fork to it until it expires. When
//! an account is first registered, each other binding the registrar lists at a sibling
//! gateway's address is asked whether it is still served (OPTIONS to its Contact: a gateway
//! answers 200 for a Contact of a live registration, 404 otherwise); one that is not (404, no
//! answer, unreachable) is removed with our next REGISTER. Bindings anywhere else (other
//! devices of the account) are never touched.

use std::time::Instant;

use bytes::Bytes;
use ezk_sip_types::{Headers, Method, Name};

use super::{ClientKind, ClientTransaction, Endpoint, EndpointEvent, Owner, RegistrationId};
use crate::message::{Message, RequestUri, StartLine};
use crate::transaction::{Event, NonInviteClient};
use crate::transport::{Target, Transport};

/// The retransmission interval of a probe: its transaction gives up after 64 of them.
const PROBE_T1: std::time::Duration = std::time::Duration::from_millis(125);

impl Endpoint {
    /// Asks a sibling gateway whether `contact`, another binding of registration `id`'s
    /// account, is still served; nothing for a Contact that is not at a sibling's address.
    pub(super) fn probe_sibling(&mut self, now: Instant, id: RegistrationId, contact: String) {
        let Some(addr) = sibling_addr(&contact) else {
            return;
        };
        if !self.config.siblings.contains(&addr) {
            return;
        }
        let Some(entry) = self.registrations.get(&id) else {
            return;
        };
        let account = entry.registration.config();
        let from = format!("sip:{}@{}", account.user, account.domain);
        let local = account.local.clone();
        let Some(uri) = RequestUri::parse(&contact) else {
            return;
        };
        self.next_id += 1;
        let probe = self.next_id;
        let target = Target {
            transport: Transport::Udp,
            addr,
        };
        self.probes.insert(probe, (id, contact));
        self.send_options(now, uri, &from, &local, target, Owner::Probe(probe));
    }

    /// A probe's outcome: a binding its gateway no longer serves goes.
    pub(super) fn probe_outcomes(&mut self, now: Instant, probe: u64, outcomes: Vec<Event>) {
        for outcome in outcomes {
            let Some((id, contact)) = self.probes.remove(&probe) else {
                return;
            };
            let gone = match outcome {
                Event::Final(response) => response.code() == Some(404),
                Event::Timeout | Event::TransportError => true,
                Event::Provisional(_) | Event::Ack(_) => {
                    self.probes.insert(probe, (id, contact));
                    continue;
                }
            };
            if !gone {
                continue;
            }
            let Some(entry) = self.registrations.get_mut(&id) else {
                return;
            };
            let config = entry.registration.config();
            let account = format!("{}@{}", config.user, config.domain);
            entry.registration.remove_contact(contact.clone());
            self.events
                .push_back(EndpointEvent::SiblingBindingRemoved { account, contact });
            self.pump(now, id);
        }
    }

    /// Sends an OPTIONS to `uri` from `from`, with `local` (`host:port`) as the Via's sent-by,
    /// to `target`, in a new client transaction of `owner`.
    pub(super) fn send_options(
        &mut self,
        now: Instant,
        uri: RequestUri,
        from: &str,
        local: &str,
        target: Target,
        owner: Owner,
    ) {
        let timers = match owner {
            // A sibling is on the same private network: it answers within milliseconds, and
            // one silent for 8 s (64 T1) is gone.
            Owner::Probe(_) => crate::transaction::Timers {
                t1: PROBE_T1,
                ..self.config.timers
            },
            _ => self.config.timers,
        };
        // Tags never repeat: the branch and Call-ID are unique with them.
        let tag = self.new_tag();
        let branch = format!("z9hG4bK{tag}o");
        let host = crate::uri::uri_host(from).unwrap_or("invalid");
        let mut headers = Headers::with_capacity(8);
        headers.insert(
            Name::VIA,
            format!(
                "SIP/2.0/{} {local};rport;branch={branch}",
                target.transport.via_name()
            ),
        );
        headers.insert(Name::MAX_FORWARDS, "70");
        headers.insert(Name::FROM, format!("<{from}>;tag={tag}"));
        headers.insert(Name::TO, format!("<{}>", uri.as_str()));
        headers.insert(Name::CALL_ID, format!("{tag}o@{host}"));
        headers.insert(Name::CSEQ, "1 OPTIONS");
        headers.insert(Name::USER_AGENT, self.config.user_agent.clone());
        let request = Message {
            start: StartLine::Request {
                method: Method::OPTIONS,
                uri,
            },
            headers,
            body: Bytes::new(),
        };
        let Some(key) = super::client_key(&request) else {
            return;
        };
        let transaction = NonInviteClient::new(
            Bytes::from(request.to_bytes()),
            target.transport.reliable(),
            timers,
            now,
        );
        self.start_client(
            key,
            ClientTransaction {
                transaction: ClientKind::NonInvite(transaction),
                target,
                owner,
                method: Method::OPTIONS,
                request: None,
            },
        );
    }
}

/// The address of a Contact whose host is an IP address and whose port is given (as a
/// gateway's are).
fn sibling_addr(contact: &str) -> Option<std::net::SocketAddr> {
    let rest = contact
        .strip_prefix("sip:")
        .or_else(|| contact.strip_prefix("sips:"))?;
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host_port = host_port.split([';', '?']).next()?;
    host_port.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use ezk_sip_types::Name;

    use super::sibling_addr;
    use crate::endpoint::EndpointEvent;
    use crate::endpoint::tests::{endpoint, events, registrar, registration, sent};
    use crate::transport::{Target, Transport};

    /// After the first 2xx, each other binding at a sibling's address is asked; the one whose
    /// gateway says it does not serve it (404) is removed with a REGISTER, the one served
    /// (200) stays, and bindings elsewhere are not asked about.
    #[test]
    fn a_binding_a_sibling_no_longer_serves_is_removed() {
        let now = Instant::now();
        let mut endpoint = endpoint();
        let (gone, live) = ("127.0.0.3:5060", "127.0.0.4:5060");
        endpoint.config.siblings = vec![gone.parse().unwrap(), live.parse().unwrap()];
        endpoint.register(now, registration("gwnew"), registrar());
        let (_, request) = sent(&mut endpoint).pop().unwrap();
        let mut ok = request.response(200, "OK", Some("r"));
        ok.headers.insert(
            Name::CONTACT,
            format!(
                "<sip:gwnew@127.0.0.1:5062;transport=udp>;expires=600, \
                 <sip:gwold@{gone};transport=udp>;expires=300, \
                 <sip:gwlive@{live};transport=udp>;expires=300, \
                 <sip:alice@192.0.2.9:5070>;expires=100"
            ),
        );
        endpoint
            .handle_datagram(now, registrar(), &ok.to_bytes())
            .unwrap();
        let probes = sent(&mut endpoint);
        let asked: Vec<String> = probes
            .iter()
            .map(|(target, probe)| format!("{} {}", target.addr, probe.start))
            .collect();
        assert_eq!(
            asked,
            [
                format!("{gone} OPTIONS sip:gwold@{gone};transport=udp SIP/2.0"),
                format!("{live} OPTIONS sip:gwlive@{live};transport=udp SIP/2.0"),
            ]
        );
        let udp = |addr: &str| Target {
            transport: Transport::Udp,
            addr: addr.parse().unwrap(),
        };
        let served = probes[1].1.response(200, "OK", Some("l"));
        endpoint
            .handle_datagram(now, udp(live), &served.to_bytes())
            .unwrap();
        assert!(sent(&mut endpoint).is_empty(), "a served binding stays");
        let not_served = probes[0].1.response(404, "Not Found", Some("g"));
        endpoint
            .handle_datagram(now, udp(gone), &not_served.to_bytes())
            .unwrap();
        let (target, removal) = sent(&mut endpoint).pop().expect("a REGISTER");
        assert_eq!(target, registrar());
        let contact = removal.header(&Name::CONTACT).unwrap();
        assert!(
            contact.ends_with(&format!(", <sip:gwold@{gone};transport=udp>;expires=0")),
            "{contact}"
        );
        let removed = events(&mut endpoint).into_iter().any(|event| {
            event
                == EndpointEvent::SiblingBindingRemoved {
                    account: "alice@127.0.0.1".into(),
                    contact: format!("sip:gwold@{gone};transport=udp"),
                }
        });
        assert!(removed, "the driver hears of it, to log it");
    }

    #[test]
    fn a_contact_at_an_address_and_port_is_a_possible_sibling() {
        assert_eq!(
            sibling_addr("sip:alice-1f@127.0.0.3:5060;transport=udp"),
            Some("127.0.0.3:5060".parse().unwrap())
        );
        assert_eq!(
            sibling_addr("sip:a@[::1]:5062;transport=tcp"),
            Some("[::1]:5062".parse().unwrap())
        );
        assert_eq!(sibling_addr("sip:alice@example.com:5060"), None);
        assert_eq!(sibling_addr("sip:alice@127.0.0.3"), None);
        assert_eq!(sibling_addr("tel:+1555"), None);
    }
}
