//! Pushes for the local domain: when a call or a message comes for a user none of whose
//! browsers is connected, the push service (`[local] push_url`) is asked to wake each device
//! whose token the user gave (`account-devicetoken`, kept in the store), with one HTTP POST of
//! JSON per device as sylk-pushserver takes it; a call that ends unanswered is followed by a
//! `cancel`. Pushes go in tasks of their own: a push service that is slow or down delays
//! nothing, and its failures are logged.
//!
//! Plain HTTP, as push services sit next to the servers that use them; the body is made by a
//! pure function, tested apart from the sending.

use std::sync::Arc;
use std::time::Duration;

use protocol::Aor;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::config::HttpUrl;
use crate::storage::Storage;

/// How long one push request may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call for a user with no place to ring waits for a device the push woke to
/// connect (a phone's app takes a few seconds to start and register).
pub(crate) const CALL_WAIT: Duration = Duration::from_secs(30);
/// How often a waiting call looks for the woken device.
pub(crate) const CALL_POLL: Duration = Duration::from_millis(200);
/// A message body longer than this is not put into its push (APNs takes 4 KB in all).
const MAX_PUSHED_CONTENT: usize = 1000;

/// What a push announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wake {
    /// A call rings for the user.
    Call {
        call_id: String,
        from: String,
        display_name: Option<String>,
        video: bool,
    },
    /// That call stopped ringing (answered elsewhere, cancelled, not answered).
    Cancel { call_id: String, from: String },
    /// A message came for the user.
    Message {
        message_id: String,
        from: String,
        display_name: Option<String>,
        content_type: String,
        content: String,
    },
}

/// Whether an offer has a video stream (an `m=video` line with a port), for the push's
/// `media-type`.
pub(crate) fn offers_video(sdp: &[u8]) -> bool {
    String::from_utf8_lossy(sdp).lines().any(|line| {
        line.strip_prefix("m=video ")
            .and_then(|rest| rest.split(' ').next())
            .is_some_and(|port| port != "0")
    })
}

/// The JSON of one push, for one device of `to`.
pub(crate) fn body(token: &store::PushToken, to: &Aor, wake: &Wake) -> Value {
    let mut body = json!({
        "app-id": token.app,
        "platform": token.platform,
        "token": token.token,
        "device-id": token.device,
        "to": to.to_string(),
        "silent": token.silent,
    });
    let fields = body.as_object_mut().expect("an object");
    let mut put = |name: &str, value: Value| {
        fields.insert(name.to_owned(), value);
    };
    match wake {
        Wake::Call {
            call_id,
            from,
            display_name,
            video,
        } => {
            put("event", json!("incoming_session"));
            put("call-id", json!(call_id));
            put("from", json!(from));
            put(
                "from_display_name",
                json!(display_name.as_deref().unwrap_or(from)),
            );
            put("media-type", json!(if *video { "video" } else { "audio" }));
        }
        Wake::Cancel { call_id, from } => {
            put("event", json!("cancel"));
            put("call-id", json!(call_id));
            put("from", json!(from));
        }
        Wake::Message {
            message_id,
            from,
            display_name,
            content_type,
            content,
        } => {
            put("event", json!("message"));
            put("call-id", json!(message_id));
            put("from", json!(from));
            put(
                "from_display_name",
                json!(display_name.as_deref().unwrap_or(from)),
            );
            put("media-type", json!("sms"));
            put("content_type", json!(content_type));
            if content.len() <= MAX_PUSHED_CONTENT {
                put("content", json!(content));
            }
        }
    }
    body
}

/// The push service and where the tokens are.
#[derive(Debug)]
pub(crate) struct Pusher {
    url: HttpUrl,
    storage: Arc<Storage>,
}

impl Pusher {
    /// The pusher of `[local] push_url`, none when it is empty.
    pub(crate) fn new(url: &str, storage: Arc<Storage>) -> Option<Arc<Pusher>> {
        if url.is_empty() {
            return None;
        }
        let url = HttpUrl::parse(url).ok()?;
        Some(Arc::new(Pusher { url, storage }))
    }

