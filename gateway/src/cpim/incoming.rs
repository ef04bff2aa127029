//! What a SIP MESSAGE for an account carries: a message (CPIM unwrapped, or a plain body), or
//! an IMDN (RFC 5438) about a message the account sent. Pure: the handler stores and delivers
//! what this finds.

use std::collections::HashMap;

/// The IMDN namespace of CPIM headers (RFC 5438 section 4).
const IMDN_NS: &str = "urn:ietf:params:imdn";

/// What a MESSAGE brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A message for the account.
    Message(Received),
    /// A notification about a message the account sent: its id, new state and the time the
    /// recipient gave.
    Notification {
        message_id: String,
        state: store::State,
        datetime: Option<String>,
    },
    /// An is-composing indication (RFC 3994): nothing to store or deliver.
    Composing,
}

/// A message for the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received {
    /// Its id: the CPIM `imdn.Message-ID`, else one made from the SIP Call-ID and CSeq.
    pub(crate) message_id: String,
    /// RFC 3339: the CPIM `DateTime`, else the time it arrived.
    pub(crate) timestamp: String,
    pub(crate) content_type: String,
    pub(crate) content: String,
    /// The notifications asked for.
    pub(crate) disposition: Vec<String>,
    /// The CPIM `From` URI (without `sip:`), when there was one.
    pub(crate) cpim_from: Option<String>,
}

/// Why a MESSAGE is refused: the SIP status and reason.
pub(crate) type Refusal = (u16, &'static str);

/// Reads a MESSAGE's body of `content_type`; `fallback_id` and `now` (RFC 3339) stand in for
/// what a plain body lacks.
pub(crate) fn read(
    content_type: &str,
    body: &[u8],
    fallback_id: &str,
    now: &str,
) -> Result<Incoming, Refusal> {
    let essence = essence(content_type);
    let text = std::str::from_utf8(body).map_err(|_| (415, "Unsupported Media Type"))?;
    match essence.as_str() {
        "message/cpim" => read_cpim(text, fallback_id, now),
        "message/imdn+xml" => read_imdn(text),
        "application/im-iscomposing+xml" => Ok(Incoming::Composing),
        "" => Err((400, "Bad Request")),
        _ => Ok(Incoming::Message(Received {
            message_id: fallback_id.to_owned(),
            timestamp: now.to_owned(),
            content_type: content_type.trim().to_owned(),
            content: text.to_owned(),
            disposition: Vec::new(),
            cpim_from: None,
        })),
    }
}

/// A MIME type without its parameters, in lower case.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Splits headers from what follows the first empty line (CRLF or LF line ends).
fn split_block(text: &str) -> Option<(&str, &str)> {
    let crlf = text.find("\r\n\r\n").map(|at| (at, 4));
    let lf = text.find("\n\n").map(|at| (at, 2));
    let (at, skip) = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some((&text[..at], &text[at + skip..]))
}

/// `Name: value` lines.
fn headers(block: &str) -> impl Iterator<Item = (&str, &str)> {
    block.lines().filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        Some((name.trim(), value.trim()))
    })
}

/// The URI in a CPIM address (`"Name" <sip:bob@example.com>`), without `sip:`.
fn address(value: &str) -> Option<String> {
    let inner = value
        .rfind('<')
        .and_then(|open| value[open + 1..].split('>').next())
        .unwrap_or(value)
        .trim();
    let bare = inner
        .strip_prefix("sip:")
        .or_else(|| inner.strip_prefix("sips:"))
        .unwrap_or(inner);
    (!bare.is_empty()).then(|| bare.to_owned())
}

