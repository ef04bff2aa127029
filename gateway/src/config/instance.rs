//! `[instance]`: this gateway among several that serve as one (behind Kamailio and HAProxy):
//! its name, how it drains, and the token of its admin endpoint.

use serde::Deserialize;

/// The shortest admin token taken: a guessable one would let anyone drain the gateway.
const MIN_ADMIN_TOKEN: usize = 16;

/// `[instance]`: this instance's id, draining, and the admin endpoint.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// The instance's name in `/health`, `/metrics` and the logs. Empty: the host name and the
    /// HTTP port (`host-10888`), distinct for several instances on one host.
    #[serde(default)]
    pub id: String,
    /// Seconds a draining instance lets its calls go on before it ends them and stops.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: u64,
    /// The bearer token of `POST /admin/drain`. Empty: no admin endpoint (404).
    #[serde(default)]
    pub admin_token: String,
    /// The other instances' SIP addresses (UDP): a call for a user of the local domain also
    /// rings the places the user has on them, and their calls for the domain's users, from
    /// exactly these addresses, are taken without a digest challenge.
    #[serde(default)]
    pub peers: Vec<std::net::SocketAddr>,
}

impl Default for InstanceConfig {
    fn default() -> Self {
        InstanceConfig {
            id: String::new(),
            drain_timeout: default_drain_timeout(),
            admin_token: String::new(),
            peers: Vec::new(),
        }
    }
}

// The token stays out of debug output (and so out of logs).
impl std::fmt::Debug for InstanceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceConfig")
            .field("id", &self.id)
            .field("drain_timeout", &self.drain_timeout)
            .field(
                "admin_token",
                &(!self.admin_token.is_empty()).then_some("***"),
            )
            .field("peers", &self.peers)
            .finish()
    }
}

fn default_drain_timeout() -> u64 {
    600
}

impl InstanceConfig {
    /// What is wrong with the section, said after `instance.`.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.id.len() > 64
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "id must be at most 64 letters, digits, '-', '_' or '.', not {:?}",
                self.id
            ));
        }
        let token = &self.admin_token;
        if !token.is_empty()
            && (token.len() < MIN_ADMIN_TOKEN || !token.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(format!(
                "admin_token must be at least {MIN_ADMIN_TOKEN} visible ASCII characters (a long \
                 random string)"
            ));
        }
        Ok(())
    }

    /// The instance's id: as configured, else the host name and `port`.
    pub(crate) fn resolved_id(&self, port: u16) -> String {
        if !self.id.is_empty() {
            return self.id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "gateway".to_owned());
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .take(56)
            .collect();
        format!("{host}-{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tokens_are_checked() {
        let ok = InstanceConfig {
            id: "gw-1.eu".into(),
            admin_token: "0123456789abcdef".into(),
            ..InstanceConfig::default()
        };
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(ok.resolved_id(1), "gw-1.eu");
        assert!(!format!("{ok:?}").contains("0123456789abcdef"));
        for (id, token, needle) in [
            ("a b", "", "id must be"),
            ("a\"b", "", "id must be"),
            ("", "short", "at least 16"),
            ("", "0123456789abcdef ", "at least 16"),
        ] {
            let config = InstanceConfig {
                id: id.into(),
                admin_token: token.into(),
                ..InstanceConfig::default()
            };
            let error = config.check().unwrap_err();
            assert!(error.contains(needle), "{id:?} {token:?}: {error}");
        }
        let unnamed = InstanceConfig::default();
        assert!(unnamed.resolved_id(10888).ends_with("-10888"));
    }
}
