//! SIP messages: parsing a datagram or a byte stream, checking what RFC 3261 requires, and
//! printing.
//!
//! ezk-sip-types does the header grammar (Via, CSeq, Contact, digest challenges, URIs); this
//! module owns what it does not: the message type, framing by Content-Length, unfolding of
//! continuation lines, strict decoding of header lists (an unparsed remainder is an error, never
//! silently dropped), `tel:` and other non-SIP Request-URIs (kept as text, answered 416 by the
//! user agent), and the checks that make a message well-formed.

use std::fmt::{self, Write as _};

use bytes::{Buf, Bytes, BytesMut};
use bytesstr::BytesStr;
use ezk_sip_types::header::HeaderParse;
use ezk_sip_types::header::typed::{CSeq, Via};
use ezk_sip_types::{Headers, Method, Name};

/// A SIP request or response.
#[derive(Debug, Clone)]
pub struct Message {
    /// The request line or status line.
    pub start: StartLine,
    /// The header fields, in order (fields of one name kept together).
    pub headers: Headers,
    /// The body (Content-Length is computed from it when printing).
    pub body: Bytes,
}

/// The first line of a message.
#[derive(Debug, Clone)]
pub enum StartLine {
    /// `METHOD Request-URI SIP/2.0`.
    Request {
        /// The method (unknown methods are kept by name).
        method: Method,
        /// The Request-URI.
        uri: RequestUri,
    },
    /// `SIP/2.0 CODE Reason`.
    Response {
        /// The status code, 100 to 699.
        code: u16,
        /// The reason phrase (possibly empty).
        reason: String,
    },
}

/// A Request-URI, kept as text: its scheme and, for SIP URIs, its user part are read out
/// (RFC 3261 section 19.1). Other schemes (such as `tel:`) are kept so that the user agent can
/// answer them with 416.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestUri {
    text: String,
    /// Whether the scheme is `sip` or `sips`.
    sip: bool,
    /// The end of the user part in `text` (the `@`), for SIP URIs that have one.
    user_end: Option<usize>,
}

impl RequestUri {
    /// Parses a Request-URI. SIP URIs are checked for a well-formed host and port, and must
    /// not carry headers (`?...`), which a Request-URI cannot have.
    pub fn parse(text: &str) -> Option<RequestUri> {
        if text.is_empty() || text.contains([' ', '\t', '<', '>', '"']) {
            return None;
        }
        let (scheme, rest) = text.split_once(':')?;
        let valid_scheme = !scheme.is_empty()
            && scheme.as_bytes()[0].is_ascii_alphabetic()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if !valid_scheme || rest.is_empty() {
            return None;
        }
        let sip = scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips");
        if !sip {
            return Some(RequestUri {
                text: text.to_owned(),
                sip,
                user_end: None,
            });
        }
        // The user part may hold `;`, `?` and `@`-free text; the host part starts after the
        // last `@`.
        let user_end = rest.rfind('@').map(|at| scheme.len() + 1 + at);
        let hostpart = match user_end {
            Some(end) if end == scheme.len() + 1 => return None,
            Some(end) => &text[end + 1..],
            None => rest,
        };
        if hostpart.contains('?') {
            return None;
        }
        let hostport = hostpart.split(';').next().unwrap_or_default();
        if !valid_hostport(hostport) {
            return None;
        }
        Some(RequestUri {
            text: text.to_owned(),
            sip,
            user_end,
        })
    }

    /// Whether this is a `sip:` or `sips:` URI.
    pub fn is_sip(&self) -> bool {
        self.sip
    }

    /// The user part of a SIP URI, as written (escapes not decoded).
    pub fn user(&self) -> Option<&str> {
        let end = self.user_end?;
        let start = self.text.find(':')? + 1;
        Some(&self.text[start..end])
    }

