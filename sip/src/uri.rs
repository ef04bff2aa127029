//! Pieces of SIP URIs and name-addrs as text: a leaf of the crate, for the layers that only need
//! a user, a host or the URI inside angle brackets.

/// The URI of a name-addr or addr-spec (`"Bob" <sip:bob@h;lr>;x=y` gives `sip:bob@h;lr`).
pub(crate) fn bare_uri(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// The user part of a SIP URI (`sip:carol@local.test;x` gives `carol`).
pub fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(';').next().unwrap_or(user))
}

/// The host part of a SIP URI, without port or parameters.
pub fn uri_host(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = host.split([';', '?']).next()?;
    Some(match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    })
}

/// The parameters of a SIP URI after its host (`sip:bob@h:5060;lr;x=y?h=v` gives `;lr;x=y`);
/// empty when there are none.
pub fn uri_parameters(uri: &str) -> &str {
    let rest = uri.rsplit_once('@').map_or(uri, |(_, host)| host);
    let rest = rest.split('?').next().unwrap_or(rest);
    rest.find(';').map_or("", |start| &rest[start..])
}

/// A name-addr (`"Display" <uri>`, or `<uri>` without a display name), the display name quoted
/// with its backslashes and quotes escaped (RFC 3261 section 25.1).
pub(crate) fn name_addr(display_name: Option<&str>, uri: &str) -> String {
    match display_name {
        Some(name) => format!(
            "\"{}\" <{uri}>",
            name.replace('\\', "\\\\").replace('"', "\\\"")
        ),
        None => format!("<{uri}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_come_after_the_host_and_before_headers() {
        assert_eq!(
            uri_parameters("sip:bob@10.0.0.1:5060;lr;x=y?subject=hi"),
            ";lr;x=y"
        );
        assert_eq!(uri_parameters("sip:bob;phone@h"), "");
        assert_eq!(uri_parameters("sip:h;transport=tcp"), ";transport=tcp");
        assert_eq!(uri_parameters("sip:bob@h"), "");
    }
}
