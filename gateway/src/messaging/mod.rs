//! Messages of browser accounts (SIP MESSAGE, RFC 3428): what the gateway sends is wrapped in
//! CPIM (RFC 3862) with the IMDN headers that ask for delivery and display notifications
//! (RFC 5438), as the reference server sends it (the documents are `crate::cpim`'s), and goes
//! out through the SIP driver. A phone that takes no CPIM (415 Unsupported Media Type) gets the
//! message again as it is, without the wrapper (and so without notifications).

pub(crate) mod local;

pub(crate) use crate::cpim::{
    Cpim, DISPOSITION, Incoming, Received, format_timestamp, imdn, parse_timestamp, read,
    valid_content_type, valid_message_id,
};
use protocol::Aor;
use sip::RequestOutcome;
use sip::driver::{Account, OutgoingMessage, SipHandle};

/// A SIP MESSAGE read: its sender (address and display name) and what it brings.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) from: Aor,
    pub(crate) display_name: Option<String>,
    pub(crate) incoming: Incoming,
}

/// Reads a SIP MESSAGE: its sender, and its body (CPIM unwrapped, with the Call-ID and CSeq
/// as the id of a body that has none); a SIP From that names nobody, or a CPIM From that is
/// not the SIP From, is refused (403), and a body that cannot be read gets its status.
pub(crate) fn read_request(message: &sip::Message) -> Result<Request, crate::cpim::Refusal> {
    let (from_uri, display_name) = sip::driver::sender(message);
    let Ok(from) = Aor::parse(&from_uri) else {
        return Err((403, "Forbidden (no SIP sender)"));
    };
    let fallback_id = match (message.call_id(), message.cseq()) {
        (Some(call_id), Ok(cseq)) => format!("{call_id}-{}", cseq.cseq),
        _ => uuid::Uuid::new_v4().to_string(),
    };
    let fallback_id = if valid_message_id(&fallback_id) {
        fallback_id
    } else {
        uuid::Uuid::new_v4().to_string()
    };
    let content_type = message
        .header(&ezk_sip_types::Name::CONTENT_TYPE)
        .unwrap_or_default();
    let now = format_timestamp(store::now_millis());
    let incoming = read(content_type, &message.body, &fallback_id, &now)?;
    if let Incoming::Message(received) = &incoming
        && received
            .cpim_from
            .as_deref()
            .is_some_and(|cpim| Aor::parse(cpim).ok().as_ref() != Some(&from))
    {
        return Err((403, "Forbidden (the CPIM From is not the SIP From)"));
    }
    Ok(Request {
        from,
        display_name,
        incoming,
    })
}

/// A message to send for an account.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// The account, as the SIP driver needs it.
    pub(crate) account: Account,
    /// Its address.
    pub(crate) from: Aor,
    /// The recipient.
    pub(crate) to: Aor,
    pub(crate) message_id: String,
    /// RFC 3339.
    pub(crate) timestamp: String,
    pub(crate) content_type: String,
    pub(crate) content: String,
    /// An IMDN (the content is one): it asks for no notification of its own and is marked as
    /// a notification (RFC 5438 section 7.1.1).
    pub(crate) notification: bool,
}

impl Outgoing {
    /// The CPIM document (RFC 3862 section 2) of the message.
    pub(crate) fn cpim(&self) -> String {
        Cpim {
            from: &self.from,
            display_name: self.account.display_name.as_deref(),
            to: &self.to,
            message_id: &self.message_id,
            timestamp: &self.timestamp,
            content_type: &self.content_type,
            content: &self.content,
            notification: self.notification,
        }
        .to_string()
    }

    /// Sends the message: in CPIM, then, when the far end refuses CPIM with 415, as it is.
    pub(crate) async fn send(&self, sip: &SipHandle) -> RequestOutcome {
        self.send_to(sip, None).await
    }

    /// As [`Outgoing::send`], to `binding` (a phone of the local domain) when given.
    pub(crate) async fn send_to(
        &self,
        sip: &SipHandle,
        binding: Option<&sip::Binding>,
    ) -> RequestOutcome {
        let outcome = self
            .send_as(sip, binding, "message/cpim", self.cpim())
            .await;
        // A notification without its CPIM wrapper would name no sender: not sent again.
        if outcome.code != 415 || self.notification {
            return outcome;
        }
        self.send_as(sip, binding, &self.content_type, self.content.clone())
            .await
    }

    async fn send_as(
        &self,
        sip: &SipHandle,
        binding: Option<&sip::Binding>,
        content_type: &str,
        body: String,
    ) -> RequestOutcome {
        let Some(uri) = sip::RequestUri::parse(&format!("sip:{}", self.to)) else {
            return RequestOutcome {
                code: 416,
                reason: "Unsupported URI Scheme".to_owned(),
            };
        };
        let outcome = sip.send_message(OutgoingMessage {
            account: self.account.clone(),
            uri,
            content_type: content_type.to_owned(),
            body: body.into(),
            call_id: uuid::Uuid::new_v4().to_string(),
            headers: Vec::new(),
            binding: binding.cloned(),
        });
        outcome.await.unwrap_or_else(|_| RequestOutcome {
            code: 503,
            reason: "Service Unavailable (the SIP stack stopped)".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPIM document as RFC 3862 lays it out, with RFC 5438's headers.
    #[test]
    fn cpim_wraps_the_message() {
        let outgoing = Outgoing {
            account: Account {
                user: "alice".into(),
                domain: "example.com".into(),
                display_name: Some("Alice \"A\"".into()),
                credentials: sip::Credentials {
                    username: "alice".into(),
                    secret: sip::Secret::Password("pw".into()),
                },
                user_agent: None,
                contact_params: Vec::new(),
            },
            from: Aor::parse("alice@example.com").unwrap(),
            to: Aor::parse("bob@example.org").unwrap(),
            message_id: "m1".into(),
            timestamp: "2026-12-04T10:00:00.000Z".into(),
            content_type: "text/plain".into(),
            content: "héllo".into(),
            notification: false,
        };
        assert_eq!(
            outgoing.cpim(),
            "From: \"Alice \\\"A\\\"\" <sip:alice@example.com>\r\nTo: <sip:bob@example.org>\r\n\
             DateTime: 2026-12-04T10:00:00.000Z\r\nNS: imdn <urn:ietf:params:imdn>\r\n\
             imdn.Message-ID: m1\r\nimdn.Disposition-Notification: positive-delivery, display\r\n\
             \r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhéllo"
        );
        // A notification asks for none and says what it is; what it carries reads back.
        let body = imdn("m&1", "2026-12-04T10:00:00.000Z", "displayed");
        let notification = Outgoing {
            content_type: "message/imdn+xml".into(),
            content: body.clone(),
            notification: true,
            ..outgoing
        };
        let document = notification.cpim();
        assert!(!document.contains("Disposition-Notification"), "{document}");
        assert!(
            document.contains(
                "Content-Type: message/imdn+xml\r\nContent-Disposition: notification\r\n"
            ),
            "{document}"
        );
        assert!(body.contains("<message-id>m&amp;1</message-id>"), "{body}");
        let read = read(
            "message/imdn+xml",
            imdn("m1", "2026-12-04T10:00:00.000Z", "delivered").as_bytes(),
            "x",
            "now",
        );
        assert_eq!(
            read,
            Ok(Incoming::Notification {
                message_id: "m1".into(),
                state: store::State::Delivered,
                datetime: Some("2026-12-04T10:00:00.000Z".into()),
            })
        );
    }
}