    /// The host of a SIP URI, without its port and parameters (an IPv6 address without its
    /// brackets).
    pub fn host(&self) -> Option<&str> {
        if !self.sip {
            return None;
        }
        let start = match self.user_end {
            Some(end) => end + 1,
            None => self.text.find(':')? + 1,
        };
        let hostport = self.text[start..].split(';').next()?;
        match hostport.strip_prefix('[') {
            Some(inner) => inner.split(']').next(),
            None => hostport.split(':').next(),
        }
    }

    /// The URI as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `host[:port]`: a host name, an IPv4 address or a bracketed IPv6 address.
fn valid_hostport(text: &str) -> bool {
    let valid_port = |port: &str| {
        !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
    };
    if let Some(inner) = text.strip_prefix('[') {
        let Some((host, rest)) = inner.split_once(']') else {
            return false;
        };
        return host.parse::<std::net::Ipv6Addr>().is_ok()
            && (rest.is_empty() || rest.strip_prefix(':').is_some_and(valid_port));
    }
    let (host, port) = match text.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    };
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        && port.is_none_or(valid_port)
}

/// Why bytes are not a SIP message at all (nothing can be answered).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// More bytes than the configured limit.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// The header section does not end (no empty line).
    #[error("incomplete message head")]
    Incomplete,
    /// Something in the framing or the start line is wrong.
    #[error("{0}")]
    Malformed(String),
}

/// A parsed message that breaks the rules: the status to answer with (400 or 505) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct Invalid {
    /// The status code for the answer.
    pub status: u16,
    /// What is wrong, for the reason phrase and the logs.
    pub reason: String,
}

impl Invalid {
    fn bad(reason: impl Into<String>) -> Self {
        Invalid {
            status: 400,
            reason: reason.into(),
        }
    }
}

/// The largest Max-Forwards value (RFC 3261: 0 to 255).
const MAX_FORWARDS: u32 = 255;
/// The largest CSeq number (RFC 3261 section 8.1.1.5: less than 2**31).
const MAX_CSEQ: u32 = (1 << 31) - 1;

