//! Pushes for the local domain: a user's app gives its token (`account-devicetoken`), goes
//! away, and the gateway asks the push service (`[local] push_url`) to wake it when a message
//! or a call comes; a call waits, ringing, for the woken app to connect and then reaches it,
//! and a caller who gives up first has the devices told `cancel`. The push service here is an
//! HTTP listener of the test that records what it is sent and answers as sylk-pushserver does
//! (202 with its JSON), since the real one needs Apple's and Google's credentials.

use std::time::Duration;

use gateway_tests::browser::{AudioCodec, Browser};
use gateway_tests::{Client, Gateway};
use protocol::{AccountEvent, Event, ServerMessage, SessionState};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::calls::{next, until};
use crate::conversations::register;
use crate::local::{DOMAIN, WAIT, closed, closed_client, create_session, phone};

/// An HTTP listener that records each POST's path and JSON body.
struct PushService {
    port: u16,
    requests: mpsc::UnboundedReceiver<(String, Value)>,
}

impl PushService {
    async fn start() -> PushService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, requests) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head, length) = loop {
                        let read = stream.read(&mut chunk).await.unwrap_or(0);
                        if read == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..read]);
                        let text = String::from_utf8_lossy(&buffer).into_owned();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|line| {
                                    let (name, value) = line.split_once(':')?;
                                    name.eq_ignore_ascii_case("content-length")
                                        .then(|| value.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while buffer.len() < head + length {
                        let read = stream.read(&mut chunk).await.unwrap_or(0);
                        if read == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..read]);
                    }
                    let request_line = String::from_utf8_lossy(&buffer[..head])
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let body: Value =
                        serde_json::from_slice(&buffer[head..head + length]).unwrap_or(Value::Null);
                    let answer =
                        r#"{"code": 202, "description": "accepted for delivery", "data": {}}"#;
                    let response = format!(
                        "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = tx.send((request_line, body));
                });
            }
        });
        PushService { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/push", self.port)
    }

    /// The next push (its JSON), after checking it was a POST to the configured path.
    async fn next(&mut self) -> Value {
        let (line, body) = tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("a push in time")
            .expect("the push service runs");
        assert!(line.starts_with("POST /push HTTP/1.1"), "{line}");
        body
    }

    async fn expect_none(&mut self, wait: Duration) {
        if let Ok(Some(push)) = tokio::time::timeout(wait, self.requests.recv()).await {
            panic!("an unexpected push: {push:?}");
        }
    }
}

fn token(value: Option<&str>) -> Value {
    json!({"sylkrtc": "account-devicetoken", "account": format!("bob@{DOMAIN}"),
        "token": value, "platform": "firebase", "device": "pixel-7", "app": "com.example.sylk",
        "silent": false})
}

async fn registered(gateway: &Gateway, user: &str) -> Client {
    let mut client = closed_client(gateway, user).await;
    register(&mut client, &format!("{user}@{DOMAIN}")).await;
    client
}

/// The next incoming call of `client`: its session id.
async fn incoming(client: &mut Client) -> String {
    loop {
        if let ServerMessage::Event(Event::Account {
            event: AccountEvent::IncomingSession { session, .. },
            ..
        }) = next(client).await
        {
            return session;
        }
    }
}

/// The fields every push carries for bob's device.
fn assert_for_bobs_device(push: &Value, event: &str) {
    assert_eq!(push["event"], event, "{push}");
    assert_eq!(push["to"], format!("bob@{DOMAIN}"), "{push}");
    assert_eq!(push["token"], "tok-1", "{push}");
    assert_eq!(push["app-id"], "com.example.sylk", "{push}");
    assert_eq!(push["platform"], "firebase", "{push}");
    assert_eq!(push["device-id"], "pixel-7", "{push}");
}

