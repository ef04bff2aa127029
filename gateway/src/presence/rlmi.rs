//! Resource list NOTIFYs (RFC 4662), pure: a `multipart/related` body whose root part is the
//! list's RLMI document (`application/rlmi+xml`: the list's version, whether it is the full
//! state, each resource and its instances) and whose other parts are the instances' presence
//! documents, found by Content-ID. What comes out is each resource's state as the gateway
//! tells it: a PIDF status, pending, or unknown.
//!
//! The parsing is as tolerant as the rest of the presence code (`pidf`): no XML validation,
//! namespace prefixes ignored; anything unreadable is `None` or an unknown state, never a
//! panic. A resource that is itself a list (a nested `multipart/related` part) is unknown.

use super::pidf::{self, Status};

/// What one list NOTIFY says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct List {
    /// The RLMI `version` (one more with each NOTIFY of the subscription).
    pub(crate) version: u32,
    /// Whether it lists every resource (else only the changed ones).
    pub(crate) full_state: bool,
    pub(crate) resources: Vec<Resource>,
}

/// One resource of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resource {
    /// Its address as the document writes it (`sip:bob@example.com`).
    pub(crate) uri: String,
    pub(crate) state: State,
}

/// What the list server knows of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// An active instance came with a presence document.
    Known(Status),
    /// Its subscription waits for the resource's owner (no active instance).
    Pending,
    /// Nothing to say: no instance yet, only terminated ones (with the first's `reason`),
    /// or an active one without a readable document.
    Unknown(Option<String>),
}

/// The most resources read from one NOTIFY (more are ignored).
const MAX_RESOURCES: usize = 1000;

/// Reads a list NOTIFY: `None` unless `content_type` is `multipart/related` and its root part
/// an RLMI document.
pub(crate) fn read(content_type: &str, body: &[u8]) -> Option<List> {
    let (essence, params) = split_type(content_type);
    if !essence.eq_ignore_ascii_case("multipart/related") {
        return None;
    }
    let boundary = param(params, "boundary")?;
    let parts = parts(body, &boundary)?;
    let start = param(params, "start");
    let root = match &start {
        Some(start) => parts
            .iter()
            .find(|part| part.content_id.as_deref() == Some(strip_angles(start)))?,
        None => parts.first()?,
    };
    if !split_type(&root.content_type)
        .0
        .eq_ignore_ascii_case("application/rlmi+xml")
    {
        return None;
    }
    let rlmi = std::str::from_utf8(root.body).ok()?;
    read_rlmi(rlmi, &parts)
}

/// Reads the RLMI document, looking instances' documents up in `parts`.
fn read_rlmi(xml: &str, parts: &[Part<'_>]) -> Option<List> {
    let mut tags = Tags::new(xml);
    let list = tags.find(|tag| !tag.closing && tag.name == "list")?;
    let version = list.attr("version")?.trim().parse().ok()?;
    let full_state = list
        .attr("fullState")
        .is_some_and(|value| matches!(value.trim(), "true" | "1"));
    let mut resources = Vec::new();
    let mut current: Option<(String, Vec<State>)> = None;
    for tag in tags {
        match (tag.name, tag.closing) {
            ("resource", false) => {
                if let Some((uri, states)) = current.take() {
                    resources.push(resource(uri, states));
                }
                if let Some(uri) = tag.attr("uri") {
                    current = Some((uri, Vec::new()));
                }
                if tag.empty
                    && let Some((uri, states)) = current.take()
                {
                    resources.push(resource(uri, states));
                }
            }
            ("resource", true) => {
                if let Some((uri, states)) = current.take() {
                    resources.push(resource(uri, states));
                }
            }
            ("instance", false) => {
                if let Some((_, states)) = &mut current {
                    states.push(instance(&tag, parts));
                }
            }
            _ => {}
        }
        if resources.len() >= MAX_RESOURCES {
            break;
        }
    }
    if let Some((uri, states)) = current.take()
        && resources.len() < MAX_RESOURCES
    {
        resources.push(resource(uri, states));
    }
    Some(List {
        version,
        full_state,
        resources,
    })
}

/// One instance's state: active with its document, pending, or terminated.
fn instance(tag: &Tag<'_>, parts: &[Part<'_>]) -> State {
    match tag.attr("state").as_deref().map(str::trim) {
        Some("active") => {
            let status = tag.attr("cid").and_then(|cid| {
                let part = parts
                    .iter()
                    .find(|part| part.content_id.as_deref() == Some(strip_angles(&cid)))?;
                let essence = split_type(&part.content_type).0;
                if !essence.eq_ignore_ascii_case("application/pidf+xml") {
                    return None;
                }
                pidf::read(std::str::from_utf8(part.body).ok()?)
            });
            status.map_or(State::Unknown(None), State::Known)
        }
        Some("pending") => State::Pending,
        _ => State::Unknown(tag.attr("reason")),
    }
}

/// A resource's state from its instances': a known one wins (open if any is open), then
/// pending, then the first unknown one.
fn resource(uri: String, states: Vec<State>) -> Resource {
    let mut known: Option<Status> = None;
    let mut pending = false;
    let mut unknown: Option<Option<String>> = None;
    for state in states {
        match state {
            State::Known(status) => {
                known = Some(match known {
                    Some(seen) => Status {
                        open: seen.open || status.open,
                        note: seen.note.or(status.note),
                    },
                    None => status,
                })
            }
            State::Pending => pending = true,
            State::Unknown(reason) => {
                unknown.get_or_insert(reason);
            }
        }
    }
    let state = match (known, pending) {
        (Some(status), _) => State::Known(status),
        (None, true) => State::Pending,
        (None, false) => State::Unknown(unknown.flatten()),
    };
    Resource { uri, state }
}