impl Message {
    /// Parses one UDP datagram. Without Content-Length the body is the rest of the datagram; with
    /// it, bytes past it are ignored and a shorter body is an error (RFC 3261 section 18.3).
    pub fn parse_datagram(data: &[u8], max_size: usize) -> Result<Message, ParseError> {
        if data.len() > max_size {
            return Err(ParseError::TooLarge(max_size));
        }
        let data = skip_crlf(data);
        let (head, rest) = split_head(data).ok_or(ParseError::Incomplete)?;
        let (start, headers) = parse_head(head)?;
        let body = match content_length(&headers)? {
            Some(length) if length > rest.len() => {
                return Err(ParseError::Malformed(format!(
                    "Content-Length {length} is larger than the {} bytes of body",
                    rest.len()
                )));
            }
            Some(length) => &rest[..length],
            None => rest,
        };
        Ok(Message {
            start,
            headers,
            body: Bytes::copy_from_slice(body),
        })
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The one value of a header that must appear once, as text.
    pub fn header(&self, name: &Name) -> Option<&str> {
        self.headers.get_raw(name).next().map(BytesStr::as_str)
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.header(&Name::CALL_ID)
    }

    /// The CSeq, parsed strictly.
    pub fn cseq(&self) -> Result<CSeq, Invalid> {
        single::<CSeq>(&self.headers, &Name::CSEQ)?.ok_or_else(|| Invalid::bad("missing CSeq"))
    }

    /// Every Via, top first, parsed strictly.
    pub fn vias(&self) -> Result<Vec<Via>, Invalid> {
        list::<Via>(&self.headers, &Name::VIA)
    }

    /// The `tag` parameter of the From or To header.
    pub fn tag(&self, name: &Name) -> Option<&str> {
        self.header(name)
            .and_then(|value| header_param(value, "tag"))
    }

    /// Checks what RFC 3261 requires of every message: the mandatory headers, their syntax,
    /// scalar ranges, and a CSeq method equal to the request's method.
    pub fn validate(&self) -> Result<(), Invalid> {
        for name in [Name::VIA, Name::FROM, Name::TO, Name::CALL_ID, Name::CSEQ] {
            match self.headers.get_raw(&name).count() {
                0 => return Err(Invalid::bad(format!("missing {}", name.as_print_str()))),
                1 => {}
                _ if name == Name::VIA => {}
                _ => {
                    return Err(Invalid::bad(format!(
                        "several {} headers",
                        name.as_print_str()
                    )));
                }
            }
        }
        let vias = self.vias()?;
        if vias.is_empty() {
            return Err(Invalid::bad("empty Via"));
        }
        for name in [Name::FROM, Name::TO] {
            let value = self.header(&name).unwrap_or_default();
            check_name_addr(value)
                .map_err(|why| Invalid::bad(format!("{}: {why}", name.as_print_str())))?;
        }
        let cseq = self.cseq()?;
        if cseq.cseq > MAX_CSEQ {
            return Err(Invalid::bad("CSeq number too large"));
        }
        if let Some(value) = self.header(&Name::MAX_FORWARDS) {
            match value.trim().parse::<u32>() {
                Ok(hops) if hops <= MAX_FORWARDS => {}
                _ => return Err(Invalid::bad("Max-Forwards is not a number from 0 to 255")),
            }
        }
        if let Some(value) = self.header(&Name::DATE)
            && !valid_date(value)
        {
            return Err(Invalid::bad("Date is not an RFC 1123 date in GMT"));
        }
        for contact in self.headers.get_raw(&Name::CONTACT) {
            if contact.trim() != "*" {
                for item in split_list(contact) {
                    check_name_addr(item).map_err(|why| Invalid::bad(format!("Contact: {why}")))?;
                }
            }
        }
        if let Some(value) = self.header(&Name::EXPIRES) {
            // RFC 3261 section 20.19: delta-seconds, at most 2**32-1.
            if value.trim().parse::<u32>().is_err() {
                return Err(Invalid::bad("Expires is not a number of seconds"));
            }
        }
        if let StartLine::Request { method, .. } = &self.start
            && cseq.method != *method
        {
            return Err(Invalid::bad("CSeq method differs from the request method"));
        }
        Ok(())
    }

    /// A response to this request (RFC 3261 section 8.2.6.2): the Vias, From, Call-ID and CSeq
    /// copied, and the To copied with `to_tag` added when it has no tag yet (a response above
    /// 100 needs one).
    pub fn response(&self, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let mut headers = Headers::with_capacity(8);
        for name in [Name::VIA, Name::FROM, Name::TO, Name::CALL_ID, Name::CSEQ] {
            for value in self.headers.get_raw(&name) {
                let mut value = value.as_str().to_owned();
                if name == Name::TO
                    && let Some(tag) = to_tag
                    && header_param(&value, "tag").is_none()
                {
                    value.push_str(";tag=");
                    value.push_str(tag);
                }
                headers.insert(name.clone(), value);
            }
        }
        Message {
            start: StartLine::Response {
                code,
                reason: reason.to_owned(),
            },
            headers,
            body: Bytes::new(),
        }
    }

    /// Prints the message, with a Content-Length that matches the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut text = String::with_capacity(256 + self.headers.printed_len());
        let _ = write!(text, "{}\r\n", self.start);
        for (name, value) in self.headers.iter() {
            if *name != Name::CONTENT_LENGTH {
                let _ = write!(text, "{}: {}\r\n", name.as_print_str(), value);
            }
        }
        let _ = write!(text, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

impl fmt::Display for StartLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartLine::Request { method, uri } => write!(f, "{method} {uri} SIP/2.0"),
            StartLine::Response { code, reason } => write!(f, "SIP/2.0 {code} {reason}"),
        }
    }
}

