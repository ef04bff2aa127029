//! The dial plan: where a call goes is decided here, once, before its task starts. For the
//! calls a browser places ([`outgoing`]), from the local domain's settings, the callee's URI
//! and the location service (every browser and phone of the callee, rung at once); for the
//! calls phones place to a user of the local domain ([`from_phone`]), from that user's
//! bindings. A user of the domain
//! with nowhere to take the call is unavailable (480), a name it does not have is not found
//! (404), for browsers and phones calling alike (RFC 3261 section 21.4.18).

use sip::Warning;
use sip::driver::Answer;

use crate::call::{Ending, FarEnd};

use crate::local::{BrowserBinding, Local};

/// The most browsers of one user a call rings at once (the latest ones).
pub(crate) const MAX_BROWSER_BRANCHES: usize = 8;

/// Where a browser's call goes.
#[derive(Debug)]
pub(crate) enum Route {
    /// The local domain's echo test.
    Echo,
    /// A call of the relay, to a local browser or through SIP.
    Call(FarEnd),
    /// Not placed, with why.
    Refuse(Ending),
}

/// The route of a call from an account of `account_domain` on the connection `connection` to
/// `uri` (`sip:user@host`). A user calling their own name rings their other places, never the
/// connection the call comes from.
pub(crate) fn outgoing(
    local: Option<&Local>,
    connection: u64,
    account_domain: &str,
    uri: &sip::RequestUri,
) -> Route {
    let Some(local) = local else {
        return Route::Call(FarEnd::Sip { server: None });
    };
    let host = uri.host().unwrap_or_default();
    let user = uri.user().unwrap_or_default();
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
    if !to_local {
        // RFC 3263 on the callee's URI itself: its port and transport count.
        return Route::Call(FarEnd::Sip {
            server: from_local.then(|| uri.as_str().to_owned()),
        });
    }
    if let Some(matrix_user) = local.matrix_user(user) {
        return Route::Refuse(Ending::new(format!(
            "480 Temporarily Unavailable ({user} is the Matrix user {matrix_user}: calls to \
             Matrix users are taken from SIP phones; from browsers and Matrix they are not \
             supported yet)"
        )));
    }
    let mut browsers = latest_browsers(local, user);
    browsers.retain(|browser| browser.owner != connection);
    let mut phones = local.phone_bindings(user);
    if local.knows(user) {
        phones.extend(local.peer_branches(user));
    }
    if !browsers.is_empty() || !phones.is_empty() {
        return Route::Call(FarEnd::Local { browsers, phones });
    }
    let (code, reason, text) = unreachable(local, user);
    Route::Refuse(Ending::new(format!("{code} {reason} ({text})")))
}

/// The browsers of `user` a call rings: each costs a relay and its ports, so the latest few
/// (phones are bounded by the registrar's Contacts per user).
fn latest_browsers(local: &Local, user: &str) -> Vec<BrowserBinding> {
    let mut browsers = local.browsers(user);
    browsers.drain(..browsers.len().saturating_sub(MAX_BROWSER_BRANCHES));
    browsers
}

/// Why `user` of the local domain, with no browser and no phone, cannot take a call.
fn unreachable(local: &Local, user: &str) -> (u16, &'static str, String) {
    if local.knows(user) {
        (
            480,
            "Temporarily Unavailable",
            format!("{user} has no device registered"),
        )
    } else {
        (404, "Not Found", format!("no user {user}"))
    }
}

/// Where a phone's call to a user of the local domain goes.
#[derive(Debug)]
pub(crate) enum PhoneRoute {
    /// The local domain's echo test.
    Echo,
    /// Where the user takes calls, rung at once: their browsers (the latest few) and their
    /// phones (but the calling one). At least one place.
    Local {
        browsers: Vec<BrowserBinding>,
        phones: Vec<sip::Binding>,
    },
    /// Refused with this status and why.
    Refuse {
        code: u16,
        reason: &'static str,
        text: String,
    },
}