#[tokio::test]
async fn a_users_devices_are_woken_for_messages_and_calls() {
    let mut push = PushService::start().await;
    let mut config = closed(&["alice", "bob", "carol"]);
    config.local.push_url = push.url();
    let gateway = Gateway::start(config).await;

    // Only a registered account gives its token: no one has another's calls announced.
    let mut stranger = closed_client(&gateway, "bob").await;
    assert_eq!(
        stranger.expect_error(token(Some("tok-evil"))).await,
        "Account not authenticated"
    );
    stranger.close().await;
    let mut bob = registered(&gateway, "bob").await;
    bob.expect_ack(token(Some("tok-1"))).await;
    bob.close().await;

    // A message while bob is away: kept (202) and his device woken with it.
    let mut alice = registered(&gateway, "alice").await;
    alice
        .expect_ack(
            json!({"sylkrtc": "account-message", "account": format!("alice@{DOMAIN}"),
            "uri": format!("bob@{DOMAIN}"), "message_id": "m1", "content": "hello bob",
            "content_type": "text/plain", "timestamp": "2026-12-04T10:00:00.000Z"}),
        )
        .await;
    let pushed = push.next().await;
    assert_for_bobs_device(&pushed, "message");
    assert_eq!(
        (
            &pushed["call-id"],
            &pushed["from"],
            &pushed["content"],
            &pushed["media-type"]
        ),
        (
            &json!("m1"),
            &json!(format!("alice@{DOMAIN}")),
            &json!("hello bob"),
            &json!("sms")
        )
    );

    // A call while bob is away: his device is woken, the call waits, and reaches the app once
    // it connects.
    let caller = Browser::new(&[AudioCodec::Pcmu]).await;
    create_session(
        &mut alice,
        "c1",
        &format!("bob@{DOMAIN}"),
        &caller.offer().await,
    )
    .await;
    let pushed = push.next().await;
    assert_for_bobs_device(&pushed, "incoming_session");
    assert_eq!(
        (&pushed["call-id"], &pushed["media-type"]),
        (&json!("c1"), &json!("audio"))
    );
    // alice hears it ring while bob's device wakes (as a phone caller hears 180).
    until(&mut alice, "c1", |state| *state == SessionState::Ringing).await;
    let mut bob = registered(&gateway, "bob").await;
    let session = incoming(&mut bob).await;
    bob.expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": session}))
        .await;
    let SessionState::Terminated { reason } = until(&mut alice, "c1", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert!(
        reason
            .as_deref()
            .is_some_and(|reason| reason.starts_with('6') || reason.starts_with('4')),
        "{reason:?}"
    );
    bob.close().await;

    // A caller who gives up while the device wakes: the device is told to stop ringing.
    create_session(
        &mut alice,
        "c2",
        &format!("bob@{DOMAIN}"),
        &caller.offer().await,
    )
    .await;
    assert_for_bobs_device(&push.next().await, "incoming_session");
    alice
        .expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": "c2"}))
        .await;
    let cancel = push.next().await;
    assert_for_bobs_device(&cancel, "cancel");
    assert_eq!(cancel["call-id"], "c2");
    until(&mut alice, "c2", |state| {
        matches!(state, SessionState::Terminated { .. })
    })
    .await;

    // A phone calls bob while he is away: ringing, woken, and the call reaches his app.
    let carol = phone(&gateway, "carol", "carolpw", 1000.0).await;
    carol.command("dial", &format!("sip:bob@{DOMAIN}"));
    let pushed = push.next().await;
    assert_for_bobs_device(&pushed, "incoming_session");
    assert_eq!(pushed["from"], format!("carol@{DOMAIN}"));
    assert!(
        carol.wait_for("CALL_RINGING", 1, WAIT).await,
        "{}",
        carol.log.text()
    );
    let mut bob = registered(&gateway, "bob").await;
    let session = incoming(&mut bob).await;
    bob.expect_ack_amid_events(json!({"sylkrtc": "session-terminate", "session": session}))
        .await;
    assert!(
        carol.wait_for("CALL_CLOSED", 1, WAIT).await,
        "{}",
        carol.log.text()
    );

    // With the token removed, nothing more is pushed.
    bob.expect_ack_amid_events(token(None)).await;
    bob.close().await;
    alice
        .expect_ack(
            json!({"sylkrtc": "account-message", "account": format!("alice@{DOMAIN}"),
            "uri": format!("bob@{DOMAIN}"), "message_id": "m2", "content": "still there?",
            "content_type": "text/plain"}),
        )
        .await;
    push.expect_none(Duration::from_secs(1)).await;
    caller.close().await;
    assert_eq!(gateway.metric("sylkrtc_calls").await, 0.0);
}
