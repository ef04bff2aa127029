//! One sylkRTC connection's protocol state, sans-IO.
//!
//! [`Connection`] takes the text of each client message and queues the replies and events to
//! send, in order; the WebSocket driver (`ws.rs`) moves text between it and the socket. It owns
//! everything the connection has (its accounts), so dropping it releases all of that.
//!
//! Ordering (spec section 1): requests are handled one at a time, and whatever a handler emits
//! itself is queued before its `ack` or `error`. No handler waits on the network: work that
//! needs SIP or media will be started here and report back later as events.

use std::collections::VecDeque;
use std::sync::Arc;

use protocol::{
    AccountAdd, Aor, Error as ProtocolError, Event, Request, RequestBody, RequestError, Secret,
    ServerMessage, Version,
};

use crate::metrics::ErrorKind;

/// The SIP domains accounts may belong to (`[accounts] sip_domains`).
#[derive(Debug)]
pub(crate) struct SipDomains {
    /// Lower-case domains; `None` when any domain is allowed.
    allowed: Option<Vec<String>>,
}

impl SipDomains {
    pub(crate) fn new(domains: &[String]) -> Self {
        let allowed = (!domains.iter().any(|domain| domain == "*")).then(|| {
            domains
                .iter()
                .map(|domain| domain.to_ascii_lowercase())
                .collect()
        });
        SipDomains { allowed }
    }

    fn allows(&self, domain: &str) -> bool {
        match &self.allowed {
            None => true,
            Some(list) => list.iter().any(|allowed| allowed == domain),
        }
    }
}

/// An account added on this connection.
#[derive(Debug)]
struct Account {
    aor: Aor,
    #[expect(
        dead_code,
        reason = "read by SIP registration and calls, which are not built yet"
    )]
    secret: Secret,
    #[expect(
        dead_code,
        reason = "read by SIP registration and calls, which are not built yet"
    )]
    display_name: Option<String>,
    #[expect(
        dead_code,
        reason = "read by SIP registration and calls, which are not built yet"
    )]
    user_agent: Option<String>,
    #[expect(dead_code, reason = "read by incoming calls, which are not built yet")]
    incoming_header_prefixes: Vec<String>,
}

/// What became of one client message: for metrics and logs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Handled {
    /// The request name, when the message had one (any string the client sent).
    pub(crate) name: Option<String>,
    pub(crate) outcome: Outcome,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered with `ack`.
    Ack,
    /// Answered with `error`.
    Error { kind: ErrorKind, text: String },
    /// Not answerable (no transaction could be read): only logged.
    Unanswered { kind: ErrorKind, reason: String },
}

/// The protocol state of one connection.
#[derive(Debug)]
pub(crate) struct Connection {
    version: Version,
    domains: Arc<SipDomains>,
    /// Accounts in the order they were added; a connection holds few, so a list is enough.
    accounts: Vec<Account>,
    /// Encoded messages waiting to be sent, in order.
    out: VecDeque<String>,
}

impl Connection {
    /// A new connection; its first output is the ready event.
    pub(crate) fn new(version: Version, domains: Arc<SipDomains>) -> Self {
        let mut connection = Connection {
            version,
            domains,
            accounts: Vec::new(),
            out: VecDeque::new(),
        };
        connection.send(ServerMessage::Event(Event::Ready));
        connection
    }

    /// The next message to send.
    pub(crate) fn poll_output(&mut self) -> Option<String> {
        self.out.pop_front()
    }

    pub(crate) fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Handles a text frame.
    pub(crate) fn handle_text(&mut self, text: &str) -> Handled {
        match Request::parse(text) {
            Ok(request) => self.handle_request(request),
            Err(error) => self.handle_invalid(error),
        }
    }

