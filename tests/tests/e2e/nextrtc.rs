//! The NextRTC conversation protocol at `/signaling`: real WebSockets, and two webrtc-rs peers
//! that connect to each other with the SDP and trickled candidates the gateway relays.

use std::time::Duration;

use gateway_tests::browser::{AudioCodec, Browser, trickle};
use gateway_tests::{Client, Gateway};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::calls::{browser_tone, until_heard};

const WAIT: Duration = Duration::from_secs(10);

async fn member(gateway: &Gateway) -> Client {
    Client::connect(&format!("ws://{}/signaling", gateway.addr), &[], None)
        .await
        .expect("the upgrade succeeds")
}

async fn send(client: &mut Client, message: Value) {
    client.send(Message::Text(message.to_string().into())).await;
}

/// The next message other than the periodic `ping`.
async fn next(client: &mut Client) -> Value {
    loop {
        let message: Value = serde_json::from_str(&client.recv_text().await).expect("JSON");
        if message["signal"] != "ping" {
            return message;
        }
    }
}

/// The next message, which must be `signal`.
async fn expect(client: &mut Client, signal: &str) -> Value {
    let message = next(client).await;
    assert_eq!(message["signal"], signal, "{message}");
    message
}

#[tokio::test]
async fn two_peers_connect_with_the_sdp_and_candidates_the_gateway_relays() {
    let gateway = Gateway::start_default().await;
    let mut alice = member(&gateway).await;
    let mut bob = member(&gateway).await;

    send(&mut alice, json!({"signal": "create", "content": "room"})).await;
    let created = expect(&mut alice, "created").await;
    assert_eq!(created["content"], "room");
    assert_eq!(created["custom"]["type"], "MESH");
    let alice_id = created["to"].as_str().expect("alice's id").to_owned();

    send(&mut bob, json!({"signal": "join", "content": "room"})).await;
    let joined = expect(&mut bob, "joined").await;
    let bob_id = joined["to"].as_str().expect("bob's id").to_owned();
    assert_ne!(alice_id, bob_id);
    assert_eq!(
        expect(&mut bob, "newJoined").await["from"],
        alice_id.as_str()
    );
    assert_eq!(
        expect(&mut alice, "newJoined").await["from"],
        bob_id.as_str()
    );
    // The member that was there first makes the offer.
    let request = expect(&mut alice, "offerRequest").await;
    assert_eq!(request["from"], bob_id.as_str());

    let mut alice_peer = Browser::new(&[AudioCodec::Pcmu]).await;
    let (offer, alice_candidates) = trickle(&alice_peer.offer().await);
    assert!(!alice_candidates.is_empty());
    // Candidates sent before the pair is finalised wait for it.
    for candidate in &alice_candidates {
        send(
            &mut alice,
            json!({"signal": "candidate", "to": bob_id, "content": candidate}),
        )
        .await;
    }
    send(
        &mut alice,
        json!({"signal": "offerResponse", "to": bob_id, "content": offer}),
    )
    .await;
    let request = expect(&mut bob, "answerRequest").await;
    assert_eq!(request["from"], alice_id.as_str());
    assert_eq!(request["content"], offer.as_str());

    let mut bob_peer = Browser::new(&[AudioCodec::Pcmu]).await;
    let (answer, bob_candidates) = trickle(&bob_peer.answer(&offer).await);
    send(
        &mut bob,
        json!({"signal": "answerResponse", "to": alice_id, "content": answer}),
    )
    .await;
    for candidate in &bob_candidates {
        send(
            &mut bob,
            json!({"signal": "candidate", "to": alice_id, "content": candidate}),
        )
        .await;
    }
    let finalize = expect(&mut alice, "finalize").await;
    assert_eq!(finalize["from"], bob_id.as_str());
    alice_peer.accept_answer(&answer).await;
    for expected in &bob_candidates {
        let candidate = expect(&mut alice, "candidate").await;
        assert_eq!(candidate["content"], expected.as_str());
        alice_peer.add_candidate(expected).await;
    }
    for expected in &alice_candidates {
        let candidate = expect(&mut bob, "candidate").await;
        assert_eq!(candidate["from"], alice_id.as_str());
        assert_eq!(candidate["content"], expected.as_str());
        bob_peer.add_candidate(expected).await;
    }
    assert!(alice_peer.connected(WAIT).await && bob_peer.connected(WAIT).await);

    // Media flows between the two peers directly.
    alice_peer.send_pcmu_tone(0, 440.0);
    bob_peer.send_pcmu_tone(0, 1000.0);
    let tone = || browser_tone(&bob_peer, 0, AudioCodec::Pcmu);
    assert_eq!(until_heard(440.0, tone).await.0, 440.0);
    let tone = || browser_tone(&alice_peer, 0, AudioCodec::Pcmu);
    assert_eq!(until_heard(1000.0, tone).await.0, 1000.0);

    // Text, then alice's connection closing, which is her leaving.
    send(
        &mut bob,
        json!({"signal": "text", "content": "hello <alice>"}),
    )
    .await;
    let text = expect(&mut alice, "text").await;
    assert_eq!(
        (text["from"].as_str(), text["content"].as_str()),
        (Some(bob_id.as_str()), Some("hello <alice>"))
    );
    alice.close().await;
    assert_eq!(expect(&mut bob, "left").await["from"], alice_id.as_str());
    alice_peer.close().await;
    bob_peer.close().await;
}