/// The route of a phone's call (from `source`) to `user` of the local domain: every browser
/// and every other phone of the user at once; otherwise 480 or 404 as for a browser calling.
/// `stored_rung`: the call is a peer's branch whose sender rang the UDP phones of the shared
/// location itself (its Request-URI said [`crate::local::STORED_PHONES_RUNG`]).
pub(crate) fn from_phone(
    local: &Local,
    user: &str,
    source: std::net::SocketAddr,
    stored_rung: bool,
) -> PhoneRoute {
    if user.eq_ignore_ascii_case("echo") {
        return PhoneRoute::Echo;
    }
    let browsers = latest_browsers(local, user);
    let mut phones = local.phone_bindings(user);
    if stored_rung && local.is_peer(source) {
        // The peer rang the UDP phones the store has; one whose latest is not there yet is
        // this gateway's to ring.
        phones.retain(|phone| {
            phone.target.transport != sip::Transport::Udp || !local.in_store(user, &phone.contact)
        });
    }
    // A phone calling its own user rings the user's other places, not itself.
    let all = phones.len();
    phones.retain(|phone| phone.target.addr != source);
    // The other gateways' places too, unless the call comes from one of them (which rang
    // the rest itself).
    if local.knows(user) && !local.is_peer(source) {
        phones.extend(local.peer_branches(user));
    }
    if !browsers.is_empty() || !phones.is_empty() {
        return PhoneRoute::Local { browsers, phones };
    }
    if phones.len() < all {
        let text = format!("{user} has no other device registered");
        return PhoneRoute::Refuse {
            code: 480,
            reason: "Temporarily Unavailable",
            text,
        };
    }
    let (code, reason, text) = unreachable(local, user);
    PhoneRoute::Refuse { code, reason, text }
}