    /// Handles a binary frame: the protocol is text only, but if the payload is a request with a
    /// transaction, the client gets told why nothing happened.
    pub(crate) fn handle_binary(&mut self, data: &[u8]) -> Handled {
        let transaction =
            std::str::from_utf8(data)
                .ok()
                .and_then(|text| match Request::parse(text) {
                    Ok(request) => Some(request.transaction),
                    Err(error) => error.transaction,
                });
        let kind = ErrorKind::BinaryFrame;
        match transaction {
            Some(transaction) => {
                let text =
                    "binary frames are not supported: send each request as a text frame".to_owned();
                self.reply_error(transaction, text.clone());
                Handled {
                    name: None,
                    outcome: Outcome::Error { kind, text },
                }
            }
            None => Handled {
                name: None,
                outcome: Outcome::Unanswered {
                    kind,
                    reason: format!("binary frame of {} bytes ignored", data.len()),
                },
            },
        }
    }

    fn handle_invalid(&mut self, error: RequestError) -> Handled {
        let kind = match error.error {
            ProtocolError::Json(_) | ProtocolError::NotAnObject => ErrorKind::Malformed,
            ProtocolError::UnknownRequest(_) => ErrorKind::UnknownRequest,
            _ if error.transaction.is_none() => ErrorKind::Malformed,
            _ => ErrorKind::Invalid,
        };
        let text = error.to_string();
        let outcome = match error.transaction {
            Some(transaction) => {
                self.reply_error(transaction, text.clone());
                Outcome::Error { kind, text }
            }
            None => Outcome::Unanswered { kind, reason: text },
        };
        Handled {
            name: error.name,
            outcome,
        }
    }

    fn handle_request(&mut self, request: Request) -> Handled {
        let name = request.body.name();
        let result = match request.body {
            RequestBody::Ping => Ok(()),
            RequestBody::AccountAdd(add) => self.account_add(add),
            RequestBody::AccountRemove { account } => self.account_remove(&account),
            _ => Err((
                ErrorKind::NotSupported,
                format!("not supported yet: {name}"),
            )),
        };
        let outcome = match result {
            Ok(()) => {
                self.send(ServerMessage::Ack {
                    transaction: request.transaction,
                });
                Outcome::Ack
            }
            Err((kind, text)) => {
                self.reply_error(request.transaction, text.clone());
                Outcome::Error { kind, text }
            }
        };
        Handled {
            name: Some(name.to_owned()),
            outcome,
        }
    }

    fn account_add(&mut self, add: AccountAdd) -> Result<(), (ErrorKind, String)> {
        if !self.domains.allows(&add.account.domain()) {
            return Err((
                ErrorKind::Refused,
                format!("SIP domain not allowed: {}", add.account.host()),
            ));
        }
        if self
            .accounts
            .iter()
            .any(|account| account.aor == add.account)
        {
            return Err((
                ErrorKind::Refused,
                format!("Account {} already added", add.account),
            ));
        }
        self.accounts.push(Account {
            aor: add.account,
            secret: add.secret,
            display_name: add.display_name,
            user_agent: add.user_agent,
            incoming_header_prefixes: add.incoming_header_prefixes,
        });
        Ok(())
    }

    fn account_remove(&mut self, aor: &Aor) -> Result<(), (ErrorKind, String)> {
        match self.accounts.iter().position(|account| account.aor == *aor) {
            Some(index) => {
                self.accounts.remove(index);
                Ok(())
            }
            None => Err((
                ErrorKind::Refused,
                format!("Unknown account specified: {aor}"),
            )),
        }
    }

    fn reply_error(&mut self, transaction: String, error: String) {
        self.send(ServerMessage::Error { transaction, error });
    }

    fn send(&mut self, message: ServerMessage) {
        self.out.push_back(message.encode(self.version));
    }
}

/// A client message made safe for the log: the `password` of `account-add` is masked.
///
/// The message is parsed rather than searched, since JSON escapes (`"pass\u0077ord"`) would
/// slip past a text search; text that does not parse is shown only if it cannot hold a secret.
pub(crate) fn redact(text: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(mut map)) => {
            if let Some(password) = map.get_mut("password") {
                *password = serde_json::Value::from("<redacted>");
                return serde_json::Value::Object(map).to_string();
            }
            text.to_owned()
        }
        Ok(_) => text.to_owned(),
        Err(_) if text.contains("password") || text.contains("\\u") => {
            format!(
                "<{} bytes of malformed JSON, not shown as it may hold a password>",
                text.len()
            )
        }
        Err(_) => text.to_owned(),
    }
}

#[cfg(test)]
mod tests;
