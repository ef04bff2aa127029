//! `account-devicetoken`: the push notification token of the device an account is on. It goes
//! into the Contact of the account's registrations, so that the SIP service can wake the app
//! when a call or message comes while it sleeps: as the Sylk apps' parameters (`pn-app`,
//! `pn-tok`, `pn-type`, `pn-device`, `pn-silent`, what SylkServer reads) or, for the domains of
//! `[accounts] rfc8599_push_domains`, as RFC 8599's (`pn-provider`, `pn-prid`, `pn-param`). A
//! registration in place is made again with the new Contact.

use protocol::DeviceToken;

use super::{Connection, Output};
use crate::metrics::ErrorKind;

type Refusal = (ErrorKind, String);

/// The longest token or id taken (FCM tokens are about 160 characters, APNs' 64).
const MAX_LEN: usize = 4096;

/// The Contact parameters for `token`: RFC 8599's when `rfc8599`, else the Sylk apps'.
pub(super) fn contact_params(token: &DeviceToken, rfc8599: bool) -> Vec<(String, String)> {
    let Some(value) = &token.token else {
        return Vec::new();
    };
    let platform = token.platform.clone().unwrap_or_default();
    let app = token.app.clone().unwrap_or_default();
    let mut params = Vec::new();
    if rfc8599 {
        // RFC 8599 section 4.1: the provider names the push service.
        let provider = match platform.as_str() {
            "ios" | "apple" | "apns" => "apns",
            "android" | "firebase" | "fcm" => "fcm",
            other => other,
        };
        params.push(("pn-provider".to_owned(), provider.to_owned()));
        params.push(("pn-prid".to_owned(), value.clone()));
        if !app.is_empty() {
            params.push(("pn-param".to_owned(), app));
        }
        return params;
    }
    params.push(("pn-app".to_owned(), app));
    params.push(("pn-tok".to_owned(), value.clone()));
    params.push(("pn-type".to_owned(), platform));
    params.push((
        "pn-device".to_owned(),
        token.device.clone().unwrap_or_default(),
    ));
    let silent = if token.silent == Some(true) { "1" } else { "0" };
    params.push(("pn-silent".to_owned(), silent.to_owned()));
    params
}

impl Connection {
    pub(super) fn account_devicetoken(&mut self, token: DeviceToken) -> Result<(), Refusal> {
        let index = self.account_index(&token.account)?;
        for (name, value) in [
            ("token", &token.token),
            ("platform", &token.platform),
            ("device", &token.device),
            ("app", &token.app),
        ] {
            if let Some(value) = value
                && (value.is_empty()
                    || value.len() > MAX_LEN
                    || !value.bytes().all(|byte| byte.is_ascii_graphic()))
            {
                return Err((
                    ErrorKind::Invalid,
                    format!("{name} must be 1 to {MAX_LEN} visible ASCII characters"),
                ));
            }
        }
        let rfc8599 = self.domains.rfc8599(&token.account.domain());
        let params = contact_params(&token, rfc8599);
        let account = &mut self.accounts[index];
        if account.contact_params == params {
            return Ok(());
        }
        account.contact_params = params;
        // A registration in place (or on its way) is made again with the new Contact.
        if let Some(registration) = account.registration.take() {
            self.deferred.push(Output::Unregister {
                handle: registration.handle,
            });
            self.start_registration(index);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(platform: &str) -> DeviceToken {
        DeviceToken {
            account: protocol::Aor::parse("alice@example.com").expect("an address"),
            token: Some("f3:Ab-9_x".into()),
            platform: Some(platform.into()),
            device: Some("d1".into()),
            app: Some("com.agprojects.sylk".into()),
            silent: Some(true),
        }
    }

    #[test]
    fn tokens_become_the_contacts_push_parameters() {
        let pairs = |params: Vec<(String, String)>| -> Vec<String> {
            params
                .into_iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect()
        };
        assert_eq!(
            pairs(contact_params(&token("android"), false)),
            [
                "pn-app=com.agprojects.sylk",
                "pn-tok=f3:Ab-9_x",
                "pn-type=android",
                "pn-device=d1",
                "pn-silent=1"
            ]
        );
        assert_eq!(
            pairs(contact_params(&token("ios"), true)),
            [
                "pn-provider=apns",
                "pn-prid=f3:Ab-9_x",
                "pn-param=com.agprojects.sylk"
            ]
        );
        let mut none = token("ios");
        none.token = None;
        assert!(contact_params(&none, false).is_empty());
    }
}
