//! Dialog state (RFC 3261 section 12): the identifiers, sequence numbers, remote target and
//! route set that in-dialog requests are built from.

use bytes::Bytes;
use ezk_sip_types::{Headers, Method, Name};

use crate::message::{Message, RequestUri, StartLine, header_param, split_list};

/// One dialog, seen from our side.
#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    /// The Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The far end's tag.
    pub remote_tag: String,
    /// Our name-addr (From of our requests), without tag.
    pub local: String,
    /// The far end's name-addr (To of our requests), without tag.
    pub remote: String,
    /// The CSeq number of our last request.
    pub local_seq: u32,
    /// The CSeq number of the far end's last request (0 before any).
    pub remote_seq: u32,
    /// Where requests go: the far end's Contact URI.
    pub remote_target: String,
    /// The Route set, in the order Route headers are written.
    pub routes: Vec<String>,
}

impl Dialog {
    /// The dialog a UAC gets from a response with a To tag (RFC 3261 section 12.1.2): the route
    /// set is the response's Record-Route reversed.
    pub(crate) fn from_response(
        request: &Message,
        response: &Message,
        local_seq: u32,
    ) -> Option<Self> {
        let remote_tag = response.tag(&Name::TO)?.to_owned();
        let local_tag = request.tag(&Name::FROM)?.to_owned();
        let mut routes = record_routes(response);
        routes.reverse();
        let remote_target = contact_uri(response).or_else(|| request_uri(request))?;
        Some(Dialog {
            call_id: request.call_id()?.to_owned(),
            local_tag,
            remote_tag,
            local: without_tag(request.header(&Name::FROM)?),
            remote: without_tag(request.header(&Name::TO)?),
            local_seq,
            remote_seq: 0,
            remote_target,
            routes,
        })
    }

    /// The dialog a UAS gets from a request (RFC 3261 section 12.1.1): the route set is the
    /// request's Record-Route in order.
    pub(crate) fn from_request(request: &Message, local_tag: &str, local_seq: u32) -> Option<Self> {
        Some(Dialog {
            call_id: request.call_id()?.to_owned(),
            local_tag: local_tag.to_owned(),
            remote_tag: request.tag(&Name::FROM).unwrap_or_default().to_owned(),
            local: without_tag(request.header(&Name::TO)?),
            remote: without_tag(request.header(&Name::FROM)?),
            local_seq,
            remote_seq: request.cseq().ok()?.cseq,
            remote_target: contact_uri(request)?,
            routes: record_routes(request),
        })
    }

    /// A new request in this dialog (RFC 3261 section 12.2.1.1), without Via and CSeq number
    /// handling: `cseq` is used as given. Strict routers (a first route without `lr`) are not
    /// supported: the Request-URI is always the remote target.
    pub(crate) fn request(&self, method: Method, cseq: u32, via: String) -> Option<Message> {
        let uri = RequestUri::parse(&self.remote_target)?;
        let mut headers = Headers::with_capacity(12);
        headers.insert(Name::VIA, via);
        headers.insert(Name::MAX_FORWARDS, "70");
        for route in &self.routes {
            headers.insert(Name::ROUTE, route.clone());
        }
        headers.insert(Name::FROM, format!("{};tag={}", self.local, self.local_tag));
        let to = if self.remote_tag.is_empty() {
            self.remote.clone()
        } else {
            format!("{};tag={}", self.remote, self.remote_tag)
        };
        headers.insert(Name::TO, to);
        headers.insert(Name::CALL_ID, self.call_id.clone());
        headers.insert(Name::CSEQ, format!("{cseq} {method}"));
        Some(Message {
            start: StartLine::Request { method, uri },
            headers,
            body: Bytes::new(),
        })
    }

    /// Whether the dialog has a route set (proxies that Record-Routed it).
    pub(crate) fn has_routes(&self) -> bool {
        !self.routes.is_empty()
    }

    /// The URI of the next hop of in-dialog requests: the first route, or the remote target.
    pub(crate) fn next_hop(&self) -> &str {
        self.routes
            .first()
            .map(|route| bare_uri(route))
            .unwrap_or(&self.remote_target)
    }

    /// Updates the remote target from a target refresh (re-INVITE, UPDATE, or their 2xx).
    pub(crate) fn refresh_target(&mut self, message: &Message) {
        if let Some(target) = contact_uri(message) {
            self.remote_target = target;
        }
    }
}

/// The Record-Route entries of a message, in order, each as a name-addr.
pub(crate) fn record_routes(message: &Message) -> Vec<String> {
    message
        .headers
        .get_raw(&Name::RECORD_ROUTE)
        .flat_map(|value| split_list(value.as_str()))
        .map(|entry| entry.trim().to_owned())
        .filter(|entry| !entry.is_empty())
        .collect()
}

