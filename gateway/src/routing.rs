//! The dial plan for the calls a browser places: where one goes is decided here, once, before
//! its task starts, from the local domain's settings and bindings and the callee's URI.

use crate::call::Ending;
use crate::local::{BrowserBinding, Local};

/// Where a browser's call goes.
#[derive(Debug)]
pub(crate) enum Route {
    /// The local domain's echo test.
    Echo,
    /// A browser registered at the local domain: bridged inside the gateway.
    LocalBrowser(BrowserBinding),
    /// Through the SIP user agent: to the outbound proxy or the account's own domain, or to
    /// `server` (an account of the local domain calling elsewhere: there is no registrar above
    /// us to send it to). The user agent finds the local domain's phones itself.
    Sip { server: Option<String> },
    /// Not placed, with why.
    Refuse(Ending),
}

/// The route of a call from an account of `account_domain` to `uri` (`sip:user@host`).
pub(crate) fn outgoing(local: Option<&Local>, account_domain: &str, uri: &str) -> Route {
    let Some(local) = local else {
        return Route::Sip { server: None };
    };
    let host = sip::uri::uri_host(uri).unwrap_or_default();
    let user = sip::uri::uri_user(uri).unwrap_or_default();
    let to_local = local.is_local(host);
    let from_local = local.is_local(account_domain);
    if to_local && user.eq_ignore_ascii_case("echo") {
        return Route::Echo;
    }
    if !to_local && from_local && local.is_open() {
        // Open registration must never make the gateway a relay toward other domains.
        let domain = local.domain();
        return Route::Refuse(Ending::new(format!(
            "403 Forbidden (accounts of the open domain {domain} can call only {domain})"
        )));
    }
    if to_local && let Some(callee) = local.browser(user) {
        return Route::LocalBrowser(callee);
    }
    Route::Sip {
        server: (from_local && !to_local).then(|| host.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::config::{LocalConfig, LocalUser};

    fn local(open: bool) -> Local {
        Local::new(&LocalConfig {
            domain: "local.test".into(),
            open_registration: open,
            users: vec![LocalUser {
                user: "alice".into(),
                password: Some("pw".into()),
                ha1: None,
            }],
            ..LocalConfig::default()
        })
        .expect("a local domain")
    }

    fn name(route: &Route) -> String {
        match route {
            Route::Echo => "echo".into(),
            Route::LocalBrowser(binding) => format!("browser {}", binding.handle),
            Route::Sip { server } => format!("sip {server:?}"),
            Route::Refuse(ending) => format!("refuse {}", ending.text),
        }
    }

    /// Each kind of call goes one way: the echo test, a browser of the domain, SIP (to the
    /// callee's domain for a local account calling out, else the usual server), or refused.
    #[test]
    fn every_call_has_one_route() {
        let closed = local(false);
        let (events, _keep) = mpsc::unbounded_channel();
        let binding = BrowserBinding {
            events,
            handle: 7,
            owner: 1,
        };
        closed
            .register("alice", &sip::auth::Secret::Password("pw".into()), binding)
            .expect("registered");
        let route = |local: Option<&Local>, from: &str, to: &str| name(&outgoing(local, from, to));
        assert_eq!(
            route(Some(&closed), "local.test", "sip:echo@local.test"),
            "echo"
        );
        assert_eq!(
            route(Some(&closed), "example.com", "sip:ECHO@Local.Test"),
            "echo"
        );
        assert_eq!(
            route(Some(&closed), "local.test", "sip:alice@local.test"),
            "browser 7"
        );
        assert_eq!(
            route(Some(&closed), "local.test", "sip:bob@local.test"),
            "sip None"
        );
        assert_eq!(
            route(Some(&closed), "local.test", "sip:carol@example.com"),
            "sip Some(\"example.com\")"
        );
        assert_eq!(
            route(Some(&closed), "example.com", "sip:carol@example.com"),
            "sip None"
        );
        assert_eq!(
            route(None, "example.com", "sip:echo@local.test"),
            "sip None"
        );
        let open = local(true);
        assert_eq!(
            route(Some(&open), "local.test", "sip:carol@example.com"),
            "refuse 403 Forbidden (accounts of the open domain local.test can call only local.test)"
        );
        assert_eq!(
            route(Some(&open), "example.com", "sip:carol@example.com"),
            "sip None"
        );
    }
}