fn read_cpim(text: &str, fallback_id: &str, now: &str) -> Result<Incoming, Refusal> {
    const MALFORMED: Refusal = (400, "Bad Request (malformed CPIM)");
    let (cpim, rest) = split_block(text).ok_or(MALFORMED)?;
    let (mime, content) = split_block(rest).unwrap_or((rest, ""));
    // The namespaces first: `NS: prefix <urn>` names the prefix of the IMDN headers.
    let mut namespaces = HashMap::new();
    for (name, value) in headers(cpim) {
        if name.eq_ignore_ascii_case("NS") {
            let (prefix, urn) = match value.split_once('<') {
                Some((prefix, urn)) => (prefix.trim(), urn.trim_end_matches('>').trim()),
                None => ("", value),
            };
            namespaces.insert(prefix.to_ascii_lowercase(), urn.to_owned());
        }
    }
    let imdn = |name: &str, field: &str| {
        name.split_once('.').is_some_and(|(prefix, local)| {
            local.eq_ignore_ascii_case(field)
                && namespaces
                    .get(&prefix.to_ascii_lowercase())
                    .map(String::as_str)
                    == Some(IMDN_NS)
        })
    };
    let mut received = Received {
        message_id: fallback_id.to_owned(),
        timestamp: now.to_owned(),
        content_type: String::new(),
        content: content.to_owned(),
        disposition: Vec::new(),
        cpim_from: None,
    };
    for (name, value) in headers(cpim) {
        if name.eq_ignore_ascii_case("From") {
            received.cpim_from = Some(address(value).ok_or(MALFORMED)?);
        } else if name.eq_ignore_ascii_case("DateTime") {
            if super::parse_timestamp(value).is_none() {
                return Err(MALFORMED);
            }
            received.timestamp = value.to_owned();
        } else if imdn(name, "Message-ID") {
            if !super::valid_message_id(value) {
                return Err(MALFORMED);
            }
            received.message_id = value.to_owned();
        } else if imdn(name, "Disposition-Notification") {
            received.disposition = value
                .split(',')
                .map(|item| item.trim().to_ascii_lowercase())
                .filter(|item| !item.is_empty())
                .collect();
        }
    }
    for (name, value) in headers(mime) {
        if name.eq_ignore_ascii_case("Content-Type") {
            received.content_type = value.to_owned();
        }
    }
    if received.content_type.is_empty() {
        return Err((400, "Bad Request (CPIM without a Content-Type)"));
    }
    // An IMDN wrapped in CPIM (as RFC 5438 sends them) is a notification.
    if essence(&received.content_type) == "message/imdn+xml" {
        return read_imdn(&received.content);
    }
    if essence(&received.content_type) == "application/im-iscomposing+xml" {
        return Ok(Incoming::Composing);
    }
    Ok(Incoming::Message(received))
}

/// The text of the first `<name>...</name>` element (any namespace prefix).
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = xml;
    loop {
        let open = rest.find('<')?;
        rest = &rest[open + 1..];
        let tag_end = rest.find('>')?;
        let tag = &rest[..tag_end];
        let local = tag.split([' ', '/']).next()?.rsplit(':').next()?;
        if local == name && !tag.starts_with('/') {
            let body = &rest[tag_end + 1..];
            let close = body.find("</")?;
            return Some(body[..close].trim());
        }
        rest = &rest[tag_end + 1..];
    }
}