    /// Whether any device of `to` gave a token (a store that cannot answer: none).
    pub(crate) async fn has_tokens(&self, to: &Aor) -> bool {
        let tokens = match self.storage.get() {
            Ok(store) => store.push_tokens(&to.key()).await,
            Err(error) => Err(error),
        };
        match tokens {
            Ok(tokens) => !tokens.is_empty(),
            Err(error) => {
                warn!(%to, "no push: the tokens cannot be read: {error}");
                false
            }
        }
    }

    /// Wakes every device of `to` that gave a token, in a task of its own.
    pub(crate) fn wake(self: &Arc<Self>, to: &Aor, wake: Wake) {
        let pusher = self.clone();
        let to = to.clone();
        tokio::spawn(async move {
            let tokens = match pusher.storage.get() {
                Ok(store) => store.push_tokens(&to.key()).await,
                Err(error) => Err(error),
            };
            let tokens = match tokens {
                Ok(tokens) => tokens,
                Err(error) => {
                    warn!(%to, "no push: the tokens cannot be read: {error}");
                    return;
                }
            };
            if tokens.is_empty() {
                debug!(%to, "no push: no device gave a token");
            }
            for token in tokens {
                let body = body(&token, &to, &wake);
                match tokio::time::timeout(TIMEOUT, pusher.post(body.to_string())).await {
                    Ok(Ok(status)) if (200..300).contains(&status) => {
                        info!(%to, device = %token.device, status, "push sent");
                    }
                    Ok(Ok(status)) => {
                        warn!(%to, device = %token.device, status, "push refused");
                    }
                    Ok(Err(error)) => warn!(%to, "push failed: {error}"),
                    Err(_) => warn!(%to, "push failed: no answer in {} s", TIMEOUT.as_secs()),
                }
            }
        });
    }

    /// One POST; the response's status.
    async fn post(&self, body: String) -> Result<u16, String> {
        let path = self.url.path.clone();
        crate::http::client::request(&self.url, hyper::Method::POST, &path, None, Some(body))
            .await
            .map(|(status, _)| status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_is_an_m_line_with_a_port() {
        assert!(offers_video(
            b"v=0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\n"
        ));
        assert!(!offers_video(
            b"v=0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n"
        ));
        assert!(!offers_video(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"));
    }

    /// The fields sylk-pushserver reads, per event.
    #[test]
    fn bodies_say_what_wakes_the_device() {
        let token = store::PushToken {
            device: "d1".into(),
            app: "com.example.app".into(),
            platform: "firebase".into(),
            token: "tok".into(),
            silent: false,
        };
        let bob = Aor::parse("bob@local.test").unwrap();
        let call = body(
            &token,
            &bob,
            &Wake::Call {
                call_id: "c1".into(),
                from: "alice@local.test".into(),
                display_name: None,
                video: true,
            },
        );
        assert_eq!(
            call,
            json!({"app-id": "com.example.app", "platform": "firebase", "token": "tok",
                "device-id": "d1", "to": "bob@local.test", "silent": false,
                "event": "incoming_session", "call-id": "c1", "from": "alice@local.test",
                "from_display_name": "alice@local.test", "media-type": "video"})
        );
        let cancel = body(
            &token,
            &bob,
            &Wake::Cancel {
                call_id: "c1".into(),
                from: "alice@local.test".into(),
            },
        );
        assert_eq!(cancel["event"], "cancel");
        assert!(cancel.get("media-type").is_none());
        let message = |content: String| {
            body(
                &token,
                &bob,
                &Wake::Message {
                    message_id: "m1".into(),
                    from: "alice@local.test".into(),
                    display_name: Some("Alice".into()),
                    content_type: "text/plain".into(),
                    content,
                },
            )
        };
        let short = message("hi".into());
        assert_eq!(
            (
                &short["event"],
                &short["call-id"],
                &short["media-type"],
                &short["content"]
            ),
            (&json!("message"), &json!("m1"), &json!("sms"), &json!("hi"))
        );
        assert_eq!(short["from_display_name"], "Alice");
        assert!(message("x".repeat(2000)).get("content").is_none());
    }
}
