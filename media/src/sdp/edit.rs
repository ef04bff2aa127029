//! Edits of descriptions as text, where the browser leg's WebRTC peer or the far end needs
//! them otherwise than they were written: declined m-lines as offered, the browser's offer
//! restricted to what was agreed, one kind's formats kept, bandwidth lines added.

use super::Description;

/// Rewrites the declined m-lines (port 0) of `answer` to keep the proto of the m-line they
/// answer in `offer` and list its first format. RFC 3264 only asks for some format, but strict
/// parsers (aiortc and others) refuse a whole answer whose declined m-line names a format the
/// offer did not have, and the WebRTC engine writes `0` there.
pub fn declined_as_offered(answer: &str, offer: &Description) -> String {
    let mut index = 0;
    let mut out = String::with_capacity(answer.len());
    // In a declined m-line rewritten: its formats' lines go with its other formats.
    let mut declined = false;
    for line in answer.split_inclusive('\n') {
        let Some(media) = line.strip_prefix("m=") else {
            let format_line = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:", "a=ssrc"]
                .iter()
                .any(|prefix| line.starts_with(prefix));
            if !(declined && format_line) {
                out.push_str(line);
            }
            continue;
        };
        declined = false;
        let offered = offer.lines.get(index);
        index += 1;
        let mut fields = media.trim_end().split(' ');
        let (Some(kind), Some("0"), Some(offered)) = (fields.next(), fields.next(), offered) else {
            out.push_str(line);
            continue;
        };
        let Some(format) = offered.formats.first() else {
            out.push_str(line);
            continue;
        };
        declined = true;
        let ending = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
        out.push_str(&format!("m={kind} 0 {} {format}{ending}", offered.proto));
    }
    out
}

/// The browser's offer as the browser leg's WebRTC peer is to answer it: its first video m-line
/// (not declined) carries only the payload types in `keep` (the format agreed with the far end
/// and its retransmission type), or is declined (port 0, out of the BUNDLE group) when `keep`
/// is `None`; any further video m-line is declined. The peer knows every relayable video
/// format (so that video can come later), so what it may answer is said here.
pub fn restrict_video(offer: &str, keep: Option<&[u8]>) -> String {
    let lines: Vec<&str> = offer.split_inclusive('\n').collect();
    let sections = sections(&lines);
    // The video m-lines declined, and their mids to take out of the group.
    let mut declined_mids: Vec<String> = Vec::new();
    let mut declined: Vec<usize> = Vec::new();
    let mut relayed = false;
    for (number, (start, end)) in sections.iter().enumerate() {
        let mut fields = lines[*start][2..].split_whitespace();
        let (Some("video"), Some(port)) = (fields.next(), fields.next()) else {
            continue;
        };
        if port == "0" {
            continue;
        }
        if !relayed && keep.is_some() {
            relayed = true;
        } else {
            declined.push(number);
            if let Some(mid) = lines[*start..*end]
                .iter()
                .find_map(|line| line.trim_end().strip_prefix("a=mid:"))
            {
                declined_mids.push(mid.to_owned());
            }
        }
    }
    let mut out = String::with_capacity(offer.len());
    for (index, line) in lines.iter().enumerate() {
        let ending = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
        let text = line.trim_end();
        if let Some(group) = text.strip_prefix("a=group:BUNDLE") {
            let mids: Vec<&str> = group
                .split_whitespace()
                .filter(|mid| !declined_mids.iter().any(|declined| declined == mid))
                .collect();
            out.push_str(&format!("a=group:BUNDLE {}{ending}", mids.join(" ")));
            continue;
        }
        if let Some(section) = sections.iter().position(|(start, _)| *start == index)
            && declined.contains(&section)
        {
            let mut fields: Vec<&str> = text.split(' ').collect();
            if fields.len() > 1 {
                fields[1] = "0";
            }
            out.push_str(&format!("{}{ending}", fields.join(" ")));
            continue;
        }
        out.push_str(line);
    }
    match keep {
        Some(keep) => keep_formats(&out, "video", keep),
        None => out,
    }
}

