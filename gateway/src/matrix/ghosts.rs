//! The ghost users that stand for SIP addresses in Matrix, pure: `bob@example.com` is
//! `@sip_bob=40example.com:server` (with the default prefix `sip_`). The localpart escapes the
//! address as the Matrix specification's appendix on mapping other character sets suggests,
//! so that every address has exactly one ghost and back: lower-case letters, digits, `.` and
//! `-` stay; `_` is `__`; an upper-case letter is `_` and the letter in lower case; every other
//! byte (of the UTF-8 text) is `=` and its two lower-case hex digits (`@` is `=40`, `:` `=3a`).

use protocol::Aor;

/// The localpart of the ghost of `address`.
pub(crate) fn localpart(prefix: &str, address: &Aor) -> String {
    format!("{prefix}{}", escape(&address.to_string()))
}

/// `text` escaped as ghosts' localparts are (also what a Matrix user's id becomes as a SIP
/// user part, where only these characters are safe).
pub(crate) fn escape(text: &str) -> String {
    let mut localpart = String::new();
    for byte in text.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' => localpart.push(char::from(byte)),
            b'_' => localpart.push_str("__"),
            b'A'..=b'Z' => {
                localpart.push('_');
                localpart.push(char::from(byte.to_ascii_lowercase()));
            }
            other => localpart.push_str(&format!("={other:02x}")),
        }
    }
    localpart
}

/// The SIP address a ghost's user id stands for: `None` unless it is one of ours (the prefix,
/// our server, a well-formed escape of a SIP address).
pub(crate) fn address(prefix: &str, server_name: &str, user_id: &str) -> Option<Aor> {
    let rest = user_id.strip_prefix('@')?;
    let (localpart, server) = rest.split_once(':')?;
    if server != server_name {
        return None;
    }
    let text = unescape(localpart.strip_prefix(prefix)?)?;
    let address = Aor::parse(&text).ok()?;
    // The address must come back to the same ghost (Aor keeps the text as given).
    (localpart == self::localpart(prefix, &address)).then_some(address)
}

/// The text `escaped` stands for, when it is [`escape`]'s one spelling of it.
pub(crate) fn unescape(escaped: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut chars = escaped.bytes();
    while let Some(byte) = chars.next() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' => bytes.push(byte),
            b'_' => match chars.next()? {
                b'_' => bytes.push(b'_'),
                letter @ b'a'..=b'z' => bytes.push(letter.to_ascii_uppercase()),
                _ => return None,
            },
            b'=' => {
                let high = char::from(chars.next()?).to_digit(16)?;
                let low = char::from(chars.next()?).to_digit(16)?;
                let value = u8::try_from(high * 16 + low).ok()?;
                // Only what `escape` escapes this way: one spelling per text.
                if value.is_ascii_lowercase()
                    || value.is_ascii_uppercase()
                    || value.is_ascii_digit()
                    || b"._-".contains(&value)
                {
                    return None;
                }
                bytes.push(value);
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ghosts_map_both_ways() {
        let bob = Aor::parse("bob@example.com").unwrap();
        assert_eq!(localpart("sip_", &bob), "sip_bob=40example.com");
        assert_eq!(
            address("sip_", "hs.test", "@sip_bob=40example.com:hs.test"),
            Some(bob)
        );
        for text in [
            "bob@example.com",
            "Bob_Smith@Example.COM:5070",
            "+1555@pstn.test",
        ] {
            let sip = Aor::parse(text).unwrap();
            let id = format!("@{}:hs.test", localpart("sip_", &sip));
            let back = address("sip_", "hs.test", &id).map(|sip| sip.to_string());
            assert_eq!(back.as_deref(), Some(text), "{id}");
        }
        assert_eq!(
            localpart("sip_", &Aor::parse("Bob_Smith@Example.COM:5070").unwrap()),
            "sip__bob___smith=40_example._c_o_m=3a5070"
        );
    }

    #[test]
    fn others_are_not_ghosts() {
        for id in [
            "@alice:hs.test",
            "@sip_bob=40example.com:other.test",
            "sip_bob=40example.com:hs.test",
            "@sip_bob:hs.test",
            "@sip_bob=4:hs.test",
            "@sip_bob=zz:hs.test",
            "@sip_bob_=40example.com:hs.test",
            "@sip_b=6fb=40example.com:hs.test",
            "@sip_bob=40example.com=40x:hs.test",
            "@sip_:hs.test",
        ] {
            assert_eq!(address("sip_", "hs.test", id), None, "{id}");
        }
    }
}
