//! `[matrix]`: the gateway as a Matrix application service (a bridge of a homeserver), off by
//! default.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::HttpUrl;

/// `[matrix]`: the application service. The homeserver is told of it by a registration file
/// (`sylkrtc-gateway --matrix-registration` prints one from this section).
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatrixConfig {
    /// Whether the gateway serves the application service routes.
    #[serde(default)]
    pub enabled: bool,
    /// The homeserver's client-server API (`http://host:port`).
    #[serde(default = "default_homeserver_url")]
    pub homeserver_url: String,
    /// The homeserver's name: the part of user ids after the colon.
    #[serde(default)]
    pub server_name: String,
    /// The token the gateway acts with (the registration's `as_token`).
    #[serde(default)]
    pub as_token: String,
    /// The token the homeserver calls the gateway with (the registration's `hs_token`).
    #[serde(default)]
    pub hs_token: String,
    /// The ghost users' localpart prefix: the user namespace is `@{prefix}.*:{server_name}`.
    #[serde(default = "default_user_prefix")]
    pub user_prefix: String,
    /// The gateway's application service URL as the homeserver reaches it (the
    /// registration's `url`). Empty: `http://` and the HTTP listener's address.
    #[serde(default)]
    pub url: String,
    /// The local domain's users who are Matrix users (`carol = "@carol:example.com"`): a call
    /// from SIP to `carol@LOCAL-DOMAIN` rings the Matrix user through a direct room with the
    /// caller's ghost. A Matrix user of `server_name` is also reached at the address their own
    /// calls come from (`=40carol=3aexample.com@LOCAL-DOMAIN`) without being named here.
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// Whether a Matrix user's call is answered on Matrix as soon as the SIP side sends early
    /// media (183 with SDP), so that announcements and ringing tones are heard; the Matrix
    /// side then shows the call as answered while the phone still rings. Off: early media is
    /// not heard (Matrix has no early media).
    #[serde(default)]
    pub answer_on_183: bool,
}

impl std::fmt::Debug for MatrixConfig {
    // The tokens are secrets: never in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixConfig")
            .field("enabled", &self.enabled)
            .field("homeserver_url", &self.homeserver_url)
            .field("server_name", &self.server_name)
            .field("user_prefix", &self.user_prefix)
            .field("url", &self.url)
            .field("users", &self.users)
            .field("answer_on_183", &self.answer_on_183)
            .finish_non_exhaustive()
    }
}

impl Default for MatrixConfig {
    fn default() -> Self {
        MatrixConfig {
            enabled: false,
            homeserver_url: default_homeserver_url(),
            server_name: String::new(),
            as_token: String::new(),
            hs_token: String::new(),
            user_prefix: default_user_prefix(),
            url: String::new(),
            users: BTreeMap::new(),
            answer_on_183: false,
        }
    }
}

/// Tokens shorter than this are refused: they are all that protects the bridge's routes and
/// its power over its users.
const MIN_TOKEN: usize = 16;

impl MatrixConfig {
    /// What is wrong with an enabled section, if anything.
    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        HttpUrl::parse(&self.homeserver_url).map_err(|error| format!("homeserver_url: {error}"))?;
        if self.server_name.is_empty() || self.server_name.contains([':', '/', ' ']) {
            return Err(format!(
                "server_name must be the homeserver's name (example.com), not {:?}",
                self.server_name
            ));
        }
        for (name, token) in [("as_token", &self.as_token), ("hs_token", &self.hs_token)] {
            if token.len() < MIN_TOKEN || !token.bytes().all(|byte| byte.is_ascii_graphic()) {
                return Err(format!(
                    "{name} must be at least {MIN_TOKEN} visible characters (a long random string)"
                ));
            }
        }
        if self.as_token == self.hs_token {
            return Err("as_token and hs_token must differ".into());
        }
        let prefix_ok = !self.user_prefix.is_empty()
            && self.user_prefix.bytes().all(|byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"._-".contains(&byte)
            });
        if !prefix_ok {
            return Err(format!(
                "user_prefix must be lower-case letters, digits, '.', '_' or '-', not {:?}",
                self.user_prefix
            ));
        }
        if !self.url.is_empty() {
            HttpUrl::parse(&self.url).map_err(|error| format!("url: {error}"))?;
        }
        for (user, matrix_user) in &self.users {
            let user_ok = !user.is_empty()
                && user
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"._-+=~!$&'*,;?/".contains(&byte));
            if !user_ok {
                return Err(format!("users: {user:?} is not a SIP user name"));
            }
            if !is_user_id(matrix_user) {
                return Err(format!(
                    "users: {user} = {matrix_user:?} is not a Matrix user id (@name:server)"
                ));
            }
            if matrix_user.starts_with(&format!("@{}", self.user_prefix))
                && matrix_user.ends_with(&format!(":{}", self.server_name))
            {
                return Err(format!(
                    "users: {matrix_user} is in the bridge's own namespace (a ghost)"
                ));
            }
        }
        Ok(())
    }
}

/// Whether `text` is a Matrix user id: `@localpart:server`, the localpart of the characters
/// the specification allows (historical ones too, but no `:`), the server a host name, an
/// IPv4 address or a bracketed IPv6 one with an optional port.
pub(crate) fn is_user_id(text: &str) -> bool {
    let Some((localpart, server)) = text.strip_prefix('@').and_then(|rest| rest.split_once(':'))
    else {
        return false;
    };
    let localpart_ok = !localpart.is_empty()
        && localpart
            .bytes()
            .all(|byte| (0x21..=0x7e).contains(&byte) && byte != b':');
    let server_ok = !server.is_empty()
        && text.len() <= 255
        && server
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte));
    localpart_ok && server_ok
}

fn default_homeserver_url() -> String {
    "http://127.0.0.1:8008".to_owned()
}

fn default_user_prefix() -> String {
    "sip_".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> MatrixConfig {
        MatrixConfig {
            enabled: true,
            server_name: "hs.test".into(),
            as_token: "as-0123456789abcdef".into(),
            hs_token: "hs-0123456789abcdef".into(),
            ..MatrixConfig::default()
        }
    }

    #[test]
    fn named_matrix_users_are_checked() {
        let mut config = enabled();
        config
            .users
            .insert("carol".into(), "@carol:other.test".into());
        assert_eq!(config.check(), Ok(()));
        for (user, id) in [
            ("carol", "carol:other.test"),
            ("carol", "@carol"),
            ("carol", "@:other.test"),
            ("carol", "@sip_bob=40example.com:hs.test"),
            ("ca rol", "@carol:other.test"),
            ("", "@carol:other.test"),
        ] {
            let mut config = enabled();
            config.users.insert(user.into(), id.into());
            assert!(config.check().is_err(), "{user} = {id}");
        }
    }

    #[test]
    fn user_ids_are_told_apart() {
        assert!(is_user_id("@alice:hs.test"));
        assert!(is_user_id("@alice:[::1]:8448"));
        assert!(is_user_id("@a.b_c=d/e+f:hs.test:8448"));
        assert!(!is_user_id("alice:hs.test"));
        assert!(!is_user_id("@alice"));
        assert!(!is_user_id("@ali ce:hs.test"));
        assert!(!is_user_id("@alice:hs test"));
    }
}
