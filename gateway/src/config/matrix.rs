//! `[matrix]`: the gateway as a Matrix application service (a bridge of a homeserver), off by
//! default.

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
        Ok(())
    }
}

fn default_homeserver_url() -> String {
    "http://127.0.0.1:8008".to_owned()
}

fn default_user_prefix() -> String {
    "sip_".to_owned()
}
