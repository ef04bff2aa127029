//! `account-devicetoken`: the push notification token of the device an account is on. It goes
//! into the Contact of the account's registrations, so that the SIP service can wake the app
//! when a call or message comes while it sleeps: as the Sylk apps' parameters (`pn-app`,
//! `pn-tok`, `pn-type`, `pn-device`, `pn-silent`, what SylkServer reads) or, for the domains of
//! `[accounts] rfc8599_push_domains`, as RFC 8599's (`pn-provider`, `pn-prid`, `pn-param`). A
//! registration in place is made again with the new Contact. The local domain's accounts'
//! tokens are kept in the store instead, for the gateway's own pushes (`crate::push`).

use protocol::DeviceToken;

use super::{Connection, Output, StoreQuery};
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
    /// `account-devicetoken`. For an account of another domain the token goes into the
    /// Contact of its registrations (that domain's server wakes the app). For an account of
    /// the local domain, whose server the gateway is, it is kept in the store (with the ack
    /// once it is durable), for the pushes of calls and messages that come while no
    /// connection of the account is live; only for an account registered here, so nobody
    /// has another user's calls announced on their device.
    pub(super) fn account_devicetoken(
        &mut self,
        transaction: &str,
        token: DeviceToken,
    ) -> Result<(), Refusal> {
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
        if self.domains.is_local(&token.account.domain()) {
            self.authenticated(&token.account)?;
            let device = token.device.clone().unwrap_or_default();
            let app = token.app.clone().unwrap_or_default();
            let kept = match &token.token {
                Some(value) => {
                    let Some(platform) = token.platform.clone() else {
                        return Err((
                            ErrorKind::Invalid,
                            "platform is needed with a token (apple, firebase, ...)".to_owned(),
                        ));
                    };
                    Some(store::PushToken {
                        device: device.clone(),
                        app: app.clone(),
                        platform,
                        token: value.clone(),
                        silent: token.silent.unwrap_or(false),
                    })
                }
                None => None,
            };
            self.ask_store(
                transaction,
                StoreQuery::PushToken {
                    account: token.account,
                    device,
                    app,
                    token: kept,
                },
            );
            return Ok(());
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

    /// A local account's token goes to the store (the ack waits for it), only once the
    /// account is registered here; `null` removes it.
    #[test]
    fn local_tokens_are_kept_for_registered_accounts_only() {
        use std::sync::Arc;

        use protocol::Version;
        use serde_json::json;

        use crate::sylkrtc::connection::{Outcome, SipDomains};

        let domains = SipDomains::new(&["*".to_owned()]).with_local("local.test");
        let mut connection = Connection::new(Version::V2, Arc::new(domains));
        let send = |connection: &mut Connection, request: serde_json::Value| {
            let handled = connection.handle_text(&request.to_string());
            let out: Vec<Output> = std::iter::from_fn(|| connection.poll_output()).collect();
            (handled.outcome, out)
        };
        let token = |value: serde_json::Value| {
            json!({"sylkrtc": "account-devicetoken", "transaction": "t", "account": "alice@local.test",
                "token": value, "platform": "apple", "device": "d1", "app": "com.example.app"})
        };
        send(
            &mut connection,
            json!({"sylkrtc": "account-add", "transaction": "a", "account": "alice@local.test",
                "password": "884edfee38ed471b8a15006700139485"}),
        );
        let (outcome, _) = send(&mut connection, token(json!("tok")));
        assert!(
            matches!(&outcome, Outcome::Error { text, .. } if text == "Account not authenticated"),
            "{outcome:?}"
        );
        send(
            &mut connection,
            json!({"sylkrtc": "account-register", "transaction": "r", "account": "alice@local.test"}),
        );
        connection.handle_registration(1, sip::RegistrationEvent::Registered { expires: 600 });
        while connection.poll_output().is_some() {}
        let (outcome, out) = send(&mut connection, token(json!("tok")));
        assert_eq!(outcome, Outcome::Deferred);
        let stored = out.iter().any(|output| {
            matches!(output, Output::Store { query: StoreQuery::PushToken { token: Some(token), device, .. }, .. }
                if token.token == "tok" && token.platform == "apple" && device == "d1")
        });
        assert!(stored, "{out:?}");
        let (_, out) = send(&mut connection, token(serde_json::Value::Null));
        let removed = out.iter().any(|output| {
            matches!(output, Output::Store { query: StoreQuery::PushToken { token: None, app, .. }, .. }
                if app == "com.example.app")
        });
        assert!(removed, "{out:?}");
    }
}
