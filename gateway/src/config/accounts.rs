//! `[accounts]`: what `account-add` accepts, and what the accounts' domains offer.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[accounts]`: what `account-add` accepts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AccountsConfig {
    /// The SIP domains accounts may belong to; `*` allows any domain.
    #[serde(default = "default_sip_domains")]
    pub sip_domains: Vec<String>,
    /// The domains whose registrars take RFC 8599's push parameters (`pn-provider`,
    /// `pn-prid`, `pn-param`) in a REGISTER's Contact; the others get the Sylk apps' (`pn-app`,
    /// `pn-tok`, `pn-type`, `pn-device`, `pn-silent`).
    #[serde(default)]
    pub rfc8599_push_domains: Vec<String>,
    /// The domains whose servers keep each user's presence list (a resource list, RFC 4662):
    /// domain -> the list's address, with `{user}` for the account's user part. Accounts of
    /// these domains watch their contacts through one list subscription.
    #[serde(default)]
    pub presence_lists: BTreeMap<String, ListAddress>,
}

/// The address of a user's presence list on their domain's resource list server, written with
/// `{user}` for the account's user part: `{user}-buddies@example.com` (`sip:` optional).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ListAddress(String);

impl TryFrom<String> for ListAddress {
    type Error = String;

    fn try_from(text: String) -> std::result::Result<Self, String> {
        let bare = text.strip_prefix("sip:").unwrap_or(&text).trim().to_owned();
        if bare.matches("{user}").count() != 1 {
            return Err(format!(
                "a presence list address needs {{user}} once (\"{{user}}-buddies@example.com\"), not {text:?}"
            ));
        }
        let address = ListAddress(bare);
        match address.for_user("user") {
            Some(_) => Ok(address),
            None => Err(format!("{text:?} is not a SIP address (user@domain)")),
        }
    }
}

impl ListAddress {
    /// The list of `user`.
    pub fn for_user(&self, user: &str) -> Option<protocol::Aor> {
        protocol::Aor::parse(&self.0.replace("{user}", user)).ok()
    }
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            rfc8599_push_domains: Vec::new(),
            sip_domains: default_sip_domains(),
            presence_lists: BTreeMap::new(),
        }
    }
}

fn default_sip_domains() -> Vec<String> {
    vec!["*".to_owned()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_address_names_the_user_once() {
        let accounts: AccountsConfig = toml::from_str(
            "presence_lists = { \"Example.com\" = \"sip:{user}-buddies@example.com\" }",
        )
        .unwrap();
        let address = &accounts.presence_lists["Example.com"];
        assert_eq!(
            address.for_user("alice").unwrap().to_string(),
            "alice-buddies@example.com"
        );
        for bad in [
            "buddies@example.com",
            "{user}{user}@example.com",
            "{user}-buddies",
            "{user}@",
        ] {
            let text = format!("presence_lists = {{ \"example.com\" = \"{bad}\" }}");
            let error = toml::from_str::<AccountsConfig>(&text).unwrap_err();
            assert!(error.to_string().contains(bad), "{bad}: {error}");
        }
    }
}