/// An SDP text whose first m-line of `kind` (not declined) carries only the payload types in
/// `keep`, in that order (the first preferred): the others leave its format list and their
/// `rtpmap`, `fmtp` and `rtcp-fb` lines go.
pub fn keep_formats(sdp: &str, kind: &str, keep: &[u8]) -> String {
    let lines: Vec<&str> = sdp.split_inclusive('\n').collect();
    let chosen = sections(&lines).into_iter().find(|(start, _)| {
        let mut fields = lines[*start][2..].split_whitespace();
        fields.next() == Some(kind) && fields.next().is_some_and(|port| port != "0")
    });
    let Some((start, end)) = chosen else {
        return sdp.to_owned();
    };
    let pt_of = |line: &str| -> Option<u8> {
        let rest = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .find_map(|prefix| line.strip_prefix(prefix))?;
        rest.split_whitespace().next()?.parse().ok()
    };
    let mut out = String::with_capacity(sdp.len());
    for (index, line) in lines.iter().enumerate() {
        if index == start {
            let ending = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
            let fields: Vec<&str> = line.trim_end().split(' ').collect();
            let mut kept: Vec<String> = fields.iter().take(3).map(|f| (*f).to_owned()).collect();
            kept.extend(
                keep.iter()
                    .map(u8::to_string)
                    .filter(|pt| fields.iter().skip(3).any(|field| field == pt)),
            );
            out.push_str(&format!("{}{ending}", kept.join(" ")));
            continue;
        }
        if (start..end).contains(&index)
            && pt_of(line.trim_end()).is_some_and(|pt| !keep.contains(&pt))
        {
            continue;
        }
        out.push_str(line);
    }
    out
}

/// The m-line sections of an SDP text split in lines: (first line, end), by line index.
fn sections(lines: &[&str]) -> Vec<(usize, usize)> {
    let mut sections: Vec<(usize, usize)> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if line.starts_with("m=") {
            if let Some(last) = sections.last_mut() {
                last.1 = index;
            }
            sections.push((index, lines.len()));
        }
    }
    sections
}

/// Whether a WebRTC description is an offer: only an offer says `a=setup:actpass` (RFC 5763
/// section 5; an answer picks active or passive).
pub fn is_dtls_offer(sdp: &str) -> bool {
    sdp.lines().any(|line| line.trim_end() == "a=setup:actpass")
}

/// Adds `b=` lines to the m-line of `kind` in an SDP text (for the bandwidth a phone asked for,
/// given to the browser), after its `c=` line, or after the `m=` line when it has none.
pub fn with_bandwidth(sdp: &str, kind: &str, bandwidth: &[(String, u64)]) -> String {
    if bandwidth.is_empty() {
        return sdp.to_owned();
    }
    let lines: Vec<&str> = sdp.split_inclusive('\n').collect();
    let mut out = String::with_capacity(sdp.len() + 32);
    let mut in_section = false;
    let mut done = false;
    for (index, line) in lines.iter().enumerate() {
        out.push_str(line);
        if let Some(media) = line.strip_prefix("m=") {
            in_section =
                media.starts_with(kind) && media.split(' ').nth(1).is_none_or(|port| port != "0");
        }
        if !in_section || done {
            continue;
        }
        let next_is_connection = lines
            .get(index + 1)
            .is_some_and(|next| next.starts_with("c="));
        if (line.starts_with("m=") && !next_is_connection) || line.starts_with("c=") {
            let ending = if line.ends_with("\r\n") { "\r\n" } else { "\n" };
            for (kind, value) in bandwidth {
                out.push_str(&format!("b={kind}:{value}{ending}"));
            }
            done = true;
        }
    }
    out
}

/// Gives the media streams and tracks of `answer` ids of their own where they repeat the ids
/// of `offer`'s `a=msid` lines. The WebRTC engine answers a browser's m-line with the browser's
/// own stream and track ids; a client that tells streams apart by id (matrix-js-sdk, so
/// Element) then takes the remote stream for its own local one and never plays it. An id of
/// the offer becomes `gw-` and the id, the same in every answer, so that a renegotiation keeps
/// the streams the browser knows.
pub fn own_msid(answer: &str, offer: &str) -> String {
    let offered: std::collections::HashSet<&str> = offer
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix("a=msid:"))
        .flat_map(str::split_whitespace)
        .filter(|id| *id != "-")
        .collect();
    if offered.is_empty() {
        return answer.to_owned();
    }
    let own = |token: &str| -> String {
        // A token is an id, or ends in one after a colon (`a=msid:ID`, `msid:ID`).
        let (head, id) = token
            .rsplit_once(':')
            .map_or(("", token), |(head, id)| (head, id));
        let colon = if token.contains(':') { ":" } else { "" };
        if offered.contains(id) {
            format!("{head}{colon}gw-{id}")
        } else {
            token.to_owned()
        }
    };
    let mut out = String::with_capacity(answer.len() + 64);
    for line in answer.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let names_ids = ["a=msid:", "a=msid-semantic:", "a=ssrc:"]
            .iter()
            .any(|prefix| body.starts_with(prefix));
        if !names_ids {
            out.push_str(line);
            continue;
        }
        let rewritten: Vec<String> = body.split(' ').map(own).collect();
        out.push_str(&rewritten.join(" "));
        out.push_str(&line[body.len()..]);
    }
    out
}