impl fmt::Display for RequestUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a byte stream (TCP, TLS) yields.
#[derive(Debug)]
pub enum Frame {
    /// A complete message.
    Message(Box<Message>),
    /// A framed message whose head could not be parsed; the stream goes on.
    Invalid(ParseError),
    /// A double CRLF: a keep-alive ping (RFC 5626 section 4.4.1), to be answered with one CRLF.
    Ping,
    /// A single CRLF: the answer to our ping.
    Pong,
}

/// Cuts a byte stream into messages by Content-Length (RFC 3261 section 18.3).
#[derive(Debug)]
pub struct StreamFramer {
    buffer: BytesMut,
    max_size: usize,
}

impl StreamFramer {
    /// A framer that refuses messages over `max_size` bytes.
    pub fn new(max_size: usize) -> Self {
        StreamFramer {
            buffer: BytesMut::new(),
            max_size,
        }
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next frame, `Ok(None)` when more bytes are needed. An error means the stream cannot
    /// be framed any more and must be closed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ParseError> {
        if self.buffer.starts_with(b"\r\n\r\n") {
            self.buffer.advance(4);
            return Ok(Some(Frame::Ping));
        }
        if self.buffer.starts_with(b"\r\n") && !self.buffer[2..].starts_with(b"\r") {
            self.buffer.advance(2);
            return Ok(Some(Frame::Pong));
        }
        if self.buffer.starts_with(b"\r") && self.buffer.len() < 4 {
            return Ok(None);
        }
        let Some((head, rest)) = split_head(&self.buffer) else {
            if self.buffer.len() > self.max_size {
                return Err(ParseError::TooLarge(self.max_size));
            }
            return Ok(None);
        };
        let head_len = self.buffer.len() - rest.len();
        let parsed = parse_head(head);
        let length = match &parsed {
            Ok((_, headers)) => content_length(headers)?,
            // The head is broken, but the Content-Length may still be found to skip the body.
            Err(_) => raw_content_length(head)?,
        }
        .ok_or_else(|| ParseError::Malformed("no Content-Length on a stream transport".into()))?;
        if head_len + length > self.max_size {
            return Err(ParseError::TooLarge(self.max_size));
        }
        if rest.len() < length {
            return Ok(None);
        }
        let mut framed = self.buffer.split_to(head_len + length);
        framed.advance(head_len);
        let body = framed.freeze();
        Ok(Some(match parsed {
            Ok((start, headers)) => Frame::Message(Box::new(Message {
                start,
                headers,
                body,
            })),
            Err(error) => Frame::Invalid(error),
        }))
    }
}

fn skip_crlf(data: &[u8]) -> &[u8] {
    let start = data
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(data.len());
    &data[start..]
}

/// Splits at the empty line that ends the head: `(head, rest after the empty line)`. LF-only
/// line ends are accepted, as RFC 3261 section 7.5 asks of receivers.
fn split_head(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut index = 0;
    while index < data.len() {
        if data[index] == b'\n' {
            let next = &data[index + 1..];
            if next.starts_with(b"\r\n") {
                return Some((&data[..index], &next[2..]));
            }
            if next.starts_with(b"\n") {
                return Some((&data[..index], &next[1..]));
            }
        }
        index += 1;
    }
    None
}

/// Parses the start line and the header fields.
fn parse_head(head: &[u8]) -> Result<(StartLine, Headers), ParseError> {
    let head = std::str::from_utf8(head)
        .map_err(|_| ParseError::Malformed("message head is not UTF-8".into()))?;
    let mut lines = unfolded_lines(head);
    let first = lines.next().ok_or(ParseError::Incomplete)?;
    let start = parse_start_line(&first)?;
    let mut headers = Headers::with_capacity(16);
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| {
            ParseError::Malformed(format!("header line without a colon: {line:?}"))
        })?;
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(ParseError::Malformed(format!(
                "invalid header name {name:?}"
            )));
        }
        headers.insert(
            Name::from(name.to_owned()),
            value.trim_matches([' ', '\t']).to_owned(),
        );
    }
    Ok((start, headers))
}

