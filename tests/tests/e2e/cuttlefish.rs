//! The Cuttlefish operator: a device and clients over real WebSockets, with webrtc-rs peers
//! connecting through the payloads it forwards.

use std::time::Duration;

use gateway::Config;
use gateway_tests::browser::{AudioCodec, Browser};
use gateway_tests::{Client, Gateway};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::calls::{browser_tone, until_heard};

const WAIT: Duration = Duration::from_secs(10);

async fn open(gateway: &Gateway, path: &str) -> Client {
    Client::connect(&format!("ws://{}{path}", gateway.addr), &[], None)
        .await
        .expect("the upgrade succeeds")
}

async fn send(client: &mut Client, message: Value) {
    client.send(Message::Text(message.to_string().into())).await;
}

async fn next(client: &mut Client) -> Value {
    serde_json::from_str(&client.recv_text().await).expect("JSON")
}

fn started() -> Config {
    let mut config = Config::default();
    config.cuttlefish.stun_servers = vec!["127.0.0.1:3478".to_owned()];
    config
}

#[tokio::test]
async fn a_device_and_a_client_connect_their_peers_through_the_operator() {
    let gateway = Gateway::start(started()).await;
    let mut device = open(&gateway, "/register_device").await;
    send(
        &mut device,
        json!({"message_type": "register", "device_id": "cvd-1", "device_info": {"x_res": 720}}),
    )
    .await;
    let config =
        json!({"message_type": "config", "ice_servers": [{"urls": ["stun:127.0.0.1:3478"]}]});
    assert_eq!(next(&mut device).await, config);
    assert_eq!(
        gateway.get("/devices").await,
        (200, r#"["cvd-1"]"#.to_owned())
    );
    assert_eq!(
        gateway.get("/infra_config").await,
        (200, config.to_string())
    );

    let mut client = open(&gateway, "/connect_client").await;
    send(
        &mut client,
        json!({"message_type": "connect", "device_id": "cvd-1"}),
    )
    .await;
    assert_eq!(next(&mut client).await, config);
    assert_eq!(
        next(&mut client).await,
        json!({"message_type": "device_info", "device_info": {"x_res": 720}})
    );
    send(
        &mut client,
        json!({"message_type": "forward", "payload": {"type": "request-offer"}}),
    )
    .await;
    let request = next(&mut device).await;
    assert_eq!(request["message_type"], "client_msg");
    assert_eq!(request["client_id"], 1);
    assert_eq!(request["payload"]["type"], "request-offer");

    // The device makes the offer, the client answers: real SDP through the operator.
    let mut device_peer = Browser::new(&[AudioCodec::Pcmu]).await;
    let offer = device_peer.offer().await;
    send(
        &mut device,
        json!({"message_type": "forward", "client_id": 1, "payload": {"type": "offer", "sdp": offer}}),
    )
    .await;
    let forwarded = next(&mut client).await;
    assert_eq!(forwarded["message_type"], "device_msg");
    assert_eq!(forwarded["payload"]["sdp"], offer.as_str());
    let mut client_peer = Browser::new(&[AudioCodec::Pcmu]).await;
    let answer = client_peer.answer(&offer).await;
    send(
        &mut client,
        json!({"message_type": "forward", "payload": {"type": "answer", "sdp": answer}}),
    )
    .await;
    let forwarded = next(&mut device).await;
    device_peer
        .accept_answer(forwarded["payload"]["sdp"].as_str().expect("an answer"))
        .await;
    assert!(device_peer.connected(WAIT).await && client_peer.connected(WAIT).await);
    device_peer.send_pcmu_tone(0, 700.0);
    let tone = || browser_tone(&client_peer, 0, AudioCodec::Pcmu);
    assert_eq!(until_heard(700.0, tone).await.0, 700.0);

    // The client goes: the device is told.
    client.close().await;
    assert_eq!(
        next(&mut device).await,
        json!({"message_type": "client_disconnected", "client_id": 1})
    );
    device_peer.close().await;
    client_peer.close().await;
}

#[tokio::test]
async fn errors_say_what_went_wrong_and_close_where_the_reference_closes() {
    let gateway = Gateway::start(started()).await;
    let mut client = open(&gateway, "/connect_client").await;
    send(&mut client, json!({"message_type": "dance"})).await;
    assert_eq!(
        next(&mut client).await,
        json!({"error": "Unknown message type: dance"})
    );
    send(
        &mut client,
        json!({"message_type": "connect", "device_id": "none"}),
    )
    .await;
    assert_eq!(next(&mut client).await["message_type"], "config");
    assert_eq!(
        next(&mut client).await,
        json!({"error": "Connection failed: Device not found: 'none'"})
    );
    assert_eq!(client.expect_close().await.0, 1000);

    let mut device = open(&gateway, "/register_device").await;
    device.send(Message::Binary(vec![0, 1].into())).await;
    assert_eq!(
        next(&mut device).await,
        json!({"error": "Received a binary message"})
    );
    device.expect_close().await;

    // A message split into WebSocket fragments is put back together first.
    let mut device = open(&gateway, "/register_device").await;
    let text = json!({"message_type": "register", "device_id": "frag"}).to_string();
    let (head, tail) = text.split_at(10);
    device
        .send(Message::Frame(Frame::message(
            head.as_bytes().to_vec(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await;
    device
        .send(Message::Frame(Frame::message(
            tail.as_bytes().to_vec(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .await;
    assert_eq!(next(&mut device).await["message_type"], "config");

    // The device goes; a client connected to it learns on its next forward.
    let mut client = open(&gateway, "/connect_client").await;
    send(
        &mut client,
        json!({"message_type": "connect", "device_id": "frag"}),
    )
    .await;
    next(&mut client).await;
    next(&mut client).await;
    device.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while gateway.get("/devices").await.1 != "[]" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the device stays registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(
        &mut client,
        json!({"message_type": "forward", "payload": {}}),
    )
    .await;
    assert_eq!(
        next(&mut client).await,
        json!({"error": "Forward failed: Device disconnected"})
    );
    client.expect_close().await;
    assert_eq!(gateway.get("/devices").await, (200, "[]".to_owned()));
}