/// An IMDN document (RFC 5438 section 7): the message it is about and what happened to it.
fn read_imdn(xml: &str) -> Result<Incoming, Refusal> {
    const MALFORMED: Refusal = (400, "Bad Request (malformed IMDN)");
    let message_id = element(xml, "message-id").ok_or(MALFORMED)?;
    if !super::valid_message_id(message_id) {
        return Err(MALFORMED);
    }
    // The status element's one child names the state: <status><delivered/></status>.
    let status_at = xml.find("status>").ok_or(MALFORMED)?;
    let after = &xml[status_at + "status>".len()..];
    let child = after.trim_start().strip_prefix('<').ok_or(MALFORMED)?;
    let name = child
        .split(['/', '>', ' '])
        .next()
        .and_then(|name| name.rsplit(':').next())
        .ok_or(MALFORMED)?;
    let state = match name {
        "delivered" => store::State::Delivered,
        "displayed" => store::State::Displayed,
        "processed" => store::State::Processed,
        "stored" => store::State::Stored,
        "forbidden" => store::State::Forbidden,
        "failed" => store::State::Failed,
        "error" => store::State::Error,
        _ => return Err(MALFORMED),
    };
    Ok(Incoming::Notification {
        message_id: message_id.to_owned(),
        state,
        datetime: element(xml, "datetime").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-12-04T10:00:00.000Z";

    #[test]
    fn a_cpim_message_is_unwrapped() {
        let body = "From: \"Bob\" <sip:bob@example.com>\r\nTo: <sip:alice@example.com>\r\n\
            DateTime: 2026-12-04T09:59:00.000Z\r\nNS: im <urn:ietf:params:imdn>\r\n\
            im.Message-ID: b-1\r\nim.Disposition-Notification: positive-delivery, Display\r\n\r\n\
            Content-Type: text/plain;charset=utf-8\r\nContent-Length: 6\r\n\r\nhéllo";
        let Ok(Incoming::Message(message)) = read("message/cpim", body.as_bytes(), "x", NOW) else {
            panic!("not a message");
        };
        assert_eq!(message.message_id, "b-1");
        assert_eq!(message.timestamp, "2026-12-04T09:59:00.000Z");
        assert_eq!(message.content_type, "text/plain;charset=utf-8");
        assert_eq!(message.content, "héllo");
        assert_eq!(message.disposition, ["positive-delivery", "display"]);
        assert_eq!(message.cpim_from.as_deref(), Some("bob@example.com"));
    }

    #[test]
    fn a_plain_message_gets_an_id_and_a_time() {
        let incoming = read("text/plain", b"hi", "call-1", NOW);
        assert_eq!(
            incoming,
            Ok(Incoming::Message(Received {
                message_id: "call-1".into(),
                timestamp: NOW.into(),
                content_type: "text/plain".into(),
                content: "hi".into(),
                disposition: vec![],
                cpim_from: None,
            }))
        );
    }

    #[test]
    fn an_imdn_is_a_notification() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
            <imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>m-9</message-id>\
            <datetime>2026-12-04T10:00:01Z</datetime>\
            <display-notification><status><displayed/></status></display-notification></imdn>";
        assert_eq!(
            read("message/imdn+xml", xml.as_bytes(), "x", NOW),
            Ok(Incoming::Notification {
                message_id: "m-9".into(),
                state: store::State::Displayed,
                datetime: Some("2026-12-04T10:00:01Z".into()),
            })
        );
        // The same inside CPIM.
        let body = format!(
            "From: <sip:bob@example.com>\r\nNS: imdn <urn:ietf:params:imdn>\r\n\
             imdn.Message-ID: n-1\r\n\r\nContent-Type: message/imdn+xml\r\n\r\n{xml}"
        );
        assert!(matches!(
            read("message/cpim", body.as_bytes(), "x", NOW),
            Ok(Incoming::Notification {
                state: store::State::Displayed,
                ..
            })
        ));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for (content_type, body) in [
            ("message/cpim", "no blank line"),
            (
                "message/cpim",
                "From: <sip:b@c>\r\n\r\nno content type\r\n\r\nx",
            ),
            (
                "message/cpim",
                "DateTime: yesterday\r\n\r\nContent-Type: text/plain\r\n\r\nx",
            ),
            (
                "message/imdn+xml",
                "<imdn><status><delivered/></status></imdn>",
            ),
            (
                "message/imdn+xml",
                "<imdn><message-id>m</message-id><status><odd/></status></imdn>",
            ),
            ("", "x"),
        ] {
            let result = read(content_type, body.as_bytes(), "x", NOW);
            assert!(
                matches!(result, Err((400, _))),
                "{content_type} {body:?}: {result:?}"
            );
        }
        assert_eq!(
            read("text/plain", &[0xff, 0xfe], "x", NOW),
            Err((415, "Unsupported Media Type"))
        );
        assert_eq!(
            read(
                "application/im-iscomposing+xml",
                b"<isComposing/>",
                "x",
                NOW
            ),
            Ok(Incoming::Composing)
        );
    }
}