/// The URI of the first Contact.
pub(crate) fn contact_uri(message: &Message) -> Option<String> {
    let value = message.headers.get_raw(&Name::CONTACT).next()?;
    let first = split_list(value.as_str()).into_iter().next()?;
    let uri = bare_uri(first.trim());
    (!uri.is_empty() && uri != "*").then(|| uri.to_owned())
}

fn request_uri(message: &Message) -> Option<String> {
    match &message.start {
        StartLine::Request { uri, .. } => Some(uri.as_str().to_owned()),
        StartLine::Response { .. } => None,
    }
}

pub(crate) use crate::uri::bare_uri;

/// A From or To value without its tag parameter.
pub(crate) fn without_tag(value: &str) -> String {
    let Some(tag) = header_param(value, "tag") else {
        return value.trim().to_owned();
    };
    // The parameter is `;tag=VALUE` (any case, maybe spaced): remove the last one found.
    let lower = value.to_ascii_lowercase();
    let needle = format!("={}", tag.to_ascii_lowercase());
    match lower.rfind(&needle).and_then(|end| lower[..end].rfind(';')) {
        Some(start) => {
            let end = lower.rfind(&needle).unwrap_or(start) + needle.len();
            format!("{}{}", &value[..start], &value[end..])
                .trim()
                .to_owned()
        }
        None => value.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Message {
        Message::parse_datagram(text.replace('\n', "\r\n").as_bytes(), 65_535).expect("parses")
    }

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa
Max-Forwards: 70
From: \"Alice\" <sip:alice@example.com>;tag=abc
To: <sip:bob@example.com>
Call-ID: c1
CSeq: 7 INVITE
Contact: <sip:x@10.0.0.1:5060;transport=udp>
Record-Route: <sip:p1;lr>, <sip:p2;lr>
Record-Route: <sip:p3;lr>
Content-Length: 0

";

    #[test]
    fn uas_dialog_keeps_record_route_order() {
        let invite = parse(INVITE);
        let dialog = Dialog::from_request(&invite, "xyz", 1).expect("dialog");
        assert_eq!(dialog.routes, ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]);
        assert_eq!(dialog.remote_target, "sip:x@10.0.0.1:5060;transport=udp");
        assert_eq!(dialog.remote_tag, "abc");
        assert_eq!(dialog.remote, "\"Alice\" <sip:alice@example.com>");
        assert_eq!(dialog.remote_seq, 7);
        assert_eq!(dialog.next_hop(), "sip:p1;lr");
        let bye = dialog
            .request(Method::BYE, 2, "SIP/2.0/UDP h;branch=z9hG4bKb".into())
            .expect("request");
        let text = String::from_utf8(bye.to_bytes()).expect("utf-8");
        assert!(text.starts_with("BYE sip:x@10.0.0.1:5060;transport=udp SIP/2.0\r\n"));
        assert!(text.contains("To: \"Alice\" <sip:alice@example.com>;tag=abc\r\n"));
        assert!(text.contains("From: <sip:bob@example.com>;tag=xyz\r\n"));
        assert!(text.contains("Route: <sip:p1;lr>\r\nRoute: <sip:p2;lr>\r\nRoute: <sip:p3;lr>"));
    }

    #[test]
    fn uac_dialog_reverses_record_route() {
        let invite = parse(INVITE);
        let response = parse(
            "SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa
From: \"Alice\" <sip:alice@example.com>;tag=abc
To: <sip:bob@example.com>;tag=def
Call-ID: c1
CSeq: 7 INVITE
Contact: <sip:bob@10.0.0.2:5070>
Record-Route: <sip:p1;lr>, <sip:p2;lr>
Content-Length: 0

",
        );
        let dialog = Dialog::from_response(&invite, &response, 7).expect("dialog");
        assert_eq!(dialog.routes, ["<sip:p2;lr>", "<sip:p1;lr>"]);
        assert_eq!(dialog.remote_target, "sip:bob@10.0.0.2:5070");
        assert_eq!(dialog.local_tag, "abc");
        assert_eq!(dialog.remote_tag, "def");
        assert_eq!(dialog.local, "\"Alice\" <sip:alice@example.com>");
    }

    #[test]
    fn tags_are_removed_whatever_their_case() {
        assert_eq!(without_tag("<sip:a@b>;TAG=Xy;foo=1"), "<sip:a@b>;foo=1");
        assert_eq!(without_tag("sip:a@b;tag=1"), "sip:a@b");
        assert_eq!(without_tag("<sip:a@b>"), "<sip:a@b>");
        assert_eq!(bare_uri("\"B\" <sip:b@h;lr>;x=y"), "sip:b@h;lr");
        assert_eq!(bare_uri("sip:b@h;x=y"), "sip:b@h");
    }
}
