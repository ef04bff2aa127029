//! The homeserver's client-server API as the bridge uses it: registering its ghosts, joining
//! rooms and sending events as them (the application service's token, `user_id=` naming the
//! ghost, as the application service API has it).

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::config::HttpUrl;
use crate::http::client::request;

/// How long a request to the homeserver may take: past it, what it was for fails (a call is
/// refused or ended saying so) instead of holding the bridge.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long an event that ends something (a hang-up, a rejection, a notice) is tried again
/// while the homeserver cannot be reached (restarted, say), a second apart.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// The homeserver, and the bridge's token there (cheap to clone: one client).
#[derive(Clone)]
pub(super) struct Homeserver {
    url: HttpUrl,
    as_token: String,
    /// Numbers the bridge's transactions (event sends), unique within this run.
    next_transaction: std::sync::Arc<AtomicU64>,
    /// Tells this run's transaction ids from an earlier run's.
    run: String,
}

impl Homeserver {
    pub(super) fn new(url: HttpUrl, as_token: String) -> Self {
        Homeserver {
            url,
            as_token,
            next_transaction: std::sync::Arc::new(AtomicU64::new(1)),
            run: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Registers the ghost `localpart` (one that exists already is fine).
    pub(super) async fn register(&self, localpart: &str) -> Result<(), String> {
        let body = json!({"type": "m.login.application_service", "username": localpart});
        let (status, answer) = self
            .call(
                hyper::Method::POST,
                "/_matrix/client/v3/register".into(),
                Some(body),
            )
            .await?;
        if (200..300).contains(&status) || errcode(&answer) == Some("M_USER_IN_USE") {
            Ok(())
        } else {
            Err(failure("register", status, &answer))
        }
    }

    /// `user_id` joins `room`.
    pub(super) async fn join(&self, room: &str, user_id: &str) -> Result<(), String> {
        let path = format!(
            "/_matrix/client/v3/join/{}?user_id={}",
            encode(room),
            encode(user_id)
        );
        let (status, answer) = self
            .call(hyper::Method::POST, path, Some(json!({})))
            .await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(failure("join", status, &answer))
        }
    }

    /// `user_id` sends an event of `kind` to `room`.
    pub(super) async fn send(
        &self,
        room: &str,
        user_id: &str,
        kind: &str,
        content: &Value,
    ) -> Result<(), String> {
        let transaction = self.transaction();
        self.send_as(&transaction, room, user_id, kind, content)
            .await
            .map_err(|(error, _)| error)
    }

    /// As [`Homeserver::send`], in a task of its own that tries again (the same transaction,
    /// so the homeserver takes it once) while the homeserver cannot be reached or fails
    /// (5xx, 429), for up to [`RETRY_FOR`]: what ends a call reaches the room once the
    /// homeserver is back.
    pub(super) fn send_reliably(&self, room: &str, user_id: &str, kind: &str, content: Value) {
        let homeserver = self.clone();
        let (room, user_id, kind) = (room.to_owned(), user_id.to_owned(), kind.to_owned());
        tokio::spawn(async move {
            let transaction = homeserver.transaction();
            let deadline = tokio::time::Instant::now() + RETRY_FOR;
            loop {
                let sent = homeserver
                    .send_as(&transaction, &room, &user_id, &kind, &content)
                    .await;
                match sent {
                    Ok(()) => return,
                    Err((error, retry)) if retry && tokio::time::Instant::now() < deadline => {
                        tracing::debug!(%room, %kind, "tried again in a second: {error}");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                    Err((error, _)) => {
                        tracing::warn!(%room, %kind, "the ghost's event is not sent: {error}");
                        return;
                    }
                }
            }
        });
    }

    fn transaction(&self) -> String {
        format!(
            "{}-{}",
            self.run,
            self.next_transaction.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Sends the event; an error says whether trying again may help.
    async fn send_as(
        &self,
        transaction: &str,
        room: &str,
        user_id: &str,
        kind: &str,
        content: &Value,
    ) -> Result<(), (String, bool)> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/{}/{}?user_id={}",
            encode(room),
            encode(kind),
            encode(transaction),
            encode(user_id)
        );
        let (status, answer) = self
            .call(hyper::Method::PUT, path, Some(content.clone()))
            .await
            .map_err(|error| (error, true))?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err((
                failure(kind, status, &answer),
                status >= 500 || status == 429,
            ))
        }
    }

    /// `user_id` opens a direct room with `invitee` (invited, not encrypted): its id.
    pub(super) async fn create_direct_room(
        &self,
        user_id: &str,
        invitee: &str,
        name: &str,
    ) -> Result<String, String> {
        let path = format!("/_matrix/client/v3/createRoom?user_id={}", encode(user_id));
        let body = json!({"preset": "trusted_private_chat", "is_direct": true,
            "invite": [invitee], "name": name});
        let (status, answer) = self.call(hyper::Method::POST, path, Some(body)).await?;
        match answer.get("room_id").and_then(Value::as_str) {
            Some(room) if (200..300).contains(&status) => Ok(room.to_owned()),
            _ => Err(failure("createRoom", status, &answer)),
        }
    }

    /// What the room `room` says of `member`'s membership (`join`, `invite`, `leave`, ...),
    /// read as `user_id`; `None` when it has no such state.
    pub(super) async fn membership(
        &self,
        room: &str,
        user_id: &str,
        member: &str,
    ) -> Result<Option<String>, String> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}?user_id={}",
            encode(room),
            encode(member),
            encode(user_id)
        );
        let (status, answer) = self.call(hyper::Method::GET, path, None).await?;
        match status {
            200..300 => Ok(answer
                .get("membership")
                .and_then(Value::as_str)
                .map(str::to_owned)),
            404 => Ok(None),
            _ => Err(failure("membership", status, &answer)),
        }
    }

    /// The members who joined `room`, read as `user_id`.
    pub(super) async fn joined_members(
        &self,
        room: &str,
        user_id: &str,
    ) -> Result<Vec<String>, String> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/joined_members?user_id={}",
            encode(room),
            encode(user_id)
        );
        let (status, answer) = self.call(hyper::Method::GET, path, None).await?;
        if !(200..300).contains(&status) {
            return Err(failure("joined_members", status, &answer));
        }
        Ok(answer
            .get("joined")
            .and_then(Value::as_object)
            .map(|joined| joined.keys().cloned().collect())
            .unwrap_or_default())
    }

    /// Whether `room` has end-to-end encryption turned on, read as `user_id`.
    pub(super) async fn encrypted(&self, room: &str, user_id: &str) -> Result<bool, String> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.encryption/?user_id={}",
            encode(room),
            encode(user_id)
        );
        let (status, answer) = self.call(hyper::Method::GET, path, None).await?;
        match status {
            200..300 => Ok(true),
            404 => Ok(false),
            _ => Err(failure("m.room.encryption", status, &answer)),
        }
    }

    /// `user_id`'s display name becomes `name`.
    pub(super) async fn set_display_name(&self, user_id: &str, name: &str) -> Result<(), String> {
        let path = format!(
            "/_matrix/client/v3/profile/{}/displayname?user_id={}",
            encode(user_id),
            encode(user_id)
        );
        let body = json!({"displayname": name});
        let (status, answer) = self.call(hyper::Method::PUT, path, Some(body)).await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(failure("displayname", status, &answer))
        }
    }

    async fn call(
        &self,
        method: hyper::Method,
        path: String,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let sent = request(
            &self.url,
            method,
            &path,
            Some(&self.as_token),
            body.map(|body| body.to_string()),
        );
        let (status, bytes) =
            tokio::time::timeout(REQUEST_TIMEOUT, sent)
                .await
                .map_err(|_| {
                    format!(
                        "the homeserver did not answer within {} s",
                        REQUEST_TIMEOUT.as_secs()
                    )
                })??;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

fn errcode(answer: &Value) -> Option<&str> {
    answer.get("errcode").and_then(Value::as_str)
}

fn failure(what: &str, status: u16, answer: &Value) -> String {
    let error = answer.get("error").and_then(Value::as_str).unwrap_or("");
    format!(
        "{what}: {status} {} {error}",
        errcode(answer).unwrap_or("(no errcode)")
    )
}

/// `text` percent-encoded for a path segment or a query value (only RFC 3986's unreserved
/// characters stay).
fn encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_percent_encoded() {
        assert_eq!(
            encode("@sip_bob=40example.com:hs.test"),
            "%40sip_bob%3D40example.com%3Ahs.test"
        );
        assert_eq!(encode("!abc-_DEF:hs.test"), "%21abc-_DEF%3Ahs.test");
    }
}