/// The logical lines of a head: continuation lines (starting with a space or tab) are joined to
/// the line before with one space, and line ends may be CRLF or LF.
fn unfolded_lines(head: &str) -> impl Iterator<Item = String> + '_ {
    let mut physical = head
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .peekable();
    std::iter::from_fn(move || {
        let mut line = physical.next()?.to_owned();
        while let Some(next) = physical.next_if(|next| next.starts_with([' ', '\t'])) {
            line.push(' ');
            line.push_str(next.trim_start_matches([' ', '\t']));
        }
        Some(line)
    })
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let malformed = |why: &str| ParseError::Malformed(format!("{why}: {line:?}"));
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code = match code.parse::<u16>() {
            Ok(number) if (100..=699).contains(&number) && code.len() == 3 => number,
            _ => return Err(malformed("status code is not 100 to 699")),
        };
        return Ok(StartLine::Response {
            code,
            reason: reason.to_owned(),
        });
    }
    // RFC 3261 section 7.1: exactly one space between the three elements.
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not a request line (METHOD SP URI SP SIP/2.0)"));
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Err(malformed("invalid method"));
    }
    if !version.starts_with("SIP/") {
        return Err(malformed("not a SIP request"));
    }
    if version != "SIP/2.0" {
        return Err(ParseError::Malformed(format!(
            "unsupported SIP version {version}"
        )));
    }
    Ok(StartLine::Request {
        method: Method::from(method),
        uri: RequestUri::parse(uri).ok_or_else(|| malformed("invalid Request-URI"))?,
    })
}

/// RFC 3261 `token` characters.
fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&byte)
}

/// The Content-Length: at most one, a non-negative integer.
fn content_length(headers: &Headers) -> Result<Option<usize>, ParseError> {
    let mut values = headers.get_raw(&Name::CONTENT_LENGTH);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ParseError::Malformed(
            "several Content-Length headers".into(),
        ));
    }
    parse_length(value.as_str()).map(Some)
}

/// Finds Content-Length in a head that did not parse, to keep framing a stream.
fn raw_content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let text = String::from_utf8_lossy(head);
    let mut found = None;
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            if found.is_some() {
                return Err(ParseError::Malformed(
                    "several Content-Length headers".into(),
                ));
            }
            found = Some(parse_length(value)?);
        }
    }
    Ok(found)
}

fn parse_length(value: &str) -> Result<usize, ParseError> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::Malformed(format!(
            "invalid Content-Length {value:?}"
        )));
    }
    value
        .parse()
        .map_err(|_| ParseError::Malformed(format!("Content-Length {value} is too large")))
}

/// Decodes a header that must appear at most once, requiring the whole value to be consumed.
fn single<H: HeaderParse>(headers: &Headers, name: &Name) -> Result<Option<H>, Invalid> {
    let mut values = headers.get_raw(name);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Invalid::bad(format!(
            "several {} headers",
            name.as_print_str()
        )));
    }
    let invalid = || {
        Invalid::bad(format!(
            "invalid {}: {:?}",
            name.as_print_str(),
            value.as_str()
        ))
    };
    match H::parse(value.as_ref(), value.as_str()) {
        Ok((rest, header)) if rest.trim().is_empty() => Ok(Some(header)),
        _ => Err(invalid()),
    }
}

