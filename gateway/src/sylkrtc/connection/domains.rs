//! The domains a connection's accounts may belong to, and what the configuration says of each.

use std::collections::BTreeMap;

use protocol::Aor;

use crate::config::ListAddress;

/// The SIP domains accounts may belong to (`[accounts] sip_domains`), those whose
/// registrars take RFC 8599's push parameters (`rfc8599_push_domains`), and those whose
/// servers keep presence lists (`presence_lists`).
#[derive(Debug)]
pub(crate) struct SipDomains {
    /// Lower-case domains; `None` when any domain is allowed.
    allowed: Option<Vec<String>>,
    /// Lower-case domains.
    rfc8599: Vec<String>,
    /// The local domain (lower case), whose accounts' push tokens the gateway keeps.
    local: Option<String>,
    /// Lower-case domains and their users' list address.
    presence_lists: Vec<(String, ListAddress)>,
}

impl SipDomains {
    pub(crate) fn new(domains: &[String]) -> Self {
        let allowed = (!domains.iter().any(|domain| domain == "*")).then(|| {
            domains
                .iter()
                .map(|domain| domain.to_ascii_lowercase())
                .collect()
        });
        SipDomains {
            allowed,
            rfc8599: Vec::new(),
            local: None,
            presence_lists: Vec::new(),
        }
    }

    /// The domains whose registrars take RFC 8599's push parameters.
    pub(crate) fn with_rfc8599(mut self, domains: &[String]) -> Self {
        self.rfc8599 = domains
            .iter()
            .map(|domain| domain.to_ascii_lowercase())
            .collect();
        self
    }

    /// The domains whose servers keep each user's presence list, and its address.
    pub(crate) fn with_presence_lists(mut self, lists: &BTreeMap<String, ListAddress>) -> Self {
        self.presence_lists = lists
            .iter()
            .map(|(domain, address)| (domain.to_ascii_lowercase(), address.clone()))
            .collect();
        self
    }

    /// The presence list of `account`, when its domain's server keeps them.
    pub(crate) fn presence_list(&self, account: &Aor) -> Option<Aor> {
        let domain = account.domain();
        let (_, address) = self
            .presence_lists
            .iter()
            .find(|(listed, _)| *listed == domain)?;
        address.for_user(account.user())
    }

    /// The local domain (empty: none).
    pub(crate) fn with_local(mut self, domain: &str) -> Self {
        self.local = (!domain.is_empty()).then(|| domain.to_ascii_lowercase());
        self
    }

    pub(super) fn is_local(&self, domain: &str) -> bool {
        self.local.as_deref() == Some(domain)
    }

    pub(super) fn rfc8599(&self, domain: &str) -> bool {
        self.rfc8599.iter().any(|wanted| wanted == domain)
    }

    pub(super) fn allows(&self, domain: &str) -> bool {
        match &self.allowed {
            None => true,
            Some(list) => list.iter().any(|allowed| allowed == domain),
        }
    }
}