#[tokio::test]
async fn errors_keep_the_connection_open_and_pings_arrive() {
    let gateway = Gateway::start_default().await;
    let mut client = member(&gateway).await;
    client.send(Message::Text("{not json".into())).await;
    let error = expect(&mut client, "error").await;
    assert_eq!(error["content"], "UNKNOWN_ERROR");
    assert!(error["custom"]["stackTrace"].is_string(), "{error}");
    client.send(Message::Binary(vec![1, 2, 3].into())).await;
    expect(&mut client, "error").await;

    send(&mut client, json!({"signal": "Create", "content": "c1"})).await;
    expect(&mut client, "created").await;
    send(&mut client, json!({"signal": "create", "content": "c2"})).await;
    let error = expect(&mut client, "error").await;
    assert_eq!(error["content"], "MEMBER_IN_OTHER_CONVERSATION");
    let mut other = member(&gateway).await;
    send(&mut other, json!({"signal": "create", "content": "c1"})).await;
    assert_eq!(
        expect(&mut other, "error").await["content"],
        "CONVERSATION_NAME_OCCUPIED"
    );
    send(&mut other, json!({"signal": "left"})).await;
    assert_eq!(
        expect(&mut other, "error").await["content"],
        "CONVERSATION_NOT_FOUND"
    );

    // The first application-level ping comes after about a second, to every connection.
    let ping: Value = serde_json::from_str(&client.recv_text().await).expect("JSON");
    assert_eq!(ping["signal"], "ping");
    assert_eq!(ping["content"], "");

    // A member that vanishes leaves nothing behind: its conversation's name is free again.
    // (Once its connection task has ended, which it tells the hub before the gauge drops.)
    drop(client);
    let series = "sylkrtc_signalling_connections{protocol=\"nextrtc\"}";
    let deadline = tokio::time::Instant::now() + WAIT;
    while gateway.metric(series).await != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection stays open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(&mut other, json!({"signal": "create", "content": "c1"})).await;
    expect(&mut other, "created").await;
    // Four frames from the first member, three from the other.
    assert_eq!(
        gateway
            .metric("sylkrtc_signalling_messages_total{protocol=\"nextrtc\",direction=\"in\"}")
            .await,
        7.0
    );
}

#[tokio::test]
async fn a_broadcast_ends_for_the_audience_when_the_broadcaster_leaves() {
    let gateway = Gateway::start_default().await;
    let mut broadcaster = member(&gateway).await;
    let mut audience = member(&gateway).await;
    send(
        &mut broadcaster,
        json!({"signal": "create", "content": "show", "custom": {"type": "BROADCAST"}}),
    )
    .await;
    let created = expect(&mut broadcaster, "created").await;
    assert_eq!(created["custom"]["type"], "BROADCAST");
    let broadcaster_id = created["to"].as_str().expect("an id").to_owned();
    send(&mut audience, json!({"signal": "join", "content": "show"})).await;
    expect(&mut audience, "joined").await;
    assert_eq!(
        expect(&mut audience, "newJoined").await["from"],
        broadcaster_id.as_str()
    );
    expect(&mut broadcaster, "newJoined").await;
    expect(&mut broadcaster, "offerRequest").await;
    send(&mut broadcaster, json!({"signal": "left"})).await;
    assert_eq!(
        expect(&mut audience, "left").await["from"],
        broadcaster_id.as_str()
    );
    assert_eq!(expect(&mut audience, "end").await["content"], "show");
}

#[tokio::test]
async fn the_endpoint_can_be_turned_off() {
    let mut config = gateway::Config::default();
    config.nextrtc.enabled = false;
    let gateway = Gateway::start(config).await;
    assert_eq!(gateway.get("/signaling").await.0, 404);
}
