//! The documents messages are made of, pure: CPIM (RFC 3862) with the IMDN headers that ask
//! for delivery and display notifications (RFC 5438), IMDN documents, what a received body
//! carries (`incoming`), and the checks on what goes into their headers.
//!
//! Timestamps are RFC 3339 text (what `Date.toISOString()` gives) and milliseconds since 1970
//! for the store; both ways are here, without a date library.

mod incoming;

pub(crate) use incoming::{Incoming, Received, Refusal, read};
use protocol::Aor;

/// The notifications every message asks for, as the reference asks.
pub(crate) const DISPOSITION: [&str; 2] = ["positive-delivery", "display"];

/// A CPIM document (RFC 3862 section 2): its headers (with the IMDN ones that ask for
/// notifications, RFC 5438), then the message's MIME headers and content.
pub(crate) struct Cpim<'a> {
    pub(crate) from: &'a Aor,
    pub(crate) display_name: Option<&'a str>,
    pub(crate) to: &'a Aor,
    pub(crate) message_id: &'a str,
    /// RFC 3339.
    pub(crate) timestamp: &'a str,
    pub(crate) content_type: &'a str,
    pub(crate) content: &'a str,
    /// An IMDN (the content is one): it asks for no notification of its own and is marked as
    /// a notification (RFC 5438 section 7.1.1).
    pub(crate) notification: bool,
}

impl std::fmt::Display for Cpim<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let from = match self.display_name {
            Some(name) => format!(
                "\"{}\" <sip:{}>",
                name.replace('\\', "\\\\").replace('"', "\\\""),
                self.from
            ),
            None => format!("<sip:{}>", self.from),
        };
        let (asks, disposition) = if self.notification {
            (String::new(), "Content-Disposition: notification\r\n")
        } else {
            (
                format!(
                    "imdn.Disposition-Notification: {}\r\n",
                    DISPOSITION.join(", ")
                ),
                "",
            )
        };
        write!(
            f,
            "From: {from}\r\nTo: <sip:{}>\r\nDateTime: {}\r\nNS: imdn <urn:ietf:params:imdn>\r\n\
             imdn.Message-ID: {}\r\n{asks}\r\n\
             Content-Type: {}\r\n{disposition}Content-Length: {}\r\n\r\n{}",
            self.to,
            self.timestamp,
            self.message_id,
            self.content_type,
            self.content.len(),
            self.content
        )
    }
}

/// An IMDN document (RFC 5438 section 7.2) saying that the message `message_id`, sent at
/// `datetime`, is now `state` (`delivered`, `displayed`, `failed`, `forbidden`, `error`).
pub(crate) fn imdn(message_id: &str, datetime: &str, state: &str) -> String {
    let kind = if state == "displayed" {
        "display"
    } else {
        "delivery"
    };
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
         <imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\r\n\
         <message-id>{}</message-id>\r\n<datetime>{}</datetime>\r\n\
         <{kind}-notification><status><{state}/></status></{kind}-notification>\r\n</imdn>",
        escape(message_id),
        escape(datetime)
    )
}

/// Whether a message id can go into a CPIM header as it is: 1 to 128 visible ASCII
/// characters (sylkrtc.js sends UUIDs).
pub(crate) fn valid_message_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|byte| byte.is_ascii_graphic())
}

/// Whether a content type is `type/subtype` with optional parameters, on one line.
pub(crate) fn valid_content_type(text: &str) -> bool {
    let essence = text.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&byte))
    };
    text.len() <= 256 && token(kind) && token(subtype) && !text.contains(['\r', '\n'])
}

/// Milliseconds since 1970 of an RFC 3339 timestamp (`2026-12-04T10:00:00.000Z`, an offset
/// instead of `Z`, fractions of any length), or `None` when it is not one.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !text.is_ascii() {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let hours = rest.get(1..3)?.parse::<i64>().ok()?;
            let minutes = rest.get(4..6)?.parse::<i64>().ok()?;
            if rest.len() != 6 || rest.as_bytes()[3] != b':' || hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 60 + minutes) * 60_000
        }
    };
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis - offset)
}

/// RFC 3339 text (UTC, milliseconds) of milliseconds since 1970.
pub(crate) fn format_timestamp(millis: i64) -> String {
    let days = millis.div_euclid(86_400_000);
    let rest = millis.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_both_ways() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_timestamp("2026-12-04T10:00:00.123Z"),
            Some(1_796_378_400_123)
        );
        assert_eq!(
            parse_timestamp("2026-12-04T11:30:00.5+01:30"),
            Some(1_796_378_400_500)
        );
        assert_eq!(
            format_timestamp(1_796_378_400_123),
            "2026-12-04T10:00:00.123Z"
        );
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        for millis in [951_782_400_000, 4_107_542_399_999, -86_400_000] {
            assert_eq!(parse_timestamp(&format_timestamp(millis)), Some(millis));
        }
        for bad in [
            "",
            "2026-12-04",
            "2026-13-04T10:00:00Z",
            "2026-12-04T10:00:00",
            "2026-12-04T10:00:00.Z",
            "2026-12-04T10:00:00Zjunk",
            "2026-12-04T10:00:00\r\nX: y",
            "2026-12-04T10:00:00+0100",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ids_and_types_that_could_break_a_header_are_refused() {
        assert!(valid_message_id("8f2c1e3a-0000-4000-8000-000000000000"));
        for bad in ["", "a b", "a\r\nb", &"x".repeat(129)] {
            assert!(!valid_message_id(bad), "{bad:?}");
        }
        for good in [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/sylk-file-transfer",
        ] {
            assert!(valid_content_type(good), "{good}");
        }
        for bad in [
            "text",
            "/plain",
            "text/",
            "text/plain\r\nX: y",
            "te xt/plain",
        ] {
            assert!(!valid_content_type(bad), "{bad:?}");
        }
    }
}