/// The answer to an out-of-dialog request the gateway does not serve (a SUBSCRIBE to an
/// account of another domain, whose own server is its presence server): 405 (with our Allow)
/// and a Warning that says so.
pub(crate) fn request_answer(message: &sip::Message) -> Answer {
    let method = message
        .method()
        .map_or_else(|| "the request".to_owned(), ToString::to_string);
    let warning = Warning::new(
        Warning::MISCELLANEOUS,
        format!("{method} is not served here for this address"),
    );
    Answer {
        code: 405,
        reason: "Method Not Allowed".to_owned(),
        headers: vec![("Warning".to_owned(), warning.header_value())],
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::config::{LocalConfig, LocalUser};

    fn local(open: bool) -> Local {
        Local::new(location(open))
    }

    fn location(open: bool) -> std::sync::Arc<dyn sip::Location> {
        crate::local::location(&LocalConfig {
            domain: "local.test".into(),
            open_registration: open,
            users: ["alice", "bob", "carol", "dave"]
                .into_iter()
                .map(|user| LocalUser {
                    user: user.into(),
                    password: Some("pw".into()),
                    ha1: None,
                })
                .collect(),
            ..LocalConfig::default()
        })
        .expect("a local domain")
    }

    /// Gives `user` a phone registered for a minute.
    fn phone(local: &Local, user: &str) {
        local.location().set_phones(
            user,
            vec![sip::Binding {
                contact: format!("sip:{user}@127.0.0.1:5080"),
                target: sip::Target {
                    transport: sip::Transport::Udp,
                    addr: "127.0.0.1:5080".parse().expect("addr"),
                },
                expires: std::time::Instant::now() + std::time::Duration::from_secs(60),
                outbound: false,
                shared: false,
            }],
        );
    }

    fn name(route: &Route) -> String {
        match route {
            Route::Echo => "echo".into(),
            Route::Call(FarEnd::Local { browsers, phones }) => {
                let handles: Vec<u64> = browsers.iter().map(|binding| binding.handle).collect();
                format!("local browsers {handles:?} phones {}", phones.len())
            }
            Route::Call(FarEnd::Sip { server }) => format!("sip {server:?}"),
            Route::Refuse(ending) => format!("refuse {}", ending.text),
        }
    }

    /// With peers, a user of the domain is also rung on every other gateway (even with no
    /// place here), an unknown name is not; a phone's call from a peer rings this gateway's
    /// places only, so that no call goes round.
    #[test]
    fn peers_are_branches_unless_the_call_comes_from_one() {
        let peers: Vec<std::net::SocketAddr> = vec![
            "10.0.0.12:5060".parse().unwrap(),
            "10.0.0.13:5060".parse().unwrap(),
        ];
        let local = local(false).with_peers(&peers);
        let to = |uri: &str| sip::RequestUri::parse(uri).expect("a SIP URI");
        let Route::Call(FarEnd::Local { browsers, phones }) =
            outgoing(Some(&local), 99, "local.test", &to("sip:bob@local.test"))
        else {
            panic!("bob is rung on the peers");
        };
        assert!(browsers.is_empty());
        let contacts: Vec<&str> = phones.iter().map(|phone| phone.contact.as_str()).collect();
        assert_eq!(
            contacts,
            ["sip:bob@10.0.0.12:5060", "sip:bob@10.0.0.13:5060"]
        );
        assert_eq!(phones[1].target.addr, peers[1]);
        assert!(
            name(&outgoing(
                Some(&local),
                99,
                "local.test",
                &to("sip:nobody@local.test")
            ))
            .starts_with("refuse 404")
        );
        phone(&local, "carol");
        let phone_source: std::net::SocketAddr = "127.0.0.1:9999".parse().unwrap();
        let PhoneRoute::Local { phones, .. } = from_phone(&local, "carol", phone_source, false)
        else {
            panic!("carol is rung");
        };
        assert_eq!(phones.len(), 3, "her phone and the two peers");
        let from_peer: std::net::SocketAddr = "10.0.0.12:5060".parse().unwrap();
        let PhoneRoute::Local { phones, .. } = from_phone(&local, "carol", from_peer, false) else {
            panic!("carol is rung");
        };
        assert_eq!(phones.len(), 1, "her phone only");
        assert!(matches!(
            from_phone(&local, "dave", from_peer, false),
            PhoneRoute::Refuse { code: 480, .. }
        ));
        // The peer says it rang the stored UDP phones, but this gateway shares none: it rings
        // its own.
        let PhoneRoute::Local { phones, .. } = from_phone(&local, "carol", from_peer, true) else {
            panic!("carol is rung");
        };
        assert_eq!(phones.len(), 1);
        // Sharing them, it leaves to the peer her phone once the store has it.
        let shared = std::sync::Arc::new(crate::local::SharedLocation::new(location(false)));
        let sharing = Local::new(shared.clone())
            .with_peers(&peers)
            .with_shared(shared.clone());
        phone(&sharing, "carol");
        let PhoneRoute::Local { phones, .. } = from_phone(&sharing, "carol", from_peer, true)
        else {
            panic!("carol's phone is not in the store yet: rung here");
        };
        assert_eq!(phones.len(), 1);
        shared.confirm_all();
        assert!(matches!(
            from_phone(&sharing, "carol", from_peer, true),
            PhoneRoute::Refuse { code: 480, .. }
        ));
        // Only a peer's word counts.
        let PhoneRoute::Local { phones, .. } = from_phone(&local, "carol", phone_source, true)
        else {
            panic!("carol is rung");
        };
        assert_eq!(phones.len(), 3);
    }

    /// Each kind of call goes one way: the echo test, every browser and phone of a user of the
    /// domain at once, SIP (to the callee's domain for a local account calling out, else the usual
    /// server), or refused.
    #[test]
    fn every_call_has_one_route() {
        let closed = local(false);
        let (events, _keep) = mpsc::unbounded_channel();
        let binding = BrowserBinding {
            calls: events,
            handle: 7,
            owner: 1,
        };
        closed
            .register("alice", &sip::Secret::Password("pw".into()), binding)
            .expect("registered");
        // The calls come from connection 99.
        let route = |local: Option<&Local>, from: &str, to: &str| {
            let to = sip::RequestUri::parse(to).expect("a SIP URI");
            name(&outgoing(local, 99, from, &to))
        };
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
            "local browsers [7] phones 0"
        );
        phone(&closed, "alice");
        assert_eq!(
            route(Some(&closed), "local.test", "sip:alice@local.test"),
            "local browsers [7] phones 1"
        );
        let (events, _keep) = mpsc::unbounded_channel();
        let second = BrowserBinding {
            calls: events,
            handle: 8,
            owner: 2,
        };
        closed
            .register("alice", &sip::Secret::Password("pw".into()), second)
            .expect("registered");
        assert_eq!(
            route(Some(&closed), "local.test", "sip:alice@local.test"),
            "local browsers [7, 8] phones 1"
        );
        phone(&closed, "bob");
        assert_eq!(
            route(Some(&closed), "example.com", "sip:bob@local.test"),
            "local browsers [] phones 1"
        );
        let mut keep = Vec::new();
        for handle in 100..110 {
            let (events, receiver) = mpsc::unbounded_channel();
            keep.push(receiver);
            let binding = BrowserBinding {
                calls: events,
                handle,
                owner: handle,
            };
            closed
                .register("dave", &sip::Secret::Password("pw".into()), binding)
                .expect("registered");
        }
        assert_eq!(
            route(Some(&closed), "local.test", "sip:dave@local.test"),
            "local browsers [102, 103, 104, 105, 106, 107, 108, 109] phones 0"
        );
        // Calling one's own name from a connection where one is signed in rings the others.
        let (events, _own) = mpsc::unbounded_channel();
        let own = BrowserBinding {
            calls: events,
            handle: 5,
            owner: 99,
        };
        closed
            .register("bob", &sip::Secret::Password("pw".into()), own)
            .expect("registered");
        assert_eq!(
            route(Some(&closed), "local.test", "sip:bob@local.test"),
            "local browsers [] phones 1"
        );
        assert_eq!(
            route(Some(&closed), "local.test", "sip:carol@local.test"),
            "refuse 480 Temporarily Unavailable (carol has no device registered)"
        );
        assert_eq!(
            route(Some(&closed), "local.test", "sip:zed@local.test"),
            "refuse 404 Not Found (no user zed)"
        );
        assert_eq!(
            route(Some(&closed), "local.test", "sip:carol@example.com"),
            "sip Some(\"sip:carol@example.com\")"
        );
        // The callee's port and transport are the server's (RFC 3263).
        assert_eq!(
            route(
                Some(&closed),
                "local.test",
                "sip:carol@127.0.0.1:5070;transport=tcp"
            ),
            "sip Some(\"sip:carol@127.0.0.1:5070;transport=tcp\")"
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

    /// A name of the domain that is a Matrix user is refused to browsers saying why (only
    /// phones' calls go to Matrix).
    #[test]
    fn a_matrix_user_is_not_called_from_the_web() {
        #[derive(Debug)]
        struct Carol;
        impl crate::local::MatrixUsers for Carol {
            fn matrix_user(&self, user: &str) -> Option<String> {
                (user == "carol").then(|| "@carol:hs.test".to_owned())
            }
        }
        let domain = local(false);
        domain.set_matrix_users(std::sync::Arc::new(Carol));
        let to = sip::RequestUri::parse("sip:carol@local.test").expect("a SIP URI");
        let refused = name(&outgoing(Some(&domain), 1, "local.test", &to));
        assert!(
            refused.starts_with("refuse 480") && refused.contains("@carol:hs.test"),
            "{refused}"
        );
        let to = sip::RequestUri::parse("sip:zed@local.test").expect("a SIP URI");
        assert!(name(&outgoing(Some(&domain), 1, "local.test", &to)).contains("404"));
    }

    /// A phone's call reaches the echo, the callee's browsers and other phones, or is refused
    /// with the code that says why.
    #[test]
    fn every_phone_call_has_one_route() {
        let domain = local(false);
        let (events, _keep) = mpsc::unbounded_channel();
        let binding = BrowserBinding {
            calls: events,
            handle: 3,
            owner: 1,
        };
        domain
            .register("alice", &sip::Secret::Password("pw".into()), binding)
            .expect("registered");
        let caller: std::net::SocketAddr = "127.0.0.1:6000".parse().expect("addr");
        let route_from = |user: &str, source| match from_phone(&domain, user, source, false) {
            PhoneRoute::Echo => "echo".to_owned(),
            PhoneRoute::Local { browsers, phones } => {
                let handles: Vec<u64> = browsers.iter().map(|binding| binding.handle).collect();
                format!("browsers {handles:?} phones {}", phones.len())
            }
            PhoneRoute::Refuse { code, text, .. } => format!("{code} {text}"),
        };
        let route = |user: &str| route_from(user, caller);
        assert_eq!(route("Echo"), "echo");
        assert_eq!(route("alice"), "browsers [3] phones 0");
        phone(&domain, "alice");
        assert_eq!(route("alice"), "browsers [3] phones 1");
        assert_eq!(route("bob"), "480 bob has no device registered");
        phone(&domain, "bob");
        assert_eq!(route("bob"), "browsers [] phones 1");
        // bob's own phone calling bob rings nothing of it: there is nothing else.
        let own = "127.0.0.1:5080".parse().expect("addr");
        assert_eq!(
            route_from("bob", own),
            "480 bob has no other device registered"
        );
        assert_eq!(route("nobody"), "404 no user nobody");
    }
}