/// Decodes every element of a comma-separated header list, across all of its header lines.
/// Unlike ezk-sip-types' own list decoding, text that does not parse is an error: a Via or Route
/// entry silently dropped would send responses or requests to the wrong place.
pub(crate) fn list<H: HeaderParse>(headers: &Headers, name: &Name) -> Result<Vec<H>, Invalid> {
    let mut items = Vec::new();
    for value in headers.get_raw(name) {
        let src: &Bytes = value.as_ref();
        let mut input = value.as_str().trim_start();
        loop {
            let invalid = || {
                Invalid::bad(format!(
                    "invalid {}: {:?}",
                    name.as_print_str(),
                    value.as_str()
                ))
            };
            let (rest, item) = H::parse(src, input).map_err(|_| invalid())?;
            items.push(item);
            let rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            input = rest.strip_prefix(',').ok_or_else(invalid)?.trim_start();
        }
    }
    Ok(items)
}

/// Checks a From or To value: `name-addr` or `addr-spec`, then parameters. Only the shape is
/// checked (balanced quotes and brackets, no spaces in a bare URI), so that any URI scheme
/// (`tel:` included) passes.
fn check_name_addr(value: &str) -> Result<(), &'static str> {
    let value = value.trim();
    let uri_part = if let Some(open) = find_unquoted(value, b'<')? {
        let display = value[..open].trim();
        if !display.is_empty()
            && !display.starts_with('"')
            && !display
                .bytes()
                .all(|b| is_token(b) || b == b' ' || b == b'\t')
        {
            return Err("invalid display name");
        }
        let close = value[open..].find('>').ok_or("unclosed '<'")? + open;
        let uri = &value[open + 1..close];
        if uri.contains([' ', '\t']) {
            return Err("spaces inside the URI");
        }
        uri
    } else {
        let uri = value.split(';').next().unwrap_or_default().trim_end();
        if uri.contains([' ', '\t', ',', '?']) {
            return Err("a URI with spaces, commas or headers must be in <>");
        }
        uri
    };
    if !uri_part.contains(':') {
        return Err("no URI");
    }
    Ok(())
}

/// Splits a header list at the commas that are outside quotes and angle brackets.
pub(crate) fn split_list(value: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut quoted, mut bracketed, mut escaped, mut start) = (false, false, false, 0);
    for (index, byte) in value.bytes().enumerate() {
        match byte {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'<' if !quoted => bracketed = true,
            b'>' if !quoted => bracketed = false,
            b',' if !quoted && !bracketed => {
                items.push(&value[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    items
}

/// An RFC 1123 date in GMT, as RFC 3261 section 20.17 requires: `Sat, 13 Nov 2010 23:29:00 GMT`.
fn valid_date(value: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let digits =
        |text: &str, count: usize| text.len() == count && text.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [day, date, month, year, time, zone] = parts[..] else {
        return false;
    };
    let time: Vec<&str> = time.split(':').collect();
    DAYS.iter().any(|name| day == format!("{name},"))
        && digits(date, 2)
        && MONTHS.contains(&month)
        && digits(year, 4)
        && time.len() == 3
        && time.iter().all(|part| digits(part, 2))
        && zone == "GMT"
}

/// The index of `needle` outside double quotes; an unterminated quoted string is an error.
fn find_unquoted(text: &str, needle: u8) -> Result<Option<usize>, &'static str> {
    let bytes = text.as_bytes();
    let mut quoted = false;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' if quoted => index += 1,
            b'"' => quoted = !quoted,
            byte if byte == needle && !quoted => return Ok(Some(index)),
            _ => {}
        }
        index += 1;
    }
    if quoted {
        return Err("unterminated quoted string");
    }
    Ok(None)
}

/// A parameter of a From/To/Contact value (after the URI), such as `tag`.
pub(crate) fn header_param<'a>(value: &'a str, param: &str) -> Option<&'a str> {
    let params = match find_unquoted(value, b'>').ok().flatten() {
        Some(close) => &value[close + 1..],
        None => value.find(';').map_or("", |start| &value[start..]),
    };
    params.split(';').skip(1).find_map(|item| {
        let (name, value) = item.split_once('=').unwrap_or((item, ""));
        name.trim()
            .eq_ignore_ascii_case(param)
            .then(|| value.trim())
    })
}

#[cfg(test)]
mod tests;
