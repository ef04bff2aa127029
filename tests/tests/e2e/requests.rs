//! Requests: exactly one reply each, in order; bad input never hurts the connection.

use std::time::Duration;

use gateway_tests::{Client, Gateway};
use protocol::{Event, ServerMessage, Version};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn every_request_gets_exactly_one_reply() {
    let gateway = Gateway::start_default().await;
    for version in Version::PREFERENCE {
        let mut client = gateway.client_version(version).await;
        client.expect_ack(json!({"sylkrtc": "ping"})).await;
        assert_eq!(
            client.expect_error(json!({"sylkrtc": "frobnicate"})).await,
            "unknown request: frobnicate"
        );
        assert_eq!(
            client
                .expect_error(json!({"sylkrtc": "session-update", "session": "s1", "sdp": "v=0"}))
                .await,
            "Unknown session: s1"
        );
        assert_eq!(
            client
                .expect_error(json!({"sylkrtc": "session-message", "session": "s1",
                    "message_id": "m1", "content": "hi", "content_type": "text/plain"}))
                .await,
            "Unknown session: s1"
        );
        for name in ["videoroom-join", "videoroom-leave"] {
            let request = json!({"sylkrtc": name, "account": "alice@example.com", "session": "s1",
                "uri": "bob@example.com", "sdp": "v=0"});
            assert_eq!(
                client.expect_error(request).await,
                format!("not supported yet: {name}")
            );
        }
        // The Sylk app waits for this event at every registration: ack, then "no key".
        client
            .expect_ack(json!({"sylkrtc": "lookup-public-key", "uri": "bob@example.com"}))
            .await;
        assert_eq!(
            client.recv().await,
            ServerMessage::Event(Event::PublicKey {
                uri: "bob@example.com".into(),
                public_key: None
            })
        );
        // A call from an account that was not added.
        assert_eq!(
            client
                .expect_error(
                    json!({"sylkrtc": "session-create", "account": "alice@example.com",
                    "session": "s1", "uri": "bob@example.com", "sdp": "v=0"})
                )
                .await,
            "Unknown account specified: alice@example.com"
        );
        // account-register of an account that was not added.
        assert_eq!(
            client
                .expect_error(
                    json!({"sylkrtc": "account-register", "account": "alice@example.com"})
                )
                .await,
            "Unknown account specified: alice@example.com"
        );
        assert_eq!(
            client
                .expect_error(json!({"sylkrtc": "account-remove", "account": 42}))
                .await,
            "invalid field `account`: expected a string"
        );
        assert_eq!(
            client
                .expect_error(json!({"sylkrtc": "session-terminate"}))
                .await,
            "missing field `session`"
        );
        // Nothing else follows any of these replies.
        client.expect_silence(QUIET).await;
    }
    assert_eq!(
        gateway
            .metric("sylkrtc_requests_total{request=\"ping\"}")
            .await,
        2.0
    );
    assert_eq!(
        gateway
            .metric("sylkrtc_errors_total{kind=\"unknown_request\"}")
            .await,
        2.0
    );
    assert_eq!(
        gateway
            .metric("sylkrtc_errors_total{kind=\"not_supported\"}")
            .await,
        4.0
    );
    assert_eq!(
        gateway
            .metric("sylkrtc_errors_total{kind=\"invalid\"}")
            .await,
        4.0
    );
}

#[tokio::test]
async fn bad_input_keeps_the_connection_open() {
    let gateway = Gateway::start_default().await;
    for version in Version::PREFERENCE {
        let mut bystander = gateway.client_version(version).await;
        let mut client = gateway.client_version(version).await;
        // Nothing can be answered without a transaction: these are only logged.
        client.send(Message::text("{this is not json")).await;
        client.send(Message::text("[1, 2, 3]")).await;
        client.send(Message::text(r#"{"sylkrtc":"ping"}"#)).await;
        client
            .send(Message::text(r#"{"sylkrtc":"ping","transaction":17}"#))
            .await;
        client
            .send(Message::binary(vec![0xde, 0xad, 0xbe, 0xef]))
            .await;
        client.expect_silence(QUIET).await;
        // A binary frame that holds a request with a transaction gets told why nothing happened.
        client
            .send(Message::binary(
                br#"{"sylkrtc":"ping","transaction":"bin"}"#.to_vec(),
            ))
            .await;
        assert_eq!(
            client.recv().await,
            ServerMessage::Error {
                transaction: "bin".into(),
                error: "binary frames are not supported: send each request as a text frame".into()
            }
        );
        // A message without `sylkrtc` but with a transaction is answered.
        assert_eq!(
            client.expect_error(json!({"transaction": "no-name"})).await,
            "missing field `sylkrtc`"
        );
        client.expect_ack(json!({"sylkrtc": "ping"})).await;
        bystander.expect_silence(QUIET).await;
        bystander.expect_ack(json!({"sylkrtc": "ping"})).await;
    }
    assert_eq!(
        gateway
            .metric("sylkrtc_errors_total{kind=\"malformed\"}")
            .await,
        8.0
    );
    assert_eq!(
        gateway
            .metric("sylkrtc_errors_total{kind=\"binary_frame\"}")
            .await,
        4.0
    );
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let gateway = Gateway::start_default().await;
    for version in Version::PREFERENCE {
        let mut client = gateway.client_version(version).await;
        let mut expected = Vec::new();
        for index in 0..300 {
            let transaction = format!("p{index}");
            let request = match index % 4 {
                0 => json!({"sylkrtc": "ping", "transaction": transaction}),
                1 => json!({"sylkrtc": "account-add", "transaction": transaction,
                    "account": format!("user{index}@example.com"), "password": "884edfee38ed471b8a15006700139485"}),
                2 => json!({"sylkrtc": "account-remove", "transaction": transaction,
                    "account": format!("user{}@example.com", index - 1)}),
                _ => json!({"sylkrtc": "nonsense", "transaction": transaction}),
            };
            client.feed(Message::text(request.to_string())).await;
            expected.push((transaction, index % 4 != 3));
        }
        client.flush().await;
        for (transaction, acked) in expected {
            match client.recv().await {
                ServerMessage::Ack { transaction: got } => {
                    assert!(acked, "{got} should be an error");
                    assert_eq!(got, transaction);
                }
                ServerMessage::Error {
                    transaction: got, ..
                } => {
                    assert!(!acked, "{got} should be acked");
                    assert_eq!(got, transaction);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        client.expect_silence(QUIET).await;
    }
}

#[tokio::test]
async fn one_client_going_away_mid_request_does_not_disturb_others() {
    let gateway = Gateway::start_default().await;
    let mut survivor = gateway.client().await;
    let mut quitter = gateway.client().await;
    quitter
        .feed(Message::text(
            json!({"sylkrtc": "ping", "transaction": "x"}).to_string(),
        ))
        .await;
    quitter.flush().await;
    drop(quitter);
    survivor.expect_ack(json!({"sylkrtc": "ping"})).await;
    let client: Client = gateway.client().await;
    drop(client);
    survivor.expect_ack(json!({"sylkrtc": "ping"})).await;
}
