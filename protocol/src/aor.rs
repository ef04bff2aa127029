//! SIP addresses of record (`user@domain`), as the protocol's `account` and `uri` fields carry them.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};

/// A SIP address of record: `user@host` with an optional `:port`.
///
/// Parsing accepts a leading `sip:` or `sips:` and strips it, as the reference server does. The
/// host keeps the client's spelling (events echo the account exactly as the client named it),
/// but comparisons ignore its case, since DNS names are case-insensitive; the user part is
/// compared exactly (RFC 3261 section 19.1.4).
#[derive(Debug, Clone, Eq)]
pub struct Aor {
    user: String,
    host: String,
    port: Option<u16>,
}

impl Aor {
    /// Parses `user@host[:port]`, optionally prefixed by `sip:` or `sips:`.
    ///
    /// The error is a short reason fit for a client-facing message.
    pub fn parse(text: &str) -> Result<Aor, &'static str> {
        let rest = text
            .strip_prefix("sip:")
            .or_else(|| text.strip_prefix("sips:"))
            .unwrap_or(text);
        let (user, hostport) = rest
            .rsplit_once('@')
            .ok_or("expected a SIP address of the form user@domain")?;
        if user.is_empty() {
            return Err("the user part is empty");
        }
        if !valid_user(user) {
            return Err("the user part has characters a SIP URI does not allow");
        }
        let (host, port) = split_port(hostport)?;
        if !valid_host(host) {
            return Err("the domain is not a valid host name or IP address");
        }
        Ok(Aor {
            user: user.to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    /// The user part, as given.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The host part, as given (brackets kept for IPv6).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, when the address names one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The domain in lower case: the form to compare with configured domains and realms.
    pub fn domain(&self) -> String {
        self.host.to_ascii_lowercase()
    }

    /// The address in one spelling for all that compare equal (the domain in lower case):
    /// what stored state is keyed by.
    pub fn key(&self) -> String {
        match self.port {
            Some(port) => format!("{}@{}:{port}", self.user, self.domain()),
            None => format!("{}@{}", self.user, self.domain()),
        }
    }
}

impl PartialEq for Aor {
    fn eq(&self, other: &Self) -> bool {
        self.user == other.user
            && self.port == other.port
            && self.host.eq_ignore_ascii_case(&other.host)
    }
}

impl Hash for Aor {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.user.hash(state);
        self.port.hash(state);
        for byte in self.host.bytes() {
            state.write_u8(byte.to_ascii_lowercase());
        }
    }
}

impl fmt::Display for Aor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Splits `host[:port]`, where an IPv6 host is in brackets.
fn split_port(hostport: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if hostport.starts_with('[') {
        match hostport.find(']') {
            Some(end) => {
                let (host, rest) = hostport.split_at(end + 1);
                match rest.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None if rest.is_empty() => (host, None),
                    None => return Err("unexpected text after the IPv6 address"),
                }
            }
            None => return Err("unclosed '[' in the domain"),
        }
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None => None,
        Some(digits) => match digits.parse::<u16>() {
            Ok(port) if port > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => Some(port),
            _ => return Err("the port is not a number from 1 to 65535"),
        },
    };
    Ok((host, port))
}

/// RFC 3261 `user`: unreserved, user-unreserved and `%HH` escapes.
fn valid_user(user: &str) -> bool {
    let bytes = user.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let escape = bytes.get(index + 1..index + 3);
            if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            index += 3;
            continue;
        }
        if !(byte.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&byte)) {
            return false;
        }
        index += 1;
    }
    true
}

/// RFC 3261 `host`: a host name, an IPv4 address or a bracketed IPv6 address.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_strips_the_scheme() {
        for text in [
            "alice@example.com",
            "sip:alice@example.com",
            "sips:alice@example.com",
        ] {
            let aor = Aor::parse(text).unwrap();
            assert_eq!(aor.user(), "alice");
            assert_eq!(aor.host(), "example.com");
            assert_eq!(aor.to_string(), "alice@example.com");
        }
        let aor = Aor::parse("+31208005163@127.0.0.1:5060").unwrap();
        assert_eq!(aor.port(), Some(5060));
        assert_eq!(aor.to_string(), "+31208005163@127.0.0.1:5060");
        let aor = Aor::parse("bob@[::1]:5080").unwrap();
        assert_eq!(aor.host(), "[::1]");
        assert_eq!(Aor::parse("a%20b@x.org").unwrap().user(), "a%20b");
    }

    /// Addresses that compare equal have one key; the user's case still counts.
    #[test]
    fn the_key_is_one_spelling_of_equal_addresses() {
        let a = Aor::parse("sip:Bob@Example.COM").unwrap();
        let b = Aor::parse("Bob@example.com").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.key(), "Bob@example.com");
        assert_eq!(a.key(), b.key());
        assert_ne!(a.key(), Aor::parse("bob@example.com").unwrap().key());
        assert_eq!(Aor::parse("x@H.org:5080").unwrap().key(), "x@h.org:5080");
    }

    #[test]
    fn rejects_what_is_not_an_aor() {
        for text in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@exa mple.com",
            "al ice@example.com",
            "alice@example.com:0",
            "alice@example.com:99999",
            "alice@example.com:5x",
            "alice@example.com;transport=tcp",
            "alice@[::1",
            "alice@[nothex]",
            "a%2@x.org",
            "alice@-bad.com",
            "alice@a..b",
            "alice@example.com>",
        ] {
            assert!(Aor::parse(text).is_err(), "{text:?} must be rejected");
        }
    }

    #[test]
    fn the_domain_is_case_insensitive_the_user_is_not() {
        let a = Aor::parse("alice@Example.COM").unwrap();
        let b = Aor::parse("alice@example.com").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.domain(), "example.com");
        assert_eq!(a.to_string(), "alice@Example.COM");
        assert_ne!(Aor::parse("Alice@example.com").unwrap(), b);
        let hash = |aor: &Aor| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            aor.hash(&mut hasher);
            hasher.finish()
        };
        assert_eq!(hash(&a), hash(&b));
    }
}