/// One part of a multipart body.
#[derive(Debug)]
struct Part<'a> {
    content_type: String,
    /// Without its angle brackets.
    content_id: Option<String>,
    body: &'a [u8],
}

/// The parts of a multipart body (RFC 2046 section 5.1.1), `None` when there is no delimiter.
fn parts<'a>(body: &'a [u8], boundary: &str) -> Option<Vec<Part<'a>>> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut at = find(body, delimiter, 0)?;
    let mut parts = Vec::new();
    loop {
        let after = at + delimiter.len();
        if body[after..].starts_with(b"--") {
            break;
        }
        // The rest of the delimiter's line (transport padding), then the part.
        let start = find(body, b"\n", after)? + 1;
        let Some(next) = find(body, delimiter, start) else {
            break;
        };
        // The line break before the next delimiter belongs to it.
        let mut end = next;
        if end > start && body[end - 1] == b'\n' {
            end -= 1;
            if end > start && body[end - 1] == b'\r' {
                end -= 1;
            }
        }
        parts.push(part(&body[start..end]));
        at = next;
    }
    Some(parts)
}

/// A part's headers and body.
fn part(raw: &[u8]) -> Part<'_> {
    let (head, body) = match find(raw, b"\r\n\r\n", 0) {
        Some(end) => (&raw[..end], &raw[end + 4..]),
        None => match find(raw, b"\n\n", 0) {
            Some(end) => (&raw[..end], &raw[end + 2..]),
            // Headers only (RFC 2046 allows a part without them: then it is all body).
            None if raw.starts_with(b"\r\n") => (&raw[..0], &raw[2..]),
            None => (raw, &raw[raw.len()..]),
        },
    };
    let head = String::from_utf8_lossy(head);
    let mut content_type = "text/plain".to_owned();
    let mut content_id = None;
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("content-type") {
            content_type = value.to_owned();
        } else if name.trim().eq_ignore_ascii_case("content-id") {
            content_id = Some(strip_angles(value).to_owned());
        }
    }
    Part {
        content_type,
        content_id,
        body,
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() || needle.is_empty() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|at| at + from)
}

fn strip_angles(text: &str) -> &str {
    let text = text.trim();
    text.strip_prefix('<')
        .and_then(|inner| inner.strip_suffix('>'))
        .unwrap_or(text)
}

/// A Content-Type's essence and the text of its parameters.
fn split_type(content_type: &str) -> (&str, &str) {
    let (essence, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    (essence.trim(), params)
}

/// A parameter of a Content-Type (`name=value` or `name="value"`, separated by `;`).
fn param(params: &str, name: &str) -> Option<String> {
    let mut rest = params;
    loop {
        rest = rest.trim_start_matches([';', ' ', '\t', '\r', '\n']);
        if rest.is_empty() {
            return None;
        }
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let close = quoted.find('"')?;
            value = quoted[..close].to_owned();
            rest = &quoted[close + 1..];
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
    }
}

/// An XML tag: its local name (no prefix), whether it closes, whether it is empty (`/>`).
struct Tag<'a> {
    name: &'a str,
    attrs: &'a str,
    closing: bool,
    empty: bool,
}

impl Tag<'_> {
    /// An attribute's value, unescaped (any namespace prefix on its name ignored).
    fn attr(&self, wanted: &str) -> Option<String> {
        let mut rest = self.attrs;
        while let Some(eq) = rest.find('=') {
            let key = rest[..eq].trim();
            let key = key.rsplit(':').next().unwrap_or(key);
            let value = rest[eq + 1..].trim_start();
            let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let inner = &value[1..];
            let close = inner.find(quote)?;
            if key == wanted {
                return Some(pidf::unescape(&inner[..close]));
            }
            rest = &inner[close + 1..];
        }
        None
    }
}

/// The tags of an XML text, in order (comments, declarations and processing instructions
/// skipped).
struct Tags<'a> {
    rest: &'a str,
}

impl<'a> Tags<'a> {
    fn new(xml: &'a str) -> Self {
        Tags { rest: xml }
    }
}

impl<'a> Iterator for Tags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        loop {
            let open = self.rest.find('<')?;
            let rest = &self.rest[open + 1..];
            if let Some(comment) = rest.strip_prefix("!--") {
                let end = comment.find("-->")?;
                self.rest = &comment[end + 3..];
                continue;
            }
            let end = rest.find('>')?;
            let inner = &rest[..end];
            self.rest = &rest[end + 1..];
            if inner.starts_with(['?', '!']) {
                continue;
            }
            let closing = inner.starts_with('/');
            let inner = inner.trim_start_matches('/');
            let empty = inner.ends_with('/');
            let inner = inner.trim_end_matches('/');
            let name_end = inner.find([' ', '\t', '\r', '\n']).unwrap_or(inner.len());
            let qualified = &inner[..name_end];
            let name = qualified.rsplit(':').next().unwrap_or(qualified);
            return Some(Tag {
                name,
                attrs: &inner[name_end..],
                closing,
                empty,
            });
        }
    }
}

#[cfg(test)]
mod tests;
