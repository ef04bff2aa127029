//! Presence documents (PIDF, RFC 3863), pure: the one the gateway writes for a user of the
//! local domain, and what it reads from a far end's: whether any tuple is `open`, and the
//! first note.

/// What a presence document says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    /// A tuple is `open` (the user can be reached).
    pub(crate) open: bool,
    /// The first `<note>`, if any (at most [`MAX_NOTE`] characters).
    pub(crate) note: Option<String>,
}

/// The longest note kept.
pub(crate) const MAX_NOTE: usize = 200;

/// The PIDF document of `entity` (`sip:user@domain`), open or closed.
pub(crate) fn document(entity: &str, open: bool) -> String {
    let basic = if open { "open" } else { "closed" };
    let entity = escape(entity);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{entity}\">\r\n\
         \x20 <tuple id=\"gateway\">\r\n\
         \x20   <status><basic>{basic}</basic></status>\r\n\
         \x20   <contact>{entity}</contact>\r\n\
         \x20 </tuple>\r\n\
         </presence>\r\n"
    )
}

/// Reads a PIDF document: `None` unless it is one with at least one `<basic>` status.
pub(crate) fn read(xml: &str) -> Option<Status> {
    if !xml.contains("presence") {
        return None;
    }
    let basics = elements(xml, "basic");
    if basics.is_empty() {
        return None;
    }
    let open = basics
        .iter()
        .any(|basic| basic.trim().eq_ignore_ascii_case("open"));
    let note = elements(xml, "note")
        .into_iter()
        .map(|note| unescape(note.trim()))
        .find(|note| !note.is_empty())
        .map(|note| note.chars().take(MAX_NOTE).collect());
    Some(Status { open, note })
}

/// Each `<tuple>` of a document, in order: its `id` and whether its status is `open`. What a
/// presence server composes publications by: a newer publication's tuple replaces an older one
/// with the same id (RFC 3863 tuples name a service; a phone that published twice for one
/// service is in the state it published last).
pub(crate) fn tuples(xml: &str) -> Vec<(Option<String>, bool)> {
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(tag) = next_tag(&mut rest) {
        if tag.starts_with('/') || tag.ends_with('/') || local_name(tag) != "tuple" {
            continue;
        }
        // The tuple runs to the next closing tag named tuple (tuples do not nest).
        let mut end = rest.len();
        let mut search = 0;
        while let Some(close) = rest[search..].find("</") {
            let at = search + close;
            let name_end = rest[at..].find('>').map_or(rest.len(), |end| at + end);
            if local_name(&rest[at + 1..name_end]) == "tuple" {
                end = at;
                break;
            }
            search = at + 2;
        }
        let body = &rest[..end];
        let open = elements(body, "basic")
            .iter()
            .any(|basic| basic.trim().eq_ignore_ascii_case("open"));
        found.push((attribute(tag, "id"), open));
        rest = &rest[end..];
    }
    found
}

/// The text of the next tag in `rest` (between `<` and `>`), moving `rest` past it.
fn next_tag<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let open = rest.find('<')?;
    let after = &rest[open + 1..];
    let tag_end = after.find('>')?;
    *rest = &after[tag_end + 1..];
    Some(&after[..tag_end])
}

/// A tag's name without its namespace prefix (`p:tuple id="a"` -> `tuple`, `/p:tuple` ->
/// `tuple`).
fn local_name(tag: &str) -> &str {
    tag.trim_start_matches('/')
        .split([' ', '/', '\t', '\r', '\n'])
        .next()
        .and_then(|qualified| qualified.rsplit(':').next())
        .unwrap_or_default()
}

/// The value of attribute `name` in a start tag's text, either quote.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + name.len()..].trim_start();
        rest = &rest[at + name.len()..];
        if !before.is_some_and(char::is_whitespace) {
            continue;
        }
        let Some(value) = after.strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start();
        let quote = value.chars().next()?;
        if quote != '"' && quote != '\'' {
            return None;
        }
        let value = &value[1..];
        return value.find(quote).map(|end| unescape(&value[..end]));
    }
    None
}

/// The texts of every `<name>...</name>` element (any namespace prefix), in order.
fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(tag) = next_tag(&mut rest) {
        if local_name(tag) == name
            && !tag.starts_with('/')
            && !tag.ends_with('/')
            && let Some(close) = rest.find("</")
        {
            found.push(&rest[..close]);
        }
    }
    found
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_document_reads_back() {
        let open = document("sip:alice@local.test", true);
        assert_eq!(
            read(&open),
            Some(Status {
                open: true,
                note: None
            })
        );
        assert!(!read(&document("sip:a&b@x", false)).unwrap().open);
    }

    /// As baresip writes it (with its data-model and RPID namespaces), and as others do with
    /// several tuples and a note.
    #[test]
    fn far_ends_documents_are_read() {
        let baresip = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\r\n\
            <presence xmlns=\"urn:ietf:params:xml:ns:pidf\"\r\n\
            \x20   xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\"\r\n\
            \x20   xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\"\r\n\
            \x20   entity=\"sip:bob@example.com\">\r\n\
            \x20 <dm:person id=\"p4159\"><rpid:activities/></dm:person>\r\n\
            \x20 <tuple id=\"t4109\">\r\n\
            \x20   <status>\r\n\
            \x20     <basic>closed</basic>\r\n\
            \x20   </status>\r\n\
            \x20   <contact>sip:bob@example.com</contact>\r\n\
            \x20 </tuple>\r\n\
            </presence>\r\n";
        assert_eq!(
            read(baresip),
            Some(Status {
                open: false,
                note: None
            })
        );
        let two = "<p:presence xmlns:p=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:c@d\">\
            <p:tuple id=\"a\"><p:status><p:basic>closed</p:basic></p:status></p:tuple>\
            <p:tuple id=\"b\"><p:status><p:basic>open</p:basic></p:status>\
            <p:note xml:lang=\"en\">At lunch &amp; back soon</p:note></p:tuple></p:presence>";
        assert_eq!(
            read(two),
            Some(Status {
                open: true,
                note: Some("At lunch & back soon".into())
            })
        );
    }

    #[test]
    fn tuples_are_read_with_their_ids() {
        let two = "<p:presence xmlns:p=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:c@d\">\
            <p:tuple id=\"a\"><p:status><p:basic>closed</p:basic></p:status></p:tuple>\
            <p:tuple  id='b'><p:status><p:basic>open</p:basic></p:status>\
            <p:note>x</p:note></p:tuple><tuple><status><basic>open</basic></status></tuple>\
            </p:presence>";
        assert_eq!(
            tuples(two),
            vec![
                (Some("a".to_owned()), false),
                (Some("b".to_owned()), true),
                (None, true)
            ]
        );
        assert_eq!(
            tuples(&document("sip:alice@local.test", true)),
            vec![(Some("gateway".to_owned()), true)]
        );
        // Cut short: what is there is read, nothing panics.
        assert_eq!(
            tuples("<tuple id=\"x\"><status><basic>open"),
            vec![(Some("x".to_owned()), false)]
        );
        assert_eq!(tuples("<tuple id=>"), vec![(None, false)]);
        assert!(tuples("<presence/>").is_empty());
    }

    #[test]
    fn what_is_not_presence_is_refused() {
        assert_eq!(read(""), None);
        assert_eq!(read("<presence/>"), None);
        assert_eq!(read("<presence><basic>"), None);
        assert_eq!(read("not xml at all"), None);
    }
}
